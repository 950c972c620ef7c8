"""User mistakes in the tools end with one 'error:' line naming the file, flag or value, exit status
2, and no earlier file changed: output folders that are files, a full disk during a checkpoint
write, an opset this PyTorch cannot export to, a negative camera index, bad option values; and
the one-line descriptions of OSErrors that run_cli prints."""

import errno
import logging
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from hrpose.apis.frames import CameraSource
from hrpose.engine.cli import describe_os_error
from hrpose.errors import DataError
from hrpose.utils.paths import OutputPathError, check_output_file, check_output_folder
from tiny_runs import make_tiny_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
HRNET_CFG = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"
REGRESSION_CFG = ("experiments/synthetic/hrnet_regression/"
                  "w16_4x_reg_delaysep_bg01_stn_256_adam_lr2e-3_synthetic_x4.yaml")
RESCORE_CFG = "experiments/synthetic/hrnet_regression/rescore_synthetic.yaml"
TINY_MODEL = ["MODEL.IMAGE_SIZE", "[64,64]", "MODEL.HEATMAP_SIZE", "[16,16]", "MODEL.SIGMA", "1.0",
              "WORKERS", "0", "DEVICE", "cpu"]
# A console log record of the run log (engine/run_dir.py LOG_FORMAT): "2026-12-04 16:25:48,325 ...".
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
TIMEOUT = 180


def run_tool(tool, *args, cwd, pythonpath_first=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if pythonpath_first:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath_first),
                                                          env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / tool), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=TIMEOUT)


def run_tool_in_process(tool, *args, cwd, monkeypatch, capsys):
    """A tool run as __main__ in this process, for mistakes refused before any work: starting
    a process (importing torch) costs far more than the check itself."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [tool, *map(str, args)])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(REPO_ROOT / "tools" / tool), run_name="__main__")
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, stopped.value.code, captured.out, captured.err)


def error_line(result, *expected):
    """The one 'error:' line of a tool that stopped on bad input, checked to hold expected."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    line = lines[0]
    assert line.startswith("error: ")
    for text in expected:
        assert text in line, (text, line)
    return line


def snapshot(folder):
    return {path: path.read_bytes() for path in Path(folder).rglob("*") if path.is_file()}


def assert_unchanged(before, folder):
    after = snapshot(folder)
    assert {path: after.get(path) for path in before} == before


# --- output folders that are files, every writing tool -----------------------------------------

def _blocked_output_cases():
    cfg = ["--cfg", REPO_ROOT / HRNET_CFG]
    return {
        # tool: (arguments, the texts the message must hold)
        "train.py": ([*cfg, "OUTPUT_DIR", "'blocker/out'", "LOG_DIR", "'log'", *TINY_MODEL],
                     ["cannot write 'blocker/out", "'blocker' is a file, not a folder"]),
        "valid.py": ([*cfg, "OUTPUT_DIR", "'out'", "LOG_DIR", "'blocker'", *TINY_MODEL],
                     ["cannot write 'blocker/synthetic", "'blocker' is a file, not a folder"]),
        "demo.py": ([*cfg, "OUTPUT_DIR", "'blocker'", "LOG_DIR", "'log'", *TINY_MODEL],
                    ["cannot write 'blocker/synthetic", "'blocker' is a file, not a folder"]),
        "rescore_data.py": (["--cfg", REPO_ROOT / REGRESSION_CFG, "--output",
                             "blocker/data.npz", "OUTPUT_DIR", "'out'", "LOG_DIR", "'log'"],
                            ["--output 'blocker/data.npz'", "'blocker' is a file"]),
        "rescore_train.py": (["--cfg", REPO_ROOT / RESCORE_CFG, "--output", "blocker/net.pth",
                              "OUTPUT_DIR", "'out'", "LOG_DIR", "'log'"],
                             ["--output 'blocker/net.pth'", "'blocker' is a file"]),
        "export_onnx.py": ([*cfg, "--output", "blocker/model.onnx", "--random-weights"],
                           ["--output 'blocker/model.onnx'", "'blocker' is a file"]),
        "inference_demo.py": ([*cfg, "--image", "picture.jpg", "--output-dir", "blocker",
                               *TINY_MODEL],
                              ["--output-dir 'blocker' is a file, expected a folder"]),
        "plot_coco.py": (["--results", "results.json", "--annotations", "annotations.json",
                          "--images", ".", "--output", "blocker/plots"],
                         ["--output 'blocker/plots'", "'blocker' is a file"]),
        "make_synthetic.py": (["--root", "blocker/synthetic", "--num-train", "1", "--num-val",
                               "1", "--quiet"],
                              ["--root 'blocker/synthetic'", "'blocker' is a file"]),
    }


# Run in their own process as a user runs them; the others, which share these code paths (the
# run folder, an early check of the output path), in this one to keep the test fast.
SEPARATE_PROCESS_TOOLS = {"train.py", "export_onnx.py", "make_synthetic.py", "plot_coco.py"}


@pytest.mark.parametrize("tool", sorted(_blocked_output_cases()))
def test_an_output_folder_that_is_a_file_is_one_line(tool, tmp_path, monkeypatch, capsys):
    arguments, expected = _blocked_output_cases()[tool]
    (tmp_path / "blocker").write_text("a file where the tool wants a folder\n")
    (tmp_path / "picture.jpg").write_bytes(b"not read: the output folder is checked first")
    (tmp_path / "results.json").write_text("[]")
    (tmp_path / "annotations.json").write_text("{}")
    before = snapshot(tmp_path)
    if tool in SEPARATE_PROCESS_TOOLS:
        result = run_tool(tool, *arguments, cwd=tmp_path)
    else:
        result = run_tool_in_process(tool, *arguments, cwd=tmp_path, monkeypatch=monkeypatch,
                                     capsys=capsys)
    error_line(result, *expected)
    assert_unchanged(before, tmp_path)


def test_export_to_a_folder_says_a_file_name_is_expected(tmp_path, monkeypatch, capsys):
    (tmp_path / "models").mkdir()
    result = run_tool_in_process("export_onnx.py", "--cfg", REPO_ROOT / HRNET_CFG, "--output",
                                 "models", "--random-weights", cwd=tmp_path,
                                 monkeypatch=monkeypatch, capsys=capsys)
    error_line(result, "--output 'models' is a folder, expected the name of a file")
    assert os.listdir(tmp_path / "models") == []


def test_plot_coco_without_its_images_folder_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "results.json").write_text("[]")
    (tmp_path / "annotations.json").write_text("{}")
    result = run_tool_in_process("plot_coco.py", "--results", "results.json", "--annotations",
                                 "annotations.json", "--images", "nowhere", "--output", "plots",
                                 cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    error_line(result, "--images folder not found: 'nowhere'")
    assert not (tmp_path / "plots").exists()


# --- a full disk -------------------------------------------------------------------------------

# Imported by the tool's interpreter at start-up (site imports sitecustomize from sys.path): a full
# disk during every torch.save, as write() reports it: part of the file written, then an OSError
# with errno ENOSPC and no file name.
FULL_DISK_SITECUSTOMIZE = '''
import errno
import os

import torch


def save(obj, f, *args, **kwargs):
    if hasattr(f, "write"):
        f.write(b"\\0" * 4096)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


torch.save = save
'''


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory, "synthetic_cli", seed=3, num_val=3)


def test_a_full_disk_names_the_file_and_keeps_the_earlier_checkpoints(tiny_data, tmp_path):
    train_args = ["--cfg", REPO_ROOT / HRNET_CFG, "DATASET.ROOT", f"'{tiny_data}'",
                  "TEST.COCO_BBOX_FILE",
                  f"'{tiny_data}/person_detection_results/synthetic_val_detections.json'",
                  "OUTPUT_DIR", "'output'", "LOG_DIR", "'log'", *TINY_MODEL,
                  "TRAIN.BATCH_SIZE_PER_GPU", "8", "TEST.BATCH_SIZE_PER_GPU", "8"]
    first = run_tool("train.py", *train_args, "TRAIN.END_EPOCH", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "output" / "synthetic" / "pose_hrnet" / "w16_128x96_adam_lr2e-3"
    checkpoints = {name: (run_dir / name).read_bytes()
                   for name in ("checkpoint.pth", "model_best.pth", "final_state.pth")}

    full_disk = tmp_path / "full_disk"
    full_disk.mkdir()
    (full_disk / "sitecustomize.py").write_text(FULL_DISK_SITECUSTOMIZE)
    second = run_tool("train.py", *train_args, "TRAIN.END_EPOCH", "2", "AUTO_RESUME", "True",
                      cwd=tmp_path, pythonpath_first=full_disk)

    assert second.returncode == 2, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    # The console log of the run shares stderr; everything else is the one error line, last.
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    others = [line for line in lines if not LOG_RECORD.match(line)]
    assert others == [lines[-1]], second.stderr[-3000:]
    assert re.fullmatch(r"error: no space left on device writing '.*/w16_128x96_adam_lr2e-3/"
                        r"(checkpoint|model_best|final_state)\.pth'; free some space and run "
                        r"again \(files written before are kept\)", lines[-1]), lines[-1]
    for name, content in checkpoints.items():
        assert (run_dir / name).read_bytes() == content, name
    assert not [name for name in os.listdir(run_dir) if name.startswith(".")]


# --- export options ----------------------------------------------------------------------------

def torch_exporter_opsets():
    # What torch.onnx.export's TorchScript exporter says it supports (torch/onnx/_constants.py).
    from torch.onnx import _constants
    highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    return _constants.ONNX_MIN_OPSET, highest


def test_an_opset_torch_cannot_export_is_refused_before_any_work(tmp_path):
    lowest, highest = torch_exporter_opsets()
    result = run_tool("export_onnx.py", "--cfg", REPO_ROOT / HRNET_CFG, "--output", "model.onnx",
                      "--random-weights", "--opset", lowest - 2, cwd=tmp_path)
    error_line(result, f"opset {lowest - 2} is not supported", f"from {lowest} to {highest}")
    assert result.stdout == ""  # no graph dump
    assert os.listdir(tmp_path) == []


def test_an_opset_above_the_exporters_is_refused(tmp_path, monkeypatch, capsys):
    lowest, highest = torch_exporter_opsets()
    result = run_tool_in_process("export_onnx.py", "--cfg", REPO_ROOT / HRNET_CFG, "--output",
                                 "model.onnx", "--random-weights", "--opset", highest + 1,
                                 cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    error_line(result, f"opset {highest + 1} is not supported", f"from {lowest} to {highest}")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("option, value, expected", [
    ("--fixed-batch", "0", "--fixed-batch must be a positive batch size, got 0"),
    ("--tolerance", "-1", "--tolerance must be zero or a positive number, got -1.0"),
])
def test_bad_export_option_values_are_one_line(option, value, expected, tmp_path, monkeypatch,
                                              capsys):
    result = run_tool_in_process("export_onnx.py", "--cfg", REPO_ROOT / HRNET_CFG, "--output",
                                 "model.onnx", "--random-weights", option, value, cwd=tmp_path,
                                 monkeypatch=monkeypatch, capsys=capsys)
    error_line(result, expected)
    assert os.listdir(tmp_path) == []


def test_a_failing_export_does_not_print_the_graph(tmp_path, capfd):
    pytest.importorskip("onnx")
    from hrpose.apis.export import ExportError, export_onnx, load_model_for_export
    from hrpose.config import load_config
    cfg = load_config(str(REPO_ROOT / HRNET_CFG), ["MODEL.IMAGE_SIZE", "[64,64]",
                                                    "MODEL.HEATMAP_SIZE", "[16,16]"])
    model = load_model_for_export(cfg, random_weights=True)
    # The nearest-neighbour upsampling of the fuse layers has no export at opset 8.
    with pytest.raises(ExportError, match=r"cannot be exported to ONNX \(opset 8\)"):
        export_onnx(model, cfg, str(tmp_path / "model.onnx"), opset=8)
    captured = capfd.readouterr()
    assert "graph" not in captured.out and len(captured.out.splitlines()) < 3, captured.out[:2000]
    assert os.listdir(tmp_path) == []


def test_all_stacks_on_a_model_without_stacks_warns_and_exports_its_output(tmp_path, caplog):
    onnx = pytest.importorskip("onnx")
    from hrpose.apis.export import export_onnx, load_model_for_export
    from hrpose.config import load_config
    cfg = load_config(str(REPO_ROOT / HRNET_CFG), ["MODEL.IMAGE_SIZE", "[64,64]",
                                                    "MODEL.HEATMAP_SIZE", "[16,16]"])
    model = load_model_for_export(cfg, random_weights=True)
    with caplog.at_level(logging.WARNING, logger="hrpose.apis.export"):
        exported = export_onnx(model, cfg, str(tmp_path / "model.onnx"), all_stacks=True)
    warnings = [r.getMessage() for r in caplog.records if r.name == "hrpose.apis.export"]
    assert len(warnings) == 1 and "has no effect" in warnings[0] and "pose_hrnet" in warnings[0]
    assert exported.output_names == ["heatmaps"] and not exported.all_stacks
    assert [o.name for o in onnx.load(exported.path).graph.output] == ["heatmaps"]


# --- the inference demo's arguments ------------------------------------------------------------

@pytest.mark.parametrize("arguments, expected", [
    # A separate process: before the check, OpenCV ended it with a segmentation fault.
    (["--camera", "-3"], "--camera must be a non-negative camera index (0 is the first camera), "
                         "got -3"),
    (["--camera", "99"], "cannot open camera 99"),
    (["--image", "picture.jpg", "--boxes", "detections"],
     "person detection file not found: 'detections'"),
    (["--image", "picture.jpg", "--boxes", "empty.json"], "empty.json"),
    (["--image", "picture.jpg"], "is a top-down model and needs person boxes: pass --boxes"),
    (["--image", "picture.jpg", "--detector-weights", "missing.pth"], "missing.pth"),
    (["--image", "picture.jpg", "--boxes", "empty.json", "--detector-weights", "missing.pth"],
     "not both"),
])
def test_bad_inference_demo_inputs_are_one_line(arguments, expected, tmp_path):
    (tmp_path / "picture.jpg").write_bytes(b"not read: the inputs are checked first")
    (tmp_path / "detections").mkdir()
    (tmp_path / "empty.json").write_bytes(b"")
    before = snapshot(tmp_path)
    result = run_tool("inference_demo.py", "--cfg", REPO_ROOT / HRNET_CFG, *arguments,
                      "--output-dir", "out", *TINY_MODEL, cwd=tmp_path)
    error_line(result, expected)
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arguments, expected", [
    (["--max-frames", "0"], "--max-frames must be a positive number of frames, got 0"),
    (["--inference-fps", "-5"], "--inference-fps must be zero (every frame) or a positive rate"),
    (["--smooth", "--smooth-min-cutoff", "0"],
     "--smooth-min-cutoff must be a positive number of Hz, got 0.0"),
    (["--smooth", "--smooth-beta", "-1"], "--smooth-beta must be zero or positive, got -1.0"),
])
def test_bad_inference_demo_option_values_are_one_line(arguments, expected, tmp_path,
                                                       monkeypatch, capsys):
    result = run_tool_in_process("inference_demo.py", "--cfg", REPO_ROOT / HRNET_CFG,
                                 "--image", "picture.jpg", *arguments, "--output-dir", "out",
                                 cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    error_line(result, expected)
    assert os.listdir(tmp_path) == []


def test_the_camera_source_refuses_a_negative_index_before_opencv_sees_it():
    # OpenCV ends the process with a segmentation fault on cv2.VideoCapture(-1).
    for index in (-1, True, 1.0):
        with pytest.raises(DataError, match="camera index must be a non-negative integer"):
            CameraSource(index)


def test_a_config_path_that_is_a_folder_is_one_line(tmp_path, monkeypatch, capsys):
    result = run_tool_in_process("valid.py", "--cfg", REPO_ROOT / "experiments", cwd=tmp_path,
                                 monkeypatch=monkeypatch, capsys=capsys)
    error_line(result, f"'{REPO_ROOT / 'experiments'}'", "YAML")


# --- the one-line descriptions -----------------------------------------------------------------

def test_os_errors_are_described_by_what_is_in_the_way(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    (tmp_path / "folder").mkdir()

    def caught(action):
        try:
            action()
        except OSError as error:
            return describe_os_error(error)
        raise AssertionError("no OSError")

    assert caught(lambda: os.makedirs(blocker / "a" / "b")) == \
        f"cannot write '{blocker / 'a'}': '{blocker}' is a file, not a folder"
    assert caught(lambda: os.makedirs(blocker)) == \
        f"cannot create the folder '{blocker}': it is a file, expected a folder"
    assert caught(lambda: open(blocker / "run.log", "w")) == \
        f"cannot write '{blocker / 'run.log'}': '{blocker}' is a file, not a folder"
    assert caught(lambda: os.replace(blocker, tmp_path / "folder")) == \
        f"'{tmp_path / 'folder'}' is a folder, expected a file"
    assert caught(lambda: open(tmp_path / "folder", "w")) == \
        f"'{tmp_path / 'folder'}' is a folder, expected a file"
    assert caught(lambda: open(tmp_path / "nowhere.json")) == \
        f"no such file or directory: '{tmp_path / 'nowhere.json'}'"
    assert describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/x/y")) == \
        "permission denied: '/x/y'"
    assert describe_os_error(OSError(errno.EROFS, "Read-only file system", "/x/y")) == \
        "cannot write '/x/y': the file system is read-only"
    # A message of its own (cv2.imwrite only returns False) names the file itself.
    assert describe_os_error(OSError("could not write image 'out/frames/1.jpg'")) == \
        "could not write image 'out/frames/1.jpg'"
    # Not about a file the user named: a bug, left to the traceback.
    assert describe_os_error(OSError(errno.EBADF, "Bad file descriptor")) is None


@pytest.mark.parametrize("error_number, reason", [(errno.ENOSPC, "no space left on device"),
                                                  (errno.EDQUOT, "disk quota exceeded")])
def test_a_full_disk_is_named_by_the_file_being_written(error_number, reason, tmp_path,
                                                        monkeypatch):
    import torch

    from hrpose.utils.checkpoint import save_checkpoint_atomic

    def full_disk_save(obj, stream, *args, **kwargs):
        raise OSError(error_number, os.strerror(error_number))  # as write() raises it: no name

    monkeypatch.setattr(torch, "save", full_disk_save)
    target = str(tmp_path / "checkpoint.pth")
    with pytest.raises(OSError) as caught:
        save_checkpoint_atomic({"epoch": 1}, target)
    assert describe_os_error(caught.value) == (f"{reason} writing '{target}'; free some space "
                                               f"and run again (files written before are kept)")
    assert describe_os_error(OSError(error_number, "x")) == \
        f"{reason} writing a file; free some space and run again (files written before are kept)"


def test_a_full_disk_during_an_export_names_the_onnx_file_not_its_temporary(tmp_path,
                                                                            monkeypatch):
    import torch

    from hrpose.apis.export import export_onnx, load_model_for_export
    from hrpose.config import load_config
    pytest.importorskip("onnx")
    cfg = load_config(str(REPO_ROOT / HRNET_CFG), ["MODEL.IMAGE_SIZE", "[64,64]",
                                                    "MODEL.HEATMAP_SIZE", "[16,16]"])
    model = load_model_for_export(cfg, random_weights=True)

    def full_disk_export(module, args, f, *rest, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f)  # names the temporary file

    monkeypatch.setattr(torch.onnx, "export", full_disk_export)
    target = str(tmp_path / "model.onnx")
    with pytest.raises(OSError) as caught:
        export_onnx(model, cfg, target)
    assert caught.value.filename != target  # the error names the hidden temporary file
    assert describe_os_error(caught.value) == (f"no space left on device writing '{target}'; "
                                               f"free some space and run again (files written "
                                               f"before are kept)")
    assert os.listdir(tmp_path) == []


def test_output_path_checks_name_the_option(tmp_path):
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(OutputPathError, match=r"^--out '.*blocker' is a file, expected a folder$"):
        check_output_folder(tmp_path / "blocker", "--out")
    with pytest.raises(OutputPathError, match=r"cannot be created: '.*blocker' is a file"):
        check_output_folder(tmp_path / "blocker" / "a" / "b", "--out")
    with pytest.raises(OutputPathError, match=r"is a folder, expected the name of a file"):
        check_output_file(tmp_path, "--output")
    with pytest.raises(OutputPathError, match=r"cannot be written: '.*blocker' is a file"):
        check_output_file(tmp_path / "blocker" / "m.onnx", "--output")
    check_output_folder(tmp_path / "new" / "folder", "--out")  # to be created: fine
    check_output_file(tmp_path / "new" / "m.onnx", "--output")

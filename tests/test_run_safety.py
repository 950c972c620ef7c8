"""Training-run safety: no run overwrites another's files, non-finite or diverged weights never
reach the disk, strict JSON, atomic writes with the user's permissions, unique run files."""

import json
import logging
import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from hrpose.engine import run_dir, trainer
from hrpose.engine.loop import DivergenceError, DivergenceMonitor
from hrpose.engine.run_dir import create_run
from hrpose.evaluation.pckh import save_mpii_predictions
from hrpose.evaluation.results import write_keypoint_results
from hrpose.models import registry
from hrpose.utils.checkpoint import load_checkpoint_file, load_model_weights, save_checkpoint_atomic
from hrpose.utils.io import atomic_write, remove_stale_temporaries
from tiny_runs import (
    SYNTHETIC_CFG,
    TinyBNPoseNet,
    make_tiny_dataset,
    tiny_topdown_config,
    tiny_topdown_opts,
)

RUN = ("output", "synthetic", "pose_hrnet", "w16_128x96_adam_lr2e-3")
RUN_FILES = ("checkpoint.pth", "model_best.pth", "final_state.pth")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    # Seed 3: 6 training persons, so batches of 2 make 3 iterations per epoch.
    return make_tiny_dataset(tmp_path_factory, "synthetic_safety", seed=3, num_val=2)


# Batches of 2, one epoch, the learning rate never stepped.
RUN_SETTINGS = {"train_batch": 2, "end_epoch": 1, "lr_step": "[5]"}


def tiny_opts(data_root, output_root, *extra):
    return tiny_topdown_opts(data_root, output_root, *extra, **RUN_SETTINGS)


def tiny_config(repo_root, data_root, output_root, *extra):
    return tiny_topdown_config(repo_root, data_root, output_root, *extra, **RUN_SETTINGS)


@pytest.fixture
def tiny_model(monkeypatch):
    monkeypatch.setitem(registry.MODEL_BUILDERS, "pose_hrnet",
                        lambda cfg: TinyBNPoseNet(cfg.MODEL.NUM_JOINTS))


def run_tool(repo_root, tool, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(repo_root / "lib"),
                                           os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, f"tools/{tool}", *args], capture_output=True,
                          text=True, timeout=600, cwd=repo_root, env=env)


def folder_bytes(folder):
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def finite(state_dict):
    return all(torch.isfinite(value).all() for value in state_dict.values()
               if value.is_floating_point())


# --- a new run never overwrites an earlier run's files ----------------------------------------

def test_rerun_without_auto_resume_is_refused_and_leaves_every_file(repo_root, tiny_data,
                                                                    tmp_path, tiny_model):
    cfg = tiny_config(repo_root, tiny_data, tmp_path)
    trainer.train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))
    out = tmp_path.joinpath(*RUN)
    before = folder_bytes(out)
    assert set(RUN_FILES) <= set(before) and "results/keypoints_val_results.json" in before

    result = run_tool(repo_root, "train.py", "--cfg", SYNTHETIC_CFG,
                      *tiny_opts(tiny_data, tmp_path))
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(out) in lines[0] and "checkpoint.pth, model_best.pth, final_state.pth" in lines[0]
    assert "AUTO_RESUME True" in lines[0] and "--model-dir" in lines[0]
    assert "--overwrite" in lines[0]
    # Nothing written: no new log, no config copy, every byte of the earlier run unchanged.
    assert folder_bytes(out) == before


def test_overwrite_moves_the_earlier_run_aside_then_trains(repo_root, tiny_data, tmp_path,
                                                           tiny_model):
    cfg = tiny_config(repo_root, tiny_data, tmp_path)
    trainer.train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))
    out = tmp_path.joinpath(*RUN)
    before = folder_bytes(out)

    result = run_tool(repo_root, "train.py", "--overwrite", "--cfg", SYNTHETIC_CFG,
                      *tiny_opts(tiny_data, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    previous = [path for path in out.iterdir() if path.name.startswith("previous-")]
    assert len(previous) == 1 and f"into {previous[0]}" in result.stderr
    moved = folder_bytes(previous[0])
    for name in (*RUN_FILES, "results/keypoints_val_results.json",
                 "w16_128x96_adam_lr2e-3_train_config.yaml"):
        assert moved[name] == before[name], name
    # The new run (the real HRNet-W16 this time) wrote its own files.
    assert all((out / name).is_file() for name in RUN_FILES)
    assert (load_checkpoint_file(str(out / "checkpoint.pth"))["state_dict"].keys()
            != load_checkpoint_file(str(previous[0] / "checkpoint.pth"))["state_dict"].keys())


def test_auto_resume_continues_in_the_same_folder(repo_root, tiny_data, tmp_path, tiny_model):
    cfg = tiny_config(repo_root, tiny_data, tmp_path)
    trainer.train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))
    longer = tiny_config(repo_root, tiny_data, tmp_path, "AUTO_RESUME", "True",
                         "TRAIN.END_EPOCH", "2")
    trainer.train(longer, create_run(longer, SYNTHETIC_CFG, "train"))
    out = tmp_path.joinpath(*RUN)
    assert load_checkpoint_file(str(out / "checkpoint.pth"))["epoch"] == 2
    assert not any(path.name.startswith("previous-") for path in out.iterdir())


def test_a_finished_run_without_checkpoint_is_not_offered_a_resume(repo_root, tiny_data,
                                                                   tmp_path):
    cfg = tiny_config(repo_root, tiny_data, tmp_path, "AUTO_RESUME", "True")
    out = tmp_path.joinpath(*RUN)
    out.mkdir(parents=True)
    (out / "final_state.pth").write_bytes(b"earlier weights")
    with pytest.raises(run_dir.RunFolderError) as error:
        create_run(cfg, SYNTHETIC_CFG, "demo")
    assert "(final_state.pth)" in str(error.value) and "AUTO_RESUME" not in str(error.value)
    assert os.listdir(out) == ["final_state.pth"]


def test_a_rerun_demo_moves_the_earlier_run_aside(repo_root, tiny_data, tmp_path):
    # tools/demo.py passes overwrite: `make demo` is meant to be run again.
    cfg = tiny_config(repo_root, tiny_data, tmp_path)
    out = tmp_path.joinpath(*RUN)
    (out / "results").mkdir(parents=True)
    earlier = {"model_best.pth": b"best", "final_state.pth": b"final",
               "results/keypoints_val_results.json": b"[]",
               "w16_128x96_adam_lr2e-3_demo_config.yaml": b"SEED: 1"}
    for name, content in earlier.items():
        (out / name).write_bytes(content)
    paths = create_run(cfg, SYNTHETIC_CFG, "demo", overwrite=True)
    previous = [path for path in out.iterdir() if path.name.startswith("previous-")]
    assert len(previous) == 1 and folder_bytes(previous[0]) == earlier
    assert run_dir.earlier_run_outputs(paths.output_dir) == []
    assert (out / "w16_128x96_adam_lr2e-3_demo_config.yaml").read_text() == cfg.dump()


def test_torchrun_processes_stop_together_on_a_refused_folder(repo_root, tiny_data, tmp_path):
    out = tmp_path.joinpath(*RUN)
    out.mkdir(parents=True)
    (out / "checkpoint.pth").write_bytes(b"earlier run")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([str(repo_root / "lib"),
                                           os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(["bash", "tools/dist_train.sh", SYNTHETIC_CFG, "2",
                             *tiny_opts(tiny_data, tmp_path)], capture_output=True, text=True,
                            timeout=300, cwd=repo_root, env=env)
    assert result.returncode != 0
    # Rank 1 got rank 0's verdict through the process group: both stop with the same line.
    assert result.stderr.count("holds an earlier run (checkpoint.pth)") == 2, result.stderr
    assert os.listdir(out) == ["checkpoint.pth"]
    assert (out / "checkpoint.pth").read_bytes() == b"earlier run"


# --- non-finite and diverged weights never reach the disk --------------------------------------

def test_nan_weights_after_a_step_never_reach_checkpoint(repo_root, tiny_data, tmp_path,
                                                         tiny_model, monkeypatch):
    build_optimizer = trainer.build_optimizer

    def poisoning_optimizer(cfg, model):
        optimizer = build_optimizer(cfg, model)
        steps = []

        def poison_third_step(optimizer, args, kwargs):
            steps.append(1)
            if len(steps) == 3:
                with torch.no_grad():
                    model.layers[6].weight[0, 0, 0, 0] = float("nan")
        optimizer.register_step_post_hook(poison_third_step)
        return optimizer

    monkeypatch.setattr(trainer, "build_optimizer", poisoning_optimizer)
    cfg = tiny_config(repo_root, tiny_data, tmp_path, "TRAIN.CHECKPOINT_EVERY", "1")
    with pytest.raises(trainer.NonFiniteWeightsError) as error:
        trainer.train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))
    message = str(error.value)
    assert "epoch 0, iteration 2 (global step 3)" in message and "layers.6.weight" in message
    assert "checkpoint.pth was not written" in message
    out = tmp_path.joinpath(*RUN)
    checkpoint = load_checkpoint_file(str(out / "checkpoint.pth"))
    assert checkpoint["global_step"] == 2 and finite(checkpoint["state_dict"])
    assert sorted(path.name for path in out.glob("*.pth")) == ["checkpoint.pth"]


def test_divergence_stops_naming_term_and_iteration_and_keeps_the_good_files(
        repo_root, tiny_data, tmp_path, tiny_model):
    # Epoch 0 trains normally at 1e-3; from epoch 1 the rate is 1e-3 x 1e9 = 1e6.
    cfg = tiny_config(repo_root, tiny_data, tmp_path, "TRAIN.LR", "0.001", "TRAIN.LR_STEP",
                      "[1]", "TRAIN.LR_FACTOR", "1e9", "TRAIN.END_EPOCH", "6",
                      "TRAIN.VAL_INTERVAL", "1", "TRAIN.DIVERGENCE_PATIENCE", "3")
    with pytest.raises(DivergenceError) as error:
        trainer.train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))
    message = str(error.value)
    # The first 1e6 step is epoch 1's iteration 0; the losses after it are the outliers.
    assert "for 3 iterations, from epoch 1, iteration 1 to epoch 2, iteration 0" in message
    assert "the term that grew most is 'heatmaps'" in message
    out = tmp_path.joinpath(*RUN)
    checkpoint = load_checkpoint_file(str(out / "checkpoint.pth"))
    best = load_checkpoint_file(str(out / "model_best.pth"))
    # Both from the end of epoch 0, before the rate jumped.
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 3
    assert all(torch.equal(best[key], value) for key, value in checkpoint["state_dict"].items())
    assert max(value.abs().max().item() for value in best.values()
               if value.is_floating_point()) < 100
    assert not (out / "final_state.pth").exists()


def test_divergence_monitor_ignores_noise_and_trips_on_an_explosion():
    monitor = DivergenceMonitor(factor=100, patience=3)
    rng = np.random.default_rng(0)
    # A falling loss with batch noise and a few lone 50x spikes is normal training.
    for step in range(500):
        value = 1e-3 * (1 + 9 * np.exp(-step / 50)) * rng.uniform(0.3, 3)
        value *= 50 if step % 97 == 13 else 1
        monitor.observe(value, {"heatmaps": value}, 0, step, step)
    assert not monitor.suspect
    monitor.observe(1.0, {"heatmaps": 0.9, "push": 0.1}, 1, 7, 507)
    monitor.observe(10.0, {"heatmaps": 9.9, "push": 0.1}, 1, 8, 508)
    with pytest.raises(DivergenceError, match=r"from epoch 1, iteration 7 to epoch 1, "
                                              r"iteration 9 .*'heatmaps' = 9\.990e\+01"):
        monitor.observe(100.0, {"heatmaps": 99.9, "push": 0.1}, 1, 9, 509)
    off = DivergenceMonitor(factor=0, patience=3)
    for value in (1e-3, 1e3, 1e6, 1e9):
        off.observe(value, {}, 0, 0, 0)


def test_fp16_overflow_steps_skipped_by_the_scaler_trip_nothing(repo_root, tiny_data, tmp_path,
                                                               tiny_model, monkeypatch):
    # A first loss scale of 2^24 overflows float16 gradients: the scaler skips those steps and
    # halves the scale, which is normal mixed-precision training, not divergence.
    scaler_class = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler",
                        lambda device, enabled: scaler_class(device, init_scale=2.0 ** 24,
                                                             enabled=enabled))
    cfg = tiny_config(repo_root, tiny_data, tmp_path, "TRAIN.AMP", "fp16", "TRAIN.END_EPOCH",
                      "2", "TRAIN.CHECKPOINT_EVERY", "1", "TRAIN.DIVERGENCE_PATIENCE", "1")
    trainer.train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))
    out = tmp_path.joinpath(*RUN)
    checkpoint = load_checkpoint_file(str(out / "checkpoint.pth"))
    assert checkpoint["global_step"] == 6 and checkpoint["scaler"]["scale"] < 2.0 ** 24
    assert finite(checkpoint["state_dict"]) and (out / "final_state.pth").is_file()


def test_best_model_is_replaced_only_on_strict_improvement(repo_root, tiny_data, tmp_path,
                                                           tiny_model, monkeypatch):
    indicators = iter([0.5, 0.5, 0.7, 0.7])
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: next(indicators))
    written = []
    save = trainer.save_checkpoint_atomic

    def recording_save(obj, path):
        written.append(os.path.basename(path))
        save(obj, path)
    monkeypatch.setattr(trainer, "save_checkpoint_atomic", recording_save)
    cfg = tiny_config(repo_root, tiny_data, tmp_path, "TRAIN.END_EPOCH", "4",
                      "TRAIN.VAL_INTERVAL", "1")
    assert trainer.train(cfg, create_run(cfg, SYNTHETIC_CFG, "train")) == 0.7
    # Epochs 0 (the first validation) and 2 improve; the equal epochs 1 and 3 do not.
    assert written == ["model_best.pth", "checkpoint.pth", "checkpoint.pth", "model_best.pth",
                       "checkpoint.pth", "checkpoint.pth", "final_state.pth"]
    checkpoint = load_checkpoint_file(str(tmp_path.joinpath(*RUN, "checkpoint.pth")))
    assert checkpoint["best_epoch"] == 2 and checkpoint["best_perf"] == 0.7


def test_a_nan_checkpoint_warns_at_load_and_results_json_stays_strict(tmp_path, caplog):
    model = TinyBNPoseNet(17)
    state = model.state_dict()
    state["layers.0.weight"][0, 0, 0, 0] = float("nan")
    state["layers.1.running_var"][2] = float("inf")
    path = tmp_path / "diverged.pth"
    save_checkpoint_atomic(state, str(path))
    with caplog.at_level(logging.WARNING, logger="hrpose"):
        load_model_weights(TinyBNPoseNet(17), str(path))
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0]
    assert f"in 2 of {len(state)} tensors" in warnings[0]

    caplog.clear()
    results = [{"image_id": 1, "category_id": 1, "keypoints": [1.0, 2.0, 0.5] * 17,
                "score": 0.9},
               {"image_id": 2, "category_id": 1, "keypoints": [1.0, 2.0, 0.5] * 17,
                "score": np.float32("nan")},
               {"image_id": 3, "category_id": 1,
                "keypoints": [np.inf, 2.0, 0.5] + [1.0, 2.0, 0.5] * 16, "score": 0.8}]
    with caplog.at_level(logging.WARNING, logger="hrpose"):
        written = write_keypoint_results(results, tmp_path / "results.json")

    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")
    parsed = json.loads(written.read_text(), parse_constant=reject)
    assert [entry["image_id"] for entry in parsed] == [1]
    assert any("left 2 of 3 keypoint results out" in record.getMessage()
               for record in caplog.records)


# --- atomic writes: temporary files, permissions, concurrency ----------------------------------

def finished_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_create_run_removes_only_stale_temporaries(repo_root, tiny_data, tmp_path, caplog):
    cfg = tiny_config(repo_root, tiny_data, tmp_path)
    out = tmp_path.joinpath(*RUN)
    out.mkdir(parents=True)
    dead = finished_pid()
    stale = [f".checkpoint.pth.{dead}-0123abcd.tmp", ".tmp-k3_x9ab2.pth"]
    kept = [f".checkpoint.pth.{os.getpid()}-89abcdef.tmp",  # a write in progress
            "notes.tmp", ".tmp-notes.txt", "model.pth"]
    stale_result = f"results/.keypoints_val_results.json.{dead}-4567cdef.tmp"
    (out / "results").mkdir()
    for name in stale + kept + [stale_result]:
        (out / name).write_bytes(b"x" * 100)
    with caplog.at_level(logging.INFO, logger="hrpose"):
        create_run(cfg, SYNTHETIC_CFG, "valid")
    names = set(os.listdir(out))
    assert names.isdisjoint(stale) and set(kept) <= names
    assert os.listdir(out / "results") == []
    removed = [record.getMessage() for record in caplog.records if "removed" in record.getMessage()]
    assert len(removed) == 3 and all("(100 bytes)" in line for line in removed)


def test_interrupted_checkpoint_write_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    path = tmp_path / "checkpoint.pth"
    child = ("import os, sys, torch\n"
             "from hrpose.utils.checkpoint import save_checkpoint_atomic\n"
             "def killed(obj, stream):\n"
             "    stream.write(b'partial'); stream.flush(); os._exit(9)\n"
             "torch.save = killed\n"
             f"save_checkpoint_atomic({{'epoch': 1}}, {str(path)!r})\n")
    result = subprocess.run([sys.executable, "-c", child], env=dict(os.environ, PYTHONPATH=str(
        os.path.join(os.path.dirname(__file__), "..", "lib"))))
    assert result.returncode == 9
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".checkpoint.pth.")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == leftovers
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(repo_root, tiny_data, tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        save_checkpoint_atomic({"epoch": 1}, str(tmp_path / "checkpoint.pth"))
        write_keypoint_results([{"image_id": 1, "score": 0.5}], tmp_path / "results" / "r.json")
        save_mpii_predictions(np.ones((2, 16, 2)), tmp_path / "pred.mat")
        cfg = tiny_config(repo_root, tiny_data, tmp_path)
        paths = create_run(cfg, SYNTHETIC_CFG, "valid")
    finally:
        os.umask(previous)
    written = [tmp_path / "checkpoint.pth", tmp_path / "results" / "r.json",
               tmp_path / "pred.mat", paths.log_file,
               os.path.join(paths.output_dir, "w16_128x96_adam_lr2e-3_valid_config.yaml")]
    assert {str(path): oct(stat.S_IMODE(os.stat(path).st_mode)) for path in written} == {
        str(path): oct(mode) for path in written}


def test_log_names_are_unique_within_one_second(repo_root, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir, "current_timestamp", lambda: "2026-12-04-16-30-05")
    cfg = tiny_config(repo_root, tiny_data, tmp_path)
    logs = [create_run(cfg, SYNTHETIC_CFG, "valid").log_file for _ in range(3)]
    stem = "w16_128x96_adam_lr2e-3"
    assert [os.path.basename(log) for log in logs] == [
        f"{stem}_2026-12-04-16-30-05_valid.log", f"{stem}_2026-12-04-16-30-05-1_valid.log",
        f"{stem}_2026-12-04-16-30-05-2_valid.log"]


def test_concurrent_writes_of_one_file_all_succeed(tmp_path):
    target = tmp_path / "run_train_config.yaml"
    failures = []

    def write_many(index):
        try:
            for repeat in range(40):
                with atomic_write(target, "w") as handle:
                    handle.write(f"writer {index} repeat {repeat}\n" * 50)
        except Exception as error:  # every failure is collected, not only the first
            failures.append(error)

    threads = [threading.Thread(target=write_many, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    lines = set(target.read_text().splitlines())
    assert len(lines) == 1 and os.listdir(tmp_path) == [target.name]

"""TEST.BACKEND: the fused, onnxruntime and openvino engines give the eager model's maps, poses
and AP."""

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hrpose.apis import PosePredictor
from hrpose.config import ConfigError, load_config
from hrpose.config.update import CHOICES
from hrpose.datasets.synthetic import generate_synthetic_dataset
from hrpose.engine.backends import (
    BACKENDS,
    EXPORTED_ENGINES,
    ExportedModel,
    OpenVinoModel,
    inference_model,
)
from hrpose.engine.run_dir import make_run_paths
from hrpose.engine.trainer import validate_model
from hrpose.errors import HrposeError
from hrpose.models import build_model
from hrpose.utils.checkpoint import save_checkpoint_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]

TOPDOWN_CFG = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"
TOPDOWN_OPTS = ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.HEATMAP_SIZE", "[16, 16]"]
HOURGLASS_CFG = "experiments/coco/hourglass/hg4_128x96_d256x3_adam_lr2.5e-4.yaml"
HOURGLASS_OPTS = ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.HEATMAP_SIZE", "[16, 16]",
                  "MODEL.EXTRA.NUM_FEATURES", "32", "MODEL.EXTRA.NUM_STACKS", "2"]
HRNEXT_CFG = "experiments/synthetic/hrnext/hrnext_small_128x96_adamw_lr2e-3.yaml"
# One module per stage keeps the export short.
HRNEXT_OPTS = ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.HEATMAP_SIZE", "[16, 16]",
               "MODEL.EXTRA.STAGE2.NUM_MODULES", "1", "MODEL.EXTRA.STAGE3.NUM_MODULES", "1",
               "MODEL.EXTRA.STAGE4.NUM_MODULES", "1"]
BOTTOMUP_CFG = "experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml"
BOTTOMUP_OPTS = ["DATASET.INPUT_SIZE", "128", "DATASET.OUTPUT_SIZE", "[32, 64]",
                 "TEST.DETECTION_THRESHOLD", "0.001", "MODEL.PRETRAINED", ""]
REGRESSION_CFG = ("experiments/synthetic/hrnet_regression/"
                  "w16_4x_reg_delaysep_bg01_stn_256_adam_lr2e-3_synthetic_x4.yaml")
# The task's bounds: maps within 1e-4 of eager float32, final keypoints within 1e-3 px.
MAP_TOLERANCE = 1e-4
KEYPOINT_TOLERANCE = 1e-3
EXPORTED = ("onnxruntime", "openvino")
ENGINES = ("fused", *EXPORTED)


def config(cfg_file, opts=(), *extra):
    return load_config(str(REPO_ROOT / cfg_file), ["DEVICE", "cpu", *opts, *extra])


def random_model(cfg) -> torch.nn.Module:
    """A randomly initialised model whose BatchNorms hold non-trivial statistics, so that folding
    them changes the convolution weights."""
    torch.manual_seed(0)
    model = build_model(cfg, is_train=True)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.uniform_(-0.2, 0.2)
                layer.running_var.uniform_(0.5, 1.5)
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.2, 0.2)
    return model.eval()


def leaves(outputs):
    return [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)


def assert_same_maps(expected, actual):
    assert type(actual) is type(expected)
    expected, actual = leaves(expected), leaves(actual)
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        assert got.shape == want.shape and got.dtype == torch.float32
        assert (got - want).abs().max().item() <= MAP_TOLERANCE


def run_batches(cfg, backend, shapes):
    model = random_model(cfg)
    engine = inference_model(cfg, model, torch.device("cpu"), backend)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for shape in shapes:
            images = torch.randn(shape, generator=generator)
            assert_same_maps(model(images), engine(images))
    return engine


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("cfg_file, opts", [(TOPDOWN_CFG, TOPDOWN_OPTS),
                                            (HOURGLASS_CFG, HOURGLASS_OPTS)],
                         ids=["hrnet", "hourglass-stacks"])
def test_topdown_engines_give_the_eager_maps_for_full_and_last_batch(cfg_file, opts, backend):
    engine = run_batches(config(cfg_file, opts), backend, [(8, 3, 64, 64), (3, 3, 64, 64)])
    if backend in EXPORTED:
        assert isinstance(engine, EXPORTED_ENGINES[backend]) and engine.exports == 1


@pytest.mark.parametrize("backend", EXPORTED)
def test_bottomup_exported_engine_serves_every_input_size_from_one_export(backend):
    engine = run_batches(config(BOTTOMUP_CFG, BOTTOMUP_OPTS), backend,
                         [(1, 3, 128, 128), (1, 3, 128, 192), (2, 3, 192, 128)])
    assert engine.exports == 1


def test_hrnext_onnxruntime_exports_once_per_batch_size():
    # Its dynamic convolutions fold the batch into the group count of one convolution. The
    # keying is the engines' shared code; one engine tests it (an HRNeXt export takes seconds).
    engine = run_batches(config(HRNEXT_CFG, HRNEXT_OPTS), "onnxruntime",
                         [(3, 3, 64, 64), (2, 3, 64, 64), (3, 3, 64, 64)])
    assert engine.exports == 2


@pytest.mark.parametrize("backend", EXPORTED)
def test_regression_model_runs_eagerly_with_one_warning(caplog, backend):
    cfg = config(REGRESSION_CFG, (), "MODEL.PRETRAINED", "")
    model = build_model(cfg, is_train=False)
    with caplog.at_level(logging.WARNING, logger="hrpose.engine.backends"):
        engine = inference_model(cfg, model, torch.device("cpu"), backend)
    assert engine is model
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "deformable" in warnings[0].getMessage()


@pytest.mark.parametrize("backend", EXPORTED)
def test_exported_engine_refuses_a_gpu_model(backend):
    cfg = config(TOPDOWN_CFG, TOPDOWN_OPTS)
    with pytest.raises(ConfigError, match=f"'{backend}' runs on the CPU but the model is on cuda"):
        inference_model(cfg, build_model(cfg, is_train=False), torch.device("cuda"), backend)


@pytest.mark.parametrize("backend", EXPORTED)
def test_missing_runtime_package_fails_when_the_engine_is_made(monkeypatch, backend):
    cfg = config(TOPDOWN_CFG, TOPDOWN_OPTS)
    model = build_model(cfg, is_train=False)
    # A None entry makes `import backend` raise ImportError, as an absent package does.
    monkeypatch.setitem(sys.modules, backend, None)
    with pytest.raises(ConfigError) as error:
        inference_model(cfg, model, torch.device("cpu"), backend)
    message = str(error.value)
    assert "\n" not in message
    assert f"TEST.BACKEND '{backend}' needs the {backend} package" in message


class UnexportableNet(torch.nn.Module):
    """NCHW maps through an operator the ONNX exporter has no conversion for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, images):
        return torch.special.i1(self.conv(images))


@pytest.mark.parametrize("backend", EXPORTED)
def test_failed_export_is_one_line_naming_the_model(backend):
    engine = EXPORTED_ENGINES[backend](UnexportableNet())
    with pytest.raises(HrposeError) as error:
        engine(torch.randn(1, 3, 8, 8))
    message = str(error.value)
    assert "\n" not in message
    assert f"TEST.BACKEND {backend} cannot export UnexportableNet" in message


@pytest.mark.parametrize("backend", EXPORTED)
def test_failed_compilation_is_one_line_naming_the_model(monkeypatch, backend):
    def failing_compile(engine, graph, names, threads):
        # OpenVINO's way: one source location per stack frame before what went wrong.
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:105:\n"
                           "Exception from src/inference/src/model_reader.cpp:188:\n"
                           "Unable to read the model.\nIts second line\n")

    monkeypatch.setattr(EXPORTED_ENGINES[backend], "_compile", failing_compile)
    engine = EXPORTED_ENGINES[backend](torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(HrposeError, match=f"^TEST.BACKEND {backend} cannot compile the export of "
                                          f"Conv2d: Unable to read the model.; use TEST"):
        engine(torch.randn(1, 3, 8, 8))


@pytest.fixture
def recorded_openvino_compilations(monkeypatch):
    """The OpenVINO compiled models made while the test runs, in order."""
    import openvino

    compiled_models = []
    compile_model = openvino.Core.compile_model

    def recording_compile_model(core, *args, **kwargs):
        compiled_models.append(compile_model(core, *args, **kwargs))
        return compiled_models[-1]

    monkeypatch.setattr(openvino.Core, "compile_model", recording_compile_model)
    return compiled_models


@pytest.mark.parametrize("threads", [1, 2])
def test_openvino_compiles_in_float32(recorded_openvino_compilations, threads, monkeypatch):
    # On CPUs with bf16 OpenVINO's default precision is bf16; the map tolerance catches that only
    # on such a CPU, so the compiled models' precision is checked everywhere.
    import openvino

    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    engine = run_batches(config(TOPDOWN_CFG, TOPDOWN_OPTS), "openvino", [(2, 3, 64, 64)])
    # With two threads a second model runs large batches as two parallel streams.
    assert isinstance(engine, OpenVinoModel)
    assert len(recorded_openvino_compilations) == threads
    for compiled in recorded_openvino_compilations:
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    assert recorded_openvino_compilations[0].get_property("INFERENCE_NUM_THREADS") == threads


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_openvino_splits_a_batch_over_streams_in_order(recorded_openvino_compilations, batch):
    # make test runs one torch thread, where every batch is one request; with two threads (and
    # two cores) a batch of 1 stays whole, one of 2 or 3 runs as two parts (1 + 1, 2 + 1).
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        engine = run_batches(config(TOPDOWN_CFG, TOPDOWN_OPTS), "openvino",
                             [(batch, 3, 64, 64), (batch, 3, 64, 64)])
    finally:
        torch.set_num_threads(threads)
    assert engine.exports == 1
    parallel = recorded_openvino_compilations[1]
    assert parallel.get_property("NUM_STREAMS") == min(2, len(os.sched_getaffinity(0)))


def test_unknown_backend_names_the_key():
    with pytest.raises(ConfigError, match="TEST.BACKEND.*'tensorrt'"):
        config(TOPDOWN_CFG, TOPDOWN_OPTS, "TEST.BACKEND", "tensorrt")


def test_config_accepts_every_engine():
    assert CHOICES["TEST.BACKEND"] == BACKENDS
    assert config(TOPDOWN_CFG, TOPDOWN_OPTS).TEST.BACKEND == "eager"
    for backend in BACKENDS:
        assert config(TOPDOWN_CFG, TOPDOWN_OPTS, "TEST.BACKEND", backend).TEST.BACKEND == backend


# --- validation and the predictor --------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_backends")
    generate_synthetic_dataset(str(root), num_train=1, num_val=3, seed=5, min_size=96,
                               max_size=128)
    return root


def paths_opts(data_root, out_root, model_file):
    return ["DATASET.ROOT", str(data_root), "OUTPUT_DIR", str(out_root / "output"),
            "LOG_DIR", str(out_root / "log"), "WORKERS", "0", "TEST.MODEL_FILE", str(model_file)]


def checkpoint(cfg_file, opts, path) -> str:
    save_checkpoint_atomic(random_model(config(cfg_file, opts)).state_dict(), str(path))
    return str(path)


def validate(cfg_file, opts, data_root, out_root, model_file, backend):
    cfg = config(cfg_file, opts, *paths_opts(data_root, out_root / backend, model_file),
                 "TEST.BACKEND", backend)
    paths = make_run_paths(cfg, cfg_file, "valid")
    os.makedirs(paths.output_dir, exist_ok=True)
    indicator = validate_model(cfg, paths)
    with open(os.path.join(paths.output_dir, "results", "keypoints_val_results.json")) as file:
        return indicator, json.load(file)


def assert_same_results(expected, actual):
    assert len(actual) == len(expected) > 0
    for want, got in zip(expected, actual):
        assert got["image_id"] == want["image_id"]
        np.testing.assert_allclose(np.reshape(got["keypoints"], (-1, 3))[:, :2],
                                   np.reshape(want["keypoints"], (-1, 3))[:, :2],
                                   rtol=0, atol=KEYPOINT_TOLERANCE)
        np.testing.assert_allclose(np.reshape(got["keypoints"], (-1, 3))[:, 2],
                                   np.reshape(want["keypoints"], (-1, 3))[:, 2],
                                   rtol=0, atol=MAP_TOLERANCE)
        assert got["score"] == pytest.approx(want["score"], abs=MAP_TOLERANCE)


# Flip test on and a batch of 4 over the split's boxes: the last batch is smaller.
TOPDOWN_VALID_OPTS = TOPDOWN_OPTS + ["TEST.USE_GT_BBOX", "True", "TEST.FLIP_TEST", "True",
                                     "TEST.BATCH_SIZE_PER_GPU", "4"]


@pytest.mark.parametrize("backend", ENGINES)
def test_topdown_validation_gives_the_eager_ap_and_results(data, tmp_path, backend):
    model_file = checkpoint(TOPDOWN_CFG, TOPDOWN_VALID_OPTS, tmp_path / "model.pth")
    eager_ap, eager_results = validate(TOPDOWN_CFG, TOPDOWN_VALID_OPTS, data, tmp_path,
                                       model_file, "eager")
    ap, results = validate(TOPDOWN_CFG, TOPDOWN_VALID_OPTS, data, tmp_path, model_file, backend)
    assert len(eager_results) % 4 != 0
    assert ap == pytest.approx(eager_ap, abs=1e-9)
    assert_same_results(eager_results, results)


BOTTOMUP_VALID_OPTS = BOTTOMUP_OPTS + ["TEST.FLIP_TEST", "True"]


@pytest.fixture(scope="module")
def bottomup_eager(data, tmp_path_factory):
    """The bottom-up checkpoint and its eager AP and results, shared by the engines' tests."""
    out = tmp_path_factory.mktemp("bottomup_eager")
    model_file = checkpoint(BOTTOMUP_CFG, BOTTOMUP_VALID_OPTS, out / "model.pth")
    return model_file, *validate(BOTTOMUP_CFG, BOTTOMUP_VALID_OPTS, data, out, model_file, "eager")


@pytest.mark.parametrize("backend", EXPORTED)
def test_bottomup_validation_gives_the_eager_ap_and_results(data, tmp_path, bottomup_eager,
                                                            backend):
    model_file, eager_ap, eager_results = bottomup_eager
    ap, results = validate(BOTTOMUP_CFG, BOTTOMUP_VALID_OPTS, data, tmp_path, model_file, backend)
    assert ap == pytest.approx(eager_ap, abs=1e-9)
    assert_same_results(eager_results, results)


def test_predictor_runs_the_configured_backend(data, tmp_path):
    model_file = checkpoint(TOPDOWN_CFG, TOPDOWN_OPTS, tmp_path / "model.pth")
    image = str(next((data / "images" / "val").iterdir()))
    boxes = np.array([[10.0, 8.0, 60.0, 80.0, 0.9], [30.0, 20.0, 40.0, 50.0, 0.8]])
    persons = {}
    for backend in ("eager", *EXPORTED):
        cfg = config(TOPDOWN_CFG, TOPDOWN_OPTS, *paths_opts(data, tmp_path, model_file),
                     "TEST.BACKEND", backend, "TEST.FLIP_TEST", "True")
        predictor = PosePredictor.from_config(cfg)
        expected_type = EXPORTED_ENGINES.get(backend, torch.nn.Module)
        assert isinstance(predictor.model, expected_type)
        assert isinstance(predictor.model, ExportedModel) == (backend != "eager")
        persons[backend] = predictor(image, boxes=boxes)
    for backend in EXPORTED:
        assert len(persons[backend]) == len(persons["eager"]) == 2
        for want, got in zip(persons["eager"], persons[backend]):
            np.testing.assert_allclose(got.keypoints[:, :2], want.keypoints[:, :2], rtol=0,
                                       atol=KEYPOINT_TOLERANCE)
            assert got.score == pytest.approx(want.score, abs=MAP_TOLERANCE)

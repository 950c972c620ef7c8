"""ONNX export (hrpose.apis.export, tools/export_onnx.py): parity with PyTorch in onnxruntime at
several batch sizes (dynamic batch) for HRNet, HigherHRNet (two named outputs, dynamic input size)
and a narrow HRNeXt (batch-independent dynamic convolutions), a fixed-batch export, the file's
metadata, and clear errors for a missing checkpoint and a model the exporter cannot handle."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hrpose.apis.export import (  # noqa: E402
    BatchIndependentKernelAggregation,
    ExportError,
    check_onnx_parity,
    default_check_shapes,
    export_onnx,
    load_model_for_export,
    max_differences,
)
from hrpose.config import load_config  # noqa: E402
from hrpose.models.backbones.hrnext import KernelAggregation  # noqa: E402
from hrpose.utils.checkpoint import CheckpointError  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = str(REPO_ROOT / "tools" / "export_onnx.py")
HRNET_CFG = str(REPO_ROOT / "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml")
HIGHER_CFG = str(REPO_ROOT / "experiments/synthetic/higher_hrnet/w16_256_adam_lr2e-3.yaml")
HIGHER_128 = ("DATASET.INPUT_SIZE", "128", "DATASET.OUTPUT_SIZE", "[32,64]")
HRNEXT_CFG = str(REPO_ROOT / "experiments/synthetic/hrnext/hrnext_small_128x96_adamw_lr2e-3.yaml")
# HRNeXt-S's kernel banks (4, (4, 2), (4, 2, 1), (4, 2, 1, 1)) on narrow branches, one module
# per stage and one block per branch: every kind of layer, cheap to trace.
HRNEXT_NARROW = ("MODEL.EXTRA.STAGE1.NUM_CHANNELS", "[16]", "MODEL.EXTRA.STAGE1.NUM_BLOCKS", "[1]",
                 "MODEL.EXTRA.STAGE2.NUM_MODULES", "1", "MODEL.EXTRA.STAGE2.NUM_CHANNELS", "[8,16]",
                 "MODEL.EXTRA.STAGE2.NUM_BLOCKS", "[1,1]",
                 "MODEL.EXTRA.STAGE3.NUM_MODULES", "1", "MODEL.EXTRA.STAGE3.NUM_CHANNELS",
                 "[8,16,32]", "MODEL.EXTRA.STAGE3.NUM_BLOCKS", "[1,1,1]",
                 "MODEL.EXTRA.STAGE4.NUM_MODULES", "1", "MODEL.EXTRA.STAGE4.NUM_CHANNELS",
                 "[8,16,32,64]", "MODEL.EXTRA.STAGE4.NUM_BLOCKS", "[1,1,1,1]")
TOLERANCE = 1e-4


def export(tmp_path, cfg_path, *opts, name="model.onnx", **kwargs):
    cfg = load_config(cfg_path, list(opts))
    model = load_model_for_export(cfg, random_weights=True, seed=3)
    return cfg, model, export_onnx(model, cfg, str(tmp_path / name), **kwargs)


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def assert_parity(checks, expected_shapes):
    assert [check.input_shape for check in checks] == expected_shapes
    for check in checks:
        for name, diff in check.max_abs_diff.items():
            # A difference is only meaningful against outputs that are not all tiny.
            assert check.max_abs_value[name] > 1e-2, (check.input_shape, name)
            assert diff < TOLERANCE, (check.input_shape, name, diff)


def test_hrnet_dynamic_batch_parity_and_file(tmp_path):
    cfg, model, exported = export(tmp_path, HRNET_CFG)
    assert exported.output_names == ["heatmaps"] and not exported.fixed_batch
    assert_parity(check_onnx_parity(model, exported, [(1, 3, 128, 96), (3, 3, 128, 96)]),
                  [(1, 3, 128, 96), (3, 3, 128, 96)])
    # Written under a temporary name and renamed: only the file itself is left.
    assert os.listdir(tmp_path) == ["model.onnx"]
    graph_file = onnx.load(exported.path)
    assert graph_file.opset_import[0].version == 17
    assert dims(graph_file.graph.input[0]) == ["batch", 3, 128, 96]
    assert dims(graph_file.graph.output[0]) == ["batch", 17, 32, 24]
    metadata = {entry.key: entry.value for entry in graph_file.metadata_props}
    assert metadata["hrpose.model"] == "pose_hrnet"
    assert metadata["hrpose.weights"] == "random initialisation"
    assert "RGB" in metadata["hrpose.input"]
    assert metadata["hrpose.keypoints"].split(",")[0] == "nose"


def test_fixed_batch_export(tmp_path):
    _, model, exported = export(tmp_path, HRNET_CFG, fixed_batch=2)
    assert exported.fixed_batch and default_check_shapes(exported) == [(2, 3, 128, 96)]
    assert dims(onnx.load(exported.path).graph.input[0]) == [2, 3, 128, 96]
    assert max(max_differences(check_onnx_parity(model, exported)).values()) < TOLERANCE
    with pytest.raises(ExportError, match="cannot run"):
        check_onnx_parity(model, exported, [(1, 3, 128, 96)])


def test_higher_hrnet_named_outputs_and_dynamic_size(tmp_path):
    _, model, exported = export(tmp_path, HIGHER_CFG, *HIGHER_128)
    assert exported.output_names == ["heatmaps_tags_stride4", "heatmaps_stride2"]
    outputs = onnx.load(exported.path).graph.output
    assert dims(outputs[0])[:2] == ["batch", 34] and dims(outputs[1])[:2] == ["batch", 17]
    assert default_check_shapes(exported) == [(1, 3, 128, 128), (2, 3, 128, 192)]
    shapes = [(1, 3, 128, 128), (2, 3, 192, 128), (1, 3, 256, 192)]
    assert_parity(check_onnx_parity(model, exported, shapes), shapes)


def test_hrnext_exports_with_dynamic_batch(tmp_path):
    _, model, exported = export(tmp_path, HRNEXT_CFG, *HRNEXT_NARROW)
    assert any("dynamic convolutions rewritten" in note for note in exported.notes)
    # The model given to the exporter keeps its own layers.
    assert not any(isinstance(m, BatchIndependentKernelAggregation) for m in model.modules())
    assert_parity(check_onnx_parity(model, exported, [(1, 3, 128, 96), (3, 3, 128, 96)]),
                  [(1, 3, 128, 96), (3, 3, 128, 96)])


@pytest.mark.parametrize("in_channels, out_channels, kernel_size, stride, padding, groups", [
    (6, 10, 1, 1, 0, 1),   # HRNeXt's dynamic 1x1
    (6, 6, 3, 1, 1, 6),    # HRNeXt's dynamic depthwise 3x3
    (6, 4, 3, 2, 1, 2),    # anything else: unfold
])
def test_batch_independent_aggregation_matches(in_channels, out_channels, kernel_size, stride,
                                               padding, groups):
    torch.manual_seed(0)
    aggregation = KernelAggregation(in_channels, out_channels, kernel_size, 3, stride=stride,
                                    padding=padding, groups=groups)
    x, attention = torch.randn(3, in_channels, 9, 7), torch.rand(3, 3)
    expected = aggregation(x, attention)
    actual = BatchIndependentKernelAggregation(aggregation)(x, attention)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_tool_exports_and_checks(tmp_path):
    output = tmp_path / "sub" / "hrnet.onnx"
    result = subprocess.run([sys.executable, TOOL, "--cfg", HRNET_CFG, "--output", str(output),
                             "--random-weights"], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert output.is_file()
    assert "1x3x128x96" in result.stdout and "2x3x128x96" in result.stdout
    assert "OK: max |diff| heatmaps" in result.stdout


def run_tool(monkeypatch, *args):
    """The tool in this process; returns its exit status (0 when it returns)."""
    monkeypatch.setattr(sys, "argv", [TOOL, *args])
    try:
        runpy.run_path(TOOL, run_name="__main__")
    except SystemExit as stop:
        return stop.code
    return 0


def test_tool_fails_above_tolerance(tmp_path, monkeypatch, capsys):
    output = tmp_path / "hrnet.onnx"
    # No two implementations agree to 1e-12 everywhere on a whole heatmap batch.
    status = run_tool(monkeypatch, "--cfg", HRNET_CFG, "--output", str(output),
                      "--random-weights", "--tolerance", "1e-12")
    assert status == 1
    assert "exceeds the tolerance" in capsys.readouterr().err
    assert output.is_file()  # kept for inspection


def test_missing_checkpoint_is_one_clear_error(tmp_path, monkeypatch, capsys):
    output = tmp_path / "hrnet.onnx"
    missing = str(tmp_path / "no_such_model.pth")
    status = run_tool(monkeypatch, "--cfg", HRNET_CFG, "--output", str(output),
                      "TEST.MODEL_FILE", missing)
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: checkpoint not found") and missing in err
    assert len(err.strip().splitlines()) == 1
    assert not output.exists()
    with pytest.raises(CheckpointError, match="--random-weights"):
        load_model_for_export(load_config(HRNET_CFG, []))


class NotExportable(nn.Module):
    def forward(self, x):
        return torch.fft.fft2(x).abs()


def test_unexportable_model_is_a_clear_error(tmp_path):
    cfg = load_config(HRNET_CFG, [])
    with pytest.raises(ExportError, match="pose_hrnet cannot be exported to ONNX"):
        export_onnx(NotExportable(), cfg, str(tmp_path / "x.onnx"))
    assert os.listdir(tmp_path) == []

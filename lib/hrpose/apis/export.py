"""Exporting a pose model to ONNX and checking the file against PyTorch with onnxruntime.

    from hrpose.apis.export import check_onnx_parity, export_onnx, load_model_for_export
    model = load_model_for_export(cfg)                  # TEST.MODEL_FILE, strictly loaded
    exported = export_onnx(model, cfg, "model.onnx")    # opset 17, dynamic batch axis
    checks = check_onnx_parity(model, exported)         # onnxruntime (CPU) vs PyTorch

What the file holds. One input, ``input``: a float32 NCHW batch normalised as the data loaders
normalise it (pixel / 255, minus the ImageNet mean, divided by its std), in the channel order
the model was trained with (RGB when DATASET.COLOR_RGB, else BGR). The outputs are the network's
raw maps; decoding, flip test, grouping and NMS stay outside the graph, in hrpose's Python code
(hrpose.postprocess.topdown / hrpose.postprocess.bottomup_inference) or the deployment's own.

- Top-down models (pose_hrnet, pose_resnet, pose_hrnext, pose_hourglass): input
  [batch, 3, H, W] at MODEL.IMAGE_SIZE; one output ``heatmaps`` [batch, J, h, w]. The stacked
  hourglass returns one heatmap per stack: the file holds the last stack (the one the validation
  loop decodes) under ``heatmaps``, or with all_stacks every stack as ``heatmaps_stack0`` ... .
- Bottom-up models (pose_higher_hrnet): input [batch, 3, height, width] with height and width
  dynamic too (multiples of 64, as the bottom-up test pipeline resizes them; the network itself
  needs multiples of 32); one output per resolution of the head, named by content and stride,
  e.g. ``heatmaps_tags_stride4`` (J heatmaps then the tag maps) and ``heatmaps_stride2``.

The batch axis is dynamic unless fixed_batch is given. HRNeXt's dynamic convolutions mix a kernel
per sample and apply the batch as one grouped convolution whose group count is batch x groups, a
number an ONNX Conv must know when the file is written (and the TorchScript exporter cannot
export the per-sample kernel at all). For export they are rewritten with the same arithmetic in a
batch-independent form (a batched matrix product for the 1x1 ones, a sum of k x k shifted,
per-sample weighted copies for the depthwise ones), so HRNeXt too exports with a dynamic batch; the
parity check compares the file with the unmodified model.

Models are exported with the TorchScript-based exporter (torch.onnx.export(..., dynamo=False)):
fast, no extra dependency, and it handles every model here; the torch.export-based exporter of
recent PyTorch needs onnxscript and writes opset 18 and then converts it down. The file gets
metadata (model name, weights, input convention, outputs, keypoint names, the config) under
``hrpose.*`` keys.

One file over 500 lines on purpose: export, the exporter's workarounds (the batch-independent
dynamic convolution, the quiet graph dump) and the parity check change together.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from yacs.config import CfgNode

from ..config.model_extras import is_bottom_up, is_regression
from ..datasets.build import split_source
from ..datasets.metadata import KEYPOINT_INFO
from ..datasets.topdown import IMAGENET_MEAN, IMAGENET_STD
from ..errors import HrposeError
from ..models import build_model
from ..models.backbones.hrnext import KernelAggregation
from ..models.complexity import network_input_size
from ..utils.checkpoint import CheckpointError, load_model_weights
from ..utils.io import atomic_path
from ..utils.paths import check_output_file

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
INPUT_NAME = "input"
# Bottom-up check inputs: the second is this much wider, so that the height and width axes are
# checked to be dynamic (and not equal) as well as the batch axis. 64: the pipeline's size step.
BOTTOM_UP_EXTRA_WIDTH = 64
METADATA_PREFIX = "hrpose."


class ExportError(HrposeError, RuntimeError):
    """A model that cannot be exported, or an exported file that onnxruntime cannot run."""


@dataclass
class ExportedModel:
    """What export_onnx wrote: the file, its input and output names, the dynamic axes (by tensor
    name: axis -> symbolic name), the input shape traced, and notes on what was adapted."""

    path: str
    input_name: str
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    example_shape: tuple[int, ...]
    bottom_up: bool
    all_stacks: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def fixed_batch(self) -> bool:
        return 0 not in self.dynamic_axes.get(self.input_name, {})


@dataclass
class ParityCheck:
    """One random input run through PyTorch and onnxruntime: its shape, and per output the largest
    absolute difference and the largest absolute PyTorch value (the scale the difference is on)."""

    input_shape: tuple[int, ...]
    max_abs_diff: dict[str, float]
    max_abs_value: dict[str, float]


# --- options ---------------------------------------------------------------------------------

def supported_opsets() -> range | None:
    """The opsets torch.onnx.export's TorchScript exporter supports in this torch version, as torch
    itself records them (torch.onnx._constants: ONNX_MIN_OPSET, and the TorchScript exporter's
    maximum, or ONNX_MAX_OPSET in versions without one); None if this torch does not say."""
    try:
        from torch.onnx import _constants
        lowest = _constants.ONNX_MIN_OPSET
        highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET",
                          _constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):
        return None
    return range(lowest, highest + 1)


def check_export_options(opset: int, fixed_batch: int | None = None) -> None:
    """Refuse an opset this torch cannot export to and a batch size below 1, before any work
    (an exporter run at an unsupported opset prints the whole graph before its error)."""
    opsets = supported_opsets()
    if opsets is not None and opset not in opsets:
        raise ExportError(f"ONNX opset {opset} is not supported by this PyTorch's exporter "
                          f"(torch {torch.__version__}): use an opset from {opsets.start} to "
                          f"{opsets.stop - 1} (default {DEFAULT_OPSET})")
    if fixed_batch is not None and fixed_batch < 1:
        raise ExportError(f"a fixed batch size must be positive, got {fixed_batch}")


# --- the model ---------------------------------------------------------------------------------

def check_exportable(cfg: CfgNode) -> None:
    """Refuse, with one message, the models the exporter has no operators for: the regression
    models' adaptive convolutions are torchvision deformable convolutions, which have no ONNX
    export in torchvision (ONNX's DeformConv needs opset 19)."""
    if is_regression(cfg.MODEL.NAME):
        raise ExportError(f"{cfg.MODEL.NAME} cannot be exported to ONNX: its adaptive "
                          f"convolutions are torchvision deformable convolutions "
                          f"(torchvision.ops.deform_conv2d), which torchvision cannot export; "
                          f"run it in PyTorch (hrpose.apis.PosePredictor)")


def load_model_for_export(cfg: CfgNode, random_weights: bool = False, seed: int = 0) -> nn.Module:
    """The model of cfg in eval mode on the CPU, with TEST.MODEL_FILE's weights loaded strictly,
    or with PyTorch's default random initialisation when random_weights (a smoke export: the file
    computes what the network computes, but the numbers mean nothing)."""
    check_exportable(cfg)
    if random_weights:
        if cfg.TEST.MODEL_FILE:
            logger.warning("random weights asked for: TEST.MODEL_FILE '%s' is not loaded",
                           cfg.TEST.MODEL_FILE)
        with torch.random.fork_rng(devices=[]):  # leaves the caller's random state alone
            torch.manual_seed(seed)
            model = build_model(cfg, is_train=False)
    else:
        if not cfg.TEST.MODEL_FILE:
            raise CheckpointError("no model weights to export: set TEST.MODEL_FILE to a .pth file "
                                  "(see models/README.md), or ask for random weights "
                                  "(--random-weights) for a smoke export")
        model = build_model(cfg, is_train=False)
        load_model_weights(model, cfg.TEST.MODEL_FILE)
    return model.cpu().eval()


class BatchIndependentKernelAggregation(nn.Module):
    """HRNeXt's KernelAggregation computed without folding the batch into convolution groups.

    Same kernels (the attention-weighted sum of the banks), same result up to float rounding; the
    graph has no size that depends on the batch, so it exports with a dynamic batch axis:
    1x1 group-1 kernels as a batched matrix product, depthwise stride-1 kernels as a sum over the
    k x k taps of shifted input windows times per-sample weights, anything else through unfold
    (im2col) and a batched matrix product per group.
    """

    def __init__(self, aggregation: KernelAggregation) -> None:
        super().__init__()
        self.aggregation = aggregation

    def forward(self, x: Tensor, attention: Tensor) -> Tensor:
        agg = self.aggregation
        k, stride, padding, groups = agg.kernel_size, agg.stride, agg.padding, agg.groups
        in_channels, out_channels = agg.in_channels, agg.out_channels
        mixed = attention @ agg.weight.reshape(agg.weight.shape[0], -1)  # (N, out * in/g * k * k)
        if k == 1 and stride == 1 and padding == 0 and groups == 1:
            out = mixed.reshape(-1, out_channels, in_channels) @ x.flatten(2)
            return out.reshape(-1, out_channels, x.shape[2], x.shape[3])
        if stride == 1 and groups == in_channels == out_channels:
            kernels = mixed.reshape(-1, out_channels, k, k)
            padded = F.pad(x, (padding, padding, padding, padding))
            out = None
            for i in range(k):
                for j in range(k):
                    # Window (i, j) of the padded map: it stops k - 1 - i rows (k - 1 - j
                    # columns) before the end; ends counted from the end keep any size dynamic.
                    window = padded[:, :, i:(i - k + 1) or None, j:(j - k + 1) or None]
                    term = kernels[:, :, i, j, None, None] * window
                    out = term if out is None else out + term
            return out
        columns = F.unfold(x, k, padding=padding, stride=stride)  # (N, in * k * k, L)
        columns = columns.reshape(-1, groups, in_channels // groups * k * k, columns.shape[-1])
        kernels = mixed.reshape(-1, groups, out_channels // groups, in_channels // groups * k * k)
        height = (x.shape[2] + 2 * padding - k) // stride + 1
        width = (x.shape[3] + 2 * padding - k) // stride + 1
        return (kernels @ columns).reshape(-1, out_channels, height, width)


def batch_independent_copy(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of model whose KernelAggregation layers (HRNeXt) are BatchIndependentKernelAggregation
    wrappers, and how many were replaced; model itself is not changed (nor copied when none are)."""
    if not any(isinstance(module, KernelAggregation) for module in model.modules()):
        return model, 0
    model = copy.deepcopy(model)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, KernelAggregation):
                setattr(parent, name, BatchIndependentKernelAggregation(child))
                replaced += 1
    return model, replaced


class ExportModule(nn.Module):
    """The network with its outputs as a tuple of tensors: all of them, or for a model returning
    a list of stacks only the last."""

    def __init__(self, model: nn.Module, last_only: bool) -> None:
        super().__init__()
        self.model = model
        self.last_only = last_only

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(x)
        if isinstance(outputs, Tensor):
            return (outputs,)
        if self.last_only:
            return (outputs[-1],)
        return tuple(outputs)


def model_outputs(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The tensors a model returns for x, as a list (one tensor, or a list of them)."""
    with torch.no_grad():
        outputs = model(x)
    if isinstance(outputs, Tensor):
        return [outputs]
    if isinstance(outputs, (list, tuple)) and all(isinstance(o, Tensor) for o in outputs):
        return list(outputs)
    raise ExportError(f"the model returns a {type(outputs).__name__}; only a tensor or a list of "
                      f"tensors can be exported")


def output_names(cfg: CfgNode, outputs: list[Tensor], input_height: int,
                 all_stacks: bool) -> tuple[list[str], bool]:
    """Names of the exported outputs and whether only the last of the model's outputs is kept."""
    if is_bottom_up(cfg.MODEL.NAME):
        names = []
        for output in outputs:
            content = "heatmaps" if output.shape[1] <= cfg.MODEL.NUM_JOINTS else "heatmaps_tags"
            names.append(f"{content}_stride{max(1, round(input_height / output.shape[2]))}")
        if len(set(names)) != len(names):
            names = [f"{name}_{index}" for index, name in enumerate(names)]
        return names, False
    if len(outputs) == 1:
        return ["heatmaps"], False
    if all_stacks:
        return [f"heatmaps_stack{index}" for index in range(len(outputs))], False
    return ["heatmaps"], True


def export_input_shape(cfg: CfgNode, batch: int = 1) -> tuple[int, int, int, int]:
    """(batch, 3, height, width) of the network input an experiment is exported (and tested) at."""
    height, width = network_input_size(cfg)
    return batch, 3, int(height), int(width)


# --- export ------------------------------------------------------------------------------------

@contextlib.contextmanager
def _native_stdout_silenced():
    """Hide what the exporter's C++ side prints on file descriptor 1: the TorchScript exporter
    turns its own log on for every export and prints the whole graph (hundreds of lines) when it
    fails; the error itself is raised as usual."""
    try:
        libc = ctypes.CDLL(None)
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, AttributeError, TypeError, ValueError):  # no C library, or no descriptor 1
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            try:
                yield
            finally:
                libc.fflush(None)  # what C++ buffered goes to the null device, not the terminal
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _torchscript_export(module: nn.Module, example: Tensor, path: str, names: list[str],
                        dynamic_axes: dict, opset: int) -> list[str]:
    """torch.onnx.export with the TorchScript-based exporter; returns the warnings it gave (each
    once), less its own deprecation notice."""
    with warnings.catch_warnings(record=True) as caught, _native_stdout_silenced():
        warnings.simplefilter("always")
        torch.onnx.export(module, (example,), path, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes=dynamic_axes or None, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    messages = [str(w.message).splitlines()[0] for w in caught
                if not issubclass(w.category, DeprecationWarning)]
    return list(dict.fromkeys(messages))


def _first_line(error: BaseException, limit: int = 400) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[:limit] + " ..."


def _metadata(cfg: CfgNode, exported: ExportedModel, weights: str,
              shapes: dict[str, list]) -> dict[str, str]:
    dataset = split_source(cfg, is_train=False)[0]
    info = KEYPOINT_INFO.get(dataset)
    channel_order = "RGB" if cfg.DATASET.COLOR_RGB else "BGR"
    mean = ", ".join(f"{v:.3f}" for v in IMAGENET_MEAN)
    std = ", ".join(f"{v:.3f}" for v in IMAGENET_STD)
    entries = {
        "model": cfg.MODEL.NAME,
        "paradigm": "bottom-up" if exported.bottom_up else "top-down",
        "weights": weights,
        "input": (f"{INPUT_NAME} {shapes[INPUT_NAME]}: float32 NCHW, "
                  f"{channel_order} channel order, "
                  f"(pixel / 255 - mean [{mean}]) / std [{std}]"),
        "outputs": "; ".join(f"{name} {shapes[name]}" for name in exported.output_names),
        "num_joints": str(cfg.MODEL.NUM_JOINTS),
        "dataset": dataset,
        "config": cfg.dump(),
    }
    if info is not None:
        entries["keypoints"] = ",".join(info.keypoint_names)
    if exported.notes:
        entries["notes"] = " ".join(exported.notes)
    return {METADATA_PREFIX + key: value for key, value in entries.items()}


def _finish_file(path: str, metadata: dict[str, str]) -> None:
    """Add metadata to the ONNX file at path and check it with the ONNX checker."""
    onnx = _import_onnx()
    model = onnx.load(path)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the exported graph is not valid ONNX: {_first_line(error)}") from error
    onnx.save(model, path)


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("the 'onnx' package is not installed (pip install onnx)") from None
    return onnx


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("the 'onnxruntime' package is not installed (pip install onnxruntime)") \
            from None
    return onnxruntime


def export_onnx(model: nn.Module, cfg: CfgNode, path: str, *, opset: int = DEFAULT_OPSET,
                all_stacks: bool = False, fixed_batch: int | None = None,
                weights: str = "") -> ExportedModel:
    """Export model (built from cfg; moved to the CPU and put in eval mode) to the ONNX file path.

    The batch axis is dynamic unless fixed_batch is set; bottom-up models also get dynamic height
    and width. all_stacks: a model returning a list of stacks (the hourglass) exports every stack
    instead of the last (other models: no effect, with a warning). weights: what to record as the
    weights' origin in the metadata (default TEST.MODEL_FILE). The file is written under a
    temporary name beside path and renamed at the end: an export that fails leaves nothing
    behind. Raises ExportError for a model the exporter cannot handle, an opset it does not
    support or a path that is a folder (checked before any work).
    """
    check_exportable(cfg)
    check_export_options(opset, fixed_batch)
    check_output_file(path, "ONNX file")
    _import_onnx()
    model = model.cpu().eval()
    bottom_up = is_bottom_up(cfg.MODEL.NAME)
    batch = fixed_batch or 1
    shape = export_input_shape(cfg, batch)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    try:
        outputs = model_outputs(model, example)
    except RuntimeError as error:
        raise ExportError(f"{cfg.MODEL.NAME} does not run on a {tuple(shape)} input: "
                          f"{_first_line(error)}") from error
    names, last_only = output_names(cfg, outputs, shape[2], all_stacks)
    has_stacks = not bottom_up and len(outputs) > 1
    if all_stacks and not has_stacks:
        # Every output is exported anyway, so the file is what was asked for: a warning, not an
        # error, lets one command line export models of several families.
        logger.warning("all stacks asked for, but %s returns %s, not one per stack: the option "
                       "has no effect (only stacked models such as pose_hourglass have stacks)",
                       cfg.MODEL.NAME, "one output per resolution" if bottom_up
                       else "a single heatmap output")

    notes = []
    if has_stacks:
        notes.append(f"The model returns {len(outputs)} stacks; "
                     + ("all are exported." if not last_only else
                        "the last (decoded by the validation loop) is exported."))
    traced, replaced = batch_independent_copy(model)
    if replaced:
        notes.append(f"{replaced} dynamic convolutions rewritten batch-independently for export.")

    dynamic_axes: dict[str, dict[int, str]] = {}
    input_axes = {} if fixed_batch else {0: "batch"}
    if bottom_up:
        input_axes.update({2: "height", 3: "width"})
    if input_axes:
        dynamic_axes[INPUT_NAME] = input_axes
        for name in names:
            axes = {} if fixed_batch else {0: "batch"}
            if bottom_up:
                axes.update({2: f"{name}_height", 3: f"{name}_width"})
            dynamic_axes[name] = axes
    exported = ExportedModel(os.path.abspath(path), INPUT_NAME, names, dynamic_axes,
                             tuple(shape), bottom_up, all_stacks and has_stacks, notes)

    def symbolic(tensor_name: str, tensor_shape) -> list:
        axes = dynamic_axes.get(tensor_name, {})
        return [axes.get(axis, int(size)) for axis, size in enumerate(tensor_shape)]

    kept = outputs[-1:] if last_only else outputs
    shapes = {INPUT_NAME: symbolic(INPUT_NAME, shape)}
    shapes.update({name: symbolic(name, output.shape) for name, output in zip(names, kept)})

    with atomic_path(exported.path, keep_suffix=True) as temporary_path:
        temporary = str(temporary_path)
        try:
            messages = _torchscript_export(ExportModule(traced, last_only), example, temporary,
                                           names, dynamic_axes, opset)
        except OSError:  # writing the file failed (a full disk): not the model's fault
            raise
        except Exception as error:  # the exporter raises many unrelated types
            raise ExportError(f"{cfg.MODEL.NAME} cannot be exported to ONNX (opset {opset}): "
                              f"{type(error).__name__}: {_first_line(error)}") from error
        for message in messages:
            # The exporter's notes on its own constant folding say nothing about the result.
            level = logging.DEBUG if message.startswith("Constant folding") else logging.WARNING
            logger.log(level, "exporter: %s", message)
        _finish_file(temporary, _metadata(cfg, exported, weights or cfg.TEST.MODEL_FILE or
                                          "random initialisation", shapes))
    logger.info("exported %s to %s: %s %s -> %s", cfg.MODEL.NAME, exported.path, INPUT_NAME,
                shapes[INPUT_NAME], "; ".join(f"{n} {shapes[n]}" for n in names))
    return exported


# --- parity ------------------------------------------------------------------------------------

def default_check_shapes(exported: ExportedModel) -> list[tuple[int, ...]]:
    """The inputs the tool checks: the traced shape, then (dynamic batch) batch 2, and for
    bottom-up models with a wider input, so every dynamic axis is checked at a second value."""
    batch, channels, height, width = exported.example_shape
    second_batch = batch if exported.fixed_batch else 2
    second_width = width + BOTTOM_UP_EXTRA_WIDTH if exported.bottom_up else width
    shapes = [tuple(exported.example_shape)]
    if (second_batch, second_width) != (batch, width):
        shapes.append((second_batch, channels, height, second_width))
    return shapes


def onnx_session(path: str):
    """An onnxruntime CPU session of path, on as many threads as torch uses."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types
        raise ExportError(f"onnxruntime cannot load '{path}': {_first_line(error)}") from error


def check_onnx_parity(model: nn.Module, exported: ExportedModel,
                      input_shapes: list[tuple[int, ...]] | None = None,
                      seed: int = 0) -> list[ParityCheck]:
    """Run random normal inputs of input_shapes (default default_check_shapes) through model in
    PyTorch and through the exported file in onnxruntime's CPU provider; one ParityCheck each."""
    session = onnx_session(exported.path)
    model = model.cpu().eval()
    generator = torch.Generator().manual_seed(seed)
    checks = []
    for shape in input_shapes or default_check_shapes(exported):
        x = torch.randn(tuple(shape), generator=generator)
        reference = model_outputs(model, x)
        if len(exported.output_names) == 1 and len(reference) > 1:
            reference = reference[-1:]
        try:
            results = session.run(exported.output_names, {exported.input_name: x.numpy()})
        except Exception as error:  # onnxruntime's own exception types
            raise ExportError(f"onnxruntime cannot run '{exported.path}' on a {tuple(shape)} "
                              f"input: {_first_line(error)}") from error
        diffs, values = {}, {}
        for name, expected, actual in zip(exported.output_names, reference, results, strict=True):
            expected = expected.numpy()
            if actual.shape != expected.shape:
                raise ExportError(f"output {name} of '{exported.path}' has shape {actual.shape} "
                                  f"on a {tuple(shape)} input; PyTorch gives {expected.shape}")
            diffs[name] = float(np.max(np.abs(actual.astype(np.float64) - expected)))
            values[name] = float(np.max(np.abs(expected)))
        checks.append(ParityCheck(tuple(shape), diffs, values))
    return checks


def max_differences(checks: list[ParityCheck]) -> dict[str, float]:
    """The largest absolute difference of each output over all checks."""
    worst: dict[str, float] = {}
    for check in checks:
        for name, diff in check.max_abs_diff.items():
            worst[name] = max(worst.get(name, 0.0), diff)
    return worst


def format_parity(checks: list[ParityCheck]) -> str:
    """One line per check and output: input shape, output, max |difference|, max |value|."""
    lines = []
    for check in checks:
        shape = "x".join(str(size) for size in check.input_shape)
        for name, diff in check.max_abs_diff.items():
            lines.append(f"  input {shape:<16} {name:<24} max |diff| {diff:.3e}   "
                         f"(max |value| {check.max_abs_value[name]:.3e})")
    return "\n".join(lines)

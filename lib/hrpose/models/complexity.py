"""Parameter and multiply-add counts: true MACs, and the GFLOPs figure each paper's own tool
printed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import DeformConv2d

from ..config.model_extras import is_bottom_up
from .backbones.hrnext import KernelAggregation

# Operators whose FLOPs count as multiply-adds of a convolution (also transposed and deformable)
# or a linear layer.
_CONV_AND_LINEAR_OPS = frozenset({"convolution", "_convolution", "addmm", "mm", "deform_conv2d"})

# Layer types whose every call is recorded for the paper conventions.
_RECORDED_LAYERS = {nn.Conv2d: "conv", nn.ConvTranspose2d: "conv_transpose",
                    DeformConv2d: "deform_conv", nn.Linear: "linear"}
# Normalisation layers: no multiply-adds of note, but the 2020 regression repo's tool counts their
# parameters at every call.
_RECORDED_NORMS = (nn.BatchNorm2d,)


def _deform_conv2d_flops(input_shape, weight_shape, *args, out_shape, **kwargs) -> int:
    """FLOPs of torchvision's deform_conv2d as of a plain convolution with the same kernel:
    2 x (output elements) x (input channels per group x kernel taps); bilinear sampling is not
    counted, as the reference tools do not count it either."""
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


# torch.utils.flop_counter knows no torchvision operator; this teaches it the deformable one.
_CUSTOM_FLOP_FORMULAS = {torch.ops.torchvision.deform_conv2d: _deform_conv2d_flops}


# The rules of torchstat's compute_flops as HRNeXt's authors vendored it (tools/torchstat), for one
# call of a leaf module on a batch; any other module (GELU, LayerNorm, Sigmoid, ...) counts 0.
def _stat_conv(module: nn.Module, x: Tensor, y: Tensor) -> int:
    """Kernel taps x input channels x (output channels / groups) per output position, plus one
    per output element for a bias. Applied to the dynamic convolutions too (KernelAggregation,
    whose input is the unfolded batch): one sample's mixed kernel, the mixing itself uncounted."""
    kernel = module.kernel_size
    taps = kernel * kernel if isinstance(kernel, int) else math.prod(kernel)
    out_channels, positions = y.shape[1], y.shape[0] * math.prod(y.shape[2:])
    flops = taps * x.shape[1] * (out_channels // module.groups) * positions
    if getattr(module, "bias", None) is not None:
        flops += out_channels * positions
    return flops


def _stat_conv_transpose(module: nn.ConvTranspose2d, x: Tensor, y: Tensor) -> int:
    """As a convolution, but per input position; the bias per output element."""
    positions = x.shape[0] * math.prod(x.shape[2:])
    flops = math.prod(module.kernel_size) * module.in_channels * \
        (module.out_channels // module.groups) * positions
    if module.bias is not None:
        flops += module.out_channels * y.shape[0] * math.prod(y.shape[2:])
    return flops


def _stat_batch_norm(module: nn.BatchNorm2d, x: Tensor, y: Tensor) -> int:
    """One per input element, two with the affine scale and shift."""
    return x.numel() * (2 if module.affine else 1)


def _stat_adaptive_pool(module: nn.Module, x: Tensor, y: Tensor) -> int:
    """Per output cell, its input window's (rows + 1) x (columns + 1) (torchstat adds the 1)."""
    (height, width), (out_height, out_width) = x.shape[2:], y.shape[2:]

    def spans(size: int, cells: int) -> list[int]:
        return [math.ceil((c + 1) * size / cells) - math.floor(c * size / cells) + 1
                for c in range(cells)]

    cells = sum(r * c for r in spans(height, out_height) for c in spans(width, out_width))
    return x.shape[0] * x.shape[1] * cells


def _stat_pool(module: nn.Module, x: Tensor, y: Tensor) -> int:
    """Kernel taps per output element (torchstat recomputes the output size from kernel, stride
    and padding; the same wherever ceil_mode and dilation are off)."""
    kernel = module.kernel_size
    return (kernel * kernel if isinstance(kernel, int) else math.prod(kernel)) * y.numel()


def _stat_elementwise_input(module: nn.Module, x: Tensor, y: Tensor) -> int:
    return x.numel()


def _stat_elementwise_output(module: nn.Module, x: Tensor, y: Tensor) -> int:
    return y.numel()


def _stat_linear(module: nn.Linear, x: Tensor, y: Tensor) -> int:
    return x.shape[0] * x.shape[1] * y.shape[1]


_StatRule = Callable[[nn.Module, Tensor, Tensor], int]
_TORCHSTAT_RULES: tuple[tuple[tuple[type, ...], _StatRule], ...] = (
    ((nn.Conv2d, KernelAggregation), _stat_conv),
    ((nn.ConvTranspose2d,), _stat_conv_transpose),
    ((nn.BatchNorm2d,), _stat_batch_norm),
    ((nn.AvgPool2d, nn.MaxPool2d), _stat_pool),
    ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), _stat_adaptive_pool),
    ((nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU), _stat_elementwise_input),
    ((nn.Upsample,), _stat_elementwise_output),
    ((nn.Linear,), _stat_linear),
)


def _torchstat_rule(module: nn.Module) -> _StatRule | None:
    for types, rule in _TORCHSTAT_RULES:
        if isinstance(module, types):
            return rule
    return None


@dataclass(frozen=True)
class LayerCall:
    """One call of a convolution, linear or BatchNorm layer during the measured forward pass
    (batch 1)."""

    name: str
    kind: str  # "conv", "conv_transpose", "deform_conv", "linear" or "batch_norm"
    weight_numel: int
    num_params: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class Complexity:
    """What one forward pass of one image costs."""

    params: int  # trainable parameters, each counted once
    macs: int  # true multiply-adds of convolutions (transposed, deformable) and linear layers
    input_size: tuple[int, int]  # (height, width)
    layer_calls: tuple[LayerCall, ...]  # convolutions (all kinds) and linear layers
    norm_calls: tuple[LayerCall, ...] = ()  # BatchNorm layers
    # (module name, FLOPs) per call under the rules of HRNeXt's vendored torchstat
    torchstat_calls: tuple[tuple[str, int], ...] = ()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters; a tensor shared between layers counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure_complexity(model: nn.Module, input_size: tuple[int, int]) -> Complexity:
    """Run one (1, 3, H, W) image through model in eval mode and count its work.

    The input is created on the device of the model's parameters: build the model under
    ``torch.device("meta")`` and nothing is computed or allocated, so even ResNet-152 at 384x288
    costs milliseconds. True MACs come from torch.utils.flop_counter (its FLOPs / 2); the per-call
    records feed the papers' conventions.
    """
    height, width = input_size
    device = next(model.parameters()).device
    image = torch.zeros(1, 3, height, width, device=device)
    calls: list[LayerCall] = []
    norm_calls: list[LayerCall] = []
    stat_calls: list[tuple[str, int]] = []

    def record(name: str, kind: str, into: list[LayerCall]):
        def hook(module: nn.Module, inputs, output) -> None:
            into.append(LayerCall(name=name, kind=kind, weight_numel=module.weight.numel(),
                                  num_params=sum(p.numel() for p in module.parameters()),
                                  input_shape=tuple(inputs[0].shape),
                                  output_shape=tuple(output.shape)))
        return hook

    def record_stat(name: str, rule):
        def hook(module: nn.Module, inputs, output) -> None:
            stat_calls.append((name, int(rule(module, inputs[0], output))))
        return hook

    handles = []
    for name, module in model.named_modules():
        kind = _RECORDED_LAYERS.get(type(module))
        if kind is not None:
            handles.append(module.register_forward_hook(record(name, kind, calls)))
        elif isinstance(module, _RECORDED_NORMS):
            handles.append(module.register_forward_hook(record(name, "batch_norm", norm_calls)))
        rule = _torchstat_rule(module)
        if rule is not None:
            handles.append(module.register_forward_hook(record_stat(name, rule)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False,
                                              custom_mapping=_CUSTOM_FLOP_FORMULAS) as counter:
            model(image)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    flops = sum(count for op, count in counter.get_flop_counts()["Global"].items()
                if op.__name__ in _CONV_AND_LINEAR_OPS)
    return Complexity(params=count_parameters(model), macs=flops // 2,
                      input_size=(height, width), layer_calls=tuple(calls),
                      norm_calls=tuple(norm_calls), torchstat_calls=tuple(stat_calls))


def output_grid_macs(complexity: Complexity) -> int:
    """Multiply-adds as the forward hooks of the HRNet-family summary tools count them: every
    convolution, transposed and deformable ones included, as weight numel x output H x W, so a
    stride-2 transposed convolution counts 4x its real work; a linear layer as its real
    multiply-adds. A layer called twice counts twice."""
    total = 0
    for call in complexity.layer_calls:
        if call.kind == "linear":
            total += call.weight_numel * math.prod(call.output_shape[:-1])
        else:
            total += call.weight_numel * math.prod(call.output_shape[2:])
    return total


def hrnet_repo_gflops(complexity: Complexity) -> float:
    """HRNet, SimpleBaseline and DARK (get_model_summary): output-grid count / 2^30."""
    return output_grid_macs(complexity) / 2 ** 30


def higher_hrnet_gflops(complexity: Complexity) -> float:
    """HigherHRNet (its get_model_summary): the same output-grid hook count, / 1e9. W32 at 512:
    46.20e9 true multiply-adds, 47.86 by this count (the 1/2-resolution deconvolution counted
    4x)."""
    return output_grid_macs(complexity) / 1e9


def per_call_params(complexity: Complexity) -> int:
    """Parameters as the 2020 regression repo's get_model_summary adds them up: those of every
    convolution (also deformable and transposed), BatchNorm and linear layer, once per call. So
    the heatmap branches' shared weights count once per branch, and a layer run three times
    (pose_hrnet's transition_cls, final_layers[0]) three times (docs/regression.md, GFLOPs)."""
    return sum(call.num_params for call in complexity.layer_calls + complexity.norm_calls)


def hrnext_gflops(complexity: Complexity) -> float:
    """HRNeXt (the "Flops" total of its vendored torchstat, / 2^30): every convolution with its
    bias, the per-sample dynamic ones included (at one sample's mixed kernel), BatchNorm twice per
    element, the kernel attention's global pooling and the fusion's 2^k upsampling; not GELU,
    LayerNorm, the bank mixing or the resize after an odd-sized upsampling. The backbone only:
    without the 1x1 heatmap convolution (final_layer, 0.002 / 0.005) this gives the authors'
    2.523 (S 256x192) and 10.827 (B 384x288), printed as 2.5 and 10.8."""
    return sum(flops for name, flops in complexity.torchstat_calls
               if name.split(".")[0] != "final_layer") / 2 ** 30


@dataclass(frozen=True)
class FlopConvention:
    """How one paper's own tool turned a model into the GFLOPs figure the paper prints."""

    name: str
    description: str
    gflops: Callable[[Complexity], float]
    # The paper's parameter count where its tool counted differently from the unique count.
    params: Callable[[Complexity], int] | None = None


FLOP_CONVENTIONS: dict[str, FlopConvention] = {
    "hrnet_repo": FlopConvention(
        name="hrnet_repo",
        description="forward hooks on conv/deconv/linear, deconv on its output grid, / 2^30",
        gflops=hrnet_repo_gflops),
    "higher_hrnet": FlopConvention(
        name="higher_hrnet",
        description="forward hooks on conv/deconv/linear, deconv on its output grid, / 1e9",
        gflops=higher_hrnet_gflops),
    "hrnext": FlopConvention(
        name="hrnext",
        description="torchstat 'Flops' of the backbone as HRNeXt's tool counts them: convs (the "
                    "per-sample dynamic ones too) with biases, BatchNorm, pooling, upsampling, "
                    "/ 2^30",
        gflops=hrnext_gflops),
    "hrnet_bottom_up": FlopConvention(
        name="hrnet_bottom_up",
        description="forward hooks on conv/deform conv/deconv/linear, deconv on its output grid, "
                    "/ 1e9; every call counted, its parameters (with BatchNorm's) too",
        # The 2020 repo's get_model_summary is HigherHRNet's; its deformable convolutions'
        # class name contains "Conv", so they are counted like the others. W32 512: 64.9.
        gflops=higher_hrnet_gflops, params=per_call_params),
}

# MODEL.NAME -> the convention of the paper that model's experiments belong to.
CONVENTION_BY_MODEL: dict[str, str] = {
    "pose_hrnet": "hrnet_repo",
    "pose_resnet": "hrnet_repo",
    "pose_hourglass": "hrnet_repo",  # DARK's hourglass, measured with DARK's copy of that tool
    "pose_hrnext": "hrnext",
    "pose_higher_hrnet": "higher_hrnet",
    "pose_hrnet_regression": "hrnet_bottom_up",
    "pose_higher_hrnet_regression": "hrnet_bottom_up",
}


def network_input_size(cfg) -> tuple[int, int]:
    """(height, width) of the image an experiment feeds its network: MODEL.IMAGE_SIZE (top-down
    person crops) or the square DATASET.INPUT_SIZE (bottom-up training crops)."""
    if is_bottom_up(cfg.MODEL.NAME):
        return cfg.DATASET.INPUT_SIZE, cfg.DATASET.INPUT_SIZE
    width, height = cfg.MODEL.IMAGE_SIZE
    return height, width


def paper_convention(model_name: str) -> FlopConvention:
    """The FLOP convention for a MODEL.NAME; a clear error for a model without one."""
    try:
        return FLOP_CONVENTIONS[CONVENTION_BY_MODEL[model_name]]
    except KeyError:
        raise KeyError(f"no paper FLOP convention registered for model {model_name!r}; known: "
                       f"{', '.join(sorted(CONVENTION_BY_MODEL))}") from None


@dataclass(frozen=True)
class SummaryRow:
    """One line of tools/summary_network.py's table."""

    experiment: str
    model_name: str
    input_size: tuple[int, int]  # (height, width)
    params: int  # unique parameters
    macs: int
    paper_gflops: float
    convention: str
    paper_params: int | None = None  # the paper's parameter count, where its convention differs


def summarize(model: nn.Module, model_name: str, input_size: tuple[int, int],
              experiment: str = "") -> SummaryRow:
    """Measure model and express the result both as true MACs and in its paper's convention."""
    complexity = measure_complexity(model, input_size)
    convention = paper_convention(model_name)
    paper_params = convention.params(complexity) if convention.params is not None else None
    return SummaryRow(experiment=experiment, model_name=model_name, input_size=input_size,
                      params=complexity.params, macs=complexity.macs,
                      paper_gflops=convention.gflops(complexity), convention=convention.name,
                      paper_params=paper_params)


def format_summary_table(rows: list[SummaryRow]) -> str:
    """A plain-text table: experiment, model, input (HxW, as experiment names and papers write it),
    params (M, each tensor once), true GMACs, the paper's params (M) when some row's convention
    counts them differently, paper GFLOPs and the convention's name."""
    with_paper_params = any(row.paper_params is not None for row in rows)
    header = ("experiment", "model", "input (HxW)", "params (M)", "true GMACs",
              *(("paper params (M)",) if with_paper_params else ()), "paper GFLOPs", "convention")
    lines = [header]
    for row in rows:
        height, width = row.input_size
        paper_params = "-" if row.paper_params is None else f"{row.paper_params / 1e6:.3f}"
        lines.append((row.experiment or "-", row.model_name, f"{height}x{width}",
                      f"{row.params / 1e6:.3f}", f"{row.macs / 1e9:.2f}",
                      *((paper_params,) if with_paper_params else ()), f"{row.paper_gflops:.2f}",
                      row.convention))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = ["  ".join(cell.ljust(width)
                          for cell, width in zip(line, widths, strict=True)).rstrip()
                for line in lines]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    conventions = {row.convention for row in rows}
    notes = [f"{name}: {FLOP_CONVENTIONS[name].description}" for name in sorted(conventions)]
    return "\n".join(rendered + [""] + notes)

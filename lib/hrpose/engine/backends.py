"""Inference engines behind TEST.BACKEND: the eager model, a folded channels-last copy, onnxruntime,
OpenVINO.

    model = inference_model(cfg, model, device)   # after the weights are loaded
    heatmaps = model(images)                      # same call, same output structure

- ``eager``: the PyTorch module as built (the default).
- ``fused``: a copy with every Conv-BatchNorm pair folded (models.fuse) in channels-last memory
  format, so oneDNN runs NHWC kernels without reordering between layers.
- ``onnxruntime`` and ``openvino``: the model exported in memory with the TorchScript-based ONNX
  exporter and run on the CPU on as many threads as torch uses, by an onnxruntime session at the
  highest graph optimisation level (which includes the NCHWc layout transformer on x86), or
  compiled by OpenVINO's CPU plugin in float32 (a large batch split over parallel streams). The
  batch axis is dynamic (one export serves the full and the last, smaller batch and the flipped
  batch); bottom-up models also get dynamic height and width, so the per-image input sizes of
  the bottom-up test pipeline reuse the same compiled graph. HRNeXt's dynamic convolutions fold
  the batch into the group count of a convolution, a number the exported graph has to know:
  those models get one export per batch size. Exports live in memory for the life of the engine
  and leave no files.

Models an engine cannot take (the regression models' deformable convolutions have no ONNX
export; a model torch.fx cannot trace cannot be fused) run eagerly, with one warning.
"""

from __future__ import annotations

import importlib
import io
import logging
import re
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree
from yacs.config import CfgNode

from ..config import ConfigError
from ..config.model_extras import is_bottom_up, is_regression
from ..errors import HrposeError
from ..models.backbones.hrnext import KernelAggregation
from ..models.fuse import fuse_conv_bn

logger = logging.getLogger(__name__)

BACKENDS = ("eager", "fused", "onnxruntime", "openvino")
ONNX_OPSET = 17
INPUT_NAME = "input"
# A compiled graph: the input array in, the output arrays out (in the exported order).
RunGraph = Callable[[np.ndarray], list[np.ndarray]]
_SOURCE_LOCATION = re.compile(r"Exception from \S+:\d+:")


def inference_model(cfg: CfgNode, model: nn.Module, device: torch.device,
                    backend: str | None = None) -> nn.Module:
    """model (weights loaded, on device) run by backend (default TEST.BACKEND), in eval mode.

    The result is called like model and returns the same structure of tensors (one tensor, or a
    list of them), on the CPU for onnxruntime and openvino. Raises ConfigError for a backend that
    cannot run on device or whose package is not installed.
    """
    backend = cfg.TEST.BACKEND if backend is None else backend
    model = model.eval()
    if backend == "eager":
        return model
    if backend not in BACKENDS:
        raise ConfigError(f"TEST.BACKEND is {backend!r}; allowed: "
                          f"{', '.join(repr(name) for name in BACKENDS)}")
    if backend == "fused":
        return _fused(model, cfg.MODEL.NAME)
    if torch.device(device).type != "cpu":
        raise ConfigError(f"TEST.BACKEND {backend!r} runs on the CPU but the model is on "
                          f"{device}; use TEST.BACKEND eager or fused there, or DEVICE cpu")
    if is_regression(cfg.MODEL.NAME):
        logger.warning("TEST.BACKEND %s: %s runs eagerly, its adaptive convolutions "
                       "(torchvision deformable convolutions) have no ONNX export",
                       backend, cfg.MODEL.NAME)
        return model
    return EXPORTED_ENGINES[backend](model, dynamic_size=is_bottom_up(cfg.MODEL.NAME))


def _fused(model: nn.Module, model_name: str) -> nn.Module:
    try:
        fused = fuse_conv_bn(model)
    except HrposeError as error:
        logger.warning("TEST.BACKEND fused: %s runs eagerly, %s", model_name, error)
        return model
    return fused.to(memory_format=torch.channels_last)


def _import_runtime(backend: str, package: str):
    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise ConfigError(f"TEST.BACKEND {backend!r} needs the {package} package "
                          f"(pip install -r requirements.txt)") from error


class ExportedModel(nn.Module):
    """model exported to ONNX in memory on first use and run on the CPU by the runtime of a
    subclass (one compiled graph per session key).

    dynamic_size: height and width are dynamic axes too (bottom-up inputs vary per image).
    The wrapped model stays a submodule: its parameters say where inputs go, and it traces the
    exports. A subclass names its TEST.BACKEND value and package, and turns a serialized graph
    into a function from the input array to the output arrays (_compile).
    """

    backend = ""
    package = ""

    def __init__(self, model: nn.Module, dynamic_size: bool = False) -> None:
        super().__init__()
        # Imported here so that a missing package fails when the engine is made, not mid-run.
        self._runtime = _import_runtime(self.backend, self.package)
        self.model = model.eval()
        self.dynamic_size = dynamic_size
        # The batch folds into the group count of HRNeXt's per-sample kernels (see module doc).
        self.fixed_batch = any(isinstance(m, KernelAggregation) for m in model.modules())
        self._sessions: dict[tuple, tuple[RunGraph, pytree.TreeSpec]] = {}

    def session_key(self, shape: torch.Size) -> tuple:
        """The input shape with its dynamic axes left out: inputs with the same key share one
        exported graph and session."""
        batch, channels, height, width = shape
        return (None if not self.fixed_batch else batch, channels,
                None if self.dynamic_size else height, None if self.dynamic_size else width)

    @property
    def exports(self) -> int:
        """How many graphs were exported (one per session key seen)."""
        return len(self._sessions)

    def forward(self, images: Tensor):
        if images.dim() != 4:
            raise ValueError(f"expected an NCHW image batch, got shape {tuple(images.shape)}")
        key = self.session_key(images.shape)
        if key not in self._sessions:
            self._sessions[key] = self._export(images)
        run, spec = self._sessions[key]
        outputs = run(images.detach().to("cpu", torch.float32).contiguous().numpy())
        return pytree.tree_unflatten([torch.from_numpy(output) for output in outputs], spec)

    def _export(self, images: Tensor) -> tuple[RunGraph, pytree.TreeSpec]:
        example = images[:1] if not self.fixed_batch else images
        example = example.detach().to("cpu", torch.float32).contiguous()
        with torch.no_grad():
            leaves, spec = pytree.tree_flatten(self.model(example))
        if not all(isinstance(leaf, Tensor) and leaf.dim() == 4 for leaf in leaves):
            raise HrposeError(f"TEST.BACKEND {self.backend} runs models that return NCHW "
                              f"tensors; {type(self.model).__name__} returns {spec}")
        names = [f"output{index}" for index in range(len(leaves))]
        # In eval mode: the exporter afterwards puts the whole tree back in the wrapper's mode.
        graph = _export_graph(_Flat(self.model).eval(), example, names, self._dynamic_axes(names),
                              self.backend)
        threads = torch.get_num_threads()
        try:
            run = self._compile(graph, names, threads)
        except Exception as error:  # each runtime raises its own types
            raise HrposeError(f"TEST.BACKEND {self.backend} cannot compile the export of "
                              f"{type(self.model).__name__}: {_first_line(error)}; use "
                              f"TEST.BACKEND eager") from error
        logger.info("TEST.BACKEND %s: exported %s for inputs %s (%d threads)", self.backend,
                    type(self.model).__name__, _describe(self.session_key(images.shape)),
                    threads)
        return run, spec

    def _compile(self, graph: bytes, names: list[str], threads: int) -> RunGraph:
        """A function that runs the serialized ONNX graph on threads threads and returns the
        outputs called names, in that order, as arrays the caller may keep."""
        raise NotImplementedError

    def _dynamic_axes(self, names: list[str]) -> dict[str, dict[int, str]]:
        axes: dict[int, str] = {} if self.fixed_batch else {0: "batch"}
        if self.dynamic_size:
            axes.update({2: "height", 3: "width"})
        if not axes:
            return {}
        dynamic = {INPUT_NAME: axes}
        for name in names:
            per_output = {axis: f"{name}_{label}" for axis, label in axes.items()}
            dynamic[name] = per_output
        return dynamic


class OnnxRuntimeModel(ExportedModel):
    """The exported graph run by an onnxruntime CPU session at the highest graph optimisation
    level."""

    backend = "onnxruntime"
    package = "onnxruntime"

    def _compile(self, graph: bytes, names: list[str], threads: int) -> RunGraph:
        onnxruntime = self._runtime
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(graph, options,
                                               providers=["CPUExecutionProvider"])
        return lambda array: session.run(names, {INPUT_NAME: array})


class OpenVinoModel(ExportedModel):
    """The exported graph compiled by OpenVINO for its CPU plugin, in float32.

    A batch of fewer images than threads runs as one request on all the threads; a larger one
    (unless the batch is fixed) is split into one part per thread, and the parts run at once as
    parallel streams of one thread each: HRNet's many small low-resolution layers leave threads
    that share one image waiting on each other.
    """

    backend = "openvino"
    package = "openvino"

    def _compile(self, graph: bytes, names: list[str], threads: int) -> RunGraph:
        core = self._runtime.Core()
        network = core.read_model(graph)
        # Float32 is explicit: on CPUs with bf16 (AMX, AVX512-BF16) the plugin's default
        # precision is bf16, whose maps are far outside eager's. The graph is read from bytes:
        # no file to write and remove.
        properties = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
        whole = core.compile_model(network, "CPU", {**properties, "PERFORMANCE_HINT": "LATENCY"})
        whole_request = whole.create_infer_request()
        whole_ports = [whole.output(name) for name in names]
        stream_requests, stream_ports = [], []
        if not self.fixed_batch and threads > 1:
            parallel = core.compile_model(network, "CPU", {
                **properties, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads})
            # The plugin makes no more streams than there are cores.
            streams = int(parallel.get_property("NUM_STREAMS"))
            stream_requests = [parallel.create_infer_request() for _ in range(streams)]
            stream_ports = [parallel.output(name) for name in names]

        def run(array: np.ndarray) -> list[np.ndarray]:
            if len(stream_requests) < 2 or len(array) < len(stream_requests):
                # share_outputs stays False: the request reuses its output buffers next call.
                results = whole_request.infer({INPUT_NAME: array}, share_inputs=True)
                return [results[port] for port in whole_ports]
            parts = np.array_split(array, len(stream_requests))
            for request, part in zip(stream_requests, parts):
                request.start_async({INPUT_NAME: part}, share_inputs=True)
            for request in stream_requests:
                request.wait()
            return [np.concatenate([request.get_tensor(port).data for request in stream_requests])
                    for port in stream_ports]

        return run


EXPORTED_ENGINES: dict[str, type[ExportedModel]] = {"onnxruntime": OnnxRuntimeModel,
                                                    "openvino": OpenVinoModel}


class _Flat(nn.Module):
    """The model with its outputs flattened to a tuple of tensors, as the exporter wants them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(pytree.tree_leaves(self.model(images)))


def _export_graph(module: nn.Module, example: Tensor, names: list[str], dynamic_axes: dict,
                  backend: str) -> bytes:
    """The serialized ONNX graph of module traced on example."""
    buffer = io.BytesIO()
    # The TorchScript exporter's tracer and deprecation notices concern its own use, not the
    # graph: they would only clutter the log of every run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), buffer, input_names=[INPUT_NAME],
                              output_names=names, dynamic_axes=dynamic_axes or None,
                              opset_version=ONNX_OPSET, do_constant_folding=True, dynamo=False)
        except Exception as error:  # the exporter raises many unrelated types
            raise HrposeError(f"TEST.BACKEND {backend} cannot export "
                              f"{type(module.model).__name__}: {_first_line(error)}; use "
                              f"TEST.BACKEND eager") from error
    return buffer.getvalue()


def _first_line(error: Exception) -> str:
    """The first line of error's message that says what went wrong."""
    # OpenVINO prefixes its messages with one "Exception from <source file>:<line>:" line per
    # stack frame.
    lines = [line for line in str(error).strip().splitlines()
             if line.strip() and not _SOURCE_LOCATION.fullmatch(line.strip())]
    return lines[0] if lines else type(error).__name__


def _describe(key: tuple) -> str:
    return "x".join("?" if size is None else str(size) for size in key)


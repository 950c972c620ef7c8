"""Checkpoint files: safe loading, prefix stripping, strict loading with a key report, atomic
saving."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import HrposeError
from ..utils.io import atomic_write

logger = logging.getLogger(__name__)

# Prefixes that wrappers add to every key: DataParallel/DDP ("module.") and the
# nn.Sequential(normalisation, model) wrapper some released bottom-up checkpoints came from ("1.").
WRAPPER_PREFIXES = ("module.", "1.")
# MMPose top-down checkpoints (HRNeXt's) keep the trunk under 'backbone.' and the head under
# 'keypoint_head.'; our models hold both at the top level.
MMPOSE_PREFIXES = ("backbone.", "keypoint_head.")

# Keys under which training checkpoints nest their weights.
NESTED_STATE_KEYS = ("state_dict", "model", "best_state_dict")


class CheckpointError(HrposeError, RuntimeError):
    """A checkpoint file that is missing, unreadable, or does not fit the model."""


def load_checkpoint_file(path: str) -> Any:
    """torch.load a file on the CPU with weights_only=True; clear errors for missing or bad
    files."""
    if not path:
        raise CheckpointError("no checkpoint path given (set TEST.MODEL_FILE or MODEL.PRETRAINED)")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: '{path}' (expected a .pth file written by "
                              f"torch.save; official checkpoints go under models/, "
                              f"see models/README.md)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"'{path}' is not a PyTorch checkpoint (the file is empty)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt files
        reason = _load_failure_reason(error)
        if "Unsupported global" in reason:
            raise CheckpointError(f"cannot read checkpoint '{path}': it holds Python objects other "
                                  f"than tensors, numbers and containers, which hrpose does not "
                                  f"unpickle ({reason})") from error
        raise CheckpointError(f"'{path}' is not a PyTorch checkpoint ({reason})") from error


def _load_failure_reason(error: Exception) -> str:
    """One line saying why torch.load failed: the error type and the first sentence of its cause.
    The weights-only unpickler puts its cause after 'WeightsUnpickler error:', below lines of
    advice about loading unsafely."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first_sentence = first_line.split(". ", 1)[0].rstrip(".")
    return f"{type(error).__name__}: {first_sentence}" if first_sentence else type(error).__name__


def extract_state_dict(checkpoint: Any,
                       source: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """The tensor mapping inside a checkpoint: a bare state dict or one nested under a known key."""
    if isinstance(checkpoint, Mapping):
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return OrderedDict(checkpoint)
        for key in NESTED_STATE_KEYS:
            nested = checkpoint.get(key)
            if isinstance(nested, Mapping) and all(isinstance(v, torch.Tensor)
                                                   for v in nested.values()):
                return OrderedDict(nested)
    raise CheckpointError(f"{source} holds no state dict (expected a mapping of parameter names to "
                          f"tensors, or one under {', '.join(repr(k) for k in NESTED_STATE_KEYS)})")


def strip_wrapper_prefixes(
        state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Remove a 'module.' or '1.' prefix when every key carries it (repeatedly, e.g. 'module.1.'),
    then MMPose's 'backbone.' / 'keypoint_head.' when every key carries one of them."""
    result = OrderedDict(state_dict)
    changed = True
    while changed and result:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in result):
                result = OrderedDict((key[len(prefix):], value) for key, value in result.items())
                changed = True
    if result and all(key.startswith(MMPOSE_PREFIXES) for key in result):
        result = OrderedDict((key.split(".", 1)[1], value) for key, value in result.items())
    return result


def _format_keys(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def compare_state_dicts(
        expected: Mapping[str, torch.Tensor],
        given: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys, and keys whose shapes differ ("key: given vs expected")."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    mismatched = [f"{key}: {tuple(given[key].shape)} in file vs {tuple(value.shape)} in model"
                  for key, value in expected.items()
                  if key in given and tuple(given[key].shape) != tuple(value.shape)]
    return missing, unexpected, mismatched


def non_finite_tensors(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity.

    One fused max-norm over all of them and one host sync: cheap enough before every save.
    """
    names = [name for name, tensor in state_dict.items()
             if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
             and tensor.numel()]
    if not names:
        return []
    # The max-norm is NaN or inf exactly when the tensor holds one (NaN propagates through max).
    norms = torch._foreach_norm([state_dict[name].detach() for name in names], float("inf"))
    finite = torch.stack([norm.float() for norm in norms]).isfinite().tolist()
    return [name for name, ok in zip(names, finite) if not ok]


def warn_if_non_finite(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """One warning naming source when tensors hold NaN or inf: such a model predicts nothing
    sensible (evaluation gives AP 0) although it loads."""
    bad = non_finite_tensors(state_dict)
    if bad:
        logger.warning("%s holds NaN or infinite values in %d of %d tensors (%s): it was saved "
                       "from a diverged run, and its predictions are meaningless", source,
                       len(bad), len(state_dict), _format_keys(bad, 3))


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str = "checkpoint") -> None:
    """Load every tensor or fail with one error listing missing, unexpected and mis-shaped keys."""
    state_dict = strip_wrapper_prefixes(state_dict)
    missing, unexpected, mismatched = compare_state_dicts(model.state_dict(), state_dict)
    # Checkpoints from before BatchNorm counted batches have no num_batches_tracked; that is
    # harmless.
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit the model {type(model).__name__} "
                 f"(is the config the one this checkpoint was trained with?):"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_format_keys(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_format_keys(unexpected)}")
        if mismatched:
            lines.append(f"  mis-shaped keys ({len(mismatched)}): {_format_keys(mismatched, 5)}")
        raise CheckpointError("\n".join(lines))
    warn_if_non_finite(state_dict, source)
    model.load_state_dict(state_dict, strict=False)


def load_model_weights(model: nn.Module, path: str) -> None:
    """Load a model file (bare state dict or training checkpoint) strictly into model."""
    state_dict = extract_state_dict(load_checkpoint_file(path), source=f"checkpoint '{path}'")
    load_state_dict_strict(model, state_dict, source=f"checkpoint '{path}'")
    logger.info("loaded weights from %s", path)


def _check_plain(value: Any, where: str) -> None:
    if (isinstance(value, torch.Tensor) or value is None
            or isinstance(value, (bool, int, float, str))):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(f"checkpoint entry {where} is a {type(value).__name__}; only tensors and plain "
                    f"Python numbers, strings, lists and dicts may be saved (weights_only loading)")


def save_checkpoint_atomic(obj: Any, path: str) -> None:
    """torch.save into a temporary file beside path, synced and renamed over it, so no
    half-written file remains (see hrpose.utils.io.atomic_write)."""
    _check_plain(obj, "checkpoint")
    with atomic_write(path, "wb") as stream:
        torch.save(obj, stream)

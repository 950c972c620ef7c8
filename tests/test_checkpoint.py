"""Checkpoint loading and saving: weights_only, prefix stripping, strict key report, atomic
writes."""

import os
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from hrpose.utils.checkpoint import (
    CheckpointError,
    extract_state_dict,
    load_checkpoint_file,
    load_model_weights,
    load_state_dict_strict,
    save_checkpoint_atomic,
    strip_wrapper_prefixes,
)


class Payload:
    """An arbitrary class: weights_only loading must refuse to unpickle it."""


class TinyNet(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Conv2d(width, 2, 1)


def test_round_trip_restores_every_tensor(tmp_path):
    source, target = TinyNet(), TinyNet()
    torch.nn.init.normal_(source.conv.weight)
    path = tmp_path / "model.pth"
    save_checkpoint_atomic(source.state_dict(), str(path))
    load_model_weights(target, str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key


@pytest.mark.parametrize("prefix", ["module.", "1.", "module.1."])
def test_wrapper_prefixes_are_stripped(tmp_path, prefix):
    source, target = TinyNet(), TinyNet()
    torch.nn.init.normal_(source.head.weight)
    prefixed = OrderedDict((prefix + k, v) for k, v in source.state_dict().items())
    path = tmp_path / "prefixed.pth"
    torch.save(prefixed, path)
    load_model_weights(target, str(path))
    assert torch.equal(target.head.weight, source.head.weight)


def test_prefix_only_stripped_when_every_key_has_it():
    state = OrderedDict([("module.a", torch.zeros(1)), ("b", torch.zeros(1))])
    assert list(strip_wrapper_prefixes(state)) == ["module.a", "b"]


def test_mmpose_backbone_and_head_prefixes_are_stripped(tmp_path):
    source, target = TinyNet(), TinyNet()
    torch.nn.init.normal_(source.head.weight)
    mmpose = OrderedDict(
        (("keypoint_head." if key.startswith("head") else "backbone.") + key, value)
        for key, value in source.state_dict().items())
    path = tmp_path / "mmpose.pth"
    torch.save({"meta": {"epoch": 300}, "state_dict": mmpose}, path)
    load_model_weights(target, str(path))
    assert torch.equal(target.head.weight, source.head.weight)
    # Only when every key has one of them: a model with a 'backbone' attribute keeps its keys.
    mixed = OrderedDict([("backbone.a", torch.zeros(1)), ("neck.b", torch.zeros(1))])
    assert list(strip_wrapper_prefixes(mixed)) == ["backbone.a", "neck.b"]


def test_training_checkpoint_nested_state_dict_is_found():
    weights = TinyNet().state_dict()
    assert list(extract_state_dict({"epoch": 3, "state_dict": weights})) == list(weights)
    with pytest.raises(CheckpointError, match="no state dict"):
        extract_state_dict({"epoch": 3})


def test_mismatch_reports_missing_unexpected_and_misshaped_keys():
    model = TinyNet(width=4)
    other = TinyNet(width=8).state_dict()
    other["extra.weight"] = torch.zeros(1)
    del other["head.bias"]
    with pytest.raises(CheckpointError) as error:
        load_state_dict_strict(model, other, source="checkpoint 'x.pth'")
    message = str(error.value)
    assert "checkpoint 'x.pth' does not fit the model TinyNet" in message
    assert "missing keys (1): head.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "conv.weight: (8, 3, 3, 3) in file vs (4, 3, 3, 3) in model" in message
    # Nothing was loaded from the bad checkpoint.
    assert model.conv.weight.shape == (4, 3, 3, 3)


def test_missing_num_batches_tracked_is_tolerated():
    source, target = TinyNet(), TinyNet()
    state = OrderedDict((k, v) for k, v in source.state_dict().items()
                        if not k.endswith("num_batches_tracked"))
    load_state_dict_strict(target, state)


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found: '.*nothing.pth'"):
        load_checkpoint_file(str(tmp_path / "nothing.pth"))



@pytest.mark.parametrize("kind", ["text", "random bytes", "empty", "cut short"])
def test_a_file_that_is_no_checkpoint_gives_one_line_naming_it(kind, tmp_path):
    path = tmp_path / "corrupt.pth"
    torch.save({"w": torch.zeros(3)}, path)
    contents = {"text": b"this is not a checkpoint\n",
                "random bytes": torch.randint(0, 256, (2000,), dtype=torch.uint8,
                                              generator=torch.Generator().manual_seed(0)).numpy()
                .tobytes(),
                "empty": b"", "cut short": path.read_bytes()[:200]}
    path.write_bytes(contents[kind])
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint_file(str(path))
    message = str(raised.value)
    assert "\n" not in message
    assert re.fullmatch(rf"'{re.escape(str(path))}' is not a PyTorch checkpoint \(.+\)", message)


def test_weights_only_refuses_arbitrary_objects_in_one_line(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": TinyNet().state_dict(), "obj": Payload()}, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint_file(str(path))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"cannot read checkpoint '{path}': it holds Python objects other "
                              f"than tensors")
    assert "Payload" in message


def test_save_refuses_non_plain_values_and_leaves_nothing(tmp_path):
    path = tmp_path / "bad.pth"
    with pytest.raises(TypeError, match="checkpoint.extra"):
        save_checkpoint_atomic({"extra": object()}, str(path))
    assert os.listdir(tmp_path) == []


def test_atomic_save_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint_atomic({"epoch": 1}, str(path))

    def exploding_save(obj, stream):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint_atomic({"epoch": 2}, str(path))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pth"]
    assert load_checkpoint_file(str(path)) == {"epoch": 1}

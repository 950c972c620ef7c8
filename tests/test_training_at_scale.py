"""Training at scale on CPU: mid-epoch resume, bf16 autocast, NaN stops, samplers, LR scaling."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from hrpose.config import ConfigError, load_config
from hrpose.datasets.build import build_topdown_dataset
from hrpose.engine import bottomup, topdown, trainer
from hrpose.engine.device import autocast_dtype, check_sync_batchnorm, memory_format
from hrpose.engine.distributed import ShardSampler, TrainSampler
from hrpose.engine.loop import EpochOptions, NonFiniteLossError
from hrpose.engine.run_dir import create_run
from hrpose.engine.schedule import base_learning_rate
from hrpose.errors import HrposeError
from hrpose.losses.joints_mse import JointsMSELoss, build_topdown_loss
from hrpose.models import build_model, registry
from hrpose.utils.checkpoint import load_checkpoint_file
from tiny_runs import SYNTHETIC_CFG, TinyBNPoseNet, make_tiny_dataset, tiny_topdown_config

RUN = ("output", "synthetic", "pose_hrnet", "w16_128x96_adam_lr2e-3")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    # Seed 3: 6 training persons, so batches of 2 make 3 iterations per epoch.
    return make_tiny_dataset(tmp_path_factory, "synthetic_scale", seed=3, num_val=2)


def tiny_config(repo_root, data_root, output_root, *extra):
    """Batches of 2, two epochs, no validation within them."""
    return tiny_topdown_config(repo_root, data_root, output_root, "TRAIN.VAL_INTERVAL", "5",
                               *extra, train_batch=2)


@pytest.fixture
def tiny_model(monkeypatch):
    monkeypatch.setitem(registry.MODEL_BUILDERS, "pose_hrnet",
                        lambda cfg: TinyBNPoseNet(cfg.MODEL.NUM_JOINTS))


class SimulatedKill(BaseException):
    """Stands for SIGKILL: raised right after a chosen checkpoint reached the disk."""


def test_run_killed_mid_epoch_resumes_to_the_same_weights_and_rate(repo_root, tiny_data,
                                                                   tmp_path, monkeypatch,
                                                                   tiny_model):
    # Warm-up over 4 of the 6 iterations and a decay at epoch 1: every iteration has its own
    # rate, so a resume at the wrong place in the schedule shows. fp16 brings a loss scaler
    # whose growth tracker counts the steps.
    opts = ("TRAIN.WARMUP_ITERS", "4", "TRAIN.CHECKPOINT_EVERY", "2", "TRAIN.AMP", "fp16")
    straight = tiny_config(repo_root, tiny_data, tmp_path / "a", *opts)
    trainer.train(straight, create_run(straight, SYNTHETIC_CFG, "train"))

    save = trainer.save_checkpoint_atomic

    def save_then_kill(content, path):
        save(content, path)
        if isinstance(content, dict) and content.get("epoch") == 1 and content.get("iteration"):
            raise SimulatedKill(content["iteration"])

    killed = tiny_config(repo_root, tiny_data, tmp_path / "b", *opts)
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "save_checkpoint_atomic", save_then_kill)
        with pytest.raises(SimulatedKill):
            trainer.train(killed, create_run(killed, SYNTHETIC_CFG, "train"))
    at_kill = load_checkpoint_file(str(tmp_path.joinpath("b", *RUN, "checkpoint.pth")))
    # Killed inside epoch 1 (global step 4 of 6): the resume must start mid-epoch.
    assert (at_kill["epoch"], at_kill["iteration"], at_kill["global_step"]) == (1, 1, 4)
    assert at_kill["iterations_per_epoch"] == 3

    resumed = tiny_config(repo_root, tiny_data, tmp_path / "b", *opts, "AUTO_RESUME", "True")
    trainer.train(resumed, create_run(resumed, SYNTHETIC_CFG, "train"))

    a = load_checkpoint_file(str(tmp_path.joinpath("a", *RUN, "checkpoint.pth")))
    b = load_checkpoint_file(str(tmp_path.joinpath("b", *RUN, "checkpoint.pth")))
    assert a["global_step"] == b["global_step"] == 6
    assert (a["epoch"], a["iteration"]) == (b["epoch"], b["iteration"]) == (2, 0)
    # Position 5: past the warm-up, after the decay at epoch 1: 2e-3 x 0.1.
    assert a["learning_rate"] == b["learning_rate"] == pytest.approx(2e-4)
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == \
        [g["lr"] for g in b["optimizer"]["param_groups"]]
    assert a["scaler"] == b["scaler"] and a["scaler"]["_growth_tracker"] == 6
    assert a["best_perf"] == b["best_perf"] and a["best_epoch"] == b["best_epoch"] == 1
    for key, value in a["state_dict"].items():
        # Same process, same kernels, same data order: equal up to float noise.
        assert torch.allclose(value.float(), b["state_dict"][key].float(), rtol=0, atol=1e-6), key


def test_resuming_mid_epoch_with_another_total_batch_is_refused(repo_root, tiny_data, tmp_path,
                                                                tiny_model):
    cfg = tiny_config(repo_root, tiny_data, tmp_path, "TRAIN.END_EPOCH", "1")
    paths = create_run(cfg, SYNTHETIC_CFG, "train")
    trainer.train(cfg, paths)
    path = tmp_path.joinpath(*RUN, "checkpoint.pth")
    checkpoint = load_checkpoint_file(str(path))
    checkpoint["iteration"] = 1
    torch.save(checkpoint, path)
    other = tiny_config(repo_root, tiny_data, tmp_path, "AUTO_RESUME", "True",
                        "TRAIN.BATCH_SIZE_PER_GPU", "3")
    with pytest.raises(HrposeError, match="total batch of 2, but this run's total batch is 3"):
        trainer.train(other, create_run(other, SYNTHETIC_CFG, "train"))


def tiny_model_and_batch(repo_root, tiny_data, tmp_path):
    cfg = tiny_config(repo_root, tiny_data, tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg, is_train=True)
    loader = trainer.make_loader(cfg, build_topdown_dataset(cfg, is_train=True), True,
                                 torch.device("cpu"))
    return cfg, model, next(iter(loader))


def test_bf16_autocast_trains_a_step_on_cpu(repo_root, tiny_data, tmp_path):
    cfg, model, batch = tiny_model_and_batch(repo_root, tiny_data, tmp_path)
    mse = build_topdown_loss(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    model.final_layer.register_forward_hook(lambda module, args, out: seen.append(out.dtype))

    def criterion(output, target, target_weight):
        seen.append(output.dtype)
        return mse(output, target, target_weight)

    model.to(memory_format=torch.channels_last)
    options = EpochOptions(amp_dtype=torch.bfloat16, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss, steps = topdown.train_one_epoch(model, [batch], criterion, optimizer,
                                          torch.device("cpu"), 0, 1, options=options)
    # The forward pass ran in bfloat16; the loss saw (and optimised) float32 heatmaps.
    assert seen == [torch.bfloat16, torch.float32]
    assert steps == 1 and math.isfinite(loss)
    changed = [k for k, v in model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert "final_layer.weight" in changed and all(
        p.dtype == torch.float32 for p in model.parameters())


class NaNAtIteration(nn.Module):
    """A 1x1 convolution whose output turns NaN at a chosen call."""

    def __init__(self, bad_call: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 1)
        self.bad_call, self.calls = bad_call, 0

    def forward(self, images):
        out = self.conv(images)
        self.calls += 1
        return out * float("nan") if self.calls - 1 == self.bad_call else out


def test_nan_loss_stops_naming_the_iteration_and_the_term():
    model = NaNAtIteration(bad_call=2, channels=4)
    images = torch.rand(2, 3, 8, 8)
    batch = (images, torch.zeros(2, 4, 8, 8), torch.ones(2, 4, 1), {})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = JointsMSELoss(use_target_weight=True)
    weights = []
    options = EpochOptions(after_step=lambda done, step: weights.append(model.conv.weight.clone()))
    with pytest.raises(NonFiniteLossError) as error:
        topdown.train_one_epoch(model, [batch] * 4, criterion, optimizer, torch.device("cpu"), 7,
                                1, options=options)
    message = str(error.value)
    assert "epoch 7, iteration 2" in message and "heatmaps = nan" in message
    # Stopped before the NaN reached the weights: two good steps, the third never taken.
    assert len(weights) == 2 and torch.equal(model.conv.weight, weights[-1])
    assert isinstance(error.value, HrposeError)  # tools print it as one 'error:' line


def test_bottom_up_nan_names_the_tag_term():
    model = NaNAtIteration(bad_call=99, channels=2)
    images = torch.rand(2, 3, 8, 8)

    def criterion(outputs, heatmaps, masks, joints):
        heatmap_loss = (outputs ** 2).mean(dim=(1, 2, 3))
        return [heatmap_loss], [torch.full((2,), float("inf"))], [torch.zeros(2)]

    batch = (images, [torch.zeros(2, 2, 8, 8)], [torch.ones(2, 8, 8)], [torch.zeros(2, 1, 2, 2)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match=r"iteration 0 .*push_0 = inf") as error:
        bottomup.train_one_epoch(model, [batch], criterion, optimizer, torch.device("cpu"), 0, 1)
    assert "heatmaps_0" not in str(error.value) and "pull_0" not in str(error.value)


class Indices(torch.utils.data.Dataset):
    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return index


def test_train_sampler_splits_one_shuffle_and_skips_finished_batches():
    dataset = Indices(12)
    single = TrainSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=5)
    ranks = [TrainSampler(dataset, num_replicas=2, rank=r, shuffle=True, seed=5) for r in (0, 1)]
    for sampler in [single, *ranks]:
        sampler.set_epoch(3)
    order = list(single)
    assert sorted(order) == list(range(12)) and order != list(range(12))
    # Batch i of 4 in one process = batch i of 2 on each of the two processes.
    per_rank = [list(sampler) for sampler in ranks]
    for i in range(3):
        assert sorted(order[4 * i:4 * i + 4]) == sorted(per_rank[0][2 * i:2 * i + 2] +
                                                        per_rank[1][2 * i:2 * i + 2])
    ranks[1].skip(4)
    assert list(ranks[1]) == per_rank[1][4:] and len(ranks[1]) == 2
    ranks[1].set_epoch(4)  # a new epoch starts from its first batch again
    assert len(ranks[1]) == 6
    single.set_epoch(4)
    assert list(single) != order  # a new shuffle each epoch


def test_shard_sampler_tests_every_sample_once():
    shards = [list(ShardSampler(Indices(7), 3, r)) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]


def test_merged_shards_are_in_single_process_order():
    poses = np.arange(5 * 2 * 3, dtype=np.float64).reshape(5, 2, 3)

    def topdown_shard(indices, loss):
        return {"poses": poses[indices], "centers": poses[indices, 0, :2],
                "scales": poses[indices, 1, :2], "box_scores": poses[indices, 0, 2],
                "image_ids": np.array(indices) + 100, "indices": np.array(indices),
                "loss": loss, "loss_samples": len(indices)}

    merged = topdown.merge_predictions([topdown_shard([0, 2, 4], 1.0),
                                        topdown_shard([1, 3], 2.0)])
    np.testing.assert_array_equal(merged["poses"], poses)
    np.testing.assert_array_equal(merged["image_ids"], [100, 101, 102, 103, 104])
    assert merged["loss"] == pytest.approx((3 * 1.0 + 2 * 2.0) / 5)

    def bottomup_shard(indices):
        results = [{"image_id": i, "person": p} for i in indices for p in range(i % 2 + 1)]
        return {"results": results, "result_indices": [r["image_id"] for r in results],
                "num_images": len(indices), "isolated": 1, "loss": float("nan")}

    merged = bottomup.merge_predictions([bottomup_shard([0, 2]), bottomup_shard([1])])
    assert [(r["image_id"], r["person"]) for r in merged["results"]] == \
        [(0, 0), (1, 0), (1, 1), (2, 0)]
    assert merged["num_images"] == 3 and merged["isolated"] == 2


def test_auto_scale_lr_applies_the_linear_rule(repo_root):
    def cfg(*opts):
        return load_config(str(repo_root / SYNTHETIC_CFG),
                           ["TRAIN.LR", "1e-3", "TRAIN.BATCH_SIZE_PER_GPU", "32", *opts])

    assert base_learning_rate(cfg(), 256) == 1e-3  # off by default
    # Recipe: 32 per GPU on the 4 GPUs the YAML lists = 128; this run: 2 processes of 32.
    recipe_on_four = cfg("TRAIN.AUTO_SCALE_LR", "True", "GPUS", "[0, 1, 2, 3]")
    assert base_learning_rate(recipe_on_four, 64) == pytest.approx(0.5e-3)
    explicit = cfg("TRAIN.AUTO_SCALE_LR", "True", "TRAIN.BASE_BATCH_SIZE", "16")
    assert base_learning_rate(explicit, 64) == pytest.approx(4e-3)


def test_precision_and_memory_format_switches(repo_root):
    cpu = torch.device("cpu")
    defaults = load_config(str(repo_root / SYNTHETIC_CFG), [])
    assert defaults.TRAIN.AMP == "auto" and defaults.CHANNELS_LAST == "auto"
    # 'auto' is off on the CPU.
    assert autocast_dtype(defaults, cpu) is None
    assert memory_format(defaults, cpu) == torch.contiguous_format
    chosen = load_config(str(repo_root / SYNTHETIC_CFG),
                         ["TRAIN.AMP", "bf16", "CHANNELS_LAST", "on"])
    assert autocast_dtype(chosen, cpu) == torch.bfloat16
    assert memory_format(chosen, cpu) == torch.channels_last
    with pytest.raises(ConfigError, match="TRAIN.AMP.*'fp8'.*'bf16'"):
        load_config(str(repo_root / SYNTHETIC_CFG), ["TRAIN.AMP", "fp8"])
    with pytest.raises(ConfigError, match="SYNC_BN.*GPUs only"):
        check_sync_batchnorm(True, 2, cpu)
    check_sync_batchnorm(True, 1, cpu)  # one process keeps plain BatchNorm: nothing to refuse


@pytest.fixture
def restore_determinism():
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False


def test_deterministic_mode_and_seeded_workers_repeat_a_run(repo_root, tiny_data, tmp_path,
                                                           restore_determinism, tiny_model):
    """DETERMINISTIC switches torch to deterministic kernels; two loader workers give the
    batches (augmentation included) of the in-process loader, epoch by epoch."""
    cfg = tiny_config(repo_root, tiny_data, tmp_path, "TRAIN.END_EPOCH", "1",
                      "DETERMINISTIC", "True")
    trainer.train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))
    assert torch.are_deterministic_algorithms_enabled()

    def first_batch(workers, epoch):
        run = tiny_config(repo_root, tiny_data, tmp_path, "WORKERS", str(workers))
        dataset = build_topdown_dataset(run, is_train=True)
        loader = trainer.make_loader(run, dataset, True, torch.device("cpu"))
        dataset.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))[0]

    assert torch.equal(first_batch(0, 1), first_batch(2, 1))
    assert not torch.equal(first_batch(0, 0), first_batch(0, 1))

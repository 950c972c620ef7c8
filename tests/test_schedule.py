"""Learning-rate schedules: multi-step decays, MMCV-style cosine annealing and linear warm-up."""

import math

import pytest
import torch

from hrpose.config import load_config
from hrpose.engine.schedule import learning_rate_factor
from hrpose.engine.trainer import build_optimizer

SYNTHETIC = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"


def train_cfg(repo_root, *opts):
    return load_config(str(repo_root / SYNTHETIC), list(opts)).TRAIN


def test_multistep_decays_from_the_milestone_epochs(repo_root):
    cfg = train_cfg(repo_root, "TRAIN.LR_STEP", "[2, 4]", "TRAIN.LR_FACTOR", "0.1")
    per_epoch = 10
    factors = [learning_rate_factor(cfg, epoch * per_epoch + 3, per_epoch) for epoch in range(6)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_follows_the_epoch_formula_down_to_the_floor(repo_root):
    cfg = train_cfg(repo_root, "TRAIN.LR_SCHEDULER", "cosine", "TRAIN.END_EPOCH", "10",
                    "TRAIN.MIN_LR_RATIO", "0.01")
    for epoch in range(11):
        expected = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * epoch / 10))
        # Constant within an epoch, as MMCV's by-epoch annealing.
        assert learning_rate_factor(cfg, epoch * 7 + 6, 7) == pytest.approx(expected)
    assert learning_rate_factor(cfg, 10 * 7, 7) == pytest.approx(0.01)


def test_warmup_ramps_linearly_from_the_ratio(repo_root):
    cfg = train_cfg(repo_root, "TRAIN.LR_SCHEDULER", "cosine", "TRAIN.END_EPOCH", "300",
                    "TRAIN.WARMUP_ITERS", "500", "TRAIN.WARMUP_RATIO", "0.001")
    assert learning_rate_factor(cfg, 0, 1000) == pytest.approx(0.001)
    assert learning_rate_factor(cfg, 250, 1000) == pytest.approx(0.001 + 0.999 * 0.5)
    assert learning_rate_factor(cfg, 500, 1000) == pytest.approx(1.0)


def test_adamw_uses_the_weight_decay_and_adam_none(repo_root):
    adamw = build_optimizer(load_config(str(repo_root / SYNTHETIC),
                                        ["TRAIN.OPTIMIZER", "adamw", "TRAIN.WD", "0.01"]),
                            torch.nn.Linear(2, 2))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["weight_decay"] == 0.01
    adam = build_optimizer(load_config(str(repo_root / SYNTHETIC)), torch.nn.Linear(2, 2))
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["weight_decay"] == 0

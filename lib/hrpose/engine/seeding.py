"""Seeds and the deterministic mode: Python, NumPy, torch, loader workers and the model's draws."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


def mixed_seed(*parts: int) -> int:
    """A 32-bit seed from several integers (seed, epoch, rank, ...): neighbouring tuples give
    unrelated seeds, unlike a sum."""
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (model initialisation)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: Python's and NumPy's global generators from the worker's torch
    seed (loader seed + worker id). Augmentation draws from per-sample generators seeded by
    (SEED, epoch, index); this only keeps stray global RNG use distinct and reproducible."""
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def seed_iteration(seed: int, rank: int, epoch: int, iteration: int) -> None:
    """Seed torch for one training iteration, so the model's random draws (dropout, drop path)
    depend on (SEED, rank, epoch, iteration) only and a resumed run repeats them exactly."""
    torch.manual_seed(mixed_seed(seed, rank, epoch, iteration))


def enable_deterministic_mode() -> None:
    """Deterministic kernels everywhere (DETERMINISTIC True): bit-identical reruns on the same
    machine, at some speed cost. An operation without a deterministic implementation warns
    (naming itself) instead of stopping the run."""
    # cuBLAS needs a fixed workspace for reproducible matrix products (CUDA >= 10.2).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    logger.info("deterministic mode: torch.use_deterministic_algorithms, cuDNN deterministic")

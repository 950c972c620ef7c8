"""One training epoch for every paradigm: autocast, loss scaling, schedule, NaN and divergence
checks, progress."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..errors import HrposeError
from .distributed import TrainSampler, all_reduce_mean, is_main_process, rank, world_size
from .seeding import seed_iteration

logger = logging.getLogger(__name__)


class NonFiniteLossError(HrposeError, FloatingPointError):
    """A NaN or infinite training loss; the message names the iteration and the loss terms."""


class DivergenceError(HrposeError, FloatingPointError):
    """A finite training loss that stays far above its running level: the run has diverged."""


@dataclass
class DivergenceMonitor:
    """Notices a diverging run whose loss explodes but stays finite (e.g. a far too high rate).

    The running level is an exponential average of the losses that were not outliers; a loss
    above factor x that level is an outlier, and patience outliers in a row stop the run. A
    factor or patience of 0 turns the check off. Every process sees the same (process-averaged)
    losses, so all of them stop together.
    """

    factor: float
    patience: int
    smoothing: float = 0.9  # weight of the past level in each update
    level: float = 0.0  # 0: not yet known
    term_levels: dict[str, float] = field(default_factory=dict)
    streak: int = 0  # outliers in a row
    streak_start: tuple[int, int] = (0, 0)  # (epoch, iteration) of the streak's first outlier

    @property
    def enabled(self) -> bool:
        return self.factor > 0 and self.patience > 0

    @property
    def suspect(self) -> bool:
        """Whether the latest loss was an outlier: weights saved now may be diverged ones."""
        return self.streak > 0

    def observe(self, total: float, terms: dict[str, float], epoch: int, iteration: int,
                global_step: int) -> None:
        """Take one iteration's finite loss; raise DivergenceError on the patience-th outlier."""
        if not self.enabled:
            return
        if self.level > 0 and total > self.factor * self.level:
            if self.streak == 0:
                self.streak_start = (epoch, iteration)
            self.streak += 1
            if self.streak >= self.patience:
                raise DivergenceError(self._message(total, terms, epoch, iteration, global_step))
            return
        self.streak = 0
        self.level = self._smoothed(self.level, total)
        for name, value in terms.items():
            self.term_levels[name] = self._smoothed(self.term_levels.get(name, 0.0), value)

    def _smoothed(self, level: float, value: float) -> float:
        return value if level <= 0 else self.smoothing * level + (1 - self.smoothing) * value

    def _worst_term(self, terms: dict[str, float]) -> str:
        ratios = {name: value / self.term_levels[name] for name, value in terms.items()
                  if self.term_levels.get(name, 0.0) > 0}
        if not ratios:
            return ""
        name = max(ratios, key=ratios.get)
        return (f"; the term that grew most is '{name}' = {terms[name]:.3e} (running level "
                f"{self.term_levels[name]:.3e})")

    def _message(self, total: float, terms: dict[str, float], epoch: int, iteration: int,
                 global_step: int) -> str:
        first_epoch, first_iteration = self.streak_start
        return (f"training diverged: the loss has been above {self.factor:g} x its running level "
                f"for {self.streak} iterations, from epoch {first_epoch}, iteration "
                f"{first_iteration} to epoch {epoch}, iteration {iteration} (global step "
                f"{global_step}): loss {total:.3e} vs {self.level:.3e}{self._worst_term(terms)}."
                f" Nothing was saved since it rose: checkpoint.pth and model_best.pth, if any, "
                f"hold the weights from before. Lower TRAIN.LR or add warm-up "
                f"(TRAIN.WARMUP_ITERS); TRAIN.DIVERGENCE_FACTOR and TRAIN.DIVERGENCE_PATIENCE "
                f"set the check (0 turns it off)")


@dataclass
class StepOutput:
    """A paradigm's forward pass on one batch, as the loop needs it."""

    loss: torch.Tensor  # the float32 scalar that is optimised
    terms: dict[str, torch.Tensor]  # its named parts ('heatmaps', 'push_0', ...), for logs
    batch_size: int
    # Writes the batch's debug images under a path prefix (DEBUG.*); None when there are none.
    save_debug: Callable[[str], None] | None = None


@dataclass
class EpochOptions:
    """How an epoch runs besides model, data, loss and optimizer.

    The defaults are a plain float32 run from the epoch's first batch: what a test or a
    notebook calling train_one_epoch directly wants. The trainer fills them from the config.
    """

    # Forward pass under torch.autocast in this dtype (TRAIN.AMP); None runs float32.
    amp_dtype: torch.dtype | None = None
    # Loss scaling for float16 gradients; None (or a disabled scaler) steps plainly.
    scaler: torch.amp.GradScaler | None = None
    memory_format: torch.memory_format = torch.contiguous_format
    # Batches of this epoch done before a resume; the loader already skips them.
    start_iteration: int = 0
    # When set, torch is re-seeded from (seed, rank, epoch, iteration) before every step.
    seed: int | None = None
    # Called after every optimizer step with (batches done in the epoch, global step).
    after_step: Callable[[int, int], None] | None = None
    # A tqdm bar (log lines print above it): None decides (rank 0 with stderr on a terminal).
    show_progress: bool | None = None
    # Stops a run whose loss explodes; kept by the caller across epochs. None: no check.
    divergence: DivergenceMonitor | None = None

    def autocast(self, device: torch.device):
        """The context the model's forward pass runs in; the loss is computed outside it."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def forward(self, model: nn.Module, images: torch.Tensor,
                device: torch.device) -> tuple[torch.Tensor, object]:
        """The training forward pass of every paradigm: images to the device in this memory
        format, the model under autocast; returns (images on the device, float32 outputs)."""
        images = images.to(device, non_blocking=True, memory_format=self.memory_format)
        with self.autocast(device):
            outputs = model(images)
        return images, outputs_in_float32(outputs)


def to_device(values, device: torch.device):
    """A tensor, None, or (nested) lists of them, on device (non-blocking)."""
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        return values.to(device, non_blocking=True)
    return [to_device(value, device) for value in values]


def outputs_in_float32(outputs):
    """Model outputs (a tensor, or lists and dicts of them) as float32: losses, above all the
    tag losses, are computed in full precision whatever the forward pass ran in."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float()
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(outputs_in_float32(item) for item in outputs)
    if isinstance(outputs, Mapping):
        return {key: outputs_in_float32(value) for key, value in outputs.items()}
    return outputs


def _use_progress_bar(options: EpochOptions) -> bool:
    if options.show_progress is not None:
        return options.show_progress and is_main_process()
    return is_main_process() and sys.stderr.isatty()


def _epoch_images(loader) -> tuple[int | None, int]:
    """(images in the whole epoch over all processes, images before the loader's first batch);
    (None, 0) when the loader's sampler does not say."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, TrainSampler):
        processes = sampler.num_replicas
        return sampler.num_samples * processes, sampler.skipped * processes
    return None, 0


def _loss_values(output: StepOutput) -> tuple[float, dict[str, float]]:
    """The total loss and its terms averaged over the processes, read with one host sync."""
    names = list(output.terms)
    stacked = torch.stack([output.loss.detach().float()] +
                          [output.terms[name].detach().float().reshape(()) for name in names])
    values = all_reduce_mean(stacked).tolist()
    return values[0], dict(zip(names, values[1:]))


def check_finite_loss(total: float, terms: dict[str, float], epoch: int, iteration: int,
                      global_step: int) -> None:
    """Stop with a message naming the iteration and the non-finite loss terms.

    Every process sees the same (process-averaged) values, so all of them stop together.
    """
    if math.isfinite(total):
        return
    bad = [f"{name} = {value}" for name, value in terms.items() if not math.isfinite(value)]
    raise NonFiniteLossError(
        f"training loss is {total} at epoch {epoch}, iteration {iteration} (global step "
        f"{global_step}); non-finite loss terms: {', '.join(bad) or 'none (their sum overflows)'}."
        f" Lower TRAIN.LR or add warm-up (TRAIN.WARMUP_ITERS), check the data of this batch, or "
        f"train in float32 (TRAIN.AMP off)")


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run_epoch(step: Callable[[nn.Module, object, torch.device, EpochOptions], StepOutput],
              model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
              device: torch.device, epoch: int, print_freq: int, writer=None,
              global_step: int = 0, debug_prefix: Callable[[int], str] | None = None,
              learning_rate: Callable[[int], float] | None = None,
              options: EpochOptions | None = None) -> tuple[float, int]:
    """Train model for one pass over loader; returns (mean loss, updated global step).

    step(model, batch, device, options) runs the paradigm's forward pass and loss.
    learning_rate(iteration), when given, sets the rate of the epoch's iteration (counted from
    the epoch's first batch, also when resuming) before each optimizer step. debug_prefix(i)
    names the debug images of iteration i (written on print iterations, rank 0 only).
    """
    options = options or EpochOptions()
    scaler = options.scaler or torch.amp.GradScaler(device.type, enabled=False)
    model.train()
    processes, main = world_size(), is_main_process()
    num_iterations = options.start_iteration + len(loader)
    total_images, done_images = _epoch_images(loader)
    use_bar = _use_progress_bar(options)
    bar = tqdm(total=total_images, initial=done_images, unit="img", desc=f"epoch {epoch}",
               leave=False, dynamic_ncols=True, disable=not use_bar)
    redirect = logging_redirect_tqdm() if use_bar else contextlib.nullcontext()
    total_loss, total_samples, data_time = 0.0, 0, 0.0
    started = last = time.monotonic()
    with redirect, bar:
        for offset, batch in enumerate(loader):
            iteration = options.start_iteration + offset
            data_time += time.monotonic() - last
            if options.seed is not None:
                seed_iteration(options.seed, rank(), epoch, iteration)
            output = step(model, batch, device, options)
            loss_value, term_values = _loss_values(output)
            check_finite_loss(loss_value, term_values, epoch, iteration, global_step)
            if options.divergence is not None:
                options.divergence.observe(loss_value, term_values, epoch, iteration,
                                           global_step)

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(output.loss).backward()
            if learning_rate is not None:
                rate = learning_rate(iteration)
                for group in optimizer.param_groups:
                    group["lr"] = rate
            scaler.step(optimizer)
            scaler.update()
            global_step += 1

            images = output.batch_size * processes
            total_loss += loss_value * images
            total_samples += images
            bar.update(images)
            bar.set_postfix(loss=f"{loss_value:.6f}", refresh=False)
            if writer is not None:
                writer.add_scalar("train_loss", loss_value, global_step)
                writer.add_scalar("learning_rate", optimizer.param_groups[0]["lr"], global_step)
                for name, value in term_values.items():
                    writer.add_scalar(f"train/{name}", value, global_step)
            if main and (iteration % print_freq == 0 or iteration == num_iterations - 1):
                elapsed = time.monotonic() - started
                logger.info(
                    "Epoch: [%d][%d/%d]  loss %.6f (avg %.6f)  %s  lr %.3e  %.1f images/s  "
                    "data %.0f%%  eta %s", epoch, iteration, num_iterations, loss_value,
                    total_loss / total_samples,
                    "  ".join(f"{name} {value:.3e}" for name, value in term_values.items()),
                    optimizer.param_groups[0]["lr"], total_samples / max(elapsed, 1e-9),
                    100.0 * data_time / max(elapsed, 1e-9),
                    _format_eta(elapsed / (offset + 1) * (num_iterations - iteration - 1)))
                if output.save_debug is not None and debug_prefix is not None:
                    output.save_debug(debug_prefix(iteration))
            if options.after_step is not None:
                options.after_step(iteration + 1, global_step)
            last = time.monotonic()
    return total_loss / max(total_samples, 1), global_step

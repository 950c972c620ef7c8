"""Training throughput of HRNet-W32 256x192: float32 against bf16 autocast with channels_last.

Runs the library's top-down training loop (engine.topdown.train_one_epoch: autocast, loss in
float32, Adam step) on random images and targets of the COCO experiment's shapes, so data loading
does not count, with one fresh model per mode in the same process, the modes taking turns step
by step (in a rotating order) so that all see the same load on a shared machine. Prints each
mode's images/s of its fastest step (and of its median step) and the ratio of every mode to the
first. Modes: fp32 (contiguous, no autocast), fp32-cl (channels_last), bf16-cl (bf16 autocast +
channels_last, the CUDA default), fp16-cl (fp16 autocast with a gradient scaler +
channels_last). The defaults are the recipe's batch of 32 and 20 steps on a GPU, and a batch of
2 and 5 steps on a CPU, where a W32 step takes about a second (and bf16 only pays off on CPUs
with bf16 units).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from timing import time_in_turns

from hrpose.config import load_config
from hrpose.engine.loop import EpochOptions
from hrpose.engine.topdown import train_one_epoch
from hrpose.losses.joints_mse import build_topdown_loss
from hrpose.models import build_model

EXPERIMENT = "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml"
MODES = {
    "fp32": (None, torch.contiguous_format),
    "fp32-cl": (None, torch.channels_last),
    "bf16-cl": (torch.bfloat16, torch.channels_last),
    "fp16-cl": (torch.float16, torch.channels_last),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=None,
                        help="images per step (default: 32, the recipe's, on a GPU; 2 on a CPU)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed steps per mode (default: 20 on a GPU, 5 on a CPU)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps per mode first, for cuDNN autotuning and oneDNN "
                             "kernel creation (default: 3 on a GPU, 1 on a CPU)")
    parser.add_argument("--modes", default="fp32,bf16-cl",
                        help=f"comma-separated, the first is the baseline: {', '.join(MODES)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cfg", default=EXPERIMENT, help="experiment YAML of the model")
    args = parser.parse_args(argv)
    on_gpu = torch.device(args.device).type == "cuda"
    for name, gpu_default, cpu_default in (("batch", 32, 2), ("iterations", 20, 5),
                                           ("warmup", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, gpu_default if on_gpu else cpu_default)
    return args


def synthetic_batch(cfg, batch: int) -> tuple:
    """Random images and heatmap targets with the experiment's shapes, as a loader yields them."""
    width, height = cfg.MODEL.IMAGE_SIZE
    heatmap_width, heatmap_height = cfg.MODEL.HEATMAP_SIZE
    joints = cfg.MODEL.NUM_JOINTS
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=generator)
    target = torch.rand(batch, joints, heatmap_height, heatmap_width, generator=generator)
    return images, target, torch.ones(batch, joints, 1), {}


def training_step(cfg, mode: str, batch: tuple, device: torch.device) -> Callable[[], None]:
    """One training step of a fresh model in mode (its own loss, Adam and scaler) on batch."""
    amp_dtype, memory_format = MODES[mode]
    torch.manual_seed(0)
    model = build_model(cfg, is_train=True).to(device, memory_format=memory_format)
    criterion = build_topdown_loss(cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.TRAIN.LR)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    options = EpochOptions(amp_dtype=amp_dtype, scaler=scaler, memory_format=memory_format,
                           show_progress=False)

    def step() -> None:
        # train_one_epoch reads the loss every step, which already waits for a GPU.
        train_one_epoch(model, [batch], criterion, optimizer, device, 0, print_freq=10 ** 9,
                        options=options)

    return step


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # No ImageNet file needed: the weights do not matter for the timing.
    cfg = load_config(args.cfg, ["MODEL.PRETRAINED", "''", "DEVICE", device.type])
    batch = synthetic_batch(cfg, args.batch)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"{cfg.MODEL.NAME} {cfg.MODEL.IMAGE_SIZE[1]}x{cfg.MODEL.IMAGE_SIZE[0]} on {name}: "
          f"batch {args.batch}, {args.warmup} warm-up + {args.iterations} timed steps per mode, "
          f"the modes taking turns")
    steps = {mode: training_step(cfg, mode, batch, device) for mode in modes}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    seconds, _ = time_in_turns(steps, args.iterations)
    images = batch[0].shape[0]
    rates = {mode: images / min(times) for mode, times in seconds.items()}
    for mode, times in seconds.items():
        print(f"  {mode:8s} {rates[mode]:9.2f} images/s (fastest step; median "
              f"{images / statistics.median(times):.2f})")
    baseline = modes[0]
    for mode in modes[1:]:
        print(f"  {mode} / {baseline}: {rates[mode] / rates[baseline]:.2f}x (fastest steps), "
              f"{statistics.median(seconds[baseline]) / statistics.median(seconds[mode]):.2f}x "
              f"(medians)")


if __name__ == "__main__":
    main()

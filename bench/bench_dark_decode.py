"""Times DARK decoding: the vectorised torch decoder against a per-joint loop as the reference
does it.

Decodes one chunk of --chunk heatmap stacks of 17x64x48 (1,000: a validation batch; the fastest
of --batch-repeats runs), then --samples stacks in chunks (20,000 by default, cycling through
--distinct-chunks chunks; the default was 100,000, which the loop takes over three minutes for),
all network-like (a Gaussian at a random sub-pixel centre, noise, some empty maps), with both
implementations on the same maps, and prints for each run both wall times, the speed ratio
(target: 50x) and the largest coordinate difference (target: under 1e-3 px). The loop follows
the reference step by step: NumPy argmax; for every map a zero-padded float64 cv2.GaussianBlur
written back into the float32 maps and rescaled; the log; for every joint a Taylor step with
numpy matrices. One chunk is decoded by both before the clock starts, so that first-call costs
are not counted.
Exits with status 1 if the coordinates differ by more than the target; a missed speed target is
reported (it depends on the device; on a CPU the argmax pass, which reads every map once, is
about 40 % of the vectorised decoder's time and is bound by memory bandwidth).
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np
import torch

from hrpose.codecs.dark import decode_dark

TARGET_SPEEDUP = 50.0
TARGET_DIFFERENCE = 1e-3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000,
                        help="heatmap stacks to decode after the validation batch (default "
                             "20,000: the loop takes about 2 ms a stack)")
    parser.add_argument("--joints", type=int, default=17)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--blur-kernel", type=int, default=11)
    parser.add_argument("--chunk", type=int, default=1000, help="stacks decoded per call")
    parser.add_argument("--batch-repeats", type=int, default=3,
                        help="first time one chunk (a validation batch) this many times and "
                             "report the fastest run of each decoder (0: skip)")
    parser.add_argument("--distinct-chunks", type=int, default=4,
                        help="different random chunks generated and cycled through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the vectorised decoder runs (default: cuda when available)")
    return parser.parse_args(argv)


def make_chunk(rng: np.random.Generator, args: argparse.Namespace) -> np.ndarray:
    """(chunk, J, H, W) float32 maps like a trained network's output."""
    shape = (args.chunk, args.joints)
    centre_x = rng.uniform(0, args.width - 1, shape)[..., None, None]
    centre_y = rng.uniform(0, args.height - 1, shape)[..., None, None]
    sigma = rng.uniform(1.5, 3.0, shape)[..., None, None]
    peak = rng.uniform(0.05, 1.0, shape)[..., None, None]
    y = np.arange(args.height, dtype=np.float32)[:, None]
    x = np.arange(args.width, dtype=np.float32)[None, :]
    maps = peak * np.exp(-((x - centre_x) ** 2 + (y - centre_y) ** 2) / (2 * sigma ** 2))
    maps = maps + rng.normal(0, 0.01, maps.shape)
    maps[rng.random(shape) < 0.05] = 0.0  # joints the network did not find
    return maps.astype(np.float32)


def reference_get_max_preds(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    batch, joints, _, width = maps.shape
    flat = maps.reshape(batch, joints, -1)
    index = np.argmax(flat, 2).reshape(batch, joints, 1)
    maxvals = np.amax(flat, 2).reshape(batch, joints, 1)
    coords = np.tile(index, (1, 1, 2)).astype(np.float32)
    coords[:, :, 0] = coords[:, :, 0] % width
    coords[:, :, 1] = np.floor(coords[:, :, 1] / width)
    coords *= np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
    return coords, maxvals


def reference_blur(maps: np.ndarray, kernel: int) -> np.ndarray:
    """The reference's blur, one map at a time: zero-padded float64 cv2.GaussianBlur, written
    back into the float32 maps and rescaled to the original maximum there."""
    border = (kernel - 1) // 2
    batch, joints, height, width = maps.shape
    for b in range(batch):
        for j in range(joints):
            original_max = np.max(maps[b, j])
            padded = np.zeros((height + 2 * border, width + 2 * border))
            padded[border:-border, border:-border] = maps[b, j].copy()
            padded = cv2.GaussianBlur(padded, (kernel, kernel), 0)
            maps[b, j] = padded[border:-border, border:-border].copy()
            with np.errstate(divide="ignore", invalid="ignore"):
                maps[b, j] *= original_max / np.max(maps[b, j])
    return maps


def reference_taylor(log_map: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """The reference's Taylor step at one peak, with its numpy matrices and matrix inverse."""
    height, width = log_map.shape
    px, py = int(coord[0]), int(coord[1])
    if 1 < px < width - 2 and 1 < py < height - 2:
        dx = 0.5 * (log_map[py][px + 1] - log_map[py][px - 1])
        dy = 0.5 * (log_map[py + 1][px] - log_map[py - 1][px])
        dxx = 0.25 * (log_map[py][px + 2] - 2 * log_map[py][px] + log_map[py][px - 2])
        dxy = 0.25 * (log_map[py + 1][px + 1] - log_map[py - 1][px + 1]
                      - log_map[py + 1][px - 1] + log_map[py - 1][px - 1])
        dyy = 0.25 * (log_map[py + 2][px] - 2 * log_map[py][px] + log_map[py - 2][px])
        derivative = np.matrix([[dx], [dy]])
        hessian = np.matrix([[dxx, dxy], [dxy, dyy]])
        if dxx * dyy - dxy ** 2 != 0:
            offset = -hessian.I * derivative
            coord += np.squeeze(np.array(offset.T), axis=0)
    return coord


def reference_decode(maps: np.ndarray, kernel: int) -> np.ndarray:
    """The per-joint loop as the reference runs it: argmax, blur each map, log, then a Taylor
    step at each joint."""
    coords, _ = reference_get_max_preds(maps)
    log_maps = np.log(np.maximum(reference_blur(maps.copy(), kernel), 1e-10))
    batch, joints = coords.shape[:2]
    for b in range(batch):
        for j in range(joints):
            coords[b, j] = reference_taylor(log_maps[b][j], coords[b][j])
    return coords


def time_chunks(chunks: list[np.ndarray], num_chunks: int, args: argparse.Namespace,
                device: torch.device) -> tuple[float, float, float]:
    """Decodes num_chunks chunks with both implementations: (torch seconds, loop seconds,
    largest coordinate difference)."""
    torch_time = loop_time = 0.0
    max_difference = 0.0
    for index in range(num_chunks):
        maps = chunks[index % len(chunks)]
        started = time.perf_counter()
        ours = decode_dark(torch.from_numpy(maps).to(device), args.blur_kernel).coords.cpu().numpy()
        if device.type == "cuda":
            torch.cuda.synchronize()
        torch_time += time.perf_counter() - started
        started = time.perf_counter()
        reference = reference_decode(maps, args.blur_kernel)
        loop_time += time.perf_counter() - started
        max_difference = max(max_difference, float(np.abs(ours - reference).max()))
        if num_chunks > 1:
            print(f"\r{index + 1}/{num_chunks} chunks", end="", file=sys.stderr, flush=True)
    if num_chunks > 1:
        print(file=sys.stderr)
    return torch_time, loop_time, max_difference


def report(title: str, torch_time: float, loop_time: float, max_difference: float) -> None:
    speedup = loop_time / torch_time
    print(title)
    print(f"  per-joint loop (reference): {loop_time:8.3f} s")
    print(f"  vectorised torch:           {torch_time:8.3f} s")
    verdict = "met" if speedup >= TARGET_SPEEDUP else "missed"
    print(f"  speed-up: {speedup:.1f}x (target {TARGET_SPEEDUP:.0f}x: {verdict})")
    print(f"  largest coordinate difference: {max_difference:.2e} px "
          f"(target < {TARGET_DIFFERENCE:.0e})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)
    chunks = [make_chunk(rng, args) for _ in range(args.distinct_chunks)]
    num_chunks = max(1, args.samples // args.chunk)
    decode_dark(torch.from_numpy(chunks[0]).to(device), args.blur_kernel)
    reference_decode(chunks[0][:10], args.blur_kernel)
    setting = (f"{args.joints}x{args.height}x{args.width} heatmaps, blur kernel "
               f"{args.blur_kernel}, torch on {device} ({torch.get_num_threads()} CPU threads)")
    max_difference = 0.0
    if args.batch_repeats > 0:
        runs = [time_chunks(chunks, 1, args, device) for _ in range(args.batch_repeats)]
        max_difference = max(run[2] for run in runs)
        report(f"DARK decoding of one validation batch, {args.chunk} x {setting}; fastest of "
               f"{args.batch_repeats} runs each",
               min(run[0] for run in runs), min(run[1] for run in runs), max_difference)
    torch_time, loop_time, difference = time_chunks(chunks, num_chunks, args, device)
    max_difference = max(max_difference, difference)
    report(f"DARK decoding of {num_chunks * args.chunk} x {setting}", torch_time, loop_time,
           difference)
    return 0 if max_difference < TARGET_DIFFERENCE else 1


if __name__ == "__main__":
    sys.exit(main())

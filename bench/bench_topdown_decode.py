"""Times top-down standard decoding: hrpose's against HRNet's get_final_preds, quiet and under load.

Decodes --samples heatmap stacks of 17x64x48 (float32 as a model returns them: a Gaussian at a
random sub-pixel centre, noise, some empty maps) into image pixels with COCO-like boxes, twice:
- the baseline: HRNet's get_final_preds (lib/core/inference.py of
  leoxiaobin/deep-high-resolution-net.pytorch) as a plain loop from its code, shared with the
  tests (tests/reference_topdown.py):
  NumPy argmax and amax, the quarter offset joint by joint, then transform_preds person by
  person (cv2.getAffineTransform of float32 points, one point at a time);
- hrpose's postprocess.topdown.decode_poses with the standard decoder and POST_PROCESS on
  (large CPU batches in row chunks on torch's thread count of Python threads).
The two run in turn in one process, --repeats times each, and the minimum of each is compared
(the median is printed too), as the CPU may be shared. A bare np.argmax pass over the maps is
timed with them: every exact decoder reads all the maps once, so where memory bandwidth bounds
that pass, it bounds the ratio too. With --load on (or both), a busy-loop process runs on every
core meanwhile; each stops by itself after --load-seconds and is killed when the measurement
ends. Prints the speed ratio (target: 10x) with torch's thread count, and whether the outputs
are equal: the same maxvals and coordinates within 1e-4 px (the baseline builds its affine from
float32 points and stores float32 image coordinates, which differ from exact ones by up to about
8e-5 px at COCO's image sizes).
Exits with status 1 if the outputs differ; a missed speed target is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hrpose.config import get_default_config
from hrpose.postprocess.topdown import decode_poses

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from timing import time_in_turns  # noqa: E402

from reference_topdown import reference_get_final_preds  # noqa: E402

TARGET_SPEEDUP = 10.0
TARGET_DIFFERENCE = 1e-4
# The baseline's box scale unit, pixels per scale unit.
PIXEL_STD = 200.0
# Spins until its deadline (argv[1] seconds from now), so that it cannot outlive the benchmark
# for long even if the benchmark is killed before it can stop it.
BUSY_LOOP = ("import sys, time\n"
             "deadline = time.monotonic() + float(sys.argv[1])\n"
             "while time.monotonic() < deadline:\n"
             "    pass\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000, help="heatmap stacks to decode")
    parser.add_argument("--joints", type=int, default=17)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each decoder")
    parser.add_argument("--load", choices=("off", "on", "both"), default="both",
                        help="busy-loop processes on every core while timing")
    parser.add_argument("--load-seconds", type=float, default=300.0,
                        help="the longest a busy-loop process runs")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def make_heatmaps(rng: np.random.Generator, args: argparse.Namespace) -> np.ndarray:
    """(samples, J, H, W) float32 maps like a trained network's output."""
    shape = (args.samples, args.joints)
    centre_x = rng.uniform(0, args.width - 1, shape).astype(np.float32)[..., None, None]
    centre_y = rng.uniform(0, args.height - 1, shape).astype(np.float32)[..., None, None]
    sigma = rng.uniform(1.5, 3.0, shape).astype(np.float32)[..., None, None]
    peak = rng.uniform(0.05, 1.0, shape).astype(np.float32)[..., None, None]
    y = np.arange(args.height, dtype=np.float32)[:, None]
    x = np.arange(args.width, dtype=np.float32)[None, :]
    maps = peak * np.exp(-((x - centre_x) ** 2 + (y - centre_y) ** 2) / (2 * sigma ** 2))
    maps += rng.normal(0, 0.01, maps.shape).astype(np.float32)
    maps[rng.random(shape) < 0.05] = 0.0  # joints the network did not find
    return maps


def make_boxes(rng: np.random.Generator, args: argparse.Namespace
               ) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 2) in a 640x480 image and scales (N, 2) of boxes 10 to 640 px wide, padded
    by 1.25 and fixed to the heatmaps' aspect ratio, as COCO validation boxes are."""
    centre = np.stack([rng.uniform(0, 640, args.samples), rng.uniform(0, 480, args.samples)], 1)
    width = rng.uniform(10, 640, args.samples) * 1.25 / PIXEL_STD
    return centre, np.stack([width, width * args.height / args.width], 1)


def baseline_get_final_preds(batch_heatmaps: np.ndarray, center: np.ndarray,
                             scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's get_final_preds with TEST.POST_PROCESS on (tests/reference_topdown.py)."""
    return reference_get_final_preds(batch_heatmaps, center, scale, post_process=True)


@contextlib.contextmanager
def busy_cores(count: int, seconds: float):
    """count busy-loop processes for the duration of the block (at most seconds each)."""
    processes = []
    try:
        for _ in range(count):
            processes.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(seconds)]))
        time.sleep(0.5)  # let them start spinning
        yield
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def compare(baseline_result, our_result) -> tuple[float, bool]:
    """Largest coordinate difference (px) and whether the maxvals are identical."""
    preds, maxvals = baseline_result
    difference = float(np.abs(our_result[..., :2] - preds).max())
    return difference, bool(np.array_equal(our_result[..., 2:], maxvals.astype(np.float64)))


def milliseconds(times: list[float]) -> str:
    return f"{min(times) * 1e3:8.1f} ms (median {statistics.median(times) * 1e3:.1f})"


def report(label: str, times: dict, difference: float, same_maxvals: bool) -> bool:
    baseline_times, our_times = times["baseline"], times["ours"]
    ratio = min(baseline_times) / min(our_times)
    median_ratio = statistics.median(baseline_times) / statistics.median(our_times)
    equal = difference <= TARGET_DIFFERENCE and same_maxvals
    verdict = "met" if ratio >= TARGET_SPEEDUP else "missed"
    print(f"  {label}:")
    print(f"    baseline (HRNet get_final_preds as a plain loop): {milliseconds(baseline_times)}")
    print(f"    hrpose decode_poses:                              {milliseconds(our_times)}")
    print(f"    one np.argmax pass over the maps (a floor):       {milliseconds(times['pass'])}")
    print(f"    speed-up: {ratio:.1f}x of the fastest runs, {median_ratio:.1f}x of the medians "
          f"(target {TARGET_SPEEDUP:.0f}x: {verdict}; baseline / one pass: "
          f"{min(baseline_times) / min(times['pass']):.1f}x)")
    print(f"    outputs equal: {'yes' if equal else 'NO'} (largest coordinate difference "
          f"{difference:.1e} px, maxvals {'identical' if same_maxvals else 'DIFFER'})")
    return equal


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    maps = make_heatmaps(rng, args)
    center, scale = make_boxes(rng, args)
    cfg = get_default_config()
    cfg.MODEL.HEATMAP_SIZE = [args.width, args.height]
    cfg.TEST.DECODER = "standard"
    cfg.TEST.POST_PROCESS = True
    heatmaps = torch.from_numpy(maps)

    functions = {
        "baseline": lambda: baseline_get_final_preds(maps, center, scale),
        "ours": lambda: decode_poses(cfg, heatmaps, center, scale),
        "pass": lambda: np.argmax(maps.reshape(-1, args.height * args.width), axis=1),
    }
    functions["ours"]()  # first-call costs are not counted
    cores = len(os.sched_getaffinity(0))
    print(f"Top-down standard decoding of {args.samples} x {args.joints}x{args.height}x"
          f"{args.width} float32 heatmaps into image pixels, {cores} CPU cores, torch with "
          f"{torch.get_num_threads()} threads (hrpose decodes large CPU batches in NumPy on "
          f"that many Python threads, the baseline in one); fastest of {args.repeats} runs "
          f"each, in turn")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.load]
    all_equal = True
    for loaded in modes:
        load = busy_cores(cores, args.load_seconds) if loaded else contextlib.nullcontext()
        with load:
            times, results = time_in_turns(functions, args.repeats)
        label = (f"under load ({cores} busy-loop processes, one per core)" if loaded
                 else "without added load")
        all_equal &= report(label, times, *compare(results["baseline"], results["ours"]))
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())

"""Times one top-down data-loader worker: the sample path of TopDownDataset against the plain path.

Writes --images COCO-like JPEGs (640x480 and the other common COCO sizes, photo-like texture,
quality 90) with --people person boxes each and a COCO keypoint annotation file into a temporary
folder, builds the COCO training split of each experiment below with build_topdown_dataset
(training augmentation as the YAML sets it: flip, rotation, scale, half body), and makes its
batches as one DataLoader worker does: one torch and one OpenCV thread, the YAML's batch size,
every sample fetched, then default collation, glibc malloc set as the tools set it.

The baseline is `reference_item` of tests/test_data_pipeline_equal.py: a copy of the sample path
before it was sped up (whole-image colour conversion, the mirrored view copied by NumPy, float
normalisation arithmetic, the encoders of that time). The two paths alternate batch by batch,
--rounds times over the same samples (epoch 0).

Prints samples/s of both by the wall clock and by CPU time (best: the sum of each batch's fastest
round; median: the median round), their ratio (target: 1.5x for HRNet-W32 256x192, wall clock,
best), and whether every sample of the first epoch was bit-equal (input, target, target_weight,
meta). Exits with status 1 if any sample differs; a missed speed target is only reported (timings
on a shared CPU are noisy). JPEG decoding is most of a sample's time: the plain path decodes with
cv2.imread, the fast one with simplejpeg (the same libjpeg-turbo decoding, the same pixels).
--profile adds a per-function breakdown (cProfile, us per sample) of one epoch of each path.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from hrpose.config import load_config  # noqa: E402
from hrpose.datasets.build import build_topdown_dataset  # noqa: E402
from hrpose.utils.allocator import reuse_freed_memory  # noqa: E402
from test_data_pipeline_equal import assert_same_sample, reference_item, textured_image  # noqa: E402

TARGET_SPEEDUP = 1.5
EXPERIMENTS = {
    "HRNet-W32 256x192": "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml",
    "HRNet-W32 384x288": "experiments/coco/hrnet/w32_384x288_adam_lr1e-3.yaml",
    "HRNet-W32 256x192 DARK": "experiments/coco/hrnet/w32_256x192_adam_lr1e-3_dark.yaml",
    "HRNet-W32 384x288 DARK": "experiments/coco/hrnet/w32_384x288_adam_lr1e-3_dark.yaml",
}
TARGET_EXPERIMENT = "HRNet-W32 256x192"
# Frequent COCO image sizes (w, h).
IMAGE_SIZES = ((640, 480), (640, 427), (480, 640), (500, 375), (640, 426))
NUM_JOINTS = 17


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=150, help="JPEG files written")
    parser.add_argument("--people", type=int, default=2, help="person boxes per image")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs of each path")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS),
                        choices=list(EXPERIMENTS))
    parser.add_argument("--profile", action="store_true",
                        help="print a per-function breakdown of both paths")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def person_annotation(rng: np.random.Generator, annotation_id: int, image_id: int, width: int,
                      height: int) -> dict:
    """A person with a box inside the image and ~75 % of the 17 keypoints labelled inside it."""
    box_width = rng.uniform(0.15, 0.6) * width
    box_height = rng.uniform(0.3, 0.95) * height
    left = rng.uniform(0, width - box_width)
    top = rng.uniform(0, height - box_height)
    labelled = rng.random(NUM_JOINTS) < 0.75
    x = rng.uniform(left, left + box_width, NUM_JOINTS)
    y = rng.uniform(top, top + box_height, NUM_JOINTS)
    keypoints = np.stack([x * labelled, y * labelled, 2.0 * labelled], axis=1)
    return {"id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [left, top, box_width, box_height], "area": box_width * box_height,
            "keypoints": keypoints.ravel().round(2).tolist(),
            "num_keypoints": int(labelled.sum())}


def write_coco_like(root: Path, num_images: int, people: int, rng: np.random.Generator) -> None:
    """root/images/train2017/*.jpg and root/annotations/person_keypoints_train2017.json."""
    image_dir = root / "images" / "train2017"
    image_dir.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        width, height = IMAGE_SIZES[image_id % len(IMAGE_SIZES)]
        name = f"{image_id:012d}.jpg"
        cv2.imwrite(str(image_dir / name), textured_image(rng, width, height),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for _ in range(people):
            annotations.append(person_annotation(rng, len(annotations) + 1, image_id, width,
                                                 height))
    (root / "annotations").mkdir()
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    (root / "annotations" / "person_keypoints_train2017.json").write_text(json.dumps(coco))


class PlainPath(Dataset):
    """The same dataset, each sample made by the baseline (reference_item)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return reference_item(self.dataset, index)


def batch_seconds(dataset, indices: range) -> tuple[float, float]:
    """Wall and CPU seconds of one batch as a worker makes it: fetch every sample, collate."""
    wall, cpu = time.perf_counter(), time.process_time()
    default_collate([dataset[index] for index in indices])
    return time.perf_counter() - wall, time.process_time() - cpu


def time_both(paths: dict, batch_size: int, rounds: int) -> dict[str, np.ndarray]:
    """Wall and CPU seconds (rounds, batches, 2) of every batch by each path, the paths
    alternating batch by batch (and their order round by round) so that both see the same load
    on a shared CPU."""
    size = len(next(iter(paths.values())))
    batches = [range(start, min(start + batch_size, size)) for start in range(0, size, batch_size)]
    seconds = {name: np.zeros((rounds, len(batches), 2)) for name in paths}
    names = list(paths)
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for batch_index, indices in enumerate(batches):
            for name in order:
                seconds[name][round_index, batch_index] = batch_seconds(paths[name], indices)
    return seconds


def all_samples_equal(dataset) -> bool:
    dataset.set_epoch(0)
    for index in range(len(dataset)):
        try:
            assert_same_sample(dataset[index], reference_item(dataset, index), f"sample {index}")
        except AssertionError as error:
            print(f"  NOT EQUAL: {error}")
            return False
    return True


def profile_epoch(dataset, batch_size: int, title: str, top: int = 12) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        del batch
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    rows = sorted(((value[2], value[3], key) for key, value in stats.items()), reverse=True)
    total = sum(row[0] for row in rows)
    print(f"  {title}: {total / len(dataset) * 1e6:.0f} us per sample (profiled)")
    for own, _, (filename, line, name) in rows[:top]:
        where = name if filename == "~" else f"{Path(filename).name}:{line}({name})"
        print(f"    {own / len(dataset) * 1e6:8.0f} us  {where}")


def run_experiment(label: str, root: Path, args: argparse.Namespace) -> tuple[float, bool]:
    cfg = load_config(str(REPO_ROOT / EXPERIMENTS[label]),
                      ["DATASET.ROOT", str(root), "DATASET.TRAIN_SET", "train2017"])
    fast = build_topdown_dataset(cfg, is_train=True)
    plain = PlainPath(fast)
    batch_size = cfg.TRAIN.BATCH_SIZE_PER_GPU
    print(f"{label}: {len(fast)} samples, batch {batch_size}, "
          f"{cfg.MODEL.TARGET_ENCODING} targets, {cfg.DATASET.COORD_CONVENTION} convention")
    equal = all_samples_equal(fast)
    print(f"  samples bit-equal to the plain path: {'yes' if equal else 'NO'}")
    seconds = time_both({"plain": plain, "fast": fast}, batch_size, args.rounds)
    # Best: the sum of every batch's fastest round (the least disturbed by other processes);
    # median: the median round. CPU time leaves out the time other processes held the core.
    rates = {}
    for clock, column in (("wall", 0), ("cpu", 1)):
        for name, value in seconds.items():
            per_batch = value[:, :, column]
            rates[clock, name] = (len(fast) / per_batch.min(axis=0).sum(),
                                  len(fast) / np.median(per_batch.sum(axis=1)))
    for clock in ("wall", "cpu"):
        for name in ("plain", "fast"):
            best, median = rates[clock, name]
            print(f"  {clock:4s} {name:5s}: best {best:7.1f} samples/s, median round {median:7.1f}")
        print(f"  {clock:4s} speed-up: {rates[clock, 'fast'][0] / rates[clock, 'plain'][0]:.2f}x "
              f"(best), {rates[clock, 'fast'][1] / rates[clock, 'plain'][1]:.2f}x (median)")
    ratio = rates["wall", "fast"][0] / rates["wall", "plain"][0]
    if args.profile:
        fast.set_epoch(0)
        profile_epoch(plain, batch_size, "plain path")
        profile_epoch(fast, batch_size, "fast path")
    return ratio, equal


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    # As tools/train.py sets it before its workers fork.
    reuse_freed_memory()
    rng = np.random.default_rng(args.seed)
    results = {}
    with tempfile.TemporaryDirectory(prefix="hrpose_bench_data_") as folder:
        root = Path(folder) / "coco"
        write_coco_like(root, args.images, args.people, rng)
        size = sum(f.stat().st_size for f in (root / "images" / "train2017").iterdir())
        print(f"{args.images} JPEGs, mean {size / args.images / 1024:.0f} KiB; "
              f"one worker, {args.rounds} rounds, {os.cpu_count()} CPUs visible")
        for label in args.experiments:
            results[label] = run_experiment(label, root, args)
    all_equal = all(equal for _, equal in results.values())
    if TARGET_EXPERIMENT in results:
        ratio = results[TARGET_EXPERIMENT][0]
        verdict = "met" if ratio >= TARGET_SPEEDUP else "MISSED"
        print(f"target {TARGET_SPEEDUP}x for {TARGET_EXPERIMENT}: {verdict} ({ratio:.2f}x)")
    print(f"samples equal: {'yes' if all_equal else 'NO'}")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())

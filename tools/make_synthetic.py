"""Generate the built-in synthetic keypoint dataset: python tools/make_synthetic.py [--root DIR]."""

import argparse
import os
import time

from hrpose.datasets.synthetic import (
    ANNOTATION_FILE_PATTERN,
    DETECTION_FILE,
    IMAGE_FOLDER_PATTERN,
    SPLITS,
    generate_synthetic_dataset,
    validate_options,
)
from hrpose.engine.cli import run_cli
from hrpose.utils.paths import check_output_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="data/synthetic", help="dataset folder to create")
    parser.add_argument("--num-train", type=int, default=1000, help="training images")
    parser.add_argument("--num-val", type=int, default=200, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same files")
    parser.add_argument("--min-size", type=int, default=256, help="smallest image side, pixels")
    parser.add_argument("--max-size", type=int, default=384, help="largest image side, pixels")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="processes that render images (0: render in this process)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset at --root")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def parse_args() -> argparse.Namespace:
    """The options, checked here so that a bad one ends with argparse's usage message."""
    parser = build_parser()
    args = parser.parse_args()
    try:
        validate_options(args.num_train, args.num_val, args.seed, args.min_size, args.max_size,
                         args.workers)
    except ValueError as error:
        parser.error(str(error))
    return args


def describe(summary: dict, seconds: float) -> str:
    """Where each kind of file went and how much of it there is."""
    root = summary["root"]
    if not summary["generated"]:
        return (f"{root} already holds a complete synthetic dataset ({summary['options']}); "
                f"nothing written (use --overwrite to regenerate)")
    lines = [f"synthetic dataset written to {root} in {seconds:.1f} s"]
    for split in SPLITS:
        counts = summary["splits"][split]
        lines.append(f"  {os.path.join(root, IMAGE_FOLDER_PATTERN.format(split=split))}: "
                     f"{counts['images']} images")
        lines.append(f"  {os.path.join(root, ANNOTATION_FILE_PATTERN.format(split=split))}: "
                     f"{counts['people']} people, {counts['crowd_regions']} crowd regions, "
                     f"keypoints {counts['keypoints_visible']} visible / "
                     f"{counts['keypoints_occluded']} occluded / "
                     f"{counts['keypoints_outside']} outside the image")
    lines.append(f"  {os.path.join(root, DETECTION_FILE)}: {summary['detections']} person boxes")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    check_output_folder(args.root, "--root")
    start = time.perf_counter()
    summary = generate_synthetic_dataset(
        args.root, num_train=args.num_train, num_val=args.num_val, seed=args.seed,
        min_size=args.min_size, max_size=args.max_size, show_progress=not args.quiet,
        overwrite=args.overwrite, num_workers=args.workers)
    print(describe(summary, time.perf_counter() - start))


if __name__ == "__main__":
    run_cli(main)

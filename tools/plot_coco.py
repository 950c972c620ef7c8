"""Draw a COCO keypoint results file over its images, optionally with the ground truth.

    python tools/plot_coco.py --results output/.../results/keypoints_val2017_results.json \\
        --annotations data/coco/annotations/person_keypoints_val2017.json \\
        --images data/coco/images/val2017 --output output/plots --max-images 50 --with-gt

Writes <output>/<image id, 12 digits>.jpg for each image id of the results (with --with-gt also
for each image with annotated keypoints), in id order. Predictions: one colour per limb, white
joints, the person score above the head; ground truth: green, hollow joints. --dataset picks the
skeleton (the keypoint count must fit it).
"""

import argparse
import os

from hrpose.apis.plot import (
    DEFAULT_KEYPOINT_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    load_results,
    plot_coco_results,
)
from hrpose.datasets.metadata import KEYPOINT_INFO
from hrpose.engine.cli import add_option, run_cli
from hrpose.errors import DataFileNotFoundError
from hrpose.utils.paths import check_output_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="COCO keypoint results JSON")
    parser.add_argument("--annotations", required=True,
                        help="the split's COCO annotation JSON (image file names; ground truth)")
    parser.add_argument("--images", required=True,
                        help="folder the annotation file's image file names are relative to")
    parser.add_argument("--output", required=True, help="folder to write the drawn images to")
    parser.add_argument("--dataset", default="coco", choices=sorted(KEYPOINT_INFO),
                        help="whose skeleton to draw (default coco)")
    add_option(parser, "--score-threshold", "--score-thre", type=float,
               default=DEFAULT_SCORE_THRESHOLD, metavar="SCORE",
               help=f"draw persons scoring at least this (default {DEFAULT_SCORE_THRESHOLD})")
    add_option(parser, "--keypoint-threshold", "--keypoint-thre", type=float,
               default=DEFAULT_KEYPOINT_THRESHOLD, metavar="SCORE",
               help=f"draw keypoints whose confidence is above this (default "
                    f"{DEFAULT_KEYPOINT_THRESHOLD})")
    parser.add_argument("--max-images", type=int, default=0,
                        help="draw at most this many images, the lowest ids first (default 0: all)")
    parser.add_argument("--with-gt", action="store_true",
                        help="also draw the annotated keypoints (green)")
    parser.add_argument("--no-scores", action="store_true", help="do not print person scores")
    return parser


def parse_args() -> argparse.Namespace:
    return build_parser().parse_args()


def main() -> None:
    args = parse_args()
    if not os.path.isdir(args.images):
        raise DataFileNotFoundError(f"--images folder not found: '{args.images}' (the folder the "
                                    f"annotation file's image file names are relative to)")
    check_output_folder(args.output, "--output")
    written = plot_coco_results(load_results(args.results), args.annotations, args.images,
                                args.output, KEYPOINT_INFO[args.dataset],
                                score_threshold=args.score_threshold,
                                keypoint_threshold=args.keypoint_threshold,
                                max_images=args.max_images, with_gt=args.with_gt,
                                show_scores=not args.no_scores, show_progress=True)
    print(f"wrote {len(written)} images to {args.output}")


if __name__ == "__main__":
    run_cli(main)

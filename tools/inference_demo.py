"""Poses on a video, a camera or images: an annotated video, frames and one pose file.

  python tools/inference_demo.py --cfg FILE (--video-file VIDEO | --image PATH | --camera INDEX)
      [--output-dir DIR] [--inference-fps 10] [--vis-threshold 0.3] [--boxes detections.json |
      --detector-weights models/pytorch/detection/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth]
      [--box-threshold 0.5] [--write-frames] [--write-maps] [--format json|csv]
      [--max-frames N] [--track] [--smooth [--smooth-min-cutoff 1.0] [--smooth-beta 0.03]]
      TEST.MODEL_FILE model.pth [KEY VALUE ...]

The originals' spellings still work: --videoFile, --outputDir, --inferenceFps, --visthre,
--writeBoxFrames (as --write-frames), --modelDir, --logDir, --dataDir.

Writes <output-dir>/<name>_pose.mp4 (codec mp4v; video and camera inputs),
<output-dir>/<name>_poses.json or .csv (every processed frame: frame number, timestamp in
seconds, persons with keypoints, score and box), frames/ (annotated JPEGs; with --write-frames,
always for images) and maps/ (bottom-up heatmaps and tag maps, --write-maps). Top-down models
need person boxes: a COCO-format detection file (image_id = frame index for a video, the numeric
file name or list position for images) or torchvision's Faster R-CNN weights (never downloaded).

--track gives every person a track_id (JSON key, CSV column) by OKS matching to the persons of
the previous frames, and draws it in a colour per track; --smooth (which turns --track on)
smooths each track's joints over time with a One-Euro filter, so the drawn and written
keypoints are the smoothed ones.
"""

import argparse
import logging
import math
import os

from hrpose.apis.boxes import DEFAULT_BOX_THRESHOLD, person_box_source
from hrpose.apis.frames import DEFAULT_INFERENCE_FPS, open_frame_source
from hrpose.apis.pose_file import OUTPUT_FORMATS
from hrpose.apis.predictor import PosePredictor
from hrpose.apis.tracking import DEFAULT_BETA, DEFAULT_KEYPOINT_THRESHOLD, DEFAULT_MIN_CUTOFF
from hrpose.apis.video import DEFAULT_VISUALIZATION_THRESHOLD, run_inference_demo
from hrpose.engine.cli import add_config_arguments, add_option, config_from_args, run_cli
from hrpose.engine.device import select_device
from hrpose.engine.run_dir import setup_logging
from hrpose.errors import HrposeError
from hrpose.utils.paths import check_output_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    add_option(source, "--video-file", "--videoFile", help="video file to process")
    source.add_argument("--image", help="an image file, a folder of images, or a .txt list of "
                                        "image paths (relative to the list's folder)")
    source.add_argument("--camera", type=int, metavar="INDEX",
                        help="OpenCV camera index, 0 for the first camera (stop with Ctrl-C or "
                             "--max-frames)")
    add_option(parser, "--output-dir", "--outputDir", default="", metavar="DIR",
               help="output folder (default <OUTPUT_DIR>/inference_demo)")
    add_option(parser, "--inference-fps", "--inferenceFps", type=float,
               default=DEFAULT_INFERENCE_FPS, metavar="FPS",
               help="process every round(video fps / this)-th frame; 0: every frame "
                    "(default %(default)s)")
    add_option(parser, "--vis-threshold", "--visthre", type=float,
               default=DEFAULT_VISUALIZATION_THRESHOLD, metavar="SCORE",
               help="persons scoring below this are not drawn or written (default %(default)s)")
    parser.add_argument("--boxes", metavar="DETECTIONS_JSON",
                        help="top-down: person boxes from a COCO-format detection results file")
    parser.add_argument("--detector-weights", metavar="PATH",
                        help="top-down: torchvision fasterrcnn_resnet50_fpn COCO weights, "
                             "kept under models/pytorch/detection/")
    add_option(parser, "--box-threshold", "--box-thre", type=float, default=DEFAULT_BOX_THRESHOLD,
               metavar="SCORE",
               help="person boxes scoring below this are dropped (default %(default)s)")
    add_option(parser, "--write-frames", "--writeBoxFrames", action="store_true",
               help="also write each annotated frame as a JPEG under frames/")
    parser.add_argument("--write-maps", action="store_true",
                        help="bottom-up: write heatmap and tag-map images per frame under maps/")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="json",
                        help="pose file format (default %(default)s)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="stop after N processed frames")
    parser.add_argument("--track", action="store_true",
                        help="give every person a track_id (OKS matching to the previous "
                             "frames' persons), written to the pose file and drawn")
    parser.add_argument("--smooth", action="store_true",
                        help="smooth each track's joints over time with a One-Euro filter "
                             f"(turns --track on); joints scored below "
                             f"{DEFAULT_KEYPOINT_THRESHOLD} pass through unfiltered")
    parser.add_argument("--smooth-min-cutoff", type=float, default=DEFAULT_MIN_CUTOFF,
                        metavar="HZ",
                        help="One-Euro cutoff frequency of a still joint, in Hz: lower is "
                             "smoother but lags more; 1 Hz about halves the jitter of a still "
                             "joint at 10 processed frames/s, more at higher rates "
                             "(default %(default)s)")
    parser.add_argument("--smooth-beta", type=float, default=DEFAULT_BETA, metavar="BETA",
                        help="One-Euro speed coefficient, in Hz per pixel/s: the cutoff grows "
                             "by this times a joint's speed, so moving joints lag less; "
                             "0.03 gives 4 Hz at 100 px/s (a slow arm swing in a 720p video), "
                             "so a joint lags about 4 px instead of 16; pixel speeds grow with "
                             "the resolution, so halve it for 1440p (default %(default)s)")
    add_config_arguments(parser)
    return parser


def parse_args() -> argparse.Namespace:
    return build_parser().parse_args()


def check_arguments(args: argparse.Namespace) -> None:
    """Values argparse cannot check, each refused with one line before anything is opened (OpenCV
    crashes the process on a negative camera index)."""
    if args.camera is not None and args.camera < 0:
        raise HrposeError(f"--camera must be a non-negative camera index (0 is the first "
                          f"camera), got {args.camera}")
    if args.max_frames is not None and args.max_frames < 1:
        raise HrposeError(f"--max-frames must be a positive number of frames, got "
                          f"{args.max_frames}")
    if not (math.isfinite(args.inference_fps) and args.inference_fps >= 0):
        raise HrposeError(f"--inference-fps must be zero (every frame) or a positive rate, got "
                          f"{args.inference_fps}")
    if not (math.isfinite(args.smooth_min_cutoff) and args.smooth_min_cutoff > 0):
        raise HrposeError(f"--smooth-min-cutoff must be a positive number of Hz, got "
                          f"{args.smooth_min_cutoff}")
    if not (math.isfinite(args.smooth_beta) and args.smooth_beta >= 0):
        raise HrposeError(f"--smooth-beta must be zero or positive, got {args.smooth_beta}")


def main() -> None:
    args = parse_args()
    check_arguments(args)
    cfg = config_from_args(args)
    output_dir = args.output_dir or os.path.join(cfg.OUTPUT_DIR, "inference_demo")
    check_output_folder(output_dir, "--output-dir" if args.output_dir else "the output folder")
    setup_logging()
    source = open_frame_source(args.video_file, args.image, args.camera, args.inference_fps,
                               args.max_frames)
    try:
        device = select_device(cfg)
        # Before the log file, so that a missing or bad --boxes / --detector-weights leaves no
        # output folder behind.
        boxes = person_box_source(cfg, args.boxes, args.detector_weights, args.box_threshold,
                                   device)
        setup_logging(os.path.join(output_dir, "inference_demo.log"))
        predictor = PosePredictor.from_config(cfg, device=device, box_source=boxes)
    except BaseException:
        source.close()
        raise
    outputs = run_inference_demo(predictor, source, output_dir, args.vis_threshold,
                                 write_frames=args.write_frames, write_maps=args.write_maps,
                                 output_format=args.format, config_file=args.cfg,
                                 track=args.track, smooth=args.smooth,
                                 smooth_min_cutoff=args.smooth_min_cutoff,
                                 smooth_beta=args.smooth_beta)
    logger = logging.getLogger("hrpose.inference_demo")
    logger.info("poses: %s", outputs.poses_file)
    for label, path in (("video", outputs.video_file), ("frames", outputs.frames_dir),
                        ("maps", outputs.maps_dir)):
        if path:
            logger.info("%s: %s", label, path)


if __name__ == "__main__":
    run_cli(main)

"""Export an experiment's model to ONNX (opset 17 by default) and check the file against PyTorch.

    python tools/export_onnx.py --cfg experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml \\
        --output models/onnx/pose_hrnet_w32_256x192.onnx \\
        TEST.MODEL_FILE models/pytorch/pose_coco/pose_hrnet_w32_256x192.pth
    python tools/export_onnx.py --cfg EXPERIMENT.yaml --output smoke.onnx --random-weights

The input 'input' is a float32 NCHW batch, normalised as in training (pixel / 255, ImageNet mean
and std, the config's channel order); its batch axis is dynamic (--fixed-batch N fixes it), and
so are height and width for bottom-up models. Outputs are the raw maps: 'heatmaps' for top-down
models (the hourglass's last stack; --all-stacks exports each as heatmaps_stackI), one output per
resolution for HigherHRNet (e.g. heatmaps_tags_stride4, heatmaps_stride2). Decoding, flip test,
grouping and NMS are not in the graph (see hrpose.apis.export). The keypoint-regression models
(pose_hrnet_regression, pose_higher_hrnet_regression) are refused: torchvision cannot export their
deformable convolutions.

After writing the file (under a temporary name, then renamed) the tool runs random inputs through
onnxruntime's CPU provider and through PyTorch and prints the largest absolute difference of each
output; above --tolerance it exits with status 1 (the file is kept for inspection). Bad input
(missing checkpoint, config that does not fit it, a model that cannot be exported, an opset this
PyTorch cannot export to, an --output that is a folder) ends with one 'error:' line and status 2;
the options are checked before the model is loaded. --all-stacks on a model without stacks only
warns: the file then holds every output the model has, which is what was asked for.
"""

import argparse
import logging
import math
import sys

from hrpose.apis.export import (
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    check_export_options,
    check_onnx_parity,
    export_onnx,
    format_parity,
    load_model_for_export,
    max_differences,
    supported_opsets,
)
from hrpose.config import load_config
from hrpose.engine.cli import run_cli
from hrpose.errors import HrposeError
from hrpose.utils.paths import check_output_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="experiment YAML file")
    parser.add_argument("--output", required=True, help="the ONNX file to write (FILE.onnx)")
    parser.add_argument("--random-weights", action="store_true",
                        help="export a randomly initialised model instead of TEST.MODEL_FILE "
                             "(a smoke export of the graph)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random weights and of the check inputs (default 0)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"largest absolute difference allowed between onnxruntime and "
                             f"PyTorch (default {DEFAULT_TOLERANCE:g})")
    opsets = supported_opsets()
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET}"
                             + (f"; this PyTorch exports {opsets.start} to {opsets.stop - 1})"
                                if opsets else ")"))
    parser.add_argument("--fixed-batch", type=int, default=None, metavar="N",
                        help="export with a fixed batch size N instead of a dynamic batch axis")
    parser.add_argument("--all-stacks", action="store_true",
                        help="stacked hourglass: export every stack's heatmaps, not only the "
                             "last (other models: no effect, with a warning)")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. TEST.MODEL_FILE m.pth")
    return parser


def parse_args() -> argparse.Namespace:
    return build_parser().parse_args()


def check_arguments(args: argparse.Namespace) -> None:
    """The options that need no model, checked before the model is built or loaded."""
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise HrposeError(f"--tolerance must be zero or a positive number, got {args.tolerance}")
    if args.fixed_batch is not None and args.fixed_batch < 1:
        raise HrposeError(f"--fixed-batch must be a positive batch size, got {args.fixed_batch}")
    check_export_options(args.opset)
    check_output_file(args.output, "--output")


def main() -> None:
    args = parse_args()
    logging.basicConfig(format="%(levelname)s: %(message)s")
    check_arguments(args)
    cfg = load_config(args.cfg, args.opts)
    model = load_model_for_export(cfg, args.random_weights, args.seed)
    weights = "random initialisation" if args.random_weights else cfg.TEST.MODEL_FILE
    exported = export_onnx(model, cfg, args.output, opset=args.opset, all_stacks=args.all_stacks,
                           fixed_batch=args.fixed_batch, weights=weights)
    batch = ("fixed batch " + str(args.fixed_batch)) if exported.fixed_batch else "dynamic batch"
    sizes = ", dynamic height and width" if exported.bottom_up else ""
    print(f"exported {cfg.MODEL.NAME} ({weights}) to {exported.path}")
    print(f"  input '{exported.input_name}' {exported.example_shape} traced, {batch}{sizes}; "
          f"outputs: {', '.join(exported.output_names)}")
    for note in exported.notes:
        print(f"  note: {note}")

    checks = check_onnx_parity(model, exported, seed=args.seed)
    print("parity, onnxruntime (CPU) vs PyTorch, random inputs:")
    print(format_parity(checks))
    worst = max_differences(checks)
    failed = {name: diff for name, diff in worst.items() if not diff <= args.tolerance}
    summary = ", ".join(f"{name} {diff:.3e}" for name, diff in worst.items())
    if failed:
        print(f"FAILED: max |diff| {summary} exceeds the tolerance {args.tolerance:g}; "
              f"{exported.path} is kept for inspection", file=sys.stderr)
        sys.exit(1)
    print(f"OK: max |diff| {summary} <= tolerance {args.tolerance:g}")


if __name__ == "__main__":
    run_cli(main)

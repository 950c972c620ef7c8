"""Evaluate a pose model: python tools/valid.py --cfg FILE [--fuse-conv-bn] [KEY VALUE ...]."""

import argparse

from hrpose.engine.cli import add_config_arguments, config_from_args, run_cli
from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import validate_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fuse-conv-bn", action="store_true",
                        help="fold BatchNorm into the convolutions before testing (faster)")
    add_config_arguments(parser)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    cfg = config_from_args(args)
    validate_model(cfg, create_run(cfg, args.cfg, "valid"), fuse_batch_norm=args.fuse_conv_bn)


if __name__ == "__main__":
    run_cli(main)

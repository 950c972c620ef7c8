"""Train a pose model: python tools/train.py --cfg FILE [--overwrite] [KEY VALUE ...] (or under
torchrun). A run does not start over an earlier run's files in its output folder: resume it
(AUTO_RESUME True), pick another folder (--model-dir DIR), or pass --overwrite to move the earlier
files into <output folder>/previous-<time>/ first."""

import argparse

from hrpose.engine.cli import add_config_arguments, config_from_args, run_cli
from hrpose.engine.device import select_device
from hrpose.engine.distributed import distributed_session
from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in an output folder that holds an earlier run, after "
                             "moving its checkpoints and results into previous-<time>/")
    add_config_arguments(parser)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    cfg = config_from_args(args)
    # The process group opens before the run folder so that all processes share rank 0's
    # verdict on it; train() joins the open group.
    with distributed_session(select_device(cfg)):
        train(cfg, create_run(cfg, args.cfg, "train", overwrite=args.overwrite))


if __name__ == "__main__":
    run_cli(main)

"""Train a pose model: python tools/train.py --cfg FILE [KEY VALUE ...] (or under torchrun)."""

import argparse

from hrpose.engine.cli import add_config_arguments, config_from_args, run_cli
from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_config_arguments(parser)
    args = parser.parse_args()
    cfg = config_from_args(args)
    train(cfg, create_run(cfg, args.cfg, "train"))


if __name__ == "__main__":
    run_cli(main)

"""The demo on the built-in synthetic dataset: python tools/demo.py --cfg FILE [KEY VALUE ...]."""

import argparse
import logging

from hrpose.engine.cli import add_config_arguments, config_from_args, run_cli
from hrpose.engine.demo import run_demo
from hrpose.engine.run_dir import create_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_config_arguments(parser)
    args = parser.parse_args()
    cfg = config_from_args(args)
    paths = create_run(cfg, args.cfg, "demo")
    best, drawn = run_demo(cfg, paths)
    logger = logging.getLogger("hrpose.demo")
    logger.info("demo finished: best AP %.3f; run folder %s", best, paths.output_dir)
    logger.info("predicted skeletons drawn on %d images under %s/demo_images", len(drawn),
                paths.output_dir)


if __name__ == "__main__":
    run_cli(main)

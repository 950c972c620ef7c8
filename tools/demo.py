"""The demo on the built-in synthetic dataset: python tools/demo.py --cfg FILE [KEY VALUE ...].

Trains the experiment, validates it, draws its predictions on a few val images (demo_images/),
then runs the trained model on a short video made of the first val images and writes the
annotated video and the poses of every frame (demo_video/). Re-running it starts over: the earlier
run's checkpoints and results move into <output folder>/previous-<time>/ first.
"""

import argparse
import logging

from hrpose.apis.demo import run_demo
from hrpose.engine.cli import add_config_arguments, config_from_args, run_cli
from hrpose.engine.run_dir import create_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    cfg = config_from_args(args)
    # `make demo` is meant to be re-run; the earlier files are moved aside, not overwritten.
    paths = create_run(cfg, args.cfg, "demo", overwrite=True)
    result = run_demo(cfg, paths, config_file=args.cfg)
    logger = logging.getLogger("hrpose.demo")
    logger.info("demo finished: best AP %.3f; run folder %s", result.best, paths.output_dir)
    logger.info("predicted skeletons drawn on %d images under %s/demo_images",
                len(result.drawn_images), paths.output_dir)
    logger.info("annotated video: %s", result.annotated_video)
    logger.info("poses: %s", result.poses_file)


if __name__ == "__main__":
    run_cli(main)

"""Make the rescore net's training data: python tools/rescore_data.py --cfg FILE [KEY VALUE ...].

Runs the experiment's regression model (TEST.MODEL_FILE) over a split, the training split by
default, without rescoring, and writes each image's poses with their best OKS against its ground
truth to RESCORE.DATA_FILE (an .npz; --output overrides it). tools/rescore_train.py trains the
rescore net on it.
"""

import argparse

from hrpose.engine.cli import add_config_arguments, config_from_args, run_cli
from hrpose.engine.rescore import RESULT_SETS, write_rescore_data_of_config
from hrpose.engine.run_dir import create_run
from hrpose.utils.paths import check_output_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("train", "test"), default="train",
                        help="DATASET.TRAIN_SET (default) or DATASET.TEST_SET")
    parser.add_argument("--result-set", choices=RESULT_SETS, default="final",
                        help="which of the model's result sets to record (default final, the "
                             "one the validation reports as its indicator)")
    parser.add_argument("--output", default="", help="the .npz to write (default "
                                                     "RESCORE.DATA_FILE)")
    add_config_arguments(parser)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    cfg = config_from_args(args)
    # Checked before the model runs over the whole split.
    output = args.output or cfg.RESCORE.DATA_FILE
    if output:
        check_output_file(output, "--output" if args.output else "RESCORE.DATA_FILE")
    create_run(cfg, args.cfg, "rescore_data")
    write_rescore_data_of_config(cfg, args.split, args.result_set, args.output)


if __name__ == "__main__":
    run_cli(main)

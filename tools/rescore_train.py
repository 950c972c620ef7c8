"""Train the rescore net: python tools/rescore_train.py --cfg FILE [KEY VALUE ...].

Reads the samples tools/rescore_data.py wrote (RESCORE.DATA_FILE; --data overrides it), trains
the net on their features (MSE, Adam at RESCORE.LR, batches of RESCORE.BATCHSIZE, the last partial
batch dropped, RESCORE.END_EPOCH epochs) and saves its state dict to RESCORE.MODEL_FILE (--output
overrides it), written atomically. Test with it: tools/valid.py ... RESCORE.MODEL_FILE FILE.
"""

import argparse

from hrpose.engine.cli import add_config_arguments, config_from_args, run_cli
from hrpose.engine.rescore import train_rescore_net_of_config
from hrpose.engine.run_dir import create_run
from hrpose.utils.paths import check_output_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="", help="the rescore data .npz (default "
                                                   "RESCORE.DATA_FILE)")
    parser.add_argument("--output", default="", help="where to save the net (default "
                                                     "RESCORE.MODEL_FILE)")
    add_config_arguments(parser)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    cfg = config_from_args(args)
    # Checked before the net trains.
    output = args.output or cfg.RESCORE.MODEL_FILE
    if output:
        check_output_file(output, "--output" if args.output else "RESCORE.MODEL_FILE")
    create_run(cfg, args.cfg, "rescore_train")
    train_rescore_net_of_config(cfg, args.data, args.output)


if __name__ == "__main__":
    run_cli(main)

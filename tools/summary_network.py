"""Print a model's parameters, true multiply-adds and its paper's GFLOPs figure for an experiment
(and the paper's parameter count where its tool counted shared or re-run layers again)."""

import argparse
import os

import torch

from hrpose.config import load_config
from hrpose.engine.cli import run_cli
from hrpose.models import build_model
from hrpose.models.complexity import format_summary_table, network_input_size, summarize


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cfg", required=True, help="experiment YAML, e.g. "
                        "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    return parser


def parse_args() -> argparse.Namespace:
    return build_parser().parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args.cfg, args.opts)
    # Built on the meta device, the model holds no memory and its forward pass computes nothing.
    with torch.device("meta"):
        model = build_model(cfg, is_train=False)
    experiment = os.path.splitext(os.path.basename(args.cfg))[0]
    row = summarize(model, cfg.MODEL.NAME, network_input_size(cfg), experiment=experiment)
    print(format_summary_table([row]))


if __name__ == "__main__":
    run_cli(main)

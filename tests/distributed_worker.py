"""Helper of test_distributed_train.py: one training process with a tiny BatchNorm-free model.

Run directly for one process or under torchrun for several:
    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        tests/distributed_worker.py KEY VALUE ...
"""

import sys
from pathlib import Path

from torch import nn

from hrpose.config import load_config
from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import train
from hrpose.models import registry

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_CFG = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"


class TinyPoseNet(nn.Module):
    """A 64x64 crop to 17 heatmaps of 16x16 through three convolutions and no BatchNorm, so
    its gradient is the same however a batch is split over processes."""

    def __init__(self, num_joints: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                    nn.Conv2d(8, num_joints, 1))

    def init_weights(self, pretrained: str = "", method: str = "normal") -> None:
        """PyTorch's default initialisation, drawn after the trainer seeds torch with SEED."""

    def forward(self, images):
        return self.layers(images)


def tiny_builder(cfg):
    return TinyPoseNet(cfg.MODEL.NUM_JOINTS)


def train_tiny(opts: list[str]) -> float:
    """Train the tiny model under the synthetic HRNet experiment with opts as overrides."""
    cfg = load_config(str(REPO_ROOT / SYNTHETIC_CFG), opts)
    return train(cfg, create_run(cfg, SYNTHETIC_CFG, "train"))


if __name__ == "__main__":
    registry.MODEL_BUILDERS["pose_hrnet"] = tiny_builder
    train_tiny(sys.argv[1:])

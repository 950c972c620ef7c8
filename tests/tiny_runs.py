"""Tiny synthetic datasets, CPU run settings and a tiny model shared by the training tests."""

from torch import nn

from hrpose.config import load_config
from hrpose.datasets.synthetic import generate_synthetic_dataset

SYNTHETIC_CFG = "experiments/synthetic/hrnet/w16_128x96_adam_lr2e-3.yaml"


def make_tiny_dataset(tmp_path_factory, name: str, seed: int, num_val: int, min_size: int = 160,
                      max_size: int = 192):
    """A fresh synthetic dataset of 6 training images under a new temporary folder name*; the
    seed fixes how many persons each split holds."""
    root = tmp_path_factory.mktemp(name)
    generate_synthetic_dataset(str(root), num_train=6, num_val=num_val, seed=seed,
                               min_size=min_size, max_size=max_size)
    return root


def run_opts(output_root) -> list:
    """Output and log folders under output_root, no loader workers, the CPU."""
    return ["OUTPUT_DIR", str(output_root / "output"), "LOG_DIR", str(output_root / "log"),
            "WORKERS", "0", "DEVICE", "cpu"]


def tiny_topdown_opts(data_root, output_root, *extra, train_batch: int = 8, end_epoch: int = 2,
                      lr_step: str = "[1]") -> list:
    """Overrides for a top-down synthetic experiment at 64x64 input and 16x16 heatmaps, with the
    dataset's detection file; extra come last and win."""
    return ["DATASET.ROOT", str(data_root),
            "TEST.COCO_BBOX_FILE",
            str(data_root / "person_detection_results" / "synthetic_val_detections.json"),
            *run_opts(output_root),
            "MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.HEATMAP_SIZE", "[16, 16]", "MODEL.SIGMA", "1.0",
            "TRAIN.BATCH_SIZE_PER_GPU", str(train_batch), "TEST.BATCH_SIZE_PER_GPU", "8",
            "TRAIN.END_EPOCH", str(end_epoch), "TRAIN.LR_STEP", lr_step, *extra]


def tiny_topdown_config(repo_root, data_root, output_root, *extra, cfg_file: str = SYNTHETIC_CFG,
                        **settings):
    """The experiment cfg_file with tiny_topdown_opts (settings: its keyword arguments)."""
    return load_config(str(repo_root / cfg_file),
                       tiny_topdown_opts(data_root, output_root, *extra, **settings))


class TinyBNPoseNet(nn.Module):
    """A 64x64 crop to 16x16 heatmaps through three convolutions, BatchNorm after the first two
    as in HRNet: with a far too high rate its loss explodes but stays finite, as HRNet's does."""

    def __init__(self, num_joints: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                                    nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                                    nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, num_joints, 1))

    def init_weights(self, pretrained: str = "", method: str = "normal") -> None:
        """PyTorch's default initialisation."""

    def forward(self, images):
        return self.layers(images)

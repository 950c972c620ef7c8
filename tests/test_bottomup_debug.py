"""Bottom-up debug images follow the DEBUG.* switches."""

import cv2
import numpy as np
import torch

from hrpose.config import get_default_config
from hrpose.engine.debug import _decode_joints_targets, _heatmap_peaks, save_bottomup_debug_images

SUFFIXES = ("gt", "pred", "hm_gt", "hm_pred")


def _debug(enabled: bool):
    debug = get_default_config().DEBUG.clone()
    debug.defrost()
    debug.DEBUG = enabled
    debug.SAVE_BATCH_IMAGES_GT = True
    debug.SAVE_BATCH_IMAGES_PRED = True
    debug.SAVE_HEATMAPS_GT = True
    debug.SAVE_HEATMAPS_PRED = True
    return debug


def _batch():
    torch.manual_seed(0)
    joints_count, size, people = 17, 16, 30
    images = torch.randn(2, 3, 64, 64)
    heatmaps = torch.zeros(2, joints_count, size, size)
    joints = torch.zeros(2, people, joints_count, 2, dtype=torch.int64)
    # One person with two visible joints: joint 0 at (x=3, y=5), joint 5 at (x=10, y=12).
    for slot, (joint, x, y) in enumerate([(0, 3, 5), (5, 10, 12)]):
        heatmaps[0, joint, y, x] = 1.0
        joints[0, 0, slot] = torch.tensor([joint * size * size + y * size + x, 1])
    outputs = [torch.cat([heatmaps * 0.9, torch.randn(2, joints_count, size, size)], dim=1),
               torch.rand(2, joints_count, 32, 32)]
    return images, [heatmaps, torch.zeros(2, joints_count, 32, 32)], joints, outputs


def test_all_switches_write_four_readable_images(tmp_path):
    images, heatmaps, joints, outputs = _batch()
    prefix = str(tmp_path / "train_0")
    save_bottomup_debug_images(_debug(True), prefix, images, heatmaps, [joints], outputs)
    for suffix in SUFFIXES:
        image = cv2.imread(f"{prefix}_{suffix}.jpg")
        assert image is not None and image.size > 0, suffix
    assert cv2.imread(f"{prefix}_gt.jpg").shape[:2] == (64, 128)
    assert cv2.imread(f"{prefix}_hm_gt.jpg").shape[:2] == (2 * 16, 18 * 16)


def test_debug_off_writes_nothing(tmp_path):
    images, heatmaps, joints, outputs = _batch()
    save_bottomup_debug_images(_debug(False), str(tmp_path / "train_0"), images, heatmaps,
                               [joints], outputs)
    assert list(tmp_path.iterdir()) == []


def test_joints_and_peaks_decode_to_input_pixels():
    _, heatmaps, joints, outputs = _batch()
    coords, visible = _decode_joints_targets(joints, 16, 4.0)
    assert visible.sum() == 2
    np.testing.assert_array_equal(coords[0][visible[0] > 0], [[12, 20], [40, 48]])
    coords, visible = _heatmap_peaks(outputs[0][:, :17], 4.0)
    assert visible[0].sum() == 2 and visible[1].sum() == 0
    np.testing.assert_array_equal(coords[0][visible[0] > 0], [[12, 20], [40, 48]])


def test_train_one_epoch_writes_debug_images_every_print_freq(tmp_path):
    from hrpose.engine.bottomup import train_one_epoch

    images, heatmaps, joints, _ = _batch()
    masks = [torch.ones(2, 16, 16), torch.ones(2, 32, 32)]
    loader = [(images, heatmaps, masks, [joints, joints])] * 3

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 34, 1)

        def forward(self, x):
            low = torch.nn.functional.adaptive_avg_pool2d(self.conv(x), 16)
            return [low, torch.nn.functional.interpolate(low[:, :17], size=32)]

    def criterion(outputs, targets, masks, joints):
        heatmaps_losses = [((o[:, :17] - t) ** 2).mean(dim=(1, 2, 3))
                           for o, t in zip(outputs, targets)]
        return heatmaps_losses, [None, None], [None, None]

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train_one_epoch(model, loader, criterion, optimizer, torch.device("cpu"), 0, 2,
                    debug=_debug(True), output_dir=str(tmp_path))
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(f"train_{i}_{s}.jpg" for i in (0, 2) for s in SUFFIXES)

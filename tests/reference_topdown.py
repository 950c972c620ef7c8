"""HRNet's top-down decoding written as plain loops: the oracle of the decoding tests and the
baseline of bench/bench_topdown_decode.py."""

import math

import cv2
import numpy as np

# HRNet's get_final_preds (lib/core/inference.py of leoxiaobin/deep-high-resolution-net.pytorch)
# and the transform_preds it calls (lib/utils/transforms.py there), written as plain loops from
# that code. Its coordinates are the expected values of the tests below.

def reference_get_max_preds(batch_heatmaps):
    batch_size, num_joints, _, width = batch_heatmaps.shape
    reshaped = batch_heatmaps.reshape((batch_size, num_joints, -1))
    index = np.argmax(reshaped, 2).reshape((batch_size, num_joints, 1))
    maxvals = np.amax(reshaped, 2).reshape((batch_size, num_joints, 1))
    preds = np.tile(index, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = preds[:, :, 0] % width
    preds[:, :, 1] = np.floor(preds[:, :, 1] / width)
    preds *= np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
    return preds, maxvals


def reference_quarter_offset(coords, batch_heatmaps):
    """get_final_preds' POST_PROCESS loop, in place on coords."""
    heatmap_height, heatmap_width = batch_heatmaps.shape[2:]
    for n in range(coords.shape[0]):
        for p in range(coords.shape[1]):
            hm = batch_heatmaps[n][p]
            px = int(math.floor(coords[n][p][0] + 0.5))
            py = int(math.floor(coords[n][p][1] + 0.5))
            if 1 < px < heatmap_width - 1 and 1 < py < heatmap_height - 1:
                diff = np.array([hm[py][px + 1] - hm[py][px - 1],
                                 hm[py + 1][px] - hm[py - 1][px]])
                coords[n][p] += np.sign(diff) * .25
    return coords


def reference_inverse_affine(center, scale, output_size):
    """get_affine_transform(center, scale, 0, output_size, inv=1)."""
    scale_tmp = scale * 200.0
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + np.array([0, scale_tmp[0] * -0.5])
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0, dst_w * -0.5], np.float32)
    for points in (src, dst):
        direct = points[0, :] - points[1, :]
        points[2:, :] = points[1, :] + np.array([-direct[1], direct[0]], dtype=np.float32)
    return cv2.getAffineTransform(np.float32(dst), np.float32(src))


def reference_get_final_preds(batch_heatmaps, center, scale, post_process):
    coords, maxvals = reference_get_max_preds(batch_heatmaps)
    heatmap_height, heatmap_width = batch_heatmaps.shape[2:]
    if post_process:
        coords = reference_quarter_offset(coords, batch_heatmaps)
    preds = coords.copy()
    for i in range(coords.shape[0]):
        trans = reference_inverse_affine(center[i], scale[i], [heatmap_width, heatmap_height])
        for p in range(coords.shape[1]):
            preds[i, p, 0:2] = np.dot(trans, np.array([coords[i, p, 0], coords[i, p, 1], 1.0]))[:2]
    return preds, maxvals

"""Regression decoding: up_interpolate, flip shift, ideal maps to people, pose NMS, scores."""

import numpy as np
import pytest
import torch
from scipy.optimize import curve_fit

from hrpose.config import ConfigError, get_default_config
from hrpose.datasets.metadata import COCO
from hrpose.postprocess.regression import (
    RegressionTestParams,
    absorb_heat,
    candidate_poses,
    fit_gaussian_windows,
    flipped_input,
    gaussian_fit_adjust,
    heat_values,
    infer_regression,
    offsets_to_keypoints,
    pool_kernel,
    pose_nms,
    unflip_heatmaps,
    unflip_keypoint_maps,
    up_interpolate,
)

J = 17
FLIP_INDEX = tuple(int(i) for i in COCO.flip_index)
IMAGE_SIZE = 256


# ------------------------------------------------------------------------------------------------
# A model that returns ideal maps for known people, in whatever frame its input shows.

def gaussian_maps(height, width, points, sigma):
    """Gaussians (P, K, h, w) at points (P, K, 2), one exp per axis (the Gaussian separates)."""
    along_x = np.exp(-(np.arange(width) - points[..., 0, None]) ** 2 / (2 * sigma ** 2))
    along_y = np.exp(-(np.arange(height) - points[..., 1, None]) ** 2 / (2 * sigma ** 2))
    return along_y[..., :, None] * along_x[..., None, :]


class IdealModel(torch.nn.Module):
    """Maps of people at known image positions; the image must be IMAGE_SIZE square with a white
    block in its top-left corner, so that a mirrored input (block on the right) and its shift
    (trailing all-zero columns) can be recognised. Keypoints at stride 4 from offsets (pixel -
    keypoint of the person with the nearest centre), centre Gaussians on the centre pixels,
    keypoint Gaussians; the HigherHRNet variant adds three branches and a 1/2 heatmap stage."""

    def __init__(self, keypoints, centres, higher=False):
        super().__init__()
        self.keypoints = np.asarray(keypoints, dtype=np.float64)
        self.centres = np.asarray(centres, dtype=np.float64)
        self.higher = higher
        self.calls = []

    def frame(self, x):
        width = x.shape[3]
        top = x[0, :, : x.shape[2] // 8]
        mirrored = bool(top[..., width // 2:].mean() > top[..., : width // 2].mean())
        shift = 0
        while shift < width and bool((x[0, :, :, width - 1 - shift] == 0).all()):
            shift += 1
        return width / IMAGE_SIZE, mirrored, shift

    def positions(self, width, stride, scale, mirrored, shift):
        keypoints, centres = self.keypoints * scale, self.centres * scale
        if mirrored:  # a mirrored person shows its left joints where its right ones were
            keypoints = keypoints[:, list(FLIP_INDEX)].copy()
            keypoints[..., 0] = width - 1 - shift - keypoints[..., 0]
            centres = centres.copy()
            centres[:, 0] = width - 1 - shift - centres[:, 0]
        return keypoints / stride, centres / stride

    def heatmaps(self, height, width, keypoints, centres, with_centre):
        maps = gaussian_maps(height, width, keypoints, 2.0).max(axis=0)
        if with_centre:
            centre = gaussian_maps(height, width, centres[:, None], 1.0).max(axis=0)
            maps = np.concatenate([maps, centre])
        return torch.from_numpy(maps.astype(np.float32))[None]

    def forward(self, x):
        height, width = x.shape[2:]
        scale, mirrored, shift = self.frame(x)
        self.calls.append((width, mirrored, shift))
        keypoints, centres = self.positions(width, 4, scale, mirrored, shift)
        h, w = height // 4, width // 4
        heatmaps = self.heatmaps(h, w, keypoints, centres, True)
        rows, columns = np.mgrid[0:h, 0:w]
        owner = ((columns[None] - centres[:, 0, None, None]) ** 2
                 + (rows[None] - centres[:, 1, None, None]) ** 2).argmin(axis=0)
        offsets = np.zeros((2 * J, h, w), dtype=np.float32)
        offsets[0::2] = columns[None] - keypoints[owner][..., 0].transpose(2, 0, 1)
        offsets[1::2] = rows[None] - keypoints[owner][..., 1].transpose(2, 0, 1)
        offsets = torch.from_numpy(offsets)[None]
        if not self.higher:
            return [[heatmaps]], [[offsets]]
        half_keypoints, half_centres = self.positions(width, 2, scale, mirrored, shift)
        half = self.heatmaps(height // 2, width // 2, half_keypoints, half_centres, False)
        return [[heatmaps * 0.9, heatmaps, heatmaps * 0.8], [half]], [[offsets]]


def mirror_marked_image():
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[:64, :64] = 255
    return image


def two_people():
    # Centres on multiples of 16 image pixels (whole map pixels at every scale and stride);
    # joints on quarter pixels (exact in float32 at every scale).
    rng = np.random.default_rng(0)
    centres = np.array([[80.0, 112.0], [176.0, 160.0]])
    keypoints = centres[:, None, :] + np.round(rng.uniform(-32, 32, size=(2, J, 2)) * 4) / 4
    return keypoints, centres


# ------------------------------------------------------------------------------------------------

def test_up_interpolate_alignment():
    maps = torch.rand(1, 2, 4, 5)
    for factor in (2, 4):
        out = up_interpolate(maps, (4 * factor, 5 * factor))
        assert out.shape == (1, 2, 4 * factor, 5 * factor)
        # pixel j sits on pixel f * j ...
        torch.testing.assert_close(out[..., ::factor, ::factor], maps)
        # ... halfway between two pixels is their mean ...
        half = factor // 2
        torch.testing.assert_close(out[..., 0, half], (maps[..., 0, 0] + maps[..., 0, 1]) / 2)
        # ... and the last f - 1 rows and columns repeat the last one.
        last_row, last_column = 3 * factor, 4 * factor
        for extra in range(1, factor):
            torch.testing.assert_close(out[..., last_row + extra, :], out[..., last_row, :])
            torch.testing.assert_close(out[..., last_column + extra], out[..., last_column])
    torch.testing.assert_close(up_interpolate(maps, (4, 5)), maps)
    with pytest.raises(ValueError):
        up_interpolate(maps, (2, 5))


def test_flip_shift_maps_output_pixels_onto_each_other():
    image = torch.rand(1, 3, 8, 64)
    for stride in (4, 2):
        def model(x, stride=stride):  # output pixel j is input column stride * j
            return x[..., ::stride]
        normal = model(image)
        shifted = unflip_heatmaps(model(flipped_input(image, stride - 1)), [0, 1, 2])
        torch.testing.assert_close(shifted, normal, rtol=0, atol=0)
        unshifted = unflip_heatmaps(model(flipped_input(image, 0)), [0, 1, 2])
        assert not torch.equal(unshifted, normal)
    # The shifted columns are zero, the image is not changed in place.
    copy = image.clone()
    assert not flipped_input(image, 3)[..., -3:].any() and torch.equal(image, copy)


def test_keypoint_maps_of_a_mirrored_pass():
    # A keypoint at x = 5.25 is seen by the mirrored pass as its mirror joint at w - 1 - 5.25;
    # the offsets there give it back in the normal frame, at the mirrored pixel.
    w, h = 16, 4
    offsets = torch.zeros(1, 2 * J, h, w)
    columns = torch.arange(w, dtype=torch.float32)
    offsets[0, 2 * 2] = columns - (w - 1 - 5.25)  # channel "right eye" of the mirrored pass
    offsets[0, 2 * 2 + 1] = torch.arange(h, dtype=torch.float32)[:, None] - 1.5
    normal = unflip_keypoint_maps(offsets_to_keypoints(offsets), FLIP_INDEX)
    # Every pixel of the normal frame's left eye (index 1) now says (5.25, 1.5).
    assert torch.all(normal[0, 2] == 5.25) and torch.all(normal[0, 3] == 1.5)
    keypoints = offsets_to_keypoints(torch.zeros(1, 2, 3, 4))
    assert torch.equal(keypoints[0, 0], torch.arange(4.0).expand(3, 4))
    assert torch.equal(keypoints[0, 1], torch.arange(3.0)[:, None].expand(3, 4))


@pytest.mark.parametrize("higher, scales, flip, calls", [
    (False, (1.0,), False, [(256, False, 0)]),
    (False, (1.0,), True, [(256, False, 0), (256, True, 3)]),
    (False, (1.0, 0.5), True, [(256, False, 0), (256, True, 3), (128, False, 0), (128, True, 3)]),
    # The HigherHRNet variant mirrors twice: shift 3 for the 1/4 maps, 1 for the 1/2 heatmap.
    (True, (1.0,), True, [(256, False, 0), (256, True, 3), (256, True, 1)]),
])
def test_ideal_maps_decode_to_the_people(higher, scales, flip, calls):
    keypoints, centres = two_people()
    model = IdealModel(keypoints, centres, higher)
    params = RegressionTestParams(num_joints=J, input_size=IMAGE_SIZE, scale_factors=scales,
                                  flip_test=flip, flip_index=FLIP_INDEX)
    prediction = infer_regression(model, mirror_marked_image(), params)
    assert model.calls == calls
    for result, tolerance in ((prediction.regression, 0.0), (prediction.final, 0.5)):
        assert result.poses.shape == (2, J, 3) and result.scores.shape == (2,)
        order = np.argsort(result.poses[:, 0, 0])
        np.testing.assert_allclose(result.poses[order, :, :2], keypoints, rtol=0, atol=tolerance)
        # Joint scores: centre score (1) x heat value (about 1 at a Gaussian's peak).
        assert np.all(result.poses[..., 2] > 0.8) and np.all(result.poses[..., 2] <= 1.01)
        np.testing.assert_allclose(result.scores, result.poses[..., 2].mean(axis=1), rtol=1e-6)


def test_flip_upsample_fix():
    # The reference mirrors the up-sampled 1/4 maps of the mirrored pass one pixel off; the fix
    # mirrors before up-sampling, and the fitted joints land on the people.
    keypoints, centres = two_people()
    errors = []
    for fix in (False, True):
        params = RegressionTestParams(num_joints=J, input_size=IMAGE_SIZE, flip_test=True,
                                      flip_index=FLIP_INDEX, fix_flip_upsample=fix)
        final = infer_regression(IdealModel(keypoints, centres, True), mirror_marked_image(),
                                 params).final
        errors.append(np.abs(final.poses[np.argsort(final.poses[:, 0, 0]), :, :2]
                             - keypoints).max())
    assert errors[1] < 0.1 < errors[0]


def test_pose_nms():
    rng = np.random.default_rng(3)
    a = rng.uniform(100, 200, size=(J, 2))
    a_close = a + rng.uniform(-3, 3, size=(J, 2))
    b = a + 300
    c = a.copy()
    c[:7] += 50  # 10 joints close to a: not more than OVERLAP_THRESHOLD 10, so distinct
    d = a.copy()
    d[:6] -= 50  # 11 joints close to a (and to a_close): a duplicate
    poses = np.stack([a, a_close, b, c, d])
    keep = pose_nms(poses, np.array([0.5, 0.9, 0.7, 0.6, 0.4]), 10, 10)
    np.testing.assert_array_equal(keep, [1, 2, 3])
    # x ~ y and y ~ z but not x ~ z. x's group is kept as y; z then keeps itself if it beats y,
    # otherwise its best (y) is already taken and z is dropped.
    x = a
    y = a.copy()
    y[:6] += 40
    z = a.copy()
    z[:12] += 40
    chain = np.stack([x, y, z])
    np.testing.assert_array_equal(pose_nms(chain, np.array([0.1, 0.5, 0.9]), 10, 10), [1, 2])
    np.testing.assert_array_equal(pose_nms(chain, np.array([0.1, 0.5, 0.3]), 10, 10), [1])
    assert pose_nms(np.zeros((0, J, 2)), np.zeros(0), 10, 10).size == 0


def test_heat_values_bilinear():
    height, width = 6, 8
    rows, columns = np.mgrid[0:height, 0:width]
    heatmaps = np.stack([0.5 + 0.01 * columns + 0.02 * rows + j for j in range(2)]).astype(
        np.float32)
    poses = np.array([[[2.25, 3.5], [6.9, 4.99]],
                      [[7.0, 1.0], [-1.5, 2.0]],
                      [[-0.5, 2.0], [3.0, 5.0]]], dtype=np.float32)
    got = heat_values(heatmaps, poses)
    linear = 0.5 + 0.01 * poses[..., 0] + 0.02 * poses[..., 1] + np.arange(2)
    np.testing.assert_allclose(got[0], linear[0], rtol=1e-6)
    # The last column or row reads 0, as does anything left of -1; (-1, 0) extrapolates.
    np.testing.assert_array_equal(got[1], [0, 0])
    np.testing.assert_allclose(got[2, 0], linear[2, 0], rtol=1e-6)
    assert got[2, 1] == 0


def test_absorb_heat_snaps_and_scores():
    height, width = 20, 30
    maps = torch.zeros(1, height, width)
    maps[0, 5, 10] = 0.8
    maps[0, 3, 25] = 0.3  # the fixed index reads [y, x] = [3, 25]
    maps[0, 19, 3] = 0.6  # the reference reads [x, y] clamped: [min(25, 19), 3]
    maps[0, 12, 12] = 0.005  # a peak at or below KEYPOINT_THRESHOLD counts as 0
    poses = np.array([[[10.3, 5.2, 0.5], [25.7, 3.2, 0.5], [12.2, 12.1, 0.5]]],
                     dtype=np.float32).transpose(1, 0, 2)  # 3 people, 1 joint
    # Four peaks only (more would add zero-valued pixels, in topk's order, as peaks).
    settings = dict(num_joints=1, flip_test=False, max_num_people=4, max_absorb_distance=0.5)
    faithful = absorb_heat(maps, poses, RegressionTestParams(**settings))
    fixed = absorb_heat(maps, poses, RegressionTestParams(**settings, fix_absorb_index=True))
    np.testing.assert_allclose(faithful[0, 0], [10, 5, 0.4])  # 0.36 px from a peak: snapped
    # 0.73 px from the nearest peak: scored by the heatmap where it is (or, faithfully, not).
    np.testing.assert_allclose(faithful[1, 0], [25.7, 3.2, 0.5 * 0.6], rtol=1e-6)
    np.testing.assert_allclose(fixed[1, 0], [25.7, 3.2, 0.5 * 0.3], rtol=1e-6)
    np.testing.assert_allclose(faithful[2, 0], [12, 12, 0])
    np.testing.assert_array_equal(fixed[[0, 2]], faithful[[0, 2]])


def gaussian_window(height, width, amplitude, row, column, sigma):
    rows, columns = np.mgrid[0:height, 0:width]
    return amplitude * np.exp(-((columns - column) ** 2 + (rows - row) ** 2) / (2 * sigma ** 2))


def test_gaussian_fit_adjust_recovers_subpixel_centres():
    height, width = 30, 40
    maps = np.stack([gaussian_window(height, width, 0.9, 12.6, 17.3, 2.5),
                     gaussian_window(height, width, 0.7, 27.7, 2.4, 2.0),  # window cut twice
                     gaussian_window(height, width, 0.9, 0.2, 20.0, 2.0)]).astype(np.float32)
    poses = np.zeros((2, 3, 3), dtype=np.float32)
    poses[0] = [[17.0, 13.0, 0.9], [2.0, 28.0, 0.5], [20.0, 0.0, 0.9]]
    poses[1] = [[17.4, 12.8, 0.9], [2.0, 28.0, 0.01], [20.0, 0.0, 0.9]]
    params = RegressionTestParams(num_joints=3, flip_test=False, gaussian_fit="corrected")
    adjusted = gaussian_fit_adjust(poses, maps, np.array([0.5, 0.8]), params)
    np.testing.assert_allclose(adjusted[0, 0], [17.3, 12.6, 0.9 * 0.5], atol=1e-5)
    np.testing.assert_allclose(adjusted[1, 0], [17.3, 12.6, 0.9 * 0.8], atol=1e-5)
    np.testing.assert_allclose(adjusted[0, 1], [2.4, 27.7, 0.7 * 0.5], atol=1e-5)
    np.testing.assert_array_equal(adjusted[1, 1], poses[1, 1])  # score below the threshold
    np.testing.assert_array_equal(adjusted[:, 2], poses[:, 2])  # on the first row: skipped
    # The reference fit (default) gets the interior joint right, not the one cut twice.
    reference = gaussian_fit_adjust(poses, maps, np.array([0.5, 0.8]),
                                    RegressionTestParams(num_joints=3, flip_test=False))
    np.testing.assert_allclose(reference[:, 0], adjusted[:, 0], atol=1e-5)
    assert np.abs(reference[0, 1, :2] - [2.4, 27.7]).max() > 0.1


def test_gaussian_fit_matches_curve_fit_and_fixes_the_transposed_grid():
    rng = np.random.default_rng(4)
    window = gaussian_window(13, 13, 0.8, 6.3, 5.6, 2.2) + rng.normal(0, 0.01, size=(13, 13))

    def model(data, amplitude, row, column, sigma):
        rows, columns = data
        return amplitude * np.exp(-((columns - column) ** 2 + (rows - row) ** 2)
                                  / (2 * sigma ** 2))

    rows, columns = np.mgrid[0:13, 0:13]
    start = (window[6, 6], 6.0, 6.0, 2.0)
    expected, _ = curve_fit(model, (rows.ravel(), columns.ravel()), window.ravel(), p0=start,
                            maxfev=300)
    fitted, converged = fit_gaussian_windows(window[None], np.ones((1, 13, 13), bool),
                                             np.array([start]))
    assert converged[0]
    np.testing.assert_allclose(fitted[0, :3], expected[:3], atol=1e-6)
    assert abs(abs(fitted[0, 3]) - abs(expected[3])) < 1e-6
    # A 13 x 8 window (cut by a border) around a peak at row 4.3, column 5.6: the reference's
    # transposed grid fits it at (0.74, 6.17); the masked window here recovers it.
    clean = gaussian_window(13, 13, 1.0, 4.3, 5.6, 2.0)
    valid = np.zeros((1, 13, 13), dtype=bool)
    valid[0, :, :8] = True
    fitted, converged = fit_gaussian_windows(clean[None], valid, np.array([[1.0, 4, 6, 2.0]]))
    assert converged[0]
    np.testing.assert_allclose(fitted[0, 1:3], [4.3, 5.6], atol=1e-6)
    # Noise without a peak: no fit (curve_fit gives up on this window too).
    noise = np.random.default_rng(0).uniform(0, 0.1, size=(1, 13, 13))
    _, converged = fit_gaussian_windows(noise, np.ones((1, 13, 13), bool),
                                        np.array([[noise[0, 6, 6], 6, 6, 2.0]]))
    assert not converged[0]


def test_candidates_and_scale_decrease():
    params = RegressionTestParams(num_joints=1, scale_factors=(1.0, 0.5), flip_test=False)
    large = torch.zeros(1, 2, 16, 16)
    large[0, 1, 4, 6] = 0.8  # centre peak at scale 1
    small = torch.zeros(1, 2, 8, 8)
    small[0, 1, 2, 5] = 0.4
    points_large = torch.zeros(1, 2, 16, 16)
    points_large[0, :, 4, 6] = torch.tensor([6.5, 4.25])
    points_small = torch.zeros(1, 2, 8, 8)
    points_small[0, :, 2, 5] = torch.tensor([5.0, 2.5])
    poses, scores = candidate_poses([large, small], [points_large, points_small], (1.0, 0.5),
                                    64, params)
    # base width 64: ratios 4 and 8; the 0.5 scale's peak rescaled to 0.8 and times 0.001.
    np.testing.assert_allclose(poses[:, 0], [[26.0, 17.0], [40.0, 20.0]])
    np.testing.assert_allclose(scores, [0.8, 0.0008], rtol=1e-6)


def test_pool_kernel_and_params():
    params = RegressionTestParams(num_joints=J, flip_test=False)
    # (h + w) / 2: 160 -> 3; 250 -> 5; 300 (not above 300) -> 5; 304 -> 7.
    assert [pool_kernel(h, w, params) for h, w in ((128, 192), (200, 300), (256, 344),
                                                   (256, 352))] == [3, 5, 5, 7]
    cfg = get_default_config()
    cfg.TEST.FLIP_TEST = True
    cfg.TEST.SCALE_FACTOR = [2.0, 1.0, 0.5]
    made = RegressionTestParams.from_config(cfg)
    assert made.flip_index == FLIP_INDEX and made.scale_factors == (2.0, 1.0, 0.5)
    assert made.use_stages == (True, True) and made.gaussian_kernel == 6
    assert made.fix_absorb_index is False and made.fix_flip_upsample is False
    with pytest.raises(ValueError, match="1.0"):
        RegressionTestParams(num_joints=J, scale_factors=(0.5,), flip_test=False)
    cfg.TEST.WITH_HEATMAPS = [False, False]
    with pytest.raises(ConfigError, match="no stage"):
        RegressionTestParams.from_config(cfg)


# ------------------------------------------------------------------------------------------------
# The reference's Gaussian fit, written out plainly from HRNet/HRNet-Bottom-Up-Pose-Estimation
# lib/core/group.py (HeatmapRegParser.adjust, fit_gaussian_heatmap, unnormalized_gaussian2d) on
# NumPy maps instead of torch tensors (same indexing and slicing), to check
# reference_gaussian_fit_adjust against.

def original_gaussian(data, amplitude, y0, x0, sigma):
    y, x = data
    return amplitude * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))


def original_fit(window, maxval, init_y, init_x, sigma):
    y = np.linspace(0, window.shape[0] - 1, window.shape[0])
    x = np.linspace(0, window.shape[1] - 1, window.shape[1])
    grid_y, grid_x = np.meshgrid(y, x)
    samples = np.vstack((grid_x.ravel(), grid_y.ravel()))
    popt, _ = curve_fit(original_gaussian, samples, window.ravel(),
                        p0=(maxval, init_y, init_x, sigma), maxfev=300)
    return popt[1], popt[2], popt[0]


def original_adjust(poses, heatmaps, center_scores, half=6, sigma=2.0, threshold=0.05):
    """poses (P, J, 3) float32 (x, y, score), heatmaps (J, H, W) float32, center_scores (P,)."""
    ans = np.array(poses, dtype=np.float32, copy=True)
    for joint in range(ans.shape[1]):
        cache = {}
        for person in range(ans.shape[0]):
            if float(ans[person, joint, 2]) <= threshold:
                continue
            y, x = (float(v) for v in ans[person, joint, 0:2])  # the reference's names
            xx, yy = int(x + 0.5), int(y + 0.5)
            tmp = heatmaps[joint]
            if xx == 0 or xx == tmp.shape[0] - 1 or yy == 0 or yy == tmp.shape[1] - 1:
                continue
            if (xx, yy) in cache:
                ans[person, joint, 1], ans[person, joint, 0], value = cache[(xx, yy)]
                # the reference multiplies by a float32 tensor element
                ans[person, joint, 2] = np.float32(value) * center_scores[person]
                continue
            x_low, x_high = max(0, xx - half), min(tmp.shape[0] - 1, xx + half)
            y_low, y_high = max(0, yy - half), min(tmp.shape[1] - 1, yy + half)
            window = tmp[x_low:x_high + 1, y_low:y_high + 1]
            try:
                mean_x, mean_y, value = original_fit(window, tmp[xx][yy], xx - x_low,
                                                     yy - y_low, sigma)
            except (RuntimeError, ValueError, TypeError, IndexError):
                continue
            ans[person, joint, 1] = x_low + mean_x
            ans[person, joint, 0] = y_low + mean_y
            ans[person, joint, 2] = np.float32(value) * center_scores[person]
            cache[(xx, yy)] = (x_low + mean_x, y_low + mean_y, value)
    return ans


def border_scene(rng, height=20, width=24):
    """Three joint types of Gaussian peaks with noise, and joints that exercise the reference's
    quirks: windows cut by the border (not square), joints off the map (wrap-around, or an
    index error), on the outermost rows and columns (skipped), shared pixels (cached), and
    scores below the threshold."""
    peaks = [(4.3, 5.6), (2.2, 20.7), (17.6, 3.4), (10.2, 11.8), (16.5, 21.3), (1.6, 1.7)]
    maps = np.zeros((3, height, width))
    rows, columns = np.mgrid[0:height, 0:width]
    for joint in range(3):
        for row, column in peaks:
            shifted = (row + rng.uniform(-0.3, 0.3), column + rng.uniform(-0.3, 0.3))
            maps[joint] = np.maximum(maps[joint], rng.uniform(0.5, 1.0) * np.exp(
                -((rows - shifted[0]) ** 2 + (columns - shifted[1]) ** 2) / (2 * 2.0 ** 2)))
    maps = (maps + rng.normal(0, 0.01, maps.shape)).astype(np.float32)
    xy = [(5.8, 4.1), (20.4, 2.3), (3.1, 17.7), (11.6, 10.4), (21.2, 16.6), (1.6, 1.5),
          (5.7, 4.2), (5.0, -3.2), (-4.4, 10.0), (12.0, -9.6), (30.2, 5.0), (0.2, 9.0),
          (23.1, 9.0), (11.9, 10.3), (2.0, -19.6)]
    poses = np.zeros((len(xy), 3, 3), dtype=np.float32)
    for person, (x, y) in enumerate(xy):
        jitter = rng.uniform(-0.2, 0.2, (3, 2))
        poses[person, :, :2] = np.array([x, y]) + jitter
        poses[person, :, 2] = rng.uniform(0.1, 0.9, 3)
    poses[6, :, :2] = poses[0, :, :2] + 0.05  # same rounded pixel as person 0: cached
    poses[13, 1, 2] = 0.04  # below ADJUST_THRESHOLD
    return maps, poses


@pytest.mark.filterwarnings("ignore::scipy.optimize.OptimizeWarning")
def test_reference_gaussian_fit_equals_the_original_loop():
    rng = np.random.default_rng(8)
    params = RegressionTestParams(num_joints=3, flip_test=False)
    assert params.gaussian_fit == "reference"
    corrected = RegressionTestParams(num_joints=3, flip_test=False, gaussian_fit="corrected")
    differing = 0
    for _ in range(4):
        maps, poses = border_scene(rng)
        center_scores = rng.uniform(0.2, 1.0, len(poses)).astype(np.float32)
        expected = original_adjust(poses, maps, center_scores)
        ours = gaussian_fit_adjust(poses, maps, center_scores, params)
        np.testing.assert_array_equal(ours, expected)
        fixed = gaussian_fit_adjust(poses, maps, center_scores, corrected)
        differing += int((np.abs(fixed[..., :2] - ours[..., :2]).max(axis=2) > 0.05).sum())
        # interior joints with a square window: both fits agree
        np.testing.assert_allclose(fixed[3, :, :2], ours[3, :, :2], atol=1e-3)
    assert differing >= 8


def test_gaussian_fit_setting_comes_from_the_config():
    cfg = get_default_config()
    assert RegressionTestParams.from_config(cfg).gaussian_fit == "reference"
    cfg.TEST.GAUSSIAN_FIT = "corrected"
    assert RegressionTestParams.from_config(cfg).gaussian_fit == "corrected"
    cfg.TEST.GAUSSIAN_FIT = "lm"
    with pytest.raises(ConfigError, match="gaussian_fit 'lm'"):
        RegressionTestParams.from_config(cfg)

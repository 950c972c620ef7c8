"""The DARK codec: OpenCV-identical blur, sub-pixel decoding accuracy, encode/decode round trips."""

import cv2
import numpy as np
import pytest
import torch

from hrpose.codecs import dark
from hrpose.codecs.dark import (
    decode_dark,
    encode_unbiased_heatmaps,
    gaussian_blur,
    opencv_gaussian_kernel,
    taylor_refine,
)
from hrpose.codecs.heatmap import decode_standard, flip_back
from hrpose.config import ConfigError, load_config
from hrpose.datasets.metadata import COCO
from hrpose.postprocess.topdown import decode_heatmaps
from hrpose.utils.transforms import (
    affine_transform_points,
    fliplr_joints,
    get_affine_transform,
    transform_preds,
)

HEATMAP_SIZE = (48, 64)  # (w, h)


def gaussian_maps(centres: np.ndarray, sigma: float, size=HEATMAP_SIZE) -> torch.Tensor:
    """(N, 2) sub-pixel centres -> (N, 1, H, W) float32 Gaussians drawn directly, not by the
    codec."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    maps = np.exp(-((x[None] - centres[:, 0, None, None]) ** 2
                    + (y[None] - centres[:, 1, None, None]) ** 2) / (2 * sigma ** 2))
    return torch.from_numpy(maps[:, None].astype(np.float32))


@pytest.mark.parametrize("size", [1, 3, 5, 7, 11, 13, 17])
def test_kernels_are_opencvs(size):
    expected = cv2.getGaussianKernel(size, 0, ktype=cv2.CV_64F)[:, 0]
    np.testing.assert_allclose(opencv_gaussian_kernel(size), expected, rtol=0, atol=1e-15)


def test_size_nine_follows_the_sigma_formula_as_the_references_opencv_did():
    # OpenCV 3 (the references') sampled a sigma-1.7 Gaussian; recent OpenCV has a 9-tap table.
    offsets = np.arange(9) - 4.0
    expected = np.exp(-offsets ** 2 / (2 * 1.7 ** 2))
    np.testing.assert_allclose(opencv_gaussian_kernel(9), expected / expected.sum(), atol=1e-15)


def test_even_kernel_is_refused():
    with pytest.raises(ValueError, match="odd"):
        opencv_gaussian_kernel(4)


@pytest.mark.parametrize("kernel_size", [3, 11])
def test_blur_equals_the_references_opencv_procedure(kernel_size):
    rng = np.random.default_rng(kernel_size)
    maps = rng.random((2, 3, 64, 48)) ** 4
    maps[1, 2] = 0.0  # an empty map stays empty
    radius = (kernel_size - 1) // 2
    expected = np.zeros_like(maps)
    for b in range(maps.shape[0]):
        for k in range(maps.shape[1]):
            original_max = maps[b, k].max()
            padded = np.zeros((64 + 2 * radius, 48 + 2 * radius))
            padded[radius:-radius, radius:-radius] = maps[b, k]
            blurred = cv2.GaussianBlur(padded, (kernel_size, kernel_size), 0)[radius:-radius,
                                                                               radius:-radius]
            if blurred.max() > 0:
                blurred = blurred * original_max / blurred.max()
            expected[b, k] = blurred
    got = gaussian_blur(torch.from_numpy(maps), kernel_size).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_dark_recovers_sub_pixel_centres_and_standard_stays_within_a_quarter():
    rng = np.random.default_rng(0)
    centres = np.column_stack([rng.uniform(8, 40, 400), rng.uniform(8, 56, 400)])
    maps = gaussian_maps(centres, sigma=2.0)
    dark = decode_dark(maps, blur_kernel=11).coords[:, 0].double().numpy()
    standard = decode_standard(maps).coords[:, 0].double().numpy()
    assert np.abs(dark - centres).max() < 0.01
    assert np.abs(standard - centres).max() <= 0.25 + 1e-6
    # Confidence is the raw maximum, not the blurred one.
    np.testing.assert_allclose(decode_dark(maps, 11).maxvals[:, 0, 0].numpy(),
                               maps.flatten(1).amax(1).numpy())


def test_taylor_step_skips_the_border_band_and_by_choice_non_maxima():
    log_maps = torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    log_maps[0, 0] = -((x - 1.3) ** 2 + (y - 8.2) ** 2)  # peak in the border band (px = 1)
    log_maps[0, 1] = (x - 8.3) ** 2 + (y - 7.6) ** 2  # a minimum: positive-definite Hessian
    log_maps[0, 2] = -((x - 8.3) ** 2 + (y - 7.6) ** 2)
    coords = torch.tensor([[[1.0, 8.0], [8.0, 8.0], [8.0, 8.0]]], dtype=torch.float64)
    at_minimum = torch.tensor([8.3, 7.6], dtype=torch.float64)
    # As DarkPose: the step goes to the stationary point whatever it is.
    refined = taylor_refine(log_maps, coords)
    assert torch.equal(refined[0, 0], coords[0, 0])
    torch.testing.assert_close(refined[0, 1:], torch.stack([at_minimum, at_minimum]))
    # The switch keeps a peak whose Hessian is not negative definite.
    refined = taylor_refine(log_maps, coords, step="negative_definite")
    assert torch.equal(refined[0, :2], coords[0, :2])
    torch.testing.assert_close(refined[0, 2], at_minimum)


def test_unknown_dark_step_is_refused():
    with pytest.raises(ValueError,
                       match=r"one of \('reference', 'negative_definite'\), got 'newton'"):
        decode_dark(torch.zeros(1, 1, 8, 8), 3, step="newton")


def darkpose_taylor(log_map: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """taylor() of ilovepose/DarkPose lib/core/inference.py, rewritten with plain arrays
    (np.linalg.inv for its np.matrix .I): derivatives at (int x, int y) inside the band
    1 < px < W - 2, 1 < py < H - 2, and the step -H^-1 g wherever det(H) != 0."""
    height, width = log_map.shape
    px, py = int(coord[0]), int(coord[1])
    if 1 < px < width - 2 and 1 < py < height - 2:
        dx = 0.5 * (log_map[py][px + 1] - log_map[py][px - 1])
        dy = 0.5 * (log_map[py + 1][px] - log_map[py - 1][px])
        dxx = 0.25 * (log_map[py][px + 2] - 2 * log_map[py][px] + log_map[py][px - 2])
        dxy = 0.25 * (log_map[py + 1][px + 1] - log_map[py - 1][px + 1] - log_map[py + 1][px - 1]
                      + log_map[py - 1][px - 1])
        dyy = 0.25 * (log_map[py + 2][px] - 2 * log_map[py][px] + log_map[py - 2][px])
        if dxx * dyy - dxy ** 2 != 0:
            hessian = np.array([[dxx, dxy], [dxy, dyy]])
            coord = coord - np.linalg.inv(hessian) @ np.array([dx, dy])
    return coord


def darkpose_decode(maps: np.ndarray, kernel_size: int) -> np.ndarray:
    """DarkPose's get_final_preds up to the transform back, map by map in float64: first
    argmax, zero-padded cv2.GaussianBlur rescaled to the map's maximum, log of max(., 1e-10),
    then taylor() at each joint."""
    radius = (kernel_size - 1) // 2
    coords = np.zeros(maps.shape[:2] + (2,))
    for b in range(maps.shape[0]):
        for j in range(maps.shape[1]):
            heatmap = maps[b, j]
            py, px = np.unravel_index(np.argmax(heatmap), heatmap.shape)
            padded = np.zeros((heatmap.shape[0] + 2 * radius, heatmap.shape[1] + 2 * radius))
            padded[radius:-radius, radius:-radius] = heatmap
            blurred = cv2.GaussianBlur(padded, (kernel_size, kernel_size), 0)[radius:-radius,
                                                                               radius:-radius]
            blurred = blurred * (heatmap.max() / blurred.max())
            coords[b, j] = darkpose_taylor(np.log(np.maximum(blurred, 1e-10)),
                                           np.array([px, py], dtype=np.float64))
    return coords


def noisy_one_peak_maps(seed: int, count: int, height: int = 64, width: int = 48) -> np.ndarray:
    """(count, 17, H, W) float64: one Gaussian each (random centre, sigma 1 to 3, height 0.05 to
    1) plus noise of sd 0.05, so that on the weak ones the argmax often lands on a noise pixel,
    where the log map's Hessian need not be negative definite."""
    rng = np.random.default_rng(seed)
    shape = (count, 17, 1, 1)
    centre_x, centre_y = rng.uniform(0, width - 1, shape), rng.uniform(0, height - 1, shape)
    sigma, peak = rng.uniform(1.0, 3.0, shape), rng.uniform(0.05, 1.0, shape)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    maps = peak * np.exp(-((x - centre_x) ** 2 + (y - centre_y) ** 2) / (2 * sigma ** 2))
    return maps + rng.normal(0, 0.05, maps.shape)


@pytest.mark.parametrize("kernel_size", [3, 11])
def test_default_step_is_darkposes_where_the_two_steps_differ(kernel_size):
    maps = noisy_one_peak_maps(kernel_size, 40)
    expected = darkpose_decode(maps, kernel_size)
    reference = decode_dark(torch.from_numpy(maps), kernel_size).coords.numpy()
    maxima_only = decode_dark(torch.from_numpy(maps), kernel_size,
                              "negative_definite").coords.numpy()
    peaks = decode_standard(torch.from_numpy(maps), post_process=False).coords.numpy()
    differ = np.any(reference != maxima_only, axis=-1)
    assert differ.sum() >= 5  # the maps really hold joints where the policies part
    # Where they differ, DarkPose may step far off the map; the error is relative to the step.
    error = np.abs(reference - expected).max(axis=-1)
    assert (error <= 1e-6 * np.maximum(1.0, np.abs(expected - peaks).max(axis=-1))).all()
    # The switch keeps the integer peak exactly there and agrees with DarkPose elsewhere.
    assert np.array_equal(maxima_only[differ], peaks[differ])
    np.testing.assert_allclose(maxima_only[~differ], expected[~differ], rtol=0, atol=1e-6)


def test_unbiased_encoding_is_a_whole_map_gaussian_at_the_sub_pixel_position():
    joints = np.array([[10.3, 20.7], [-30.0, 5.0], [47.2, 63.9]])
    target, weight = encode_unbiased_heatmaps(joints, np.array([1, 1, 0]), HEATMAP_SIZE, 2.0,
                                              joint_weights=np.array([1.0, 1.0, 1.5]))
    expected = gaussian_maps(joints[:1], 2.0)[0, 0].numpy()
    np.testing.assert_allclose(target[0], expected, rtol=1e-6, atol=1e-7)
    assert target[0].max() < 1.0  # the peak falls between pixels
    assert weight[:, 0].tolist() == [1.0, 0.0, 0.0]  # off the map; invisible
    assert not target[1].any() and not target[2].any()


@pytest.mark.parametrize("convention", ["hrnet", "dark"])
@pytest.mark.parametrize("flip", [False, True])
def test_unbiased_round_trip_in_image_pixels(convention, flip):
    rng = np.random.default_rng(1)
    image_width = 640
    center, scale = np.array([300.0, 240.0]), np.array([1.2, 1.6])
    joints = np.column_stack([rng.uniform(220, 380, 17), rng.uniform(130, 350, 17)])
    visibility = np.ones(17)
    if flip:
        joints_in, _ = fliplr_joints(joints, visibility, image_width, COCO.flip_pairs)
        center_in = np.array([image_width - center[0] - 1, center[1]])
    else:
        joints_in, center_in = joints, center
    transform = get_affine_transform(center_in, scale, 0.0, HEATMAP_SIZE, convention)
    target, _ = encode_unbiased_heatmaps(affine_transform_points(joints_in, transform),
                                         visibility, HEATMAP_SIZE, sigma=2.0)
    heatmaps = torch.from_numpy(target)[None]
    if flip:
        heatmaps = flip_back(heatmaps, COCO.flip_index)
    coords = decode_dark(heatmaps, blur_kernel=11).coords.double().numpy()
    decoded = transform_preds(coords, center[None], scale[None], HEATMAP_SIZE, convention)[0]
    expected = joints.copy()
    if flip and convention == "hrnet":
        # Under W/S, mirroring the input and then the heatmap lands one heatmap pixel (S / Wh image
        # pixels) to the left: why HRNet shifts flipped maps. The DARK convention is exact.
        expected[:, 0] -= scale[0] * 200 / HEATMAP_SIZE[0]
    assert np.abs(decoded - expected).max() < 0.05


def test_windowed_decoding_equals_blurring_whole_maps():
    # Random network-like outputs: bumps, negative values, flat zeros and spikes whose blur
    # falls under the log floor at some stencil points (the whole-map fallback).
    rng = np.random.default_rng(2)
    centres = np.column_stack([rng.uniform(0, 47, 60), rng.uniform(0, 63, 60)])
    maps = gaussian_maps(centres, sigma=1.5).double().reshape(4, 15, 64, 48)
    maps += torch.from_numpy(rng.normal(0, 0.02, maps.shape))
    maps[0, 0] = 0.0
    maps[0, 1] = -torch.rand(64, 48, dtype=torch.float64)
    maps[1, 0] = 0.0
    maps[1, 0, 30, 20] = 1.0  # a lone spike: with kernel 3 the blur is 0 two pixels away
    maps[1, 0, 31, 21] = 0.5
    for kernel_size in (3, 11):
        got = decode_dark(maps, kernel_size).coords
        coords = decode_standard(maps, post_process=False).coords
        log_maps = torch.log(gaussian_blur(maps, kernel_size).clamp_min(1e-10))
        expected = taylor_refine(log_maps, coords)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("piece_maps", [None, 3])
def test_windows_at_every_border_of_the_maps_and_of_the_storage(monkeypatch, piece_maps):
    # Peaks on the refinable band's edges of the first and the last map (their windows would
    # reach outside the storage), of maps in between (windows reaching a neighbour map, rows
    # wrapping to the next row), with the maps decoded whole or in pieces of 3; and maps
    # smaller than one window.
    rng = np.random.default_rng(4)
    height, width = 20, 16
    centres = [(2.3, 2.2), (15.0, 19.0), (2.2, 17.4), (13.3, 2.4), (7.5, 9.2), (0.4, 0.3),
               (13.4, 17.3)]
    centres = np.array([centres[i % len(centres)] for i in range(14)])
    maps = gaussian_maps(centres, sigma=1.2, size=(width, height)).double()
    maps = maps.reshape(2, 7, height, width) + torch.from_numpy(
        rng.normal(0, 0.01, (2, 7, height, width)))
    maps[1, 5] = float("nan")  # a neighbour's NaN must not reach the other windows
    if piece_maps:
        monkeypatch.setattr(dark, "DARK_PIECE_ELEMENTS", piece_maps * height * width)
    for kernel_size in (3, 11):
        result = decode_dark(maps, kernel_size)
        coords = decode_standard(maps, post_process=False).coords
        log_maps = torch.log(gaussian_blur(maps, kernel_size).clamp_min(1e-10))
        expected = taylor_refine(log_maps, coords)
        assert result.coords.isfinite().all()
        torch.testing.assert_close(result.coords[maps.flatten(2).isfinite().all(2)],
                                   expected[maps.flatten(2).isfinite().all(2)], rtol=0, atol=1e-9)
        torch.testing.assert_close(result.maxvals, maps.flatten(2).amax(dim=2, keepdim=True),
                                   equal_nan=True)
    single = maps[:1, :1, :6, :5].contiguous()  # one map holds fewer pixels than a window row
    coords = decode_standard(single, post_process=False).coords
    log_maps = torch.log(gaussian_blur(single, 31).clamp_min(1e-10))
    torch.testing.assert_close(decode_dark(single, 31).coords, taylor_refine(log_maps, coords),
                               rtol=0, atol=1e-9)
    small = maps[:, :, :6, :5].contiguous()
    coords = decode_standard(small, post_process=False).coords
    log_maps = torch.log(gaussian_blur(small, 11).clamp_min(1e-10))
    torch.testing.assert_close(decode_dark(small, 11).coords, taylor_refine(log_maps, coords),
                               rtol=0, atol=1e-9)


def test_float32_maps_decode_within_a_thousandth_of_a_pixel_of_float64():
    # float32 maps are decoded in float32, as the reference takes its log and Taylor step on
    # its float32 maps; network-like maps (noise, negative values, empty maps).
    rng = np.random.default_rng(5)
    centres = np.column_stack([rng.uniform(0, 47, 340), rng.uniform(0, 63, 340)])
    maps = gaussian_maps(centres, sigma=2.0).reshape(20, 17, 64, 48)
    maps = maps * torch.from_numpy(rng.uniform(0.05, 1.0, (20, 17, 1, 1)).astype(np.float32))
    maps += torch.from_numpy(rng.normal(0, 0.01, maps.shape).astype(np.float32))
    maps[0, :3] = 0.0
    single = decode_dark(maps, 11)
    double = decode_dark(maps.double(), 11)
    assert single.coords.dtype == torch.float32
    assert (single.coords.double() - double.coords).abs().max() < 1e-3
    assert not torch.equal(single.coords.double(), double.coords)  # float32 was really used


def test_config_dark_step_reaches_the_decoder_and_bad_values_are_refused():
    maps = torch.from_numpy(noisy_one_peak_maps(3, 10))
    for step in ("reference", "negative_definite"):
        cfg = load_config("", ["TEST.DECODER", "dark", "TEST.DARK_STEP", step])
        torch.testing.assert_close(decode_heatmaps(maps, cfg.TEST).coords,
                                   decode_dark(maps, cfg.TEST.BLUR_KERNEL, step).coords,
                                   rtol=0, atol=0)
    assert load_config("").TEST.DARK_STEP == "reference"  # the default follows DarkPose
    with pytest.raises(ConfigError, match=r"TEST.DARK_STEP.*'reference', 'negative_definite'"):
        load_config("", ["TEST.DARK_STEP", "maximum"])

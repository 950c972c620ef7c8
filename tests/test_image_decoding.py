"""datasets.images.decode_image: the pixels cv2.imdecode gives, for every kind of file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hrpose.datasets import images
from hrpose.datasets.images import READ_FLAGS, decode_image, read_image


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour fields plus grain: JPEG blocks with real detail in every channel."""
    coarse = rng.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(-20, 21, (height, width, 3))
    return np.clip(smooth.astype(np.int64) + grain, 0, 255).astype(np.uint8)


SAMPLING = {"4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
            "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
            "4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444}


def encoded(image: np.ndarray, extension: str = ".jpg", params=()) -> np.ndarray:
    ok, data = cv2.imencode(extension, image, list(params))
    assert ok
    return data


@pytest.mark.parametrize("sampling", list(SAMPLING))
@pytest.mark.parametrize("size", [(480, 640), (331, 517), (17, 9)])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_pixels_equal_opencv(sampling, size, progressive):
    rng = np.random.default_rng(sum(size))
    data = encoded(photo(rng, *size), params=(cv2.IMWRITE_JPEG_QUALITY, 90,
                                              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, SAMPLING[sampling],
                                              cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)))
    decoded = decode_image(data)
    assert decoded.shape == size + (3,) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, cv2.imdecode(data, READ_FLAGS))


def test_grayscale_jpeg_becomes_three_equal_channels_as_in_opencv():
    gray = cv2.cvtColor(photo(np.random.default_rng(1), 120, 90), cv2.COLOR_BGR2GRAY)
    data = encoded(gray)
    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded, cv2.imdecode(data, READ_FLAGS))
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])


@pytest.mark.parametrize("garbled", [slice(-300, -250), slice(400, 480)],
                         ids=["entropy-coded data", "header"])
def test_jpeg_with_corrupt_bytes_is_decoded_as_opencv_does(garbled):
    data = encoded(photo(np.random.default_rng(2), 96, 128))
    corrupt = data.copy()
    corrupt[garbled] = 7
    with images.opencv_log_silenced(), images.native_stderr_silenced():
        expected = cv2.imdecode(corrupt, READ_FLAGS)
        decoded = decode_image(corrupt)
    if garbled.start < 0:  # libjpeg warns and decodes what it can
        assert expected is not None
        np.testing.assert_array_equal(decoded, expected)
    else:
        assert expected is None and decoded is None


def test_other_formats_and_garbage_go_to_opencv():
    image = photo(np.random.default_rng(3), 40, 50)
    np.testing.assert_array_equal(decode_image(encoded(image, ".png")), image)
    assert decode_image(np.frombuffer(b"\xff\xd8 not a JPEG at all", np.uint8)) is None
    assert decode_image(np.frombuffer(b"neither an image", np.uint8)) is None


def test_read_image_gives_rgb_of_the_decoded_jpeg(tmp_path):
    data = encoded(photo(np.random.default_rng(4), 64, 48))
    path = tmp_path / "person.jpg"
    data.tofile(path)
    np.testing.assert_array_equal(read_image(str(path), color_rgb=True),
                                  cv2.imdecode(data, READ_FLAGS)[..., ::-1])

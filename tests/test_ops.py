"""Tests of mtl.ops: box conventions, the crop function, paste-back, windows, upsampling."""
import numpy as np
import pytest

from mtl.ops import (box_to_center, center_to_box, context_size, cosine_window, crop_and_resize, image_to_tensor,
                     paste_crop, upsample_maps)


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)


def test_box_center_round_trip_and_convention():
    center, size = box_to_center([10, 20, 5, 7])
    # columns 10..14 -> centre 12; rows 20..26 -> centre 23
    np.testing.assert_array_equal(center, [12, 23])
    np.testing.assert_array_equal(size, [5, 7])
    np.testing.assert_allclose(center_to_box(center, size), [10, 20, 5, 7])


def test_bad_boxes_raise():
    with pytest.raises(ValueError, match="positive"):
        box_to_center([0, 0, 0, 5])
    with pytest.raises(ValueError, match="non-finite"):
        box_to_center([0, np.nan, 3, 5])


def test_context_size_hand_computed():
    # w=10, h=40, p=0.5*50=25 -> sqrt(35*65)
    assert context_size([10, 40], 0.5) == pytest.approx(np.sqrt(35 * 65))


def test_crop_of_known_patch_is_exact(image):
    center, _ = box_to_center([7, 9, 21, 21])
    crop = crop_and_resize(image, center, 21, 21)
    np.testing.assert_array_equal(crop, image[9:30, 7:28])


def test_crop_pads_with_image_mean(image):
    crop = crop_and_resize(image, [0.0, 0.0], 11, 11)
    mean = image.mean(axis=(0, 1))
    # top-left quarter lies outside the image: the mean colour (rounded to uint8)
    np.testing.assert_allclose(crop[0, 0], mean, atol=0.51)
    np.testing.assert_allclose(crop[:5, :5].reshape(-1, 3), np.broadcast_to(mean, (25, 3)), atol=0.51)
    # the crop centre is pixel (0, 0) of the image
    np.testing.assert_array_equal(crop[5, 5], image[0, 0])
    # explicit pad value
    crop = crop_and_resize(image, [0.0, 0.0], 11, 11, pad_value=(1, 2, 3))
    np.testing.assert_array_equal(crop[0, 0], [1, 2, 3])


def test_batched_crops_match_single_crops(image):
    sizes = [20.0, 31.5, 44.0]
    batch = crop_and_resize(image, [40.2, 30.7], sizes, 17)
    assert batch.shape == (3, 17, 17, 3) and batch.dtype == np.uint8
    for k, s in enumerate(sizes):
        np.testing.assert_array_equal(batch[k], crop_and_resize(image, [40.2, 30.7], s, 17))


def test_crop_rejects_bad_input(image):
    with pytest.raises(ValueError, match="crop sizes"):
        crop_and_resize(image, [1, 1], -3, 5)
    with pytest.raises(ValueError, match="out_size"):
        crop_and_resize(image, [1, 1], 3, 0)
    with pytest.raises(ValueError, match="image"):
        crop_and_resize(image[..., 0], [1, 1], 3, 5)


def test_crop_paste_round_trip():
    # a smooth image, so bilinear resampling barely changes it
    yy, xx = np.mgrid[0:90, 0:120].astype(np.float32)
    smooth = np.stack([xx * 2, yy * 2, xx + yy], axis=2).astype(np.float32)
    center, size = [61.3, 44.8], 50.0
    crop = crop_and_resize(smooth, center, size, 101)  # up-sampled x2
    pasted, covered = paste_crop(crop, center, size, smooth.shape[:2])
    inner = covered.copy()
    inner[:, :38] = inner[:, 86:] = False  # keep away from the crop border (interpolation support)
    inner[:21, :] = inner[68:, :] = False
    assert inner.sum() > 1000
    assert np.abs(pasted[inner] - smooth[inner]).max() < 1e-2
    # coverage is the crop square
    assert abs(covered.sum() - 50 * 50) <= 2 * 50 + 1


def test_cosine_window_shape_symmetry_sum():
    w = cosine_window(17)
    assert w.shape == (17, 17) and w.dtype == np.float32
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w.sum() == pytest.approx(1.0, rel=1e-5)
    assert np.unravel_index(w.argmax(), w.shape) == (8, 8)
    assert w[0].max() == 0  # np.hanning is zero at the ends
    with pytest.raises(ValueError):
        cosine_window(1)


def test_upsample_maps_preserves_peak_location():
    m = np.zeros((2, 17, 17), np.float32)
    m[0, 8, 8] = 1
    m[1, 3, 12] = 1
    up = upsample_maps(m, 272)
    assert up.shape == (2, 272, 272)
    r, c = np.unravel_index(up[0].argmax(), up[0].shape)
    assert abs(r - 135.5) <= 8 and abs(c - 135.5) <= 8
    r, c = np.unravel_index(up[1].argmax(), up[1].shape)
    assert r < c
    assert upsample_maps(m[0], 34).shape == (34, 34)


def test_image_to_tensor_layout():
    img = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    t = image_to_tensor(img)
    assert tuple(t.shape) == (2, 3, 3, 4)
    assert float(t[1, 2, 0, 3]) == float(img[1, 0, 3, 2])

"""Geometry shared by every tracker: box conventions, the ONE crop function, windows, upsampling.

Coordinate convention (the got10k/OTB one): a box ``[x, y, w, h]`` covers the pixels whose indices
run from ``x`` to ``x + w - 1``; pixel ``i`` has its centre at coordinate ``i``. So the box centre
is ``(x + (w - 1) / 2, y + (h - 1) / 2)`` and a ``w x h`` crop centred there holds exactly the box's
pixels when ``x, y`` are integers.
"""
from __future__ import annotations

import cv2
import numpy as np

from mtl.tracker import as_box


def box_to_center(box) -> tuple[np.ndarray, np.ndarray]:
    """``[x, y, w, h]`` -> (centre ``(2,) [cx, cy]``, size ``(2,) [w, h]``), float64, pixel-centre convention."""
    b = as_box(box)
    size = b[2:].copy()
    return b[:2] + (size - 1) / 2, size


def center_to_box(center, size) -> np.ndarray:
    """(centre ``[cx, cy]``, size ``[w, h]``) -> box ``[x, y, w, h]`` float64 ``(4,)``; inverse of :func:`box_to_center`."""
    center = np.asarray(center, dtype=np.float64).reshape(2)
    size = np.asarray(size, dtype=np.float64).reshape(2)
    return np.concatenate([center - (size - 1) / 2, size])


def context_size(size, context: float) -> float:
    """Side of the square exemplar region around a target of ``size = [w, h]`` (SiamFC's rule).

    ``s = sqrt((w + p) (h + p))`` with ``p = context * (w + h)``: the region keeps the target's area
    plus a margin, so the exemplar sees some background. ``context = 0.5`` is the paper's.
    """
    w, h = np.asarray(size, dtype=np.float64).reshape(2)
    p = context * (w + h)
    return float(np.sqrt((w + p) * (h + p)))


def crop_matrix(center, crop_size: float, out_size: int, stretch: float = 1.0) -> np.ndarray:
    """Affine map ``(2, 3)`` from crop pixel ``(u, v)`` to image point: ``x = a u + cx - a (out - 1)/2``, ``a = crop/out``.

    The crop covers the square of side ``crop_size`` image pixels centred at ``center``, sampled
    on an ``out_size x out_size`` grid whose centre pixel lands on ``center``. ``stretch`` ``r`` != 1
    covers ``crop_size / r`` by ``crop_size r`` pixels instead: the square crop of the image stretched
    by ``(r, 1 / r)`` (ROAM's aspect augmentation).
    """
    cx, cy = np.asarray(center, dtype=np.float64).reshape(2)
    a = float(crop_size) / out_size
    ax, ay = a / stretch, a * stretch
    return np.array([[ax, 0.0, cx - ax * (out_size - 1) / 2], [0.0, ay, cy - ay * (out_size - 1) / 2]],
                    dtype=np.float64)


def crop_and_resize(image: np.ndarray, center, crop_sizes, out_size: int, pad_value=None,
                    interpolation: int = cv2.INTER_LINEAR, stretch: float = 1.0) -> np.ndarray:
    """Crop squares centred at ``center`` and resize them to ``out_size``; pad outside the image with its mean.

    This is the only crop function of the project (exemplars, search regions, training pairs,
    every later tracker). One ``cv2.warpAffine`` per crop does crop, sub-pixel shift, resize and
    padding in a single pass, so a 3-scale search costs three small warps.

    Args:
        image: ``(H, W, 3)`` uint8 (or float32) image.
        center: ``(2,)`` ``[cx, cy]`` in image pixels (pixel-centre convention).
        crop_sizes: one side length or a sequence of ``K`` side lengths, in image pixels.
        out_size: side of each output crop in pixels.
        pad_value: colour for pixels outside the image, ``(3,)``; default the image's mean colour
            (SiamFC pads with the mean so that padding looks like "average background").
        stretch: crop the image stretched by ``(stretch, 1 / stretch)`` (see :func:`crop_matrix`).
    Returns:
        ``(out, out, 3)`` for a scalar ``crop_sizes``, else ``(K, out, out, 3)``; dtype of ``image``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    sizes = np.atleast_1d(np.asarray(crop_sizes, dtype=np.float64))
    if sizes.ndim != 1 or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"crop sizes must be positive finite numbers, got {crop_sizes!r}")
    if int(out_size) != out_size or out_size < 1:
        raise ValueError(f"out_size must be a positive integer, got {out_size!r}")
    if not (np.isfinite(stretch) and stretch > 0):
        raise ValueError(f"stretch must be a positive finite number, got {stretch!r}")
    if pad_value is None:
        pad_value = image.mean(axis=(0, 1))
    border = tuple(float(v) for v in np.broadcast_to(np.asarray(pad_value, dtype=np.float64), (3,)))
    out_size = int(out_size)
    crops = np.empty((len(sizes), out_size, out_size, 3), dtype=image.dtype)
    for k, s in enumerate(sizes):
        m = crop_matrix(center, s, out_size, stretch)
        cv2.warpAffine(image, m, (out_size, out_size), dst=crops[k],
                       flags=interpolation | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    return crops[0] if np.ndim(crop_sizes) == 0 else crops


def paste_crop(crop: np.ndarray, center, crop_size: float, image_shape: tuple[int, int],
               interpolation: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, np.ndarray]:
    """Map a crop (or a map on the crop's grid, e.g. a score map) back into image coordinates.

    The inverse of :func:`crop_and_resize`: ``paste_crop(crop_and_resize(img, c, s, n), c, s, img.shape[:2])``
    returns the image inside the cropped square.

    Args:
        crop: ``(n, n)`` or ``(n, n, C)`` array on the crop grid.
        center, crop_size: the same values the crop was taken with.
        image_shape: ``(H, W)`` of the target image.
    Returns:
        (``pasted`` ``(H, W[, C])`` float32, ``covered`` ``(H, W)`` bool: pixels inside the crop square).
    """
    n = crop.shape[0]
    if crop.shape[1] != n:
        raise ValueError(f"expected a square crop, got shape {crop.shape}")
    h, w = int(image_shape[0]), int(image_shape[1])
    m = crop_matrix(center, crop_size, n)  # crop -> image; warpAffine without INVERSE_MAP wants exactly this
    pasted = cv2.warpAffine(crop.astype(np.float32), m, (w, h), flags=interpolation,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ones = np.ones((n, n), dtype=np.float32)
    covered = cv2.warpAffine(ones, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0.5
    return pasted, covered


def cosine_window(size: int) -> np.ndarray:
    """Hann ("cosine") window ``(size, size)`` float32, the outer product of two ``np.hanning``, normalised to sum 1.

    SiamFC adds it to the (sum-normalised) response to penalise large displacements:
    ``r = (1 - window_influence) * r + window_influence * window``.
    """
    if int(size) != size or size < 2:
        raise ValueError(f"window size must be an integer >= 2, got {size!r}")
    hann = np.hanning(int(size))
    window = np.outer(hann, hann)
    return (window / window.sum()).astype(np.float32)


def upsample_maps(maps: np.ndarray, out_size: int, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Resize score maps ``(K, n, n)`` (or one ``(n, n)``) to ``(K, out, out)`` float32; bicubic by default.

    SiamFC upsamples its 17x17 response x16 (to 272) so that the peak is located to sub-cell
    precision (one cell is 8 search-crop pixels).
    """
    maps = np.asarray(maps, dtype=np.float32)
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"expected (K, n, n) maps, got shape {maps.shape}")
    n = int(out_size)
    out = np.empty((len(maps), n, n), dtype=np.float32)
    for k, m in enumerate(maps):  # straight into the output: np.stack of K resized maps would copy them again
        cv2.resize(m, (n, n), dst=out[k], interpolation=interpolation)
    return out[0] if single else out


def image_to_tensor(images: np.ndarray, channels_last: bool = False):
    """``(H, W, 3)`` or ``(K, H, W, 3)`` uint8/float images -> float32 torch tensor ``(K, 3, H, W)``, values 0..255.

    SiamFC feeds raw 0..255 RGB values (no mean/std normalisation); batch norm after conv1 absorbs the scale.

    ``channels_last``: return the tensor in PyTorch's ``channels_last`` memory format (same shape and
    values, strides of an ``(K, H, W, 3)`` array). The crops already lie in memory that way, so this
    costs no transpose copy, and the CPU convolutions of the backbone run about 1.8x faster on it
    (notebook 01 times both). The default keeps the contiguous NCHW layout (training batches).
    """
    import torch

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f"expected (K, H, W, 3) images, got shape {arr.shape}")
    if channels_last:
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float()

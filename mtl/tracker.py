"""The tracker protocol shared by every method and by the evaluation runners.

It is the got10k toolkit's protocol: ``init(image, box)`` on the first frame, then
``update(image) -> box`` on each later frame. Images are RGB ``HxWx3`` uint8 arrays (a PIL image,
as the got10k toolkit passes, is accepted too); boxes are ``x, y, w, h`` in 0-based pixels.
"""
from __future__ import annotations

import numpy as np


def as_rgb_array(image) -> np.ndarray:
    """Return ``image`` as a contiguous ``HxWx3`` uint8 RGB array (accepts ndarray or PIL image)."""
    if not isinstance(image, np.ndarray):
        if hasattr(image, "convert"):  # PIL image, as the got10k toolkit passes
            image = np.asarray(image.convert("RGB"))
        else:
            raise TypeError(f"expected an HxWx3 uint8 array or a PIL image, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


def as_box(box) -> np.ndarray:
    """Return ``box`` as a float64 array ``[x, y, w, h]``; raise on a wrong shape, NaN or non-positive size."""
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,):
        raise ValueError(f"a box is 4 numbers x, y, w, h; got shape {np.shape(box)}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"box has non-finite values: {b.tolist()}")
    if b[2] <= 0 or b[3] <= 0:
        raise ValueError(f"box must have positive width and height, got w={b[2]}, h={b[3]}")
    return b


class Tracker:
    """Base class of every tracker (the got10k toolkit's ``Tracker`` protocol).

    Subclasses implement :meth:`init` and :meth:`update`. ``name`` names the results folder;
    ``is_deterministic`` tells the runners whether repeated runs with several seeds are needed.
    """

    name: str = "tracker"
    is_deterministic: bool = True

    def __init__(self, name: str | None = None, is_deterministic: bool | None = None):
        if name is not None:
            self.name = name
        if is_deterministic is not None:
            self.is_deterministic = is_deterministic

    def init(self, image, box) -> None:
        """Start tracking the object in ``box`` (``x, y, w, h``) on ``image`` (RGB ``HxWx3`` uint8)."""
        raise NotImplementedError

    def update(self, image) -> np.ndarray:
        """Return the object's box ``[x, y, w, h]`` (float, shape ``(4,)``) on the next ``image``."""
        raise NotImplementedError

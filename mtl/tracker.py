"""The tracker protocol shared by every method and by the evaluation runners.

It is the got10k toolkit's protocol: ``init(image, box)`` on the first frame, then
``update(image) -> box`` on each later frame. Images are RGB ``HxWx3`` uint8 arrays (a PIL image,
as the got10k toolkit passes, is accepted too); boxes are ``x, y, w, h`` in 0-based pixels.
"""
from __future__ import annotations

import dataclasses

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


def with_options(params, options: dict, what: str):
    """``params`` (a frozen dataclass of a tracker's parameters) with ``options`` replacing its fields; a TypeError
    naming the options that are not fields (``what``: e.g. ``"ROAM tracking"``), so a misspelt option never passes."""
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(params)})
    if unknown:
        raise TypeError(f"unknown {what} options {unknown}; valid: the fields of {type(params).__name__}")
    return dataclasses.replace(params, **options) if options else params


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

    Subclasses implement :meth:`init` and :meth:`update`; :meth:`track` (the toolkit's entry point, one
    pass over image files) comes with the base class. ``name`` names the results folder (ours and the
    toolkit's); ``is_deterministic`` tells the runners whether repeated runs with several seeds are
    needed (the toolkit's GOT-10k experiment runs a tracker with ``is_deterministic = False`` 3 times).
    """

    name: str = "tracker"
    is_deterministic: bool = True

    def __init__(self, name: str | None = None, is_deterministic: bool | None = None):
        if name is not None:
            self.name = name
        if is_deterministic is not None:
            self.is_deterministic = is_deterministic

    def fingerprint(self) -> dict:
        """What decides this tracker's boxes, as a JSON-able dict (the key of the stored-results cache).

        :func:`mtl.eval.run_ope` stores it beside a tracker's results and runs the tracker again when
        it differs, so a changed option or retrained checkpoint is never served stale boxes. The base
        gives the class; subclasses add their options and weights (``{**super().fingerprint(), ...}``).
        """
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}"}

    def update_log(self) -> list | None:
        """The updates this tracker made so far, one JSON-able dict each, or None when it keeps no log.

        :func:`mtl.eval.track_sequence` returns the part logged during a sequence as ``run["updates"]``
        and the results cache stores it beside the boxes, so a notebook can inspect the updates of a
        stored run without tracking again.
        """
        return None

    def init(self, image, box) -> None:
        """Start tracking the object in ``box`` (``x, y, w, h``) on ``image`` (RGB ``HxWx3`` uint8)."""
        raise NotImplementedError

    def update(self, image) -> np.ndarray:
        """Return the object's box ``[x, y, w, h]`` (float, shape ``(4,)``) on the next ``image``."""
        raise NotImplementedError

    def track(self, img_files, box, visualize: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Track through the image files ``img_files`` from ``box`` on the first: the got10k toolkit's entry point.

        ``ExperimentGOT10k(...).run(tracker)``, ``ExperimentOTB(...).run(tracker)`` and the toolkit's
        other experiments call this, so every ``mtl`` tracker runs under the toolkit as it is. It is
        :func:`mtl.eval.track_frames` (the loop :func:`mtl.eval.track_sequence` runs) on the files read
        with ``mtl.data``'s reader (cv2, RGB uint8): same boxes, same failure handling (a failed frame
        is ``0,0,0,0`` with a warning), times of ``init`` / ``update`` only. Returns ``(boxes, times)``:
        ``(N, 4)`` float64 with row 0 the given box, and ``(N,)`` float64 seconds. Oracle trackers get
        no ground truth here (the toolkit passes none), so they fail.

        ``visualize``: show each frame with its box in a cv2 window when a display is available (a
        desktop, or ``DISPLAY`` / ``WAYLAND_DISPLAY`` set on Linux) and cv2 has GUI support;
        otherwise it is ignored with one warning (headless servers, ``opencv-python-headless``).
        """
        from mtl.data import _read_image  # lazy: mtl.eval imports this module (no import cycle)
        from mtl.eval import track_frames

        files = list(img_files)
        run = track_frames(self, (_read_image(f) for f in files), as_box(box),
                           seq_name=_sequence_name(files), on_frame=_frame_viewer(self.name) if visualize else None)
        return run["boxes"], run["times"]


def _sequence_name(files: list) -> str:
    """The folder of the first image (``.../<Seq>/img/0001.jpg`` -> ``<Seq>``), for warnings."""
    import os

    if not files:
        return "?"
    parts = os.path.normpath(os.fspath(files[0])).split(os.sep)
    if len(parts) >= 3 and parts[-2] == "img":
        return parts[-3]
    return parts[-2] if len(parts) >= 2 else "?"


def _frame_viewer(window: str):
    """``on_frame(f, image, box)`` drawing into a cv2 window, or None (with a warning) when there is no display."""
    import os
    import sys
    import warnings

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        warnings.warn("visualize=True ignored: no display (DISPLAY / WAYLAND_DISPLAY unset)",
                      RuntimeWarning, stacklevel=3)
        return None
    import cv2

    state = {"on": True}

    def show(f, image, box) -> None:
        if not state["on"]:
            return
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        b = np.asarray(box, dtype=np.float64)
        if np.all(np.isfinite(b)) and b[2] > 0 and b[3] > 0:
            x, y, w, h = (int(round(v)) for v in b)
            cv2.rectangle(bgr, (x, y), (x + w, y + h), (0, 0, 255), 2)
        try:
            cv2.imshow(window, bgr)
            cv2.waitKey(1)
        except cv2.error as e:  # e.g. opencv-python-headless: no GUI support
            state["on"] = False
            warnings.warn(f"visualize=True ignored: cv2 cannot show images ({e})", RuntimeWarning, stacklevel=2)

    return show

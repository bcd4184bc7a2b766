"""Pictures of sequences: frames with boxes, galleries, and a frame player.

``frame_player`` gives an ipywidgets slider in a live notebook; ``filmstrip`` is the static figure
shown when a notebook runs non-interactively (papermill, nbval), where widgets do not render.
"""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np

from mtl.data import Sequence

#: Box colours (RGB) for ground truth and up to five trackers.
BOX_COLORS = [(0, 255, 0), (255, 60, 60), (60, 140, 255), (255, 200, 0), (255, 0, 255), (0, 255, 255)]


def draw_boxes(frame: np.ndarray, boxes, colors=None, thickness: int = 1) -> np.ndarray:
    """A copy of ``frame`` (HxWx3 uint8 RGB) with ``boxes`` ((K, 4) or (4,) x, y, w, h) drawn as rectangles.

    ``colors``: one RGB tuple per box (default: :data:`BOX_COLORS` in order).
    """
    out = np.ascontiguousarray(frame).copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    colors = colors or BOX_COLORS
    for k, (x, y, w, h) in enumerate(boxes):
        if not np.all(np.isfinite([x, y, w, h])):
            continue
        p0 = (int(round(x)), int(round(y)))
        p1 = (int(round(x + w - 1)), int(round(y + h - 1)))
        cv2.rectangle(out, p0, p1, tuple(int(c) for c in colors[k % len(colors)]), thickness)
    return out


def annotated_frame(seq: Sequence, i: int, predictions: dict | None = None) -> np.ndarray:
    """Frame ``i`` of ``seq`` with its ground-truth box (green; dashed-red look when not visible) and
    the boxes of ``predictions`` ({name: (N, 4) array}): HxWx3 uint8."""
    boxes = [seq.boxes[i]] + [np.asarray(p)[i] for p in (predictions or {}).values()]
    colors = [BOX_COLORS[0] if seq.visible[i] else (255, 255, 255)] + BOX_COLORS[1:]
    return draw_boxes(seq.frame(i), boxes, colors)


def filmstrip(seq: Sequence, num_frames: int = 6, predictions: dict | None = None, axes=None, title: bool = True):
    """Draw ``num_frames`` evenly spaced frames of ``seq`` in a row of ``axes`` (made if None); returns the axes."""
    idx = np.linspace(0, len(seq) - 1, num_frames).round().astype(int)
    if axes is None:
        _, axes = plt.subplots(1, num_frames, figsize=(2.2 * num_frames, 2.0))
    for ax, i in zip(np.atleast_1d(axes), idx):
        ax.imshow(annotated_frame(seq, int(i), predictions))
        ax.set_title(f"#{i}" + ("" if seq.visible[i] else " (hidden)"), fontsize=8)
        ax.axis("off")
    if title:
        np.atleast_1d(axes)[0].text(0, -0.25, f"{seq.name}  [{' '.join(sorted(seq.attributes))}]",
                                    transform=np.atleast_1d(axes)[0].transAxes, fontsize=8, va="top")
    return axes


def gallery(groups: dict[str, list[Sequence]], num_frames: int = 5, max_rows_per_group: int = 1):
    """One filmstrip row per sequence for each group ({label: sequences}), e.g. one group per attribute.

    Returns the matplotlib Figure.
    """
    rows = [(label, s) for label, seqs in groups.items() for s in seqs[:max_rows_per_group]]
    if not rows:
        raise ValueError("gallery needs at least one sequence")
    fig, axes = plt.subplots(len(rows), num_frames, figsize=(2.0 * num_frames, 1.75 * len(rows)), squeeze=False)
    for r, (label, seq) in enumerate(rows):
        filmstrip(seq, num_frames, axes=axes[r], title=False)
        axes[r, 0].text(-0.08, 0.5, f"{label}\n{seq.name[-8:]}", transform=axes[r, 0].transAxes,
                        fontsize=8, ha="right", va="center")
    fig.tight_layout()
    return fig


def frame_player(seq: Sequence, predictions: dict | None = None):
    """An ipywidgets player (frame slider + play button) over ``seq``; display it in a live notebook.

    In a non-interactive run the widget shows nothing useful: show :func:`filmstrip` there.
    """
    import ipywidgets as widgets
    from PIL import Image
    import io

    def png(i: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(annotated_frame(seq, i, predictions)).save(buf, format="PNG")
        return buf.getvalue()

    image = widgets.Image(value=png(0), format="png", width=2 * seq.frame(0).shape[1])
    slider = widgets.IntSlider(value=0, min=0, max=len(seq) - 1, description="frame")
    play = widgets.Play(value=0, min=0, max=len(seq) - 1, interval=50)
    widgets.jslink((play, "value"), (slider, "value"))
    slider.observe(lambda change: setattr(image, "value", png(change["new"])), names="value")
    return widgets.VBox([widgets.HBox([play, slider]), image])

"""Tracking metrics (pure NumPy): the one implementation every notebook, runner and test uses.

Conventions follow the got10k toolkit (https://github.com/got-10k/toolkit) exactly, so our numbers
are comparable with published ones; each function names the toolkit file it mirrors.

* Boxes are ``x, y, w, h`` in 0-based pixels, arrays of shape ``(N, 4)`` float64.
* OTB one-pass evaluation (``got10k/experiments/otb.py``, ``_calc_curves`` and ``report``):
  success curve at 21 IoU thresholds ``linspace(0, 1, 21)`` counting ``iou > t`` (strict: a perfect
  tracker scores 20/21 because ``iou > 1`` never holds); success score (AUC) = mean of the curve;
  precision curve at thresholds ``0, 1, ..., 50`` px counting ``err <= t``; precision score = value at
  20 px; frame 0 is replaced by the ground truth and counted. Curves are averaged over sequences
  (each sequence weighs the same).
* Normalized precision (TrackingNet / LaSOT, as in pytracking's ``analysis/extract_results.py``):
  centre error with both centres divided by the ground-truth ``w, h``; thresholds
  ``arange(0, 51) / 100``; score = value at 0.20 (index 20). The got10k toolkit has no such metric.
* GOT-10k (``got10k/experiments/got10k.py``, ``report`` and ``_evaluate``): IoU of frames 1..N-1
  (frame 0 excluded), boxes clipped to the image by ``rect_iou(..., bound=(W, H))``, only frames where
  the target is visible (``cover > 0``); AO = mean IoU, SR_t = fraction of ``iou > t``, both
  frame-weighted over the concatenation of all sequences (and all repetitions).
* Speed: OTB = per sequence ``mean(1 / t)`` over positive times, then the mean over sequences that
  have a speed; GOT-10k/VOT = ``mean(1 / t)`` over all positive frame times of all sequences.

One deliberate extension: a predicted box that is not finite or has ``w <= 0`` or ``h <= 0`` (what
the runners write when a tracker fails on a frame, see :mod:`mtl.eval`) gets IoU 0 and an infinite
centre error, so it counts as a miss at every threshold. The toolkit gives such boxes IoU 0 too, but a
finite centre error; for valid boxes the two agree to floating-point rounding.
"""
from __future__ import annotations

import numpy as np

#: OTB success-plot thresholds (21 values, ``iou > t`` counts).
IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
#: OTB precision-plot thresholds in pixels (51 values, ``err <= t`` counts).
CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
#: Normalized-precision thresholds (51 values, pytracking / TrackingNet convention).
NORM_CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0
#: Index of the 20 px threshold in :data:`CENTER_THRESHOLDS` (the precision score).
PRECISION_INDEX = 20
#: Index of the 0.2 threshold in :data:`NORM_CENTER_THRESHOLDS` (the normalized precision score).
NORM_PRECISION_INDEX = 20


def _as_boxes(boxes, name: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1:
        b = b[None, :]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) (x, y, w, h), got {np.shape(boxes)}")
    return b


def _pair(pred, gt):
    p, g = _as_boxes(pred, "pred"), _as_boxes(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    return p, g


def valid_boxes(boxes) -> np.ndarray:
    """Mask ``(N,)`` bool of boxes ``(N, 4)`` that are finite with ``w > 0`` and ``h > 0``."""
    b = _as_boxes(boxes, "boxes")
    with np.errstate(invalid="ignore"):
        return np.all(np.isfinite(b), axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)


def clip_to_bound(boxes, bound) -> np.ndarray:
    """The got10k toolkit's ``rect_iou`` bound clipping of boxes ``(N, 4)`` to ``bound = (W, H)``.

    Mirrors ``got10k/utils/metrics.py``: ``x`` clipped to ``[0, W]``, then ``w`` to ``[0, W - x]`` (same
    for ``y, h``). Note the toolkit quirk: a box starting left of the image keeps its full width.
    Returns a new float64 array ``(N, 4)``.
    """
    b = _as_boxes(boxes, "boxes").copy()
    W, H = float(bound[0]), float(bound[1])
    b[:, 0] = np.clip(b[:, 0], 0, W)
    b[:, 1] = np.clip(b[:, 1], 0, H)
    b[:, 2] = np.clip(b[:, 2], 0, W - b[:, 0])
    b[:, 3] = np.clip(b[:, 3], 0, H - b[:, 1])
    return b


def iou(pred, gt, bound=None) -> np.ndarray:
    """Intersection over union of box pairs; ``pred``, ``gt`` ``(N, 4)`` (or ``(4,)``) -> ``(N,)`` float64.

    Same formula as ``got10k.utils.metrics.rect_iou``: ``inter / (union + eps)`` clipped to ``[0, 1]``,
    with the optional ``bound = (W, H)`` clipping of :func:`clip_to_bound`. Invalid predicted boxes
    (NaN, ``w <= 0`` or ``h <= 0``) score 0.
    """
    p, g = _pair(pred, gt)
    ok = valid_boxes(p)
    p = np.where(ok[:, None], p, 0.0)
    if bound is not None:
        p, g = clip_to_bound(p, bound), clip_to_bound(g, bound)
    x1 = np.maximum(p[:, 0], g[:, 0])
    y1 = np.maximum(p[:, 1], g[:, 1])
    x2 = np.minimum(p[:, 0] + p[:, 2], g[:, 0] + g[:, 2])
    y2 = np.minimum(p[:, 1] + p[:, 3], g[:, 1] + g[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = p[:, 2] * p[:, 3] + g[:, 2] * g[:, 3] - inter
    out = np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)
    return np.where(ok, out, 0.0)


def box_centers(boxes) -> np.ndarray:
    """Centres ``(N, 2)`` of boxes ``(N, 4)``: ``x + (w - 1) / 2, y + (h - 1) / 2`` (toolkit convention, 0-based pixels)."""
    b = _as_boxes(boxes, "boxes")
    return b[:, :2] + (b[:, 2:] - 1) / 2


def center_error(pred, gt) -> np.ndarray:
    """Euclidean distance ``(N,)`` in pixels between box centres (``got10k/utils/metrics.py``).

    Invalid predicted boxes get ``inf`` (a miss at every threshold).
    """
    p, g = _pair(pred, gt)
    err = np.sqrt(np.sum((box_centers(p) - box_centers(g)) ** 2, axis=1))
    return np.where(valid_boxes(p), err, np.inf)


def normalized_center_error(pred, gt) -> np.ndarray:
    """Centre error ``(N,)`` with both centres divided by the ground-truth ``w, h`` (pytracking / TrackingNet)."""
    p, g = _pair(pred, gt)
    scale = g[:, 2:]
    err = np.sqrt(np.sum(((box_centers(p) - box_centers(g)) / scale) ** 2, axis=1))
    return np.where(valid_boxes(p), err, np.inf)


def success_curve(ious, thresholds=IOU_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with ``iou > t`` (strict) for each threshold; ``ious (N,)`` -> ``(T,)``."""
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    if ious.size == 0:
        raise ValueError("success_curve needs at least one frame")
    return np.mean(np.greater(ious[:, None], np.asarray(thresholds)[None, :]), axis=0)


def precision_curve(errors, thresholds=CENTER_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with ``err <= t`` for each threshold; ``errors (N,)`` -> ``(T,)``."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    if errors.size == 0:
        raise ValueError("precision_curve needs at least one frame")
    return np.mean(np.less_equal(errors[:, None], np.asarray(thresholds)[None, :]), axis=0)


def normalized_precision_curve(norm_errors, thresholds=NORM_CENTER_THRESHOLDS) -> np.ndarray:
    """:func:`precision_curve` over normalized centre errors at thresholds ``0, 0.01, ..., 0.5``; ``(N,)`` -> ``(51,)``."""
    return precision_curve(norm_errors, thresholds)


def auc(curve) -> float:
    """Area under a success curve as the toolkit defines it: the mean of the curve ``(T,)``."""
    return float(np.mean(np.asarray(curve, dtype=np.float64)))


def otb_sequence_metrics(pred, gt) -> dict:
    """OTB one-pass metrics of one sequence; ``pred``, ``gt`` ``(N, 4)``.

    As the toolkit's ``ExperimentOTB.report``, frame 0 of ``pred`` is replaced by the ground truth
    (it is the given box) and counted. Returns a dict with ``ious (N,)``, ``center_errors (N,)``,
    ``success_curve (21,)``, ``precision_curve (51,)``, ``norm_precision_curve (51,)`` and the scalar
    ``auc``, ``precision`` (at 20 px), ``norm_precision`` (at 0.2), ``success_rate`` (at IoU 0.5).
    """
    p, g = _pair(pred, gt)
    p = p.copy()
    p[0] = g[0]
    ious = iou(p, g)
    errs = center_error(p, g)
    succ = success_curve(ious)
    prec = precision_curve(errs)
    nprec = normalized_precision_curve(normalized_center_error(p, g))
    return {
        "ious": ious, "center_errors": errs,
        "success_curve": succ, "precision_curve": prec, "norm_precision_curve": nprec,
        "auc": auc(succ), "precision": float(prec[PRECISION_INDEX]),
        "norm_precision": float(nprec[NORM_PRECISION_INDEX]),
        "success_rate": float(succ[len(IOU_THRESHOLDS) // 2]),
    }


def got10k_frame_ious(pred, gt, visible=None, bound=None) -> np.ndarray:
    """The IoUs GOT-10k averages for one sequence: frames 1..N-1 where the target is visible.

    ``pred``, ``gt`` ``(N, 4)``; ``visible`` ``(N,)`` bool (GOT-10k's ``cover > 0``; None = all);
    ``bound = (W, H)`` the image size (GOT-10k clips boxes to it). Returns ``(M,)`` float64, ``M <= N - 1``.
    """
    p, g = _pair(pred, gt)
    ious = iou(p[1:], g[1:], bound=bound)
    if visible is not None:
        visible = np.asarray(visible, dtype=bool).reshape(-1)
        if visible.shape[0] != g.shape[0]:
            raise ValueError(f"visible has {visible.shape[0]} frames, boxes have {g.shape[0]}")
        ious = ious[visible[1:]]
    return ious


def ao_sr(ious, thresholds=(0.5, 0.75)) -> tuple[float, dict]:
    """GOT-10k average overlap and success rates of frame IoUs ``(M,)`` (pooled over all sequences).

    AO = mean IoU; ``SR_t`` = fraction with ``iou > t`` (strict, as ``_evaluate`` in the toolkit).
    Returns ``(ao, {t: sr_t})``; NaN values when there are no frames.
    """
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    if ious.size == 0:
        return float("nan"), {float(t): float("nan") for t in thresholds}
    return float(np.mean(ious)), {float(t): float(np.mean(ious > t)) for t in thresholds}


def sequence_fps(times) -> float:
    """One sequence's speed as OTB reports it: ``mean(1 / t)`` over positive, finite frame times ``(N,)``; -1 if none."""
    t = _timed(times)
    return float(np.mean(1.0 / t)) if t.size else -1.0


def otb_fps(per_sequence_fps) -> float:
    """OTB overall speed: mean of the per-sequence speeds that exist (``> 0``), else -1."""
    s = np.asarray(per_sequence_fps, dtype=np.float64).reshape(-1)
    s = s[s > 0]
    return float(np.mean(s)) if s.size else -1.0


def pooled_fps(times_per_sequence) -> float:
    """GOT-10k / VOT overall speed: ``mean(1 / t)`` over the positive frame times of all sequences; -1 if none."""
    return sequence_fps(_pooled(times_per_sequence))


def throughput_fps(times_per_sequence) -> float:
    """Frames per second of wall time: the number of timed frames over their total time; -1 if none.

    ``times_per_sequence``: iterable of ``(N_i,)`` frame times in seconds (positive, finite ones count).
    Unlike the OTB/GOT-10k ``mean(1 / t)``, this charges a tracker for work it does on few frames
    (an updater that optimizes for 1 s every 10 frames is 10x slower here, barely slower there).
    """
    t = _timed(_pooled(times_per_sequence))
    return float(t.size / t.sum()) if t.size else -1.0


def _timed(times) -> np.ndarray:
    """The frames that were timed: positive, finite entries of ``times``, flattened to ``(K,)``."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    return t[np.isfinite(t) & (t > 0)]


def _pooled(times_per_sequence) -> np.ndarray:
    """All sequences' frame times ``(N_i,)`` in one ``(sum N_i,)`` array (empty when there are none)."""
    parts = [np.asarray(t, dtype=np.float64).reshape(-1) for t in times_per_sequence]
    return np.concatenate(parts) if parts else np.zeros(0)

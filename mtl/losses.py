"""SiamFC's training signal: label maps and the balanced logistic loss.

A score map cell ``u`` (``u`` measured in cells from the map centre) is a positive when the search
location it looks at lies within ``R`` pixels of the target centre, ``k * ||u|| <= R`` with ``k`` the
backbone stride: ``R = 16 px``, ``k = 8`` gives a radius of 2 cells (13 positives). The loss is
``l(y, v) = log(1 + exp(-y v))`` (``y`` in {-1, +1}), i.e. binary cross-entropy with logits, with
positives and negatives *balanced*: each class carries half the weight of a map, so the few
positives are not drowned by the many negatives.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def siamfc_labels(size: int, radius_cells: float = 2.0) -> np.ndarray:
    """Label map ``(size, size)`` float32: 1 where the Euclidean distance to the centre is ``<= radius_cells``, else 0.

    The centre is ``(size - 1) / 2`` (cell 7 of 15, cell 8 of 17). For the paper's radius of
    16 px / stride 8 = 2 cells the 13 positives form a diamond-like disc (the L1 and L2 balls of
    radius 2 contain the same integer cells, so siamfc-pytorch's block distance agrees).
    """
    if int(size) != size or size < 1:
        raise ValueError(f"label map size must be a positive integer, got {size!r}")
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    dist = np.hypot(offsets[None, :], offsets[:, None])
    return (dist <= radius_cells).astype(np.float32)


def balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-cell weights for a 0/1 label map (any shape ``(..., H, W)``): ``0.5 / #pos`` and ``0.5 / #neg`` per map.

    Each map's weights sum to 1 (half on each class); a map with no positives (or no negatives)
    gives its whole weight to the class it has.
    """
    pos = (labels > 0.5).to(labels.dtype)
    neg = 1 - pos
    n_pos = pos.sum(dim=(-2, -1), keepdim=True)
    n_neg = neg.sum(dim=(-2, -1), keepdim=True)
    w_pos = torch.where(n_neg > 0, 0.5, 1.0) / n_pos.clamp_min(1)
    w_neg = torch.where(n_pos > 0, 0.5, 1.0) / n_neg.clamp_min(1)
    return pos * w_pos + neg * w_neg


def balanced_logistic_loss_per_map(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Balanced logistic loss of every map: ``scores`` ``(..., H, W)`` -> ``(...)``.

    ``labels``: 0/1 targets broadcastable to ``scores`` (one ``(H, W)`` map for all, or one per map).
    Entry ``m`` is ``sum_u w_u * BCEWithLogits(scores[m, u], labels[m, u])`` with weights from
    :func:`balanced_weights` (each map's weights sum to 1). GradNet needs it per map: each template's
    loss is the mean over the maps *it* produced.
    """
    labels = torch.as_tensor(labels, dtype=scores.dtype, device=scores.device).expand_as(scores)
    weights = balanced_weights(labels)
    per_cell = F.binary_cross_entropy_with_logits(scores, labels, reduction="none")
    return (weights * per_cell).sum(dim=(-2, -1))


def balanced_logistic_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Balanced logistic loss, averaged over the maps of a batch (scalar tensor).

    Args:
        scores: logits ``(B, 1, H, W)`` (or ``(B, H, W)``).
        labels: 0/1 targets broadcastable to ``scores``, e.g. one ``(H, W)`` map for the whole batch.
    Returns:
        the mean over maps of :func:`balanced_logistic_loss_per_map`.
    """
    return balanced_logistic_loss_per_map(scores, labels).mean()

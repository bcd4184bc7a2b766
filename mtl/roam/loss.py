"""ROAM's response label and loss (``specs/dimp_roam.md`` §2(a) "Losses").

Boxes are ``(x, y, w, h)`` in feature-cell coordinates (:mod:`mtl.dimp.data`'s geometry: cell ``j``
of the map is at ``j``).
"""
from __future__ import annotations

import torch


def response_label(boxes: torch.Tensor, size: int, alpha: float = 20.0) -> torch.Tensor:
    """``M = exp(-alpha ((dx / w)^2 + (dy / h)^2))`` ``(N, size, size)`` for boxes ``(N, 4)``: ``dx, dy`` from each
    cell to the box centre, both in cells, so the label's width follows the target's (the paper's ``alpha`` = 20;
    the authors' code writes the same label as ``.2`` with ``sigma = .1 w``)."""
    cells = torch.arange(size, dtype=boxes.dtype, device=boxes.device)
    cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    dx = (cells[None, None, :] - cx[:, None, None]) / boxes[:, 2, None, None]
    dy = (cells[None, :, None] - cy[:, None, None]) / boxes[:, 3, None, None]
    return torch.exp(-alpha * (dx * dx + dy * dy))


def response_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """The authors' response loss (not in the paper): ``sum e^M (G - M)^2`` over the entries with
    ``|G - M| >= margin``, divided by their count + 1, averaged over the ``N`` maps ``(N, H, W)``.

    Without the margin the many easy background cells dominate (``specs/dimp_roam.md`` §2(d).6).
    """
    err = scores - labels
    keep = (err.abs() >= margin).to(scores.dtype)
    per_map = (torch.exp(labels) * err * err * keep).flatten(1).sum(1) / (keep.flatten(1).sum(1) + 1)
    return per_map.mean()


def regression_loss(deltas: torch.Tensor, boxes: torch.Tensor, anchors: torch.Tensor, top: int = 8) -> torch.Tensor:
    """ROAM++'s box loss: smooth-L1 between the predicted deltas ``(N, 4, H, W)`` and the Faster R-CNN deltas of the
    boxes ``(N, 4)`` (cells), on the ``top`` anchors ``(H W, 4)`` (:func:`mtl.roam.model.anchor_boxes`) of highest IoU
    with each box, averaged over those anchors and the 4 deltas.

    The authors' code takes the top 32 anchors of a 71x71 map, about a sixth of its 14x14-cell target; ours
    (a change, not tuned) takes ``top`` = 8, about a third of our 4.8 x 4.8-cell target (a sixth would be 4).
    """
    from mtl.dimp.iounet import box_iou
    from mtl.roam.model import encode_deltas

    n = deltas.shape[0]
    corner = torch.cat([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, 2:]], dim=1)
    best = box_iou(corner[None], boxes[:, None]).topk(top, dim=1).indices  # (N, top)
    pred = deltas.flatten(2).transpose(1, 2).gather(1, best[..., None].expand(n, top, 4))
    target = encode_deltas(anchors[best], boxes[:, None])
    return torch.nn.functional.smooth_l1_loss(pred, target)


__all__ = ["response_label", "response_loss", "regression_loss"]

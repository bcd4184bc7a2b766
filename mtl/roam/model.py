"""ROAM's resizable tracking model: a 1x1 reduction conv and a response filter of one canonical shape,
warped to the target's aspect ratio before it is applied (``specs/dimp_roam.md`` §2(a)).

The model is *functional*: its parameters ``theta`` are a dict of tensors (so the meta-learned
optimizer can replace them step by step and gradients flow through the steps), with
:class:`ThetaLayout` flattening them into the one coordinate vector the coordinate-wise LSTM sees.

Shapes: backbone features ``x`` ``(N, C, H, W)`` (the frozen SiamFC backbone on a 191 px crop of
``5 sqrt(wh)``, so ``H = W = 14`` and the target spans about 4.8 cells), response ``(N, H, W)``.
Parameters (``C' = C_r``, or ``C`` when ``C_r = 0``):

* ``w1`` ``(C_r, C, 1, 1)``, ``b1`` ``(C_r,)``: the reduction conv (absent with ``C_r = 0``: the filter then
  reads the backbone's ``C`` channels directly);
* ``filter`` ``(1, C', k0, k0)``, ``b2`` ``(1,)``: the canonical response filter;
* ROAM++ only, the box-regression branch: ``reg_w1`` ``(C_r, C, 1, 1)``, ``reg_b1`` (its own reduction, absent with
  ``C_r = 0``), ``reg_filter`` ``(4, C', k0, k0)``, ``reg_b2`` ``(4,)``: Faster R-CNN deltas of one anchor per cell
  (:func:`anchor_boxes`), the anchor the warped filter's extent divided by ``rho``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def filter_size(target_cells: float, rho: float = 1.5) -> int:
    """The filter's extent along one axis for a target of ``target_cells`` feature cells: the odd number
    ``ceil(rho x) - (ceil(rho x) mod 2) + 1`` (ROAM's rule; ``rho`` = 1.5 makes the filter cover the target
    and half its size of context)."""
    if not target_cells > 0:
        raise ValueError(f"target size in cells must be positive, got {target_cells}")
    n = math.ceil(rho * target_cells)
    return n - n % 2 + 1


def filter_shape(target_cells_wh, rho: float = 1.5) -> tuple[int, int]:
    """``(rows, cols)`` of the warped filter for a target of ``(w, h)`` cells (:func:`filter_size` per axis)."""
    w, h = (float(v) for v in target_cells_wh)
    return filter_size(h, rho), filter_size(w, rho)


def resize_filter(filt: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Warp ``filt`` ``(O, C, k0, k0)`` to ``(O, C, rows, cols)`` bilinearly with aligned corners (so the
    canonical shape returns the filter exactly, and corner taps stay corner taps)."""
    if tuple(filt.shape[-2:]) == tuple(shape):
        return filt
    return F.interpolate(filt, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=True)


@dataclass(frozen=True)
class ThetaLayout:
    """Names and shapes of the model's parameters, and their order in the flat coordinate vector."""

    shapes: tuple  # ((name, shape), ...)

    @classmethod
    def for_model(cls, in_channels: int, reduced: int, k0: int, regression: bool = False,
                  reg_reduced: int | None = None) -> "ThetaLayout":
        """ROAM's model (ROAM++'s with ``regression``); ``reduced = 0`` drops the response branch's 1x1 conv (a
        one-layer filter on the backbone's channels); ``reg_reduced`` (default ``reduced``): the regression branch's."""
        reg_reduced = reduced if reg_reduced is None else reg_reduced
        if reduced < 0 or reg_reduced < 0:
            raise ValueError(f"reduced must be >= 0, got {reduced}, {reg_reduced}")
        shapes = []
        for prefix, out, red in (("", 1, reduced),) + ((("reg_", 4, reg_reduced),) if regression else ()):
            if red:
                shapes += [(f"{prefix}w1", (red, in_channels, 1, 1)), (f"{prefix}b1", (red,))]
            shapes += [(f"{prefix}filter", (out, red or in_channels, k0, k0)), (f"{prefix}b2", (out,))]
        return cls(tuple(shapes))

    @property
    def has_regression(self) -> bool:
        return any(name == "reg_filter" for name, _ in self.shapes)

    def mask(self, prefix: str) -> torch.Tensor:
        """``(P,)`` bool: the coordinates of the parameters whose name starts with ``prefix``."""
        return torch.cat([torch.full((math.prod(s),), name.startswith(prefix)) for name, s in self.shapes])

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for _, s in self.shapes)

    def flatten(self, theta: dict) -> torch.Tensor:
        """``{name: tensor}`` -> ``(P,)``."""
        return torch.cat([theta[name].reshape(-1) for name, _ in self.shapes])

    def unflatten(self, flat: torch.Tensor) -> dict:
        """``(P,)`` -> ``{name: tensor}`` (views of ``flat``, so gradients flow to it)."""
        if flat.numel() != self.numel:
            raise ValueError(f"expected {self.numel} coordinates, got {flat.numel()}")
        out, i = {}, 0
        for name, shape in self.shapes:
            n = math.prod(shape)
            out[name] = flat[i:i + n].view(shape)
            i += n
        return out

    def initial(self, generator: torch.Generator | None = None, scale: float = 1.0) -> dict:
        """Random parameters: filters ``N(0, scale^2 / fan_in)``, 1x1 reductions ``N(0, 1 / fan_in)`` whatever the
        scale (a zero reduction would leave both layers without a gradient), biases 0."""
        theta = {}
        for name, shape in self.shapes:
            if len(shape) == 1:
                theta[name] = torch.zeros(shape)
            else:
                fan_in = math.prod(shape[1:])
                s = 1.0 if name.endswith("w1") else scale
                theta[name] = torch.randn(shape, generator=generator) * (s / math.sqrt(fan_in))
        return theta


def _branch(theta: dict, x: torch.Tensor, shape, prefix: str) -> torch.Tensor:
    z = F.conv2d(x, theta[prefix + "w1"], theta[prefix + "b1"]) if prefix + "w1" in theta else x
    f = resize_filter(theta[prefix + "filter"], shape)
    return F.conv2d(z, f, theta[prefix + "b2"], padding=(f.shape[-2] // 2, f.shape[-1] // 2))


def response(theta: dict, x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Response maps ``(N, H, W)`` of features ``x`` ``(N, C, H, W)`` with the filter warped to ``shape``."""
    return _branch(theta, x, shape, "")[:, 0]


def regression(theta: dict, x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """ROAM++'s box deltas ``(N, 4, H, W)`` (``tx, ty, tw, th`` of each cell's anchor) with the filter warped to ``shape``."""
    return _branch(theta, x, shape, "reg_")


def anchor_boxes(size: int, shape: tuple[int, int], rho: float = 1.5) -> torch.Tensor:
    """One anchor per cell of a ``size x size`` map, ``(size^2, 4)`` as ``(cx, cy, w, h)`` in cells (row-major):
    centred on the cell, of the warped filter's extent ``(cols, rows) / rho``, i.e. about the target's size."""
    rows, cols = shape
    c = torch.arange(size, dtype=torch.float32)
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([cx.reshape(-1), cy.reshape(-1), torch.full((size * size,), cols / rho),
                        torch.full((size * size,), rows / rho)], dim=1)


def encode_deltas(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Faster R-CNN deltas ``(..., 4)`` of boxes ``(x, y, w, h)`` relative to anchors ``(cx, cy, w, h)`` (broadcast):
    ``((cx - a_x) / a_w, (cy - a_y) / a_h, log(w / a_w), log(h / a_h))``."""
    cx, cy = boxes[..., 0] + boxes[..., 2] / 2, boxes[..., 1] + boxes[..., 3] / 2
    return torch.stack([(cx - anchors[..., 0]) / anchors[..., 2], (cy - anchors[..., 1]) / anchors[..., 3],
                        torch.log(boxes[..., 2] / anchors[..., 2]), torch.log(boxes[..., 3] / anchors[..., 3])], dim=-1)


def decode_deltas(anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_deltas`: boxes ``(..., 4)`` as ``(x, y, w, h)``."""
    w = anchors[..., 2] * torch.exp(deltas[..., 2])
    h = anchors[..., 3] * torch.exp(deltas[..., 3])
    cx = anchors[..., 0] + deltas[..., 0] * anchors[..., 2]
    cy = anchors[..., 1] + deltas[..., 1] * anchors[..., 3]
    return torch.stack([cx - w / 2, cy - h / 2, w, h], dim=-1)


__all__ = ["filter_size", "filter_shape", "resize_filter", "ThetaLayout", "response", "regression", "anchor_boxes",
           "encode_deltas", "decode_deltas"]

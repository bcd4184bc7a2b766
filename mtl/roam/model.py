"""ROAM's resizable tracking model: a 1x1 reduction conv and a response filter of one canonical shape,
warped to the target's aspect ratio before it is applied (``specs/dimp_roam.md`` §2(a)).

The model is *functional*: its parameters ``theta`` are a dict of tensors (so the meta-learned
optimizer can replace them step by step and gradients flow through the steps), with
:class:`ThetaLayout` flattening them into the one coordinate vector the coordinate-wise LSTM sees.

Shapes: backbone features ``x`` ``(N, C, H, W)`` (the frozen SiamFC backbone on a 191 px crop of
``5 sqrt(wh)``, so ``H = W = 14`` and the target spans about 4.8 cells), response ``(N, H, W)``.
Parameters (ROAM, response branch; ROAM++ adds a regression branch, not built here yet):

* ``w1`` ``(C_r, C, 1, 1)``, ``b1`` ``(C_r,)``: the reduction conv (absent with ``C_r = 0``: the filter then
  reads the backbone's ``C`` channels directly);
* ``filter`` ``(1, C_r, k0, k0)``, ``b2`` ``(1,)``: the canonical response filter.
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
    def for_model(cls, in_channels: int, reduced: int, k0: int) -> "ThetaLayout":
        """ROAM's model; ``reduced = 0`` drops the 1x1 conv (a one-layer filter on the backbone's channels)."""
        if reduced < 0:
            raise ValueError(f"reduced must be >= 0, got {reduced}")
        if reduced == 0:
            return cls((("filter", (1, in_channels, k0, k0)), ("b2", (1,))))
        return cls((("w1", (reduced, in_channels, 1, 1)), ("b1", (reduced,)), ("filter", (1, reduced, k0, k0)),
                    ("b2", (1,))))

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
        """Random parameters: weights ``N(0, scale^2 / fan_in)``, biases 0."""
        theta = {}
        for name, shape in self.shapes:
            if len(shape) == 1:
                theta[name] = torch.zeros(shape)
            else:
                fan_in = math.prod(shape[1:])
                theta[name] = torch.randn(shape, generator=generator) * (scale / math.sqrt(fan_in))
        return theta


def response(theta: dict, x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Response maps ``(N, H, W)`` of features ``x`` ``(N, C, H, W)`` with the filter warped to ``shape``."""
    z = F.conv2d(x, theta["w1"], theta["b1"]) if "w1" in theta else x
    f = resize_filter(theta["filter"], shape)
    return F.conv2d(z, f, theta["b2"], padding=(f.shape[-2] // 2, f.shape[-1] // 2))[:, 0]


__all__ = ["filter_size", "filter_shape", "resize_filter", "ThetaLayout", "response"]

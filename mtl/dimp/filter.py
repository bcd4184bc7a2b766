"""The target model's linear operations: a filter applied to features, and its transpose.

DiMP's target model is one convolution filter ``f`` per sequence, slid over that sequence's
classification features (DiMP eq. 1, ``s = x * f``). Shapes, used throughout :mod:`mtl.dimp`:

* features ``x``: ``(B, n, C, H, W)`` -- ``B`` sequences, ``n`` images of each (train or test frames);
* filter ``f``: ``(B, C, k, k)`` with odd ``k`` (padding ``k // 2`` keeps the score map ``H x W`` and
  cell ``(i, j)`` of the map centred on feature cell ``(i, j)``: see ``specs/dimp_roam.md`` §1(d).2);
* scores ``s``: ``(B, n, H, W)``.

Both operations are one grouped convolution: sequence ``b`` is group ``b``. ``apply_filter_transpose``
is the adjoint of ``apply_filter`` in ``f``: ``<x * f, a> = <f, apply_filter_transpose(x, a)>``, which
makes the gradient ``J^T r`` of the least-squares loss closed-form (checked in :mod:`mtl.dimp.checks`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(features: torch.Tensor, k: int) -> None:
    if features.dim() != 5:
        raise ValueError(f"features must be (B, n, C, H, W), got shape {tuple(features.shape)}")
    if k % 2 != 1:
        raise ValueError(f"the filter size must be odd (an even one shifts the map by half a cell), got {k}")


def apply_filter(features: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """Scores ``s[b, n] = x[b, n] * f[b]`` (cross-correlation, zero padding ``k // 2``).

    features ``(B, n, C, H, W)``, filter ``(B, C, k, k)`` -> scores ``(B, n, H, W)``.
    """
    k = filt.shape[-1]
    _check(features, k)
    b, n, c, h, w = features.shape
    if filt.shape != (b, c, k, k):
        raise ValueError(f"filter must be (B={b}, C={c}, k, k), got {tuple(filt.shape)}")
    x = features.transpose(0, 1).reshape(n, b * c, h, w)  # images as the batch, sequences as groups
    s = F.conv2d(x, filt, padding=k // 2, groups=b)  # (n, B, H, W)
    return s.transpose(0, 1)


def apply_filter_transpose(features: torch.Tensor, activation: torch.Tensor, k: int) -> torch.Tensor:
    """The adjoint of :func:`apply_filter` in the filter: ``g[b] = sum_n x[b, n] (star) a[b, n]``.

    features ``(B, n, C, H, W)``, activation ``a`` ``(B, n, H, W)`` (e.g. a weighted residual) ->
    ``(B, C, k, k)``: the gradient of ``sum(s * a)`` with respect to the filter.
    """
    _check(features, k)
    b, n, c, h, w = features.shape
    if activation.shape != (b, n, h, w):
        raise ValueError(f"activation must be (B, n, H, W) = {(b, n, h, w)}, got {tuple(activation.shape)}")
    p = k // 2
    # channels as the batch, (sequence, image) as input channels; the activation is the kernel
    x = F.pad(features, (p, p, p, p)).permute(2, 0, 1, 3, 4).reshape(c, b * n, h + 2 * p, w + 2 * p)
    g = F.conv2d(x, activation.reshape(b, n, h, w), groups=b)  # (C, B, k, k)
    return g.transpose(0, 1)

"""Score heads: SiamFC's cross-correlation of template features with search features.

``score(z, x)[u, v] = out_scale * sum_{c,i,j} z[c,i,j] x[c, u+i, v+j]``: the template feature
``z`` acts as the weights of a *linear target model* (a correlation filter) slid over the search
features. Later notebooks update exactly this ``z`` (EMA, SGD, GradNet, LU, ROAM).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def xcorr_grouped(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Batched cross-correlation via one grouped convolution.

    Args:
        z: templates ``(Bz, C, h, w)``.
        x: search features ``(Bx, C, H, W)`` with ``Bx`` a multiple of ``Bz``; search ``i`` is
            correlated with template ``i // (Bx // Bz)`` when ``Bz > 1`` (training: one template
            per pair), with the single template when ``Bz == 1`` (tracking: several scales).
    Returns:
        ``(Bx, 1, H - h + 1, W - w + 1)``.

    The trick: fold the template batch into channels, so template ``b`` becomes group ``b`` of a
    grouped convolution over a 1-image batch -- one conv call instead of a Python loop.
    """
    bz, c, h, w = z.shape
    bx = x.shape[0]
    if x.shape[1] != c:
        raise ValueError(f"template has {c} channels, search features have {x.shape[1]}")
    if bx % bz:
        raise ValueError(f"search batch {bx} is not a multiple of template batch {bz}")
    if bz == 1:
        return F.conv2d(x, z)
    per = bx // bz
    # (Bx, C, H, W) -> (per, Bz*C, H, W): search i*... of every template side by side in channels.
    xs = x.reshape(bz, per, c, *x.shape[2:]).transpose(0, 1).reshape(per, bz * c, *x.shape[2:])
    out = F.conv2d(xs, z, groups=bz)  # (per, Bz, H', W')
    return out.transpose(0, 1).reshape(bx, 1, *out.shape[2:])


def xcorr_naive(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reference cross-correlation with an explicit loop over pairs and positions (slow; for self-checks).

    Same shapes and pairing rule as :func:`xcorr_grouped`.
    """
    bz, c, h, w = z.shape
    bx, _, hh, ww = x.shape
    per = bx // bz
    out = x.new_zeros(bx, 1, hh - h + 1, ww - w + 1)
    for i in range(bx):
        zi = z[i // per]
        for r in range(hh - h + 1):
            for s in range(ww - w + 1):
                out[i, 0, r, s] = (zi * x[i, :, r:r + h, s:s + w]).sum()
    return out


class SiamFCHead(nn.Module):
    """Scaled cross-correlation: ``out_scale * xcorr(z, x)`` (no parameters).

    siamfc-pytorch multiplies by a fixed ``out_scale = 0.001`` so that the initial scores are of
    order 1, where the logistic loss has useful gradients. The correlation sums ``C * h * w``
    products, so with a width multiplier (fewer channels ``C``) the same scale would give scores
    ``256 / C`` times smaller; :func:`default_out_scale` compensates (0.001 * 256 / C), which keeps
    the initial score statistics of the reference model. We keep it fixed rather than learned: a
    learned scalar multiplying sums of hundreds of terms gets gradients hundreds of times larger
    than the weights' and makes SGD at lr 1e-2 unstable.
    """

    def __init__(self, out_scale: float = 1e-3):
        super().__init__()
        if not out_scale > 0:
            raise ValueError(f"out_scale must be positive, got {out_scale!r}")
        self.out_scale = float(out_scale)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Template features ``(Bz, C, h, w)``, search features ``(Bx, C, H, W)`` -> scores ``(Bx, 1, H-h+1, W-w+1)``."""
        return xcorr_grouped(z, x) * self.out_scale

    def extra_repr(self) -> str:
        return f"out_scale={self.out_scale:g}"


def default_out_scale(channels: int) -> float:
    """``0.001 * 256 / channels``: siamfc-pytorch's 0.001 for 256 channels, rescaled for narrower backbones."""
    return 1e-3 * 256 / int(channels)

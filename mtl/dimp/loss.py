"""DiMP's discriminative learning loss (DiMP Sec. 3.1-3.3): residuals with a learned label, mask and weight.

Per sequence, with filter ``f`` and train features ``x_j`` (weights ``w_j``)::

    L(f) = 1/2 sum_j w_j || v_j * (m_j * s_j + (1 - m_j) * max(0, s_j) - y_j) ||^2 + lambda/2 ||f||^2,   s_j = x_j * f

``y`` (label), ``m`` (mask: 1 = squared error, 0 = hinge, only positive scores cost) and ``v``
(spatial weight) are maps over the score map, each a function of the distance ``d`` (in feature
cells) from a cell to the target centre in that image: a 1x1 convolution (no bias) over the
triangular radial basis ``rho_k(d)`` (eq. 7), so the coefficients ``phi_k`` are the curves of Fig. 3.

Shapes: distances and maps ``(B, n, H, W)``; basis ``(B, n, N, H, W)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def distance_map(centers: torch.Tensor, size: int) -> torch.Tensor:
    """Distance (cells) from every cell of a ``size x size`` map to the target centre of each image.

    centers ``(..., 2)`` as ``(x, y)`` in cell coordinates (cell ``(i, j)`` is centred at ``x = j, y = i``)
    -> ``(..., size, size)``.
    """
    grid = torch.arange(size, dtype=centers.dtype, device=centers.device)
    dx = grid.view(1, -1) - centers[..., 0, None, None]
    dy = grid.view(-1, 1) - centers[..., 1, None, None]
    return torch.sqrt(dx * dx + dy * dy)


def gaussian_label(distance: torch.Tensor, sigma: float) -> torch.Tensor:
    """``exp(-d^2 / (2 sigma^2))``: the label of the classification loss (peak 1 at the target centre)."""
    return torch.exp(-0.5 * (distance / sigma) ** 2)


class RadialBasis(nn.Module):
    """Triangular basis ``rho_k(d)``, ``k = 0..N-1``, bin width ``delta`` (DiMP eq. 7).

    ``rho_k(d) = max(0, 1 - |d - k delta| / delta)`` for ``k < N - 1``; the last one stays 1 beyond
    ``(N - 1) delta``, so the bases sum to 1 for every ``d >= 0`` and ``sum_k phi_k rho_k(d)`` is the
    piecewise-linear interpolation of the values ``phi_k`` at the bin centres.
    """

    def __init__(self, num_bins: int = 100, bin_width: float = 0.1):
        super().__init__()
        if num_bins < 2 or bin_width <= 0:
            raise ValueError(f"num_bins >= 2 and bin_width > 0 required, got {num_bins}, {bin_width}")
        self.num_bins, self.bin_width = int(num_bins), float(bin_width)

    @property
    def centers(self) -> torch.Tensor:
        """Bin centres ``k * delta`` ``(N,)``: where ``phi_k`` is the value of the curve."""
        return torch.arange(self.num_bins, dtype=torch.float32) * self.bin_width

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        """distance ``(...)`` -> basis ``(..., N)`` (the bin axis last)."""
        u = distance.unsqueeze(-1) / self.bin_width - torch.arange(self.num_bins, dtype=distance.dtype,
                                                                   device=distance.device)
        rho = F.relu(1 - u.abs())
        last = torch.clamp(1 + u[..., -1:], 0, 1)  # rises over the last bin, then stays 1
        return torch.cat([rho[..., :-1], last], dim=-1)


class LearnedLossMaps(nn.Module):
    """``y``, ``m``, ``v`` as learned functions of the distance to the target (DiMP Sec. 3.3).

    Initialised as DiMP's code (``specs/dimp_roam.md`` §1(a).5): ``phi^y_k = G(k delta) - min G`` with
    ``G`` the Gaussian label of width ``label_sigma`` cells; ``m = sigmoid(sum_k phi^m_k rho_k)`` with
    ``phi^m_k = mask_init_factor * tanh(mask_radius - k delta)``; ``phi^v_k = 1``.
    ``learn=False`` keeps them fixed at those curves.
    """

    def __init__(self, label_sigma: float, num_bins: int = 100, bin_width: float = 0.1,
                 mask_init_factor: float = 3.0, mask_radius: float = 2.0, learn: bool = True):
        super().__init__()
        self.basis = RadialBasis(num_bins, bin_width)
        d = self.basis.centers
        g = gaussian_label(d, label_sigma)
        phi_y = g - g.min()
        phi_m = mask_init_factor * torch.tanh(mask_radius - d)
        phi_v = torch.ones(num_bins)
        params = {"phi_y": phi_y, "phi_m": phi_m, "phi_v": phi_v}
        for name, value in params.items():
            if learn:
                setattr(self, name, nn.Parameter(value.clone()))
            else:
                self.register_buffer(name, value.clone())
        self.initial = {k: v.clone() for k, v in params.items()}  # for Fig. 3 (learned vs initial curves)

    def curves(self) -> dict[str, torch.Tensor]:
        """The three curves at the bin centres: ``{"y", "m" (after the sigmoid), "v"}``, each ``(N,)``."""
        return {"y": self.phi_y.detach(), "m": torch.sigmoid(self.phi_m.detach()), "v": self.phi_v.detach()}

    def forward(self, distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """distance ``(B, n, H, W)`` -> ``(y, m, v)``, each ``(B, n, H, W)``."""
        rho = self.basis(distance)
        return rho @ self.phi_y, torch.sigmoid(rho @ self.phi_m), rho @ self.phi_v


class FixedHingeMaps(nn.Module):
    """The fixed L2-hinge loss of DiMP's baseline (``SD`` in Table 2; pytracking's ``DiMPL2SteepestDescentGN``):
    ``y`` the Gaussian label, ``m = 1`` where ``y > hinge_threshold`` (squared error) else 0 (hinge), ``v = 1``."""

    def __init__(self, label_sigma: float, hinge_threshold: float = 0.05):
        super().__init__()
        self.label_sigma, self.hinge_threshold = float(label_sigma), float(hinge_threshold)

    def forward(self, distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = gaussian_label(distance, self.label_sigma)
        return y, (y > self.hinge_threshold).to(y.dtype), torch.ones_like(y)


def residual(scores: torch.Tensor, y: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
             sample_weight: torch.Tensor) -> torch.Tensor:
    """``sqrt(w) * v * (m * s + (1 - m) * relu(s) - y)``: scores and maps ``(B, n, H, W)``, weights ``(B, n)``."""
    sw = sample_weight.clamp_min(0).sqrt()[..., None, None] * v
    return sw * (m * scores + (1 - m) * F.relu(scores) - y)


def hinge_mse(scores: torch.Tensor, label: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """DiMP's classification loss on test frames (eq. 9's ``l``): ``(s - z)^2`` where ``z > threshold``, else
    ``relu(s)^2``; mean over the map, then over images: scores, label ``(B, n, H, W)`` -> scalar."""
    positive = label > threshold
    err = torch.where(positive, scores - label, F.relu(scores))
    return (err * err).mean()


def nominal_label_sigma(search_factor: float = 5.0, crop_size: int = 191, stride: int = 8,
                        sigma_factor: float = 0.25) -> float:
    """Label width in cells: ``sigma_factor`` x the target's ``sqrt(wh)`` after cropping ``search_factor sqrt(wh)``
    to ``crop_size`` px (``0.25 * 191 / 5 / 8 = 1.19`` cells)."""
    return sigma_factor * crop_size / search_factor / stride


__all__ = ["distance_map", "gaussian_label", "RadialBasis", "LearnedLossMaps", "FixedHingeMaps", "residual",
           "hinge_mse", "nominal_label_sigma"]

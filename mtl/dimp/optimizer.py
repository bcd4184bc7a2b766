"""DiMP's model optimizer: steepest descent with the Gauss-Newton step length (DiMP Sec. 3.1-3.2).

One iteration, per sequence ``b`` (shapes in :mod:`mtl.dimp.filter`)::

    r   = sqrt(w) v (m s + (1 - m) relu(s) - y),     s = x * f                  (B, n, H, W)
    g   = J^T r + lambda f                                                      (B, C, k, k)
    J g = sqrt(w) v dmask (x * g),    dmask = m + (1 - m) 1[s > 0]              (B, n, H, W)
    alpha = ||g||^2 / (||J g||^2 + lambda ||g||^2)                              (B,)
    f  <- f - exp(beta) alpha g

``J^T r`` is closed-form (:func:`mtl.dimp.filter.apply_filter_transpose`), and ``J g`` is the filter
applied to ``g``, since the model is linear in ``f``; ``alpha`` minimises the quadratic (Gauss-Newton)
model of the loss along ``-g`` exactly, so no learning rate is tuned. Every step stays
differentiable, so training backpropagates through all iterations into the features, the
initializer and the loss maps; ``lambda`` and ``exp(beta)`` are learned scalars.

:class:`GradientDescent` is Table 1's "GD" row: the same gradient with a learned constant step per
filter coefficient instead of ``alpha``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mtl.dimp.filter import apply_filter, apply_filter_transpose
from mtl.dimp.loss import residual


def loss_value(features, filt, y, m, v, sample_weight, lam) -> torch.Tensor:
    """``L(f) = 1/2 ||r||^2 + lambda/2 ||f||^2`` per sequence ``(B,)``."""
    r = residual(apply_filter(features, filt), y, m, v, sample_weight)
    return 0.5 * r.pow(2).sum(dim=(1, 2, 3)) + 0.5 * lam * filt.pow(2).sum(dim=(1, 2, 3))


def gradient_and_jg(features, filt, y, m, v, sample_weight, lam) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(g, J g, loss)`` at ``filt``: the gradient ``(B, C, k, k)``, its image under the Jacobian
    ``(B, n, H, W)`` and the loss ``(B,)``, all closed-form."""
    k = filt.shape[-1]
    scores = apply_filter(features, filt)
    sw = sample_weight.clamp_min(0).sqrt()[..., None, None] * v
    dmask = m + (1 - m) * (scores.detach() > 0).to(scores.dtype)  # the hinge's derivative; sign from s.detach()
    r = sw * (m * scores + (1 - m) * torch.relu(scores) - y)
    g = apply_filter_transpose(features, sw * dmask * r, k) + lam * filt
    jg = sw * dmask * apply_filter(features, g)
    loss = 0.5 * r.pow(2).sum(dim=(1, 2, 3)) + 0.5 * lam * filt.pow(2).sum(dim=(1, 2, 3))
    return g, jg, loss


def gauss_newton_step(g: torch.Tensor, jg: torch.Tensor, lam) -> torch.Tensor:
    """``alpha = ||g||^2 / (||J g||^2 + lambda ||g||^2)`` per sequence ``(B,)``; never pooled over the batch."""
    gg = g.pow(2).sum(dim=(1, 2, 3))
    return gg / (jg.pow(2).sum(dim=(1, 2, 3)) + lam * gg).clamp_min(1e-8)


class SteepestDescent(nn.Module):
    """``num_iter`` Gauss-Newton steepest-descent iterations on the discriminative loss.

    ``lam = max(rho^2, min_reg)`` with ``rho`` learned (``rho0 = sqrt(lam_init)``, so ``lambda >= 0``);
    the step factor ``exp(beta)`` is learned from ``step_init``. ``forward`` returns every iterate
    (training averages the test loss over them) and the loss before each step.
    """

    def __init__(self, num_iter: int = 5, lam_init: float = 0.01, step_init: float = 0.9, min_reg: float = 1e-6,
                 learn: bool = True):
        super().__init__()
        if num_iter < 0 or lam_init <= 0 or step_init <= 0:
            raise ValueError(f"num_iter >= 0, lam_init > 0 and step_init > 0 required, got {num_iter}, {lam_init}, {step_init}")
        self.num_iter, self.min_reg = int(num_iter), float(min_reg)
        rho, beta = torch.tensor(math.sqrt(lam_init)), torch.tensor(math.log(step_init))
        if learn:
            self.rho, self.log_step = nn.Parameter(rho), nn.Parameter(beta)
        else:
            self.register_buffer("rho", rho)
            self.register_buffer("log_step", beta)

    @property
    def lam(self) -> torch.Tensor:
        return (self.rho * self.rho).clamp_min(self.min_reg)

    def step_factors(self, g, jg) -> torch.Tensor:
        """The per-sequence step ``exp(beta) alpha`` ``(B, 1, 1, 1)`` (a subclass may replace ``alpha``)."""
        return (self.log_step.exp() * gauss_newton_step(g, jg, self.lam)).view(-1, 1, 1, 1)

    def forward(self, filt: torch.Tensor, features: torch.Tensor, y, m, v, sample_weight: torch.Tensor | None = None,
                num_iter: int | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Iterate from ``filt`` ``(B, C, k, k)`` on ``features`` ``(B, n, C, H, W)`` with maps ``(B, n, H, W)``.

        ``sample_weight`` ``(B, n)``: each image's weight (default ``1/n``; online: the memory's weights).
        Returns ``(filters [f_0 .. f_N], losses [L(f_0) .. L(f_N)], each (B,))``.
        """
        b, n = features.shape[:2]
        if sample_weight is None:
            sample_weight = features.new_full((b, n), 1.0 / n)
        filters, losses = [filt], []
        for _ in range(self.num_iter if num_iter is None else int(num_iter)):
            g, jg, loss = gradient_and_jg(features, filt, y, m, v, sample_weight, self.lam)
            filt = filt - self.step_factors(g, jg) * g
            filters.append(filt)
            losses.append(loss)
        losses.append(loss_value(features, filt, y, m, v, sample_weight, self.lam))
        return filters, losses


class GradientDescent(SteepestDescent):
    """Table 1's "GD": the same gradient, a learned constant step per filter coefficient ``(C, k, k)``.

    The step is stored as its log, initialised to ``log(step_init)`` (the issue's recipe: the mean
    Gauss-Newton step of the SD model, measured on the bank, so GD starts where SD's steps are).
    """

    def __init__(self, channels: int, filter_size: int, num_iter: int = 5, lam_init: float = 0.01,
                 step_init: float = 1.0, learn: bool = True):
        super().__init__(num_iter, lam_init, 1.0, learn=learn)
        self.log_coeff_step = nn.Parameter(torch.full((channels, filter_size, filter_size), math.log(step_init)))

    def step_factors(self, g, jg) -> torch.Tensor:
        return self.log_coeff_step.exp().unsqueeze(0)

"""ROAM's learned optimizer: a coordinate-wise LSTM that writes one learning rate per model coordinate.

Every coordinate ``i`` of the flat model vector ``theta`` (:class:`mtl.roam.model.ThetaLayout`) is one
item of the LSTM's batch; all coordinates share the LSTM's weights (Andrychowicz et al. 2016). Per
update step ``k`` its input is ``[lambda_{k-1} / lambda_max, g'_1, g'_2, theta, loss]`` (5 numbers, as the
authors' code; the paper says 4), ``g'`` the preprocessed gradient (:func:`preprocess_gradient`), and its
output is a rate ``lambda_k = lambda_max sigmoid(a_k)``; the step is ``theta <- theta - lambda_k * g``.

``lambda_max`` is ours: the paper's plain sigmoid (rates <= 1, output bias -10) fits raw-VGG feature
magnitudes, not ours (``specs/dimp_roam.md`` §2(d).2), so the range is calibrated on val and the output
bias starts the rates at ``init_fraction x lambda_max``.

**Random filter scaling** (RFS, CVPR version): the optimizer works on ``theta' = theta / eps`` with
``eps = exp(U(-kappa, kappa))`` per coordinate, the model sees ``eps * theta'``; a step of ``lambda`` on
``theta'`` is a step of ``lambda eps^2`` on ``theta`` (:func:`rfs_theta_step`). At test time ``eps = 1``.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def preprocess_gradient(g: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """``g`` ``(...)`` -> ``(..., 2)``: ``(log|g| / p, sign g)`` where ``|g| >= e^-p``, else ``(-1, e^p g)``.

    Both parts are continuous at ``|g| = e^-p`` (``-1`` and ``+-1`` from either side) and the second keeps
    the sign, so gradients of very different magnitudes reach the LSTM on one scale.
    """
    small = g.abs() < math.exp(-p)
    log_part = torch.where(small, torch.full_like(g, -1.0), torch.log(g.abs().clamp_min(math.exp(-p))) / p)
    sign_part = torch.where(small, g * math.exp(p), torch.sign(g))
    return torch.stack([log_part, sign_part], dim=-1)


class CoordinateLSTM(nn.Module):
    """A ``layers`` x ``hidden`` LSTM applied to every coordinate independently; rates in ``(0, lambda_max)``.

    ``forward(inputs (P, 5), state) -> (lambda (P,), state)``; ``state`` is ``None`` (zeros) or the
    ``[(h, c)]`` per layer of the previous step, ``(P, hidden)`` each.
    """

    def __init__(self, lambda_max: float, hidden: int = 20, layers: int = 2, init_fraction: float = 0.1,
                 inputs: int = 5):
        super().__init__()
        if not lambda_max > 0 or not 0 < init_fraction < 1:
            raise ValueError(f"need lambda_max > 0 and 0 < init_fraction < 1, got {lambda_max}, {init_fraction}")
        self.lambda_max, self.hidden = float(lambda_max), int(hidden)
        self.cells = nn.ModuleList([nn.LSTMCell(inputs if i == 0 else hidden, hidden) for i in range(layers)])
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)  # starts as a constant rate; learning moves it from there
        nn.init.constant_(self.out.bias, math.log(init_fraction / (1 - init_fraction)))

    def forward(self, inputs: torch.Tensor, state=None):
        h = inputs
        new_state = []
        for i, cell in enumerate(self.cells):
            hc = cell(h, None if state is None else state[i])
            new_state.append(hc)
            h = hc[0]
        return self.lambda_max * torch.sigmoid(self.out(h)[:, 0]), new_state


def lstm_inputs(theta: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor, lam_prev: torch.Tensor,
                lambda_max: float, p: float = 10.0) -> torch.Tensor:
    """The LSTM's input ``(P, 5)`` for flat ``theta``, ``grad``, ``lam_prev`` ``(P,)`` and ``loss`` (a scalar, or
    ``(P,)``: each coordinate its model's loss) (all detached: the authors' first-order steps;
    ``specs/dimp_roam.md`` §2(d).3)."""
    g = preprocess_gradient(grad.detach(), p)
    return torch.cat([(lam_prev.detach() / lambda_max)[:, None], g, theta.detach()[:, None],
                      loss.detach().reshape(-1, 1).expand(theta.numel(), 1)], dim=1)


def rfs_theta_step(lam: torch.Tensor, eps: torch.Tensor, grad_theta: torch.Tensor) -> torch.Tensor:
    """The change of ``theta = eps theta'`` when ``theta'`` takes a step ``-lam dL/dtheta'``: ``-lam eps^2 dL/dtheta``."""
    return -lam * eps * eps * grad_theta


def draw_rfs(numel: int, kappa: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-coordinate scales ``exp(U(-kappa, kappa))`` ``(numel,)``; ``kappa = 0`` gives ones (no RFS)."""
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    return torch.exp((torch.rand(numel, generator=generator) * 2 - 1) * kappa)


__all__ = ["preprocess_gradient", "CoordinateLSTM", "lstm_inputs", "rfs_theta_step", "draw_rfs"]

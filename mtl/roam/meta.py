"""ROAM's meta-learner and its unroll over one batch of clips (``specs/dimp_roam.md`` §2(a) "Meta-training").

Per clip (features of :mod:`mtl.roam.data`: 9 copies of frame 0, then frames 1..30):

1. size the filter from frame 0's box; ``theta'_0 = theta_0 / eps`` (RFS, :func:`mtl.roam.optimizer.draw_rfs`);
2. **first step, second order**: ``l_0`` on the 9 copies, ``g_0 = dl_0/dtheta'`` with ``create_graph``,
   ``theta'_1 = theta'_0 - lambda_0 * g_0``; meta-loss ``L_1`` on frame ``1 + delta``;
3. **updates k = 1..T-1, first order**: re-size the filter from frame ``k tau``; ``l_k`` on frames
   ``(k-1) tau + 1 .. k tau``; ``g_k`` without ``create_graph``; ``lambda_k`` from the optimizer (its inputs
   detached, its LSTM state carried with gradient); ``theta'_{k+1} = theta'_k.detach() - lambda_k * g_k``;
   meta-loss ``L_{k+1}`` on frame ``k tau + 1 + delta``.

``theta_0`` and ``lambda_0`` learn only through ``L_1``; the optimizer through every later ``L_k``.
Optimizers (:attr:`ROAMConfig.optimizer`): ``"lstm"`` (ROAM), ``"const"`` (ConstLR: one learned rate per
coordinate, the same at every step), ``"sgd"`` (a fixed rate ``sgd_lr``, nothing learned for the updates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mtl.roam.loss import regression_loss, response_label, response_loss
from mtl.roam.model import ThetaLayout, anchor_boxes, filter_shape, regression, response
from mtl.roam.optimizer import CoordinateLSTM, draw_rfs, lstm_inputs


@dataclass(frozen=True)
class ROAMConfig:
    """ROAM's model, optimizer and meta-training (paper / code values in ``specs/dimp_roam.md`` §2(b))."""

    reduced: int = 0  # C_r; 0 (ours, chosen on val in notebook 06): no 1x1 conv, a one-layer filter; paper: 64
    regression: bool = False  # ROAM++: add the box-regression branch
    reg_reduced: int = 8  # the regression branch's own 1x1 conv (paper 64; ours 8: with none its 4 x 64 x 9 x 9 filter
    # made an unroll of 8 clips 4x slower here, 3.4 vs 0.8 s: the LSTM runs once per coordinate)
    k0: int = 9  # canonical filter size
    rho: float = 1.5
    tau: int = 5
    updates: int = 5  # T - 1 LSTM steps per clip (T = 6 meta-losses)
    optimizer: str = "lstm"  # "lstm" | "const" | "sgd"
    hidden: int = 20
    layers: int = 2
    # the rate range, lambda_0's start and SGD's rate: calibrate_lr's choice on val (notebook 06) via calibrated_config
    lambda_max: float = 3.2e-3
    init_fraction: float = 0.1  # the LSTM's first rates: init_fraction x lambda_max
    lambda0: float = 3.2e-4  # initial lambda_0 (all coordinates)
    sgd_lr: float = 3.2e-4  # the "sgd" optimizer's rate
    theta0_scale: float = 0.0  # the filters of theta_0 ~ N(0, scale^2 / fan_in) (the paper's 1e-5 is ~0: a one-layer filter's
    # first step from 0 is a template); 1x1 reductions start at N(0, 1 / fan_in) (ThetaLayout.initial)
    kappa: float = 1.6  # RFS range; 0 = without RFS
    kappa_reg: float = 1.3  # RFS range of the regression branch (ROAM++)
    reg_top: int = 8  # anchors per frame in the regression loss (code: 32 of a 71x71 map; see regression_loss)
    label_alpha: float = 20.0
    loss_margin: float = 0.1
    lr_theta0: float = 1e-3
    lr_lambda0: float = 1e-2
    lr_optimizer: float = 1e-2  # ours (code: 1e-3): chosen in the first val exploration, see notebook 06
    clip_theta0: float = 10.0
    clip_optimizer: float = 1.0
    epochs: int = 6
    clips_per_epoch: int = 600
    batch_size: int = 8
    num_clips: int = 600
    val_clips: int = 100
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in ("lstm", "const", "sgd"):
            raise ValueError(f"optimizer must be 'lstm', 'const' or 'sgd', got {self.optimizer!r}")
        if self.k0 % 2 != 1 or self.tau < 1 or self.updates < 1:
            raise ValueError("k0 must be odd and tau, updates >= 1")
        if min(self.reduced, self.reg_reduced, self.theta0_scale, self.kappa, self.kappa_reg) < 0:
            raise ValueError("reduced, reg_reduced, theta0_scale, kappa and kappa_reg must be >= 0")
        if self.reg_top < 1:
            raise ValueError(f"reg_top must be >= 1, got {self.reg_top}")
        if not (self.lambda_max > 0 and self.lambda0 > 0 and self.sgd_lr > 0):
            raise ValueError("lambda_max, lambda0 and sgd_lr must be positive")


class ROAMLearner(nn.Module):
    """``theta_0``, ``log lambda_0`` (flat, one per coordinate) and the update optimizer of a config."""

    def __init__(self, in_channels: int, config: ROAMConfig | None = None):
        super().__init__()
        cfg = self.config = config or ROAMConfig()
        self.in_channels = int(in_channels)
        self.layout = ThetaLayout.for_model(in_channels, cfg.reduced, cfg.k0, cfg.regression, cfg.reg_reduced)
        gen = torch.Generator().manual_seed(cfg.seed)
        self.theta0 = nn.Parameter(self.layout.flatten(self.layout.initial(gen, cfg.theta0_scale)))
        self.log_lambda0 = nn.Parameter(torch.full((self.layout.numel,), math.log(cfg.lambda0)))
        self.lstm = CoordinateLSTM(cfg.lambda_max, cfg.hidden, cfg.layers, cfg.init_fraction) \
            if cfg.optimizer == "lstm" else None
        self.log_const = nn.Parameter(torch.full((self.layout.numel,), math.log(cfg.init_fraction * cfg.lambda_max))) \
            if cfg.optimizer == "const" else None

    def meta_parameters(self) -> dict:
        """Parameter groups: ``theta0``, ``lambda0`` and ``optimizer`` (empty for SGD)."""
        opt = list(self.lstm.parameters()) if self.lstm is not None else \
            [self.log_const] if self.log_const is not None else []
        return {"theta0": [self.theta0], "lambda0": [self.log_lambda0], "optimizer": opt}

    # -- the pieces a tracker uses online --------------------------------------------------------------

    def loss(self, theta_p: torch.Tensor, eps: torch.Tensor, x: torch.Tensor, boxes: torch.Tensor, shape) -> torch.Tensor:
        """Loss of ``theta = eps * theta'`` on features ``x`` ``(n, C, H, W)`` with boxes ``(n, 4)`` cells: the response
        loss, plus (ROAM++) the regression loss with equal weight."""
        cfg = self.config
        theta = self.layout.unflatten(eps * theta_p)
        labels = response_label(boxes, x.shape[-1], cfg.label_alpha)
        loss = response_loss(response(theta, x, shape), labels, cfg.loss_margin)
        if self.layout.has_regression:
            anchors = anchor_boxes(x.shape[-1], shape, cfg.rho).to(x.device)
            loss = loss + regression_loss(regression(theta, x, shape), boxes, anchors, cfg.reg_top)
        return loss

    def draw_scales(self, generator: torch.Generator | None = None, rfs: bool = True) -> torch.Tensor:
        """RFS scales ``eps`` ``(P,)``: ``kappa`` for the response branch, ``kappa_reg`` for the regression branch."""
        cfg = self.config
        eps = draw_rfs(self.layout.numel, cfg.kappa if rfs else 0.0, generator)
        if self.layout.has_regression:
            reg = self.layout.mask("reg_")
            eps[reg] = draw_rfs(int(reg.sum()), cfg.kappa_reg if rfs else 0.0, generator)
        return eps

    def rates(self, theta_p, grad, loss, lam_prev, state):
        """``(lambda_k, state)`` of the update optimizer for flat ``theta_p``, ``grad``, ``lam_prev`` of one or more
        models stacked (``(m P,)``), ``loss`` a scalar or one per coordinate (``state``: the LSTM's, else ``None``)."""
        cfg = self.config
        if cfg.optimizer == "sgd":
            return torch.full_like(theta_p, cfg.sgd_lr), None
        if cfg.optimizer == "const":
            return torch.exp(self.log_const).repeat(theta_p.numel() // self.layout.numel), None
        return self.lstm(lstm_inputs(theta_p, grad, loss, lam_prev, cfg.lambda_max), state)

    def shape_for(self, target_cells) -> tuple[int, int]:
        """The warped filter's ``(rows, cols)`` for a target of ``(w, h)`` cells."""
        return filter_shape((float(target_cells[0]), float(target_cells[1])), self.config.rho)

    # -- meta-training ---------------------------------------------------------------------------------

    def unroll(self, features: torch.Tensor, boxes: torch.Tensor, generator: torch.Generator | None = None,
               rfs: bool = True) -> dict:
        """Meta-losses of a batch of clips: features ``(B, 9 + 30, C, H, W)``, boxes ``(B, 39, 4)``.

        Returns ``{"meta": (T,) mean meta-loss per step (with gradient), "update": (T,) update losses (no gradient),
        "rates": (T - 1,) mean lambda_k, "rate_values": (T - 1, B P) every lambda_k, "lambda0": mean lambda_0}``.
        """
        cfg = self.config
        b, n = features.shape[:2]
        copies = n - (cfg.tau * cfg.updates + cfg.tau)  # 9 with a 31-frame clip
        if copies < 1:
            raise ValueError(f"a clip of {n} crops is too short for tau={cfg.tau}, updates={cfg.updates}")
        x = features.float()
        eps = self.draw_scales(generator, rfs).to(x.device)
        delta = int(torch.randint(cfg.tau, (1,), generator=generator))
        lam0 = torch.exp(self.log_lambda0)
        frame = lambda t: copies + t - 1  # noqa: E731  clip frame t >= 1 -> its index in the bank
        meta = [[] for _ in range(cfg.updates + 1)]
        update = [[] for _ in range(cfg.updates + 1)]
        theta_ps, shapes = [], []
        for i in range(b):
            shape = self.shape_for(boxes[i, 0, 2:])
            tp0 = self.theta0 / eps
            l0 = self.loss(tp0, eps, x[i, :copies], boxes[i, :copies], shape)
            (g0,) = torch.autograd.grad(l0, tp0, create_graph=self.training)
            tp = tp0 - lam0 * g0
            t = 1 + delta
            meta[0].append(self.loss(tp, eps, x[i, frame(t):frame(t) + 1], boxes[i, frame(t):frame(t) + 1], shape))
            update[0].append(l0.detach())
            theta_ps.append(tp)
            shapes.append(shape)
        lam_prev = lam0.detach().repeat(b)
        state = None
        rates = []
        for k in range(1, cfg.updates + 1):
            grads, flats = [], []
            for i in range(b):
                shapes[i] = self.shape_for(boxes[i, frame(k * cfg.tau), 2:])
                tp = theta_ps[i].detach().requires_grad_(True)
                sl = slice(frame((k - 1) * cfg.tau + 1), frame(k * cfg.tau) + 1)
                with torch.enable_grad():
                    lk = self.loss(tp, eps, x[i, sl], boxes[i, sl], shapes[i])
                    (gk,) = torch.autograd.grad(lk, tp)
                grads.append(gk)
                flats.append(tp.detach())
                update[k].append(lk.detach())
            # one optimizer batch over every clip's coordinates, each clip's own loss as its coordinates' input
            losses = torch.stack(update[k]).repeat_interleave(self.layout.numel)
            lam, state = self.rates(torch.cat(flats), torch.cat(grads), losses, lam_prev, state)
            rates.append(lam.detach())
            lam_prev = lam
            t = k * cfg.tau + 1 + delta
            for i, lam_i in enumerate(lam.split(self.layout.numel)):
                theta_ps[i] = flats[i] - lam_i * grads[i]
                meta[k].append(self.loss(theta_ps[i], eps, x[i, frame(t):frame(t) + 1],
                                         boxes[i, frame(t):frame(t) + 1], shapes[i]))
        return {"meta": torch.stack([torch.stack(m).mean() for m in meta]),
                "update": torch.stack([torch.stack(u).mean() for u in update]),
                "rates": torch.stack([r.mean() for r in rates]), "rate_values": torch.stack(rates),
                "lambda0": lam0.detach().mean()}


__all__ = ["ROAMConfig", "ROAMLearner"]

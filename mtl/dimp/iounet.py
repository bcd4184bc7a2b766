"""A small IoU-Net for DiMP's box estimation (ATOM / DiMP's "target estimation" branch, one feature level).

The network predicts the IoU of a candidate box with the target from two inputs: the reference
frame (its features and box give a *modulation vector*, computed once per sequence) and the current
frame's features pooled in the candidate box (:func:`mtl.dimp.initializer.roi_pool`, differentiable in
the box). Tracking refines boxes by gradient ascent on the predicted IoU (:func:`refine_boxes`).

Sizes (``specs/dimp_roam.md`` §1(a).8, about 0.1 M parameters at ``hidden = 64``; ATOM's has two
feature levels and 256-wide layers):

* reference branch: conv 3x3 -> ROI pool 3x3 of the reference box -> conv 3x3 (valid) -> ``(hidden,)``;
* test branch: two conv 3x3, times the modulation (per channel) -> ROI pool 3x3 of each candidate ->
  FC ``9 hidden -> hidden`` -> FC -> IoU.

Training target ``2 IoU - 1`` (in ``[-1, 1]``), MSE, on candidates drawn around the true box with a
Gaussian mixture of widths ``sigmas x sqrt(w h)`` and IoU >= ``min_iou``.
Boxes are ``(x, y, w, h)`` in cell coordinates throughout.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtl.dimp.initializer import roi_pool


def _conv_bn_relu(cin: int, cout: int, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@dataclass(frozen=True)
class IoUNetConfig:
    """The IoU predictor and its training on the bank (shared by every classifier variant)."""

    hidden: int = 64
    pool: int = 3
    proposals: int = 8
    sigmas: tuple = (0.01, 0.05, 0.1, 0.2, 0.3)
    min_iou: float = 0.1
    epochs: int = 10
    sets_per_epoch: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    lr_decay: float = 0.2
    seed: int = 0


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``(..., 4)`` ``(x, y, w, h)`` (continuous extents ``[x, x + w]``), broadcast."""
    x0 = torch.maximum(a[..., 0], b[..., 0])
    y0 = torch.maximum(a[..., 1], b[..., 1])
    x1 = torch.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y1 = torch.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = (x1 - x0).clamp_min(0) * (y1 - y0).clamp_min(0)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / union.clamp_min(1e-12)


def sample_proposals(boxes: torch.Tensor, num: int, sigmas, generator: torch.Generator, min_iou: float = 0.1,
                     tries: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` candidates around each box ``(N, 4)``: each coordinate of ``(cx, cy, w, h)`` moved by
    ``N(0, sigma^2) sqrt(w h)`` with ``sigma`` drawn from ``sigmas``; candidates with IoU < ``min_iou``
    (or a non-positive size) are drawn again (up to ``tries`` times, then replaced by the box itself).

    Returns ``(proposals (N, num, 4), iou (N, num))``.
    """
    n = boxes.shape[0]
    base = boxes[:, None, :].expand(n, num, 4)
    centre = base[..., :2] + base[..., 2:] / 2
    scale = torch.sqrt(base[..., 2] * base[..., 3])[..., None]
    sig = torch.tensor(sigmas, dtype=boxes.dtype)
    out = base.clone()
    todo = torch.ones(n, num, dtype=torch.bool)
    for _ in range(tries):
        s = sig[torch.randint(len(sigmas), (n, num), generator=generator)][..., None]
        noise = torch.randn(n, num, 4, generator=generator, dtype=boxes.dtype) * s * scale
        c = centre + noise[..., :2]
        wh = base[..., 2:] + noise[..., 2:]
        cand = torch.cat([c - wh / 2, wh], dim=-1)
        ok = (wh > 0).all(-1) & (box_iou(cand, base) >= min_iou)
        take = todo & ok
        out[take] = cand[take]
        todo &= ~ok
        if not todo.any():
            break
    return out, box_iou(out, base)


class IoUNet(nn.Module):
    """Predict IoU(candidate, target) from backbone features (``in_channels``) and a reference box."""

    def __init__(self, in_channels: int, config: IoUNetConfig | None = None):
        super().__init__()
        cfg = self.config = config or IoUNetConfig()
        h, p = cfg.hidden, cfg.pool
        self.ref_conv = _conv_bn_relu(in_channels, h)
        self.ref_fc = nn.Sequential(nn.Conv2d(h, h, p), nn.ReLU(inplace=True))  # valid: (p x p) -> 1 x 1
        self.test_conv = nn.Sequential(_conv_bn_relu(in_channels, h), _conv_bn_relu(h, h))
        self.fc = nn.Sequential(nn.Linear(h * p * p, h), nn.ReLU(inplace=True), nn.Linear(h, 1))

    def modulation(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Reference features ``(N, C, H, W)`` and boxes ``(N, 4)`` -> modulation vectors ``(N, hidden)``."""
        pooled = roi_pool(self.ref_conv(features), boxes, self.config.pool)
        return self.ref_fc(pooled).flatten(1)

    def test_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, hidden, H, W)`` (computed once per frame, reused for every candidate)."""
        return self.test_conv(features)

    def predict_iou(self, modulation: torch.Tensor, test_features: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """modulation ``(N, hidden)``, test features ``(N, hidden, H, W)``, proposals ``(N, P, 4)`` -> IoU ``(N, P)``."""
        n, num = proposals.shape[:2]
        x = test_features * modulation[:, :, None, None]
        x = x[:, None].expand(n, num, *x.shape[1:]).flatten(0, 1)
        pooled = roi_pool(x, proposals.reshape(n * num, 4), self.config.pool)
        return self.fc(pooled.flatten(1)).view(n, num)

    def forward(self, ref_features, ref_boxes, test_features, proposals) -> torch.Tensor:
        return self.predict_iou(self.modulation(ref_features, ref_boxes), self.test_features(test_features), proposals)


class IoUStep:
    """``step_fn`` for :func:`mtl.train.fit` on bank batches: reference = train frame 0, candidates on the test frames.

    Loss: MSE between the prediction and ``2 IoU - 1``. Training candidates come from a generator seeded
    once, so a run repeats; in eval mode each batch's candidates are seeded by the batch's boxes, so
    the validation loss of every epoch is measured on the same candidates.
    """

    def __init__(self, num_train: int, config: IoUNetConfig, seed: int):
        self.num_train, self.config = int(num_train), config
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model: IoUNet, batch) -> dict:
        features, boxes = batch
        b, n = features.shape[:2]
        m = n - self.num_train
        ref_f, ref_b = features[:, 0], boxes[:, 0]
        test_f = features[:, self.num_train:].flatten(0, 1)
        test_b = boxes[:, self.num_train:].flatten(0, 1)
        gen = self.generator if model.training else torch.Generator().manual_seed(
            int(boxes.double().abs().sum().item() * 1000) % 2**31)
        proposals, iou = sample_proposals(test_b.cpu(), self.config.proposals, self.config.sigmas, gen,
                                          self.config.min_iou)
        proposals, iou = proposals.to(features.device), iou.to(features.device)
        mod = model.modulation(ref_f, ref_b).repeat_interleave(m, dim=0)
        pred = model.predict_iou(mod, model.test_features(test_f), proposals)
        loss = (pred - (2 * iou - 1)).pow(2).mean()
        return {"loss": loss, "mean_abs_error": float((pred.detach() - (2 * iou - 1)).abs().mean() / 2)}


def refine_boxes(model: IoUNet, modulation: torch.Tensor, test_features: torch.Tensor, boxes: torch.Tensor,
                 steps: int = 5, step_length: float = 1.0, max_aspect: float = 6.0, top: int = 3) -> tuple:
    """Gradient ascent on the predicted IoU from candidate boxes ``(P, 4)`` (cells) on one frame.

    Each step ``b += step_length * dIoU/db * (w, h, w, h)`` (the gradient in units of the box's size,
    as ATOM). Boxes with an aspect ratio beyond ``max_aspect`` are dropped, and the ``top`` best by
    predicted IoU are averaged. modulation ``(1, hidden)``, test features ``(1, hidden, H, W)``.
    Returns ``(box (4,), predicted IoU of the kept boxes (k,))``.
    """
    b = boxes.detach().clone()
    for _ in range(steps):
        b.requires_grad_(True)
        with torch.enable_grad():
            iou = model.predict_iou(modulation, test_features, b[None])[0]
            (grad,) = torch.autograd.grad(iou.sum(), b)
        b = (b + step_length * grad * b[:, 2:].repeat(1, 2)).detach()
        b[:, 2:] = b[:, 2:].clamp_min(1e-2)
    with torch.no_grad():
        iou = model.predict_iou(modulation, test_features, b[None])[0]
    aspect = torch.maximum(b[:, 2] / b[:, 3], b[:, 3] / b[:, 2])
    keep = aspect < max_aspect
    if not keep.any():
        keep = torch.ones_like(keep)
    b, iou = b[keep], iou[keep]
    best = torch.argsort(iou, descending=True)[:top]
    return b[best].mean(0), iou[best]


__all__ = ["IoUNetConfig", "IoUNet", "IoUStep", "box_iou", "sample_proposals", "refine_boxes"]

"""DiMP's classification features and model initializer (DiMP Sec. 3.4, Fig. 2).

* :class:`ClassificationFeatures` ("Cls"): a residual block and a 3x3 conv on the backbone's features,
  then :class:`InstanceL2Norm`, which fixes each image's feature energy so that ``lambda`` and the
  step length keep their meaning whatever the backbone's scale.
* :func:`roi_pool`: ROI pooling written with ``F.grid_sample`` (PrRoIPool, the reference's, has no CPU
  build): the mean of ``samples x samples`` bilinear reads in each of ``k x k`` bins. Bilinear
  interpolation is exact on an affine map, so there both the value and its gradient with respect
  to the box are exact; the box gradient is what IoU-Net's refinement ascends.
* :class:`FilterInitializer` ("Init"): conv 3x3, ROI-pool each train box to the filter size, average over
  the train images: ``f0`` ``(B, C, k, k)``.

Boxes on feature maps are ``(x, y, w, h)`` in *cell coordinates*: cell ``(i, j)`` is centred at
``x = j, y = i``, so a box covers ``[x, x + w] x [y, y + h]`` of that continuous plane.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class InstanceL2Norm(nn.Module):
    """``x * scale * sqrt(C H W / ||x||^2)`` per image: every element's RMS becomes ``scale``.

    DiMP uses ``scale = sqrt(1 / (C k^2))`` (``specs/dimp_roam.md`` §1(d).3), so a filter of unit
    entries gives scores of order 1.
    """

    def __init__(self, scale: float, eps: float = 1e-5):
        super().__init__()
        self.scale, self.eps = float(scale), float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = x.flatten(1).pow(2).sum(dim=1).view(-1, *([1] * (x.dim() - 1)))
        return x * (self.scale * torch.sqrt(x[0].numel() / (energy + self.eps)))


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-BN-ReLU-conv-BN plus the input, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + x)


class ClassificationFeatures(nn.Module):
    """Backbone features ``(N, C_in, H, W)`` -> classification features ``(N, C_f, H, W)``, L2-normalised.

    ``learned=False`` (Table 2's "SD" baseline, no "Cls" block) keeps only the normalisation; the
    features then keep the backbone's channels (``out_channels`` must equal ``in_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int, filter_size: int, learned: bool = True):
        super().__init__()
        if not learned and in_channels != out_channels:
            raise ValueError(f"without the Cls block the features keep the backbone's {in_channels} channels, "
                             f"got out_channels={out_channels}")
        self.learned = learned
        if learned:
            self.block = BasicBlock(in_channels)
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
            nn.init.normal_(self.conv.weight, 0, math.sqrt(2.0 / (9 * out_channels)))
        self.norm = InstanceL2Norm(math.sqrt(1.0 / (out_channels * filter_size ** 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.learned:
            x = self.conv(self.block(x))
        return self.norm(x)


def roi_pool(features: torch.Tensor, boxes: torch.Tensor, out_size: int, samples: int = 2) -> torch.Tensor:
    """Average of ``samples^2`` bilinear reads in each of ``out_size^2`` bins of each box.

    features ``(N, C, H, W)``, boxes ``(N, 4)`` ``(x, y, w, h)`` in cell coordinates -> ``(N, C, out, out)``.
    Differentiable in the features and in the boxes. Reads outside the map count as zero.
    """
    n, c, h, w = features.shape
    if boxes.shape != (n, 4):
        raise ValueError(f"boxes must be (N={n}, 4), got {tuple(boxes.shape)}")
    k, s = int(out_size), int(samples)
    # sample positions as fractions of the box: bin j, sub-sample q -> (j + (q + 0.5) / s) / k
    frac = ((torch.arange(k, dtype=features.dtype, device=features.device)[:, None]
             + (torch.arange(s, dtype=features.dtype, device=features.device)[None, :] + 0.5) / s) / k).reshape(-1)
    xs = boxes[:, 0:1] + boxes[:, 2:3] * frac  # (N, k*s)
    ys = boxes[:, 1:2] + boxes[:, 3:4] * frac
    gx = 2 * xs / max(w - 1, 1) - 1  # align_corners=True: -1 and 1 are the first and last cell centres
    gy = 2 * ys / max(h - 1, 1) - 1
    grid = torch.stack([gx[:, None, :].expand(n, k * s, k * s), gy[:, :, None].expand(n, k * s, k * s)], dim=-1)
    read = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return read.reshape(n, c, k, s, k, s).mean(dim=(3, 5))


class FilterInitializer(nn.Module):
    """``f0`` = mean over the train images of the ROI-pooled (conv 3x3) features in the target box."""

    def __init__(self, channels: int, filter_size: int, samples: int = 2):
        super().__init__()
        self.filter_size, self.samples = int(filter_size), int(samples)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """features ``(B, n, C, H, W)``, boxes ``(B, n, 4)`` (cells) -> filter ``(B, C, k, k)``."""
        b, n = features.shape[:2]
        x = self.conv(features.flatten(0, 1))
        pooled = roi_pool(x, boxes.reshape(b * n, 4), self.filter_size, self.samples)
        return pooled.view(b, n, *pooled.shape[1:]).mean(dim=1)

"""Feature extractors shared by every tracker: the AlexNet-style SiamFC backbone.

SiamFC's backbone (Bertinetto et al. 2016; huanglianghua/siamfc-pytorch ``AlexNetV1``) is AlexNet
without padding and without fully-connected layers: five convolutions with 96-256-384-384-256
channels, batch norm, two max-pools, total stride 8, and *no* BN/ReLU after conv5 so that the
features entering the cross-correlation can be negative. Without padding the network is fully
convolutional in the strict sense: translating the input by 8 px translates the output by one cell,
which is what makes the sliding-window score map of :mod:`mtl.heads` exact.

Output sizes for the standard crops: exemplar 127 -> 6x6, search 255 -> 22x22, training search
239 -> 20x20 (so the score maps are 17x17 and 15x15).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

#: The reference channel widths of conv1..conv5 (AlexNet as in SiamFC).
ALEXNET_CHANNELS = (96, 256, 384, 384, 256)
#: Total stride of the backbone: a shift of 8 input pixels moves the features by one cell.
ALEXNET_STRIDE = 8
#: Convolution initialisations :class:`AlexNetV1` knows.
INITS = ("xavier", "kaiming")


def scaled_channels(width: float, groups: int = 2) -> tuple[int, ...]:
    """The channel counts ``ALEXNET_CHANNELS * width``, rounded to a multiple of ``groups`` (>= groups)."""
    if not width > 0:
        raise ValueError(f"width multiplier must be positive, got {width!r}")
    return tuple(max(groups, int(round(c * width / groups)) * groups) for c in ALEXNET_CHANNELS)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, pool: bool = False) -> nn.Sequential:
    # eps/momentum follow siamfc-pytorch; the small momentum keeps the running statistics stable
    # when batches are as small as 8 pairs.
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, groups=groups),
        nn.BatchNorm2d(cout, eps=1e-6, momentum=0.05),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


class AlexNetV1(nn.Sequential):
    """AlexNet-style SiamFC backbone with a width multiplier.

    ``forward(x)``: ``x`` float tensor ``(B, 3, H, W)`` (RGB, 0..255 as in siamfc-pytorch, no
    normalisation) -> features ``(B, C, (H - 87) // 8 + 1 ... )``; exactly 127 -> 6x6 and 255 -> 22x22.
    ``C = out_channels`` (256 * width).

    It is an ``nn.Sequential`` of five named blocks ``conv1 .. conv5``, so later notebooks can take
    intermediate features by slicing: ``backbone[:2](x)`` is the pool2 output GradNet updates.
    """

    def __init__(self, width: float = 1.0, init: str = "xavier"):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        c1, c2, c3, c4, c5 = scaled_channels(width)
        super().__init__()
        self.add_module("conv1", _conv_bn_relu(3, c1, 11, stride=2, pool=True))
        self.add_module("conv2", _conv_bn_relu(c1, c2, 5, groups=2, pool=True))
        self.add_module("conv3", _conv_bn_relu(c2, c3, 3))
        self.add_module("conv4", _conv_bn_relu(c3, c4, 3, groups=2))
        # No BN/ReLU after conv5: the template and search features may be negative, so the
        # correlation can express "looks unlike the target" as well as "looks like it".
        self.add_module("conv5", nn.Conv2d(c4, c5, 3, groups=2))
        self.width = float(width)
        self.channels = (c1, c2, c3, c4, c5)
        self.out_channels = c5
        self.total_stride = ALEXNET_STRIDE
        self.init = init
        self.reset_parameters()

    def __getitem__(self, index):
        """``backbone[i]``: block i; ``backbone[a:b]``: those blocks as a plain ``nn.Sequential`` sharing the weights."""
        if isinstance(index, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)

    def reset_parameters(self) -> None:
        """Zero biases, unit BN scales, and convolutions drawn by ``self.init``.

        ``"xavier"``: Xavier-uniform with gain 1, siamfc-pytorch's ``init_weights``; ``"kaiming"``:
        Kaiming-normal (fan-out, ReLU gain), this project's first recipe, kept so notebook 01 can
        compare the two.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if self.init == "xavier":
                    nn.init.xavier_uniform_(m.weight, gain=1.0)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def output_size(input_size: int) -> int:
        """Feature-map side for a square input of side ``input_size`` (e.g. 127 -> 6, 255 -> 22)."""
        s = (input_size - 11) // 2 + 1  # conv1
        s = (s - 3) // 2 + 1  # pool1
        s = s - 4  # conv2
        s = (s - 3) // 2 + 1  # pool2
        s = s - 2 - 2 - 2  # conv3..conv5
        if s < 1:
            raise ValueError(f"input of side {input_size} is too small for the AlexNet backbone")
        return s

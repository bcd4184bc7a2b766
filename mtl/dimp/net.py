"""The DiMP target-model predictor: classification features, initializer, loss maps and optimizer in one module.

``DiMPNet.predict(train_features, train_boxes)`` returns the filter iterates ``[f0 .. fN]`` for each
sequence of a batch (DiMP Fig. 2); ``DiMPNet.scores(features, f)`` applies one. The parts are
switched by :class:`DiMPConfig` to give the rows of DiMP's Tables 1 and 2:

| row | ``init`` | ``cls_block`` | ``loss`` | ``optimizer`` |
| --- | --- | --- | --- | --- |
| Table 2 "SD" (baseline) | False (f0 = 0) | False | ``"fixed"`` | ``"sd"`` |
| + Init | True | False | fixed | sd |
| + Cls | True | True | fixed | sd |
| + Loss (= DiMP, Table 1 "SD") | True | True | ``"learned"`` | sd |
| Table 1 "Init" | True | True | learned | ``"none"`` |
| Table 1 "GD" | True | True | learned | ``"gd"`` |

Shapes: backbone features ``(B, n, C, H, W)``; boxes ``(B, n, 4)`` in cell coordinates; filters
``(B, C_f, k, k)``; scores ``(B, n, H, W)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtl.dimp.filter import apply_filter
from mtl.dimp.initializer import ClassificationFeatures, FilterInitializer
from mtl.dimp.loss import FixedHingeMaps, LearnedLossMaps, distance_map, gaussian_label, hinge_mse, nominal_label_sigma
from mtl.dimp.optimizer import GradientDescent, SteepestDescent


@dataclass(frozen=True)
class DiMPConfig:
    """DiMP's model and its offline training on the feature bank (``specs/dimp_roam.md`` §1(b)).

    Model: ``channels`` classification channels, ``filter_size`` k (odd; 5 at stride 8 covers about the
    target, as DiMP-18's 4 at stride 16), ``num_iter`` optimizer iterations in training, ``lam_init``
    and ``step_init`` the initial ``lambda`` and ``exp(beta)``; ``gd_step_init`` GD's initial step per
    coefficient (Table 1). Loss maps: ``num_bins`` x ``bin_width`` cells, label width ``label_sigma``
    cells (``None``: a quarter of the nominal target size), hinge threshold ``hinge_threshold``.
    Training (Adam, lr x ``lr_decay`` at 60 % and 85 % of the epochs, a change from DiMP's x0.2 every
    15 of 50 epochs to fit our short schedules): ``epochs`` x ``sets_per_epoch`` sets from the bank
    of ``num_sets``, batch ``batch_size``; ``val_sets`` from the val split's bank.
    """

    channels: int = 64
    filter_size: int = 5
    num_iter: int = 5
    init: bool = True
    cls_block: bool = True
    loss: str = "learned"  # "learned" | "fixed"
    optimizer: str = "sd"  # "sd" | "gd" | "none"
    lam_init: float = 0.01
    step_init: float = 0.9
    gd_step_init: float = 1.0
    num_bins: int = 100
    bin_width: float = 0.1
    label_sigma: float | None = None
    hinge_threshold: float = 0.05
    num_sets: int = 3000
    val_sets: int = 300
    epochs: int = 10
    sets_per_epoch: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    lr_optimizer: float = 5e-3
    lr_decay: float = 0.2
    weight_decay: float = 0.0
    grad_clip: float | None = 10.0
    seed: int = 0

    def __post_init__(self):
        if self.filter_size % 2 != 1:
            raise ValueError(f"filter_size must be odd, got {self.filter_size}")
        if self.loss not in ("learned", "fixed"):
            raise ValueError(f"loss must be 'learned' or 'fixed', got {self.loss!r}")
        if self.optimizer not in ("sd", "gd", "none"):
            raise ValueError(f"optimizer must be 'sd', 'gd' or 'none', got {self.optimizer!r}")
        if self.batch_size < 1 or self.epochs < 0 or self.num_iter < 0:
            raise ValueError("batch_size >= 1, epochs >= 0 and num_iter >= 0 are required")

    @property
    def sigma(self) -> float:
        return nominal_label_sigma() if self.label_sigma is None else float(self.label_sigma)


#: Quick mode: a tiny bank and schedule (smoke runs, CI).
DIMP_QUICK_OVERRIDES = {"num_sets": 48, "val_sets": 16, "epochs": 1, "sets_per_epoch": 48}

#: The named variants of Tables 1 and 2 (the full DiMP is ``"dimp"``).
VARIANTS = {
    "dimp": {},
    "sd_baseline": {"init": False, "cls_block": False, "loss": "fixed"},
    "sd_init": {"cls_block": False, "loss": "fixed"},
    "sd_init_cls": {"loss": "fixed"},
    "init_only": {"optimizer": "none"},
    "gd": {"optimizer": "gd"},
}


def config_variant(name: str, config: DiMPConfig | None = None) -> DiMPConfig:
    """``config`` (default :class:`DiMPConfig`) with the switches of variant ``name`` (:data:`VARIANTS`)."""
    if name not in VARIANTS:
        raise KeyError(f"unknown DiMP variant {name!r}; known: {sorted(VARIANTS)}")
    return dataclasses.replace(config or DiMPConfig(), **VARIANTS[name])


@dataclass(frozen=True)
class FineTune:
    """Table 2's "+FT": the last ``blocks`` blocks of the SiamFC backbone trained with the target-model predictor.

    Changes from DiMP (named, as the brief asks):

    * DiMP trains the entire network, backbone included (paper Sec. 4.1; its code's backbone lr is 2e-4,
      ``specs/dimp_roam.md``); we train a copy of conv4 and conv5 only, on a bank of the frozen conv3
      activations (fixed jittered crops stored in fp16, as the conv5 bank; the earlier blocks would need
      every crop rendered and pushed through them at each step);
    * conv4's batch-norm statistics stay frozen (the bank's conv3 activations went through frozen
      statistics, and the tracker runs in eval mode); gradient clipping takes one norm over the tail and
      the predictor together;
    * the same 4-epoch schedule as the other Tables 1-2 rows, from the "+Loss" model's start, and +FT is
      the *last* step of Table 2 (the paper's second), so every other step stays on the shared frozen bank;
    * the IoU-Net stays on the frozen backbone, so a +FT tracker runs conv4-5 twice per crop;
    * learning rate ``lr``: 1e-5, chosen on val by :func:`mtl.dimp.train.choose_finetune` over {1e-4 (the
      spec's), 1e-5}: last-iterate val loss .0128 at 1e-4 (its training loss rose from .0145 to .0169 in
      the second epoch) vs .0096 at 1e-5 (notebook 05).
    """

    blocks: int = 2
    lr: float = 1e-5

    def __post_init__(self):
        if not 1 <= self.blocks <= 5:
            raise ValueError(f"blocks must be in 1..5, got {self.blocks}")


class DiMPNet(nn.Module):
    """The target-model predictor of a config, on backbone features with ``in_channels`` channels.

    ``tail``: backbone blocks trained with the predictor (Table 2's "+FT", :class:`FineTune`); the net then
    takes the activations that enter them, ``(B, n, C_in_tail, H', W')``, and runs ``tail`` first. Its
    batch-norm layers stay in eval mode (frozen statistics) whatever ``train()`` is told.
    """

    def __init__(self, in_channels: int, config: DiMPConfig | None = None, tail: nn.Module | None = None):
        super().__init__()
        self.tail = tail
        cfg = self.config = config or DiMPConfig()
        channels = cfg.channels if cfg.cls_block else in_channels
        self.channels = channels
        self.features = ClassificationFeatures(in_channels, channels, cfg.filter_size, learned=cfg.cls_block)
        self.initializer = FilterInitializer(channels, cfg.filter_size) if cfg.init else None
        if cfg.loss == "learned":
            self.loss_maps = LearnedLossMaps(cfg.sigma, cfg.num_bins, cfg.bin_width)
        else:
            self.loss_maps = FixedHingeMaps(cfg.sigma, cfg.hinge_threshold)
        if cfg.optimizer == "gd":
            self.optimizer = GradientDescent(channels, cfg.filter_size, cfg.num_iter, cfg.lam_init, cfg.gd_step_init)
        else:
            self.optimizer = SteepestDescent(cfg.num_iter if cfg.optimizer == "sd" else 0, cfg.lam_init, cfg.step_init)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.tail is not None:
            for m in self.tail.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def classification_features(self, backbone_features: torch.Tensor) -> torch.Tensor:
        """``(B, n, C, H, W)`` backbone features -> ``(B, n, C_f, H, W)``; with a ``tail``, its input instead
        (conv3 activations: 96 channels, 18 x 18 for the 191-px crops)."""
        b, n = backbone_features.shape[:2]
        x = backbone_features.flatten(0, 1).float()
        if self.tail is not None:
            x = self.tail(x)
        z = self.features(x)
        return z.view(b, n, *z.shape[1:])

    def initial_filter(self, train_z: torch.Tensor, train_boxes: torch.Tensor) -> torch.Tensor:
        """``f0`` ``(B, C_f, k, k)``: the initializer's, or zeros without one (Table 2's baseline)."""
        if self.initializer is not None:
            return self.initializer(train_z, train_boxes)
        k = self.config.filter_size
        return train_z.new_zeros(train_z.shape[0], train_z.shape[2], k, k)

    @staticmethod
    def distances(boxes: torch.Tensor, size: int) -> torch.Tensor:
        """Distance (cells) of every cell of a ``size x size`` map to the centre of ``boxes`` ``(B, n, 4)`` -> ``(B, n, size, size)``."""
        return distance_map(boxes[..., :2] + boxes[..., 2:] / 2, size)

    def loss_terms(self, boxes: torch.Tensor, size: int):
        """``(y, m, v)`` ``(B, n, H, W)`` for targets at ``boxes`` ``(B, n, 4)`` (cells)."""
        return self.loss_maps(self.distances(boxes, size))

    def predict(self, train_z: torch.Tensor, train_boxes: torch.Tensor, sample_weight: torch.Tensor | None = None,
                num_iter: int | None = None, filt: torch.Tensor | None = None) -> tuple[list, list]:
        """Filter iterates ``[f0 .. fN]`` and the train losses from classification features ``train_z``.

        ``filt``: start from this filter instead of the initializer's (online updates).
        """
        f0 = self.initial_filter(train_z, train_boxes) if filt is None else filt
        y, m, v = self.loss_terms(train_boxes, train_z.shape[-1])
        return self.optimizer(f0, train_z, y, m, v, sample_weight, num_iter=num_iter)

    @staticmethod
    def scores(z: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
        return apply_filter(z, filt)


class DiMPStep:
    """``step_fn`` for :func:`mtl.train.fit` on bank batches ``(features (B, n+m, C, H, W), boxes (B, n+m, 4))``
    (features: what the model's :meth:`DiMPNet.classification_features` takes, conv3 activations for "+FT").

    Loss: the hinge MSE of the test frames' scores against a Gaussian label, averaged over every
    iterate ``f0 .. fN`` (DiMP eq. 9 up to its constant factor, which Adam does not see). Logs the
    first and last iterate's test loss and the learned ``lambda`` and step factor.
    """

    def __init__(self, num_train: int, config: DiMPConfig):
        self.num_train, self.config = int(num_train), config

    def __call__(self, model: DiMPNet, batch) -> dict:
        features, boxes = batch
        z = model.classification_features(features)
        n = self.num_train
        filters, _ = model.predict(z[:, :n], boxes[:, :n])
        test_z = z[:, n:]
        label = gaussian_label(model.distances(boxes[:, n:], z.shape[-1]), self.config.sigma)
        losses = [hinge_mse(model.scores(test_z, f), label, self.config.hinge_threshold) for f in filters]
        return {"loss": torch.stack(losses).mean(), "test_first": float(losses[0].detach()), "test_last": float(losses[-1].detach()),
                "lam": float(model.optimizer.lam.detach()), "step": float(model.optimizer.log_step.detach().exp())}


class BankBatches:
    """Batches of ``(features float32, boxes)`` from a bank, ``sets_per_epoch`` sets an epoch (reshuffled each
    epoch by ``seed``; ``shuffle=False``: the first sets in order, for validation)."""

    def __init__(self, bank: dict, batch_size: int, sets_per_epoch: int | None = None, seed: int = 0,
                 shuffle: bool = True):
        self.features, self.boxes = bank["features"], bank["boxes"]
        self.batch_size, self.shuffle = int(batch_size), shuffle
        self.per_epoch = min(int(sets_per_epoch or len(self.features)), len(self.features)) if not shuffle \
            else int(sets_per_epoch or len(self.features))
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-self.per_epoch // self.batch_size)

    def __iter__(self):
        n = len(self.features)
        order = self.rng.permutation(max(n, self.per_epoch))[:self.per_epoch] % n if self.shuffle \
            else np.arange(self.per_epoch)
        for i in range(0, len(order), self.batch_size):
            idx = torch.from_numpy(np.sort(order[i:i + self.batch_size]))
            yield self.features[idx].float(), self.boxes[idx]

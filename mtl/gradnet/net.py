"""GradNet's network: a template branch whose shallow features are corrected by the gradient of its own loss.

Li et al., "GradNet: Gradient-Guided Network for Visual Object Tracking", ICCV 2019 (paper Eqs. 3-8)::

    f2 = conv1-2(Z)                      shallow template features (pool2)      (B, 64, 12, 12)
    β  = U1(f2)                          U1 = conv3-5, the upper template layers (B, 64, 6, 6)
    S  = s · β ⋆ φ(X)                    score map on the search features φ(X)   (.., 15, 15)
    g  = ∂ l(S, Y) / ∂ f2                kept in the graph (create_graph=True)   (B, 64, 12, 12)
    h2 = f2 + U2(c · g)                  U2 = tanh(BN(conv3x3(·)))
    β* = U1(h2)                          the *same* U1
    L* = l(s · β* ⋆ φ(X), Y)             the only training loss (paper Eq. 8)

Because g is built with ``create_graph=True``, ``∂L*/∂U1`` has a second-order term through g: U1 learns
to produce templates whose *gradients* are informative, not just templates that score well.

**Template generalisation** (Algorithm 1): a template is scored against the search crops of k
*different* videos, each with its own label, so the inner gradient describes how to adapt to an
object the template was not built from. Here every template of a batch is scored against every
search crop of the batch (``all_pairs=True``; ``(B_x, B_z)`` maps from one convolution, no extra
search passes); ``all_pairs=False`` is the plain pairing of Table 3's "w/o M" row.

Departures from the paper and the authors' code (the notebook states each with its reason):

* Both branches start from the notebook-01 SiamFC checkpoint; the search branch stays frozen. The
  paper's template branch and U2 start random (only the search branch is restored).
* U2's BN scale γ starts at 0, so ``U2(·) = tanh(0) = 0`` and GradNet starts exactly as SiamFC.
* Every BN (template branch and U2) runs on its stored statistics, in training too: in train mode the
  batch statistics couple the templates of a batch (the authors' code leaks template 0's gradient
  into the others that way) and make training differ from tracking. U2's BN is then a learned
  per-channel scale and shift.
* The gradient scale ``c`` is calibrated, ``c = 1 / RMS(g)`` over training groups at initialisation
  (:meth:`GradNetNet.calibrate`), instead of the code's ``1e4`` (tied to its loss normalisation).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtl.backbones import AlexNetV1
from mtl.heads import SiamFCHead
from mtl.losses import balanced_logistic_loss_per_map


@dataclass(frozen=True)
class GradNetConfig:
    """GradNet's hyperparameters; geometry, data and tracking come from a :class:`mtl.siamfc.SiamFCConfig`.

    Variant switches (Table 3): ``all_pairs`` (template generalisation; False: "w/o M"),
    ``use_gradient`` (False with ``all_pairs=False``: "w/o MG", the template branch fine-tuned with
    neither), ``shared_upper`` (False: "w 2U", a second copy of U1 for the second pass),
    ``second_order`` (False: ``g`` detached, the first-order ablation).

    Training: ``epochs`` x ``pairs_per_epoch`` pairs in batches of ``batch_size`` (8: one template against
    the search crops of 8 videos); SGD with momentum, ``lr_template`` for the template branch and
    ``lr_update`` for U2, both decaying by ``lr_decay`` over the run, weight decay ``weight_decay``.
    ``label_shift``: search crops are shifted by up to this many score-map cells with their labels
    moved along (0: every label centred, as the authors' code). ``calibration_batches``: batches used
    to measure ``RMS(g)`` for ``c``.
    """

    all_pairs: bool = True
    use_gradient: bool = True
    shared_upper: bool = True
    second_order: bool = True
    update_weight_std: float = 0.01  # U2 conv weights N(0, 0.01) and bias 0.1, as t_scala5_zz in the code
    update_bias: float = 0.1
    epochs: int = 4
    pairs_per_epoch: int = 4000  # 4 x 500 steps of 8 pairs = 2,000 steps (16 k templates; about 10 min on 2 cores)
    val_pairs: int = 200
    batch_size: int = 8
    lr_template: float = 1e-3
    lr_update: float = 1.0  # the code's 1e-2 left U2 at ~0 in 80 steps here (notebook 03 shows the sweep)
    lr_decay: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_shift: int = 2
    calibration_batches: int = 4  # 4 x 8 = 32 templates
    seed: int = 0

    def __post_init__(self):
        if not self.use_gradient and self.all_pairs:
            raise ValueError("all_pairs (template generalisation) needs the gradient branch: use_gradient=True")
        if self.batch_size < 1 or self.epochs < 0 or self.pairs_per_epoch < self.batch_size:
            raise ValueError("batch_size >= 1, epochs >= 0 and pairs_per_epoch >= batch_size are required")
        if self.label_shift < 0:
            raise ValueError(f"label_shift must be >= 0 cells, got {self.label_shift}")

    @property
    def variant(self) -> str:
        """Table 3's name of this configuration."""
        if not self.use_gradient:
            return "w/o MG"
        name = "Ours" if self.all_pairs else "w/o M"
        if not self.shared_upper:
            name += " w 2U"
        if not self.second_order:
            name += " (first-order)"
        return name


#: Quick mode: a smoke test of the pipeline (the numbers mean nothing).
GRADNET_QUICK_OVERRIDES = {"epochs": 1, "pairs_per_epoch": 16, "val_pairs": 8, "calibration_batches": 1}


class UpdateBranch(nn.Module):
    """U2: ``tanh(BN(conv3x3_same(x)))``, ``(B, C, H, W) -> (B, C, H, W)``, exactly 0 at initialisation (γ = 0)."""

    def __init__(self, channels: int, weight_std: float = 0.01, bias: float = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels, eps=1e-6)
        nn.init.normal_(self.conv.weight, std=weight_std)
        nn.init.constant_(self.conv.bias, bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.bn(self.conv(x)))


@dataclass
class GradNetOutput:
    """What one GradNet pass computed (training and self-checks).

    f2 ``(B, C2, 12, 12)``, grad ``(B, C2, 12, 12)`` (``∂L/∂f2`` per template), h2 = f2 + U2(c g),
    beta / beta_star ``(B, C, 6, 6)``, scores / scores_star: ``(Bx, Bz, h, w)`` with ``all_pairs`` else
    ``(B, 1, h, w)``; loss / loss_star ``(B,)``: each template's mean loss over its maps.
    """

    f2: torch.Tensor
    grad: torch.Tensor
    h2: torch.Tensor
    beta: torch.Tensor
    beta_star: torch.Tensor
    scores: torch.Tensor
    scores_star: torch.Tensor
    loss: torch.Tensor
    loss_star: torch.Tensor


class GradNetNet(nn.Module):
    """Frozen SiamFC search branch + a trainable template branch (f2, U1) + the update branch U2.

    It quacks like :class:`mtl.siamfc.SiamFCNet` (``backbone`` = the search branch, ``head``), so
    :class:`mtl.siamfc.SiamFCTracker` tracks with it unchanged; the update lives in
    :class:`mtl.gradnet.tracker.GradNetUpdater`.

    Buffer ``grad_scale`` is ``c`` (1 until :meth:`calibrate`).
    """

    def __init__(self, width: float = 0.25, out_scale: float | None = None, config: GradNetConfig | None = None):
        super().__init__()
        from mtl.heads import default_out_scale

        cfg = config or GradNetConfig()
        self.config = cfg
        self.backbone = AlexNetV1(width)  # search branch φ, frozen
        self.template_branch = AlexNetV1(width)  # its own conv1-5: f2 = [:2], U1 = [2:]
        self.upper_second = copy.deepcopy(self.template_branch[2:]) if not cfg.shared_upper else None
        self.update_branch = UpdateBranch(self.template_branch.channels[1], cfg.update_weight_std, cfg.update_bias)
        self.head = SiamFCHead(default_out_scale(self.backbone.out_channels) if out_scale is None else out_scale)
        self.register_buffer("grad_scale", torch.tensor(1.0))
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_siamfc(cls, siamfc, config: GradNetConfig | None = None) -> "GradNetNet":
        """Both branches (and the second U1 of "w 2U") copied from a trained :class:`mtl.siamfc.SiamFCNet`."""
        net = cls(siamfc.backbone.width, siamfc.head.out_scale, config)
        net.backbone.load_state_dict(siamfc.backbone.state_dict())
        net.template_branch.load_state_dict(siamfc.backbone.state_dict())
        if net.upper_second is not None:
            net.upper_second.load_state_dict(siamfc.backbone[2:].state_dict())
        return net.to(next(siamfc.parameters()).device)

    def train(self, mode: bool = True) -> "GradNetNet":
        """Train mode for the module, but every BN keeps its stored statistics (templates stay independent)."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    # -- the pieces ------------------------------------------------------------------------

    def search_features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(X): search images ``(N, 3, S, S)`` -> ``(N, C, s, s)``, without gradients (the branch is frozen)."""
        with torch.no_grad():
            return self.backbone(x)

    def shallow(self, z: torch.Tensor) -> torch.Tensor:
        """f2: exemplar images ``(B, 3, 127, 127)`` -> pool2 features ``(B, C2, 12, 12)``."""
        t = self.template_branch
        return t.conv2(t.conv1(z))

    def upper(self, h: torch.Tensor, second: bool = False) -> torch.Tensor:
        """U1: ``(B, C2, 12, 12)`` -> template ``(B, C, 6, 6)`` (``second``: the "w 2U" copy when there is one)."""
        if second and self.upper_second is not None:
            return self.upper_second(h)
        t = self.template_branch
        return t.conv5(t.conv4(t.conv3(h)))

    def scores(self, beta: torch.Tensor, x_feats: torch.Tensor, all_pairs: bool) -> torch.Tensor:
        """Score maps. ``all_pairs``: every template on every search crop, ``(Bx, Bz, h, w)`` in one conv;
        else template ``b`` on search crop ``b``, ``(B, 1, h, w)``."""
        if all_pairs:
            return F.conv2d(x_feats, beta) * self.head.out_scale
        return self.head(beta, x_feats)

    @staticmethod
    def template_losses(scores: torch.Tensor, labels: torch.Tensor, all_pairs: bool) -> torch.Tensor:
        """Each template's mean balanced logistic loss over its maps: ``(Bz,)``.

        ``scores`` as :meth:`scores` with the same ``all_pairs``; ``labels`` ``(Bx, h, w)`` (search crop
        ``i``'s label, the same for every template) or one ``(h, w)`` map.
        """
        if labels.dim() == 2:
            labels = labels.expand(scores.shape[0], *labels.shape)
        per_map = balanced_logistic_loss_per_map(scores, labels[:, None])  # (Bx, Bz) or (B, 1)
        return per_map.mean(dim=0) if all_pairs else per_map[:, 0]

    def inner_gradient(self, f2: torch.Tensor, x_feats: torch.Tensor, labels: torch.Tensor, all_pairs: bool,
                       create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(g, β, S, per-template loss)`` with ``g = ∂ Σ_b L_b / ∂ f2``; each row of g is its own template's gradient.

        The sum over templates makes row ``b`` of ``g`` the gradient of template ``b``'s own loss
        (no BN couples them). Works under ``torch.no_grad()`` too (evaluation): the inner pass always
        builds its graph.
        """
        with torch.enable_grad():
            if not f2.requires_grad:
                f2 = f2.detach().requires_grad_(True)
            beta = self.upper(f2)
            scores = self.scores(beta, x_feats, all_pairs)
            losses = self.template_losses(scores, labels, all_pairs)
            (g,) = torch.autograd.grad(losses.sum(), f2, create_graph=create_graph)
        return g, beta, scores, losses

    def update(self, f2: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """h2 = f2 + U2(c · g), ``(B, C2, 12, 12)``."""
        return f2 + self.update_branch(self.grad_scale * g)

    def refine(self, f2: torch.Tensor, x_feats: torch.Tensor, labels: torch.Tensor, all_pairs: bool | None = None,
               create_graph: bool | None = None) -> GradNetOutput:
        """GradNet on shallow features ``f2`` ``(B, C2, 12, 12)``: inner gradient, update, second pass.

        ``x_feats`` ``(Bx, C, s, s)``, ``labels`` ``(Bx, h, w)`` (search crop ``i``'s 0/1 label).
        ``all_pairs`` (default: the config's) scores every template on every search crop.
        ``create_graph`` (default: the config's ``second_order`` while gradients are on) keeps ``g`` in
        the graph. Without the gradient branch (``use_gradient=False``) β* = β.
        """
        cfg = self.config
        all_pairs = cfg.all_pairs if all_pairs is None else all_pairs
        if not cfg.use_gradient:
            beta = self.upper(f2)
            scores = self.scores(beta, x_feats, all_pairs)
            losses = self.template_losses(scores, labels, all_pairs)
            return GradNetOutput(f2, torch.zeros_like(f2), f2, beta, beta, scores, scores, losses, losses)
        if create_graph is None:
            create_graph = cfg.second_order and torch.is_grad_enabled()
        g, beta, scores, losses = self.inner_gradient(f2, x_feats, labels, all_pairs, create_graph)
        if not create_graph:
            g = g.detach()
        h2 = self.update(f2, g)
        beta_star = self.upper(h2, second=True)
        scores_star = self.scores(beta_star, x_feats, all_pairs)
        return GradNetOutput(f2, g, h2, beta, beta_star, scores, scores_star, losses,
                             self.template_losses(scores_star, labels, all_pairs))

    def forward(self, z: torch.Tensor, x_feats: torch.Tensor, labels: torch.Tensor,
                all_pairs: bool | None = None) -> GradNetOutput:
        """One GradNet pass on exemplar images ``z`` ``(B, 3, 127, 127)``: :meth:`refine` of their f2."""
        return self.refine(self.shallow(z), x_feats, labels, all_pairs)

    @torch.no_grad()
    def calibrate(self, batches, device="cpu") -> float:
        """Set ``c = 1 / RMS(g)`` from ``batches`` of ``(z, x, labels)``; return RMS(g).

        RMS over every element of every template's inner gradient, measured with the configured
        pairing. Our logits are scaled by ``out_scale`` (0.004), so ``g`` is tiny (about 1e-6) and the
        code's ``c = 1e4`` would leave U2's input far from order 1.
        """
        total, count = 0.0, 0
        for z, x, labels in batches:
            z, x, labels = z.to(device), x.to(device), labels.to(device)
            g, *_ = self.inner_gradient(self.shallow(z), self.search_features(x), labels,
                                        self.config.all_pairs, create_graph=False)
            total += float(g.double().pow(2).sum())
            count += g.numel()
        if count == 0:
            raise ValueError("calibrate needs at least one batch")
        rms = (total / count) ** 0.5
        if not rms > 0:
            raise FloatingPointError("the inner gradient is zero on every calibration batch; cannot set c")
        self.grad_scale.fill_(1.0 / rms)
        return rms

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The learned part (template branch, U2, second U1, c): what training snapshots keep."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith("backbone.")}


def config_variant(config: GradNetConfig, **changes) -> GradNetConfig:
    """``dataclasses.replace`` that keeps the variant switches consistent (w/o MG implies no all_pairs)."""
    if changes.get("use_gradient") is False:
        changes.setdefault("all_pairs", False)
    return dataclasses.replace(config, **changes)

"""CFNet (Valmadre et al., 2017): SiamFC with a differentiable correlation-filter layer in the exemplar branch.

The exemplar branch sees a crop as large as the search region (255 px), multiplies its features
``x`` ``(B, C, 22, 22)`` by a cosine window and solves the ridge regression of a correlation filter in
closed form in the Fourier domain (:func:`mtl.cf.solve_cf`, ``ŵ = x̂ · conj(ŷ) / (Σ_c |x̂_c|² + λ)``)
for a Gaussian desired response ``y`` peaked at zero shift. The filter ``w`` is aligned with ``x``, so its
central 6x6 cells are the target's part: cropped, they are a template of SiamFC's size, correlated with
the search features and mapped to logits by a learnable scale and bias::

    score = s · xcorr(crop(CF(window · φ(z))), φ(x)) + b

Everything is differentiable (FFTs included), so the whole network trains end to end with SiamFC's
pairs and balanced logistic loss through the project's one loop :func:`mtl.train.fit`.

Departures from the paper (CPU budget; notebook 02 says so): the backbone is SiamFC's quarter-width
AlexNet (ours, not CFNet's 2-layer net with padding), *initialised from the trained SiamFC checkpoint*
and fine-tuned for a few epochs instead of trained from scratch; ``λ`` is learned (as log λ) instead
of fixed, so it adapts to the feature scale of whatever backbone it starts from.

:class:`CFNetTracker` is :class:`mtl.siamfc.SiamFCTracker` with one method changed, ``extract_template``:
the target model is the cropped filter, so every updater of :mod:`mtl.updaters` applies unchanged.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mtl.backbones import AlexNetV1
from mtl.cf import gaussian_label, solve_cf
from mtl.eval import register_tracker
from mtl.heads import xcorr_grouped
from mtl.ops import box_to_center, cosine_window, crop_and_resize
from mtl.siamfc import (SiamFCConfig, SiamFCLoss, SiamFCPairTransform, SiamFCTracker, pair_loaders,
                        quick_config, search_side, sgd_with_exponential_decay)
from mtl.tracker import as_rgb_array


@dataclass(frozen=True)
class CFNetConfig:
    """CFNet's own hyperparameters; geometry and tracking come from a :class:`mtl.siamfc.SiamFCConfig`.

    ``label_sigma``: width (cells) of the Gaussian desired response. ``lam_init``: initial ridge
    regularisation λ (learned as log λ); about a third of the median per-frequency feature energy of the
    SiamFC backbone, so the filter starts well-conditioned. ``scale_init``/``bias_init``: the logit map's
    affine parameters (CFNet starts its bias at -0.5). Fine-tuning: ``epochs`` x ``pairs_per_epoch``
    pairs, SGD ``lr_initial -> lr_final``; the scale, the bias and log λ train ``head_lr_mult`` times
    faster and without weight decay (CFNet also gives them their own rates; the value 1000 is ours,
    chosen among 1, 10, 100, 1000 and 10000 on the val split's loss in notebook 02).
    """

    label_sigma: float = 1.0
    lam_init: float = 100.0
    scale_init: float = 1.0
    bias_init: float = -0.5  # CFNet's own start for the output bias
    head_lr_mult: float = 1000.0  # scale and bias (and log λ) train this much faster, without weight decay
    epochs: int = 3
    pairs_per_epoch: int = 800
    val_pairs: int = 160
    batch_size: int = 8
    lr_initial: float = 1e-3
    lr_final: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self):
        if not self.label_sigma > 0 or not self.lam_init > 0:
            raise ValueError("label_sigma and lam_init must be positive")


#: CFNet's own tracking settings (its released tracker), an alternative to SiamFC's that notebook 02 compares on val.
CFNET_OWN_SETTINGS = {"scale_step": 1.0575, "scale_penalty": 0.978, "scale_lr": 0.52, "window_influence": 0.2625}

#: Quick mode: a smoke test of the pipeline (the numbers mean nothing).
CFNET_QUICK_OVERRIDES = {"epochs": 1, "pairs_per_epoch": 16, "val_pairs": 8}


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


class CorrelationFilterLayer(nn.Module):
    """Closed-form correlation filter of windowed exemplar features, centre-cropped to the template size.

    ``forward(x)``: features ``(B, C, H, W)`` -> template ``(B, C, t, t)`` (``t = template_size``).
    ``filter(x)``: the full filter ``(B, C, H, W)`` before the crop. Buffers: ``window`` ``(H, W)`` (Hann,
    peak 1) and ``label`` ``(H, W)`` (:func:`mtl.cf.gaussian_label`, peak at zero shift). ``log_lam``: λ.
    """

    def __init__(self, feature_size: int = 22, template_size: int = 6, label_sigma: float = 1.0,
                 lam_init: float = 100.0):
        super().__init__()
        if template_size > feature_size or (feature_size - template_size) % 2:
            raise ValueError(f"cannot centre-crop {template_size} cells out of {feature_size}")
        window = torch.from_numpy(cosine_window(feature_size))
        self.register_buffer("window", window / window.max())
        self.register_buffer("label", gaussian_label(feature_size, feature_size, label_sigma))
        self.log_lam = nn.Parameter(torch.tensor(math.log(lam_init)))
        self.template_size = int(template_size)

    @property
    def lam(self) -> torch.Tensor:
        return self.log_lam.exp()

    def filter(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.window.shape:
            raise ValueError(f"features must be {tuple(self.window.shape)} spatially, got {tuple(x.shape[-2:])}")
        return solve_cf(x * self.window, self.label, self.lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.filter(x)
        start = (w.shape[-1] - self.template_size) // 2
        return w[..., start:start + self.template_size, start:start + self.template_size]


class CFNetHead(nn.Module):
    """``s · xcorr(z, x) + b`` with learnable scale ``s`` and bias ``b`` (CFNet's logit map).

    ``forward(z (Bz, C, h, w), x (Bx, C, H, W))`` -> ``(Bx, 1, H-h+1, W-w+1)``; pairing as
    :func:`mtl.heads.xcorr_grouped`.
    """

    def __init__(self, scale: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.scale * xcorr_grouped(z, x) + self.bias


class CFNetNet(nn.Module):
    """CFNet: shared backbone, CF layer on the exemplar branch, affine cross-correlation head.

    ``template(z)``: exemplar images ``(B, 3, 255, 255)`` (float 0..255) -> target models ``(B, C, 6, 6)``.
    ``forward(z, x)``: exemplar images ``(B, 3, 255, 255)``, search images ``(B*k, 3, S, S)`` -> scores
    ``(B*k, 1, (S - 255) / 8 + 17, ...)``, as :class:`mtl.siamfc.SiamFCNet`.
    """

    def __init__(self, width: float = 0.25, config: CFNetConfig | None = None, exemplar_size: int = 255,
                 template_size: int = 6):
        super().__init__()
        cfg = config or CFNetConfig()
        self.backbone = AlexNetV1(width)
        self.cf = CorrelationFilterLayer(AlexNetV1.output_size(exemplar_size), template_size, cfg.label_sigma,
                                         cfg.lam_init)
        self.head = CFNetHead(cfg.scale_init, cfg.bias_init)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.cf(self.backbone(z))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.template(z), self.backbone(x))


# ---------------------------------------------------------------------------------------------
# Training: fine-tune from SiamFC
# ---------------------------------------------------------------------------------------------


class CFNetPairTransform(SiamFCPairTransform):
    """SiamFC's pair transform with the exemplar cropped like the search region (255 px, same context).

    ``__call__`` -> ``(z (3, 255, 255), x (3, 239, 239))`` float32, values 0..255.
    """

    def __call__(self, z_frame, z_box, x_frame, x_box, rng=None):
        from mtl.ops import image_to_tensor

        cfg = self.config
        z = self.crop(as_rgb_array(z_frame), z_box, cfg.instance_size, rng)
        x = self.crop(as_rgb_array(x_frame), x_box, cfg.train_instance_size, rng)
        return image_to_tensor(z)[0], image_to_tensor(x)[0]


def _train_key(cfg: CFNetConfig, siamfc_cfg: SiamFCConfig) -> dict:
    return {"cfnet": dataclasses.asdict(cfg), "siamfc": siamfc_cfg.train_key()}


def train_cfnet(config: CFNetConfig | None = None, siamfc_config: SiamFCConfig | None = None, *, quick: bool = False,
                device="cpu", retrain: bool = False, progress: bool = True) -> tuple[CFNetNet, dict]:
    """Load the CFNet checkpoint for the configs or fine-tune it from SiamFC; ``(net in eval mode, meta)``.

    The backbone starts from :func:`mtl.siamfc.train_siamfc` (loaded, or trained first when missing;
    quick mode uses the quick SiamFC). ``meta`` as :func:`mtl.siamfc.train_siamfc` (``history``,
    ``train_seconds``, ``loaded``, ``checkpoint``) plus ``lam`` / ``scale`` / ``bias`` after training.
    """
    from mtl.cache import load_or_train
    from mtl.siamfc import train_siamfc
    from mtl.train import fit
    from mtl.utils import seed_everything

    cfg = config or CFNetConfig()
    scfg = siamfc_config or SiamFCConfig()
    if quick:
        cfg = dataclasses.replace(cfg, **CFNET_QUICK_OVERRIDES)
        scfg = quick_config(scfg)
    device = torch.device(device)
    seed_everything(cfg.seed)
    net = CFNetNet(scfg.width, cfg, scfg.instance_size)

    def train_fn(model: nn.Module) -> dict:
        siamfc, _ = train_siamfc(scfg, quick=quick, device=device, progress=progress)
        model.backbone.load_state_dict(siamfc.backbone.state_dict())
        seed_everything(cfg.seed)
        model.to(device)
        # seed offset 7: other pairs than SiamFC saw in its own training
        train_loader, val_loader = pair_loaders(
            scfg, CFNetPairTransform, quick=quick, epochs=cfg.epochs, pairs_per_epoch=cfg.pairs_per_epoch,
            val_pairs=cfg.val_pairs, batch_size=cfg.batch_size, train_seed=cfg.seed + 7, val_seed=cfg.seed + 1)
        # one scalar multiplying sums of thousands of products learns at the backbone's rate ~never
        # (the 2026-11 fix: scale 1.00 -> 1.04 in 300 steps); CFNet gives such parameters their own
        # learning-rate multipliers and no weight decay
        head = {name: (cfg.head_lr_mult, 0.0) for name in ("head.scale", "head.bias", "cf.log_lam")}
        optimizer, scheduler = sgd_with_exponential_decay(model, lr_initial=cfg.lr_initial, lr_final=cfg.lr_final,
                                                          epochs=cfg.epochs, momentum=cfg.momentum,
                                                          weight_decay=cfg.weight_decay, special=head)
        # the loss of the untrained head, for the notebook's curve (epoch 0)
        from mtl.train import evaluate_loss

        initial_val = evaluate_loss(model, SiamFCLoss(scfg), val_loader, device)
        start = time.perf_counter()
        history = fit(model, SiamFCLoss(scfg), train_loader, val_loader, epochs=cfg.epochs, optimizer=optimizer,
                      scheduler=scheduler, device=device, desc="CFNet", progress=progress, grad_clip=10.0)
        return {"history": history, "initial_val_loss": initial_val["loss"],
                "train_seconds": time.perf_counter() - start, "config": _train_key(cfg, scfg),
                "lam": float(model.cf.lam.detach()), "scale": float(model.head.scale.detach()),
                "bias": float(model.head.bias.detach()),
                "torch_threads": torch.get_num_threads(), "device": str(device),
                "made_by": "notebooks/02_update_baselines.ipynb"}

    meta = load_or_train("cfnet", _train_key(cfg, scfg), net, train_fn, retrain=retrain, quick=quick,
                         made_by="notebooks/02_update_baselines.ipynb")
    return net.to(device).eval(), meta


def load_cfnet(checkpoint: str | Path | None = "default", config: CFNetConfig | None = None,
               siamfc_config: SiamFCConfig | None = None, device="cpu") -> CFNetNet:
    """A CFNet network in eval mode.

    ``checkpoint``: ``"default"`` -> the stored checkpoint of the configs (in quick mode ``MTL_QUICK=1``
    the quick one when no full one exists); a path -> that file; ``None`` -> a CFNet on a randomly
    initialised backbone (tests). Raises ``FileNotFoundError`` naming the file and how to make it.
    """
    from mtl.cache import default_checkpoint, load_checkpoint
    from mtl.utils import seed_everything

    cfg = config or CFNetConfig()
    scfg = siamfc_config or SiamFCConfig()
    if checkpoint is None:
        seed_everything(cfg.seed)
        return CFNetNet(scfg.width, cfg, scfg.instance_size).to(device).eval()
    if checkpoint == "default":
        qcfg = dataclasses.replace(cfg, **CFNET_QUICK_OVERRIDES)
        path = default_checkpoint("cfnet", _train_key(cfg, scfg), _train_key(qcfg, quick_config(scfg)),
                                  "run notebooks/02_update_baselines.ipynb (or mtl.cfnet.train_cfnet()) to train it, "
                                  "or pass checkpoint=None")
    else:
        path = Path(checkpoint)
    state, meta = load_checkpoint(path)
    width = meta.get("config", {}).get("siamfc", {}).get("width", scfg.width)
    net = CFNetNet(width, cfg, scfg.instance_size)
    net.load_state_dict(state)
    return net.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Tracker
# ---------------------------------------------------------------------------------------------


class CFNetTracker(SiamFCTracker):
    """SiamFC's tracker with CFNet's target model: only :meth:`extract_template` differs.

    The target model is the cropped correlation filter ``(1, C, 6, 6)`` learned from a 255 px crop
    around the box (the search region's extent), so search, scale handling and every updater of
    :mod:`mtl.updaters` are SiamFC's.
    """

    name = "cfnet"

    @torch.inference_mode()
    def extract_template(self, image, box) -> torch.Tensor:
        """The CF target model ``(1, C, 6, 6)`` of the object in ``box`` on ``image``."""
        c = self.config
        center, size = box_to_center(box)
        crop = crop_and_resize(as_rgb_array(image), center, search_side(size, c), c.instance_size)
        return self.net.cf(self.features(crop[None]))


@register_tracker("cfnet")
def make_cfnet_tracker(checkpoint: str | Path | None = "default", config: SiamFCConfig | None = None,
                       cfnet_config: CFNetConfig | None = None, device="cpu", **options) -> CFNetTracker:
    """Registry factory: ``make_tracker("cfnet", checkpoint=..., updater=..., window_influence=..., ...)``."""
    net = load_cfnet(checkpoint, cfnet_config, config, device=device)
    return CFNetTracker(net, config, device=device, **options)


def _register():
    from mtl.updaters import _register_updating

    _register_updating("cfnet")


_register()

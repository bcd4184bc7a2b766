"""Meta-training ROAM on the clip bank of the frozen SiamFC backbone, and calibrating its rate range.

``train_roam(config)`` loads the checkpoint of ``config`` or trains it with :func:`mtl.train.fit` and
:class:`ROAMStep`; gradients are clipped per value as in the authors' code (``clip_theta0`` for
``theta_0`` / ``lambda_0``, ``clip_optimizer`` for the LSTM) by hooks on the parameters.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from mtl.roam.data import ClipRecipe, cached_clips
from mtl.roam.meta import ROAMConfig, ROAMLearner
from mtl.siamfc import SiamFCConfig, method_configs

MADE_BY = "mtl.roam.train.train_roam"
RECIPE = ClipRecipe()
#: Quick mode: a handful of clips and one short epoch.
ROAM_QUICK_OVERRIDES = {"num_clips": 16, "val_clips": 8, "epochs": 1, "clips_per_epoch": 16}


class ROAMStep:
    """``step_fn`` for :func:`mtl.train.fit`: the mean of a batch's meta-losses over the unrolled steps.

    Training draws RFS scales and the meta-frame offset from a generator seeded once; evaluation uses a fixed
    generator per call and no RFS, so every epoch's validation loss is measured alike.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model: ROAMLearner, batch) -> dict:
        features, boxes = batch
        gen = self.generator if model.training else torch.Generator().manual_seed(0)
        with torch.enable_grad():
            out = model.unroll(features, boxes, gen, rfs=model.training)
        loss = out["meta"].mean()
        meta = out["meta"].detach()
        return {"loss": loss if model.training else loss.detach(), "meta_first": float(meta[0]),
                "meta_last": float(meta[-1]), "update_last": float(out["update"][-1]),
                "rate": float(out["rates"].mean()), "lambda0": float(out["lambda0"])}


def _configs(config, siamfc_config, quick):
    return method_configs(config or ROAMConfig(), siamfc_config, quick, ROAM_QUICK_OVERRIDES)


def train_key(config: ROAMConfig, siamfc_config: SiamFCConfig) -> dict:
    from mtl.dimp.train import GEOMETRY

    return {"roam": dataclasses.asdict(config), "siamfc": siamfc_config.train_key(),
            "clips": {"geometry": dataclasses.asdict(GEOMETRY), "recipe": dataclasses.asdict(RECIPE)}}


def clip_data(config: ROAMConfig, siamfc_config: SiamFCConfig, siamfc, *, quick: bool, device="cpu",
              progress: bool = True) -> dict:
    """The train and val clip banks (built from ``siamfc``'s backbone when missing)."""
    from mtl.cache import state_dict_hash
    from mtl.dimp.train import GEOMETRY

    weights = state_dict_hash(siamfc.backbone.state_dict())
    common = dict(geometry=GEOMETRY, recipe=RECIPE, data_seed=siamfc_config.data_seed, quick=quick, device=device,
                  progress=progress)
    return {"train": cached_clips(siamfc.backbone, weights, siamfc_config.train_spec, num_clips=config.num_clips,
                                  seed=41, **common),
            "val": cached_clips(siamfc.backbone, weights, siamfc_config.val_spec, num_clips=config.val_clips, seed=42,
                                **common)}


def default_clip_data(siamfc, *, quick: bool = False, device="cpu", progress: bool = True) -> tuple[ROAMConfig, dict]:
    """``(config, banks)``: :class:`ROAMConfig`'s defaults (quick mode: with :data:`ROAM_QUICK_OVERRIDES`) and the
    train / val clip banks of :func:`clip_data` they train on."""
    cfg, scfg = _configs(None, None, quick)
    return cfg, clip_data(cfg, scfg, siamfc, quick=quick, device=device, progress=progress)


@torch.no_grad()
def _first_step_meta_loss(learner: ROAMLearner, bank: dict, lr: float, clips: int) -> float:
    """Mean meta-loss on frames 1..tau after one SGD step of rate ``lr`` on the 9 copies, from ``theta_0``."""
    cfg = learner.config
    copies = bank["features"].shape[1] - (cfg.tau * cfg.updates + cfg.tau)
    ones = torch.ones(learner.layout.numel)
    losses = []
    for i in range(min(clips, len(bank["features"]))):
        x, b = bank["features"][i].float(), bank["boxes"][i]
        shape = learner.shape_for(b[0, 2:])
        with torch.enable_grad():
            tp = learner.theta0.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(learner.loss(tp, ones, x[:copies], b[:copies], shape), tp)
        new = tp.detach() - lr * g
        if not torch.isfinite(new).all():
            return math.inf
        losses.append(float(learner.loss(new, ones, x[copies:copies + cfg.tau], b[copies:copies + cfg.tau], shape)))
    return float(np.mean(losses))


def calibrate_lr(learner: ROAMLearner, val_bank: dict, rates=None, clips: int = 32) -> dict:
    """The SGD rate of the first update by a line search on val clips (``specs/dimp_roam.md`` §2(d).2):
    ``{"rates", "losses", "best"}``; the rate range and the starting rates are set from ``best``."""
    rates = list(rates if rates is not None else 10.0 ** np.arange(-3, 2.01, 0.5))
    losses = [_first_step_meta_loss(learner, val_bank, r, clips) for r in rates]
    return {"rates": rates, "losses": losses, "best": rates[int(np.argmin(losses))]}


def calibrated_config(config: ROAMConfig, best_lr: float) -> ROAMConfig:
    """``lambda_max = 10 x best``, ``lambda_0`` and the LSTM's first rates (``init_fraction`` x max) at ``best``,
    SGD at ``best``; rounded to two significant digits so the config (the checkpoint key) is stable."""
    best = float(f"{best_lr:.2g}")
    return dataclasses.replace(config, lambda_max=float(f"{10 * best:.2g}"), lambda0=best, init_fraction=0.1, sgd_lr=best)


def _clip_gradients(learner: ROAMLearner) -> list:
    cfg = learner.config
    handles = []
    for group, params in learner.meta_parameters().items():
        c = cfg.clip_optimizer if group == "optimizer" else cfg.clip_theta0
        for p in params:
            handles.append(p.register_hook(lambda g, c=c: g.clamp(-c, c)))
    return handles


def train_roam(config: ROAMConfig | None = None, siamfc_config: SiamFCConfig | None = None, *, quick: bool = False,
               device="cpu", retrain: bool = False, progress: bool = True, directory: str | Path | None = None,
               data: dict | None = None) -> tuple[ROAMLearner, dict]:
    """Load the ROAM checkpoint of the configs or meta-train it on the clip bank; ``(learner, meta)``.

    ``meta``: ``history`` (per epoch ``train_/val_`` ``loss``, ``meta_first``, ``meta_last``, ``update_last``,
    ``rate``, ``lambda0``), ``initial_val``, ``train_seconds``, ``loaded``, ``checkpoint``.
    """
    from mtl.cache import load_or_train
    from mtl.dimp.net import BankBatches
    from mtl.siamfc import train_siamfc
    from mtl.train import evaluate_loss, fit
    from mtl.utils import seed_everything

    cfg, scfg = _configs(config, siamfc_config, quick)
    device = torch.device(device)
    siamfc, _ = train_siamfc(scfg, quick=quick, device=device, progress=progress)
    seed_everything(cfg.seed)
    learner = ROAMLearner(siamfc.backbone.out_channels, cfg)

    def train_fn(model) -> dict:
        banks = data or clip_data(cfg, scfg, siamfc, quick=quick, device=device, progress=progress)
        seed_everything(cfg.seed)
        model.load_state_dict(ROAMLearner(siamfc.backbone.out_channels, cfg).state_dict())
        model.to(device)
        handles = _clip_gradients(model)
        groups = model.meta_parameters()
        lrs = {"theta0": cfg.lr_theta0, "lambda0": cfg.lr_lambda0, "optimizer": cfg.lr_optimizer}
        optimizer = torch.optim.Adam([{"params": p, "lr": lrs[k]} for k, p in groups.items() if p])
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, cfg.epochs // 2), gamma=0.5)
        step = ROAMStep(cfg.seed)
        train_loader = BankBatches(banks["train"], cfg.batch_size, cfg.clips_per_epoch, seed=cfg.seed)
        val_loader = BankBatches(banks["val"], cfg.batch_size, cfg.val_clips, shuffle=False)
        initial_val = evaluate_loss(model, step, val_loader, device)
        start = time.perf_counter()
        history = fit(model, step, train_loader, val_loader, epochs=cfg.epochs, optimizer=optimizer,
                      scheduler=scheduler, device=device, desc="roam", progress=progress)
        for h in handles:
            h.remove()
        return {"history": history, "initial_val": initial_val, "train_seconds": time.perf_counter() - start,
                "bank_seconds": {k: v["seconds"] for k, v in banks.items()}, "config": train_key(cfg, scfg),
                "torch_threads": torch.get_num_threads(), "device": str(device), "made_by": MADE_BY}

    meta = load_or_train("roam", train_key(cfg, scfg), learner, train_fn, retrain=retrain, quick=quick,
                         directory=directory, made_by=MADE_BY)
    return learner.to(device).eval(), meta


def evaluate_unroll(learner: ROAMLearner, bank: dict, *, sgd_lr: float | None = None, clips: int | None = None,
                    batch_size: int = 8, seed: int = 0) -> dict:
    """The unroll of :meth:`ROAMLearner.unroll` on the first ``clips`` clips of ``bank`` without RFS, with the
    learner's optimizer or (``sgd_lr``) SGD at that rate from the same ``theta_0`` / ``lambda_0`` (Fig. 7).

    Returns ``{"meta": (T,), "update": (T,)}`` means over the clips, ``"rates"``: ``(T - 1, clips P)`` every rate
    of every step, ``"lambda0"``: ``(P,)``; all on the CPU (the unroll runs on the learner's device).
    """
    model = learner
    if sgd_lr is not None:
        model = ROAMLearner(learner.in_channels, dataclasses.replace(learner.config, optimizer="sgd", sgd_lr=float(sgd_lr)))
        model.load_state_dict({k: v for k, v in learner.state_dict().items() if k in ("theta0", "log_lambda0")})
    model.eval()
    device = model.theta0.device
    n = len(bank["features"]) if clips is None else min(clips, len(bank["features"]))
    gen = torch.Generator().manual_seed(seed)
    meta, update, rates = [], [], []
    for i in range(0, n, batch_size):
        sl = slice(i, min(n, i + batch_size))
        with torch.enable_grad():
            out = model.unroll(bank["features"][sl].to(device), bank["boxes"][sl].to(device), gen, rfs=False)
        w = sl.stop - sl.start
        meta.append(out["meta"].detach().cpu() * w)
        update.append(out["update"].cpu() * w)
        rates.append(out["rate_values"].cpu())
    return {"meta": torch.stack(meta).sum(0) / n, "update": torch.stack(update).sum(0) / n,
            "rates": torch.cat(rates, dim=1), "lambda0": torch.exp(learner.log_lambda0.detach()).cpu()}


#: Notebook 06's models: each a change of :class:`ROAMConfig` (``"two_layer"`` gets its own rate calibration).
VARIANTS = {"roam": {}, "roampp": {"regression": True}, "no_rfs": {"kappa": 0.0, "kappa_reg": 0.0},
            "const": {"optimizer": "const"}, "two_layer": {"reduced": 8, "theta0_scale": 1.0},
            "roam_long": {"epochs": 24}}
CALIBRATION_RATES = tuple(float(r) for r in 10.0 ** np.arange(-4, -2.4, 0.5))


def variant_config(name: str, siamfc=None, *, quick: bool = False, device="cpu", progress: bool = True) -> ROAMConfig:
    """The config of variant ``name`` of :data:`VARIANTS`; ``"two_layer"`` calibrated on the val clips of ``siamfc``
    (its rates differ from the one-layer model's, which are :class:`ROAMConfig`'s defaults)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown ROAM variant {name!r}; known: {sorted(VARIANTS)}")
    cfg = dataclasses.replace(ROAMConfig(), **VARIANTS[name])
    if name == "two_layer":
        qcfg, scfg = _configs(cfg, None, quick)
        bank = clip_data(qcfg, scfg, siamfc, quick=quick, device=device, progress=progress)["val"]
        best = calibrate_lr(ROAMLearner(siamfc.backbone.out_channels, qcfg), bank, CALIBRATION_RATES)["best"]
        cfg = calibrated_config(cfg, best)
    return cfg


def train_variants(names=tuple(VARIANTS), *, quick: bool = False, device="cpu", retrain: bool = False,
                   progress: bool = True) -> dict:
    """``{name: (learner, meta)}`` for the variants ``names``, each loaded or meta-trained by :func:`train_roam`."""
    from mtl.siamfc import train_siamfc

    siamfc, _ = train_siamfc(quick=quick, device=device, progress=progress)
    return {n: train_roam(variant_config(n, siamfc, quick=quick, device=device, progress=progress), quick=quick,
                          device=device, retrain=retrain, progress=progress) for n in names}


__all__ = ["ROAMStep", "ROAM_QUICK_OVERRIDES", "VARIANTS", "CALIBRATION_RATES", "train_key", "clip_data",
           "calibrate_lr", "calibrated_config", "default_clip_data", "evaluate_unroll", "variant_config", "train_variants", "train_roam"]

"""Offline training of DiMP's target-model predictor on the feature bank of the frozen SiamFC backbone.

``train_dimp(config)`` loads the checkpoint of ``config`` or trains it: the bank (train and val
splits, :func:`mtl.dimp.data.cached_bank`) is built once and shared by every variant; the training
loop is :func:`mtl.train.fit` with :class:`mtl.dimp.net.DiMPStep`.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import torch

from mtl.dimp.data import BankRecipe, CropGeometry, cached_bank
from mtl.dimp.iounet import IoUNet, IoUNetConfig, IoUStep
from mtl.dimp.net import DIMP_QUICK_OVERRIDES, BankBatches, DiMPConfig, DiMPNet, DiMPStep, FineTune
from mtl.siamfc import SiamFCConfig, method_configs

MADE_BY = "mtl.dimp.train.train_dimp"
GEOMETRY = CropGeometry()
RECIPE = BankRecipe()


def train_key(config: DiMPConfig, siamfc_config: SiamFCConfig) -> dict:
    """The checkpoint key: DiMP's config, the SiamFC whose backbone made the bank, and the bank's recipe."""
    return {"dimp": dataclasses.asdict(config), "siamfc": siamfc_config.train_key(),
            "bank": {"geometry": dataclasses.asdict(GEOMETRY), "recipe": dataclasses.asdict(RECIPE)}}


def _configs(config, siamfc_config, quick):
    return method_configs(config or DiMPConfig(), siamfc_config, quick, DIMP_QUICK_OVERRIDES)


def bank_data(config: DiMPConfig, siamfc_config: SiamFCConfig, siamfc, *, quick: bool, device="cpu",
              progress: bool = True, blocks: int | None = None) -> dict:
    """The train and val banks for ``config`` (built from ``siamfc``'s backbone when missing); ``blocks``: the
    activations after the first ``blocks`` backbone blocks instead of its output (a fine-tuned tail's input)."""
    from mtl.cache import state_dict_hash

    weights = state_dict_hash(siamfc.backbone.state_dict())
    common = dict(geometry=GEOMETRY, recipe=RECIPE, data_seed=siamfc_config.data_seed, quick=quick, device=device,
                  progress=progress, blocks=blocks)
    return {"train": cached_bank(siamfc.backbone, weights, siamfc_config.train_spec, num_sets=config.num_sets,
                                 seed=config.seed + 31, **common),
            "val": cached_bank(siamfc.backbone, weights, siamfc_config.val_spec, num_sets=config.val_sets, seed=32,
                               **common)}


def make_optimizer(model: DiMPNet, config: DiMPConfig, tail_lr: float | None = None) -> tuple[torch.optim.Optimizer, object]:
    """Adam with the optimizer module's scalars at ``lr_optimizer``, a fine-tuned backbone tail at ``tail_lr``
    and the rest at ``lr``; the lr times ``lr_decay`` after 60 % and 85 % of the epochs."""
    opt_params = list(model.optimizer.parameters())
    tail_params = list(model.tail.parameters()) if model.tail is not None else []
    ids = {id(p) for p in opt_params + tail_params}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": config.lr}]
    if opt_params:
        groups.append({"params": opt_params, "lr": config.lr_optimizer})
    if tail_params:
        if tail_lr is None:
            raise ValueError("the model has a fine-tuned backbone tail: give its learning rate (tail_lr)")
        groups.append({"params": tail_params, "lr": tail_lr})
    optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, _lr_milestones(config.epochs), gamma=config.lr_decay)
    return optimizer, scheduler


def _lr_milestones(epochs: int) -> list[int]:
    """After 60 % and 85 % of the epochs: where the learning rate drops (a change from DiMP's x0.2 every 15 of 50)."""
    return sorted({max(1, round(epochs * 0.6)), max(1, round(epochs * 0.85))})


def _train_on_bank(name: str, key: dict, make_net, step, make_optimizer_fn, *, cfg, dcfg, scfg, siamfc, epochs: int,
                   grad_clip, quick: bool, device, retrain: bool, progress: bool, directory, data, blocks=None):
    """Load ``name``/``key`` or train ``make_net()`` on the banks with ``step`` through :func:`mtl.train.fit`
    (``data``, or the banks of :func:`bank_data` with ``blocks``, built only when training)."""
    from mtl.cache import load_or_train
    from mtl.train import evaluate_loss, fit
    from mtl.utils import seed_everything

    seed_everything(cfg.seed)
    net = make_net()

    def train_fn(model) -> dict:
        banks = data or bank_data(dcfg, scfg, siamfc, quick=quick, device=device, progress=progress, blocks=blocks)
        seed_everything(cfg.seed)
        model.load_state_dict(make_net().state_dict())
        model.to(device)
        train_loader = BankBatches(banks["train"], cfg.batch_size, cfg.sets_per_epoch, seed=cfg.seed)
        val_loader = BankBatches(banks["val"], cfg.batch_size, dcfg.val_sets, shuffle=False)
        optimizer, scheduler = make_optimizer_fn(model)
        initial_val = evaluate_loss(model, step, val_loader, device)
        start = time.perf_counter()
        history = fit(model, step, train_loader, val_loader, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                      device=device, desc=name, grad_clip=grad_clip, progress=progress)
        return {"history": history, "initial_val": initial_val, "train_seconds": time.perf_counter() - start,
                "bank_seconds": {k: v["seconds"] for k, v in banks.items()},
                "bank_loaded": {k: v["loaded"] for k, v in banks.items()}, "config": key,
                "torch_threads": torch.get_num_threads(), "device": str(device), "made_by": MADE_BY}

    meta = load_or_train(name, key, net, train_fn, retrain=retrain, quick=quick, directory=directory, made_by=MADE_BY)
    return net.to(device).eval(), meta


def train_dimp(config: DiMPConfig | None = None, siamfc_config: SiamFCConfig | None = None, *, quick: bool = False,
               device="cpu", retrain: bool = False, progress: bool = True, directory: str | Path | None = None,
               data: dict | None = None) -> tuple[DiMPNet, dict]:
    """Load the DiMP checkpoint for the configs or train it on the bank; ``(net in eval mode, meta)``.

    ``data``: the banks (:func:`bank_data`) when the caller has them. ``meta``: ``history`` (per epoch
    ``train_/val_`` ``loss``, ``test_first``, ``test_last``, ``lam``, ``step``, ``lr``, ``seconds``),
    ``initial_val``, ``train_seconds``, ``bank_seconds``, ``loaded``, ``checkpoint``.
    """
    from mtl.siamfc import train_siamfc

    cfg, scfg = _configs(config, siamfc_config, quick)
    device = torch.device(device)
    siamfc, _ = train_siamfc(scfg, quick=quick, device=device, progress=progress)
    return _train_on_bank("dimp", train_key(cfg, scfg), lambda: DiMPNet(siamfc.backbone.out_channels, cfg),
                          DiMPStep(RECIPE.num_train, cfg), lambda m: make_optimizer(m, cfg), cfg=cfg, dcfg=cfg,
                          scfg=scfg, siamfc=siamfc, epochs=cfg.epochs, grad_clip=cfg.grad_clip, quick=quick,
                          device=device, retrain=retrain, progress=progress, directory=directory, data=data)


def load_dimp(checkpoint: str | Path | None = "default", config: DiMPConfig | None = None,
              siamfc_config: SiamFCConfig | None = None, device="cpu") -> DiMPNet:
    """A DiMP predictor in eval mode: ``"default"`` the stored checkpoint of the configs (quick mode: the quick
    one when no full one exists), a path, or ``None`` (untrained; tests)."""
    from mtl.cache import load_into
    from mtl.siamfc import SiamFCNet

    cfg = config or DiMPConfig()
    scfg = siamfc_config or SiamFCConfig()
    qcfg, qscfg = _configs(cfg, scfg, True)
    return load_into(DiMPNet(SiamFCNet.from_config(scfg).backbone.out_channels, cfg), "dimp", checkpoint,
                     train_key(cfg, scfg), train_key(qcfg, qscfg),
                     "run notebooks/05_dimp.ipynb or mtl.dimp.train.train_dimp() to train it", device)


def finetune_key(config: DiMPConfig, finetune: FineTune, siamfc_config: SiamFCConfig) -> dict:
    """The "+FT" checkpoint key: :func:`train_key` and the fine-tuning (which blocks, their lr)."""
    return {**train_key(config, siamfc_config), "finetune": dataclasses.asdict(finetune)}


def finetune_net(backbone, config: DiMPConfig, finetune: FineTune) -> DiMPNet:
    """A predictor whose tail is a copy of the last ``finetune.blocks`` blocks of ``backbone`` (not shared with it)."""
    return DiMPNet(backbone.out_channels, config, tail=copy.deepcopy(backbone[-finetune.blocks:]))


def train_dimp_ft(config: DiMPConfig | None = None, finetune: FineTune = FineTune(),
                  siamfc_config: SiamFCConfig | None = None, *, quick: bool = False, device="cpu",
                  retrain: bool = False, progress: bool = True, directory: str | Path | None = None):
    """Load or train Table 2's "+FT": ``config``'s predictor with the backbone's last ``finetune.blocks`` blocks
    trained too, on a bank of the activations entering them (built once, cached like the conv5 bank).
    ``config`` defaults to the Tables 1-2 variants' (:func:`ablation_config`), so +FT differs from the "+Loss"
    row only in the trained tail (same seed, schedule and sets); ``(net in eval mode, meta)``."""
    from mtl.siamfc import train_siamfc

    cfg, scfg = _configs(config or ablation_config(), siamfc_config, quick)
    device = torch.device(device)
    siamfc, _ = train_siamfc(scfg, quick=quick, device=device, progress=progress)
    return _train_on_bank("dimp_ft", finetune_key(cfg, finetune, scfg), lambda: finetune_net(siamfc.backbone, cfg, finetune),
                          DiMPStep(RECIPE.num_train, cfg), lambda m: make_optimizer(m, cfg, tail_lr=finetune.lr), cfg=cfg,
                          dcfg=cfg, scfg=scfg, siamfc=siamfc, epochs=cfg.epochs, grad_clip=cfg.grad_clip, quick=quick,
                          device=device, retrain=retrain, progress=progress, directory=directory, data=None,
                          blocks=len(siamfc.backbone) - finetune.blocks)


def load_dimp_ft(checkpoint: str | Path | None = "default", config: DiMPConfig | None = None,
                 finetune: FineTune = FineTune(), siamfc_config: SiamFCConfig | None = None, device="cpu") -> DiMPNet:
    """The "+FT" predictor (with its fine-tuned tail) in eval mode; ``checkpoint`` as :func:`load_dimp`, ``config``
    as :func:`train_dimp_ft`."""
    from mtl.cache import load_into
    from mtl.siamfc import SiamFCNet

    cfg = config or ablation_config()
    scfg = siamfc_config or SiamFCConfig()
    qcfg, qscfg = _configs(cfg, scfg, True)
    return load_into(finetune_net(SiamFCNet.from_config(scfg).backbone, cfg, finetune), "dimp_ft", checkpoint,
                     finetune_key(cfg, finetune, scfg), finetune_key(qcfg, finetune, qscfg),
                     "run notebooks/05_dimp.ipynb or mtl.dimp.train.train_dimp_ft() to train it", device)


#: Quick mode for the IoU-Net: one short epoch.
IOUNET_QUICK_OVERRIDES = {"epochs": 1, "sets_per_epoch": 48}


def iounet_key(config: IoUNetConfig, dimp_config: DiMPConfig, siamfc_config: SiamFCConfig) -> dict:
    """The IoU-Net's checkpoint key: its config, the bank it trains on (size and seed from ``dimp_config``)."""
    return {"iounet": dataclasses.asdict(config), "siamfc": siamfc_config.train_key(),
            "bank": {"num_sets": dimp_config.num_sets, "val_sets": dimp_config.val_sets, "seed": dimp_config.seed,
                     "geometry": dataclasses.asdict(GEOMETRY), "recipe": dataclasses.asdict(RECIPE)}}


def train_iounet(config: IoUNetConfig | None = None, dimp_config: DiMPConfig | None = None,
                 siamfc_config: SiamFCConfig | None = None, *, quick: bool = False, device="cpu", retrain: bool = False,
                 progress: bool = True, directory: str | Path | None = None, data: dict | None = None):
    """Load or train the IoU-Net on the bank of ``dimp_config`` (one for every classifier variant); ``(net, meta)``."""
    from mtl.siamfc import train_siamfc

    cfg = config or IoUNetConfig()
    dcfg, scfg = _configs(dimp_config, siamfc_config, quick)
    if quick:
        cfg = dataclasses.replace(cfg, **IOUNET_QUICK_OVERRIDES)
    device = torch.device(device)
    siamfc, _ = train_siamfc(scfg, quick=quick, device=device, progress=progress)

    def optimizer_fn(model):
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, _lr_milestones(cfg.epochs), gamma=cfg.lr_decay)

    return _train_on_bank("iounet", iounet_key(cfg, dcfg, scfg), lambda: IoUNet(siamfc.backbone.out_channels, cfg),
                          IoUStep(RECIPE.num_train, cfg, seed=cfg.seed), optimizer_fn, cfg=cfg, dcfg=dcfg, scfg=scfg,
                          siamfc=siamfc, epochs=cfg.epochs, grad_clip=None, quick=quick, device=device, retrain=retrain,
                          progress=progress, directory=directory, data=data)


def load_iounet(checkpoint: str | Path | None = "default", dimp_config: DiMPConfig | None = None,
                siamfc_config: SiamFCConfig | None = None, config: IoUNetConfig | None = None, device="cpu") -> IoUNet:
    """The IoU-Net in eval mode: ``"default"`` the stored checkpoint (quick mode: the quick one when no full one
    exists), a path, or ``None`` (untrained; tests)."""
    from mtl.cache import load_into
    from mtl.siamfc import SiamFCNet

    cfg = config or IoUNetConfig()
    dcfg = dimp_config or DiMPConfig()
    scfg = siamfc_config or SiamFCConfig()
    qd, qs = _configs(dcfg, scfg, True)
    qcfg = dataclasses.replace(cfg, **IOUNET_QUICK_OVERRIDES)
    return load_into(IoUNet(SiamFCNet.from_config(scfg).backbone.out_channels, cfg), "iounet", checkpoint,
                     iounet_key(cfg, dcfg, scfg), iounet_key(qcfg, qd, qs),
                     "run notebooks/05_dimp.ipynb or mtl.dimp.train.train_iounet() to train it", device)


@torch.no_grad()
def mean_steepest_step(net: DiMPNet, bank: dict, batches: int = 20, batch_size: int = 8) -> float:
    """The mean first steepest-descent step ``exp(beta) alpha`` of ``net`` over the first ``batches`` batches of
    ``bank``: where Table 1's "GD" starts its learned per-coefficient steps (``DiMPConfig.gd_step_init``)."""
    from mtl.dimp.optimizer import gradient_and_jg

    steps = []
    for i, (features, boxes) in enumerate(BankBatches(bank, batch_size, batches * batch_size, shuffle=False)):
        z = net.classification_features(features)
        n = RECIPE.num_train
        f0 = net.initial_filter(z[:, :n], boxes[:, :n])
        y, m, v = net.loss_terms(boxes[:, :n], z.shape[-1])
        w = z.new_full((z.shape[0], n), 1.0 / n)
        g, jg, _ = gradient_and_jg(z[:, :n], f0, y, m, v, w, net.optimizer.lam)
        steps.append(net.optimizer.step_factors(g, jg).flatten())
    return float(torch.cat(steps).mean())


#: Epochs of the Table 1-2 variants: one equal, shorter schedule for all of them (the headline model trains longer).
ABLATION_EPOCHS = 4


def ablation_config() -> DiMPConfig:
    """The full DiMP model on the Tables 1-2 schedule (:data:`ABLATION_EPOCHS`): the "+Loss" row, and "+FT"'s base."""
    return dataclasses.replace(DiMPConfig(), epochs=ABLATION_EPOCHS)


def train_ablations(siamfc_config: SiamFCConfig | None = None, *, quick: bool = False, device="cpu",
                    retrain: bool = False, progress: bool = True, epochs: int = ABLATION_EPOCHS) -> dict:
    """Load or train every variant of :data:`mtl.dimp.net.VARIANTS` on the shared bank with ``epochs`` epochs,
    and Table 2's "+FT" (the full variant with a fine-tuned tail, its learning rate chosen on val:
    :func:`choose_finetune`).

    GD's per-coefficient steps start at the mean first steepest-descent step of the untrained model on the
    val bank (rounded to 4 decimals, so the config and its checkpoint key are reproducible).
    Returns ``{name: (net, meta)}``.
    """
    from mtl.dimp.net import VARIANTS, config_variant
    from mtl.siamfc import train_siamfc
    from mtl.utils import seed_everything

    base = dataclasses.replace(DiMPConfig(), epochs=epochs)
    cfg, scfg = _configs(base, siamfc_config, quick)
    siamfc, _ = train_siamfc(scfg, quick=quick, device=device, progress=progress)
    banks = bank_data(cfg, scfg, siamfc, quick=quick, device=device, progress=progress)
    seed_everything(cfg.seed)
    gd_init = round(mean_steepest_step(DiMPNet(siamfc.backbone.out_channels, cfg), banks["val"],
                                       batches=min(20, max(1, cfg.val_sets // 8))), 4)
    out = {}
    for name in VARIANTS:
        c = config_variant(name, base)
        if name == "gd":
            c = dataclasses.replace(c, gd_step_init=gd_init)
        out[name] = train_dimp(c, siamfc_config, quick=quick, device=device, retrain=retrain, progress=progress,
                               data=banks)
    out["dimp_ft"] = choose_finetune(base, siamfc_config, quick=quick, device=device, retrain=retrain, progress=progress)
    return out


#: The fine-tuned tail's learning rates tried (the spec's 1e-4 and ten times less); the val loss picks one.
FINETUNE_LRS = (1e-4, 1e-5)


def choose_finetune(config: DiMPConfig | None = None, siamfc_config: SiamFCConfig | None = None, *, lrs=FINETUNE_LRS,
                    **kw):
    """Load or train "+FT" (:func:`train_dimp_ft`) at each tail learning rate of ``lrs``; return ``(net, meta)``
    of the one whose last iterate has the lowest test-frame loss on the val bank (training minimises that loss
    averaged over all iterates), with ``meta["val_by_lr"]`` = ``{lr: that loss}``, ``meta["lr"]`` the choice and
    ``meta["runs_by_lr"]`` = ``{lr: {"train_loss", "val_loss" per epoch, "train_seconds", "bank_seconds"}}``."""
    runs = {lr: train_dimp_ft(config, FineTune(lr=lr), siamfc_config, **kw) for lr in lrs}
    val = {lr: float(m["history"]["val_test_last"][-1]) for lr, (_, m) in runs.items()}
    best = min(val, key=val.get)
    net, meta = runs[best]
    by_lr = {lr: {"train_loss": m["history"]["train_loss"], "val_loss": m["history"]["val_test_last"],
                  "train_seconds": m["train_seconds"], "bank_seconds": m.get("bank_seconds")} for lr, (_, m) in runs.items()}
    return net, {**meta, "val_by_lr": val, "lr": best, "runs_by_lr": by_lr}

"""Training GradNet: pairs with (optionally shifted) labels, the loss of the updated template, load-or-train.

Everything goes through the project's one loop :func:`mtl.train.fit` and the config-keyed checkpoint
cache :func:`mtl.cache.load_or_train`; a GradNet checkpoint's key holds its own config and the SiamFC
config it starts from, so retraining SiamFC retrains GradNet.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import numpy as np
import torch

from mtl.backbones import AlexNetV1
from mtl.gradnet.net import GRADNET_QUICK_OVERRIDES, GradNetConfig, GradNetNet
from mtl.ops import image_to_tensor
from mtl.siamfc import SiamFCConfig, SiamFCPairTransform, method_configs, pair_loaders
from mtl.tracker import as_rgb_array

MADE_BY = "notebooks/03_gradnet.ipynb"


class GradNetPairTransform(SiamFCPairTransform):
    """SiamFC's pair transform plus a whole-cell shift of the search crop, with the label moved along.

    ``label_shift`` (cells): with ``augment``, the search crop's centre moves by ``s`` cells (``s`` uniform
    in ``[-label_shift, label_shift]²``, 8 crop pixels a cell) so the target sits ``-s`` cells from the
    map centre, and the label's positive disc sits there too. Without it every label is centred and
    the update could learn "the target is at the centre" (specs §1 d); SiamFC's own ±4 px shift stays
    below a cell and keeps its labels centred.

    ``__call__`` -> ``(z (3, 127, 127), x (3, 239, 239), labels (15, 15))`` float32.
    """

    def __init__(self, config: SiamFCConfig | None = None, augment: bool = True, label_shift: int = 0):
        super().__init__(config, augment)
        self.label_shift = int(label_shift)
        cfg = self.config
        self.map_size = AlexNetV1.output_size(cfg.train_instance_size) - AlexNetV1.output_size(cfg.exemplar_size) + 1

    def __call__(self, z_frame, z_box, x_frame, x_box, rng=None):
        from mtl.updaters import shifted_labels

        cfg = self.config
        r = rng if rng is not None else np.random.default_rng(np.random.randint(2**31))
        cells = np.zeros(2, dtype=np.int64)
        if self.augment and self.label_shift:
            cells = r.integers(-self.label_shift, self.label_shift + 1, size=2)
        z = self.crop(as_rgb_array(z_frame), z_box, cfg.exemplar_size, r)
        x = self.crop(as_rgb_array(x_frame), x_box, cfg.train_instance_size, r, offset=cells * cfg.total_stride)
        labels = shifted_labels(self.map_size, -cells, cfg.positive_radius / cfg.total_stride)
        return image_to_tensor(z)[0], image_to_tensor(x)[0], torch.from_numpy(labels)


class GradNetLoss:
    """``step_fn(model, batch)`` for :func:`mtl.train.fit`: ``L*`` (the loss after the update), plus logs.

    Logs ``loss`` (L*, trained), ``loss_before`` (L of the template before its update) and ``gain``
    (L - L*, what the update bought), each the mean over the batch's templates.
    """

    def __call__(self, model: GradNetNet, batch) -> dict:
        z, x, labels = batch
        out = model(z, model.search_features(x), labels)
        loss_star = out.loss_star.mean()
        before = out.loss.mean().detach()
        return {"loss": loss_star, "loss_before": before, "gain": before - loss_star.detach()}


def gradnet_loaders(config: GradNetConfig, siamfc_config: SiamFCConfig, *, quick: bool, num_workers: int | None = None):
    """``(train_loader, val_loader)`` of GradNet's batches ``(z (B, 3, 127, 127), x (B, 3, 239, 239), labels (B, 15, 15))``.

    Training pairs are shifted by up to ``config.label_shift`` cells (new pairs every epoch, seed
    ``config.seed + 11``: other pairs than SiamFC's 0 and CFNet's 7); validation pairs are SiamFC's
    (seed + 1, no augmentation, centred labels), so the val losses of the notebooks compare.
    """
    transform = functools.partial(GradNetPairTransform, label_shift=config.label_shift)
    return pair_loaders(siamfc_config, transform, quick=quick, epochs=config.epochs,
                        pairs_per_epoch=config.pairs_per_epoch, val_pairs=config.val_pairs,
                        batch_size=config.batch_size, train_seed=config.seed + 11, val_seed=config.seed + 1,
                        num_workers=siamfc_config.num_workers if num_workers is None else num_workers)


def train_key(config: GradNetConfig, siamfc_config: SiamFCConfig) -> dict:
    """The checkpoint key: GradNet's config and the SiamFC training config it starts from."""
    return {"gradnet": dataclasses.asdict(config), "siamfc": siamfc_config.train_key()}


def _configs(config, siamfc_config, quick):
    return method_configs(config or GradNetConfig(), siamfc_config, quick, GRADNET_QUICK_OVERRIDES)


def snapshots_path(checkpoint: str | Path) -> Path:
    """Where the per-epoch snapshots of a checkpoint live: ``<checkpoint>.snapshots.pt`` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".snapshots.pt")


def train_gradnet(config: GradNetConfig | None = None, siamfc_config: SiamFCConfig | None = None, *,
                  quick: bool = False, device="cpu", retrain: bool = False, progress: bool = True,
                  directory: str | Path | None = None, keep_snapshots: bool = True) -> tuple[GradNetNet, dict]:
    """Load the GradNet checkpoint for the configs or train it from SiamFC; ``(net in eval mode, meta)``.

    Steps: load (or train) the SiamFC of ``siamfc_config``; copy it into both branches; calibrate
    ``c`` on ``calibration_batches`` training batches; train the template branch and U2 with SGD on
    ``L*``. ``meta``: ``history`` (per epoch: ``train_loss`` = L*, ``train_loss_before`` = L,
    ``train_gain``, their ``val_`` twins, ``lr``, ``seconds``), ``initial_val`` (the same logs before
    training), ``rms_grad`` and ``grad_scale`` (``c``), ``train_seconds``, ``loaded``, ``checkpoint``.
    With ``keep_snapshots`` the trainable weights after each epoch are kept beside the checkpoint
    (:func:`snapshots_path`).
    """
    from mtl.cache import load_or_train
    from mtl.siamfc import sgd_with_exponential_decay, train_siamfc
    from mtl.train import evaluate_loss, fit
    from mtl.utils import atomic_write_bytes, seed_everything

    cfg, scfg = _configs(config, siamfc_config, quick)
    device = torch.device(device)
    key = train_key(cfg, scfg)
    net = GradNetNet(scfg.width, scfg.out_scale, cfg)
    snapshots: dict[int, dict] = {}

    def train_fn(model: GradNetNet) -> dict:
        siamfc, _ = train_siamfc(scfg, quick=quick, device=device, progress=progress)
        model.load_state_dict(GradNetNet.from_siamfc(siamfc, cfg).state_dict())
        seed_everything(cfg.seed)
        model.to(device)
        train_loader, val_loader = gradnet_loaders(cfg, scfg, quick=quick)
        transform = functools.partial(GradNetPairTransform, label_shift=cfg.label_shift)
        calibration, _ = pair_loaders(scfg, transform, quick=quick, epochs=1,
                                      pairs_per_epoch=cfg.calibration_batches * cfg.batch_size, val_pairs=1,
                                      batch_size=cfg.batch_size, train_seed=cfg.seed + 12, val_seed=0)
        rms = model.calibrate(calibration, device)
        update_params = {name: (cfg.lr_update / cfg.lr_template, cfg.weight_decay)
                         for name, _ in model.named_parameters() if name.startswith("update_branch.")}
        optimizer, scheduler = sgd_with_exponential_decay(
            model, lr_initial=cfg.lr_template, lr_final=cfg.lr_template * cfg.lr_decay, epochs=cfg.epochs,
            momentum=cfg.momentum, weight_decay=cfg.weight_decay, special=update_params)
        step = GradNetLoss()
        initial_val = evaluate_loss(model, step, val_loader, device)
        snapshots[0] = model.trainable_state()

        def keep(epoch, m, history):
            snapshots[epoch] = m.trainable_state()

        start = time.perf_counter()
        history = fit(model, step, train_loader, val_loader, epochs=cfg.epochs, optimizer=optimizer,
                      scheduler=scheduler, device=device, desc=f"GradNet {cfg.variant}", progress=progress,
                      on_epoch_end=keep)
        return {"history": history, "initial_val": initial_val, "rms_grad": rms,
                "grad_scale": float(model.grad_scale), "train_seconds": time.perf_counter() - start,
                "config": key, "variant": cfg.variant, "torch_threads": torch.get_num_threads(),
                "device": str(device), "made_by": MADE_BY}

    meta = load_or_train("gradnet", key, net, train_fn, retrain=retrain, quick=quick, directory=directory,
                         made_by=MADE_BY)
    if snapshots and keep_snapshots:  # trained just now: store the per-epoch weights beside the checkpoint
        import io

        buffer = io.BytesIO()
        torch.save({"config": key, "snapshots": snapshots}, buffer)
        atomic_write_bytes(snapshots_path(meta["checkpoint"]), buffer.getvalue())
    return net.to(device).eval(), meta


def load_snapshots(checkpoint: str | Path) -> dict[int, dict]:
    """The per-epoch trainable weights stored by :func:`train_gradnet` (``{epoch: state}``, epoch 0 = the start)."""
    path = snapshots_path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no snapshots at {path}; retrain with train_gradnet(..., retrain=True)")
    return {int(k): v for k, v in torch.load(path, weights_only=True)["snapshots"].items()}


def load_gradnet(checkpoint: str | Path | None = "default", config: GradNetConfig | None = None,
                 siamfc_config: SiamFCConfig | None = None, device="cpu") -> GradNetNet:
    """A GradNet network in eval mode.

    ``checkpoint``: ``"default"`` -> the stored checkpoint of the configs (in quick mode ``MTL_QUICK=1``
    the quick one when no full one exists); a path -> that file; ``None`` -> GradNet on a randomly
    initialised SiamFC, U2 = 0 (tests). Raises ``FileNotFoundError`` naming the file and how to make it.
    """
    from mtl.cache import default_checkpoint, load_checkpoint
    from mtl.siamfc import SiamFCNet
    from mtl.utils import seed_everything

    cfg = config or GradNetConfig()
    scfg = siamfc_config or SiamFCConfig()
    if checkpoint is None:
        seed_everything(scfg.seed)
        return GradNetNet.from_siamfc(SiamFCNet.from_config(scfg), cfg).to(device).eval()
    if checkpoint == "default":
        path = default_checkpoint("gradnet", train_key(cfg, scfg), train_key(*_configs(cfg, scfg, quick=True)),
                                  f"({cfg.variant}) run notebooks/03_gradnet.ipynb (or mtl.gradnet.train_gradnet()) "
                                  f"to train it, or pass checkpoint=None")
    else:
        path = Path(checkpoint)
    state, meta = load_checkpoint(path)
    stored = meta.get("config", {})
    gcfg = GradNetConfig(**stored["gradnet"]) if "gradnet" in stored else cfg
    width = stored.get("siamfc", {}).get("width", scfg.width)
    out_scale = stored.get("siamfc", {}).get("out_scale", scfg.out_scale)
    net = GradNetNet(width, out_scale, gcfg)
    net.load_state_dict(state)
    return net.to(device).eval()

"""Training the learned updater: clips of cached features, estimated positions, truncated BPTT.

One training *task* is a clip (LU Sec. IV-B): frames ``t = 0 .. T-1`` with search features ``z_t``
``(C, 22, 22)`` cut around the previous frame's ground-truth box, and the target's offset ``o_t`` in
cells from the crop centre (:mod:`mtl.lu.features`). Stepping through the clip (:class:`LUUnroll`)::

    t = 0:  x̄_0 = the centre window of z_0 (the given box);  θ₁ = x̄_0;  θ = θ₁;  h = step(0, θ₁)
    t > 0:  cell = argmax of the response of θ on z_t (estimated position; the ground-truth cell o_t without it)
            x̄_t = the 6x6 window of z_t at that cell;  h = step(h, g(x̄_t))
            every M frames: θ = model(h)
    loss_t = (1 - λ) l_c(θ; z_{t+1}, disc at o_{t+1}) + λ ‖θ - θ₁‖² / ‖θ₁‖²

``l_c`` is the balanced logistic loss of notebook 01 (the paper's Eq. 5 is unbalanced BCE; positives are
4.5% of the cells), counted only where the target is visible in frame t+1. No gradient flows through
the argmax. Truncated BPTT: :class:`ClipWindows` cuts each batch of clips into windows of H steps and
the unroll carries ``h`` and ``θ`` from one window to the next *detached*, so :func:`mtl.train.fit`
(the project's one loop) backpropagates H steps at a time.

**CFNet** (``base="cfnet"``): the features are CFNet's backbone's, ``head`` is CFNet's, and every exemplar
goes through ``g``: the 22x22 map re-centred on the window's cell (whole cells, zeros where the cached crop
ends), then the correlation filter and its centre crop (:class:`mtl.lu.features.CorrelationFilterExemplar`).
Estimated positions use SiamFC's window influence, as CFNet's tracker does with the settings notebook 02
chose for it on val.

Our approximation of the paper (stated in notebook 04): each search crop is centred on the previous
frame's *ground truth*, so an estimation error changes the exemplar the updater absorbs but never moves
the next search region (no accumulating drift in training). Offsets are rounded to whole cells for the
label and the ground-truth window (exact for the window only when the motion is a multiple of 8 crop px).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from mtl.lu.features import cached_clip_features, exemplar_windows
from mtl.lu.net import LU_QUICK_OVERRIDES, LUConfig, LUNet
from mtl.losses import balanced_logistic_loss_per_map
from mtl.ops import cosine_window
from mtl.siamfc import SiamFCConfig, method_configs
from mtl.updaters import shifted_labels

MADE_BY = "mtl.lu.train.train_lu"
#: How the training clips are cut (part of the checkpoint key: a new recipe retrains).
CLIP_RECIPE = "search crops centred on the previous frame's box; labels and ground-truth windows at the rounded offset"


#: The base trackers an updater can be trained for (its target model's space).
BASES = ("siamfc", "cfnet")


def train_key(config: LUConfig, siamfc_config: SiamFCConfig, cfnet_config=None) -> dict:
    """The checkpoint key: LU's config and the SiamFC training config whose frozen backbone it reads; for an
    updater of CFNet also ``cfnet_config`` (:class:`mtl.cfnet.CFNetConfig`, the fine-tuned network it reads)."""
    key = {"lu": dataclasses.asdict(config), "siamfc": siamfc_config.train_key(), "clips": CLIP_RECIPE}
    if cfnet_config is not None:
        key["cfnet"] = dataclasses.asdict(cfnet_config)
        key["cfnet_exemplar"] = CF_EXEMPLAR_RECIPE
    return key


#: How CFNet's training exemplars are made from the cached crops (part of a CFNet updater's key).
CF_EXEMPLAR_RECIPE = "cached map re-centred by whole cells, zeros outside, then the CF layer"


def _configs(config, siamfc_config, quick):
    return method_configs(config or LUConfig(), siamfc_config, quick, LU_QUICK_OVERRIDES)


def _cfnet_config(base: str, cfnet_config, quick: bool):
    """The CFNet config of an updater of ``base`` as trained (quick overrides applied), or None for SiamFC."""
    from mtl.cfnet import CFNET_QUICK_OVERRIDES, CFNetConfig

    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")
    if base == "siamfc":
        if cfnet_config is not None:
            raise ValueError("cfnet_config is for base='cfnet'")
        return None
    cfg = cfnet_config or CFNetConfig()
    return dataclasses.replace(cfg, **CFNET_QUICK_OVERRIDES) if quick else cfg


def base_network(base: str, siamfc_config: SiamFCConfig, cfnet_config=None, *, quick: bool = False, device="cpu",
                 progress: bool = True):
    """``(net, exemplar)``: the frozen network an updater of ``base`` reads (SiamFC's or CFNet's, loaded, or
    trained when missing; its parameters set not to require gradients) and its ``g`` on cached crops
    (:class:`LUUnroll`'s ``exemplar``)."""
    from mtl.lu.features import CorrelationFilterExemplar

    if _cfnet_config(base, cfnet_config, quick) is None:
        from mtl.siamfc import train_siamfc

        net, _ = train_siamfc(siamfc_config, quick=quick, device=device, progress=progress)
        return net.requires_grad_(False), exemplar_windows
    from mtl.cfnet import train_cfnet

    net, _ = train_cfnet(cfnet_config, siamfc_config, quick=quick, device=device, progress=progress)
    return net.requires_grad_(False), CorrelationFilterExemplar(net.cf)


class ClipWindows:
    """Batches of clips cut into truncated-BPTT windows, in order: an iterable for :func:`mtl.train.fit`.

    ``features`` ``(N, T, C, 22, 22)`` (float16 is fine), ``offsets`` ``(N, T, 2)`` cells, ``visible``
    ``(N, T)``. Each epoch shuffles the clips (seeded by ``seed`` and the epoch) into batches of
    ``batch_size`` and yields, per batch, ``ceil((T - 1) / unroll)`` windows ``(z (B, L + 1, C, 22, 22)
    float32, offsets (B, L + 1, 2), visible (B, L + 1), t0)``:
    steps ``t0 .. t0 + L - 1`` plus the frame after the last (its test frame). ``t0 = 0`` starts a
    new batch of clips. ``shuffle=False`` keeps the clips in order (validation).
    """

    def __init__(self, features: torch.Tensor, offsets: torch.Tensor, visible: torch.Tensor, batch_size: int, unroll: int,
                 seed: int = 0, shuffle: bool = True):
        if features.ndim != 5 or visible.shape != features.shape[:2] or offsets.shape != (*features.shape[:2], 2):
            raise ValueError(f"features must be (N, T, C, H, W), offsets (N, T, 2) and visible (N, T), got "
                             f"{tuple(features.shape)}, {tuple(offsets.shape)} and {tuple(visible.shape)}")
        self.features, self.offsets, self.visible = features, offsets, visible
        self.batch_size, self.unroll, self.seed, self.shuffle = int(batch_size), int(unroll), int(seed), bool(shuffle)
        self.epoch = 0

    def _batches(self) -> list[np.ndarray]:
        n = len(self.features)
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n))
        return [order[k:k + self.batch_size] for k in range(0, n, self.batch_size)]

    def _starts(self) -> range:
        return range(0, self.features.shape[1] - 1, self.unroll)

    def __len__(self) -> int:
        return len(self._batches()) * len(self._starts())

    def __iter__(self):
        batches = self._batches()
        self.epoch += 1
        steps = self.features.shape[1] - 1
        for idx in batches:
            idx = torch.from_numpy(idx)
            for t0 in self._starts():
                t1 = min(t0 + self.unroll, steps)
                yield (self.features[idx, t0:t1 + 1].float(), self.offsets[idx, t0:t1 + 1].float(),
                       self.visible[idx, t0:t1 + 1], torch.tensor(t0))


def anchor_loss(theta: torch.Tensor, theta1: torch.Tensor) -> torch.Tensor:
    """``l_a`` per sample ``(B,)``: ``‖θ - θ₁‖² / ‖θ₁‖²``, the paper's Eq. 6 (``‖θ - θ₁‖² / (m m d)``) divided by ``mean(θ₁²)``.

    Dividing by the anchor's own energy makes ``l_a`` free of the feature units, so λ means the same
    for any backbone (the paper's λ = 0.2 is in its own feature units).
    """
    return (theta - theta1).flatten(1).pow(2).sum(1) / theta1.flatten(1).pow(2).sum(1).clamp_min(1e-12)


class LUUnroll:
    """``step_fn(model, window)`` for :func:`mtl.train.fit`: the updater run over one window, its mean loss.

    ``head``: the base tracker's score head (SiamFC's scaled xcorr, CFNet's ``s · xcorr + b``), not trained here. ``config``: λ, M and
    whether positions are estimated. The recurrent state (``h``, ``θ``, ``θ₁``) is carried to the next
    window of the same clips detached (truncated BPTT) and reset when a window starts at ``t0 = 0``.
    ``exemplar``: ``(z (B, C, 22, 22), cells (B, 2)) -> θ' (B, C, 6, 6)``, the exemplar at a cell taken to
    model space (default :func:`mtl.lu.features.exemplar_windows`, SiamFC's ``g`` being the identity;
    CFNet: :class:`mtl.lu.features.CorrelationFilterExemplar`). ``project``: applied to every ``θ'``
    after it (the identity; the truncated-BPTT check perturbs through it). Logs ``loss``,
    ``cls`` (``l_c`` over visible test frames), ``anchor`` (``l_a``) and ``drift`` (``‖θ - θ₁‖ / ‖θ₁‖``
    at the window's last step).
    """

    def __init__(self, head, config: LUConfig, window_influence: float = 0.176, positive_radius_cells: float = 2.0,
                 project=None, exemplar=None):
        self.head, self.config = head, config
        self.exemplar = exemplar or exemplar_windows
        self.window_influence = float(window_influence)
        self.radius = float(positive_radius_cells)
        self.window = torch.from_numpy(cosine_window(17))
        self.project = project or (lambda x: x)
        self.state = None

    def estimated_cells(self, theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``[row, col]`` ``(B, 2)`` of the argmax of θ's response on ``z`` (:meth:`cells_from_response`)."""
        with torch.no_grad():
            return self.cells_from_response(self.head(theta, z)[:, 0])

    def cells_from_response(self, response: torch.Tensor) -> torch.Tensor:
        """``[row, col]`` ``(B, 2)`` of the argmax of ``response`` ``(B, 17, 17)`` after SiamFC's min-shift, sum-normalisation and cosine window."""
        with torch.no_grad():
            r = response.detach()
            r = r - r.flatten(1).min(1).values[:, None, None]
            r = r / (r.flatten(1).sum(1)[:, None, None] + 1e-16)
            r = (1 - self.window_influence) * r + self.window_influence * self.window.to(r)
            flat = r.flatten(1).argmax(1)
            return torch.stack([flat // r.shape[-1], flat % r.shape[-1]], 1)

    def labels(self, offsets: torch.Tensor) -> torch.Tensor:
        """SiamFC's label discs ``(B, 17, 17)`` moved by ``offsets`` ``(B, 2)`` = ``[dx, dy]`` cells (rounded, kept inside)."""
        return torch.from_numpy(np.stack([shifted_labels(17, o, self.radius) for o in offsets.cpu().numpy()]))

    @staticmethod
    def true_cells(offsets: torch.Tensor) -> torch.Tensor:
        """``[row, col]`` ``(B, 2)`` of the 6x6 window at the target: the centre cell 8 moved by the rounded offsets."""
        return (8 + offsets.round().long().flip(1)).clamp(0, 16)

    def __call__(self, model: LUNet, batch) -> dict:
        z, offsets, visible, t0 = batch
        cfg = self.config
        steps = z.shape[1] - 1
        t0 = int(t0)
        if t0 == 0:
            self.state = None
        elif self.state is None:
            raise ValueError(f"a window starting at step {t0} needs the state the previous window of its clips left; "
                             "feed windows in order (ClipWindows does)")
        cls_terms, anchor_terms, weights = [], [], []
        for k in range(steps):
            t = t0 + k
            if t == 0:
                theta1 = self.project(self.exemplar(z[:, 0], self.true_cells(offsets[:, 0])))
                h = model.step(model.initial_state(theta1), theta1)
                theta = theta1
            else:
                # the model in force on frame t made the last step's loss scores on z_t: its response, reused
                h, theta, theta1, response = self.state
                cells = self.cells_from_response(response) if cfg.estimated_position else self.true_cells(offsets[:, k])
                h = model.step(h, self.project(self.exemplar(z[:, k], cells)))
                if t % cfg.interval == 0:
                    theta = model.model(h)
            scores = self.head(theta, z[:, k + 1])[:, 0]
            self.state = (h, theta, theta1, scores.detach())
            vis = visible[:, k + 1].to(z.dtype)
            cls_terms.append(balanced_logistic_loss_per_map(scores, self.labels(offsets[:, k + 1]).to(z)) * vis)
            weights.append(vis)
            anchor_terms.append(anchor_loss(theta, theta1))
        cls = torch.stack(cls_terms).sum() / torch.stack(weights).sum().clamp_min(1.0)
        anchor = torch.stack(anchor_terms).mean()
        loss = (1 - cfg.anchor_weight) * cls + cfg.anchor_weight * anchor
        if torch.is_grad_enabled() and not loss.requires_grad:
            # no model was replaced in this window (the first window when H = M): a zero with a graph
            loss = loss + 0.0 * sum(p.sum() for p in model.parameters())
        h, theta, theta1, response = self.state
        self.state = ([s.detach() for s in h], theta.detach(), theta1.detach(), response)  # the cut of truncated BPTT
        _, theta, theta1, _ = self.state
        drift = float(((theta - theta1).flatten(1).norm(dim=1) / theta1.flatten(1).norm(dim=1)).mean())
        return {"loss": loss, "cls": cls.detach(), "anchor": anchor.detach(), "drift": drift}


def fixed_model_loss(head, features: torch.Tensor, offsets: torch.Tensor, visible: torch.Tensor,
                     positive_radius_cells: float = 2.0, batch: int = 8, exemplar=None) -> float:
    """``l_c`` of *no update* on clips: the first frame's exemplar kept as the model for every later frame.

    The bar a learned updater's ``l_c`` (:class:`LUUnroll`'s ``cls``) must clear on the same clips
    (same labels, same visible frames ``1 .. T-1``). ``features`` ``(N, T, C, 22, 22)``, ``offsets``
    ``(N, T, 2)``, ``visible`` ``(N, T)``; ``exemplar`` as :class:`LUUnroll`'s.
    """
    unroll = LUUnroll(head, LUConfig(), positive_radius_cells=positive_radius_cells, exemplar=exemplar)
    total, count = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(features), batch):
            z, o, v = features[i:i + batch].float(), offsets[i:i + batch], visible[i:i + batch]
            theta1 = unroll.exemplar(z[:, 0], unroll.true_cells(o[:, 0]))
            z, v = z.to(theta1.device), v.to(theta1.device)  # CFNet's exemplar runs on its network's device
            for t in range(1, z.shape[1]):
                loss = balanced_logistic_loss_per_map(head(theta1, z[:, t])[:, 0], unroll.labels(o[:, t]).to(z))
                total += float((loss * v[:, t]).sum())
                count += float(v[:, t].sum())
    return total / max(count, 1.0)


def clip_data(config: LUConfig, siamfc_config: SiamFCConfig, siamfc, *, quick: bool, device="cpu",
              progress: bool = True, splits=("train", "val")) -> dict:
    """The cached clip features of ``splits`` for ``config`` (built from the backbone of ``siamfc``, or of any
    network with a ``backbone``, e.g. CFNet's, when missing): ``{"train": ..., "val": ...}``."""
    from mtl.cache import state_dict_hash

    weights = state_dict_hash(siamfc.backbone.state_dict())
    common = dict(clip_length=config.clip_length, frame_step=config.frame_step, quick=quick, device=device,
                  progress=progress)
    made = {"train": lambda: cached_clip_features(siamfc.backbone, weights, siamfc_config.train_spec, siamfc_config,
                                                  num_clips=config.num_clips, seed=config.seed + 21, **common),
            "val": lambda: cached_clip_features(siamfc.backbone, weights, siamfc_config.val_spec, siamfc_config,
                                                num_clips=config.val_clips, seed=22, **common)}
    unknown = set(splits) - set(made)
    if unknown:
        raise ValueError(f"splits must be among {tuple(made)}, got {sorted(unknown)}")
    return {split: made[split]() for split in splits}


def feature_scale(features: torch.Tensor, exemplar=None, frame_step: int = 5, batch: int = 256) -> float:
    """``s``: the RMS of the exemplars at the crop centres (the ground truth of the previous frame) of ``features``
    ``(N, T, C, 22, 22)``: the centre windows (SiamFC, every frame), or ``exemplar``'s models there (CFNet; every
    ``frame_step``-th frame, in batches)."""
    if exemplar is None:
        return float(features[:, :, :, 8:14, 8:14].float().pow(2).mean().sqrt())
    maps = features[:, ::frame_step].flatten(0, 1)
    centre = torch.tensor([[(features.shape[-2] - 6) // 2, (features.shape[-1] - 6) // 2]])
    total, count = 0.0, 0
    for k in range(0, len(maps), batch):
        theta = exemplar(maps[k:k + batch].float(), centre.expand(len(maps[k:k + batch]), 2))
        total, count = total + float(theta.double().pow(2).sum()), count + theta.numel()
    return (total / max(count, 1)) ** 0.5


def train_lu(config: LUConfig | None = None, siamfc_config: SiamFCConfig | None = None, *, quick: bool = False,
             device="cpu", retrain: bool = False, progress: bool = True, directory: str | Path | None = None,
             data: dict | None = None, base: str = "siamfc", cfnet_config=None) -> tuple[LUNet, dict]:
    """Load the LU checkpoint for the configs or train it on cached clip features; ``(net in eval mode, meta)``.

    Steps: load (or train) the base network (:func:`base_network`: the SiamFC of ``siamfc_config``, or
    with ``base="cfnet"`` the CFNet of ``cfnet_config``, fine-tuned from it); build (or load) the clip
    features of its frozen backbone (``data`` may pass them in, from :func:`clip_data` of that network);
    set ``s``; train the updater with Adam through :func:`mtl.train.fit` and :class:`LUUnroll` (CFNet:
    its head, and exemplars through its correlation filter). ``meta``: ``history`` (per epoch
    ``train_/val_`` ``loss``, ``cls``, ``anchor``, ``drift``, ``lr``, ``seconds``), ``initial_val``,
    ``scale``, ``train_seconds``, ``feature_seconds``, ``loaded``, ``checkpoint``.
    """
    from mtl.cache import load_or_train
    from mtl.train import evaluate_loss, fit
    from mtl.utils import seed_everything

    cfg, scfg = _configs(config, siamfc_config, quick)
    device = torch.device(device)
    key = train_key(cfg, scfg, _cfnet_config(base, cfnet_config, quick))
    siamfc, exemplar = base_network(base, scfg, cfnet_config, quick=quick, device=device, progress=progress)
    net = LUNet(siamfc.backbone.out_channels, cfg)

    def train_fn(model: LUNet) -> dict:
        clips = data or clip_data(cfg, scfg, siamfc, quick=quick, device=device, progress=progress)
        for split, n in (("train", cfg.num_clips), ("val", cfg.val_clips)):
            if tuple(clips[split]["features"].shape[:2]) != (n, cfg.clip_length):
                raise ValueError(f"the {split} clip features are {tuple(clips[split]['features'].shape[:2])} (clips, frames); "
                                 f"this config trains on ({n}, {cfg.clip_length}): build them with clip_data(config, ...)")
        seed_everything(cfg.seed)
        scale = feature_scale(clips["train"]["features"], None if base == "siamfc" else exemplar)
        model.load_state_dict(LUNet(siamfc.backbone.out_channels, cfg, scale).state_dict())
        model.to(device)
        train_loader = ClipWindows(clips["train"]["features"], clips["train"]["offsets"], clips["train"]["visible"],
                                   cfg.batch_size, cfg.unroll, seed=cfg.seed)
        val_loader = ClipWindows(clips["val"]["features"], clips["val"]["offsets"], clips["val"]["visible"],
                                 cfg.batch_size, cfg.unroll, shuffle=False)
        step = LUUnroll(siamfc.head, cfg, scfg.window_influence, scfg.positive_radius / scfg.total_stride,
                        exemplar=exemplar)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gamma = cfg.lr_decay ** (1 / max(cfg.epochs - 1, 1))
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
        initial_val = evaluate_loss(model, step, val_loader, device)
        start = time.perf_counter()
        history = fit(model, step, train_loader, val_loader, epochs=cfg.epochs, optimizer=optimizer, scheduler=scheduler,
                      device=device, desc=f"LU ({base}) λ={cfg.anchor_weight:g}", grad_clip=cfg.grad_clip, progress=progress)
        return {"history": history, "initial_val": initial_val, "scale": float(model.scale),
                "train_seconds": time.perf_counter() - start, "feature_seconds": {k: v["seconds"] for k, v in clips.items()},
                "features_loaded": {k: v["loaded"] for k, v in clips.items()}, "config": key,
                "torch_threads": torch.get_num_threads(), "device": str(device), "made_by": MADE_BY, "base": base}

    meta = load_or_train("lu", key, net, train_fn, retrain=retrain, quick=quick, directory=directory, made_by=MADE_BY)
    return net.to(device).eval(), meta


def load_lu(checkpoint: str | Path | None = "default", config: LUConfig | None = None,
            siamfc_config: SiamFCConfig | None = None, device="cpu", base: str = "siamfc", cfnet_config=None) -> LUNet:
    """An LU updater network in eval mode (of SiamFC's target model, or with ``base="cfnet"`` of CFNet's).

    ``checkpoint``: ``"default"`` -> the stored checkpoint of the configs (in quick mode ``MTL_QUICK=1``
    the quick one when no full one exists); a path -> that file; ``None`` -> an untrained updater
    (``s = 1``; tests). Raises ``FileNotFoundError`` naming the file and how to make it.
    """
    from mtl.cache import load_into
    from mtl.siamfc import SiamFCNet

    cfg = config or LUConfig()
    scfg = siamfc_config or SiamFCConfig()
    qcfg, qscfg = _configs(cfg, scfg, True)
    return load_into(LUNet(SiamFCNet.from_config(scfg).backbone.out_channels, cfg), "lu", checkpoint,
                     train_key(cfg, scfg, _cfnet_config(base, cfnet_config, False)),
                     train_key(qcfg, qscfg, _cfnet_config(base, cfnet_config, True)),
                     f"run notebooks/04_learning_to_update.ipynb or mtl.lu.train_lu(base={base!r}) to train it", device)

"""SiamFC (Bertinetto et al., 2016): network, training pairs, training, and the tracker.

The pieces, in the order notebook 01 builds them:

* :class:`SiamFCNet` = :class:`mtl.backbones.AlexNetV1` (shared by both branches) +
  :class:`mtl.heads.SiamFCHead` (scaled cross-correlation).
* :class:`SiamFCPairTransform`: exemplar/search crops of a training pair with the paper's context
  rule and siamfc-pytorch's augmentations (random stretch, random shift).
* :func:`train_siamfc`: pairs from the synthetic train split, balanced logistic loss, SGD with an
  exponentially decaying learning rate, through the project's one loop :func:`mtl.train.fit` and
  the config-keyed checkpoint cache :func:`mtl.cache.load_or_train`.
* :class:`SiamFCTracker`: crop with mean padding, multi-scale search, cosine window, scale
  penalty and damping, x16 bicubic upsampling; with an explicit *target model* ``template`` and an
  ``updater`` hook for notebook 02 onwards.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch
from torch import nn

from mtl import openmp_spin
from mtl.backbones import AlexNetV1
from mtl.eval import register_tracker
from mtl.heads import SiamFCHead, default_out_scale
from mtl.losses import balanced_logistic_loss, siamfc_labels
from mtl.ops import (box_to_center, center_to_box, context_size, cosine_window, crop_and_resize,
                     image_to_tensor, upsample_maps)
from mtl.tracker import Tracker, as_box, as_rgb_array, with_options

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiamFCConfig:
    """Every SiamFC hyperparameter; the defaults are the paper's / siamfc-pytorch's unless noted.

    Override with ``dataclasses.replace(cfg, field=value)`` or ``SiamFCConfig(field=value)``.

    Departures from the paper (all for the 2-core CPU budget; the notebook discusses them):

    * ``width = 0.25``: the backbone has a quarter of AlexNet's channels (24-64-96-96-64 instead
      of 96-256-384-384-256; 0.15 M instead of 2.3 M parameters), about 4x faster.
    * ``out_scale = None`` means ``0.001 * 256 / C`` (see :func:`mtl.heads.default_out_scale`),
      i.e. the paper's 0.001 rescaled for the narrower feature maps.
    * ``epochs`` x ``pairs_per_epoch`` = 20 x 1,500 = 30 k pairs from the synthetic train split
      (every epoch draws new pairs), instead of 50 epochs x 53 k pairs from ImageNet VID; the
      learning rate still decays 1e-2 -> 1e-5 exponentially, once per epoch.
    * Crop sizes are the paper's: exemplar 127, search 255 for tracking; 255 - 2 * 8 = 239 for
      training (siamfc-pytorch crops the random-shift margin away, so training maps are 15x15).
    * Augmentation (stretch 0.05, shift +-4 px), the training-frame filter (more than 30% of the target
      visible) and the initialisation (Xavier-uniform convolutions) are siamfc-pytorch's. Until the
      2026-11 retraining the shift was +-8 px, frames with 10% visible were used and the init was
      Kaiming-normal; notebook 01 reports the val loss of the retrained network next to the old one.
    """

    # model
    width: float = 0.25
    out_scale: float | None = None
    init: str = "xavier"  # siamfc-pytorch's Xavier-uniform; "kaiming" was this project's first recipe
    # geometry
    exemplar_size: int = 127
    instance_size: int = 255
    context: float = 0.5
    total_stride: int = 8
    # training
    positive_radius: float = 16.0  # pixels in the search crop; / total_stride = 2 cells
    max_stretch: float = 0.05
    max_shift: int = 4  # siamfc-pytorch: CenterCrop(255 - 8) then RandomCrop(255 - 16), i.e. +-4 px
    train_margin: int = 8  # training search crops are instance_size - 2 * 8 = 239 px (15x15 maps)
    min_cover: float = 0.3  # training frames show more than 30% of the target (siamfc-pytorch's cover rule)
    epochs: int = 20
    pairs_per_epoch: int = 1500
    val_pairs: int = 200
    batch_size: int = 8
    lr_initial: float = 1e-2
    lr_final: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_gap: int = 100
    num_workers: int = 1  # one process renders frames while the main one trains (2 cores)
    train_spec: str = "synth:train"
    val_spec: str = "synth:val"
    data_seed: int = 0  # the benchmark's generator seed (0: the benchmark every notebook uses)
    seed: int = 0  # initialisation, pair sampling and augmentation
    # tracking
    num_scales: int = 3
    scale_step: float = 1.0375
    scale_penalty: float = 0.9745
    scale_lr: float = 0.59
    window_influence: float = 0.176
    response_up: int = 16
    response_size: int = 17
    min_scale_factor: float = 0.2  # the MatConvNet SiamFC's limits on the size change
    max_scale_factor: float = 5.0
    # inference speed (does not change the boxes beyond float rounding; notebook 01 checks it)
    channels_last: bool = True  # backbone input in channels_last layout; False: the old NCHW path

    #: Fields that change the trained weights (the checkpoint key); the rest only change tracking.
    TRAIN_FIELDS = ("width", "out_scale", "init", "exemplar_size", "instance_size", "context", "total_stride",
                    "positive_radius", "max_stretch", "max_shift", "train_margin", "min_cover", "epochs", "pairs_per_epoch", "val_pairs",
                    "batch_size", "lr_initial", "lr_final", "momentum", "weight_decay", "max_gap",
                    "train_spec", "val_spec", "data_seed", "seed")

    def __post_init__(self):
        if self.num_scales < 1 or self.num_scales % 2 == 0:
            raise ValueError(f"num_scales must be odd and >= 1, got {self.num_scales}")
        if self.instance_size <= self.exemplar_size:
            raise ValueError("instance_size must exceed exemplar_size")
        if self.exemplar_size % 2 == 0 or self.instance_size % 2 == 0:
            raise ValueError("exemplar_size and instance_size must be odd so the crops have a centre pixel")
        if not 0 <= self.window_influence <= 1:
            raise ValueError(f"window_influence must be in [0, 1], got {self.window_influence}")

    @property
    def train_instance_size(self) -> int:
        """Search crop side during training: ``instance_size - 2 * train_margin`` (239)."""
        return self.instance_size - 2 * self.train_margin

    def train_key(self) -> dict:
        """The training-relevant fields as a plain dict (checkpoint cache key)."""
        return {k: getattr(self, k) for k in self.TRAIN_FIELDS}


#: Quick mode: a smoke test of the whole pipeline in seconds (the numbers mean nothing).
QUICK_OVERRIDES = {"epochs": 1, "pairs_per_epoch": 48, "val_pairs": 16}


def quick_config(config: SiamFCConfig | None = None) -> SiamFCConfig:
    """``config`` (default :class:`SiamFCConfig`) with :data:`QUICK_OVERRIDES` applied."""
    return dataclasses.replace(config or SiamFCConfig(), **QUICK_OVERRIDES)


def search_side(size, config: SiamFCConfig) -> float:
    """Side in image pixels of the search region around a target of ``size = [w, h]``: the exemplar's context
    square (:func:`mtl.ops.context_size`) scaled by ``instance_size / exemplar_size`` (255 / 127)."""
    return context_size(size, config.context) * config.instance_size / config.exemplar_size


def method_configs(config, siamfc_config: SiamFCConfig | None, quick: bool, quick_overrides: dict):
    """``(config, SiamFC config)`` of a method built on SiamFC (GradNet, LU ...), both in quick mode when ``quick``.

    ``config``: the method's frozen dataclass; ``quick_overrides``: its quick-mode field changes;
    ``siamfc_config`` defaults to :class:`SiamFCConfig` (quick mode: :func:`quick_config` of it).
    """
    scfg = siamfc_config or SiamFCConfig()
    if quick:
        return dataclasses.replace(config, **quick_overrides), quick_config(scfg)
    return config, scfg


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


class SiamFCNet(nn.Module):
    """Siamese network: one backbone for both branches, then the cross-correlation head.

    ``forward(z, x)``: exemplar images ``(B, 3, 127, 127)`` and search images ``(B*k, 3, S, S)``
    (float, 0..255) -> scores ``(B*k, 1, (S - 255) / 8 + 17, ...)``: 17x17 for S = 255, 15x15 for 239.
    """

    def __init__(self, width: float = 0.25, out_scale: float | None = None, init: str = "xavier"):
        super().__init__()
        self.backbone = AlexNetV1(width, init)
        self.head = SiamFCHead(default_out_scale(self.backbone.out_channels) if out_scale is None else out_scale)

    @classmethod
    def from_config(cls, config: SiamFCConfig) -> "SiamFCNet":
        return cls(config.width, config.out_scale, config.init)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(z), self.backbone(x))


# ---------------------------------------------------------------------------------------------
# Training pairs
# ---------------------------------------------------------------------------------------------


class SiamFCPairTransform:
    """Turn a training pair (two frames and their boxes) into exemplar and search crops.

    Both frames are cropped around their *own* target box with SiamFC's context rule, so the
    target sits at the centre of both crops at the same scale; the label map is then the same
    for every pair. Augmentations as siamfc-pytorch's ``RandomStretch`` + ``CenterCrop(255 - 8)`` +
    ``RandomCrop(255 - 16)``: a random scale ``1 + U(-max_stretch, max_stretch)`` (0.05) and a random
    shift of up to ``max_shift`` = 4 crop pixels each way, done in the same single warp as the crop
    (:func:`mtl.ops.crop_and_resize`). Frames showing no more than ``min_cover`` of the target are
    never drawn (:class:`mtl.samplers.PairSampler`).

    ``__call__(z_frame, z_box, x_frame, x_box, rng=None)`` -> ``(z, x)`` float32 tensors
    ``(3, 127, 127)`` and ``(3, 239, 239)``, values 0..255. ``rng``: a NumPy Generator (None: NumPy's
    global generator); :class:`AugmentedPairs` passes one seeded per item.
    """

    def __init__(self, config: SiamFCConfig | None = None, augment: bool = True):
        self.config = config or SiamFCConfig()
        self.augment = augment

    def crop(self, frame: np.ndarray, box, out_size: int, rng=None, offset=(0, 0)) -> np.ndarray:
        """One augmented crop ``(out_size, out_size, 3)`` uint8 of ``frame`` around ``box``.

        ``offset``: ``[dx, dy]`` crop pixels added to the random shift (the crop's centre moves by it,
        so the target appears ``-offset`` from the centre); GradNet's shifted labels use it.
        """
        cfg = self.config
        center, size = box_to_center(box)
        # image pixels per search-crop pixel: the 255 search region spans z_sz * 255 / 127
        pixels_per_crop_px = context_size(size, cfg.context) / cfg.exemplar_size
        stretch, shift = 1.0, np.zeros(2)
        if self.augment:
            r = rng if rng is not None else np.random.default_rng(np.random.randint(2**31))
            stretch = 1.0 + r.uniform(-cfg.max_stretch, cfg.max_stretch)
            shift = r.integers(-cfg.max_shift, cfg.max_shift + 1, size=2)
        per = pixels_per_crop_px / stretch
        return crop_and_resize(frame, center + (shift + np.asarray(offset)) * per, out_size * per, out_size)

    def __call__(self, z_frame, z_box, x_frame, x_box, rng=None) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        z = self.crop(as_rgb_array(z_frame), z_box, cfg.exemplar_size, rng)
        x = self.crop(as_rgb_array(x_frame), x_box, cfg.train_instance_size, rng)
        return image_to_tensor(z)[0], image_to_tensor(x)[0]


class SiamFCLoss:
    """``loss_fn(model, batch)``: the balanced logistic loss of a batch ``(z, x)`` (the ``step_fn`` of :func:`mtl.train.fit`).

    Label maps depend only on the score-map size, so they are built once per size and device.
    """

    def __init__(self, config: SiamFCConfig | None = None):
        self.config = config or SiamFCConfig()
        self._labels: dict[tuple, torch.Tensor] = {}

    def labels(self, size: int, device) -> torch.Tensor:
        """Label map ``(size, size)`` float32 on ``device`` (positives within ``positive_radius / stride`` cells)."""
        key = (size, str(device))
        if key not in self._labels:
            r = self.config.positive_radius / self.config.total_stride
            self._labels[key] = torch.from_numpy(siamfc_labels(size, r)).to(device)
        return self._labels[key]

    def __call__(self, model: nn.Module, batch) -> torch.Tensor:
        z, x = batch
        scores = model(z, x)
        return balanced_logistic_loss(scores, self.labels(scores.shape[-1], scores.device))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


class AugmentedPairs(torch.utils.data.Dataset):
    """Pairs of :class:`mtl.samplers.PairSampler` through :class:`SiamFCPairTransform`, item ``i`` deterministic.

    The augmentation of item ``i`` draws from ``np.random.default_rng([seed, i])``, so an item is the
    same whichever worker loads it and in whatever order. Item: ``(z (3, 127, 127), x (3, 239, 239))``.
    """

    def __init__(self, pairs, transform: SiamFCPairTransform, seed: int):
        self.pairs, self.transform, self.seed = pairs, transform, int(seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        z_frame, z_box, x_frame, x_box = self.pairs[i]
        return self.transform(z_frame, z_box, x_frame, x_box, rng=np.random.default_rng([self.seed, int(i)]))


class FreshPairsPerEpoch(torch.utils.data.Sampler):
    """Index sampler over ``epochs * per_epoch`` deterministic items: epoch ``e`` draws items ``[e*n, (e+1)*n)``.

    Each pass over the loader (one epoch of :func:`mtl.train.fit`) sees new pairs, yet the whole
    run is reproducible because item ``i`` of the pair sampler depends only on ``(seed, i)``.
    """

    def __init__(self, per_epoch: int, epochs: int):
        self.per_epoch, self.epochs, self.epoch = int(per_epoch), int(epochs), 0

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self):
        start = (self.epoch % max(self.epochs, 1)) * self.per_epoch
        self.epoch += 1
        return iter(range(start, start + self.per_epoch))


def pair_loaders(geometry: SiamFCConfig, transform_cls, *, quick: bool, epochs: int, pairs_per_epoch: int,
                 val_pairs: int, batch_size: int, train_seed: int, val_seed: int, num_workers: int = 0):
    """Training and validation loaders of augmented pairs, shared by SiamFC and the trackers built on it.

    ``geometry`` gives the splits (``train_spec``/``val_spec``, ``data_seed``), ``max_gap`` and the crop
    geometry for ``transform_cls(geometry, augment=...)``; every epoch draws ``pairs_per_epoch`` new
    training pairs; validation pairs are not augmented, so each epoch's validation loss is comparable.
    Returns ``(train_loader, val_loader)`` yielding the transform's batches.
    """
    from torch.utils.data import DataLoader

    from mtl.data import load_dataset
    from mtl.samplers import PairSampler

    train_seqs = load_dataset(geometry.train_spec, quick=quick, seed=geometry.data_seed)
    val_seqs = load_dataset(geometry.val_spec, quick=quick, seed=geometry.data_seed)
    train = AugmentedPairs(PairSampler(train_seqs, epochs * pairs_per_epoch, max_gap=geometry.max_gap, seed=train_seed,
                                       min_cover=geometry.min_cover),
                           transform_cls(geometry, augment=True), train_seed)
    val = AugmentedPairs(PairSampler(val_seqs, val_pairs, max_gap=geometry.max_gap, seed=val_seed,
                                     min_cover=geometry.min_cover),
                         transform_cls(geometry, augment=False), val_seed)
    loader_kw = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)
    return (DataLoader(train, sampler=FreshPairsPerEpoch(pairs_per_epoch, epochs), **loader_kw),
            DataLoader(val, shuffle=False, **loader_kw))


def sgd_with_exponential_decay(model: nn.Module, *, lr_initial: float, lr_final: float, epochs: int,
                               momentum: float, weight_decay: float, special: dict | None = None):
    """SiamFC's optimiser: SGD whose learning rate decays ``lr_initial -> lr_final`` over ``epochs`` (stepped per epoch).

    ``special``: ``{parameter name: (lr multiplier, weight decay)}`` for parameters that train at
    their own rate (CFNet's output scale and bias); every other parameter gets ``lr_initial`` and
    ``weight_decay``. The decay multiplies every group's rate alike, so multipliers persist.
    """
    special = special or {}
    named = dict(model.named_parameters())
    unknown = sorted(set(special) - set(named))
    if unknown:
        raise KeyError(f"no parameters named {unknown} in the model")
    groups = [{"params": [p for n, p in named.items() if n not in special]}]
    groups += [{"params": [named[n]], "lr": lr_initial * mult, "weight_decay": wd} for n, (mult, wd) in special.items()]
    optimizer = torch.optim.SGD(groups, lr=lr_initial, momentum=momentum, weight_decay=weight_decay)
    gamma = (lr_final / lr_initial) ** (1.0 / max(epochs, 1))
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)


def train_siamfc(config: SiamFCConfig | None = None, *, quick: bool = False, device="cpu", retrain: bool = False,
                 progress: bool = True, directory: str | Path | None = None) -> tuple[SiamFCNet, dict]:
    """Load the SiamFC checkpoint for ``config`` or train it; return ``(net in eval mode on device, meta)``.

    ``quick``: apply :data:`QUICK_OVERRIDES` and use the quick dataset and checkpoint folder.
    ``directory``: checkpoint folder instead of the default one (see :func:`mtl.cache.load_or_train`).
    ``meta`` holds ``history`` (see :func:`mtl.train.fit`), ``train_seconds``, ``config``
    (the training fields), ``loaded`` and ``checkpoint``.
    """
    from mtl.cache import load_or_train
    from mtl.train import fit
    from mtl.utils import seed_everything

    cfg = config or SiamFCConfig()
    if quick:
        cfg = quick_config(cfg)
    device = torch.device(device)
    seed_everything(cfg.seed)
    net = SiamFCNet.from_config(cfg)

    def train_fn(model: nn.Module) -> dict:
        seed_everything(cfg.seed)
        model.to(device)
        train_loader, val_loader = pair_loaders(
            cfg, SiamFCPairTransform, quick=quick, epochs=cfg.epochs, pairs_per_epoch=cfg.pairs_per_epoch,
            val_pairs=cfg.val_pairs, batch_size=cfg.batch_size, train_seed=cfg.seed, val_seed=cfg.seed + 1,
            num_workers=cfg.num_workers)
        optimizer, scheduler = sgd_with_exponential_decay(model, lr_initial=cfg.lr_initial, lr_final=cfg.lr_final,
                                                          epochs=cfg.epochs, momentum=cfg.momentum,
                                                          weight_decay=cfg.weight_decay)
        start = time.perf_counter()
        history = fit(model, SiamFCLoss(cfg), train_loader, val_loader, epochs=cfg.epochs, optimizer=optimizer,
                      scheduler=scheduler, device=device, desc="SiamFC", progress=progress)
        return {"history": history, "train_seconds": time.perf_counter() - start, "config": cfg.train_key(),
                "torch_threads": torch.get_num_threads(), "device": str(device),
                "made_by": "notebooks/01_siamfc.ipynb"}

    meta = load_or_train("siamfc", cfg.train_key(), net, train_fn, retrain=retrain, quick=quick,
                         directory=directory, made_by="notebooks/01_siamfc.ipynb")
    return net.to(device).eval(), meta


def load_siamfc(checkpoint: str | Path | None = "default", config: SiamFCConfig | None = None,
                device="cpu") -> SiamFCNet:
    """A SiamFC network in eval mode.

    ``checkpoint``: ``"default"`` -> the stored checkpoint of ``config`` (full mode; in quick mode
    ``MTL_QUICK=1`` the quick one when no full one exists); a path -> that file (its stored
    training config decides the width); ``None`` -> randomly initialised (tests, smoke runs).
    Raises ``FileNotFoundError`` naming the file and how to make it.
    """
    from mtl.cache import default_checkpoint, load_checkpoint
    from mtl.utils import seed_everything

    cfg = config or SiamFCConfig()
    if checkpoint is None:
        seed_everything(cfg.seed)
        return SiamFCNet.from_config(cfg).to(device).eval()
    if checkpoint == "default":
        path = default_checkpoint("siamfc", cfg.train_key(), quick_config(cfg).train_key(),
                                  "run notebooks/01_siamfc.ipynb (or `mtl reproduce --only 01`) to train it, "
                                  "or pass checkpoint=None for an untrained network")
    else:
        path = Path(checkpoint)
    state, meta = load_checkpoint(path)
    stored = meta.get("config", {})
    net = SiamFCNet(stored.get("width", cfg.width), stored.get("out_scale", cfg.out_scale))
    net.load_state_dict(state)
    return net.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Tracker
# ---------------------------------------------------------------------------------------------


def penalize_scale_changes(peaks: np.ndarray, penalties: np.ndarray) -> np.ndarray:
    """Peak scores ``(K,)`` of the K scales after the scale penalty ``(K,)`` (1 for the unchanged scale).

    The reference multiplies the raw peaks by the penalty (< 1), which lowers a positive peak but
    *raises* a negative one (-2 * 0.97 = -1.94): when every scale scores below zero, as our logits do
    on hard frames, a changed scale would win. Dividing negative peaks instead keeps it a penalty
    for any sign, and equals the reference whenever the peak is positive.
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    penalties = np.asarray(penalties, dtype=np.float64)
    return np.where(peaks >= 0, peaks * penalties, peaks / penalties)


@dataclass
class SearchResult:
    """What :meth:`SiamFCTracker.respond` found on one frame (all in the coordinates of that frame).

    responses: raw scores ``(K, 17, 17)`` float32, one map per scale (logits of the head).
    scale_factors: ``(K,)`` the search sizes relative to the current one.
    scale_index: index of the chosen scale (after the scale penalty).
    response: the chosen map upsampled to ``(272, 272)``, min-shifted, sum-normalised and blended with
        the cosine window: the map whose argmax gives the displacement.
    peak: ``(2,)`` ``[col, row]`` of its argmax.
    score: the raw (logit) peak of the chosen scale's upsampled map, before normalisation (the
        tracker's confidence; comparable across frames).
    center: ``(2,)`` the new target centre ``[cx, cy]`` in image pixels; scale: the damped size change.
    search_center, search_size: where the search crops were taken (``search_size`` of scale 1).
    crops: the search crops ``(K, 255, 255, 3)`` uint8; features: their backbone features ``(K, C, 22, 22)``.
    """

    responses: np.ndarray
    scale_factors: np.ndarray
    scale_index: int
    response: np.ndarray
    peak: np.ndarray
    score: float
    center: np.ndarray
    scale: float
    search_center: np.ndarray
    search_size: float
    crops: np.ndarray
    features: torch.Tensor


class SiamFCTracker(Tracker):
    """The SiamFC tracker, with an explicit target model and an update hook.

    State: ``center`` ``(2,)`` and ``target_size`` ``(2,)`` in image pixels; ``z_size`` / ``x_size``
    the exemplar / search region sides; ``template0`` the first frame's exemplar features
    ``(1, C, 6, 6)``; ``template`` the *current target model* (the correlation filter the search
    features are scored with; equals ``template0`` unless an updater changed it).

    Update hook (notebook 02 on): ``updater`` is any object with
    ``step(tracker, image, box, result) -> torch.Tensor | None``, called after the box of a frame
    is found, on every ``update_interval``-th frame and only when ``result.score >=
    confidence_threshold`` (None: always). A returned tensor ``(1, C, 6, 6)`` becomes the new
    ``template``; None keeps it. An updater may also define ``reset(tracker, image, box)``, called
    at the end of :meth:`init` (to clear its memory). Updaters reuse :meth:`extract_template` and the
    features in ``result``; plain SiamFC is ``updater=None``.

    Tracking options (any :class:`SiamFCConfig` field, e.g. ``window_influence=0``) may be passed
    as keyword arguments; they do not touch the network.
    """

    name = "siamfc"

    def __init__(self, net: SiamFCNet, config: SiamFCConfig | None = None, *, device="cpu", updater=None,
                 update_interval: int = 1, confidence_threshold: float | None = None, name: str | None = None,
                 **options):
        super().__init__(name=name, is_deterministic=True)
        self.config = with_options(config or SiamFCConfig(), options, "SiamFC tracker")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        if update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {update_interval}")
        self.updater = updater
        self.update_interval = int(update_interval)
        self.confidence_threshold = confidence_threshold
        c = self.config
        self.upscale_size = c.response_up * c.response_size
        self.window = cosine_window(self.upscale_size)
        self.window_term = c.window_influence * self.window  # the window's share of the blend, the same every frame
        half = c.num_scales // 2
        self.scale_factors = c.scale_step ** np.linspace(-half, half, c.num_scales)
        self.scale_penalties = np.where(np.arange(c.num_scales) == half, 1.0, c.scale_penalty)
        self.last_result: SearchResult | None = None

    def fingerprint(self) -> dict:
        """Config, network weights (SHA-256 of the state dict), device, updater and its gating: what decides the boxes."""
        from mtl.cache import state_dict_hash

        return {**super().fingerprint(), "config": dataclasses.asdict(self.config),
                "weights": state_dict_hash(self.net.state_dict()), "device": self.device.type,
                "updater": None if self.updater is None else self.updater.fingerprint(),
                "update_interval": self.update_interval, "confidence_threshold": self.confidence_threshold}

    def update_log(self) -> list | None:
        """The updater's ``updates`` list when it keeps one (SGD, GradNet ...), else None."""
        return getattr(self.updater, "updates", None)

    # -- pieces updaters reuse ---------------------------------------------------------------

    @torch.no_grad()  # not inference_mode: updaters may differentiate through these features later
    def features(self, crops: np.ndarray) -> torch.Tensor:
        """Backbone features of crops ``(K, S, S, 3)`` uint8 -> ``(K, C, s, s)`` float32 on the tracker's device.

        With ``config.channels_last`` the input (and so every conv output) is in the channels_last
        layout, the fast one for CPU convolutions; values agree with the NCHW path to float rounding.
        """
        return self.net.backbone(image_to_tensor(crops, self.config.channels_last).to(self.device))

    def exemplar_crop(self, image: np.ndarray, box) -> np.ndarray:
        """The 127x127x3 uint8 exemplar crop of ``box`` (context rule, padded with the image mean)."""
        center, size = box_to_center(box)
        return crop_and_resize(as_rgb_array(image), center, context_size(size, self.config.context),
                               self.config.exemplar_size)

    def extract_template(self, image, box) -> torch.Tensor:
        """Exemplar features ``(1, C, 6, 6)`` of the object in ``box`` on ``image`` (the target model SiamFC would build there)."""
        return self.features(self.exemplar_crop(image, box)[None])

    @torch.no_grad()
    def respond(self, image) -> SearchResult:
        """Search ``image`` around the current state with the current ``template``; do not change the state."""
        c = self.config
        image = as_rgb_array(image)
        search_sizes = self.x_size * self.scale_factors
        crops = crop_and_resize(image, self.center, search_sizes, c.instance_size, pad_value=self.pad_color)
        feats = self.features(crops)
        responses = self.net.head(self.template, feats)[:, 0].cpu().numpy()  # (K, 17, 17)
        up = upsample_maps(responses, self.upscale_size)  # (K, 272, 272)
        maxima = up.max(axis=(1, 2))
        k = int(np.argmax(penalize_scale_changes(maxima, self.scale_penalties)))
        score = float(maxima[k])
        response = up[k] - up[k].min()
        response /= response.sum() + 1e-16
        response = (1 - c.window_influence) * response + self.window_term
        row, col = np.unravel_index(int(np.argmax(response)), response.shape)
        # displacement: upsampled map -> search crop pixels (stride 8 / x16) -> image pixels
        disp_map = np.array([col, row], dtype=np.float64) - (self.upscale_size - 1) / 2
        disp_crop = disp_map * c.total_stride / c.response_up
        disp_image = disp_crop * search_sizes[k] / c.instance_size
        scale = (1 - c.scale_lr) + c.scale_lr * self.scale_factors[k]
        return SearchResult(responses=responses, scale_factors=self.scale_factors.copy(), scale_index=k,
                            response=response, peak=np.array([col, row]), score=score,
                            center=self.center + disp_image, scale=float(scale),
                            search_center=self.center.copy(), search_size=float(self.x_size),
                            crops=crops, features=feats)

    # -- the protocol ------------------------------------------------------------------------

    def init(self, image, box) -> None:
        """Build the target model from ``box`` (``x, y, w, h``) on the first ``image``."""
        c = self.config
        image = as_rgb_array(image)
        self.center, self.target_size = box_to_center(as_box(box))
        self.initial_size = self.target_size.copy()
        self.image_size = np.array([image.shape[1], image.shape[0]], dtype=np.float64)
        self.pad_color = image.mean(axis=(0, 1))
        self.z_size = context_size(self.target_size, c.context)
        self.x_size = self.z_size * c.instance_size / c.exemplar_size
        self.initial_z_size = self.z_size
        self.template0 = self.extract_template(image, box)
        self.template = self.template0.clone()
        self.frame_index = 0
        self.last_result = None
        if self.updater is not None and hasattr(self.updater, "reset"):
            self.updater.reset(self, image, as_box(box))

    def update(self, image) -> np.ndarray:
        """Locate the target in the next ``image``; return its box ``[x, y, w, h]`` float64 ``(4,)``."""
        c = self.config
        image = as_rgb_array(image)
        result = self.respond(image)
        # limit the accumulated size change as the MatConvNet SiamFC does (0.2x .. 5x the first size)
        ratio = np.clip(self.z_size * result.scale / self.initial_z_size, c.min_scale_factor, c.max_scale_factor)
        scale = ratio * self.initial_z_size / self.z_size
        self.center = np.clip(result.center, 0, self.image_size - 1)  # the centre stays on the image
        self.target_size = self.target_size * scale
        self.z_size *= scale
        self.x_size *= scale
        self.frame_index += 1
        self.last_result = result
        box = center_to_box(self.center, self.target_size)
        if (self.updater is not None and self.frame_index % self.update_interval == 0
                and (self.confidence_threshold is None or result.score >= self.confidence_threshold)):
            new_template = self.updater.step(self, image, box, result)
            if new_template is not None:
                if new_template.shape != self.template0.shape:
                    raise ValueError(f"updater returned a template of shape {tuple(new_template.shape)}, "
                                     f"expected {tuple(self.template0.shape)}")
                self.template = new_template.to(self.device)
        return box


@register_tracker("siamfc")
def make_siamfc_tracker(checkpoint: str | Path | None = "default", config: SiamFCConfig | None = None,
                        device="cpu", **options) -> SiamFCTracker:
    """Registry factory: ``make_tracker("siamfc", checkpoint=..., window_influence=..., ...)``.

    ``checkpoint``: see :func:`load_siamfc` (``None`` gives an untrained network for smoke tests).
    Other keywords go to :class:`SiamFCTracker` (tracking options, updater, name).
    """
    net = load_siamfc(checkpoint, config, device=device)
    return SiamFCTracker(net, config, device=device, **options)


# ---------------------------------------------------------------------------------------------
# Speed: tracker vs backbone-only, measured in one run
# ---------------------------------------------------------------------------------------------


def speed_comparison(tracker: SiamFCTracker, sequences, max_frames: int = 60) -> dict:
    """Tracker FPS next to the backbone's forward-only FPS on the *same* search crops, in one run.

    ``sequences``: one sequence or a list; up to ``max_frames`` frames after frame 0 of each are used.
    Frames are rendered beforehand, one sequence at a time (rendering is not tracking). For each
    frame we time ``tracker.update`` and then, right after, the backbone alone on that frame's K
    search crops (already converted to a tensor, gradients off, as inside the tracker). Interleaving
    the two exposes both to the same machine load, which matters on a shared CPU; several sequences
    average out the load's swings. Returns ``{"tracker_fps", "backbone_fps", "ratio", "frames",
    "num_scales", "threads", "openmp"}`` with FPS = frames / total time; ``ratio`` = tracker / backbone (1.0:
    the tracker adds nothing to the forward pass); ``openmp``: :func:`mtl.openmp_spin`, the idle-thread
    setting that moves the ratio on a machine with as many cores as torch threads.
    """
    sequences = [sequences] if hasattr(sequences, "frame") else list(sequences)
    sync = torch.cuda.synchronize if tracker.device.type == "cuda" else (lambda: None)
    update_times, backbone_times = [], []
    for sequence in sequences:
        n = min(len(sequence), max_frames + 1)
        frames = [as_rgb_array(sequence.frame(i)) for i in range(n)]
        tracker.init(frames[0], sequence.boxes[0])
        for image in frames[1:]:
            start = time.perf_counter()
            tracker.update(image)
            update_times.append(time.perf_counter() - start)
            batch = image_to_tensor(tracker.last_result.crops, tracker.config.channels_last).to(tracker.device)
            sync()
            with torch.no_grad():
                start = time.perf_counter()
                tracker.net.backbone(batch)
                sync()
                backbone_times.append(time.perf_counter() - start)
    tracker_fps = 1.0 / float(np.mean(update_times))
    backbone_fps = 1.0 / float(np.mean(backbone_times))
    return {"tracker_fps": tracker_fps, "backbone_fps": backbone_fps, "ratio": tracker_fps / backbone_fps,
            "frames": len(update_times), "num_scales": tracker.config.num_scales,
            "threads": torch.get_num_threads(), "openmp": openmp_spin()}

"""Tracking with GradNet: SiamFC's tracker, with the target model rebuilt from the gradient every few frames.

:class:`GradNetUpdater` plugs into :class:`mtl.siamfc.SiamFCTracker` through the update interface of
:mod:`mtl.updaters`; the tracker's net is a :class:`mtl.gradnet.net.GradNetNet` (its ``backbone`` is
SiamFC's, so the search, the scales and the window are SiamFC's).

The paper's rule (Sec. 3.4): β* from the first frame (exemplar Z₁, search crop X₁ centred on the
box); then every 5 frames the update is run again on one reliable recent sample, with ``f2`` replaced
by the state ``h``. The authors' tracker adds rules the paper omits (specs §1 d); the ones kept here
are options, off or on as the notebook chooses on val:

* ``fusion_weight`` ``w``: the target model is ``template0 + w (β* − template0)``, a blend of SiamFC's
  first-frame template and GradNet's. Both score maps are linear in the template, so this *is* the
  fusion ``(1 − w) S + w S*`` of the logit maps, at the cost of one correlation. The code fuses the two
  maps after upsampling, min-shifting and sum-normalising each (0.85 SiamFC + 0.15 GradNet) and lets
  only SiamFC's maps pick the scale; we do not reproduce that.
* ``reliability``: the threshold ``thr`` is the mean peak of frames 1-5 (``"code"``) or the peak of the
  first tracked frame (``"paper"``: the first frame's own peak, which we never search); a frame becomes a sample when its peak ``F >= min(keep_ratio thr, mean F
  of the stored samples)``; the store keeps the last ``memory_size``; an update uses the stored sample
  with the highest ``F``. ``F`` is the peak's probability ``σ(logit)``: our logits can be negative,
  where ratios of peaks would flip (the code's raw scores are positive).
* ``blend``: ``h ← (1 − blend) h + blend h_new`` (code 0.6; 1 replaces ``h``); β* is always ``U1(h_new)``.
* ``emergency``: during the first ``emergency_frames`` frames an update also runs when ``F <
  emergency_ratio thr``, with ``emergency_blend`` (code: 10 frames, 0.4, 0.7).
* Left out: the one-frame switch-off of the cosine window after 9 unreliable frames and the
  re-detection at the image centre when the box leaves on the right (OTB-specific).

A sample is the chosen scale's search features of that frame with the label centred where the
tracker put the target (:func:`mtl.updaters.tracked_offset`); the code re-crops the middle scale at
the estimate with a centred label, which costs a backbone pass.
"""
from __future__ import annotations

import inspect
import math
from collections import deque
from pathlib import Path

import numpy as np
import torch

from mtl.eval import register_tracker
from mtl.gradnet.net import GradNetConfig, GradNetNet, config_variant
from mtl.ops import image_to_tensor
from mtl.updaters import Updater, first_frame_sample, labelled_sample, tracked_offset

#: GradNet's tracking options as registered (``siamfc_gradnet``), chosen on the val split in notebook 03:
#: fusion weight 0.15 (val AUC .458 against .440 at 0.5 and .364 at 1; SiamFC .436) with the code's rules.
DEFAULT_TRACKING = {"fusion_weight": 0.15}


class GradNetUpdater(Updater):
    """GradNet's online update (see the module docstring for every option).

    It must see every frame (it stores samples and keeps its own schedule), so it refuses a tracker
    with ``update_interval > 1`` or a ``confidence_threshold``. It sets the first target model in
    :meth:`reset` (GradNet updates on the first frame too). ``online=False`` keeps that first β*
    (Table 3's "w/o U"). ``updates`` logs each update: frame, ``F``, the sample's loss before and
    after, the relative change ``‖β* − U1(h)‖ / ‖U1(h)‖`` and ``c · RMS(g)`` (U2's input scale; 1 on the
    calibration batches).
    """

    name = "gradnet"

    def __init__(self, fusion_weight: float = 1.0, interval: int = 5, online: bool = True, reliability: str = "code",
                 keep_ratio: float = 0.5, memory_size: int = 5, blend: float = 0.6, emergency: bool = True,
                 emergency_ratio: float = 0.4, emergency_frames: int = 10, emergency_blend: float = 0.7):
        if not 0 <= fusion_weight <= 1:
            raise ValueError(f"fusion_weight must be in [0, 1], got {fusion_weight!r}")
        if interval < 1 or memory_size < 1:
            raise ValueError(f"interval and memory_size must be >= 1, got {interval}, {memory_size}")
        if reliability not in ("code", "paper"):
            raise ValueError(f"reliability must be 'code' (mean peak of frames 1-5) or 'paper' (first frame's), "
                             f"got {reliability!r}")
        for name, v in (("blend", blend), ("emergency_blend", emergency_blend), ("keep_ratio", keep_ratio),
                        ("emergency_ratio", emergency_ratio)):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        self.fusion_weight, self.interval, self.online = float(fusion_weight), int(interval), bool(online)
        self.reliability, self.keep_ratio, self.memory_size = reliability, float(keep_ratio), int(memory_size)
        self.blend, self.emergency = float(blend), bool(emergency)
        self.emergency_ratio, self.emergency_frames = float(emergency_ratio), int(emergency_frames)
        self.emergency_blend = float(emergency_blend)
        self.updates: list[dict] = []
        self._memory: deque = deque(maxlen=self.memory_size)
        self._first_peaks: list[float] = []
        self._threshold: float | None = None
        self._h = self._beta = None

    # -- pieces --------------------------------------------------------------------------------

    @staticmethod
    def _net(tracker) -> GradNetNet:
        if not isinstance(tracker.net, GradNetNet):
            raise TypeError(f"GradNetUpdater needs a tracker whose net is a GradNetNet, got "
                            f"{type(tracker.net).__name__}; build it with make_tracker('siamfc_gradnet')")
        return tracker.net

    @property
    def threshold(self) -> float | None:
        """``thr`` of the current sequence (None until known)."""
        return self._threshold

    @property
    def state(self) -> torch.Tensor:
        """``h`` ``(1, C2, 12, 12)``: the shallow template state the updates refine."""
        return self._h

    @property
    def beta_star(self) -> torch.Tensor:
        """GradNet's current target model β* ``(1, C, 6, 6)`` (before the fusion with SiamFC's template)."""
        return self._beta

    def _fused(self, tracker) -> torch.Tensor:
        # lerp: exactly template0 when β* equals it, exactly β* at weight 1 (the U2 = 0 self-check)
        return torch.lerp(tracker.template0, self._beta, self.fusion_weight)

    def _update(self, net: GradNetNet, features: torch.Tensor, labels: torch.Tensor, blend: float, frame: int,
                peak: float) -> None:
        """One GradNet step on a sample ``(features (1, C, 22, 22), labels (17, 17))``: sets β* and h."""
        g, beta, scores, loss = net.inner_gradient(self._h, features, labels, all_pairs=True, create_graph=False)
        with torch.no_grad():
            h_new = net.update(self._h, g)
            self._beta = net.upper(h_new, second=True)
            loss_after = net.template_losses(net.scores(self._beta, features, True), labels, True)
            self._h = torch.lerp(self._h, h_new, blend)
            change = float((self._beta - beta).norm() / beta.norm().clamp_min(1e-12))
            grad_rms = float(net.grad_scale * g.pow(2).mean().sqrt())
        self.updates.append({"frame": frame, "peak": peak, "loss": float(loss.detach().sum()),
                             "loss_after": float(loss_after.sum()), "change": change, "grad_rms": grad_rms})

    # -- the update interface ------------------------------------------------------------------

    def reset(self, tracker, image, box) -> None:
        net = self._net(tracker)
        if tracker.update_interval != 1 or tracker.confidence_threshold is not None:
            raise ValueError("GradNetUpdater must see every frame: build the tracker with update_interval=1 and "
                             "confidence_threshold=None (its interval and reliability options decide)")
        cfg = tracker.config
        self.updates = []
        self._memory = deque(maxlen=self.memory_size)
        self._first_peaks, self._threshold = [], None
        z = image_to_tensor(tracker.exemplar_crop(image, box)[None], cfg.channels_last).to(tracker.device)
        with torch.no_grad():
            self._h = net.shallow(z)
        if not net.config.use_gradient:  # "w/o MG": the fine-tuned template branch, no update
            with torch.no_grad():
                self._beta = net.upper(self._h)
            tracker.template = self._fused(tracker)
            return
        self._update(net, *first_frame_sample(tracker, image), 1.0, 0, float("nan"))
        tracker.template = self._fused(tracker)

    def step(self, tracker, image, box, result) -> torch.Tensor | None:
        net = self._net(tracker)
        frame = tracker.frame_index
        peak = 1.0 / (1.0 + math.exp(-result.score))
        if self._threshold is None:
            self._first_peaks.append(peak)
            if len(self._first_peaks) == (5 if self.reliability == "code" else 1):
                self._threshold = float(np.mean(self._first_peaks))
        stored = [p for _, _, p in self._memory]
        if self._threshold is None or peak >= min(self.keep_ratio * self._threshold,
                                                   float(np.mean(stored)) if stored else math.inf):
            k = result.scale_index
            self._memory.append((*labelled_sample(tracker, result.features[k:k + 1], tracked_offset(tracker, result)),
                                 peak))
        if not self.online or not net.config.use_gradient or not self._memory:
            return None
        if frame % self.interval == 0:
            blend = self.blend
        elif (self.emergency and self._threshold is not None and frame < self.emergency_frames
              and peak < self.emergency_ratio * self._threshold):
            blend = self.emergency_blend
        else:
            return None
        features, labels, _ = max(self._memory, key=lambda sample: sample[2])
        self._update(net, features, labels, blend, frame, peak)
        return self._fused(tracker)


# ---------------------------------------------------------------------------------------------
# Registration: the model and its Table 3 variants
# ---------------------------------------------------------------------------------------------

#: Registered name -> (GradNet config changes, updater options) of Table 3's rows.
VARIANTS = {
    "siamfc_gradnet": ({}, {}),
    "siamfc_gradnet_wo_m": ({"all_pairs": False}, {}),
    "siamfc_gradnet_wo_u": ({}, {"online": False}),
    "siamfc_gradnet_wo_mg": ({"use_gradient": False}, {}),
    "siamfc_gradnet_2u": ({"shared_upper": False}, {}),
}

_UPDATER_OPTIONS = set(inspect.signature(GradNetUpdater.__init__).parameters) - {"self"}


def make_gradnet_tracker(checkpoint: str | Path | None = "default", config=None, gradnet_config: GradNetConfig | None = None,
                         device="cpu", name: str | None = None, **options):
    """``SiamFCTracker(GradNetNet, updater=GradNetUpdater(...))``.

    ``checkpoint``: see :func:`mtl.gradnet.train.load_gradnet` (None: SiamFC on a random net, U2 = 0).
    Keywords that are :class:`GradNetUpdater` options (``fusion_weight``, ``interval``, ``online`` ...) go
    to the updater (defaults: :data:`DEFAULT_TRACKING`); the rest are SiamFC tracking options.
    """
    from mtl.gradnet.train import load_gradnet
    from mtl.siamfc import SiamFCTracker

    net = load_gradnet(checkpoint, gradnet_config, config, device=device)
    updater_options = {**DEFAULT_TRACKING, **{k: options.pop(k) for k in list(options) if k in _UPDATER_OPTIONS}}
    return SiamFCTracker(net, config, device=device, updater=GradNetUpdater(**updater_options), name=name, **options)


def _register(name: str, config_changes: dict, updater_defaults: dict) -> None:
    def factory(checkpoint="default", config=None, gradnet_config: GradNetConfig | None = None, **options):
        gcfg = config_variant(gradnet_config or GradNetConfig(), **config_changes)
        return make_gradnet_tracker(checkpoint, config, gcfg, **{**updater_defaults, **options})

    factory.__doc__ = f"Registry factory of ``{name}`` (GradNet config changes {config_changes}, updater {updater_defaults})."
    register_tracker(name)(factory)


for _name, (_changes, _defaults) in VARIANTS.items():
    _register(_name, _changes, _defaults)

"""Tracking with the learned updater: SiamFC's (``siamfc_lu``) or CFNet's (``cfnet_lu``) tracker, its target model written by a ConvGRU.

:class:`LUUpdater` plugs into :class:`mtl.siamfc.SiamFCTracker` through the update interface of
:mod:`mtl.updaters` (LU Sec. IV-C, V-A "postprocessing": the base tracker's search, window and scale
rules are kept). Per sequence::

    init:       θ'₁ = extract_template(frame 0, box) = template0;  h = step(0, θ'₁);  θ = θ'₁
    frame t:    the base tracker locates the target with θ; then θ'_t = extract_template(frame t, tracked box)
                h = step(h, θ'_t) (every frame);  every M frames θ = model(h)

``extract_template`` is the base tracker's ``g``: the exemplar features for SiamFC, the cropped
correlation filter for CFNet (:class:`mtl.cfnet.CFNetTracker`). It costs one exemplar forward pass
a frame, plus the ConvGRU on 6x6 maps.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from mtl.eval import register_tracker
from mtl.lu.net import LUConfig, LUNet
from mtl.updaters import Updater


class LUUpdater(Updater):
    """Learning to Update's online rule around a trained :class:`mtl.lu.net.LUNet`.

    ``interval``: M (default the network's training value). It sees every frame (the hidden state
    advances on each), so it refuses a tracker with ``update_interval > 1`` or a
    ``confidence_threshold``. ``updates`` logs each replacement of the model: frame and the relative
    drift ``‖θ - θ₁‖ / ‖θ₁‖``.
    """

    name = "lu"

    def __init__(self, net: LUNet, interval: int | None = None):
        self.net = net.eval()
        self.interval = int(interval if interval is not None else net.config.interval)
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1, got {self.interval}")
        self.updates: list[dict] = []
        self._state = None

    def fingerprint(self) -> dict:
        from mtl.cache import state_dict_hash

        return {**super().fingerprint(), "weights": state_dict_hash(self.net.state_dict()),
                "config": repr(self.net.config)}

    @property
    def state(self) -> list[torch.Tensor] | None:
        """The recurrent state (one ``(1, hidden, 6, 6)`` map per layer) after the last frame."""
        return self._state

    def reset(self, tracker, image, box) -> None:
        if tracker.update_interval != 1 or tracker.confidence_threshold is not None:
            raise ValueError("LUUpdater must see every frame: build the tracker with update_interval=1 and "
                             "confidence_threshold=None (its interval decides when the model changes)")
        self.net.to(tracker.device)
        self.updates = []
        with torch.no_grad():
            theta1 = tracker.template0
            self._state = self.net.step(self.net.initial_state(theta1), theta1)

    def step(self, tracker, image, box, result) -> torch.Tensor | None:
        with torch.no_grad():
            self._state = self.net.step(self._state, tracker.extract_template(image, box))
            if tracker.frame_index % self.interval:
                return None
            theta = self.net.model(self._state)
            t0 = tracker.template0
            self.updates.append({"frame": int(tracker.frame_index),
                                 "drift": float((theta - t0).norm() / t0.norm().clamp_min(1e-12))})
        return theta


_UPDATER_OPTIONS = set(inspect.signature(LUUpdater.__init__).parameters) - {"self", "net"}


def _with_lu_updater(tracker_class, net, lu_net: LUNet, config, device, name: str, options: dict):
    """``tracker_class(net, ...)`` driven by an :class:`LUUpdater` of ``lu_net``; ``options``' updater keywords
    (``interval``) go to the updater, the rest to the tracker."""
    updater_options = {k: options.pop(k) for k in list(options) if k in _UPDATER_OPTIONS}
    return tracker_class(net, config, device=device, updater=LUUpdater(lu_net, **updater_options), name=name, **options)


@register_tracker("siamfc_lu")
def make_lu_tracker(checkpoint: str | Path | None = "default", lu_checkpoint: str | Path | None = "default",
                    config=None, lu_config: LUConfig | None = None, device="cpu", name: str | None = None, **options):
    """Registry factory of ``siamfc_lu``: SiamFC (its stored ``checkpoint``) with an :class:`LUUpdater`.

    ``lu_checkpoint``: see :func:`mtl.lu.train.load_lu` (None: an untrained updater, for tests);
    ``lu_config``: the LU configuration whose checkpoint to load (default :class:`LUConfig`).
    ``interval`` goes to the updater; other keywords are SiamFC's tracking options.
    """
    from mtl.lu.train import load_lu
    from mtl.siamfc import SiamFCTracker, load_siamfc

    return _with_lu_updater(SiamFCTracker, load_siamfc(checkpoint, config, device=device),
                            load_lu(lu_checkpoint, lu_config, config, device=device), config, device,
                            name or "siamfc_lu", options)


@register_tracker("cfnet_lu")
def make_cfnet_lu_tracker(checkpoint: str | Path | None = "default", lu_checkpoint: str | Path | None = "default",
                          config=None, cfnet_config=None, lu_config: LUConfig | None = None, device="cpu",
                          name: str | None = None, **options):
    """Registry factory of ``cfnet_lu``: CFNet (its stored ``checkpoint``) with an :class:`LUUpdater` trained on
    CFNet's target model (``load_lu(..., base="cfnet")``); ``g`` is CFNet's ``extract_template`` (the cropped
    filter of a 255 px crop at the tracked box). Keywords as :func:`make_lu_tracker`'s.
    """
    from mtl.cfnet import CFNetTracker, load_cfnet
    from mtl.lu.train import load_lu

    return _with_lu_updater(CFNetTracker, load_cfnet(checkpoint, cfnet_config, config, device=device),
                            load_lu(lu_checkpoint, lu_config, config, device=device, base="cfnet", cfnet_config=cfnet_config),
                            config, device, name or "cfnet_lu", options)

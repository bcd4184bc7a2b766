"""Online tracking with ROAM (response branch, 3-scale search) and ROAM++ (box regression)
(``specs/dimp_roam.md`` §2(a) "Online tracking").

Frame 0: the 9 stretched / rescaled copies of the first crop (:data:`mtl.roam.data.FIRST_COPIES`) and one
``lambda_0`` step from the learned ``theta_0``; ``ref`` = the peak of the identity copy's response after it.

Each frame: crops of ``5 sqrt(wh)`` at ``num_scales`` sizes around the last centre; the response with the
filter warped to the target's current aspect (:func:`mtl.roam.model.filter_shape`), times a motion prior
(a Gaussian of the distance to the last centre in target sizes, ``motion_alpha``); the best scale after
SiamFC's scale penalty wins, its upsampled peak gives the centre, the size moves by ``scale_lr``.
ROAM++ (``box="regression"``, the default of a learner with the regression branch): one crop, a box decoded at
every anchor, scored by response x motion prior x ``exp(-shape_penalty (sc rc - 1))`` (``sc``, ``rc``: the change
of scale and of aspect ratio, each ``max(x, 1 / x)``); the best box gives the centre, the size moves by
``box_lr x penalty x response``.
The frame's features and box are stored when the peak exceeds ``gate x ref`` (the last ``2 tau`` kept).

Update (``update="roam"``): every ``tau`` frames, ``steps`` optimizer steps on the stored samples (with
the 10 samples and 2 steps of the paper: the older 5 first, the newer 5 second), rates from the learner's
optimizer (LSTM / constant / SGD, whatever it was trained with) and its LSTM state carried across updates.
``update="none"`` keeps frame 0's model.

``optimizer="sgd"`` replaces the learned rates by one fixed ``sgd_lr`` (Fig. 5's SGD: same steps, same
``theta_0`` and ``lambda_0``). :class:`ROAMOracleTracker` stores the ground-truth box of each frame as its
sample instead of the tracked one (Fig. 5's oracles; it reads the sequence through ``set_sequence``).

Registered as ``roam`` and ``roampp`` (the stored checkpoints of notebook 06).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtl.dimp.data import CropGeometry
from mtl.dimp.tracker import subcell_peak
from mtl.eval import register_tracker
from mtl.ops import box_to_center, center_to_box, crop_and_resize, image_to_tensor
from mtl.roam.data import FIRST_COPIES, stretched_crop
from mtl.roam.loss import response_label
from mtl.roam.meta import ROAMConfig, ROAMLearner
from mtl.roam.model import anchor_boxes, decode_deltas, regression, response
from mtl.siamfc import SiamFCConfig, load_siamfc, penalize_scale_changes
from mtl.tracker import Tracker, as_box, as_rgb_array, with_options


@dataclass(frozen=True)
class ROAMTracking:
    """Every tracking parameter in one place (the authors' ``config.py`` values, ours where noted)."""

    update: str = "roam"  # "roam" | "none"
    optimizer: str = "learned"  # "learned" (the learner's) | "sgd" (a fixed rate sgd_lr)
    sgd_lr: float | None = None  # None: the learner's config.sgd_lr (the calibrated first-step rate)
    box: str = "auto"  # "scales" (ROAM) | "regression" (ROAM++) | "auto": regression when the learner has the branch
    tau: int = 5
    steps: int = 2
    buffer: int = 10  # 2 tau samples
    gate: float = 0.1  # store a sample when its peak > gate x ref (<= 0: every frame)
    motion_alpha: float = 2.0  # ours: exp(-alpha ((dx / w)^2 + (dy / h)^2)) on the response
    num_scales: int = 3
    scale_step: float = 1.0375
    scale_penalty: float = 0.9745
    scale_lr: float = 0.59
    upsample: int = 8
    shape_penalty: float = 0.05  # ROAM++ (the authors' code)
    box_lr: float = 0.6  # ROAM++ (the authors' code)
    min_size: float = 10.0

    def __post_init__(self):
        if self.update not in ("roam", "none"):
            raise ValueError(f"update must be 'roam' or 'none', got {self.update!r}")
        if self.optimizer not in ("learned", "sgd") or (self.sgd_lr is not None and not self.sgd_lr > 0):
            raise ValueError(f"optimizer must be 'learned' or 'sgd' (with sgd_lr > 0), got {self.optimizer!r}")
        if self.box not in ("auto", "scales", "regression"):
            raise ValueError(f"box must be 'auto', 'scales' or 'regression', got {self.box!r}")
        if self.num_scales < 1 or self.num_scales % 2 != 1 or self.tau < 1 or self.steps < 0:
            raise ValueError("num_scales must be odd and >= 1, tau >= 1, steps >= 0")
        if self.buffer < self.steps:
            raise ValueError(f"buffer ({self.buffer}) must hold at least one sample per step ({self.steps})")


class ROAMTracker(Tracker):
    """ROAM's online tracker around a meta-trained :class:`ROAMLearner` and the frozen backbone."""

    name = "roam"

    def __init__(self, learner: ROAMLearner, backbone: torch.nn.Module, tracking: ROAMTracking | None = None, *,
                 geometry: CropGeometry = CropGeometry(), device="cpu", name: str | None = None, **options):
        super().__init__(name=name, is_deterministic=True)
        self.params = with_options(tracking or ROAMTracking(), options, "ROAM tracking")
        self.geometry, self.device = geometry, torch.device(device)
        self.learner = learner.to(self.device).eval()
        has_reg = learner.layout.has_regression
        if self.params.box == "regression" and not has_reg:
            raise ValueError("box='regression' needs a learner with the regression branch (ROAMConfig(regression=True))")
        self.box_mode = self.params.box if self.params.box != "auto" else "regression" if has_reg else "scales"
        self.backbone = backbone.to(self.device).eval()
        half = self.params.num_scales // 2
        self.scale_factors = self.params.scale_step ** np.linspace(-half, half, 2 * half + 1)
        self.scale_penalties = np.where(np.arange(2 * half + 1) == half, 1.0, self.params.scale_penalty)
        self.updates: list[dict] = []

    def fingerprint(self) -> dict:
        from mtl.cache import state_dict_hash

        return {**super().fingerprint(), "params": dataclasses.asdict(self.params),
                "geometry": dataclasses.asdict(self.geometry), "model": dataclasses.asdict(self.learner.config),
                "weights": state_dict_hash(self.learner.state_dict()),
                "backbone": state_dict_hash(self.backbone.state_dict()), "device": self.device.type}

    def update_log(self) -> list:
        """One entry per update: ``frame``, the mean rate of each step, the update loss before each step."""
        return self.updates

    @torch.no_grad()
    def _features(self, crops: np.ndarray) -> torch.Tensor:
        return self.backbone(image_to_tensor(crops, True).to(self.device))

    def _grad(self, theta: torch.Tensor, x: torch.Tensor, boxes: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
        ones = torch.ones_like(theta)
        with torch.enable_grad():
            t = theta.detach().requires_grad_(True)
            loss = self.learner.loss(t, ones, x, boxes, shape)
            (g,) = torch.autograd.grad(loss, t)
        return g, loss.detach()

    @torch.no_grad()
    def init(self, image, box) -> None:
        image, box = as_rgb_array(image), as_box(box)
        geo = self.geometry
        self.center, self.size = box_to_center(box)
        self.image_size = np.array([image.shape[1], image.shape[0]], dtype=np.float64)
        self.pad_color = image.mean(axis=(0, 1))
        crops, cells = zip(*(stretched_crop(image, box, geo, r, s) for r, s in FIRST_COPIES))  # the bank's copies
        x = self._features(np.stack(crops))
        boxes = torch.tensor(np.stack(cells), dtype=torch.float32, device=self.device)
        shape = self.learner.shape_for(boxes[0, 2:])
        theta0 = self.learner.theta0.detach()
        g, loss = self._grad(theta0, x, boxes, shape)
        self.theta = theta0 - torch.exp(self.learner.log_lambda0.detach()) * g
        self.ref = float(response(self.learner.layout.unflatten(self.theta), x[:1], shape).max())
        self.lam_prev = torch.exp(self.learner.log_lambda0.detach())
        self.state = None
        self.samples: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.frame_index = 0

    def _target_cells(self, side: float) -> np.ndarray:
        """The target's ``(w, h)`` in cells of a crop of ``side`` image pixels."""
        return self.size * self.geometry.crop_size / side / self.geometry.stride

    def _motion_prior(self, n: int, target_cells: np.ndarray, center_cells: float) -> np.ndarray:
        """The response label's Gaussian (width ``motion_alpha``) around the last position ``(n, n)``."""
        box = torch.tensor([[center_cells - target_cells[0] / 2, center_cells - target_cells[1] / 2, *target_cells]],
                           dtype=torch.float64)
        return response_label(box, n, self.params.motion_alpha)[0].numpy()

    @torch.no_grad()
    def update(self, image) -> np.ndarray:
        p, geo = self.params, self.geometry
        image = as_rgb_array(image)
        self.frame_index += 1
        search_center = self.center.copy()
        side, x, score = self._locate_by_regression(image) if self.box_mode == "regression" else self._locate_by_scales(image)
        box = center_to_box(self.center, self.size)
        if p.update != "none":
            sample = self._sample_box(box)
            if sample is not None and (p.gate <= 0 or score > p.gate * self.ref):
                cells = torch.tensor(geo.box_to_cells(sample, search_center, side), dtype=torch.float32,
                                     device=self.device)
                self.samples = (self.samples + [(x, cells)])[-p.buffer:]
            if self.frame_index % p.tau == 0 and len(self.samples) >= p.steps and p.steps:
                self._optimise()
        return box

    def _sample_box(self, box: np.ndarray) -> np.ndarray | None:
        """The box a frame's sample is labelled with: the tracked one (the oracle's: the ground truth)."""
        return box

    def _centre_cells(self) -> float:
        return ((self.geometry.crop_size - 1) / 2 - self.geometry.first_cell_pixel) / self.geometry.stride

    def _locate_by_scales(self, image):
        """ROAM: 3 scales; moves ``center``/``size``; returns ``(side, features (C, H, W), score)`` of the chosen scale."""
        p, geo = self.params, self.geometry
        sides = geo.crop_side(self.size) * self.scale_factors
        x = self._features(crop_and_resize(image, self.center, sides, geo.crop_size, pad_value=self.pad_color))
        n = x.shape[-1]
        maps, peaks = [], []
        theta = self.learner.layout.unflatten(self.theta)
        for k, s in enumerate(sides):
            target_cells = self._target_cells(s)
            shape = self.learner.shape_for(target_cells)
            m = response(theta, x[k:k + 1], shape)[0].cpu().numpy() * self._motion_prior(n, target_cells,
                                                                                           self._centre_cells())
            maps.append(m)
            peaks.append(m.max())
        k = int(np.argmax(penalize_scale_changes(np.array(peaks), self.scale_penalties)))
        peak_cells, score = subcell_peak(maps[k], p.upsample)
        a = sides[k] / geo.crop_size
        crop_px = peak_cells * geo.stride + geo.first_cell_pixel
        self.center = np.clip(self.center + (crop_px - (geo.crop_size - 1) / 2) * a, 0, self.image_size - 1)
        self.size = np.maximum(self.size * ((1 - p.scale_lr) + p.scale_lr * self.scale_factors[k]), p.min_size)
        return sides[k], x[k], score

    def _locate_by_regression(self, image):
        """ROAM++: one crop, the best-scoring anchor's decoded box; same return as :meth:`_locate_by_scales`."""
        p, geo = self.params, self.geometry
        side = geo.crop_side(self.size)
        x = self._features(crop_and_resize(image, self.center, [side], geo.crop_size, pad_value=self.pad_color))
        n = x.shape[-1]
        target_cells = self._target_cells(side)
        shape = self.learner.shape_for(target_cells)
        theta = self.learner.layout.unflatten(self.theta)
        g = response(theta, x, shape)[0].reshape(-1).cpu()
        deltas = regression(theta, x, shape)[0].flatten(1).T.cpu()  # (H W, 4)
        deltas[:, 2:] = deltas[:, 2:].clamp(-1.0, 1.0)  # at most e-fold size changes per frame
        boxes = decode_deltas(anchor_boxes(n, shape, self.learner.config.rho), deltas).double()
        sc = torch.sqrt(boxes[:, 2] * boxes[:, 3]) / float(np.sqrt(np.prod(target_cells)))
        rc = (boxes[:, 2] / boxes[:, 3]) / float(target_cells[0] / target_cells[1])
        penalty = torch.exp(-p.shape_penalty * (torch.maximum(sc, 1 / sc) * torch.maximum(rc, 1 / rc) - 1))
        motion = torch.from_numpy(self._motion_prior(n, target_cells, self._centre_cells()).reshape(-1))
        best = int(torch.argmax(g.double() * motion * penalty))
        score = float(g[best])
        found = geo.cells_to_box(boxes[best].numpy(), self.center, side)
        centre, size = box_to_center(found)
        lr = float(np.clip(p.box_lr * float(penalty[best]) * score, 0.0, 1.0))
        self.center = np.clip(centre, 0, self.image_size - 1)
        self.size = np.maximum((1 - lr) * self.size + lr * size, p.min_size)
        return side, x[0], score

    def _optimise(self) -> None:
        p = self.params
        shape = self.learner.shape_for(self._target_cells(self.geometry.crop_side(self.size)))
        groups = np.array_split(np.arange(len(self.samples)), p.steps)  # older samples first
        entry = {"frame": self.frame_index, "rates": [], "losses": []}
        for idx in groups:
            x = torch.stack([self.samples[i][0] for i in idx])
            boxes = torch.stack([self.samples[i][1] for i in idx])
            g, loss = self._grad(self.theta, x, boxes, shape)
            if p.optimizer == "sgd":
                lam = torch.full_like(self.theta, p.sgd_lr or self.learner.config.sgd_lr)
            else:
                lam, self.state = self.learner.rates(self.theta, g, loss, self.lam_prev, self.state)
            self.theta = self.theta - lam * g
            self.lam_prev = lam
            entry["rates"].append(float(lam.mean()))
            entry["losses"].append(float(loss))
        self.updates.append(entry)


class ROAMOracleTracker(ROAMTracker):
    """ROAM whose update samples carry the ground-truth box (Fig. 5's oracles); an oracle: it reads the sequence."""

    def set_sequence(self, seq) -> None:
        """Oracle-only hook: the sequence's boxes ``(N, 4)`` and visibility flags ``(N,)``."""
        self.gt = np.asarray(seq.boxes, dtype=np.float64)
        self.visible = np.ones(len(self.gt), bool) if getattr(seq, "visible", None) is None else np.asarray(seq.visible, bool)

    def init(self, image, box) -> None:
        if getattr(self, "gt", None) is None:
            raise RuntimeError(f"{self.name} is an oracle: call set_sequence(seq) before init")
        super().init(image, box)

    def _sample_box(self, box):
        gt = self.gt[self.frame_index]
        ok = self.visible[self.frame_index] and np.all(np.isfinite(gt)) and gt[2] > 0 and gt[3] > 0
        return gt if ok else None  # no sample where the target is not visible


def load_roam(checkpoint: str | Path | None = "default", config: ROAMConfig | None = None,
              siamfc_config: SiamFCConfig | None = None, device="cpu") -> ROAMLearner:
    """A ROAM learner in eval mode: ``"default"`` the stored checkpoint of the configs (quick mode: the quick one
    when no full one exists), a path, or ``None`` (untrained; tests)."""
    from mtl.cache import load_into
    from mtl.roam.train import _configs, train_key
    from mtl.siamfc import SiamFCNet

    cfg = config or ROAMConfig()
    scfg = siamfc_config or SiamFCConfig()
    qcfg, qscfg = _configs(cfg, scfg, True)
    return load_into(ROAMLearner(SiamFCNet.from_config(scfg).backbone.out_channels, cfg), "roam", checkpoint,
                     train_key(cfg, scfg), train_key(qcfg, qscfg),
                     "run notebooks/06_roam.ipynb or mtl.roam.train.train_roam() to train it", device)


def _make(config: ROAMConfig, checkpoint, device, name, options) -> ROAMTracker:
    scfg = SiamFCConfig()
    siamfc = load_siamfc("default" if checkpoint is not None else None, scfg, device=device)
    return ROAMTracker(load_roam(checkpoint, config, scfg, device=device), siamfc.backbone, device=device, name=name,
                       **options)


@register_tracker("roam")
def make_roam_tracker(checkpoint: str | Path | None = "default", config: ROAMConfig | None = None, device="cpu",
                      name: str | None = None, **options) -> ROAMTracker:
    """Registry factory: ``make_tracker("roam", update="none", ...)``; options are :class:`ROAMTracking` fields.
    Checkpoint: ``"default"`` (notebook 06's), a path, or ``None`` (untrained; tests)."""
    return _make(config or ROAMConfig(), checkpoint, device, name or "roam", options)


@register_tracker("roampp")
def make_roampp_tracker(checkpoint: str | Path | None = "default", config: ROAMConfig | None = None, device="cpu",
                        name: str | None = None, **options) -> ROAMTracker:
    """ROAM++: :func:`make_roam_tracker` with the regression model (``ROAMConfig(regression=True)``)."""
    return _make(config or ROAMConfig(regression=True), checkpoint, device, name or "roampp", options)


__all__ = ["ROAMTracking", "ROAMTracker", "ROAMOracleTracker", "load_roam", "make_roam_tracker", "make_roampp_tracker"]

"""Online tracking with ROAM (response branch, 3-scale search; ``specs/dimp_roam.md`` §2(a) "Online tracking").

Frame 0: the 9 stretched / rescaled copies of the first crop (:data:`mtl.roam.data.FIRST_COPIES`) and one
``lambda_0`` step from the learned ``theta_0``; ``ref`` = the peak of the identity copy's response after it.

Each frame: crops of ``5 sqrt(wh)`` at ``num_scales`` sizes around the last centre; the response with the
filter warped to the target's current aspect (:func:`mtl.roam.model.filter_shape`), times a motion prior
(a Gaussian of the distance to the last centre in target sizes, ``motion_alpha``); the best scale after
SiamFC's scale penalty wins, its upsampled peak gives the centre, the size moves by ``scale_lr``.
The frame's features and box are stored when the peak exceeds ``gate x ref`` (the last ``2 tau`` kept).

Update (``update="roam"``): every ``tau`` frames, ``steps`` optimizer steps on the stored samples (with
the 10 samples and 2 steps of the paper: the older 5 first, the newer 5 second), rates from the learner's
optimizer (LSTM / constant / SGD, whatever it was trained with) and its LSTM state carried across updates.
``update="none"`` keeps frame 0's model.

Not registered by name yet: it is registered as ``roam`` when notebook 06 stores a meta-trained checkpoint.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from mtl.dimp.data import CropGeometry
from mtl.dimp.tracker import subcell_peak
from mtl.ops import box_to_center, center_to_box, crop_and_resize, image_to_tensor
from mtl.roam.data import FIRST_COPIES, stretched_crop
from mtl.roam.loss import response_label
from mtl.roam.meta import ROAMLearner
from mtl.roam.model import response
from mtl.siamfc import penalize_scale_changes
from mtl.tracker import Tracker, as_box, as_rgb_array


@dataclass(frozen=True)
class ROAMTracking:
    """Every tracking parameter in one place (the authors' ``config.py`` values, ours where noted)."""

    update: str = "roam"  # "roam" | "none"
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
    min_size: float = 10.0

    def __post_init__(self):
        if self.update not in ("roam", "none"):
            raise ValueError(f"update must be 'roam' or 'none', got {self.update!r}")
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
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(ROAMTracking)})
        if unknown:
            raise TypeError(f"unknown ROAM tracking options {unknown}; valid: the fields of ROAMTracking")
        base = tracking or ROAMTracking()
        self.params = dataclasses.replace(base, **options) if options else base
        self.geometry, self.device = geometry, torch.device(device)
        self.learner = learner.to(self.device).eval()
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
        side = geo.crop_side(self.size)
        sides = side * self.scale_factors
        x = self._features(crop_and_resize(image, self.center, sides, geo.crop_size, pad_value=self.pad_color))
        n = x.shape[-1]
        mid = (geo.crop_size - 1) / 2
        centre_cells = (mid - geo.first_cell_pixel) / geo.stride
        maps, peaks = [], []
        theta = self.learner.layout.unflatten(self.theta)
        for k, s in enumerate(sides):
            target_cells = self._target_cells(s)
            shape = self.learner.shape_for(target_cells)
            m = response(theta, x[k:k + 1], shape)[0].cpu().numpy() * self._motion_prior(n, target_cells, centre_cells)
            maps.append(m)
            peaks.append(m.max())
        k = int(np.argmax(penalize_scale_changes(np.array(peaks), self.scale_penalties)))
        peak_cells, score = subcell_peak(maps[k], p.upsample)
        a = sides[k] / geo.crop_size
        crop_px = peak_cells * geo.stride + geo.first_cell_pixel
        search_center = self.center.copy()
        self.center = np.clip(self.center + (crop_px - mid) * a, 0, self.image_size - 1)
        self.size = np.maximum(self.size * ((1 - p.scale_lr) + p.scale_lr * self.scale_factors[k]), p.min_size)
        box = center_to_box(self.center, self.size)
        if p.update != "none":
            if p.gate <= 0 or score > p.gate * self.ref:
                cells = torch.tensor(geo.box_to_cells(box, search_center, sides[k]), dtype=torch.float32,
                                     device=self.device)
                self.samples = (self.samples + [(x[k], cells)])[-p.buffer:]
            if self.frame_index % p.tau == 0 and len(self.samples) >= p.steps and p.steps:
                self._optimise()
        return box

    def _optimise(self) -> None:
        p = self.params
        shape = self.learner.shape_for(self._target_cells(self.geometry.crop_side(self.size)))
        groups = np.array_split(np.arange(len(self.samples)), p.steps)  # older samples first
        entry = {"frame": self.frame_index, "rates": [], "losses": []}
        for idx in groups:
            x = torch.stack([self.samples[i][0] for i in idx])
            boxes = torch.stack([self.samples[i][1] for i in idx])
            g, loss = self._grad(self.theta, x, boxes, shape)
            lam, self.state = self.learner.rates(self.theta, g, loss, self.lam_prev, self.state)
            self.theta = self.theta - lam * g
            self.lam_prev = lam
            entry["rates"].append(float(lam.mean()))
            entry["losses"].append(float(loss))
        self.updates.append(entry)


__all__ = ["ROAMTracking", "ROAMTracker"]

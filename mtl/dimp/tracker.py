"""Online tracking with DiMP: a target model predicted on frame 0, refined from a weighted sample memory.

Per frame (``specs/dimp_roam.md`` §1(a) "Tracking", pytracking's ``dimp.py``):

1. crop ``search_factor sqrt(w h)`` around the last centre at ``num_scales`` sizes, score each crop's
   classification features with the filter ``f``; the scale with the highest (penalised) peak wins;
2. the upsampled peak gives the new centre; a peak below ``not_found_threshold`` freezes the state; a
   second peak (outside ``target_neighborhood`` x the target around the first) above
   ``hard_negative_threshold`` x the first makes the frame a *hard negative* (one above
   ``distractor_threshold`` x the first may win if it lies closer to the last position);
3. ``update="memory"`` (DiMP): the frame's features and box join the memory with weight ``lr``
   (``hard_negative_lr``), older samples decay by ``1 - lr``, the first frame's samples keep at least
   ``first_frame_min_weight`` of the total; then ``update_iter`` steepest-descent iterations from the
   current ``f`` every ``update_interval`` frames, ``hard_negative_iter`` at once on a hard negative.
   ``update="average"`` (Table 3): ``f <- (1 - average_rate) f + average_rate D(frame)``, ``D`` the model
   predicted from the frame alone; ``update="none"``: ``f`` stays the frame-0 model.

Box: ``box="iounet"`` (DiMP): from the located centre and the last size plus ``iou_candidates`` jittered
boxes, ``iou_steps`` of gradient ascent on the IoU-Net's prediction (:func:`mtl.dimp.iounet.refine_boxes`),
the best ``iou_top`` averaged: the new centre *and* size (the size blended with the last one by
``iou_size_rate``, a change of ours chosen on val in notebook 05; DiMP's 1 takes it as it is). ``box="scales"`` (the ablation): a
``num_scales`` search with SiamFC's scale step, penalty and damping.

Frame 0: ``f`` = the initializer's ``f0`` plus ``init_iter`` iterations on augmented copies of the
first crop (identity, 4 shifts, flip, 3 blurs, 4 rotations, 2 feature-dropout copies; the random ones
drawn from torch's generator, so a seeded run repeats).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mtl.dimp.data import CropGeometry
from mtl.dimp.filter import apply_filter
from mtl.dimp.iounet import IoUNet, refine_boxes
from mtl.dimp.net import DiMPConfig, DiMPNet
from mtl.eval import register_tracker
from mtl.ops import box_to_center, center_to_box, crop_and_resize, image_to_tensor, upsample_maps
from mtl.siamfc import SiamFCConfig, SiamFCNet, load_siamfc, penalize_scale_changes
from mtl.tracker import Tracker, as_box, as_rgb_array, with_options


def subcell_peak(scores: np.ndarray, upsample: int) -> tuple[np.ndarray, float]:
    """Sub-cell peak ``(col, row)`` in cell coordinates of a square map ``(n, n)`` and its score, from the map
    upsampled bicubically ``upsample`` times (DiMP's and ROAM's trackers)."""
    n = scores.shape[-1]
    up = upsample_maps(scores, n * upsample)
    row, col = np.unravel_index(int(np.argmax(up)), up.shape)
    # cv2.resize maps output pixel centre o to input (o + 0.5) n / N - 0.5
    ratio = n / up.shape[-1]
    return np.array([(col + 0.5) * ratio - 0.5, (row + 0.5) * ratio - 0.5]), float(up[row, col])


@dataclass(frozen=True)
class DiMPTracking:
    """Every tracking parameter in one place (pytracking's ``parameter/dimp/dimp18.py``, ours where noted)."""

    init_iter: int = 10
    update: str = "memory"  # "memory" | "average" | "none"
    update_iter: int = 2
    update_interval: int = 20
    hard_negative_iter: int = 1
    memory_size: int = 50
    lr: float = 0.01
    hard_negative_lr: float = 0.02
    first_frame_min_weight: float = 0.25
    average_rate: float = 0.05
    not_found_threshold: float = 0.0  # chosen on val in notebook 05 (pytracking 0.25; our scores peak lower)
    distractor_threshold: float = 0.8
    hard_negative_threshold: float = 0.5
    target_neighborhood: float = 2.2
    displacement_scale: float = 0.8
    augment: bool = True
    dropout_copies: int = 2
    dropout_rate: float = 0.2
    upsample: int = 8
    box: str = "iounet"  # "iounet" (needs an IoU-Net) | "scales"
    iou_candidates: int = 9
    iou_center_jitter: float = 0.05
    iou_size_jitter: float = 0.25
    iou_steps: int = 5
    iou_step_length: float = 0.0625  # chosen on val in notebook 05 from {1/8 (pytracking's 1 in 8-px cells), 1/16}
    iou_top: int = 3
    iou_size_rate: float = 1.0  # ours: size <- (1 - r) size + r (IoU-Net's size); DiMP takes the IoU-Net's size (r = 1)
    num_scales: int = 3
    scale_step: float = 1.0375
    scale_penalty: float = 0.9745
    scale_lr: float = 0.59
    min_size: float = 10.0

    def __post_init__(self):
        if self.box not in ("iounet", "scales"):
            raise ValueError(f"box must be 'iounet' or 'scales', got {self.box!r}")
        if self.update not in ("memory", "average", "none"):
            raise ValueError(f"update must be 'memory', 'average' or 'none', got {self.update!r}")
        if not 0 < self.iou_size_rate <= 1:
            raise ValueError(f"iou_size_rate must be in (0, 1], got {self.iou_size_rate}")
        if self.memory_size < 16 or self.num_scales < 1 or self.num_scales % 2 != 1:
            raise ValueError("memory_size >= 16 (frame 0 takes 15 samples) and an odd num_scales are required")


class DiMPTracker(Tracker):
    """DiMP's online tracker around a trained :class:`DiMPNet` and the frozen SiamFC backbone it was trained on."""

    name = "dimp"

    def __init__(self, net: DiMPNet, backbone: torch.nn.Module, tracking: DiMPTracking | None = None, *,
                 iounet: IoUNet | None = None, geometry: CropGeometry = CropGeometry(), device="cpu",
                 name: str | None = None, **options):
        super().__init__(name=name, is_deterministic=False)
        self.params = with_options(tracking or DiMPTracking(), options, "DiMP tracking")
        self.geometry, self.device = geometry, torch.device(device)
        self.net = net.to(self.device).eval()
        self.backbone = backbone.to(self.device).eval()
        if self.net.tail is not None:  # "+FT": the classifier reads the fine-tuned tail, the IoU-Net the frozen blocks
            split = len(self.backbone) - len(self.net.tail)
            self._shared_blocks, self._frozen_tail = self.backbone[:split], self.backbone[split:]
            if list(self._frozen_tail._modules) != list(self.net.tail._modules):
                raise ValueError(f"the net's tail {list(self.net.tail._modules)} is not the backbone's last blocks "
                                 f"{list(self._frozen_tail._modules)}")
        p = self.params
        if p.box == "iounet" and iounet is None:
            raise ValueError("box='iounet' needs an IoU-Net (iounet=...); use box='scales' without one")
        self.iounet = iounet.to(self.device).eval() if iounet is not None else None
        half = p.num_scales // 2 if p.box == "scales" else 0
        self.scale_factors = p.scale_step ** np.linspace(-half, half, 2 * half + 1)
        self.scale_penalties = np.where(np.arange(2 * half + 1) == half, 1.0, p.scale_penalty)
        self.updates: list[dict] = []

    def fingerprint(self) -> dict:
        from mtl.cache import state_dict_hash

        return {**super().fingerprint(), "params": dataclasses.asdict(self.params),
                "geometry": dataclasses.asdict(self.geometry), "model": dataclasses.asdict(self.net.config),
                "weights": state_dict_hash(self.net.state_dict()), "backbone": state_dict_hash(self.backbone.state_dict()),
                "iounet": None if self.iounet is None else state_dict_hash(self.iounet.state_dict()),
                "device": self.device.type}

    def update_log(self) -> list:
        """One entry per frame after the first: ``frame``, ``score``, ``state`` (normal / hard_negative /
        not_found / uncertain) and ``iterations`` run on it."""
        return self.updates

    # -- features ----------------------------------------------------------------------------------

    @torch.no_grad()
    def features(self, crops: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops ``(K, S, S, 3)`` uint8 -> backbone features ``(K, C, H, W)`` and classification features ``(K, C_f, H, W)``.

        With a fine-tuned tail (``net.tail``) the classification features come from it, the backbone features (the
        IoU-Net's input) from the frozen backbone; the blocks before the tail run once for both."""
        images = image_to_tensor(crops, True).to(self.device)
        if self.net.tail is None:
            x = self.backbone(images)
            return x, self.net.classification_features(x[None])[0]
        h = self._shared_blocks(images)
        return self._frozen_tail(h), self.net.classification_features(h[None])[0]

    def _crop(self, image, center, side):
        return crop_and_resize(image, center, side, self.geometry.crop_size, pad_value=self.pad_color)

    def augmented_samples(self, image: np.ndarray, box: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame 0's training samples: classification features ``(A, C_f, H, W)`` and boxes ``(A, 4)`` (cells)."""
        geo, p = self.geometry, self.params
        center, size = box_to_center(box)
        side = geo.crop_side(size)
        a = side / geo.crop_size
        crops, cells = [self._crop(image, center, side)], [geo.box_to_cells(box, center, side)]
        if p.augment:
            shift = 0.6 * geo.crop_size / 2 * a  # image pixels: the target moves by 0.6 x half a crop
            for dx, dy in ((shift, 0), (-shift, 0), (0, shift), (0, -shift)):
                c = center - np.array([dx, dy])
                crops.append(self._crop(image, c, side))
                cells.append(geo.box_to_cells(box, c, side))
            ident, ident_cells = crops[0], cells[0]
            h = geo.map_size - 1
            crops.append(np.ascontiguousarray(ident[:, ::-1]))
            cells.append(np.array([h - ident_cells[0] - ident_cells[2], *ident_cells[1:]]))
            for sx, sy in ((2, 0.2), (0.2, 2), (3, 1)):
                crops.append(cv2.GaussianBlur(ident, (0, 0), sigmaX=sx, sigmaY=sy))
                cells.append(ident_cells)
            mid = (geo.crop_size - 1) / 2
            for angle in (10, -10, 45, -45):
                m = cv2.getRotationMatrix2D((mid, mid), angle, 1.0)
                crops.append(cv2.warpAffine(ident, m, (geo.crop_size, geo.crop_size), borderMode=cv2.BORDER_REPLICATE))
                cells.append(ident_cells)
        x, z = self.features(np.stack(crops))
        boxes = torch.tensor(np.stack(cells), dtype=torch.float32, device=self.device)
        if self.iounet is not None:  # the reference for every later frame: the identity sample
            self.modulation = self.iounet.modulation(x[:1], boxes[:1])
        if p.augment and p.dropout_copies:
            drops = [F.dropout2d(z[:1], p.dropout_rate, training=True) for _ in range(p.dropout_copies)]
            z = torch.cat([z, *drops])
            boxes = torch.cat([boxes, boxes[:1].expand(p.dropout_copies, 4)])
        return z, boxes

    # -- the protocol ----------------------------------------------------------------------------

    @torch.no_grad()
    def init(self, image, box) -> None:
        image = as_rgb_array(image)
        box = as_box(box)
        self.center, self.size = box_to_center(box)
        self.image_size = np.array([image.shape[1], image.shape[0]], dtype=np.float64)
        self.pad_color = image.mean(axis=(0, 1))
        z, boxes = self.augmented_samples(image, box)
        n = len(z)
        self.memory_z, self.memory_boxes = z, boxes
        self.memory_weights = torch.full((n,), 1.0 / n, device=self.device)
        self.first_count = n
        filters, _ = self.net.predict(z[None], boxes[None], self.memory_weights[None], num_iter=self.params.init_iter)
        self.filter = filters[-1]
        self.frame_index = 0

    def _insert(self, z: torch.Tensor, cells: np.ndarray, lr: float) -> None:
        """Add a sample with weight ``lr``; decay the others; keep the first frame's share >= the minimum."""
        p = self.params
        w = self.memory_weights * (1 - lr)
        z_mem, b_mem = self.memory_z, self.memory_boxes
        box = torch.tensor(cells, dtype=torch.float32, device=self.device)[None]
        if len(w) < p.memory_size:
            z_mem, b_mem = torch.cat([z_mem, z[None]]), torch.cat([b_mem, box])
            w = torch.cat([w, w.new_tensor([lr])])
        else:  # replace the lightest sample that is not from frame 0
            k = self.first_count + int(torch.argmin(w[self.first_count:]))
            z_mem, b_mem = z_mem.clone(), b_mem.clone()
            z_mem[k], b_mem[k], w[k] = z, box[0], lr
        first = w[:self.first_count].sum()
        if first < p.first_frame_min_weight:
            w[:self.first_count] *= p.first_frame_min_weight / first
            rest = w[self.first_count:].sum()
            w[self.first_count:] *= (1 - p.first_frame_min_weight) / rest.clamp_min(1e-12)
        self.memory_z, self.memory_boxes, self.memory_weights = z_mem, b_mem, w / w.sum()

    def refine(self, x: torch.Tensor, box: np.ndarray, search_center, side: float) -> tuple[np.ndarray, np.ndarray]:
        """IoU-Net refinement of ``box`` (image pixels) on backbone features ``x`` ``(1, C, H, W)`` of the crop of
        ``side`` px at ``search_center``: ``(centre, size)`` in image pixels."""
        p, geo = self.params, self.geometry
        cells = torch.tensor(geo.box_to_cells(box, search_center, side), dtype=torch.float32, device=self.device)
        scale = torch.sqrt(cells[2] * cells[3])
        centre, wh = cells[:2] + cells[2:] / 2, cells[2:]
        noise = torch.rand(p.iou_candidates, 4, device=self.device) * 2 - 1
        c = centre + noise[:, :2] * p.iou_center_jitter * scale
        s = (wh + noise[:, 2:] * p.iou_size_jitter * scale).clamp_min(0.1)
        candidates = torch.cat([cells[None], torch.cat([c - s / 2, s], dim=1)])
        with torch.no_grad():
            test = self.iounet.test_features(x)
        best, _ = refine_boxes(self.iounet, self.modulation, test, candidates, p.iou_steps, p.iou_step_length,
                               top=p.iou_top)
        return box_to_center(geo.cells_to_box(best.cpu().numpy().astype(np.float64), search_center, side))

    @torch.no_grad()
    def update(self, image) -> np.ndarray:
        p, geo = self.params, self.geometry
        image = as_rgb_array(image)
        self.frame_index += 1
        search_center = self.center.copy()
        side = geo.crop_side(self.size)
        sides = side * self.scale_factors
        x, z = self.features(crop_and_resize(image, self.center, sides, self.geometry.crop_size,
                                             pad_value=self.pad_color))  # (K, C, H, W), (K, C_f, H, W)
        scores = apply_filter(z[None], self.filter)[0].cpu().numpy()  # (K, H, W)
        peaks = penalize_scale_changes(scores.reshape(len(scores), -1).max(axis=1), self.scale_penalties)
        k = int(np.argmax(peaks))
        peak_cells, score = subcell_peak(scores[k], p.upsample)
        state = "normal"
        # the second peak: outside target_neighborhood x the target around the first (in cells)
        target_cells = self.size * geo.crop_size / sides[k] / geo.stride
        rows, cols = np.mgrid[:scores.shape[1], :scores.shape[2]]
        near = ((np.abs(cols - peak_cells[0]) <= p.target_neighborhood * target_cells[0] / 2)
                & (np.abs(rows - peak_cells[1]) <= p.target_neighborhood * target_cells[1] / 2))
        second = float(scores[k][~near].max()) if (~near).any() else -np.inf
        if score < p.not_found_threshold:
            state = "not_found"
        elif second > p.distractor_threshold * score:
            r2, c2 = np.unravel_index(int(np.argmax(np.where(near, -np.inf, scores[k]))), scores[k].shape)
            mid = (geo.map_size - 1) / 2
            d1, d2 = np.hypot(*(peak_cells - mid)), np.hypot(c2 - mid, r2 - mid)
            limit = p.displacement_scale * geo.map_size / 2  # cells from the last position (the map's centre)
            if d2 < d1 and d2 < limit:
                peak_cells, state = np.array([c2, r2], dtype=np.float64), "hard_negative"
            elif d1 > limit and d2 > limit:
                state = "uncertain"
            else:
                state = "hard_negative"
        elif second > p.hard_negative_threshold * score and second > p.not_found_threshold:
            state = "hard_negative"
        if state != "not_found":
            a = sides[k] / geo.crop_size
            crop_px = peak_cells * geo.stride + geo.first_cell_pixel
            center = self.center + (crop_px - (geo.crop_size - 1) / 2) * a
            if p.box == "iounet":
                center, size = self.refine(x[k:k + 1], center_to_box(center, self.size), search_center, sides[k])
                size = (1 - p.iou_size_rate) * self.size + p.iou_size_rate * size
            else:
                size = self.size * ((1 - p.scale_lr) + p.scale_lr * self.scale_factors[k])
            self.center = np.clip(center, 0, self.image_size - 1)
            self.size = np.maximum(size, p.min_size)
        box = center_to_box(self.center, self.size)
        iterations = 0
        if state in ("normal", "hard_negative") and p.update != "none":
            cells = geo.box_to_cells(box, search_center, sides[k])
            if p.update == "average":
                filters, _ = self.net.predict(z[k:k + 1][None], torch.tensor(cells, dtype=torch.float32,
                                                                              device=self.device)[None, None])
                self.filter = (1 - p.average_rate) * self.filter + p.average_rate * filters[-1]
                iterations = self.net.config.num_iter
            else:
                hard = state == "hard_negative"
                self._insert(z[k], cells, p.hard_negative_lr if hard else p.lr)
                iterations = p.hard_negative_iter if hard else (p.update_iter if self.frame_index % p.update_interval == 0 else 0)
                if iterations:
                    filters, _ = self.net.predict(self.memory_z[None], self.memory_boxes[None], self.memory_weights[None],
                                                  num_iter=iterations, filt=self.filter)
                    self.filter = filters[-1]
        self.updates.append({"frame": self.frame_index, "score": score, "state": state, "iterations": iterations})
        return box


@register_tracker("dimp")
def make_dimp_tracker(checkpoint: str | Path | None = "default", config: DiMPConfig | None = None,
                      iounet_checkpoint: str | Path | None = "default", device="cpu", name: str | None = None,
                      **options) -> DiMPTracker:
    """Registry factory: ``make_tracker("dimp", update="none", box="scales", ...)``; options are
    :class:`DiMPTracking` fields. Checkpoints: ``"default"`` (the stored ones), a path, or ``None``
    (untrained; tests). ``box="scales"`` needs no IoU-Net."""
    from mtl.dimp.train import load_dimp, load_iounet

    scfg = SiamFCConfig()
    siamfc: SiamFCNet = load_siamfc("default" if checkpoint is not None else None, scfg, device=device)
    net = load_dimp(checkpoint, config, scfg, device=device)
    iounet = None
    if options.get("box", DiMPTracking.box) == "iounet":
        iounet = load_iounet(iounet_checkpoint, config, scfg, device=device)
    return DiMPTracker(net, siamfc.backbone, iounet=iounet, device=device, name=name, **options)

"""Cached backbone features of training clips, and exemplars cut from them.

LU's updater trains with the backbone frozen (stage 2), so every frame's search features can be
computed once and stored. Per clip frame ``t``: the 255 px search crop centred where a tracker that
was right on frame ``t - 1`` would cut it (the ground-truth box of frame ``t - 1``, its centre and its
context scale; frame 0: its own box), through the backbone -> ``(C, 22, 22)``, kept as float16 (about
62 KB a frame for C = 64), and the target's offset from the crop centre in score-map cells (its motion
since the previous frame). The frame's label is SiamFC's disc moved by that offset.

**Exemplars at any position cost nothing more.** The backbone has no padding and stride 8, so the
6x6 window of a 255 crop's features at cell offset ``(i, j)`` *is* the feature map of the 127 px
sub-crop starting at pixel ``(8 i, 8 j)`` (:func:`exemplar_windows`; ``checks.cut_exemplar_error``
measures it). The centre window ``(8, 8)`` is the ground-truth exemplar; a window at the argmax
of a model's response is the exemplar "at the estimated position" of LU Sec. IV-E.

**CFNet's exemplar is the whole crop** (its ``g`` learns a correlation filter from 22x22 features
centred on the target), so a position off the cached crop's centre is only approximate:
:func:`recentred_features` shifts the cached map by whole cells and fills the strip the cached crop
does not cover with zeros (:class:`CorrelationFilterExemplar`; ``checks.cf_exemplar_error`` measures
the error against a fresh crop at that position). The filter's cosine window gives that strip little
weight for shifts of a cell or two.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from mtl.ops import box_to_center, crop_and_resize, image_to_tensor
from mtl.siamfc import search_side


def exemplar_windows(features: torch.Tensor, cells: torch.Tensor, size: int = 6) -> torch.Tensor:
    """The ``size x size`` windows of ``features`` ``(B, C, H, W)`` starting at ``cells`` ``(B, 2)`` = ``[row, col]``.

    Returns ``(B, C, size, size)``; differentiable with respect to ``features`` (gather, no copy
    loop). Cells must keep the window inside the map (``0 <= row, col <= H - size``).
    """
    b, c, h, w = features.shape
    cells = cells.to(device=features.device, dtype=torch.long)
    if cells.shape != (b, 2):
        raise ValueError(f"cells must be (B, 2) = (row, col) per feature map, got {tuple(cells.shape)} for B={b}")
    if (cells < 0).any() or (cells[:, 0] > h - size).any() or (cells[:, 1] > w - size).any():
        raise ValueError(f"windows of size {size} must lie inside the {h}x{w} map, got cells {cells.tolist()}")
    offs = torch.arange(size, device=features.device)
    rows = (cells[:, 0, None] + offs)[:, :, None]  # (B, size, 1)
    cols = (cells[:, 1, None] + offs)[:, None, :]  # (B, 1, size)
    batch = torch.arange(b, device=features.device)[:, None, None]
    return features.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, size, size, C) -> (B, C, size, size)


def recentred_features(features: torch.Tensor, cells: torch.Tensor, size: int = 6) -> torch.Tensor:
    """``features`` ``(B, C, H, W)`` moved so that the ``size`` window at ``cells`` ``(B, 2)`` becomes the centre window.

    Output cell ``(i, j)`` of sample ``b`` is input cell ``(i + dr, j + dc)`` with ``(dr, dc) = cells[b] -
    (H - size) // 2``; cells that fall outside the input are zeros. For an unpadded stride-8 backbone this
    is the feature map of the crop moved by ``8 (dr, dc)`` pixels, except in the zero strip. Returns
    ``(B, C, H, W)``; differentiable with respect to ``features``.
    """
    b, _, h, w = features.shape
    cells = cells.to(device=features.device, dtype=torch.long)
    if cells.shape != (b, 2):
        raise ValueError(f"cells must be (B, 2) = (row, col) per feature map, got {tuple(cells.shape)} for B={b}")
    shifts = cells - torch.tensor([(h - size) // 2, (w - size) // 2], device=cells.device)
    out = features.new_zeros(features.shape)
    for k, (dr, dc) in enumerate(shifts.tolist()):
        if abs(dr) >= h or abs(dc) >= w:
            continue
        out[k, :, max(-dr, 0):h - max(dr, 0), max(-dc, 0):w - max(dc, 0)] = \
            features[k, :, max(dr, 0):h - max(-dr, 0), max(dc, 0):w - max(-dc, 0)]
    return out


class CorrelationFilterExemplar:
    """CFNet's ``g`` on cached search features: ``(features (B, C, 22, 22), cells (B, 2)) -> θ' (B, C, 6, 6)``.

    The map is re-centred on the window at ``cells`` (:func:`recentred_features`) and passed through
    ``cf_layer`` (:class:`mtl.cfnet.CorrelationFilterLayer`: cosine window, ridge regression, centre
    crop) on the layer's device. No gradient flows through it, to the layer or to the features: the
    updater's training never needs one (the exemplars are its inputs). Exact at the centre cell
    ``(8, 8)``; off it the zero strip is our approximation (see the module docstring).
    """

    def __init__(self, cf_layer: torch.nn.Module):
        self.cf = cf_layer

    def __call__(self, features: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = features.to(self.cf.window.device)
            return self.cf(recentred_features(features, cells, self.cf.template_size))


def search_crop(frame: np.ndarray, box, siamfc_config, target_box=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``instance_size`` search crop ``(255, 255, 3)`` centred on ``box`` at SiamFC's context scale (pad: image mean).

    Returns ``(crop, offset)``: ``offset`` ``[dx, dy]`` float64 is where ``target_box`` (default ``box``)
    lies from the crop centre, in score-map cells (crop pixels / total stride).
    """
    c = siamfc_config
    center, size = box_to_center(np.asarray(box, dtype=np.float64))
    x_size = search_side(size, c)
    target_center, _ = box_to_center(np.asarray(box if target_box is None else target_box, dtype=np.float64))
    offset = (target_center - center) * c.instance_size / x_size / c.total_stride
    return crop_and_resize(frame, center, x_size, c.instance_size), offset


@torch.no_grad()
def clip_features(backbone: torch.nn.Module, sequences, siamfc_config, *, num_clips: int, clip_length: int,
                  frame_step: int = 1, seed: int = 0, device="cpu", batch: int = 32, progress: bool = True) -> dict:
    """Search features of ``num_clips`` clips of ``clip_length`` frames, every ``frame_step``-th frame of a sequence.

    Clips come from :class:`mtl.samplers.ClipSampler` (a span of ``(clip_length - 1) * frame_step + 1``
    frames starting on a visible frame, seeded by ``seed``). Returns ``{"features": (N, T, C, 22, 22)
    float16, "offsets": (N, T, 2) float32 [dx, dy] cells, "visible": (N, T) bool, "seconds": float}``: frame
    ``t``'s crop is centred on the box of frame ``t - 1`` and ``offsets`` says where the target is in it.
    """
    from mtl.samplers import ClipSampler
    from mtl.utils import progress_bar

    span = (clip_length - 1) * frame_step + 1
    sampler = ClipSampler(sequences, num_clips, span, seed=seed)
    backbone = backbone.eval().to(device)
    out, offsets, visible = [], [], []
    start = time.perf_counter()
    items = range(num_clips)
    for i in (progress_bar(items, desc="clip features", leave=False) if progress else items):
        frames, boxes, vis = sampler[i]
        frames, boxes, vis = frames[::frame_step], boxes[::frame_step], vis[::frame_step]
        cut = [search_crop(f, boxes[max(t - 1, 0)], siamfc_config, target_box=b) for t, (f, b) in enumerate(zip(frames, boxes))]
        crops = np.stack([crop for crop, _ in cut])
        offsets.append(torch.tensor(np.stack([off for _, off in cut]), dtype=torch.float32))
        feats = torch.cat([backbone(image_to_tensor(crops[k:k + batch], True).to(device))
                           for k in range(0, len(crops), batch)])
        out.append(feats.to("cpu", torch.float16).contiguous())
        visible.append(torch.from_numpy(np.asarray(vis, dtype=bool)))
    return {"features": torch.stack(out), "offsets": torch.stack(offsets), "visible": torch.stack(visible),
            "seconds": time.perf_counter() - start}


def cached_clip_features(backbone: torch.nn.Module, weights_key: str, spec: str, siamfc_config, *, num_clips: int,
                         clip_length: int, frame_step: int, seed: int, quick: bool = False, device="cpu",
                         progress: bool = True) -> dict:
    """:func:`clip_features` of dataset ``spec``, loaded from the on-disk cache when it was made by the same inputs.

    The cache file is keyed by the backbone's weights (``weights_key``, e.g. the SiamFC state-dict
    hash), the dataset, the crop geometry and the clip sampling; anything else gives a new file. Full
    mode: ``data/cache/features/`` (ignored by git, rebuilt when missing); quick mode: ``runs/quick/features/``.
    """
    from mtl.cache import cached_tensors
    from mtl.data import load_dataset

    key = {"weights": weights_key, "spec": spec, "quick": bool(quick), "num_clips": int(num_clips),
           "clip_length": int(clip_length), "frame_step": int(frame_step), "seed": int(seed), "centred_on": "previous box",
           "geometry": {k: getattr(siamfc_config, k) for k in ("context", "exemplar_size", "instance_size")}}

    def build() -> dict:
        sequences = load_dataset(spec, quick=quick, seed=siamfc_config.data_seed)
        return clip_features(backbone, sequences, siamfc_config, num_clips=num_clips, clip_length=clip_length,
                             frame_step=frame_step, seed=seed, device=device, progress=progress)

    return cached_tensors("clips", key, build, quick=quick)

"""Training samples drawn from sequences: image pairs (SiamFC), clips (recurrent updaters), frame sets (DiMP).

Each sampler is a ``torch.utils.data.Dataset`` of fixed length whose item ``i`` depends only on
``(seed, i)``, so any worker, in any order, gets the same sample. Frames come from
``Sequence.frame`` (rendered or read on demand). Only frames where the target is visible are used
as templates or search frames.
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from mtl.data import Sequence


class _Sampler(Dataset):
    def __init__(self, sequences: list[Sequence], num_samples: int, seed: int, transform, min_visible: int):
        if num_samples < 1:
            raise ValueError(f"number of samples must be >= 1, got {num_samples}")
        self.sequences = list(sequences)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.transform = transform
        # sequences with too few visible frames cannot give a sample
        self._usable = [k for k, s in enumerate(self.sequences) if int(np.sum(s.visible)) >= min_visible]
        if not self._usable:
            raise ValueError(f"no sequence has at least {min_visible} frames with the target visible")

    def __len__(self) -> int:
        return self.num_samples

    def _rng(self, i: int) -> np.random.Generator:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"sample {i} out of range for {self.num_samples} samples")
        return np.random.default_rng([self.seed, int(i)])

    def _finish(self, sample: tuple):
        return self.transform(*sample) if self.transform is not None else sample


def usable_frames(seq: Sequence, min_cover: float = 0.0) -> np.ndarray:
    """Indices of the frames where the target is visible and more than ``min_cover`` of it shows.

    ``seq.cover`` (the visible fraction, when the dataset has it) must exceed ``min_cover``; without
    cover information the visibility flags alone decide.
    """
    ok = np.asarray(seq.visible, dtype=bool)
    if min_cover > 0 and getattr(seq, "cover", None) is not None:
        ok = ok & (np.asarray(seq.cover, dtype=np.float64) > min_cover)
    return np.flatnonzero(ok)


class PairSampler(_Sampler):
    """Template/search pairs from one sequence, at most ``max_gap`` frames apart, both with the target visible.

    ``min_cover``: both frames must show more than this fraction of the target (siamfc-pytorch keeps
    GOT-10k frames whose cover exceeds 0.3 of the sequence's largest; ours peaks at 1, so 0.3).
    Item: ``(z_frame HxWx3 uint8, z_box (4,) float64, x_frame HxWx3 uint8, x_box (4,) float64)``,
    or ``transform`` applied to those four.
    """

    def __init__(self, sequences, num_pairs: int, max_gap: int = 100, seed: int = 0, transform=None,
                 min_cover: float = 0.0):
        if not 0 <= min_cover < 1:
            raise ValueError(f"min_cover must be in [0, 1), got {min_cover!r}")
        self.min_cover = float(min_cover)
        frames = [usable_frames(s, self.min_cover) for s in sequences]
        super().__init__([s for s, f in zip(sequences, frames) if f.size], num_pairs, seed, transform, min_visible=1)
        self._frames = [f for f in frames if f.size]  # aligned with self.sequences
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        self.max_gap = int(max_gap)

    def __getitem__(self, i: int):
        rng = self._rng(i)
        k = self._usable[rng.integers(len(self._usable))]
        seq, vis = self.sequences[k], self._frames[k]
        z = int(rng.choice(vis))
        near = vis[np.abs(vis - z) <= self.max_gap]
        others = near[near != z]
        x = int(rng.choice(others)) if others.size else z
        return self._finish((seq.frame(z), seq.boxes[z].copy(), seq.frame(x), seq.boxes[x].copy()))


class ClipSampler(_Sampler):
    """Clips of ``clip_length`` consecutive frames starting on a frame where the target is visible.

    Item: ``(frames (T, H, W, 3) uint8, boxes (T, 4) float64, visible (T,) bool)``, or ``transform``
    applied to those three.
    """

    def __init__(self, sequences, num_clips: int, clip_length: int, seed: int = 0, transform=None):
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        long_enough = [s for s in sequences if len(s) >= clip_length]
        if not long_enough:
            raise ValueError(f"no sequence has at least clip_length={clip_length} frames")
        super().__init__(long_enough, num_clips, seed, transform, min_visible=1)
        self.clip_length = int(clip_length)
        self._usable = [k for k in self._usable
                        if np.any(self.sequences[k].visible[:len(self.sequences[k]) - clip_length + 1])]
        if not self._usable:
            raise ValueError("no sequence has a visible frame that can start a clip")

    def __getitem__(self, i: int):
        rng = self._rng(i)
        seq = self.sequences[self._usable[rng.integers(len(self._usable))]]
        starts = np.flatnonzero(seq.visible[:len(seq) - self.clip_length + 1])
        s = int(rng.choice(starts))
        idx = range(s, s + self.clip_length)
        frames = np.stack([seq.frame(t) for t in idx])
        return self._finish((frames, seq.boxes[s:s + self.clip_length].copy(),
                             seq.visible[s:s + self.clip_length].copy()))


class FrameSetSampler(_Sampler):
    """DiMP-style train/test frame sets from one window of ``segment`` consecutive frames.

    ``num_train`` visible frames come from the first half of the window and ``num_test`` from the
    second half (in time order; frames repeat when a half has too few visible ones). Item:
    ``(train_frames (n, H, W, 3) uint8, train_boxes (n, 4), test_frames (m, H, W, 3) uint8,
    test_boxes (m, 4))``, or ``transform`` applied to those four.
    """

    def __init__(self, sequences, num_samples: int, num_train: int = 3, num_test: int = 3, segment: int = 60,
                 seed: int = 0, transform=None):
        if num_train < 1 or num_test < 1:
            raise ValueError(f"num_train and num_test must be >= 1, got {num_train}, {num_test}")
        if segment < 2:
            raise ValueError(f"segment must be >= 2 frames, got {segment}")
        super().__init__(sequences, num_samples, seed, transform, min_visible=2)
        self.num_train, self.num_test, self.segment = int(num_train), int(num_test), int(segment)

    def __getitem__(self, i: int):
        rng = self._rng(i)
        for _ in range(100):
            seq = self.sequences[self._usable[rng.integers(len(self._usable))]]
            seg = min(self.segment, len(seq))
            s = int(rng.integers(0, len(seq) - seg + 1))
            half = s + seg // 2
            first = np.flatnonzero(seq.visible[s:half]) + s
            second = np.flatnonzero(seq.visible[half:s + seg]) + half
            if first.size and second.size:
                break
        else:
            raise RuntimeError("could not find a window with visible frames in both halves after 100 tries")
        train = np.sort(rng.choice(first, self.num_train, replace=first.size < self.num_train))
        test = np.sort(rng.choice(second, self.num_test, replace=second.size < self.num_test))
        return self._finish((np.stack([seq.frame(t) for t in train]), seq.boxes[train].copy(),
                             np.stack([seq.frame(t) for t in test]), seq.boxes[test].copy()))

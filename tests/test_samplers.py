"""Samplers: shapes, determinism from (seed, i), visible-only frames, constraints respected."""
import numpy as np
import pytest

from mtl.data import Sequence
from mtl.samplers import ClipSampler, FrameSetSampler, PairSampler


def _toy(name: str, n: int, visible=None) -> Sequence:
    # frame i is filled with the value i, so a frame tells which index it came from
    boxes = np.column_stack([np.arange(n), np.zeros(n), np.full(n, 4.0), np.full(n, 4.0)])
    return Sequence(name, boxes, frozenset(), visible if visible is not None else np.ones(n, bool),
                    frame_loader=lambda i: np.full((6, 8, 3), i, np.uint8))


def test_pair_sampler_is_deterministic_and_skips_hidden_frames():
    vis = np.ones(50, bool)
    vis[10:30] = False
    seqs = [_toy("a", 50, vis), _toy("b", 20)]
    sampler = PairSampler(seqs, num_pairs=200, max_gap=5, seed=1)
    assert len(sampler) == 200
    for i in range(200):
        z, zb, x, xb = sampler[i]
        zi, xi = int(z[0, 0, 0]), int(x[0, 0, 0])
        assert zb[0] == zi and xb[0] == xi and z.shape == (6, 8, 3)
        assert abs(zi - xi) <= 5 and zi != xi
    again = PairSampler(seqs, num_pairs=200, max_gap=5, seed=1)
    assert all(np.array_equal(sampler[i][1], again[i][1]) and np.array_equal(sampler[i][3], again[i][3])
               for i in range(0, 200, 17))
    # from sequence "a" (50 frames), a hidden index is never drawn
    only_a = PairSampler([seqs[0]], num_pairs=100, max_gap=50, seed=0)
    drawn = {int(only_a[i][0][0, 0, 0]) for i in range(100)} | {int(only_a[i][2][0, 0, 0]) for i in range(100)}
    assert not drawn & set(range(10, 30))
    with pytest.raises(IndexError):
        sampler[200]


def test_pair_sampler_transform_and_bad_inputs():
    s = PairSampler([_toy("a", 10)], 5, transform=lambda z, zb, x, xb: (zb, xb))
    assert len(s[0]) == 2
    with pytest.raises(ValueError, match="visible"):
        PairSampler([_toy("a", 5, np.zeros(5, bool))], 3)
    with pytest.raises(ValueError, match=">= 1"):
        PairSampler([_toy("a", 5)], 0)


def test_clip_sampler_gives_consecutive_frames_starting_visible():
    vis = np.ones(30, bool)
    vis[::2] = False
    sampler = ClipSampler([_toy("a", 30, vis), _toy("short", 3)], num_clips=20, clip_length=6, seed=2)
    for i in range(20):
        frames, boxes, visible = sampler[i]
        assert frames.shape == (6, 6, 8, 3) and frames.dtype == np.uint8
        idx = frames[:, 0, 0, 0].astype(int)
        assert np.array_equal(np.diff(idx), np.ones(5)) and np.array_equal(boxes[:, 0], idx)
        assert visible[0] and np.array_equal(visible, vis[idx])
    with pytest.raises(ValueError, match="clip_length"):
        ClipSampler([_toy("a", 5)], 3, clip_length=6)


def test_frame_set_sampler_orders_train_before_test():
    sampler = FrameSetSampler([_toy("a", 100)], num_samples=10, num_train=3, num_test=2, segment=40, seed=0)
    for i in range(10):
        tr, trb, te, teb = sampler[i]
        assert tr.shape == (3, 6, 8, 3) and te.shape == (2, 6, 8, 3) and trb.shape == (3, 4)
        t_idx, s_idx = tr[:, 0, 0, 0].astype(int), te[:, 0, 0, 0].astype(int)
        assert t_idx.max() < s_idx.min() and s_idx.max() - t_idx.min() < 40
        assert np.array_equal(trb[:, 0], t_idx)


def test_samplers_work_on_synthetic_sequences():
    from mtl.synth import make_split
    seqs = make_split("train", quick=True, num_sequences=3)
    z, zb, x, xb = PairSampler(seqs, 4)[3]
    assert z.shape == (240, 320, 3) and zb.shape == (4,)
    frames, boxes, vis = ClipSampler(seqs, 2, 4)[0]
    assert frames.shape == (4, 240, 320, 3)


def test_pair_sampler_min_cover_keeps_only_mostly_visible_frames():
    seq = _toy("a", 40)
    seq.cover = np.where(np.arange(40) % 2 == 0, 1.0, 0.2)  # odd frames show only 20% of the target
    sampler = PairSampler([seq], num_pairs=100, max_gap=10, seed=0, min_cover=0.3)
    used = {int(z[0, 0, 0]) for z, _, x, _ in (sampler[i] for i in range(100))} | \
           {int(x[0, 0, 0]) for z, _, x, _ in (sampler[i] for i in range(100))}
    assert used and all(f % 2 == 0 for f in used)
    # without a cover threshold the odd frames are drawn too
    loose = PairSampler([seq], num_pairs=100, max_gap=10, seed=0)
    assert any(int(loose[i][0][0, 0, 0]) % 2 for i in range(100))
    with pytest.raises(ValueError, match="min_cover"):
        PairSampler([seq], 3, min_cover=1.0)
    seq_hidden = _toy("b", 5)
    seq_hidden.cover = np.full(5, 0.1)
    with pytest.raises(ValueError):
        PairSampler([seq_hidden], 3, min_cover=0.3)

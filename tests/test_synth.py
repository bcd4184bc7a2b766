"""The synthetic benchmark: determinism, disjoint splits, exact boxes, attribute tags."""
import numpy as np
import pytest

from mtl import synth
from mtl.data import ATTRIBUTES, load_dataset


@pytest.fixture(scope="module")
def quick_test():
    return synth.make_split("test", quick=True)


def test_same_seed_gives_byte_identical_frames_and_boxes():
    a = synth.make_split("test", quick=True, seed=3, num_sequences=3)
    synth._ASSET_CACHE.clear()
    b = synth.make_split("test", quick=True, seed=3, num_sequences=3)
    for sa, sb in zip(a, b):
        assert len(sa) == len(sb)
        assert np.array_equal(sa.boxes, sb.boxes)
        # random access order must not matter: read b backwards
        for i in reversed(range(0, len(sa), 7)):
            assert sb.frame(i).tobytes() == sa.frame(i).tobytes()
    other = synth.make_split("test", quick=True, seed=4, num_sequences=1)[0]
    assert not np.array_equal(other.boxes[: len(a[0])], a[0].boxes[: len(other)])


def test_splits_use_disjoint_source_images():
    pools = {s: set(synth.source_ids(s)) for s in synth.SPLITS}
    assert not pools["train"] & pools["test"] and not pools["train"] & pools["val"] and not pools["val"] & pools["test"]
    used = {s: set().union(*(q.sources for q in synth.make_split(s, quick=True))) for s in synth.SPLITS}
    for s in synth.SPLITS:
        assert used[s] and used[s] <= pools[s]
    assert not used["train"] & used["test"]
    assert not used["val"] & (used["train"] | used["test"])


def test_box_is_tight_box_of_rendered_mask(quick_test):
    checked = 0
    for seq in quick_test[:4]:
        for i in range(0, len(seq), 9):
            on = seq.render_mask(i) > 0.5
            rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
            expected = [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
            assert np.array_equal(seq.boxes[i], expected), (seq.name, i)
            checked += 1
    assert checked > 10


def test_target_layer_changes_pixels_only_inside_its_box(quick_test):
    seq = quick_test[1]
    layers_without = ("background", "distractors")
    for i in (0, len(seq) // 2, len(seq) - 1):
        diff = np.abs(seq.render_layers(i, layers_without + ("target",)).astype(int)
                      - seq.render_layers(i, layers_without).astype(int)).sum(2) > 0
        x, y, w, h = seq.boxes[i].astype(int)
        inside = np.zeros_like(diff)
        inside[max(y - 1, 0):y + h + 1, max(x - 1, 0):x + w + 1] = True  # 1 px of anti-aliased edge
        assert diff.any() and not (diff & ~inside).any()
        # the mask's pixels with alpha > 0.5 fill the box
        on = seq.render_mask(i) > 0.5
        assert on[y:y + h, x:x + w].sum() == on.sum()


def test_frames_and_annotations_are_valid(quick_test):
    assert len(quick_test) == 10
    for seq in quick_test:
        f = seq.frame(0)
        assert f.shape == (synth.FRAME_H, synth.FRAME_W, 3) and f.dtype == np.uint8
        assert seq.boxes.shape == (len(seq), 4) and seq.boxes.dtype == np.float64
        assert np.all(np.isfinite(seq.boxes)) and np.all(seq.boxes[:, 2:] > 0)
        # boxes stay inside the image (intersected with it)
        assert np.all(seq.boxes[:, :2] >= 0)
        assert np.all(seq.boxes[:, 0] + seq.boxes[:, 2] <= synth.FRAME_W)
        assert np.all(seq.boxes[:, 1] + seq.boxes[:, 3] <= synth.FRAME_H)
        assert seq.visible.shape == (len(seq),) and seq.visible.dtype == bool and seq.visible[0] | True
        assert np.array_equal(seq.visible, seq.cover >= synth.VISIBLE_THRESHOLD)
        assert seq.attributes <= set(ATTRIBUTES)
        assert 40 <= len(seq) <= 60
    with pytest.raises(IndexError):
        quick_test[0].frame(len(quick_test[0]))


def test_full_test_split_size_and_lengths():
    full = synth.make_split("test")
    assert len(full) >= 100
    assert all(100 <= len(s) <= 300 for s in full)
    # first k sequences do not depend on how many are asked for
    assert np.array_equal(synth.make_split("test", num_sequences=2)[1].tracks["cx"], full[1].tracks["cx"])


def test_attributes_follow_generator_parameters(quick_test):
    seqs = synth.make_split("val", num_sequences=30)
    for seq in seqs:
        fx = seq.meta["effects"]
        if fx["distractors"] or fx["camouflage"]:
            assert "BC" in seq.attributes
        else:
            assert "BC" not in seq.attributes
        if "OCC" in seq.attributes:
            assert seq.meta["num_occlusions"] > 0
        if "MB" in seq.attributes:
            assert (seq.tracks["blur_len"] >= 3).any()
        if not fx["rotation"]:
            assert "IPR" not in seq.attributes
    tags = set().union(*(s.attributes for s in seqs))
    assert {"OCC", "BC", "DEF", "IV"} <= tags
    # full occlusion events hide the target in some frames
    assert any((~s.visible).any() for s in seqs)


def test_make_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        synth.make_split("testing")
    with pytest.raises(ValueError, match="seed"):
        synth.make_split("test", seed=-1)
    with pytest.raises(ValueError, match="spec"):
        load_dataset("synth")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("vot:/x")
    with pytest.raises(ValueError, match="scenario"):
        load_dataset("synth:test:foggy")


def test_stress_scenarios_force_their_effect_and_leave_the_split_alone():
    plain = synth.make_split("val", num_sequences=8)
    occ = load_dataset("synth:val:long_occlusion")[:8]
    dis = synth.make_split("val", num_sequences=8, scenario="distractors")
    assert occ[0].name == "synth-val-long_occlusion-0000" and occ[0].meta["scenario"] == "long_occlusion"
    for p, o, d in zip(plain, occ, dis):
        assert len(p) == len(o) == len(d)  # same lengths, a fresh draw of everything else
        assert not np.array_equal(p.tracks["cx"], o.tracks["cx"])
        assert o.sources <= set(synth.source_ids("val"))
        # the one occluder is full and, 70+ frames long with 10-frame ramps, hides the target for many frames
        assert "OCC" in o.attributes and all(e["full"] for e in o.events["occluders"])
        assert (~o.visible).sum() >= min(25, len(o) // 4)
        assert len(d.events["distractors"]) >= 2 and set(d.meta["distractor_kinds"]) == {"sibling"}
    # building a scenario does not disturb the plain split (separate random streams, separate asset cache keys)
    synth._ASSET_CACHE.clear()
    again = synth.make_split("val", num_sequences=8)
    for p, a in zip(plain, again):
        assert np.array_equal(p.boxes, a.boxes) and p.frame(5).tobytes() == a.frame(5).tobytes()

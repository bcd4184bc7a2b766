"""Dataset loaders and writers: round trips and a clear error for each kind of bad input."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtl import synth
from mtl.cli import main as cli_main
from mtl.data import Sequence, load_dataset, load_got10k, load_lasot, load_otb, read_boxes, write_split


def _frames(folder: Path, n: int, digits: int = 4, w: int = 40, h: int = 30) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i + 1:0{digits}d}.jpg"), np.full((h, w, 3), 20 * i, np.uint8))


def _otb(root: Path, lines: list[str], n_frames: int = 3, name: str = "Toy") -> Path:
    _frames(root / name / "img", n_frames)
    (root / name / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return root / name / "groundtruth_rect.txt"


GOOD = ["1,2,10,8", "2 3 10 8", "3\t4\t10\t8"]


def test_otb_reads_comma_space_and_tab_separated_lines(tmp_path):
    _otb(tmp_path, GOOD)
    (seq,) = load_dataset(f"otb:{tmp_path}")
    assert seq.name == "Toy" and len(seq) == 3
    assert np.array_equal(seq.boxes, [[1, 2, 10, 8], [2, 3, 10, 8], [3, 4, 10, 8]])
    assert seq.frame(2).shape == (30, 40, 3) and seq.frame(2).dtype == np.uint8
    assert seq.visible.all()


def test_generated_split_round_trips_through_otb_and_got10k(tmp_path):
    n = 2
    originals = synth.make_split("test", quick=True, num_sequences=n)
    for fmt in ("otb", "got10k"):
        out = tmp_path / fmt
        assert cli_main(["generate", "--split", "test", "--quick", "--num-sequences", str(n),
                         "--format", fmt, "--out", str(out)]) == 0
        loaded = load_dataset(f"{fmt}:{out}")
        assert [s.name for s in loaded] == [s.name for s in originals]
        for a, b in zip(loaded, originals):
            assert np.array_equal(a.boxes, b.boxes)
            assert np.array_equal(a.visible, b.visible)
            assert a.attributes == b.attributes
            frame = a.frame(len(a) - 1)
            assert frame.shape == b.frame(len(b) - 1).shape
            assert np.abs(frame.astype(int) - b.frame(len(b) - 1)).mean() < 4  # JPEG, quality 95
    assert (tmp_path / "otb" / "synth-test-0000" / "img" / "0001.jpg").exists()
    assert (tmp_path / "got10k" / "synth-test-0000" / "00000001.jpg").exists()
    assert (tmp_path / "got10k" / "list.txt").read_text().split() == [s.name for s in originals]


def test_generate_writes_a_stress_set(tmp_path):
    assert cli_main(["generate", "--split", "val", "--quick", "--num-sequences", "1", "--scenario", "long_occlusion",
                     "--png", "--out", str(tmp_path)]) == 0
    (loaded,) = load_dataset(f"otb:{tmp_path}")
    (original,) = load_dataset("synth:val:long_occlusion", quick=True)[:1]
    assert loaded.name == original.name == "synth-val-long_occlusion-0000"
    assert np.array_equal(loaded.boxes, original.boxes) and np.array_equal(loaded.visible, original.visible)
    with pytest.raises(ValueError, match="unknown scenario"):
        cli_main(["--debug", "generate", "--split", "val", "--scenario", "fog", "--out", str(tmp_path / "x")])


def test_png_and_non_integer_boxes_round_trip_exactly(tmp_path):
    frames = [np.random.default_rng(k).integers(0, 256, (12, 16, 3), dtype=np.uint8) for k in range(2)]
    boxes = np.array([[0.1, 1 / 3, 5.25, 4.0], [2.0, 3.0, 1e-3, 7.123456789012345]])
    seq = Sequence("s", boxes, frozenset({"OCC"}), np.array([True, False]), frame_loader=lambda i: frames[i])
    write_split([seq], tmp_path, "got10k", image_ext=".png")
    (back,) = load_got10k(tmp_path)
    assert np.array_equal(back.boxes, boxes) and back.attributes == {"OCC"}
    assert np.array_equal(back.visible, [True, False])
    assert np.array_equal(back.frame(1), frames[1])


def test_lasot_layout(tmp_path):
    d = tmp_path / "cat" / "cat-1"
    _frames(d / "img", 3, digits=8)
    (d / "groundtruth.txt").write_text("1,1,5,5\n0,0,0,0\n2,2,5,5\n")
    (d / "full_occlusion.txt").write_text("0,1,0")
    (d / "out_of_view.txt").write_text("0,0,0")
    (seq,) = load_dataset(f"lasot:{tmp_path}")
    assert seq.name == "cat-1" and np.array_equal(seq.visible, [True, False, True])
    # the absent frame's empty box is replaced by the previous valid one
    assert np.array_equal(seq.boxes[1], [1, 1, 5, 5]) and "OCC" in seq.attributes


@pytest.mark.parametrize("loader", ["otb", "got10k", "lasot"])
def test_missing_folder(tmp_path, loader):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"{loader}:{tmp_path / 'nowhere'}")


def test_missing_ground_truth_names_the_file(tmp_path):
    _frames(tmp_path / "Toy" / "img", 3)
    with pytest.raises(FileNotFoundError, match="groundtruth_rect.txt"):
        load_otb(tmp_path)
    _frames(tmp_path / "g" / "a", 3, digits=8)
    (tmp_path / "g" / "list.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError, match=r"a/groundtruth.txt"):
        load_got10k(tmp_path / "g")


def test_empty_ground_truth(tmp_path):
    gt = _otb(tmp_path, [""])
    with pytest.raises(ValueError, match=f"{gt}: ground-truth file is empty"):
        load_otb(tmp_path)


def test_frame_count_mismatch(tmp_path):
    gt = _otb(tmp_path, GOOD[:2], n_frames=3)
    with pytest.raises(ValueError, match=f"{gt}: 2 ground-truth lines but 3 frames"):
        load_otb(tmp_path)


@pytest.mark.parametrize("bad_line, message", [
    ("1,2,nan,8", "non-finite"),
    ("1,2,0,8", "non-positive size"),
    ("1,2,10,-3", "non-positive size"),
    ("100,2,10,8", "wholly outside"),
    ("-20,2,10,8", "wholly outside"),
    ("1,2,10", "expected 4 numbers"),
    ("1,2,x,8", "not a number"),
])
def test_bad_box_names_file_and_line(tmp_path, bad_line, message):
    gt = _otb(tmp_path, [GOOD[0], bad_line, GOOD[2]])
    with pytest.raises(ValueError, match=rf"{gt}:2: .*{message}"):
        load_otb(tmp_path)


def test_got10k_bad_box_and_bad_labels(tmp_path):
    d = tmp_path / "seq"
    _frames(d, 2, digits=8)
    (d / "groundtruth.txt").write_text("1,1,5,5\n1,1,5,nan\n")
    with pytest.raises(ValueError, match=r"groundtruth.txt:2: non-finite"):
        load_got10k(tmp_path)
    (d / "absence.label").write_text("0\n1\n")  # an absent frame may carry a NaN box
    (seq,) = load_got10k(tmp_path)
    assert np.array_equal(seq.boxes[1], [1, 1, 5, 5]) and not seq.visible[1]
    (d / "cover.label").write_text("8\n")
    with pytest.raises(ValueError, match=r"cover.label: 1 values but the ground truth has 2"):
        load_got10k(tmp_path)


def test_read_boxes_without_image_size_and_write_split_rejects_bad_format(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text("1,2,3,4\n\n")
    assert np.array_equal(read_boxes(p), [[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="format"):
        write_split([], tmp_path, "vot")


def test_first_cuts_every_per_frame_field_and_keeps_the_frames():
    from mtl.data import Sequence

    boxes = np.arange(20, dtype=np.float64).reshape(5, 4) + 1
    seq = Sequence("s", boxes, visible=[1, 0, 1, 1, 1], cover=np.linspace(0, 1, 5), attributes={"occlusion"},
                   frame_loader=lambda i: np.full((4, 4, 3), i, np.uint8))
    cut = seq.first(3)
    assert len(cut) == 3 and cut.name == "s" and cut.attributes == seq.attributes
    assert np.array_equal(cut.boxes, boxes[:3]) and cut.visible.tolist() == [True, False, True]
    assert np.array_equal(cut.cover, seq.cover[:3]) and cut.frame(2)[0, 0, 0] == 2
    with pytest.raises(IndexError):
        cut.frame(3)
    assert seq.first(None) is seq and seq.first(10) is seq
    with pytest.raises(ValueError, match="at least 1 frame"):
        seq.first(0)

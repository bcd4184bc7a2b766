"""The got10k toolkit drives mtl trackers as they are: ``Tracker.track`` and ``ExperimentGOT10k``.

The toolkit's experiments call ``tracker.track(img_files, box, visualize=False) -> (boxes, times)``
and name result folders by ``tracker.name``; ``mtl.tracker.Tracker.track`` runs the same loop as
``mtl benchmark`` (``mtl.eval.track_frames``), so the toolkit's stored boxes and its report must
equal ours.
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

got10k = pytest.importorskip("got10k")

from mtl import eval as ev  # noqa: E402
from mtl.cli import main  # noqa: E402
from mtl.data import load_got10k  # noqa: E402
from mtl.tracker import Tracker  # noqa: E402


class ShiftRight(Tracker):
    """A real (non-oracle) toy tracker: moves the box one pixel right per frame."""

    name = "shift_right"

    def init(self, image, box):
        self.shape = image.shape
        self.box = np.asarray(box, dtype=np.float64)

    def update(self, image):
        assert image.shape == self.shape and image.dtype == np.uint8
        self.box = self.box + [1.0, 0.0, 0.0, 0.0]
        return self.box


class FailsOnFrame2(ShiftRight):
    name = "fails_on_2"

    def init(self, image, box):
        super().init(image, box)
        self.frame = 0

    def update(self, image):
        self.frame += 1
        box = super().update(image)
        if self.frame == 2:
            raise RuntimeError("boom")
        return box


@pytest.fixture(scope="module")
def got10k_root(tmp_path_factory):
    """``<root>/val/`` holding a 2-sequence quick split in the GOT-10k layout (the toolkit's ``subset='val'``)."""
    root = tmp_path_factory.mktemp("got10k")
    assert main(["generate", "--format", "got10k", "--quick", "--num-sequences", "2",
                 "--out", str(root / "val")]) == 0
    return root


def test_track_contract_on_the_base_class(got10k_root):
    seq = load_got10k(got10k_root / "val")[0]
    files = sorted(str(p) for p in (got10k_root / "val" / seq.name).glob("*.jpg"))
    box = seq.boxes[0].tolist()
    boxes, times = ShiftRight().track(files, box)
    n = len(files)
    assert boxes.shape == (n, 4) and times.shape == (n,)
    assert boxes.dtype == np.float64 and times.dtype == np.float64
    np.testing.assert_array_equal(boxes[0], box)
    np.testing.assert_allclose(boxes[1:, 0], box[0] + np.arange(1, n))
    assert np.all(times >= 0) and np.all(np.isfinite(times))
    # the same loop as the evaluation runner: identical boxes on the same frames
    np.testing.assert_array_equal(boxes, ev.track_sequence(ShiftRight(), seq)["boxes"])
    # a generator of file names works too (the toolkit passes a list, others may not)
    np.testing.assert_array_equal(ShiftRight().track(iter(files), np.asarray(box))[0], boxes)


def test_track_failures_and_oracles_are_recorded_not_fatal(got10k_root, monkeypatch):
    seq = load_got10k(got10k_root / "val")[0]
    files = sorted(str(p) for p in (got10k_root / "val" / seq.name).glob("*.jpg"))
    with pytest.warns(RuntimeWarning, match=rf"'fails_on_2' failed on sequence '{seq.name}' frame 2"):
        boxes, times = FailsOnFrame2().track(files, seq.boxes[0])
    np.testing.assert_array_equal(boxes[2], np.zeros(4))
    assert boxes[3, 0] == seq.boxes[0, 0] + 3  # the run goes on
    # an oracle reference row has no ground truth under the toolkit: init fails, every frame is 0,0,0,0
    with pytest.warns(RuntimeWarning, match="oracle"):
        boxes, _ = ev.make_tracker("constant_velocity").track(files, seq.boxes[0])
    np.testing.assert_array_equal(boxes[0], seq.boxes[0])
    assert not boxes[1:].any()
    # visualize=True without a display is ignored (one warning), the boxes are unchanged
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.warns(RuntimeWarning, match="visualize=True ignored"):
        vboxes, _ = ShiftRight().track(files[:5], seq.boxes[0], visualize=True)
    np.testing.assert_array_equal(vboxes, ShiftRight().track(files[:5], seq.boxes[0])[0])


@pytest.mark.parametrize("tracker_name,options", [
    ("static", {}),                       # a reference row that needs no ground truth (not an oracle)
    # (not opencv_mil: OpenCV's MIL samples with its own unseeded RNG, two runs differ)
    # a learned one: untrained weights (seeded, the same in both runs); one scale keeps it fast
    ("siamfc", {"checkpoint": None, "num_scales": 1}),
])
def test_toolkit_experiment_matches_mtl_benchmark_and_evaluate(got10k_root, tmp_path, tracker_name, options):
    from got10k.experiments import ExperimentGOT10k

    tracker = ev.make_tracker(tracker_name, **options)
    assert not hasattr(tracker, "set_sequence")  # not an oracle: the toolkit passes no ground truth
    exp = ExperimentGOT10k(str(got10k_root), subset="val", result_dir=str(tmp_path / "toolkit"),
                           report_dir=str(tmp_path / "reports"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no frame may fail
        exp.run(tracker)  # the toolkit's own loop, no wrapper
    performance = exp.report([tracker.name])[tracker.name]

    dataset = f"got10k:{got10k_root / 'val'}"
    opts = [f"--option={k}={v}" for k, v in options.items()]
    assert main(["benchmark", "--tracker", tracker_name, "--dataset", dataset, "--out", str(tmp_path / "mtl"),
                 "--no-progress", *opts]) == 0
    assert main(["evaluate", "--results", str(tmp_path / "mtl"), "--dataset", dataset,
                 "--json", str(tmp_path / "report.json")]) == 0
    ours = json.loads((tmp_path / "report.json").read_text())["trackers"][tracker_name]

    seqs = load_got10k(got10k_root / "val")
    runs = {}
    for seq in seqs:
        # toolkit layout: <result_dir>/GOT-10k/<tracker.name>/<seq>/<seq>_001.txt, one repetition
        # for a deterministic tracker (is_deterministic), boxes and times written with np.savetxt
        seq_dir = tmp_path / "toolkit" / "GOT-10k" / tracker.name / seq.name
        assert sorted(p.name for p in seq_dir.iterdir()) == [f"{seq.name}_001.txt", f"{seq.name}_time.txt"]
        theirs = np.loadtxt(seq_dir / f"{seq.name}_001.txt", delimiter=",")
        mine = ev.read_boxes(ev.results_file(tmp_path / "mtl", ev.benchmark_name(dataset), tracker_name, seq.name),
                             len(seq))
        assert theirs.shape == mine.shape == (len(seq), 4)
        np.testing.assert_allclose(theirs, mine, atol=1e-3, rtol=0)
        np.testing.assert_array_equal(theirs[0], np.round(seq.boxes[0], 3))
        assert np.loadtxt(seq_dir / f"{seq.name}_time.txt").shape == (len(seq),)
        runs[seq.name] = {"boxes": theirs}

    # the toolkit's AO / SR (frame 0 excluded, cover > 0, boxes clipped to the resolution) are ours
    assert performance["overall"]["ao"] == pytest.approx(ours["ao"], abs=1e-6)
    assert performance["overall"]["sr"] == pytest.approx(ours["sr50"], abs=1e-6)
    from_toolkit_boxes = ev.summarize(runs, seqs)
    assert performance["overall"]["ao"] == pytest.approx(from_toolkit_boxes["ao"], abs=1e-6)
    assert performance["overall"]["sr"] == pytest.approx(from_toolkit_boxes["sr50"], abs=1e-6)
    for seq in seqs:
        assert performance["seq_wise"][seq.name]["ao"] == pytest.approx(
            from_toolkit_boxes["per_sequence"][seq.name]["ao"], abs=1e-6)

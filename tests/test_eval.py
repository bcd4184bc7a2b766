"""mtl.eval: runners, results files, reports, registry, failure handling, CLI end to end."""
import warnings

import numpy as np
import pytest

from mtl import eval as ev
from mtl import metrics
from mtl.tracker import Tracker


class FakeSequence:
    """A bright square moving right on a dark background (the Sequence protocol of mtl.data)."""

    def __init__(self, name, n=12, speed=3.0, size=(64, 48), attributes=("FM",), visible=None):
        self.name = name
        self.image_size = size
        x = 5 + speed * np.arange(n)
        self.boxes = np.stack([x, np.full(n, 10.0), np.full(n, 12.0), np.full(n, 10.0)], axis=1)
        self.attributes = frozenset(attributes)
        self.visible = np.ones(n, bool) if visible is None else np.asarray(visible, bool)

    def __len__(self):
        return len(self.boxes)

    def frame(self, i):
        img = np.full((self.image_size[1], self.image_size[0], 3), 20, np.uint8)
        x, y, w, h = self.boxes[i].astype(int)
        img[y:y + h, x:x + w] = 230
        return img


class Oracle(Tracker):
    name = "oracle"

    def set_sequence(self, seq):
        self.gt = seq.boxes

    def init(self, image, box):
        self.f = 0

    def update(self, image):
        self.f += 1
        return self.gt[self.f]


class Flaky(Tracker):
    """Raises on frame 2, returns NaN on frame 3, a zero-width box on frame 4, else the first box."""

    name = "flaky"

    def init(self, image, box):
        self.box, self.f = np.asarray(box, float), 0

    def update(self, image):
        self.f += 1
        if self.f == 2:
            raise RuntimeError("boom")
        if self.f == 3:
            return [np.nan, 0, 1, 1]
        if self.f == 4:
            return [0, 0, 0, 5]
        return self.box


@pytest.fixture
def seqs():
    return [FakeSequence("a", attributes=("FM", "SV")), FakeSequence("b", n=9, speed=1.0, attributes=("SV",))]


def test_oracle_scores_perfectly_and_files_roundtrip(tmp_path, seqs):
    runs = ev.run_ope(Oracle(), seqs, out_dir=tmp_path, benchmark="fake", progress=False)
    f = ev.results_file(tmp_path, "fake", "oracle", "a")
    assert f.is_file() and ev.times_file(tmp_path, "fake", "oracle", "a").is_file()
    assert f.read_text().splitlines()[0] == "5.000,10.000,12.000,10.000"  # the toolkit's %.3f, line 1 = given box
    np.testing.assert_allclose(runs["a"]["boxes"], seqs[0].boxes)
    report = ev.evaluate(tmp_path, seqs)
    s = report["trackers"]["oracle"]
    assert report["benchmark"] == "fake"
    assert s["auc"] == pytest.approx(20 / 21) and s["precision"] == 1.0 and s["ao"] == pytest.approx(1.0)
    assert s["sr75"] == 1.0 and s["fps"] > 0
    assert s["per_attribute"]["SV"]["n_seqs"] == 2 and s["per_attribute"]["FM"]["n_seqs"] == 1


def test_static_tracker_matches_hand_computed_metrics(tmp_path, seqs):
    tracker = ev.make_tracker("static")
    runs = ev.run_ope(tracker, seqs, progress=False)
    s = ev.summarize(runs, seqs)
    # per sequence: the static box against the moving GT, by the metrics module directly
    per = [metrics.otb_sequence_metrics(np.repeat(q.boxes[:1], len(q), 0), q.boxes) for q in seqs]
    assert s["auc"] == pytest.approx(np.mean([p["auc"] for p in per]))
    got = np.concatenate([metrics.got10k_frame_ious(np.repeat(q.boxes[:1], len(q), 0), q.boxes) for q in seqs])
    assert s["ao"] == pytest.approx(got.mean())
    assert s["per_attribute"]["FM"]["auc"] == pytest.approx(per[0]["auc"])


def test_cache_is_reused_unless_overwrite(tmp_path, seqs):
    ev.run_ope(ev.make_tracker("static"), seqs, out_dir=tmp_path, benchmark="fake", progress=False)
    f = ev.results_file(tmp_path, "fake", "static", "a")
    f.write_text(f.read_text().replace("5.000,10.000", "6.000,10.000", 1))  # mark the stored run
    runs = ev.run_ope(ev.make_tracker("static"), seqs, out_dir=tmp_path, benchmark="fake", progress=False)
    assert runs["a"]["boxes"][0, 0] == 6.0
    runs = ev.run_ope(ev.make_tracker("static"), seqs, out_dir=tmp_path, benchmark="fake",
                      progress=False, overwrite=True)
    assert runs["a"]["boxes"][0, 0] == 5.0
    # an incomplete file is not reused
    f.write_text("\n".join(f.read_text().splitlines()[:3]) + "\n")
    runs = ev.run_ope(ev.make_tracker("static"), seqs, out_dir=tmp_path, benchmark="fake", progress=False)
    assert len(runs["a"]["boxes"]) == len(seqs[0])


def test_bad_results_files_name_file_and_line(tmp_path, seqs):
    ev.run_ope(ev.make_tracker("static"), seqs, out_dir=tmp_path, benchmark="fake", progress=False)
    f = ev.results_file(tmp_path, "fake", "static", "b")
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"b\.txt: has 8 lines, the sequence has 9 frames"):
        ev.evaluate(tmp_path, seqs)
    lines[4] = "1.0,2.0,abc,4"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"b\.txt:5: not a number"):
        ev.evaluate(tmp_path, seqs)
    lines[4] = "1.0,2.0,3.0"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"b\.txt:5: expected 4 numbers, got 3"):
        ev.evaluate(tmp_path, seqs)
    f.unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.txt"):
        ev.evaluate(tmp_path, seqs)


def test_tracker_failures_are_recorded_not_fatal(tmp_path, seqs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = ev.run_ope(Flaky(), seqs[:1], out_dir=tmp_path, benchmark="fake", progress=False)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 3
    assert "'flaky'" in msgs[0] and "'a'" in msgs[0] and "frame 2" in msgs[0] and "boom" in msgs[0]
    run = runs["a"]
    assert run["failed_frames"] == [2, 3, 4]
    np.testing.assert_array_equal(run["boxes"][2:5], 0.0)
    assert np.all(metrics.iou(run["boxes"][2:5], seqs[0].boxes[2:5]) == 0)
    side = ev.failures_file(tmp_path, "fake", "flaky", "a").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in side] == [2, 3, 4]
    assert ev.evaluate(tmp_path, seqs[:1])["trackers"]["flaky"]["failed_frames"] == 3


def test_seeds_mean_and_std(tmp_path, seqs):
    out = ev.run_ope_seeds(lambda: ev.make_tracker("noisy_gt", noise=0.2), seqs, seeds=(0, 1, 2),
                           out_dir=tmp_path, benchmark="fake", progress=False)
    assert sorted(out) == ["noisy_gt-seed0", "noisy_gt-seed1", "noisy_gt-seed2"]
    again = ev.run_ope(ev.make_tracker("noisy_gt", noise=0.2), seqs, seed=1, progress=False)
    np.testing.assert_allclose(again["a"]["boxes"], out["noisy_gt-seed1"]["a"]["boxes"], atol=6e-4)  # %.3f on disk
    rep = ev.evaluate(tmp_path, seqs)["trackers"]["noisy_gt"]
    aucs = [ev.summarize(out[k], seqs)["auc"] for k in sorted(out)]
    assert rep["n_seeds"] == 3
    assert rep["auc"] == pytest.approx(np.mean(aucs)) and rep["std"]["auc"] == pytest.approx(np.std(aucs))
    assert rep["std"]["auc"] > 0
    per_seed = [ev.summarize(out[k], seqs)["per_sequence"]["a"]["auc"] for k in sorted(out)]
    assert len(set(per_seed)) > 1 and rep["per_sequence"]["a"]["auc"] == pytest.approx(np.mean(per_seed))
    assert "±" in ev.format_table({"benchmark": "fake", "trackers": {"noisy_gt": rep}})


def test_supervised_protocol_hand_computed():
    seq = FakeSequence("s", n=30, speed=3.0, size=(200, 40))  # the box moves 3 px/frame, 12 px wide: static fails at frame 4
    rep = ev.run_supervised(ev.make_tracker("static"), [seq], skip=5, burnin=10, progress=False)
    res = rep["per_sequence"]["s"]
    # init 0, boxes 1-3 (iou > 0), failure at 4, skip 5-8, init 9, boxes 10-12, failure 13, ...
    assert res["records"][0] == [1] and res["records"][4] == [2]
    assert res["records"][5:9] == [[0]] * 4 and res["records"][9] == [1]
    assert res["inits"] == [0, 9, 18, 27] and res["failures"] == 3
    assert rep["robustness"] == 3 and rep["failures_per_100_frames"] == pytest.approx(10.0)
    # burn-in of 10 frames from each init covers every box frame here -> no accuracy frames
    assert np.isnan(rep["accuracy"])
    rep5 = ev.run_supervised(ev.make_tracker("static"), [seq], skip=5, burnin=2, progress=False)
    # with burn-in 2: frames 2, 3 after init 0 (iou 6/18, 3/21), 11, 12, 20, 21, 29
    expected = np.mean([metrics.iou(seq.boxes[0], seq.boxes[k])[0] for k in (2, 3)] * 3
                       + [metrics.iou(seq.boxes[0], seq.boxes[2])[0]])
    assert rep5["accuracy"] == pytest.approx(expected)


def test_registry_and_unknown_name():
    @ev.register_tracker("test_dummy")
    class Dummy(Tracker):
        pass

    assert isinstance(ev.make_tracker("test_dummy"), Dummy)
    assert ev.make_tracker("test_dummy").name == "test_dummy"
    with pytest.raises(KeyError, match="unknown tracker 'nope'.*static"):
        ev.make_tracker("nope")


def test_reference_trackers_run(seqs):
    for name in ("static", "noisy_gt", "constant_velocity", "opencv_mil"):
        runs = ev.run_ope(ev.make_tracker(name), seqs, progress=False)
        assert runs["a"]["boxes"].shape == (len(seqs[0]), 4) and not runs["a"]["failed_frames"], name
    # constant velocity is exact on a constant-velocity sequence
    s = ev.summarize(ev.run_ope(ev.make_tracker("constant_velocity"), seqs, progress=False), seqs)
    assert s["auc"] == pytest.approx(20 / 21)


def test_plots_draw(seqs):
    import matplotlib

    matplotlib.use("Agg")
    from mtl import plots

    summaries = {n: ev.summarize(ev.run_ope(ev.make_tracker(n), seqs, progress=False), seqs)
                 for n in ("static", "constant_velocity")}
    ax = plots.success_plot(summaries)
    assert any("[0.952]" in t.get_text() for t in ax.get_legend().get_texts())
    plots.precision_plot(summaries)
    plots.attribute_chart(summaries)


# ----------------------------------------------------------------- CLI end to end

def test_cli_synth_end_to_end(tmp_path, capsys):
    pytest.importorskip("mtl.data")
    from mtl.cli import main

    out = tmp_path / "res"
    assert main(["benchmark", "--tracker", "static", "--dataset", "synth:test", "--quick",
                 "--out", str(out), "--no-progress"]) == 0
    js = tmp_path / "r.json"
    assert main(["evaluate", "--results", str(out), "--dataset", "synth:test", "--quick", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "static" in text and "AUC" in text and js.is_file()


def test_cli_otb_folder_end_to_end(tmp_path, capsys):
    pytest.importorskip("mtl.data")
    import cv2

    from mtl.cli import main

    root = tmp_path / "OTBmini"
    for k, name in enumerate(["Car", "Dog"]):
        seq = FakeSequence(name, n=6, speed=4.0 + k, size=(640, 480))
        (root / name / "img").mkdir(parents=True)
        for i in range(len(seq)):
            cv2.imwrite(str(root / name / "img" / f"{i + 1:04d}.jpg"), seq.frame(i))
        np.savetxt(root / name / "groundtruth_rect.txt", seq.boxes, fmt="%d", delimiter=",")
    out = tmp_path / "res"
    for tracker in ("static", "opencv_mil"):
        assert main(["benchmark", "--tracker", tracker, "--dataset", f"otb:{root}", "--out", str(out),
                     "--no-progress"]) == 0
    assert ev.results_file(out, "otb-OTBmini", "static", "Car").is_file()
    assert main(["evaluate", "--results", str(out), "--dataset", f"otb:{root}"]) == 0
    text = capsys.readouterr().out
    assert "opencv_mil" in text and "static" in text


def test_run_side_by_side_interleaves_and_matches_run_ope(seqs):
    calls = []

    class Logged(Oracle):
        def __init__(self, label):
            self.label = label

        def init(self, image, box):
            calls.append((self.label, "init"))
            super().init(image, box)

    runs = ev.run_side_by_side({"x": Logged("x"), "y": Logged("y")}, seqs, progress=False)
    assert calls == [("x", "init"), ("y", "init")] * len(seqs)  # every tracker on a sequence before the next
    alone = ev.run_ope(Oracle(), seqs, progress=False)
    for name in ("x", "y"):
        assert sorted(runs[name]) == ["a", "b"]
        for s in ("a", "b"):
            np.testing.assert_array_equal(runs[name][s]["boxes"], alone[s]["boxes"])
    summary = ev.summarize(runs["x"], seqs)
    times = np.concatenate([runs["x"][s]["times"] for s in ("a", "b")])
    assert summary["throughput_fps"] == pytest.approx(times.size / times.sum())


def test_box_errors_by_hand():
    import numpy as np

    from mtl.data import Sequence
    from mtl.eval import box_errors

    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 10, 10], [4, 0, 10, 10], [6, 0, 10, 10], [0, 0, 20, 20]], float)
    seq = Sequence("s", gt, visible=np.array([True, True, True, False]))
    out = box_errors({"s": {"boxes": pred}}, [seq])
    # frames 1 and 2 count (frame 0 is given, frame 3 hidden): centre errors 0.4 and 0.6 target sizes
    assert out["n_frames"] == 2 and out["centre_within_half"] == 0.5 and out["mean_log_size"] == 0.0
    seq.visible[3] = True
    out = box_errors({"s": {"boxes": pred}}, [seq])
    assert out["n_frames"] == 3 and abs(out["mean_log_size"] - np.log(2) / 3) < 1e-12


def test_supervised_cache_reuses_records_and_reruns_on_change(tmp_path):
    seqs = [FakeSequence("a", n=30, speed=3.0, size=(200, 40)), FakeSequence("b", n=25, speed=2.0, size=(200, 40))]
    noisy = lambda noise: ev.make_tracker("noisy_gt", noise=noise)  # noqa: E731
    fresh = ev.run_supervised(noisy(0.5), seqs, seed=3, burnin=2, progress=False)
    first = ev.run_supervised(noisy(0.5), seqs, seed=3, burnin=2, progress=False, cache_dir=tmp_path, benchmark="fake")
    folders = list((tmp_path / "fake-reset").iterdir())
    assert len(folders) == 1 and sorted(p.name for p in folders[0].glob("*.txt")) == ["a.txt", "b.txt"]
    assert first["robustness"] == fresh["robustness"] > 0  # noise 0.5 fails now and then
    assert first["accuracy"] == pytest.approx(fresh["accuracy"], abs=1e-3)  # boxes to 3 decimals on disk
    # a stored run is served from its records: overwrite them with a box-free record set and read it back
    (folders[0] / "a.txt").write_text("1\n" + "2\n" + "0\n" * 3 + "1\n" + "2\n" * 24)
    served = ev.run_supervised(noisy(0.5), seqs, seed=3, burnin=2, progress=False, cache_dir=tmp_path, benchmark="fake")
    assert served["per_sequence"]["a"]["failures"] == 25 and served["per_sequence"]["a"]["inits"] == [0, 5]
    assert served["per_sequence"]["b"]["records"] == first["per_sequence"]["b"]["records"]
    # another option, seed or skip is another run, never the stored records
    other = ev.run_supervised(noisy(0.0), seqs, seed=3, burnin=2, progress=False, cache_dir=tmp_path, benchmark="fake")
    assert other["robustness"] == 0 and len(list((tmp_path / "fake-reset").iterdir())) == 2
    ev.run_supervised(noisy(0.5), seqs, skip=3, seed=3, burnin=2, progress=False, cache_dir=tmp_path, benchmark="fake")
    assert len(list((tmp_path / "fake-reset").iterdir())) == 3
    # a damaged record file is tracked again
    (folders[0] / "a.txt").write_text("1\n2\n")
    again = ev.run_supervised(noisy(0.5), seqs, seed=3, burnin=2, progress=False, cache_dir=tmp_path, benchmark="fake")
    assert again["per_sequence"]["a"]["records"] == first["per_sequence"]["a"]["records"]


def test_supervised_in_worker_processes_equals_one_process(tmp_path):
    seqs = [FakeSequence(n, n=30, speed=3.0, size=(200, 40)) for n in "abc"]
    one = ev.run_supervised(ev.make_tracker("noisy_gt", noise=0.5), seqs, seed=1, progress=False)
    two = ev.run_supervised(ev.make_tracker("noisy_gt", noise=0.5), seqs, seed=1, progress=False, processes=2,
                            cache_dir=tmp_path, benchmark="fake")
    for name in "abc":
        assert two["per_sequence"][name]["inits"] == one["per_sequence"][name]["inits"]
        np.testing.assert_allclose(np.nan_to_num(two["per_sequence"][name]["ious"]),
                                   np.nan_to_num(one["per_sequence"][name]["ious"]), atol=1e-3)
    with pytest.raises(ValueError, match="not both"):
        ev.run_supervised(ev.make_tracker("static"), seqs, out_dir=tmp_path, cache_dir=tmp_path, progress=False)


class LosesOnce(Oracle):
    """An oracle that returns a box far from the target on its 3rd update after the first init, else the truth."""

    name = "loses_once"

    def __init__(self):
        super().__init__()
        self.inits = 0

    def init(self, image, box):
        super().init(image, box)
        self.inits += 1
        assert np.allclose(box, self.gt[0]), "the oracle's sequence must start at the frame it is initialised on"

    def update(self, image):
        box = super().update(image)
        return box + np.array([150.0, 0, 0, 0]) if self.inits == 1 and self.f == 3 else box


def test_reset_protocol_restarts_an_oracle_at_the_reinit_frame():
    seq = FakeSequence("s", n=20, speed=3.0, size=(200, 40))
    rep = ev.run_supervised(LosesOnce(), [seq], skip=5, burnin=0, progress=False)
    res = rep["per_sequence"]["s"]
    assert res["inits"] == [0, 8] and res["failures"] == 1 and res["records"][3] == [2]
    # after the re-init at frame 8 the oracle reads frames 9, 10, ... (not 1, 2, ...): every box is exact
    box_frames = [f for f, r in enumerate(res["records"]) if len(r) == 4]
    assert box_frames == [1, 2, *range(9, 20)]
    np.testing.assert_allclose(res["ious"][box_frames], 1.0, atol=1e-3)
    view = ev.SequenceFrom(seq, 8)
    assert len(view) == 12 and np.array_equal(view.boxes, seq.boxes[8:]) and view.name == "s"
    np.testing.assert_array_equal(view.frame(0), seq.frame(8))
    with pytest.raises(ValueError, match="outside sequence"):
        ev.SequenceFrom(seq, 20)


def test_registered_trackers_lists_every_module_s_trackers():
    names = ev.registered_trackers()
    assert names == sorted(names)
    assert {"static", "siamfc", "siamfc_ema", "cfnet", "cfnet_sgd", "siamfc_gradnet", "siamfc_lu", "dimp", "roam",
            "roampp"} <= set(names)

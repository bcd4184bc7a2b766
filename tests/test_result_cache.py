"""The stored-results cache is keyed by what made the results (tracker options, weights, updater, seed)."""
import json
import warnings

import numpy as np
import pytest
import torch

from mtl import eval as ev
from mtl.siamfc import SiamFCConfig, SiamFCNet, SiamFCTracker
from mtl.updaters import EMAUpdater

from test_eval import FakeSequence


@pytest.fixture
def seqs():
    return [FakeSequence("a", n=4, size=(96, 80)), FakeSequence("b", n=3, size=(96, 80))]


@pytest.fixture
def count_runs(monkeypatch):
    """Count the sequences the runner actually tracks (a cache hit tracks nothing)."""
    calls = []
    original = ev.track_sequence

    def counting(tracker, seq):
        calls.append(seq.name)
        return original(tracker, seq)

    monkeypatch.setattr(ev, "track_sequence", counting)
    return calls


def _net(seed=0):
    torch.manual_seed(seed)
    return SiamFCNet(width=0.125).eval()


def _run(tracker, seqs, root, name="siamfc"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = ev.run_ope(tracker, seqs, out_dir=root, benchmark="fake", progress=False, tracker_name=name)
    return runs, [str(w.message) for w in caught if "not reusing" in str(w.message)]


def test_same_tracker_is_served_from_the_cache(tmp_path, seqs, count_runs):
    net = _net()
    _run(SiamFCTracker(net), seqs, tmp_path)
    assert count_runs == ["a", "b"]
    _, warned = _run(SiamFCTracker(net), seqs, tmp_path)
    assert count_runs == ["a", "b"] and not warned  # nothing re-run
    stored = json.loads((tmp_path / "fake" / "siamfc" / ev.FINGERPRINT_FILE).read_text())
    assert stored == ev.run_fingerprint(SiamFCTracker(net), 0)


def test_changed_option_is_not_served_from_the_cache(tmp_path, seqs, count_runs):
    net = _net()
    first, _ = _run(SiamFCTracker(net), seqs, tmp_path)
    second, warned = _run(SiamFCTracker(net, window_influence=0.0, scale_step=1.2), seqs, tmp_path)
    assert count_runs == ["a", "b", "a", "b"]
    assert len(warned) == 1 and "window_influence" in warned[0] and "scale_step" in warned[0]
    # switching back re-runs again (the folder holds one configuration at a time)
    _run(SiamFCTracker(net), seqs, tmp_path)
    assert count_runs == ["a", "b"] * 3


def test_changed_checkpoint_is_not_served_from_the_cache(tmp_path, seqs, count_runs):
    _run(SiamFCTracker(_net(0)), seqs, tmp_path)
    _, warned = _run(SiamFCTracker(_net(1)), seqs, tmp_path)
    assert count_runs == ["a", "b", "a", "b"]
    assert "weights" in warned[0]


def test_changed_updater_setting_is_not_served_from_the_cache(tmp_path, seqs, count_runs):
    net = _net()
    _run(SiamFCTracker(net, updater=EMAUpdater(0.01)), seqs, tmp_path, "siamfc_ema")
    _run(SiamFCTracker(net, updater=EMAUpdater(0.01)), seqs, tmp_path, "siamfc_ema")
    assert count_runs == ["a", "b"]
    _, warned = _run(SiamFCTracker(net, updater=EMAUpdater(0.1)), seqs, tmp_path, "siamfc_ema")
    assert count_runs == ["a", "b"] * 2 and "updater.rate" in warned[0]


def test_fingerprint_ignores_state_that_tracking_changes(seqs):
    """Tracking a sequence changes the tracker's state, not its fingerprint (else nothing would be reused)."""
    tracker = SiamFCTracker(_net(), updater=EMAUpdater(0.5))
    before = ev.run_fingerprint(tracker, 0)
    ev.run_ope(tracker, seqs, progress=False)
    assert ev.run_fingerprint(tracker, 0) == before
    assert ev.run_fingerprint(tracker, 1) != before  # the seed is part of the key


def test_results_without_fingerprint_are_run_again(tmp_path, seqs, count_runs):
    """Folders written before the cache had keys cannot be trusted: they are re-run, with a warning."""
    ev.run_ope(ev.make_tracker("static"), seqs, out_dir=tmp_path, benchmark="fake", progress=False)
    (tmp_path / "fake" / "static" / ev.FINGERPRINT_FILE).unlink()
    with pytest.warns(RuntimeWarning, match="no fingerprint"):
        ev.run_ope(ev.make_tracker("static"), seqs, out_dir=tmp_path, benchmark="fake", progress=False)
    assert count_runs == ["a", "b", "a", "b"]


def test_same_weights_hash_equally_on_any_layout():
    from mtl.cache import state_dict_hash

    net = _net()
    h = state_dict_hash(net.state_dict())
    assert h == state_dict_hash(net.to(memory_format=torch.channels_last).state_dict())
    with torch.no_grad():
        net.backbone.conv1[0].weight[0, 0, 0, 0] += 1e-6
    assert state_dict_hash(net.state_dict()) != h
    assert len(h) == 16 and all(c in "0123456789abcdef" for c in h)


def test_tracker_fingerprint_names_config_and_updater():
    fp = SiamFCTracker(_net(), SiamFCConfig(width=0.125), updater=EMAUpdater(0.03), update_interval=2).fingerprint()
    assert fp["class"].endswith("SiamFCTracker")
    assert fp["config"]["width"] == 0.125 and fp["update_interval"] == 2
    assert fp["updater"] == {"class": "mtl.updaters.EMAUpdater", "rate": 0.03}
    assert np.isscalar(fp["weights"])


def test_run_cached_shares_runs_between_identical_trackers_whatever_their_names(tmp_path, seqs, count_runs):
    net = _net()
    ev.run_cached(SiamFCTracker(net, name="first"), seqs, tmp_path, "fake", progress=False)
    ev.run_cached(SiamFCTracker(net, name="second"), seqs, tmp_path, "fake", progress=False)
    assert count_runs == ["a", "b"]
    ev.run_cached(SiamFCTracker(net, window_influence=0.0), seqs, tmp_path, "fake", progress=False)
    assert count_runs == ["a", "b"] * 2
    assert len(list((tmp_path / "fake").iterdir())) == 2  # one folder per fingerprint


def test_no_update_and_no_updater_share_a_fingerprint():
    from mtl.updaters import NoUpdate

    net = _net()
    assert SiamFCTracker(net).fingerprint() == SiamFCTracker(net, updater=NoUpdate()).fingerprint()


def test_worker_processes_give_the_same_boxes_as_one_process(tmp_path):
    seqs = [FakeSequence(name, n=5, size=(96, 80), speed=s) for name, s in (("a", 2.0), ("b", 3.0), ("c", 1.0))]
    net = _net()
    one = ev.run_ope(SiamFCTracker(net), seqs, progress=False)
    two = ev.run_ope(SiamFCTracker(net), seqs, out_dir=tmp_path, benchmark="fake", progress=False, processes=2)
    assert list(two) == [s.name for s in seqs]  # in the order of the sequences, whatever finished first
    for s in seqs:
        np.testing.assert_allclose(two[s.name]["boxes"], one[s.name]["boxes"], atol=1e-3)  # files keep 3 decimals
        assert ev.results_file(tmp_path, "fake", "siamfc", s.name).is_file()


def test_evaluate_cached_summarises_each_tracker_and_reuses_its_run(seqs, tmp_path, count_runs):
    trackers = {"plain": SiamFCTracker(_net(), num_scales=1), "other weights": SiamFCTracker(_net(1), num_scales=1)}
    first = ev.evaluate_cached(trackers, seqs, tmp_path, "bench", progress=False)
    assert set(first) == {"plain", "other weights"} and first["plain"]["n_seqs"] == 2
    assert first["plain"]["per_sequence"].keys() == {"a", "b"}
    assert len(count_runs) == 4  # two trackers x two sequences
    again = ev.evaluate_cached({"renamed": SiamFCTracker(_net(), num_scales=1)}, seqs, tmp_path, "bench", progress=False)
    assert len(count_runs) == 4  # same fingerprint under another name: served from the cache
    assert again["renamed"]["auc"] == first["plain"]["auc"]


def _same_logs(a, b):
    return len(a) == len(b) and all(x.keys() == y.keys() and all(x[k] == pytest.approx(y[k]) for k in x)
                                    for x, y in zip(a, b))


def _sgd_tracker(net):
    from mtl.updaters import SGDUpdater

    # short-term update on every frame (threshold above any score), so a 3-4 frame sequence logs updates
    return SiamFCTracker(net, updater=SGDUpdater(iterations_short=2, iterations_long=2, long_term_interval=100,
                                                 short_term_threshold=1e9))


def test_update_logs_are_stored_and_served_with_cached_runs(tmp_path, seqs, count_runs):
    net = _net()
    trk = _sgd_tracker(net)
    first = ev.run_ope(trk, seqs, out_dir=tmp_path, benchmark="fake", progress=False, tracker_name="sgd", updates=True)
    # SGD keeps one log across sequences: each run carries only its own sequence's part
    assert [len(first[s.name]["updates"]) for s in seqs] == [len(s) - 1 for s in seqs]
    assert sum(len(r["updates"]) for r in first.values()) == len(trk.updater.updates)
    again = ev.run_ope(_sgd_tracker(net), seqs, out_dir=tmp_path, benchmark="fake", progress=False,
                       tracker_name="sgd", updates=True)
    assert count_runs == ["a", "b"]  # served from the cache, logs included
    for s in seqs:
        assert _same_logs(again[s.name]["updates"], first[s.name]["updates"])
        assert {"loss_before", "loss_after", "norm_ratio"} <= set(again[s.name]["updates"][0])


def test_a_stored_run_without_its_update_log_is_run_again_only_when_the_log_is_asked_for(tmp_path, seqs, count_runs):
    net = _net()
    ev.run_ope(_sgd_tracker(net), seqs, out_dir=tmp_path, benchmark="fake", progress=False, tracker_name="sgd")
    for f in (tmp_path / "fake" / "sgd" / "updates").glob("*.json"):
        f.unlink()  # as stored before logs were kept
    ev.run_ope(_sgd_tracker(net), seqs, out_dir=tmp_path, benchmark="fake", progress=False, tracker_name="sgd")
    assert count_runs == ["a", "b"]  # boxes are enough
    runs = ev.run_ope(_sgd_tracker(net), seqs, out_dir=tmp_path, benchmark="fake", progress=False,
                      tracker_name="sgd", updates=True)
    assert count_runs == ["a", "b"] * 2 and all(len(r["updates"]) > 0 for r in runs.values())


def test_asking_for_the_update_log_of_a_tracker_without_one_raises(tmp_path, seqs):
    with pytest.raises(ValueError, match="keeps no update log"):
        ev.run_ope(SiamFCTracker(_net()), seqs, out_dir=tmp_path, benchmark="fake", progress=False, updates=True)


def test_update_logs_from_worker_processes_equal_those_of_one_process(tmp_path, seqs):
    net = _net()
    one = ev.run_ope(_sgd_tracker(net), seqs, out_dir=tmp_path / "one", progress=False, tracker_name="sgd", updates=True)
    two = ev.run_ope(_sgd_tracker(net), seqs, out_dir=tmp_path / "two", progress=False, tracker_name="sgd", updates=True,
                     processes=2)
    for s in seqs:
        assert _same_logs(two[s.name]["updates"], one[s.name]["updates"])
    assert not any(two[s.name]["messages"] for s in seqs), [two[s.name]["messages"] for s in seqs]


def test_worker_processes_are_not_forked_where_cuda_is_present(tmp_path, seqs, monkeypatch):
    # autograd fails in a child forked after it started its CUDA threads: every SGD frame would fail there
    one = ev.run_ope(_sgd_tracker(_net()), seqs, progress=False, tracker_name="sgd", updates=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ev, "_tracked_in_workers", lambda *a, **k: pytest.fail("forked a worker pool"))
    with pytest.warns(RuntimeWarning, match="processes=2 ignored: a CUDA GPU is present"):
        two = ev.run_ope(_sgd_tracker(_net()), seqs, progress=False, tracker_name="sgd", updates=True, processes=2)
    for s in seqs:
        assert _same_logs(two[s.name]["updates"], one[s.name]["updates"]) and not two[s.name]["messages"]


def test_notebook_runs_count_each_stored_run_once(tmp_path, seqs, count_runs):
    runs = ev.NotebookRuns(tmp_path, suffix="-cut", progress=False)
    first = runs.evaluate({"s": SiamFCTracker(_net())}, seqs, "fake")["s"]
    made = runs.made_seconds["fake"]
    stored = ev.run_cached(SiamFCTracker(_net()), seqs, tmp_path, "fake-cut", progress=False)
    assert made == pytest.approx(sum(float(r["times"].sum()) for r in stored.values()))
    again = runs.evaluate({"same tracker, new name": SiamFCTracker(_net())}, seqs[:1], "fake")
    assert count_runs == ["a", "b"]  # served from the cache, in the suffixed benchmark folder
    assert runs.made_seconds["fake"] == made  # and not counted twice
    assert again["same tracker, new name"]["auc"] == pytest.approx(first["per_sequence"]["a"]["auc"])
    runs.evaluate({"other": SiamFCTracker(_net(1))}, seqs[:1], "fake")
    assert runs.made_seconds["fake"] > made and set(runs.seconds) == {"fake"}

"""The fresh-clone budget ledger (mtl.budget): what the caches serve, priced at what it cost when made."""
import json

import numpy as np
import pytest
import torch

from mtl import budget, cache
from mtl import eval as ev
from mtl.siamfc import SiamFCNet, SiamFCTracker

from test_eval import FakeSequence


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(budget.LEDGER_ENV, str(path))
    return path


def test_record_is_silent_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(budget.LEDGER_ENV, raising=False)
    budget.record({"kind": "speed", "seconds": 1.0})
    assert list(tmp_path.iterdir()) == []


def test_summary_by_hand():
    entries = [
        # tracked now by 2 workers: 10 s of per-frame times -> 5 s made, not served
        {"kind": "tracking", "benchmark": "b", "run": "r1", "processes": 2,
         "sequences": {"a": {"seconds": 10.0, "frames": 100, "served": False}}},
        # asked again later in the run: served from the cache, but it was made in this run -> counted once, not served
        {"kind": "tracking", "benchmark": "b", "run": "r1", "processes": 2,
         "sequences": {"a": {"seconds": 10.0, "frames": 100, "served": True}}},
        # stored by an earlier session: served; 6 s / 2 workers = 3 s a fresh clone would spend
        {"kind": "tracking", "benchmark": "b", "run": "r2", "processes": 2,
         "sequences": {"a": {"seconds": 6.0, "frames": 40, "served": True}}},
        {"kind": "features", "file": "f1.pt", "loaded": True, "seconds": 100.0},
        {"kind": "features", "file": "f2.pt", "loaded": False, "seconds": 7.0},
        {"kind": "speed", "seconds": 20.0},
    ]
    s = budget.summarize_ledger(entries, wall_seconds=60.0, render_seconds_per_frame=0.01)
    assert s["tracking"]["made_seconds"] == pytest.approx(8.0)
    assert s["tracking"]["served_seconds"] == pytest.approx(3.0)
    assert s["tracking"]["served_frames"] == 40 and s["tracking"]["sequence_runs"] == 2
    assert s["features"] == {"built_seconds": 7.0, "served_seconds": 100.0, "files": 2}
    assert s["speed_seconds"] == 20.0
    assert s["render_seconds_estimate"] == pytest.approx(40 / 2 * 0.01)
    assert s["fresh_clone_seconds"] == pytest.approx(60.0 + 3.0 + 100.0 + 0.2)


def test_bad_ledger_line_names_file_and_line(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps({"kind": "speed", "seconds": 1}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"l\.jsonl:2"):
        budget.read_ledger(path)
    path.write_text(json.dumps({"kind": "other"}) + "\n")
    with pytest.raises(ValueError, match="kind"):
        budget.read_ledger(path)
    with pytest.raises(FileNotFoundError):
        budget.read_ledger(tmp_path / "missing.jsonl")


def test_run_ope_records_made_and_served(tmp_path, ledger):
    torch.manual_seed(0)
    net = SiamFCNet(width=0.125).eval()
    seqs = [FakeSequence("a", n=4, size=(96, 80)), FakeSequence("b", n=3, size=(96, 80))]
    first = ev.run_ope(SiamFCTracker(net), seqs, out_dir=tmp_path, benchmark="fake", progress=False, tracker_name="t")
    ev.run_ope(SiamFCTracker(net), seqs, out_dir=tmp_path, benchmark="fake", progress=False, tracker_name="t")
    ev.run_ope(SiamFCTracker(net), seqs[:1], progress=False)  # no results cache: not a budget entry
    entries = budget.read_ledger(ledger)
    assert [e["kind"] for e in entries] == ["tracking", "tracking"]
    made, again = entries
    assert {k: v["served"] for k, v in made["sequences"].items()} == {"a": False, "b": False}
    assert {k: v["served"] for k, v in again["sequences"].items()} == {"a": True, "b": True}
    for name, seq in zip("ab", seqs):
        assert made["sequences"][name]["frames"] == len(seq)
        stored = ev.read_times(ev.times_file(tmp_path, "fake", "t", name))
        assert made["sequences"][name]["seconds"] == pytest.approx(float(np.sum(first[name]["times"])))
        assert again["sequences"][name]["seconds"] == pytest.approx(float(np.sum(stored)), abs=1e-6)
    s = budget.summarize_ledger(entries, wall_seconds=0.0)
    assert s["tracking"]["served_seconds"] == 0.0  # everything was made in this "run"
    assert s["tracking"]["made_seconds"] == pytest.approx(sum(float(np.sum(r["times"])) for r in first.values()))


def test_side_by_side_records_its_wall_time(ledger):
    net = SiamFCNet(width=0.125).eval()
    ev.run_side_by_side({"x": SiamFCTracker(net)}, [FakeSequence("a", n=3, size=(96, 80))], progress=False)
    (entry,) = budget.read_ledger(ledger)
    assert entry["kind"] == "speed" and entry["frames"] == 3 and entry["seconds"] > 0


def test_feature_files_record_build_seconds(tmp_path, ledger, monkeypatch):
    monkeypatch.setattr(cache, "QUICK_DIR", tmp_path)
    built = cache.cached_tensors("feat", {"k": 1}, lambda: {"x": torch.zeros(2), "seconds": 12.5}, quick=True)
    loaded = cache.cached_tensors("feat", {"k": 1}, lambda: pytest.fail("rebuilt"), quick=True)
    assert not built["loaded"] and loaded["loaded"]
    first, second = budget.read_ledger(ledger)
    assert (first["loaded"], first["seconds"]) == (False, 12.5) and (second["loaded"], second["seconds"]) == (True, 12.5)
    s = budget.summarize_ledger([first, second], wall_seconds=1.0)
    assert s["features"] == {"built_seconds": 12.5, "served_seconds": 0.0, "files": 1}


def test_machine_fps_is_a_rate_and_restores_threads():
    before = torch.get_num_threads()
    fps = budget.machine_fps(threads=1, repeats=2)
    assert np.isfinite(fps) and fps > 0
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"repeats": 0}])
def test_machine_fps_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="must be >= 1"):
        budget.machine_fps(**kwargs)

"""The leaderboard: rows against their bases, the command on a folder in OTB layout, clear errors."""
import json

import numpy as np
import pytest

from mtl.cli import main


@pytest.fixture(scope="module")
def otb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("otb")
    assert main(["generate", "--format", "otb", "--quick", "--num-sequences", "3", "--out", str(root)]) == 0
    return root


def test_leaderboard_command_on_an_otb_folder(otb_root, tmp_path, capsys):
    out = tmp_path / "lb.json"
    assert main(["leaderboard", "--dataset", f"otb:{otb_root}", "--trackers", "static", "constant_velocity:static",
                 "--out", str(tmp_path / "cache"), "--json", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| tracker | base | AUC |") and "constant_velocity | static |" in table
    rows = json.loads(out.read_text())
    assert [r["tracker"] for r in rows] == ["static", "constant_velocity"] and rows[0]["base"] is None
    static, cv = rows
    assert static["diff"] is None and cv["n_sequences"] == 3
    # the paired difference is of the per-sequence AUCs: its mean is the difference of the two rows' mean AUCs
    assert cv["diff"] == pytest.approx(cv["auc"] - static["auc"], abs=0.02)
    assert cv["ci_low"] <= cv["diff"] <= cv["ci_high"] and cv["wins"] + cv["ties"] + cv["losses"] == 3
    assert cv["speed_vs_base"] == pytest.approx(cv["fps"] / static["fps"])
    # a second call reuses the stored runs: same rows
    assert main(["leaderboard", "--dataset", f"otb:{otb_root}", "--trackers", "static", "constant_velocity:static",
                 "--out", str(tmp_path / "cache"), "--json", str(tmp_path / "again.json"), "--no-progress"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert [r["auc"] for r in again] == [r["auc"] for r in rows]
    # --reset adds the VOT reset protocol's columns: the static box fails on moving targets
    assert main(["leaderboard", "--dataset", f"otb:{otb_root}", "--trackers", "static", "constant_velocity:static",
                 "--out", str(tmp_path / "cache"), "--json", str(tmp_path / "reset.json"), "--no-progress",
                 "--reset"]) == 0
    assert "fail./100 fr." in capsys.readouterr().out
    reset = json.loads((tmp_path / "reset.json").read_text())
    assert [r["auc"] for r in reset] == [r["auc"] for r in rows]
    assert reset[0]["reset_failures_per_100"] > 0 and 0 < reset[0]["reset_accuracy"] <= 1


def test_leaderboard_refuses_a_missing_base_and_duplicates(otb_root, tmp_path, capsys):
    assert main(["leaderboard", "--dataset", f"otb:{otb_root}", "--trackers", "constant_velocity:static",
                 "--out", str(tmp_path)]) == 2
    assert "base rows ['static'] are not in the leaderboard" in capsys.readouterr().err
    assert main(["leaderboard", "--dataset", f"otb:{otb_root}", "--trackers", "static", "static",
                 "--out", str(tmp_path)]) == 2
    assert "duplicate leaderboard rows" in capsys.readouterr().err


def test_default_entries_pair_each_update_rule_with_its_no_update_base():
    from mtl.leaderboard import DEFAULT_ENTRIES, parse_entries

    names = {e.name for e in DEFAULT_ENTRIES}
    assert all(e.base in names for e in DEFAULT_ENTRIES if e.base)
    for e in DEFAULT_ENTRIES:
        if e.base and e.base.endswith("_none"):
            base = next(b for b in DEFAULT_ENTRIES if b.name == e.base)
            assert base.tracker == e.tracker and base.options == {"update": "none"}
    (roam,) = parse_entries(["roam"])
    assert roam.base == "roam_none"
    (custom,) = parse_entries(["siamfc_sgd:siamfc"])
    assert custom.tracker == "siamfc_sgd" and custom.base == "siamfc"
    with pytest.raises(ValueError, match="NAME or NAME:BASE"):
        parse_entries([":siamfc"])


def test_rows_on_a_subset_pair_with_the_base_on_the_same_sequences(otb_root, tmp_path):
    from mtl.data import load_dataset
    from mtl.leaderboard import Entry, check_entries, leaderboard_rows, run_entries, versus_base
    from mtl.stats import paired_bootstrap, per_sequence

    seqs = load_dataset(f"otb:{otb_root}")
    entries = [Entry("static", "static"), Entry("cv", "constant_velocity", base="static", every=2)]
    summaries = run_entries(entries, seqs, tmp_path, "otb", progress=False)
    assert summaries["cv"]["n_seqs"] == 2 and summaries["static"]["n_seqs"] == 3
    (row_static, row_cv) = leaderboard_rows(entries, summaries, fps={"static": 100.0, "cv": 50.0})
    names = [s.name for s in seqs[::2]]
    a, b = per_sequence(summaries["cv"]), per_sequence(summaries["static"])
    expected = paired_bootstrap(a, {n: b[n] for n in names})
    assert row_cv["diff"] == pytest.approx(expected.diff) and row_cv["ci_low"] == pytest.approx(expected.ci_low)
    assert row_cv["speed_vs_base"] == pytest.approx(0.5) and row_cv["n_sequences"] == 2
    # the base's AUC on the row's own sequences, and the verdict from the interval
    assert row_cv["base_auc"] == pytest.approx(np.mean([b[n] for n in names]))
    assert row_cv["verdict"] == ("better than base" if expected.ci_low > 0 else "worse than base"
                                 if expected.ci_high < 0 else "tie") and row_static["verdict"] is None
    with pytest.raises(KeyError, match="no measurement for rows"):
        leaderboard_rows(entries, summaries, fps={"static": 100.0})
    # restricted to one sequence there is no interval
    assert versus_base(entries, summaries, names[:1]) == {"cv": None}
    with pytest.raises(ValueError, match="must cover"):
        check_entries([Entry("static", "static", every=2), Entry("cv", "constant_velocity", base="static", every=3)])
    with pytest.raises(ValueError, match="every must be >= 1"):
        check_entries([Entry("static", "static", every=0)])

"""The leaderboard: rows against their bases, the command on a folder in OTB layout, clear errors."""
import json

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

"""benchmarks/notebook_budget.py's --ledger mode: a run made elsewhere summarised without running it."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("notebook_budget", ROOT / "benchmarks" / "notebook_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ledger_mode_summarises_a_fresh_run(tool, tmp_path, monkeypatch):
    monkeypatch.setattr(tool, "render_seconds_per_frame", lambda: 0.01)
    monkeypatch.setattr("mtl.budget.machine_fps", lambda: 50.0)
    ledger = tmp_path / "l.jsonl"
    ledger.write_text(json.dumps({"kind": "tracking", "benchmark": "b", "run": "r", "processes": 2,
                                  "sequences": {"a": {"seconds": 8.0, "frames": 10, "served": False}}}) + "\n"
                      + json.dumps({"kind": "speed", "seconds": 3.0}) + "\n")
    assert tool.main(["--ledger", str(ledger), "--wall", "100", "--name", "nb", "--out", str(tmp_path / "o")]) == 0
    (row,) = json.loads((tmp_path / "o" / "budget.json").read_text())
    # nothing was served, so the fresh-clone time is the wall time; 8 s of per-frame times over 2 workers
    assert row["notebook"] == "nb" and row["machine_fps"] == 50.0
    assert row["fresh_clone_seconds"] == 100.0 and row["tracking"]["made_seconds"] == 4.0
    assert row["speed_seconds"] == 3.0


@pytest.mark.parametrize("argv", [[], ["--ledger", "x.jsonl"], ["nb.ipynb", "--ledger", "x.jsonl", "--wall", "1", "--name", "n"],
                                  ["--ledger", "no-such-ledger.jsonl", "--wall", "1", "--name", "n"]])
def test_bad_arguments_exit_2(tool, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        tool.main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err

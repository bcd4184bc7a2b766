"""The command line on bad input: one line ``mtl: error: ...`` on stderr and exit status 2, no traceback.

Also the progress bars: quiet (a handful of lines) where the output is not a terminal.
"""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtl.cli import main
from mtl.utils import ROOT, progress_bar

GOOD = ["1,2,10,8", "2,3,10,8", "3,4,10,8"]


def _otb(root: Path, lines=GOOD, n_frames: int = 3, name: str = "Toy") -> Path:
    """A tiny OTB-layout dataset: ``root/<name>/img/0001.jpg ...`` (32x32) and ``groundtruth_rect.txt``."""
    img = root / name / "img"
    img.mkdir(parents=True, exist_ok=True)
    for i in range(n_frames):
        cv2.imwrite(str(img / f"{i + 1:04d}.jpg"), np.full((32, 32, 3), 30 * i, np.uint8))
    (root / name / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return root


def _shown_lines(err: str) -> list[str]:
    """The non-blank lines a terminal would show (a progress bar redraws its line with carriage returns)."""
    lines = (line.rsplit("\r", 1)[-1] for line in err.split("\n"))
    return [line for line in lines if line.strip()]


def _one_error(capsys, argv: list[str]) -> str:
    """Run ``mtl argv`` in this process; check status 2 and a single ``mtl: error:`` line; return that line."""
    status = main(argv)
    err = capsys.readouterr().err
    lines = _shown_lines(err)
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("mtl: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _benchmark(dataset: str, out: Path, tracker: str = "static", *extra: str) -> list[str]:
    return ["benchmark", "--tracker", tracker, "--dataset", dataset, "--out", str(out), *extra]


# ---- bad datasets ------------------------------------------------------------------------------------

def test_missing_dataset_folder(tmp_path, capsys):
    line = _one_error(capsys, _benchmark(f"otb:{tmp_path / 'nowhere'}", tmp_path / "res"))
    assert "nowhere" in line and "does not exist" in line


@pytest.mark.parametrize("bad, words", [
    ("2,3,nan,8", "non-finite"),
    ("2,3,-10,8", "non-positive size"),
    ("2,3,10", "expected 4 numbers"),
])
def test_bad_ground_truth_line_names_file_and_line(tmp_path, capsys, bad, words):
    root = _otb(tmp_path / "otb", [GOOD[0], bad, GOOD[2]])
    line = _one_error(capsys, _benchmark(f"otb:{root}", tmp_path / "res"))
    assert f"{root / 'Toy' / 'groundtruth_rect.txt'}:2:" in line and words in line


def test_unknown_dataset_kind(tmp_path, capsys):
    line = _one_error(capsys, _benchmark("imagenet:/data", tmp_path / "res"))
    assert "unknown dataset kind 'imagenet'" in line


@pytest.mark.parametrize("frame", [1, 3])  # the first frame is read while loading, later ones while tracking
def test_corrupt_image_names_the_file(tmp_path, capsys, frame):
    root = _otb(tmp_path / "otb", n_frames=4, lines=GOOD + ["4,5,10,8"])
    bad = root / "Toy" / "img" / f"{frame:04d}.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    line = _one_error(capsys, _benchmark(f"otb:{root}", tmp_path / "res"))
    assert str(bad) in line and "corrupt" in line
    assert not (tmp_path / "res" / "otb-otb" / "static" / "Toy.txt").exists()  # no half-made result


def test_results_file_one_line_short(tmp_path, capsys):
    root = _otb(tmp_path / "otb")
    assert main(_benchmark(f"otb:{root}", tmp_path / "res")) == 0
    result = tmp_path / "res" / "otb-otb" / "static" / "Toy.txt"
    result.write_text("".join(result.read_text().splitlines(keepends=True)[:-1]))
    capsys.readouterr()
    line = _one_error(capsys, ["evaluate", "--results", str(tmp_path / "res"), "--dataset", f"otb:{root}"])
    assert str(result) in line and "2 lines" in line and "3 frames" in line


# ---- bad trackers and options ------------------------------------------------------------------------

def test_unknown_tracker(tmp_path, capsys):
    line = _one_error(capsys, _benchmark(f"otb:{_otb(tmp_path / 'otb')}", tmp_path / "res", "nope"))
    assert line.startswith("mtl: error: unknown tracker 'nope'; registered: [") and "static" in line


@pytest.mark.parametrize("option", ["=3", "novalue", "9bad=1"])
def test_malformed_option(tmp_path, capsys, option):
    line = _one_error(capsys, _benchmark(f"otb:{_otb(tmp_path / 'otb')}", tmp_path / "res", "static",
                                         "--option", option))
    assert "--option expects KEY=VALUE" in line and repr(option) in line


@pytest.mark.parametrize("tracker, options", [
    ("static", ["not_a_field=1"]),
    ("constant_velocity", ["speed=2"]),
    ("siamfc", ["checkpoint=None", "not_a_field=1"]),
])
def test_option_the_tracker_does_not_take(tmp_path, capsys, tracker, options):
    extra = [a for o in options for a in ("--option", o)]
    line = _one_error(capsys, _benchmark(f"otb:{_otb(tmp_path / 'otb')}", tmp_path / "res", tracker, *extra))
    name = options[-1].split("=")[0]
    assert f"tracker {tracker!r} rejected its options" in line and name in line


def test_usage_errors_still_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--dataset", "otb:x"])  # no --tracker, no --out
    assert exit_info.value.code == 2 and "required" in capsys.readouterr().err


def test_missing_results_folder_for_evaluate(tmp_path, capsys):
    line = _one_error(capsys, ["evaluate", "--results", str(tmp_path / "none"), "--dataset", f"otb:{_otb(tmp_path)}"])
    assert "results folder not found" in line and str(tmp_path / "none") in line


def test_error_message_is_one_line():
    from mtl.cli import error_message

    assert error_message(ValueError("a\n  b\n")) == "a b"
    assert error_message(KeyError("unknown thing 'x'")) == "unknown thing 'x'"
    assert error_message(KeyError("x")) == "KeyError: x"
    assert error_message(ValueError()) == "ValueError"


# ---- --debug and the real process -------------------------------------------------------------------

def test_debug_reraises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        main(["--debug", *_benchmark(f"otb:{tmp_path / 'nowhere'}", tmp_path / "res")])
    root = _otb(tmp_path / "otb", [GOOD[0], "2,3,nan,8", GOOD[2]])
    with pytest.raises(ValueError, match=r"groundtruth_rect\.txt:2:"):
        main(["--debug", *_benchmark(f"otb:{root}", tmp_path / "res")])


def test_subprocess_exit_status_and_no_traceback(tmp_path):
    root = _otb(tmp_path / "otb", n_frames=4, lines=GOOD + ["4,5,10,8"])
    bad = root / "Toy" / "img" / "0003.jpg"
    bad.write_bytes(np.random.default_rng(1).bytes(3000))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MTL_PROGRESS", None)
    proc = subprocess.run([sys.executable, "-m", "mtl.cli", *_benchmark(f"otb:{root}", tmp_path / "res")],
                          capture_output=True, env=env, cwd=tmp_path, timeout=300)
    err = proc.stderr.decode()  # bytes: text=True would turn the progress bar's carriage returns into newlines
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    lines = _shown_lines(err)
    assert len(lines) == 1 and lines[0].startswith("mtl: error: ") and str(bad) in lines[0], err


# ---- progress bars ----------------------------------------------------------------------------------

def _written_lines(text: str) -> int:
    return len([part for part in re.split(r"[\r\n]+", text) if part.strip()])


class _SlowClock:
    """A clock for tqdm that advances 50 ms at each reading: 1000 steps seem to take about a minute."""

    def __init__(self):
        self.t = 1e6

    def __call__(self):
        self.t += 0.05
        return self.t


@pytest.mark.parametrize("leave", [False, True])
def test_progress_bar_is_quiet_without_a_terminal(monkeypatch, leave):
    import tqdm.std

    monkeypatch.delenv("MTL_PROGRESS", raising=False)
    monkeypatch.setattr(tqdm.std, "time", _SlowClock())
    plain = io.StringIO()
    for _ in tqdm.std.tqdm(range(1000), file=plain, leave=leave):
        pass
    assert _written_lines(plain.getvalue()) > 100  # what plain tqdm writes to a log in that minute
    stream = io.StringIO()
    total = 0
    for i in progress_bar(range(1000), desc="items", leave=leave, file=stream):
        total += i
    assert total == sum(range(1000))
    text = stream.getvalue()
    assert _written_lines(text) < 10, text
    assert text.isascii()
    if leave:
        assert "1000/1000" in text


def test_progress_bar_updates_at_the_usual_pace_in_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("MTL_PROGRESS", raising=False)
    stream = Terminal()
    bar = progress_bar(total=5, file=stream, mininterval=0)
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert _written_lines(stream.getvalue()) >= 5  # a redraw per step, as plain tqdm


def test_progress_bar_off_with_environment_variable(monkeypatch):
    monkeypatch.setenv("MTL_PROGRESS", "0")
    stream = io.StringIO()
    assert sum(progress_bar(range(100), file=stream, leave=True)) == sum(range(100))
    assert stream.getvalue() == ""

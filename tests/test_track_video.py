"""``mtl track`` / ``mtl.video.track_video``: trackers on a user's video, and its errors on bad input."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtl import eval as ev
from mtl.cli import main
from mtl.utils import ROOT
from mtl.video import GIF_FRAMES, VideoDecodeError, VideoSource, parse_box, parse_frames, track_video, write_video

from test_cli_errors import _one_error

BOX = (20, 40, 30, 30)  # the square's box on frame 0; it moves 2 px right per frame


def _frames(n: int = 24, size=(120, 160)) -> list[np.ndarray]:
    """A red square moving right over fixed noise (RGB)."""
    bg = (np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)
    out = []
    for i in range(n):
        f = bg.copy()
        x = BOX[0] + 2 * i
        f[BOX[1]:BOX[1] + BOX[3], x:x + BOX[2]] = (255, 0, 0)
        out.append(f)
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(_frames(), tmp_path_factory.mktemp("clip") / "square.mp4", fps=10)


def _decoded_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _box_arg(box=BOX) -> str:
    return ",".join(str(v) for v in box)


def test_track_writes_boxes_times_and_an_annotated_video_per_tracker(clip, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["track", "--video", str(clip), "--box", _box_arg(), "--tracker", "static", "--tracker", "siamfc",
                   "--out", str(out), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    n = len(_frames())
    for name in ("static", "siamfc"):
        lines = (out / name / "square.txt").read_text().splitlines()
        assert len(lines) == n and lines[0] == "20.000,40.000,30.000,30.000"
        times = np.loadtxt(out / name / "times" / "square_time.txt")
        assert times.shape == (n,) and np.all(times >= 0)
    assert _decoded_frames(out / "square_tracked.mp4") == n
    from PIL import Image

    with Image.open(out / "square_tracked.gif") as gif:
        assert 1 < gif.n_frames <= GIF_FRAMES
    printed = capsys.readouterr().out
    assert "siamfc: 24 frames" in printed and "square_tracked.mp4" in printed


def test_siamfc_follows_the_moving_square(clip, tmp_path):
    result = track_video(clip, BOX, trackers=["siamfc"], out=tmp_path, progress=False, gif=False)
    boxes = result["trackers"]["siamfc"]["boxes"]
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    truth = np.array([[BOX[0] + 2 * i + BOX[2] / 2, BOX[1] + BOX[3] / 2] for i in range(len(boxes))])
    assert np.abs(centres - truth).max() < 6  # 2 px/frame drift would end 46 px behind


def test_lockstep_tracking_gives_the_boxes_of_the_benchmark_loop(clip, tmp_path):
    # several trackers on one decoded stream must not change any tracker's boxes
    result = track_video(clip, BOX, trackers=["siamfc", "static"], out=tmp_path, progress=False, gif=False)
    alone = ev.track_frames(ev.make_tracker("siamfc"), VideoSource(clip).frames(), BOX)
    np.testing.assert_allclose(result["trackers"]["siamfc"]["boxes"], alone["boxes"], atol=5e-4)  # files keep 3 decimals


def test_frame_range_tracks_only_those_frames(clip, tmp_path):
    box = (BOX[0] + 2 * 5, BOX[1], BOX[2], BOX[3])  # the square on frame 5
    result = track_video(clip, box, trackers=["static"], out=tmp_path, frames="5:15", progress=False)
    assert result["frames"] == 10 and len(result["trackers"]["static"]["boxes"]) == 10
    assert _decoded_frames(result["video"]) == 10


def test_a_folder_of_images_is_a_video(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(_frames(6)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f[:, :, ::-1])
    result = track_video(folder, BOX, trackers=["static"], out=tmp_path / "out", progress=False)
    assert result["name"] == "imgs" and result["frames"] == 6


def test_a_frame_that_fails_to_decode_ends_the_run_and_keeps_what_was_written(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(_frames(8)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f[:, :, ::-1])
    (folder / "005.png").write_bytes(np.random.default_rng(1).bytes(2000))
    line = _one_error(capsys, ["track", "--video", str(folder), "--box", _box_arg(), "--tracker", "static",
                               "--out", str(tmp_path / "out"), "--no-progress"])
    assert "frame 5 (005.png)" in line
    assert len((tmp_path / "out" / "static" / "imgs.txt").read_text().splitlines()) == 5
    assert _decoded_frames(tmp_path / "out" / "imgs_tracked.mp4") == 5
    with pytest.raises(VideoDecodeError, match="frame 5"):
        list(VideoSource(folder).frames())


@pytest.mark.parametrize("args, expected", [
    (["--video", "MISSING.mp4", "--box", "1,2,3,4"], "video not found"),
    (["--box", "500,40,30,30"], "lies outside the first frame (160x120"),
    (["--box=-40,40,30,30"], "lies outside the first frame"),
    (["--box", "20,40,0,30"], "non-positive size"),
    (["--box", "20,40,-3,30"], "non-positive size"),
    (["--box", "20,40,30"], "four"),
    (["--box", "a,b,c,d"], "four numbers"),
    (["--box", _box_arg(), "--tracker", "no_such_tracker"], "unknown tracker 'no_such_tracker'"),
    (["--box", _box_arg(), "--tracker", "noisy_gt"], "oracle"),
    (["--box", _box_arg(), "--tracker", "static", "--tracker", "static"], "named twice"),
    ([], "--box X,Y,W,H"),
    (["--box", _box_arg(), "--frames", "10"], "--frames must be A:B"),
    (["--box", _box_arg(), "--frames", "9:3"], "--frames must be A:B"),
    (["--box", _box_arg(), "--frames", "100:"], "has 24 frames"),
])
def test_bad_input_is_one_error_line(clip, tmp_path, capsys, args, expected):
    argv = ["track", "--out", str(tmp_path / "out"), "--no-progress", *args]
    if "--video" not in args:
        argv += ["--video", str(clip)]
    else:
        argv[argv.index("MISSING.mp4")] = str(tmp_path / "missing.mp4")
    assert expected in _one_error(capsys, argv)


def test_select_without_a_display_is_a_clear_error(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    line = _one_error(capsys, ["track", "--video", str(clip), "--select", "--out", str(tmp_path)])
    assert "--select needs a display" in line and "--box" in line


def test_an_undecodable_file_is_one_line_on_stderr_even_from_ffmpeg(tmp_path):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(2).bytes(4000))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mtl.cli", "track", "--video", str(bad), "--box", "1,2,3,4",
                           "--out", str(tmp_path / "out")], capture_output=True, env=env, timeout=120)
    lines = [ln for ln in proc.stderr.decode().splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("mtl: error: ") and str(bad) in lines[0] and "cannot open" in lines[0]


def test_parsers():
    np.testing.assert_array_equal(parse_box("1, 2, 3.5, 4"), [1, 2, 3.5, 4])
    np.testing.assert_array_equal(parse_box([1, 2, 3, 4]), [1, 2, 3, 4])
    assert parse_frames(None) == (0, None) and parse_frames("5:") == (5, None) and parse_frames(":7") == (0, 7)
    with pytest.raises(ValueError, match="non-positive"):
        parse_box((1, 2, 0, 4))


def test_generate_writes_an_mp4_clip_with_its_boxes(tmp_path, capsys):
    assert main(["generate", "--split", "test", "--quick", "--format", "mp4", "--num-sequences", "1",
                 "--out", str(tmp_path)]) == 0
    (video,) = tmp_path.glob("*.mp4")
    boxes = (tmp_path / f"{video.stem}.txt").read_text().splitlines()
    assert _decoded_frames(video) == len(boxes) > 1
    assert "mtl track --video" in capsys.readouterr().out  # the hint names the command and the first box

"""Track your own video: read a clip frame by frame, run trackers on it, write boxes and an annotated video.

``track_video`` (and ``mtl track``) streams the frames: one decoded frame at a time goes through
every tracker in lockstep (:class:`mtl.eval.OnePass`, the rule every evaluation uses), then into the
annotated MP4; boxes and times are appended to their files as they come, so memory does not grow
with the length of the clip and a run that stops early keeps what it wrote.

Layout of ``out`` for a video ``<name>.mp4`` (the toolkit's text format, ``out`` as the benchmark folder)::

    <tracker>/<name>.txt                 x,y,w,h per frame (line 1 = the given box)
    <tracker>/times/<name>_time.txt      seconds per frame (init / update only)
    <tracker>/failures/<name>_failures.txt   only when the tracker failed on a frame
    <name>_tracked.mp4                   every frame, one colour per tracker, legend and frame number
    <name>_tracked.gif                   a short, small preview (at most GIF_FRAMES frames)
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from mtl.data import IMAGE_EXTENSIONS, _list_images, _read_image

#: Frames in the GIF preview (spread evenly over the clip when its length is known) and its width.
GIF_FRAMES = 48
GIF_WIDTH = 320
#: Frame rate written when the source has none (a folder of images, a file without one).
DEFAULT_FPS = 25.0


class VideoDecodeError(ValueError):
    """A frame of the video could not be decoded; the message names the file and the frame."""


# ------------------------------------------------------------------------------------ reading


def parse_box(text) -> np.ndarray:
    """``"X,Y,W,H"`` (commas, optional spaces) or 4 numbers -> float64 ``[x, y, w, h]``; ValueError naming what is wrong."""
    parts = [p for p in text.replace(" ", ",").split(",") if p] if isinstance(text, str) else np.ravel(text)
    try:
        box = np.array([float(p) for p in parts], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"--box must be four numbers X,Y,W,H, got {text!r}") from None
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"--box must be four finite numbers X,Y,W,H, got {text!r}")
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"--box {text!r} has a non-positive size (w={box[2]:g}, h={box[3]:g}); width and height must be > 0")
    return box


def parse_frames(text: str | None) -> tuple[int, int | None]:
    """``"A:B"`` -> ``(A, B)``: frames A (0-based, the one the box is drawn on) up to B exclusive.

    Either side may be empty (``":100"``, ``"50:"``); None or ``""`` is the whole clip.
    """
    if not text:
        return 0, None
    a, sep, b = str(text).partition(":")
    try:
        start = int(a) if a.strip() else 0
        stop = int(b) if b.strip() else None
    except ValueError:
        raise ValueError(f"--frames must be A:B with integers (e.g. 0:300 or 100:), got {text!r}") from None
    if not sep or start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"--frames must be A:B with 0 <= A < B (e.g. 0:300 or 100:), got {text!r}")
    return start, stop


def check_box_in_frame(box: np.ndarray, width: int, height: int) -> None:
    """ValueError unless ``box`` overlaps the ``width x height`` frame and its centre lies inside it."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    if x >= width or y >= height or x + w <= 0 or y + h <= 0 or not (0 <= cx < width and 0 <= cy < height):
        raise ValueError(f"--box {','.join(f'{v:g}' for v in box)} lies outside the first frame "
                         f"({width}x{height} pixels; the box's centre must be inside it)")


class VideoSource:
    """Frames of a video file (anything OpenCV decodes) or of a folder of images, read one at a time.

    ``frames`` iterates RGB ``HxWx3`` uint8 frames ``start`` .. ``stop - 1`` (0-based); earlier frames are
    decoded and dropped (seeking is not frame-exact in every container). Raises FileNotFoundError for a
    missing path, ValueError for a file OpenCV cannot open or whose first frame does not decode, and
    :class:`VideoDecodeError` naming the frame when one in the middle fails.
    """

    def __init__(self, path: str | os.PathLike, start: int = 0, stop: int | None = None):
        self.path = Path(path)
        self.start, self.stop = int(start), stop
        if not self.path.exists():
            raise FileNotFoundError(f"video not found: {self.path}")
        self.images = _list_images(self.path) if self.path.is_dir() else None
        if self.images is not None:
            self.length, self.fps = len(self.images), DEFAULT_FPS
        else:
            cap = self._open()
            self.length = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None  # containers may not say
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
            self.fps = fps if 1 <= fps <= 240 else DEFAULT_FPS
            cap.release()
        if self.length is not None and self.start >= self.length:
            raise ValueError(f"--frames starts at frame {self.start}, but {self.path} has {self.length} frames")

    @property
    def name(self) -> str:
        """The clip's name for result files: the file's stem or the folder's name."""
        return self.path.name if self.images is not None else self.path.stem

    @property
    def num_frames(self) -> int | None:
        """Frames that ``frames`` yields, when the source says how many it has (else None)."""
        end = self.length if self.stop is None else (self.stop if self.length is None else min(self.stop, self.length))
        return None if end is None else end - self.start

    def _open(self) -> cv2.VideoCapture:
        # FFmpeg's own complaints ("moov atom not found") would precede our one-line error; a user's setting wins
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"{self.path}: OpenCV cannot open this file as a video (not a video, or an "
                             f"unsupported codec); a folder of images works too")
        return cap

    def frames(self) -> Iterator[np.ndarray]:
        if self.images is not None:
            stop = len(self.images) if self.stop is None else min(self.stop, len(self.images))
            for i in range(self.start, stop):
                try:
                    yield _read_image(self.images[i])
                except ValueError as e:  # corrupt image
                    raise VideoDecodeError(f"frame {i} ({self.images[i].name}) could not be decoded: {e}") from None
            return
        cap = self._open()
        try:
            i = 0
            while self.stop is None or i < self.stop:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    # the end, unless the header promised (at least two) more frames: a frame that failed
                    if i == 0:
                        raise ValueError(f"{self.path}: OpenCV opened the file but could not decode its first "
                                         f"frame (not a video, or an unsupported codec)")
                    if self.length is not None and i < self.length - 1:
                        raise VideoDecodeError(f"{self.path}: frame {i} could not be decoded (the file says it "
                                               f"has {self.length} frames)")
                    return
                if i >= self.start:
                    yield np.ascontiguousarray(bgr[:, :, ::-1])
                i += 1
        finally:
            cap.release()


def has_display() -> bool:
    """Whether a window can be opened (on Linux: DISPLAY or WAYLAND_DISPLAY is set)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def select_box(frame: np.ndarray) -> np.ndarray:
    """Let the user draw the box on ``frame`` (RGB) with ``cv2.selectROI``; ``[x, y, w, h]``."""
    if not has_display():
        raise ValueError("--select needs a display to draw the box on, and there is none (DISPLAY / "
                         "WAYLAND_DISPLAY unset); give the box as --box X,Y,W,H instead")
    window = "mtl track: drag a box around the target, then press ENTER or SPACE (c cancels)"
    try:
        x, y, w, h = cv2.selectROI(window, np.ascontiguousarray(frame[:, :, ::-1]), showCrosshair=True)
        cv2.destroyWindow(window)
    except cv2.error as e:  # opencv-python-headless has no windows
        raise ValueError(f"--select needs OpenCV with GUI support (this one has none: "
                         f"{str(e).strip().splitlines()[-1]}); give the box as --box X,Y,W,H instead") from None
    if w <= 0 or h <= 0:
        raise ValueError("--select: no box was drawn")
    return np.array([x, y, w, h], dtype=np.float64)


# ------------------------------------------------------------------------------------ writing


def _bgr(rgb) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def tracker_colors(names: list[str]) -> dict[str, tuple[int, int, int]]:
    """One RGB colour per tracker, in order (green is left for a ground-truth box)."""
    from mtl.viz import BOX_COLORS

    palette = BOX_COLORS[1:]
    return {n: palette[k % len(palette)] for k, n in enumerate(names)}


def annotate(frame: np.ndarray, boxes: dict, colors: dict, frame_index: int) -> np.ndarray:
    """``frame`` (RGB) with each tracker's box, a legend (top left) and the frame number (bottom left)."""
    from mtl.viz import draw_boxes

    h, w = frame.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    out = draw_boxes(frame, list(boxes.values()), [colors[n] for n in boxes], thickness=thick)
    scale = max(0.35, min(h, w) / 600)
    line = int(22 * scale) + 4
    text_w = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, thick + 2)[0][0] for n in boxes) if boxes else 0
    x1, y1 = min(w, 14 + line + text_w), min(h, 12 + line * len(boxes))
    out[2:y1, 2:x1] = out[2:y1, 2:x1] // 2  # a darker panel keeps the legend readable on any background
    for k, name in enumerate(boxes):
        y = 6 + line * (k + 1)
        cv2.rectangle(out, (6, y - line + 6), (6 + line - 6, y), colors[name], -1)
        for color, t in (((0, 0, 0), thick + 2), ((255, 255, 255), max(1, thick))):
            cv2.putText(out, name, (8 + line, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, color, t, cv2.LINE_AA)
    for color, t in (((0, 0, 0), thick + 2), ((255, 255, 255), max(1, thick))):
        cv2.putText(out, f"#{frame_index}", (8, h - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, color, t, cv2.LINE_AA)
    return out


def open_video_writer(path: Path, fps: float, width: int, height: int, fourcc: str = "mp4v") -> cv2.VideoWriter:
    """A video writer: ``mp4v`` (MP4, in every OpenCV build; browsers do not play it) or ``VP80`` (WebM, for
    :func:`html5_video`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_stderr():  # FFmpeg prints a harmless "tag not supported, fallback" notice for VP80 in WebM
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (int(width), int(height)))
    if not writer.isOpened():
        raise OSError(f"could not open {path} for writing a {fourcc} video")
    return writer


def write_video(frames, path: str | os.PathLike, fps: float = DEFAULT_FPS, fourcc: str = "mp4v") -> Path:
    """Write RGB frames (any iterable of ``HxWx3`` uint8 of one size) to a video file; returns its path."""
    path, writer = Path(path), None
    try:
        for frame in frames:
            if writer is None:
                writer = open_video_writer(path, fps, frame.shape[1], frame.shape[0], fourcc)
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise ValueError(f"no frames to write to {path}")
    return path


def write_gif(frames: list[np.ndarray], path: Path, fps: float) -> Path | None:
    """A looping GIF of RGB ``frames`` (already small) at ``fps``; None when there are no frames."""
    if not frames:
        return None
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path


@contextlib.contextmanager
def _quiet_stderr():
    """Silence what C libraries write to file descriptor 2 (Python's own warnings are unaffected after)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def html5_video(path: str | os.PathLike, max_width: int = 320, max_frames: int | None = None):
    """An inline ``<video>`` player of ``path`` for a notebook (``IPython.display.HTML``).

    Browsers do not play the ``mp4v`` codec of our MP4 files, so the clip is re-encoded to WebM (VP8,
    which OpenCV's own FFmpeg has) at most ``max_width`` pixels wide, and embedded as base64: the
    notebook keeps it, so keep ``max_width`` and ``max_frames`` small.
    """
    import base64
    import tempfile

    from IPython.display import HTML

    def small(frame):
        h, w = frame.shape[:2]
        scale = min(1.0, max_width / w)
        return cv2.resize(frame, (round(w * scale) // 2 * 2, round(h * scale) // 2 * 2), interpolation=cv2.INTER_AREA)

    source = VideoSource(path, 0, max_frames)
    with tempfile.TemporaryDirectory() as tmp:
        webm = write_video((small(f) for f in source.frames()), Path(tmp) / "clip.webm", source.fps, fourcc="VP80")
        data = base64.b64encode(webm.read_bytes()).decode()
    return HTML(f'<video controls loop autoplay muted style="max-width:100%"><source type="video/webm" '
                f'src="data:video/webm;base64,{data}"></video>')


# ------------------------------------------------------------------------------------ tracking


def track_video(video: str | os.PathLike, box=None, trackers=("siamfc",), out: str | os.PathLike = "runs/track",
                frames: str | tuple | None = None, select: bool = False, gif: bool = True,
                progress: bool = True) -> dict:
    """Run registered trackers on a video from a first-frame box; write boxes, times, an MP4 and a GIF.

    Args:
        video: a video file OpenCV can decode, or a folder of images (sorted by name).
        box: ``x, y, w, h`` on the first tracked frame (a string ``"X,Y,W,H"`` or 4 numbers); None with
            ``select=True`` asks the user to draw it (needs a display).
        trackers: registered tracker names (``mtl.eval.TRACKERS``), each built with its defaults (the
            stored checkpoints); or a dict ``{name: tracker object}``.
        out: output folder (layout in the module docstring).
        frames: ``"A:B"`` or ``(A, B)``: track frames A..B-1 only (0-based; the box is on frame A).
        gif: also write the short GIF preview.
    Returns:
        ``{"name", "frames" (tracked), "fps" (of the source), "video", "gif", "trackers": {name:
        {"boxes": (N, 4) array, "times": (N,) array, "boxes_file", "times_file", "failed_frames"}}}``
        (boxes and times read back from the files written).
    Raises:
        FileNotFoundError (missing video), ValueError (a bad box, frame range or file, an unknown
        tracker as KeyError), :class:`VideoDecodeError` when a frame fails mid-way: the files hold
        the frames before it.
    """
    from mtl import eval as ev
    from mtl.utils import progress_bar

    start, stop = frames if isinstance(frames, tuple) else parse_frames(frames)
    if box is None and not select:
        raise ValueError("give the target's box on the first frame with --box X,Y,W,H (or --select where a display is available)")
    if box is not None:
        box = parse_box(box)
    if isinstance(trackers, dict):
        built = dict(trackers)
    else:
        names = [trackers] if isinstance(trackers, str) else list(trackers)
        if not names:
            raise ValueError("name at least one tracker")
        if len(set(names)) != len(names):
            raise ValueError(f"a tracker is named twice: {names}")
        built = {n: ev.make_tracker(n) for n in names}  # before decoding: cheap mistakes fail fast
    oracles = [n for n, t in built.items() if hasattr(t, "set_sequence")]
    if oracles:
        raise ValueError(f"tracker {oracles[0]!r} reads the ground truth of a benchmark sequence (an oracle) and "
                         f"cannot track a video that has none; choose another (e.g. siamfc)")
    source = VideoSource(video, start, stop)
    stream = source.frames()
    first = next(stream, None)
    if first is None:
        raise ValueError(f"{source.path}: no frames in the range asked for")
    if box is None:
        box = select_box(first)
    height, width = first.shape[:2]
    check_box_in_frame(box, width, height)

    out = Path(out)
    name = source.name
    runs = {n: ev.OnePass(t, box, seq_name=name) for n, t in built.items()}
    colors = tracker_colors(list(built))
    files = {n: (ev.results_file(out, "", n, name), ev.times_file(out, "", n, name)) for n in built}
    handles = {}
    for n, (bpath, tpath) in files.items():
        bpath.parent.mkdir(parents=True, exist_ok=True)
        tpath.parent.mkdir(parents=True, exist_ok=True)
        handles[n] = (open(bpath, "w"), open(tpath, "w"))
    video_path, gif_path = out / f"{name}_tracked.mp4", out / f"{name}_tracked.gif"
    writer = open_video_writer(video_path, source.fps, width, height)
    total = source.num_frames
    gif_every = max(1, (total or 2 * GIF_FRAMES) // GIF_FRAMES)
    gif_frames: list[np.ndarray] = []
    bar = progress_bar(total=total, desc=f"tracking {name}", unit="frame", leave=True) if progress else None
    count = 0
    try:
        for image in _chain(first, stream):
            boxes = {}
            for n, run in runs.items():
                b, seconds = run.step(image)
                boxes[n] = b
                handles[n][0].write(ev.box_line(b))
                handles[n][1].write(ev.time_line(seconds))
            drawn = annotate(image, boxes, colors, start + count)
            writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))
            if gif and count % gif_every == 0 and len(gif_frames) < GIF_FRAMES:
                scale = min(1.0, GIF_WIDTH / width)
                gif_frames.append(cv2.resize(drawn, (round(width * scale), round(height * scale)),
                                             interpolation=cv2.INTER_AREA) if scale < 1 else drawn)
            count += 1
            if bar is not None:
                bar.update(1)
    finally:  # a decode error mid-way keeps what was written so far
        if bar is not None:
            bar.close()
        writer.release()
        for bh, th in handles.values():
            bh.close()
            th.close()
        for n, run in runs.items():
            if run.messages:
                ffile = ev.failures_file(out, "", n, name)
                ffile.parent.mkdir(parents=True, exist_ok=True)
                ffile.write_text("".join(ev.failure_line(f, m) for f, m in run.messages))
        if gif:
            gif_path = write_gif(gif_frames, gif_path, fps=source.fps / gif_every)
    result = {"name": name, "frames": count, "fps": source.fps, "video": video_path,
              "gif": gif_path if gif else None, "trackers": {}}
    for n, (bpath, tpath) in files.items():
        result["trackers"][n] = {"boxes": ev.read_boxes(bpath), "times": ev.read_times(tpath), "boxes_file": bpath,
                                 "times_file": tpath, "failed_frames": runs[n].failed_frames}
    return result


def _chain(first, rest):
    yield first
    yield from rest


__all__ = ["VideoSource", "VideoDecodeError", "parse_box", "parse_frames", "check_box_in_frame", "select_box",
           "annotate", "write_video", "write_gif", "html5_video", "track_video", "IMAGE_EXTENSIONS"]

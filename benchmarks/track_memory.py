"""Peak memory of ``mtl track`` on a long clip: does it stay flat as the video grows?

Writes a synthetic clip of each length (a textured square drifting over a fixed background,
320x240, MP4), tracks it in a fresh process, and reports that process's peak resident memory
(``ru_maxrss``) before tracking (imports, tracker built) and after, with the tracking speed.

    python benchmarks/track_memory.py --frames 1000 10000 --out benchmarks/results/track_memory.json

A benchmark, not a test: numbers vary between machines.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def clip_frames(n: int, size=(240, 320)):
    """``n`` RGB frames: a 40x40 textured square on a smooth path over a fixed noisy background."""
    rng = np.random.default_rng(0)
    bg = (rng.random((*size, 3)) * 120 + 60).astype(np.uint8)
    patch = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    for i in range(n):
        f = bg.copy()
        x = int(140 + 100 * np.sin(i / 97))
        y = int(100 + 60 * np.cos(i / 71))
        f[y:y + 40, x:x + 40] = patch
        yield f


def first_box() -> str:
    return f"{int(140 + 100 * np.sin(0))},{int(100 + 60 * np.cos(0))},40,40"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def one(video: Path, tracker: str, out: Path) -> dict:
    from mtl import eval as ev
    from mtl.video import track_video

    ev.make_tracker(tracker)  # import and load once, so "before" holds the model and libraries
    before = peak_rss_mb()
    start = time.perf_counter()
    result = track_video(video, first_box(), trackers=[tracker], out=out, progress=False)
    seconds = time.perf_counter() - start
    return {"frames": result["frames"], "tracker": tracker, "peak_rss_mb_before_tracking": round(before, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "seconds": round(seconds, 1),
            "frames_per_second_all_included": round(result["frames"] / seconds, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--tracker", default="siamfc")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", type=Path, default=None, help=argparse.SUPPRESS)  # child: track this video
    args = parser.parse_args(argv)
    if args.one is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.tracker, Path(tmp))))
        return 0
    from mtl.video import write_video

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            video = write_video(clip_frames(n), Path(tmp) / f"clip{n}.mp4")
            proc = subprocess.run([sys.executable, __file__, "--one", str(video), "--tracker", args.tracker],
                                  capture_output=True, text=True, cwd=ROOT, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

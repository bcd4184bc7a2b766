"""SiamFC's tracker / backbone speed ratio and a training step under several OpenMP idle-spin settings.

libgomp (torch's OpenMP on Linux) lets a worker thread busy-wait after each parallel op, about
300,000 spins by default, before it sleeps. With as many torch threads as cores, that spinning
thread holds a core while the tracker's OpenCV crops and upsampling run between two backbone passes.
``import mtl`` sets ``GOMP_SPINCOUNT=20000`` unless the user set it (or ``OMP_WAIT_POLICY``); this
script is the measurement behind that value.

libgomp reads the variable once, when torch loads it, so each setting runs in its own process, and
the settings take turns ``--repeats`` times so that a slow spell of the machine hits them all. Each
process measures, with 2 torch threads: ``mtl.siamfc.speed_comparison`` (tracker and backbone
interleaved frame by frame, the committed SiamFC, ``--frames`` frames of every 10th test sequence),
``mtl.budget.machine_fps`` and the median time of a SiamFC training step (batch 8, random crops).

    python benchmarks/openmp_spin.py --out benchmarks/results/openmp_spin_cpu.json

A benchmark, not a test. Do not run another torch job beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS = ("libgomp default", "100000", "20000", "5000", "1000")


def measure(frames: int, sequences: int) -> dict:
    """The measurements of one process (its ``GOMP_SPINCOUNT`` was fixed before torch loaded)."""
    import numpy as np
    import torch

    import mtl
    from mtl.budget import machine_fps
    from mtl.data import load_dataset
    from mtl.siamfc import SiamFCConfig, SiamFCLoss, SiamFCNet, SiamFCTracker, load_siamfc, speed_comparison

    torch.set_num_threads(2)
    seqs = load_dataset("synth:test")[::10][:sequences]
    speed = speed_comparison(SiamFCTracker(load_siamfc("default")), seqs, max_frames=frames)
    config = SiamFCConfig()
    net, loss = SiamFCNet.from_config(config), SiamFCLoss(config)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    size = config.train_instance_size
    batch = (torch.rand(8, 3, 127, 127, generator=gen) * 255, torch.rand(8, 3, size, size, generator=gen) * 255)
    steps = []
    for _ in range(25):
        start = time.perf_counter()
        opt.zero_grad()
        loss(net, batch).backward()
        opt.step()
        steps.append(time.perf_counter() - start)
    return {"ratio": speed["ratio"], "tracker_fps": speed["tracker_fps"], "backbone_fps": speed["backbone_fps"],
            "frames": speed["frames"], "machine_fps": machine_fps(), "train_step_ms": 1000 * float(np.median(steps[5:])),
            "openmp": mtl.openmp_spin()}


def run_setting(setting: str, frames: int, sequences: int) -> dict:
    """``measure`` in a child process whose ``GOMP_SPINCOUNT`` is ``setting`` (libgomp's 300000 for the default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "MTL_SET_GOMP_SPINCOUNT")}
    # set explicitly even for the default, else the child's import mtl would fill in its own 20000
    env["GOMP_SPINCOUNT"] = "300000" if setting == DEFAULT_SETTINGS[0] else setting
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import openmp_spin; "
            f"print(json.dumps(openmp_spin.measure({frames}, {sequences})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"setting {setting}: the child process failed:\n{out.stderr[-2000:]}")
    return {"setting": setting, **json.loads(out.stdout.strip().splitlines()[-1])}


def summarize(rows: list[dict]) -> list[dict]:
    """Per setting: the mean and the range over the repeats of ratio, FPS and training step."""
    import numpy as np

    out = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        entry = {"setting": setting, "repeats": len(mine)}
        for key in ("ratio", "tracker_fps", "backbone_fps", "train_step_ms"):
            values = np.array([r[key] for r in mine])
            entry[key] = {"mean": round(float(values.mean()), 3), "min": round(float(values.min()), 3),
                          "max": round(float(values.max()), 3)}
        out.append(entry)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS),
                    help="GOMP_SPINCOUNT values; 'libgomp default' is 300000 (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=100, help="frames per sequence in the speed comparison")
    ap.add_argument("--sequences", type=int, default=12, help="every 10th test sequence, this many")
    ap.add_argument("--out", type=Path, default=None, help="write the rows and the summary as JSON here")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.frames < 1 or args.sequences < 1:
        ap.error("--repeats, --frames and --sequences must be >= 1")
    for s in args.settings:
        if s != DEFAULT_SETTINGS[0] and not s.isdigit():
            ap.error(f"a setting is a non-negative integer or {DEFAULT_SETTINGS[0]!r}, got {s!r}")
    rows = []
    for repeat in range(args.repeats):
        for setting in args.settings:
            row = {"repeat": repeat, **run_setting(setting, args.frames, args.sequences)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    summary = summarize(rows)
    for entry in summary:
        print(f"{entry['setting']:>16}: ratio {entry['ratio']['mean']:.3f} [{entry['ratio']['min']:.3f}, "
              f"{entry['ratio']['max']:.3f}]  tracker {entry['tracker_fps']['mean']:.1f} FPS  "
              f"backbone {entry['backbone_fps']['mean']:.1f} FPS  train step {entry['train_step_ms']['mean']:.0f} ms")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                                        "date": time.strftime("%Y-%m-%d"), "rows": rows, "summary": summary},
                                       indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

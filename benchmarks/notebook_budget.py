"""What a notebook's full run would cost from a fresh clone (BRIEF §7: <= 40 min on 2 CPU cores), measured.

Runs each notebook in full mode with papermill, with ``MTL_RUN_LEDGER`` set so the results cache,
the side-by-side speed runs and the feature caches log what they serve and what it cost when it was
made (:mod:`mtl.budget`). The estimate adds back what warm caches saved this run: stored tracking
time, feature build time and the rendering of served frames (timed here on a few test frames).

The committed ``results/`` tree is restored afterwards: the speed runs are re-measured in every
execution, and a budget run must not replace a notebook's committed results. The executed notebook
stays in ``--out``.

    python benchmarks/notebook_budget.py notebooks/04_learning_to_update.ipynb --out runs/budget

Prints one JSON line per notebook and writes ``<out>/budget.json``. Do not run another torch job
beside it: the wall time is part of the estimate.

Each row carries ``machine_fps`` (:func:`mtl.budget.machine_fps`, measured before the notebooks): minutes
only compare between machines next to it.

A run made elsewhere with the ledger on (for example ``MTL_RUN_LEDGER=$PWD/runs/l.jsonl mtl reproduce --only 03``
from a fresh clone) is summarised without running anything again:

    python benchmarks/notebook_budget.py --ledger runs/l.jsonl --wall 3351 --name 03_gradnet --out runs/budget
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def render_seconds_per_frame(n_frames: int = 200) -> float:
    """Seconds to render one benchmark frame (the first ``n_frames`` of the first test sequence)."""
    from mtl.data import load_dataset

    seq = load_dataset("synth:test")[0]
    n = min(n_frames, len(seq))
    seq.frame(0)
    start = time.perf_counter()
    for f in range(n):
        seq.frame(f)
    return (time.perf_counter() - start) / n


def budget_row(name: str, status: str, ledger: Path, wall: float, render: float) -> dict:
    """One notebook's row: its ledger (none written counts as empty) summarised with its wall time in seconds."""
    from mtl.budget import read_ledger, summarize_ledger

    entries = read_ledger(ledger) if ledger.is_file() else []
    summary = summarize_ledger(entries, wall, render_seconds_per_frame=render)
    return {"notebook": name, "status": status, "ledger": str(ledger), "render_seconds_per_frame": render, **summary}


def run_notebook(path: Path, out: Path, render: float) -> dict:
    import papermill as pm

    from mtl.budget import LEDGER_ENV

    ledger = out / f"{path.stem}.ledger.jsonl"
    ledger.unlink(missing_ok=True)
    backup = Path(tempfile.mkdtemp(prefix="results-"))
    shutil.copytree(ROOT / "results", backup / "results")
    os.environ[LEDGER_ENV] = str(ledger)
    start = time.perf_counter()
    status = "ok"
    try:
        pm.execute_notebook(str(path), str(out / path.name), parameters={"QUICK": False}, kernel_name="python3",
                            cwd=str(path.parent), progress_bar=False)
    except Exception as exc:  # papermill's error names the failing cell
        status = f"failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
    finally:
        wall = time.perf_counter() - start
        os.environ.pop(LEDGER_ENV, None)
        shutil.rmtree(ROOT / "results")
        shutil.copytree(backup / "results", ROOT / "results")
        shutil.rmtree(backup)
    return budget_row(path.stem, status, ledger, wall, render)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--ledger", type=Path, help="summarise this ledger of a run made elsewhere instead of running")
    ap.add_argument("--wall", type=float, help="with --ledger: that run's wall time in seconds")
    ap.add_argument("--name", help="with --ledger: the notebook's name")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / time.strftime("budget-%Y%m%d-%H%M%S"))
    args = ap.parse_args(argv)
    if (args.ledger is None) == (not args.notebooks):
        ap.error("give notebooks to run, or --ledger (with --wall and --name) to summarise a run made elsewhere")
    if args.ledger is not None and (args.wall is None or not args.name):
        ap.error("--ledger needs --wall SECONDS and --name NOTEBOOK")
    if args.ledger is not None and not args.ledger.is_file():
        ap.error(f"ledger not found: {args.ledger}")
    args.out = args.out.resolve()  # the kernel runs in notebooks/: a relative ledger path would point elsewhere
    args.out.mkdir(parents=True, exist_ok=True)
    from mtl.budget import machine_fps

    render = render_seconds_per_frame()
    fps = machine_fps()
    report = []
    jobs = [lambda: budget_row(args.name, "ok", args.ledger, args.wall, render)] if args.ledger else [
        (lambda nb=nb: run_notebook(nb.resolve(), args.out, render)) for nb in args.notebooks]
    for job in jobs:
        row = {**job(), "machine_fps": fps}
        report.append(row)
        print(json.dumps(row), flush=True)
        (args.out / "budget.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(r["status"] == "ok" for r in report) else 1


if __name__ == "__main__":
    raise SystemExit(main())

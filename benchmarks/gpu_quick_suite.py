"""Run the notebooks in quick mode on a machine that has a GPU but no Jupyter (the lent device machine).

The test command runs the notebooks under nbval, which needs a Jupyter kernel; the lent GPU
machine's image has none and can install nothing. This script stands in for it there: each
notebook runs in its own process, its code cells in order in one namespace as a kernel would run
them, with the parameters cell followed by overrides (``QUICK = True``, ``DEVICE = ...``) as
papermill injects them. Where ``IPython`` or ``ipywidgets`` is missing, small stand-ins take
their place (their rich output is not compared under ``--nbval-lax`` either). A cell that raises
ends its notebook, and the report names the cell and its traceback.

    python benchmarks/gpu_quick_suite.py --device cuda --jobs 4 --out runs/gpu_quick.json notebooks/0*.ipynb

Prints one JSON line per notebook (status, seconds, the slowest cells); exit status 1 if any failed.
A harness for the device check, not a replacement for ``make test``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _install_stand_ins() -> list[str]:
    """Modules replaced because they are not installed (IPython.display, ipywidgets)."""
    replaced = []
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        class _Rich:
            def __init__(self, data=None, *args, **kwargs):
                self.data = data

            def __repr__(self):
                return f"<{type(self).__name__}: {str(self.data)[:200]}>"

        display_mod = types.ModuleType("IPython.display")
        for name in ("Markdown", "HTML", "Image", "Video", "JSON"):
            setattr(display_mod, name, type(name, (_Rich,), {}))
        display_mod.display = lambda *objs, **kw: [print(repr(o)[:300]) for o in objs] and None
        ipython = types.ModuleType("IPython")
        ipython.display = display_mod
        # matplotlib looks for a running IPython through these two
        ipython.get_ipython, ipython.version_info = (lambda: None), (9, 0, 0)
        sys.modules.update({"IPython": ipython, "IPython.display": display_mod})
        replaced.append("IPython.display")
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        from unittest import mock
        sys.modules["ipywidgets"] = mock.MagicMock(name="ipywidgets")
        replaced.append("ipywidgets")
    return replaced


def run_one(path: Path, overrides: dict) -> dict:
    """Execute the code cells of ``path`` (cwd: its folder); the report of what ran and how long."""
    replaced = _install_stand_ins()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.show = lambda *a, **k: plt.close("all")  # a non-interactive backend: free the figures instead

    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    namespace = {"__name__": "__main__", "display": sys.modules["IPython.display"].display}
    os.chdir(path.parent)
    times, start = [], time.perf_counter()
    report = {"notebook": path.name, "stand_ins": replaced, "cells": len(cells)}
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        t0 = time.perf_counter()
        try:
            exec(compile(source, f"{path.name}[code cell {i}]", "exec"), namespace)
        except BaseException:  # noqa: BLE001 - report whatever stopped the notebook
            report.update(status="failed", failed_cell=i, source_head=source[:300], error=traceback.format_exc()[-4000:])
            break
        finally:
            times.append(time.perf_counter() - t0)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            exec("\n".join(f"{k} = {v!r}" for k, v in overrides.items()), namespace)
    else:
        report["status"] = "passed"
    report["seconds"] = time.perf_counter() - start
    report["slowest_cells"] = sorted(((round(t, 1), i) for i, t in enumerate(times)), reverse=True)[:5]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--device", default="auto", help="the notebooks' DEVICE parameter: auto, cpu or cuda")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per notebook")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run at once (each in its own process)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file with every report, rewritten after each")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    overrides = {"QUICK": True, "DEVICE": args.device}
    if args.one:
        print("REPORT " + json.dumps(run_one(args.notebooks[0].resolve(), overrides)), flush=True)
        return 0
    env = dict(os.environ, MTL_QUICK="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    if args.jobs > 1:  # share the cores between the notebooks that run at once
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // args.jobs)))

    def run_child(nb: Path) -> dict:
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", "--device", args.device,
                                   str(nb.resolve())], capture_output=True, text=True, timeout=args.timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"notebook": nb.name, "status": "timed out", "seconds": time.perf_counter() - start}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
        return json.loads(lines[-1][7:]) if lines else {
            "notebook": nb.name, "status": "crashed", "returncode": proc.returncode, "stderr": proc.stderr[-4000:]}

    reports = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for report in pool.map(run_child, args.notebooks):
            reports.append(report)
            print(json.dumps(report), flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(reports, indent=2))
    failed = [r["notebook"] for r in reports if r["status"] != "passed"]
    print(f"{len(reports) - len(failed)} passed, {len(failed)} not: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Write and read each notebook's results file, ``results/<notebook>.json``.

Full runs write the committed ``results/`` folder; quick runs write ``runs/quick/results/`` (ignored by
git), so a smoke run can never overwrite the numbers of a full run. Writes are atomic. The README's
tables are generated from these files (``mtl.reproduce``), never typed by hand.
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mtl.utils import QUICK_DIR, ROOT, atomic_write_bytes

FULL_RESULTS_DIR = ROOT / "results"
QUICK_RESULTS_DIR = QUICK_DIR / "results"


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays to plain JSON; NaN/inf become None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a results file")


def results_path(notebook: str, *, quick: bool, directory: str | Path | None = None) -> Path:
    """The results file of ``notebook`` (e.g. ``"01_siamfc"``) for the given mode."""
    if not notebook or "/" in notebook or notebook.endswith(".json"):
        raise ValueError(f"notebook must be a plain name such as '01_siamfc', got {notebook!r}")
    folder = Path(directory) if directory is not None else (QUICK_RESULTS_DIR if quick else FULL_RESULTS_DIR)
    return folder / f"{notebook}.json"


def save_results(notebook: str, data: Mapping[str, Any], *, quick: bool, directory: str | Path | None = None) -> Path:
    """Atomically write ``data`` (plus a ``_meta`` block: mode, time, versions) as the notebook's results."""
    record = dict(to_jsonable(dict(data)))
    record["_meta"] = {
        "notebook": notebook,
        "quick": bool(quick),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    path = results_path(notebook, quick=quick, directory=directory)
    atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=False) + "\n").encode())
    return path


def load_results(notebook: str, *, quick: bool = False, directory: str | Path | None = None) -> dict | None:
    """The stored results of ``notebook``, or None when that notebook has not written any yet."""
    path = results_path(notebook, quick=quick, directory=directory)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"results file {path} is not valid JSON (line {exc.lineno}): {exc.msg}") from exc


def run_cache_dir(quick: bool) -> Path:
    """The results cache of the notebooks' tracking runs: ``runs/cache`` (full) or ``runs/quick/cache`` (quick).

    Pass it as ``out_dir`` to :func:`mtl.eval.run_ope`: each tracker's per-sequence boxes are stored
    there with the tracker's fingerprint and reused while it matches (notebooks 01 and 02 share runs).
    """
    return QUICK_DIR / "cache" if quick else ROOT / "runs" / "cache"

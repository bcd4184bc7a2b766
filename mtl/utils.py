"""Small shared utilities: paths, device choice, seeding, atomic file writes, progress bars."""
from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

#: Repository root (the folder holding ``mtl/``, ``notebooks/``, ``results/``, ``data/``).
ROOT = Path(__file__).resolve().parent.parent

#: Where quick-mode runs write results and checkpoints; ignored by git, so a quick run can never
#: overwrite what a full run committed.
QUICK_DIR = ROOT / "runs" / "quick"


def quick_mode(default: bool = False) -> bool:
    """Whether quick (smoke-test) mode is asked for through the environment (``MTL_QUICK=1``).

    The test command sets ``MTL_QUICK=1`` so that nbval runs every notebook in quick mode;
    papermill sets ``QUICK`` directly through the notebook's ``parameters`` cell.
    """
    value = os.environ.get("MTL_QUICK")
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"MTL_QUICK must be 0 or 1, got {value!r}")


def try_gpu(device: str | torch.device = "auto") -> torch.device:
    """The device to compute on: ``"auto"`` picks CUDA when present, else the CPU (as d2l's ``try_gpu``).

    An explicit ``"cuda"`` on a machine without a GPU raises instead of silently using the CPU.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"DEVICE={device!r} was asked for, but no CUDA GPU is available; use 'auto' or 'cpu'")
    return dev


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); return a NumPy Generator seeded the same way."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


#: Seconds between redraws of a progress bar whose output is not a terminal (CI logs, pipes).
PROGRESS_LOG_INTERVAL = 30.0


def _is_tty(stream) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable=None, *, total=None, desc=None, leave=False, **kw):
    """A ``tqdm.auto`` progress bar that also reads well where the output is not a terminal.

    In a terminal it is the usual text bar and in Jupyter (with ipywidgets) the usual widget. When
    the stream it writes to (``file=``, default ``sys.stderr``) is not a terminal — CI logs, a pipe,
    papermill or a kernel without widgets — it redraws at most every :data:`PROGRESS_LOG_INTERVAL`
    seconds in plain ASCII, so a long loop writes a handful of lines instead of thousands. The
    environment variable ``MTL_PROGRESS=0`` turns every bar off. Other keywords go to tqdm (and
    win over these defaults). Use ``set_postfix(..., refresh=False)`` inside loops: a refresh
    redraws at once, whatever the interval.
    """
    from tqdm.auto import tqdm

    if os.environ.get("MTL_PROGRESS", "").strip().lower() in ("0", "false", "no", "off"):
        kw["disable"] = True
    elif tqdm.__module__ != "tqdm.notebook" and not _is_tty(kw.get("file") or sys.stderr):
        kw.setdefault("mininterval", PROGRESS_LOG_INTERVAL)
        kw.setdefault("maxinterval", max(kw["mininterval"], PROGRESS_LOG_INTERVAL))
        kw.setdefault("ascii", True)
        kw.setdefault("dynamic_ncols", False)
    return tqdm(iterable, total=total, desc=desc, leave=leave, **kw)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk, then renamed over the
    target (``os.replace`` is atomic on POSIX and Windows). If anything fails midway, the previous
    file is untouched and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path

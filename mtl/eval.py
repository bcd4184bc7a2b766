"""The evaluation protocol: tracker registry, runners, results on disk, reports.

Everything follows the got10k toolkit (https://github.com/got-10k/toolkit) so numbers are
comparable with published ones and the toolkit can read our result files:

* **Layout** (``got10k/experiments/otb.py``, ``_record``): ``<root>/<benchmark>/<tracker>/<seq>.txt``
  holds one comma-separated ``x,y,w,h`` line per frame (``%.3f``; line 1 is the given box) and
  ``<root>/<benchmark>/<tracker>/times/<seq>_time.txt`` one time in seconds per frame. A stochastic
  tracker run with several seeds writes one tracker folder per seed, ``<tracker>-seed<k>``.
* **One-pass evaluation** (:func:`run_ope`): ``init`` on frame 0 with the ground truth, ``update`` on
  every later frame, each call timed with ``time.perf_counter``.
* **Supervised (VOT reset) protocol** (:func:`run_supervised`, ``got10k/experiments/vot.py``,
  ``run_supervised`` / ``report``): a frame whose IoU with the ground truth is ``<= 0`` is a failure;
  the tracker is re-initialised with the ground truth ``skip = 5`` frames later (failure at frame f,
  frames f+1..f+4 skipped, ``init`` at f+5). Records use the VOT codes: ``1`` init, ``2`` failure,
  ``0`` skipped, else a box. Accuracy = mean IoU over box frames, excluding the ``burnin = 10``
  frames that start at each (re)initialisation; robustness = number of failures (averaged over
  repetitions); we also report failures per 100 frames. The toolkit clips polygons to the image; we
  clip boxes to the image exactly the same way (:func:`clip_boxes_to_image`). Frames where the
  target is not visible are neither checked for failure nor counted in accuracy (the VOT datasets
  have no such frames). **EAO is not computed**: it needs the VOT sequence-length distribution and
  the short-term reset-free segments of the VOT toolkit, which we do not reproduce honestly.
* **Tracker failures**: a tracker that raises, returns NaN/inf or a box with ``w <= 0`` or ``h <= 0``
  on a frame gets that frame recorded as ``0,0,0,0`` (parseable by the toolkit, IoU 0 there; our
  metrics also give it an infinite centre error), a ``warnings.warn`` naming tracker, sequence and
  frame, and a line ``frame,message`` in ``<tracker>/failures/<seq>_failures.txt``; the run goes on.

Registry: :func:`register_tracker` (decorator) adds a factory under a name; :func:`make_tracker`
builds one, importing ``mtl.baselines``, ``mtl.<name>``, ``mtl.<prefix>`` (the part before the first
``_``) and the modules in :data:`TRACKER_MODULES` on demand until the name is known.
"""
from __future__ import annotations

import functools
import importlib
import math
import re
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from mtl import budget, metrics
from mtl.tracker import as_rgb_array

# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

#: name -> factory (a Tracker subclass or any callable returning a tracker).
TRACKERS: dict[str, Callable] = {}
#: Modules that register trackers; imported on demand by :func:`make_tracker`. Append to extend.
TRACKER_MODULES: list[str] = ["mtl.baselines", "mtl.updaters", "mtl.cfnet", "mtl.gradnet", "mtl.lu", "mtl.dimp", "mtl.roam.tracker"]


def register_tracker(name: str):
    """Decorator: ``@register_tracker("siamfc")`` on a Tracker class or factory function."""

    def deco(factory):
        TRACKERS[name] = factory
        return factory

    return deco


def _try_import(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:  # the module exists but one of its own imports is missing: say so
            raise


def make_tracker(name: str, **kwargs):
    """Build the tracker registered as ``name`` with keyword arguments ``kwargs``.

    The result's ``name`` attribute is set to ``name`` when the factory left the default.
    Raises ``KeyError`` listing the known names when ``name`` is unknown.
    """
    if name not in TRACKERS:
        candidates = ["mtl.baselines", f"mtl.{name}", f"mtl.{name.split('_')[0]}", *TRACKER_MODULES]
        for module in dict.fromkeys(candidates):
            if re.fullmatch(r"[A-Za-z_][\w.]*", module):
                _try_import(module)
            if name in TRACKERS:
                break
    if name not in TRACKERS:
        raise KeyError(f"unknown tracker {name!r}; registered: {sorted(TRACKERS)}")
    tracker = TRACKERS[name](**kwargs)
    if getattr(tracker, "name", None) in (None, "tracker"):
        tracker.name = name
    return tracker


def registered_trackers() -> list[str]:
    """Every registered tracker name, after importing the modules of :data:`TRACKER_MODULES`."""
    for module in TRACKER_MODULES:
        _try_import(module)
    return sorted(TRACKERS)


# ---------------------------------------------------------------------------------------------
# Results on disk
# ---------------------------------------------------------------------------------------------


def benchmark_name(spec: str, quick: bool = False) -> str:
    """Folder name of a dataset spec: ``"synth:test"`` -> ``"synth-test"`` (``"synth-test-quick"`` with
    ``quick``, a different split), ``"otb:/data/OTB100"`` -> ``"otb-OTB100"``."""
    kind, _, rest = spec.partition(":")
    if kind == "synth":
        tail = (rest or "test") + ("-quick" if quick else "")
    else:
        tail = Path(rest.rstrip("/\\")).name or "data"
    return re.sub(r"[^\w.-]+", "_", f"{kind}-{tail}")


def results_file(root, benchmark: str, tracker_name: str, seq_name: str) -> Path:
    """``<root>/<benchmark>/<tracker>/<seq>.txt`` (the toolkit's layout)."""
    return Path(root) / benchmark / tracker_name / f"{seq_name}.txt"


def times_file(root, benchmark: str, tracker_name: str, seq_name: str) -> Path:
    """``<root>/<benchmark>/<tracker>/times/<seq>_time.txt``."""
    return Path(root) / benchmark / tracker_name / "times" / f"{seq_name}_time.txt"


def failures_file(root, benchmark: str, tracker_name: str, seq_name: str) -> Path:
    """``<root>/<benchmark>/<tracker>/failures/<seq>_failures.txt`` (ours: ``frame,message`` per failed frame)."""
    return Path(root) / benchmark / tracker_name / "failures" / f"{seq_name}_failures.txt"


def updates_file(root, benchmark: str, tracker_name: str, seq_name: str) -> Path:
    """``<root>/<benchmark>/<tracker>/updates/<seq>_updates.json``: the updater's log of that run (ours)."""
    return Path(root) / benchmark / tracker_name / "updates" / f"{seq_name}_updates.json"


def box_line(box) -> str:
    """One line of a results file: ``x,y,w,h`` with 3 decimals (the toolkit's ``%.3f``)."""
    return ",".join(f"{v:.3f}" for v in box) + "\n"


def time_line(seconds: float) -> str:
    """One line of a times file: seconds with 8 decimals."""
    return f"{seconds:.8f}\n"


def failure_line(frame: int, message: str) -> str:
    """One line of a failures file: ``frame,message`` (message on one line)."""
    return f"{frame},{str(message).replace(chr(10), ' ')}\n"


def write_results(root, benchmark: str, tracker_name: str, seq_name: str, boxes, times, failures=(),
                  updates: list | None = None) -> Path:
    """Write one sequence's boxes ``(N, 4)``, times ``(N,)``, failed frames ``[(frame, message)]`` and,
    for a tracker that logs its updates (``Tracker.update_log``), that log (a JSON list of dicts).

    Files are written atomically (a reader sees the old or the new file, never half).
    """
    import json

    from mtl.utils import atomic_write_bytes

    boxes = np.asarray(boxes, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(times) != len(boxes):
        raise ValueError(f"boxes must be (N, 4) and times (N,), got {boxes.shape} and {times.shape}")
    path = results_file(root, benchmark, tracker_name, seq_name)
    atomic_write_bytes(path, "".join(box_line(b) for b in boxes).encode())
    atomic_write_bytes(times_file(root, benchmark, tracker_name, seq_name), "".join(time_line(t) for t in times).encode())
    ffile = failures_file(root, benchmark, tracker_name, seq_name)
    if failures:
        lines = "".join(failure_line(f, m) for f, m in failures)
        atomic_write_bytes(ffile, lines.encode())
    elif ffile.exists():
        ffile.unlink()
    ufile = updates_file(root, benchmark, tracker_name, seq_name)
    if updates is not None:
        from mtl.results import to_jsonable

        atomic_write_bytes(ufile, json.dumps(to_jsonable(list(updates))).encode())
    elif ufile.exists():
        ufile.unlink()
    return path


def _parse_numbers(path: Path, widths: tuple[int, ...]) -> list[list[float]]:
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                raise ValueError(f"{path}:{lineno}: empty line")
            parts = [p for p in re.split(r"[,\s]+", text) if p]
            if len(parts) not in widths:
                raise ValueError(f"{path}:{lineno}: expected {' or '.join(map(str, widths))} numbers, "
                                 f"got {len(parts)}: {text!r}")
            try:
                rows.append([float(p) for p in parts])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not a number in {text!r}") from None
    return rows


def read_boxes(path, n_frames: int | None = None) -> np.ndarray:
    """Read a results file (``x,y,w,h`` per line, comma/space/tab separated) -> ``(N, 4)`` float64.

    Raises ``FileNotFoundError``, or ``ValueError`` naming the file and line for a malformed line, and
    naming the file for a wrong line count when ``n_frames`` is given.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    boxes = np.asarray(_parse_numbers(path, (4,)), dtype=np.float64).reshape(-1, 4)
    if n_frames is not None and len(boxes) != n_frames:
        raise ValueError(f"{path}: has {len(boxes)} lines, the sequence has {n_frames} frames")
    return boxes


def read_times(path, n_frames: int | None = None) -> np.ndarray:
    """Read a times file (one float per line) -> ``(N,)`` float64; same errors as :func:`read_boxes`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"times file not found: {path}")
    times = np.asarray(_parse_numbers(path, (1,)), dtype=np.float64).reshape(-1)
    if n_frames is not None and len(times) != n_frames:
        raise ValueError(f"{path}: has {len(times)} lines, the sequence has {n_frames} frames")
    return times


def _cached(root, benchmark, tracker_name, seq, with_updates: bool = False) -> dict | None:
    """The stored run of ``seq`` if its files exist and are complete, else None.

    ``with_updates``: the tracker logs its updates, so a run stored without that log (or with a damaged
    one) counts as missing and is run again; the log comes back as ``run["updates"]``.
    """
    rfile = results_file(root, benchmark, tracker_name, seq.name)
    tfile = times_file(root, benchmark, tracker_name, seq.name)
    if not (rfile.is_file() and tfile.is_file()):
        return None
    try:
        boxes, times = read_boxes(rfile, len(seq)), read_times(tfile, len(seq))
    except ValueError:
        return None  # incomplete or damaged: run again
    ffile = failures_file(root, benchmark, tracker_name, seq.name)
    failed = [int(line.split(",", 1)[0]) for line in ffile.read_text().splitlines() if line] if ffile.is_file() else []
    run = {"boxes": boxes, "times": times, "failed_frames": failed}
    if with_updates:
        import json

        try:
            run["updates"] = json.loads(updates_file(root, benchmark, tracker_name, seq.name).read_text())
        except (OSError, ValueError):
            return None
    return run


# ---------------------------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------------------------

_FAILED_BOX = np.zeros(4)


def _progress(iterable, total, desc, progress):
    if not progress:
        return iterable
    from mtl.utils import progress_bar  # quiet where stderr is not a terminal; MTL_PROGRESS=0 turns it off

    return progress_bar(iterable, total=total, desc=desc, leave=False)


def _checked_box(box) -> tuple[np.ndarray | None, str]:
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        return None, f"box is not numeric: {e}"
    if b.shape != (4,):
        return None, f"box must be 4 numbers, got shape {np.shape(box)}"
    if not np.all(np.isfinite(b)):
        return None, f"box is not finite: {b.tolist()}"
    if b[2] <= 0 or b[3] <= 0:
        return None, f"box has non-positive size: {b.tolist()}"
    return b, ""


def _tracker_call(tracker, seq, frame_index, call, *args):
    """Run ``call(*args)``; return ``(box or None, message)`` and warn on failure.

    ``seq``: the sequence (or just its name, a string) named in the warning.
    """
    try:
        out = call(*args)
    except Exception as e:  # a bad frame must not end the whole run
        box, msg = None, f"{type(e).__name__}: {e}"
    else:
        box, msg = (None, "") if getattr(call, "__name__", "") == "init" else _checked_box(out)
    if msg:
        warnings.warn(f"tracker {getattr(tracker, 'name', '?')!r} failed on sequence {getattr(seq, 'name', seq)!r} "
                      f"frame {frame_index}: {msg}", RuntimeWarning, stacklevel=3)
    return box, msg


class OnePass:
    """One tracker's one-pass evaluation, a frame at a time: the per-frame rule of every tracking loop.

    ``step(image)`` on frame 0 calls ``init`` with ``first_box`` and returns that box; on each later
    frame it calls ``update``. Only those calls are timed (``time.perf_counter``). A failing frame
    (see the module docstring) gives ``0,0,0,0`` with a warning naming ``seq_name``; a failed ``init``
    fails every later frame. :func:`track_frames` loops it over a sequence's frames;
    :func:`mtl.video.track_video` steps several trackers through one decoded video in lockstep.
    """

    def __init__(self, tracker, first_box, seq_name: str = "?"):
        self.tracker, self.seq_name = tracker, seq_name
        self.first = np.asarray(first_box, dtype=np.float64).reshape(4).copy()
        self.frame = 0  # index of the next frame
        self.alive = True
        self.messages: list[tuple[int, str]] = []  # (frame, message) of each failed frame

    def step(self, image) -> tuple[np.ndarray, float]:
        """Track one frame (RGB ``HxWx3`` uint8): ``(box (4,) float64, seconds spent in init/update)``."""
        f, self.frame = self.frame, self.frame + 1
        start = time.perf_counter()
        if f == 0:
            _, msg = _tracker_call(self.tracker, self.seq_name, 0, self.tracker.init, image, self.first.copy())
            box = self.first
            if msg:
                self.alive = False
                self.messages.append((0, "init failed, every later frame failed: " + msg))
        elif self.alive:
            box, msg = _tracker_call(self.tracker, self.seq_name, f, self.tracker.update, image)
            if msg:
                self.messages.append((f, msg))
                box = _FAILED_BOX
        else:
            box = _FAILED_BOX
            self.messages.append((f, "tracker not initialised"))
        seconds = time.perf_counter() - start
        return np.array(box, dtype=np.float64), seconds

    @property
    def failed_frames(self) -> list[int]:
        """Frames after the first whose box is ``0,0,0,0`` because the tracker failed."""
        dead = set(range(1, self.frame)) if not self.alive else set()
        return sorted({f for f, _ in self.messages if f > 0} | dead)


def track_frames(tracker, frames: Iterable, first_box, seq_name: str = "?",
                 on_frame: Callable | None = None) -> dict:
    """Run ``tracker`` once through ``frames`` (one-pass evaluation, :class:`OnePass` on each frame).

    ``frames``: any iterable of images (RGB ``HxWx3`` uint8 arrays or PIL images), read lazily, one
    per frame; ``first_box``: the given ``x, y, w, h`` on frame 0. The reading of a frame is never
    timed. ``on_frame(f, image, box)``, when given, is called after each frame outside the timing
    (e.g. to display it).
    Returns ``{"boxes": (N, 4) float64, "times": (N,) float64 seconds, "failed_frames": [int],
    "messages": [(frame, str)]}``; frame 0 holds the given box. Used by :func:`track_sequence` and by
    :meth:`mtl.tracker.Tracker.track` (the got10k toolkit's entry point).
    """
    run = OnePass(tracker, first_box, seq_name)
    boxes, times = [], []
    for f, frame in enumerate(frames):
        image = as_rgb_array(frame)
        box, seconds = run.step(image)
        boxes.append(box)
        times.append(seconds)
        if on_frame is not None:
            on_frame(f, image, box)
    n = len(boxes)
    return {"boxes": np.array(boxes, dtype=np.float64).reshape(n, 4), "times": np.array(times, dtype=np.float64),
            "failed_frames": run.failed_frames, "messages": run.messages}


def track_sequence(tracker, seq) -> dict:
    """Run ``tracker`` once through ``seq`` (one-pass evaluation, :func:`track_frames` on its frames).

    Calls the oracle-only hook ``tracker.set_sequence(seq)`` when the tracker defines it. Returns
    ``{"boxes": (N, 4) float64, "times": (N,) float64 seconds, "failed_frames": [int],
    "messages": [(frame, str)]}``; frame 0 holds the given box. A tracker whose ``update_log()`` is a
    list (one with a logging updater) adds ``"updates"``: the entries it logged during this sequence.
    """
    gt = np.asarray(seq.boxes, dtype=np.float64)
    if hasattr(tracker, "set_sequence"):
        tracker.set_sequence(seq)
    log_before = _update_log(tracker)
    n_before = len(log_before) if log_before is not None else 0
    run = track_frames(tracker, (seq.frame(f) for f in range(len(seq))), gt[0], seq_name=seq.name)
    log = _update_log(tracker)
    if log is not None:
        # an updater may keep one log across sequences or start a new one in init: keep this sequence's part
        run["updates"] = list(log[n_before:] if log is log_before else log)
    return run


def _update_log(tracker) -> list | None:
    return tracker.update_log() if hasattr(tracker, "update_log") else None


#: Beside each tracker's results: the fingerprint of the tracker (and seed) that made them.
FINGERPRINT_FILE = "fingerprint.json"


def run_fingerprint(tracker, seed: int | None = None) -> dict:
    """The results-cache key of a run: ``{"tracker": tracker.fingerprint(), "seed": seed}``.

    A tracker without a ``fingerprint`` method (one not derived from :class:`mtl.tracker.Tracker`) is
    keyed by its class alone.
    """
    fp = tracker.fingerprint() if hasattr(tracker, "fingerprint") else {
        "class": f"{type(tracker).__module__}.{type(tracker).__qualname__}"}
    from mtl.results import to_jsonable

    return to_jsonable({"tracker": fp, "seed": seed})


def _differences(old, new, prefix="") -> list[str]:
    """Dotted keys where two fingerprints differ (for the message that explains a re-run)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new))
                for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".") or "(all)"]


def _claim_results_folder(root, benchmark: str, tracker_name: str, fingerprint: dict, overwrite: bool) -> bool:
    """Make ``<root>/<benchmark>/<tracker_name>/`` hold results of ``fingerprint``; True when stored runs may be reused.

    When the stored fingerprint differs (another option, checkpoint, seed ...) or is missing while
    results exist, the stored result, time and failure files are deleted with a warning saying what
    changed, and the new fingerprint is written before any result.
    """
    import json

    from mtl.utils import atomic_write_bytes

    folder = Path(root) / benchmark / tracker_name
    fp_file = folder / FINGERPRINT_FILE
    stored = None
    if fp_file.is_file():
        try:
            stored = json.loads(fp_file.read_text())
        except (OSError, ValueError):
            stored = None
    if stored == fingerprint and not overwrite:
        return True
    stale = [p for pattern in ("*.txt", "times/*_time.txt", "failures/*_failures.txt", "updates/*_updates.json")
             for p in folder.glob(pattern)]
    if stale and not overwrite:
        why = ("no fingerprint is stored beside them" if stored is None
               else "they were made with different " + ", ".join(_differences(stored, fingerprint)[:6]))
        warnings.warn(f"not reusing the {len(stale)} stored result files in {folder}: {why}; running "
                      f"{tracker_name!r} again", RuntimeWarning, stacklevel=3)
    for p in stale:
        p.unlink()
    atomic_write_bytes(fp_file, json.dumps(fingerprint, indent=1, sort_keys=True).encode())
    return not overwrite


def run_ope(tracker, sequences: Iterable, out_dir=None, benchmark: str = "synth-test",
            overwrite: bool = False, seed: int | None = 0, progress: bool = True,
            tracker_name: str | None = None, processes: int = 1, updates: bool = False) -> dict:
    """One-pass evaluation of ``tracker`` on ``sequences``; returns ``{seq_name: run}`` (see :func:`track_sequence`).

    ``out_dir``: results root; each sequence is written to the toolkit layout. A complete stored run
    is reused only when the folder's ``fingerprint.json`` equals :func:`run_fingerprint` of this
    tracker and seed (its class, options, weights, updater); otherwise the folder's stored runs are
    discarded with a warning naming what changed. ``overwrite``: never reuse. ``seed``:
    ``mtl.seed_everything(seed)`` before each sequence, so a run does not depend on sequence order
    (None: leave the generators alone). ``tracker_name``: the results folder (default ``tracker.name``).
    ``processes``: track the sequences in this many forked worker processes with one torch thread
    each (each gets its own copy of the tracker; on 2 CPU cores two single-threaded trackers finish
    sooner than one two-threaded one). Boxes are the same as with ``processes=1``; the per-frame
    times are those of a one-thread tracker, so compare speeds only within one setting. Where a
    CUDA GPU is present the sequences are tracked in this process instead, with a warning: PyTorch's
    autograd cannot run in a process forked after it started its device threads, so an updater that
    differentiates (SGD, GradNet) would fail on every frame there.
    ``updates``: every run must carry the updater's log (``run["updates"]``, stored beside the boxes
    whenever the tracker logs): a stored run without one is tracked again. Raises ``ValueError``
    for a tracker that keeps no log.
    """
    sequences = list(sequences)
    name = tracker_name or tracker.name
    if updates and _update_log(tracker) is None:
        raise ValueError(f"updates=True, but tracker {name!r} keeps no update log (its update_log() is None)")
    reuse = (out_dir is not None
             and _claim_results_folder(out_dir, benchmark, name, run_fingerprint(tracker, seed), overwrite))
    runs = {}
    todo = []
    for seq in sequences:
        cached = _cached(out_dir, benchmark, name, seq, updates) if reuse else None
        if cached is not None:
            runs[seq.name] = cached
        else:
            todo.append(seq)

    def store(seq, run):
        if out_dir is not None:
            write_results(out_dir, benchmark, name, seq.name, run["boxes"], run["times"], run["messages"],
                          run.get("updates"))
            run["boxes"] = read_boxes(results_file(out_dir, benchmark, name, seq.name))  # what is on disk
        runs[seq.name] = run

    if processes > 1 and len(todo) > 1 and not _fork_is_safe():
        warnings.warn(f"processes={processes} ignored: a CUDA GPU is present, and autograd fails in processes "
                      f"forked after it started (https://github.com/pytorch/pytorch/wiki/Autograd-and-Fork); "
                      f"tracking {name!r} in this process", RuntimeWarning, stacklevel=2)
        processes = 1
    if processes > 1 and len(todo) > 1:
        for i, run in _progress(_tracked_in_workers(tracker, todo, seed, processes), len(todo), f"OPE {name}", progress):
            store(todo[i], run)
    else:
        for seq in _progress(todo, len(todo), f"OPE {name}", progress):
            store(seq, _track_seeded(tracker, seq, seed))
    if out_dir is not None:  # what these runs cost when made, for a fresh-clone budget (mtl.budget)
        tracked = {seq.name for seq in todo}
        budget.record({"kind": "tracking", "benchmark": benchmark, "run": name, "processes": processes,
                       "sequences": {seq.name: {"seconds": float(np.sum(runs[seq.name]["times"])),
                                                "frames": len(seq), "served": seq.name not in tracked}
                                     for seq in sequences}})
    return {seq.name: runs[seq.name] for seq in sequences}


def _track_seeded(tracker, seq, seed: int | None, track=None, **kwargs) -> dict:
    """``track(tracker, seq, **kwargs)`` (default :func:`track_sequence`) after ``mtl.seed_everything(seed)``
    (None: the generators as they are)."""
    from mtl.utils import seed_everything

    if seed is not None:
        seed_everything(seed)
    return (track or track_sequence)(tracker, seq, **kwargs)


_WORKER_JOB: tuple | None = None  # (tracker, sequences, seed, track), inherited by forked workers


def _fork_is_safe() -> bool:
    """Whether forked workers may use autograd: not once CUDA is available (the engine starts device threads)."""
    import torch

    return not torch.cuda.is_available()


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _worker_track(index: int):
    tracker, sequences, seed, track = _WORKER_JOB
    return index, track(tracker, sequences[index], seed)


def _tracked_in_workers(tracker, sequences: list, seed, processes: int, track=None):
    """Yield ``(index, result)`` for ``sequences`` tracked in ``processes`` forked single-thread workers;
    ``track(tracker, seq, seed)`` makes one result (default :func:`_track_seeded`, one-pass)."""
    import multiprocessing

    global _WORKER_JOB
    _WORKER_JOB = (tracker, sequences, seed, track or _track_seeded)
    try:
        with multiprocessing.get_context("fork").Pool(processes, initializer=_worker_init) as pool:
            yield from pool.imap_unordered(_worker_track, range(len(sequences)))
    finally:
        _WORKER_JOB = None


def run_key(tracker, seed: int | None = 0) -> str:
    """The results cache's name for ``tracker``'s runs with ``seed``: the hash of :func:`run_fingerprint`."""
    from mtl.cache import config_key

    return config_key(run_fingerprint(tracker, seed))


def run_cached(tracker, sequences, cache_dir, benchmark: str, seed: int | None = 0, progress: bool = True,
               processes: int = 1, updates: bool = False) -> dict:
    """:func:`run_ope` into ``<cache_dir>/<benchmark>/run-<key>/`` with ``key`` = :func:`run_key`.

    The notebooks' results cache: two trackers built alike (same class, options, weights, updater,
    seed) share one stored run whatever they are called, so notebook 02 reuses notebook 01's SiamFC
    run; anything that changes the boxes gives a new key and a new run. Returns ``{seq_name: run}``;
    ``updates=True`` adds each run's update log (see :func:`run_ope`).
    """
    return run_ope(tracker, sequences, out_dir=cache_dir, benchmark=benchmark, seed=seed, progress=progress,
                   tracker_name=f"run-{run_key(tracker, seed)}", processes=processes, updates=updates)


def evaluate_cached(trackers: dict, sequences, cache_dir, benchmark: str, seed: int | None = 0, processes: int = 1,
                    progress: bool = True) -> dict:
    """``{name: summarize(run_cached(tracker, ...))}`` for ``trackers`` ``{name: tracker}``: the notebooks' accuracy runs.

    Each run is stored in (and reused from) the results cache, keyed by the tracker's fingerprint
    (:func:`run_cached`). ``processes`` > 1 spreads sequences over single-thread workers: same boxes,
    less wall time; their per-frame times are a one-thread tracker's, so read no speed from these runs
    (:func:`run_side_by_side` measures speed).
    """
    sequences = list(sequences)
    return {name: summarize(run_cached(t, sequences, cache_dir, benchmark, seed=seed, progress=progress,
                                       processes=processes), sequences)
            for name, t in trackers.items()}


class NotebookRuns:
    """A notebook's accuracy runs through the results cache (:func:`run_cached`, summarised as
    :func:`evaluate_cached` does), with what they cost.

    ``evaluate(trackers, sequences, benchmark, seed)`` returns ``{name: summary}``; ``benchmark`` gets
    ``suffix`` appended (e.g. ``-first30`` for cut quick-mode sequences). Two ledgers per benchmark:

    * ``seconds``: the wall time of this execution (small when the runs were stored);
    * ``made_seconds``: the tracking time the runs took when they were made -- their stored per-frame times
      divided by ``processes`` -- so the cost of a run with nothing stored can be read from any execution.
      Each stored run of a sequence counts once, however often the notebook asks for it. Frame rendering
      is not in the stored times.
    """

    def __init__(self, cache_dir, *, processes: int = 1, suffix: str = "", progress: bool = True):
        self.cache_dir, self.processes, self.suffix, self.progress = cache_dir, int(processes), suffix, progress
        self.seconds: dict[str, float] = {}
        self.made_seconds: dict[str, float] = {}
        self._counted: set = set()

    def evaluate(self, trackers: dict, sequences, benchmark: str, seed: int | None = 0) -> dict:
        sequences = list(sequences)
        start = time.perf_counter()
        out = {}
        for name, tracker in trackers.items():
            runs = run_cached(tracker, sequences, self.cache_dir, benchmark + self.suffix, seed=seed,
                              progress=self.progress, processes=self.processes)
            key = run_key(tracker, seed)
            for seq in sequences:
                if (benchmark, key, seq.name) not in self._counted:
                    self._counted.add((benchmark, key, seq.name))
                    self.made_seconds[benchmark] = (self.made_seconds.get(benchmark, 0.0)
                                                    + float(np.sum(runs[seq.name]["times"])) / self.processes)
            out[name] = summarize(runs, sequences)
        self.seconds[benchmark] = self.seconds.get(benchmark, 0.0) + time.perf_counter() - start
        return out


def run_side_by_side(trackers: dict, sequences, progress: bool = True) -> dict:
    """One-pass evaluation of several trackers, interleaved sequence by sequence, in this process.

    ``trackers``: ``{name: tracker}``. For each sequence every tracker runs once before the next
    sequence starts, so a change in machine load affects all trackers alike and their speed *ratios*
    are measured under the same conditions (frames are rendered inside each run, but only the
    trackers' ``init``/``update`` calls are timed, see :func:`mtl.eval.track_sequence`).
    Returns ``{name: {seq_name: run}}`` as :func:`mtl.eval.run_ope`, ready for :func:`mtl.eval.summarize`.
    """
    sequences = list(sequences)
    runs = {name: {} for name in trackers}
    start = time.perf_counter()
    for seq in _progress(sequences, len(sequences), f"{len(trackers)} trackers side by side", progress):
        for name, tracker in trackers.items():
            runs[name].update(run_ope(tracker, [seq], progress=False, tracker_name=name))
    budget.record({"kind": "speed", "seconds": time.perf_counter() - start, "trackers": len(trackers),
                   "frames": sum(len(seq) for seq in sequences)})
    return runs


def seed_run_name(tracker_name: str, seed: int) -> str:
    """Folder name of one seed of a stochastic tracker: ``<tracker>-seed<k>``."""
    return f"{tracker_name}-seed{seed}"


def run_ope_seeds(make: Callable[[], object], sequences, seeds=(0, 1, 2), out_dir=None,
                  benchmark: str = "synth-test", overwrite: bool = False, progress: bool = True,
                  tracker_name: str | None = None) -> dict:
    """Run a stochastic tracker once per seed; ``make()`` builds a fresh tracker.

    Returns ``{run_name: {seq_name: run}}`` with ``run_name = <tracker>-seed<k>``; :func:`summarize_seeds`
    (or :func:`evaluate` on ``out_dir``) turns them into mean ± std.
    """
    sequences = list(sequences)
    out = {}
    for s in seeds:
        tracker = make()
        run_name = seed_run_name(tracker_name or tracker.name, s)
        out[run_name] = run_ope(tracker, sequences, out_dir=out_dir, benchmark=benchmark, overwrite=overwrite,
                                seed=s, progress=progress, tracker_name=run_name)
    return out


def clip_boxes_to_image(boxes, image_size) -> np.ndarray:
    """Intersect boxes ``(N, 4)`` with the image ``(W, H)`` (as the VOT toolkit clips polygons) -> ``(N, 4)``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    W, H = float(image_size[0]), float(image_size[1])
    x1 = np.clip(b[:, 0], 0, W)
    y1 = np.clip(b[:, 1], 0, H)
    x2 = np.clip(b[:, 0] + b[:, 2], 0, W)
    y2 = np.clip(b[:, 1] + b[:, 3], 0, H)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def _clipped_iou(box, gt_box, image_size) -> float:
    p = clip_boxes_to_image(box, image_size)
    g = clip_boxes_to_image(gt_box, image_size)
    # a box wholly outside the image clips to zero size, which metrics.iou treats as invalid -> 0
    return float(metrics.iou(p, g)[0])


class SequenceFrom:
    """The view of a sequence from frame ``start`` on (frame ``i`` of the view is frame ``start + i``): what the
    reset protocol hands an oracle tracker (``set_sequence``) when it re-initialises it at frame ``start``, so the
    oracle reads the ground truth of the frames it is actually given. Per-frame arrays (``boxes``, ``visible``,
    ``cover``) are sliced; every other attribute is the sequence's."""

    _PER_FRAME = ("boxes", "visible", "cover")

    def __init__(self, seq, start: int):
        if not 0 <= start < len(seq):
            raise ValueError(f"start {start} is outside sequence {getattr(seq, 'name', '?')!r} ({len(seq)} frames)")
        self._seq, self._start = seq, int(start)

    def __len__(self) -> int:
        return len(self._seq) - self._start

    def frame(self, i: int):
        return self._seq.frame(self._start + i)

    def __getattr__(self, name):
        value = getattr(self._seq, name)
        return value[self._start:] if name in self._PER_FRAME and value is not None else value


def track_supervised(tracker, seq, skip: int = 5) -> dict:
    """The VOT reset protocol on one sequence (see the module docstring). A tracker with the oracle hook
    ``set_sequence`` gets the sequence before frame 0 and, at each re-init at frame f, :class:`SequenceFrom`
    ``(seq, f)``.

    Returns ``{"records": list of [1] / [0] / [2] / [x, y, w, h], "ious": (N,) float64 (NaN where no box),
    "times": (N,) float64 (NaN for skipped frames), "failures": int, "inits": [int]}``.
    """
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    n = len(seq)
    gt = np.asarray(seq.boxes, dtype=np.float64)
    visible = np.asarray(getattr(seq, "visible", np.ones(n, bool)), dtype=bool)
    records, ious, times, inits = [], np.full(n, np.nan), np.full(n, np.nan), []
    failures = 0
    failed, next_start = False, -1
    for f in range(n):
        image = as_rgb_array(seq.frame(f))
        size = (image.shape[1], image.shape[0])
        restart = f == 0 or (failed and f == next_start)
        if restart and hasattr(tracker, "set_sequence"):
            # an oracle counts frames from its init: a re-init at frame f starts the sequence there
            tracker.set_sequence(seq if f == 0 else SequenceFrom(seq, f))
        start = time.perf_counter()
        if restart:
            _, msg = _tracker_call(tracker, seq, f, tracker.init, image, gt[f].copy())
            failed = False
            records.append([1])
            inits.append(f)
            if msg:  # an init that raises counts as an immediate failure
                failed, next_start, failures = True, f + skip, failures + 1
                records[-1] = [2]
        elif failed:
            records.append([0])
            start = math.nan
        else:
            box, msg = _tracker_call(tracker, seq, f, tracker.update, image)
            overlap = 0.0 if box is None else _clipped_iou(box, gt[f], size)
            if visible[f] and overlap <= 0.0:
                failed, next_start, failures = True, f + skip, failures + 1
                records.append([2])
            else:
                records.append(list(box) if box is not None else [0.0, 0.0, 0.0, 0.0])
                ious[f] = overlap if visible[f] else np.nan
        times[f] = time.perf_counter() - start
    return {"records": records, "ious": ious, "times": times, "failures": failures, "inits": inits}


def supervised_accuracy_ious(result: dict, burnin: int = 10) -> np.ndarray:
    """IoUs ``(N,)`` of one supervised run with the ``burnin`` frames from each (re)init set to NaN."""
    ious = np.asarray(result["ious"], dtype=np.float64).copy()
    for f in result["inits"]:
        ious[f:f + burnin] = np.nan
    return ious


def records_text(records) -> str:
    """VOT-toolkit record lines: ``1`` init, ``0`` skipped, ``2`` failure, else ``x,y,w,h`` (``%.3f``)."""
    return "".join((f"{int(r[0])}" if len(r) == 1 else ",".join(f"{v:.3f}" for v in r)) + "\n" for r in records)


def supervised_from_records(records, times, seq) -> dict:
    """The result of :func:`track_supervised` rebuilt from its records and times (as read back from disk): the
    IoUs of the box frames (clipped to the image; NaN where the target is invisible), failures and inits."""
    n = len(seq)
    if len(records) != n or len(times) != n:
        raise ValueError(f"sequence {seq.name!r}: {len(records)} records and {len(times)} times for {n} frames")
    gt = np.asarray(seq.boxes, dtype=np.float64)
    visible = np.asarray(getattr(seq, "visible", np.ones(n, bool)), dtype=bool)
    size = _image_size(seq)
    ious = np.full(n, np.nan)
    for f, r in enumerate(records):
        if len(r) == 4 and visible[f]:
            ious[f] = _clipped_iou(r, gt[f], size)
    return {"records": [list(r) for r in records], "ious": ious, "times": np.asarray(times, dtype=np.float64),
            "failures": sum(len(r) == 1 and int(r[0]) == 2 for r in records),
            "inits": [f for f, r in enumerate(records) if len(r) == 1 and int(r[0]) == 1]}


def _read_records(path: Path, n_frames: int) -> list[list[float]]:
    rows = _parse_numbers(path, (1, 4))
    if len(rows) != n_frames:
        raise ValueError(f"{path}: has {len(rows)} lines, the sequence has {n_frames} frames")
    return rows


def _stored_supervised(root, benchmark: str, tracker_name: str, seq) -> dict | None:
    """The stored reset-protocol result of ``seq`` (records and times complete), else None (run it again)."""
    rfile, tfile = results_file(root, benchmark, tracker_name, seq.name), times_file(root, benchmark, tracker_name, seq.name)
    if not (rfile.is_file() and tfile.is_file()):
        return None
    try:
        return supervised_from_records(_read_records(rfile, len(seq)), read_times(tfile, len(seq)), seq)
    except ValueError:
        return None  # incomplete or damaged


def run_supervised(tracker, sequences, skip: int = 5, burnin: int = 10, seed: int | None = 0,
                   progress: bool = True, out_dir=None, benchmark: str = "synth-test",
                   tracker_name: str | None = None, cache_dir=None, processes: int = 1) -> dict:
    """VOT-style supervised runs on ``sequences``; returns a report dict.

    Report: ``accuracy`` (mean IoU over non-burn-in box frames of all sequences), ``robustness``
    (total failures), ``failures_per_100_frames``, ``fps`` (pooled ``mean(1/t)``), ``n_frames`` and
    ``per_sequence`` ``{name: {"accuracy", "failures", "records", ...}}`` (``accuracy`` NaN where every box
    frame is in a burn-in). With ``out_dir`` the records are written in the VOT toolkit's format (``1``/``0``/``2``
    or ``x,y,w,h`` per line) to ``<out_dir>/<benchmark>-reset/<tracker>/<seq>.txt``, their times to
    ``times/<seq>_time.txt`` beside them (NaN for skipped frames).

    ``cache_dir``: the results cache of :func:`run_cached` for this protocol: records go to
    ``<cache_dir>/<benchmark>-reset/run-<key>/`` with ``key`` the hash of the tracker's fingerprint, seed and
    ``skip``, and complete stored records are reused (a changed option or checkpoint runs again). Every
    result, fresh or stored, is computed from the records as written (boxes to 3 decimals), so the two agree.
    ``processes`` > 1: sequences tracked in forked single-thread workers (as :func:`run_ope`; speeds from such
    runs are a one-thread tracker's).
    """
    from mtl.utils import atomic_write_bytes

    sequences = list(sequences)
    if cache_dir is not None and out_dir is not None:
        raise ValueError("give out_dir or cache_dir, not both")
    name = tracker_name or tracker.name
    bench = f"{benchmark}-reset"
    if cache_dir is not None:
        from mtl.cache import config_key

        fingerprint = {**run_fingerprint(tracker, seed), "protocol": {"reset": True, "skip": skip}}
        out_dir, name = cache_dir, f"run-{config_key(fingerprint)}"
        reuse = _claim_results_folder(cache_dir, bench, name, fingerprint, overwrite=False)
    else:
        reuse = False
    results, todo = {}, []
    for seq in sequences:
        stored = _stored_supervised(out_dir, bench, name, seq) if reuse else None
        if stored is not None:
            results[seq.name] = stored
        else:
            todo.append(seq)

    def store(seq, res):
        if out_dir is not None:
            rfile = results_file(out_dir, bench, name, seq.name)
            atomic_write_bytes(rfile, records_text(res["records"]).encode())
            atomic_write_bytes(times_file(out_dir, bench, name, seq.name), "".join(time_line(t) for t in res["times"]).encode())
            res = supervised_from_records(_read_records(rfile, len(seq)), res["times"], seq)  # what is on disk
        results[seq.name] = res

    track = functools.partial(_track_seeded, track=track_supervised, skip=skip)
    if processes > 1 and len(todo) > 1 and _fork_is_safe():
        for i, res in _progress(_tracked_in_workers(tracker, todo, seed, processes, track), len(todo), f"reset {name}", progress):
            store(todo[i], res)
    else:
        for seq in _progress(todo, len(todo), f"reset {name}", progress):
            store(seq, track(tracker, seq, seed))
    return supervised_report(name, {s.name: results[s.name] for s in sequences}, skip, burnin)


def supervised_report(name: str, results: dict, skip: int, burnin: int) -> dict:
    """The report of :func:`run_supervised` from per-sequence results ``{seq_name: track_supervised(...)}``."""
    per_seq, all_ious, all_times, total_failures, total_frames = {}, [], [], 0, 0
    for seq_name, res in results.items():
        acc_ious = supervised_accuracy_ious(res, burnin)
        valid = acc_ious[~np.isnan(acc_ious)]
        per_seq[seq_name] = {**res, "accuracy": float(np.mean(valid)) if valid.size else float("nan")}
        all_ious.append(valid)
        all_times.append(np.asarray(res["times"], dtype=np.float64))
        total_failures += res["failures"]
        total_frames += len(res["records"])
    pooled = np.concatenate(all_ious) if all_ious else np.zeros(0)
    return {
        "tracker": name, "skip": skip, "burnin": burnin,
        "accuracy": float(np.mean(pooled)) if pooled.size else float("nan"),
        "robustness": int(total_failures),
        "failures_per_100_frames": 100.0 * total_failures / max(total_frames, 1),
        "fps": metrics.pooled_fps([t[np.isfinite(t)] for t in all_times]),
        "n_frames": int(total_frames), "per_sequence": per_seq,
    }


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

SCALAR_KEYS = ("auc", "precision", "norm_precision", "success_rate", "ao", "sr50", "sr75", "fps", "throughput_fps")


def _image_size(seq) -> tuple[int, int]:
    size = getattr(seq, "image_size", None)
    if size is not None:
        return int(size[0]), int(size[1])
    h, w = np.asarray(seq.frame(0)).shape[:2]
    return int(w), int(h)


def summarize(runs: dict, sequences) -> dict:
    """Metrics of one tracker's runs ``{seq_name: {"boxes": (N, 4), "times": (N,)}}`` on ``sequences``.

    OTB part (``auc``, ``precision``, ``norm_precision``, ``success_rate``, the curves, ``fps``): per
    sequence, then averaged over sequences. ``throughput_fps``: all frames over all time
    (:func:`mtl.metrics.throughput_fps`), the speed to compare trackers whose cost is uneven over
    frames. GOT-10k part (``ao``, ``sr50``, ``sr75``): frame-weighted over all sequences, frame 0 and invisible frames excluded, boxes clipped to the image.
    ``per_attribute``: ``{attr: {"auc", "n_seqs"}}`` (mean success curve of the sequences with the
    attribute, as OTB's attribute plots). Returns a dict of Python floats / lists.
    """
    sequences = list(sequences)
    missing = [s.name for s in sequences if s.name not in runs]
    if missing:
        raise KeyError(f"no results for sequences {missing[:5]}{'...' if len(missing) > 5 else ''}")
    per_seq, succ, prec, nprec, speeds, got_ious = {}, [], [], [], [], []
    for seq in sequences:
        run = runs[seq.name]
        gt = np.asarray(seq.boxes, dtype=np.float64)
        boxes = np.asarray(run["boxes"], dtype=np.float64)
        if boxes.shape != gt.shape:
            raise ValueError(f"sequence {seq.name!r}: results have shape {boxes.shape}, ground truth {gt.shape}")
        m = metrics.otb_sequence_metrics(boxes, gt)
        visible = getattr(seq, "visible", None)
        gi = metrics.got10k_frame_ious(boxes, gt, visible=visible, bound=_image_size(seq))
        ao, sr = metrics.ao_sr(gi)
        fps = metrics.sequence_fps(run.get("times", []))
        succ.append(m["success_curve"]), prec.append(m["precision_curve"]), nprec.append(m["norm_precision_curve"])
        speeds.append(fps)
        got_ious.append(gi)
        per_seq[seq.name] = {"auc": m["auc"], "precision": m["precision"], "norm_precision": m["norm_precision"],
                             "ao": ao, "sr50": sr[0.5], "sr75": sr[0.75], "fps": fps,
                             "n_frames": len(gt), "failed_frames": len(run.get("failed_frames", []))}
    succ_curve, prec_curve, nprec_curve = (np.mean(np.stack(c), axis=0) for c in (succ, prec, nprec))
    ao, sr = metrics.ao_sr(np.concatenate(got_ious))
    per_attr = {}
    attrs = sorted({a for s in sequences for a in getattr(s, "attributes", ())})
    for a in attrs:
        idx = [i for i, s in enumerate(sequences) if a in s.attributes]
        per_attr[a] = {"auc": metrics.auc(np.mean(np.stack([succ[i] for i in idx]), axis=0)), "n_seqs": len(idx)}
    return {
        "auc": metrics.auc(succ_curve), "precision": float(prec_curve[metrics.PRECISION_INDEX]),
        "norm_precision": float(nprec_curve[metrics.NORM_PRECISION_INDEX]),
        "success_rate": float(succ_curve[len(metrics.IOU_THRESHOLDS) // 2]),
        "ao": ao, "sr50": sr[0.5], "sr75": sr[0.75], "fps": metrics.otb_fps(speeds),
        "throughput_fps": metrics.throughput_fps([runs[s.name].get("times", []) for s in sequences]),
        "n_seqs": len(sequences), "n_frames": int(sum(len(s) for s in sequences)),
        "failed_frames": int(sum(v["failed_frames"] for v in per_seq.values())),
        "success_curve": succ_curve.tolist(), "precision_curve": prec_curve.tolist(),
        "norm_precision_curve": nprec_curve.tolist(),
        "per_attribute": per_attr, "per_sequence": per_seq,
    }


#: The per-sequence scores of :func:`summarize` that :func:`summarize_seeds` averages over seeds.
PER_SEQUENCE_SCORES = ("auc", "precision", "norm_precision", "ao", "sr50", "sr75", "fps")


def box_errors(runs: dict, sequences) -> dict:
    """Where a tracker's boxes go wrong, over the visible frames after the first of ``sequences``: the share of
    frames whose centre is within half a target size (``sqrt(wh)`` of the ground truth) and the median and mean
    ``|log|`` of the ratio of box size to target size (``sqrt(wh)`` each). Pooled over frames: a diagnostic, not a
    paired comparison."""
    centre, size = [], []
    for seq in sequences:
        b = np.asarray(runs[seq.name]["boxes"], np.float64)
        g = np.asarray(seq.boxes, np.float64)
        keep = np.array(seq.visible, dtype=bool)
        keep[0] = False
        gs = np.sqrt(g[:, 2] * g[:, 3])
        d = (b[:, :2] + b[:, 2:] / 2) - (g[:, :2] + g[:, 2:] / 2)
        centre.append((np.hypot(d[:, 0], d[:, 1]) / gs)[keep])
        size.append(np.abs(np.log(np.sqrt(np.clip(b[:, 2] * b[:, 3], 1e-12, None)) / gs))[keep])
    centre, size = np.concatenate(centre), np.concatenate(size)
    return {"centre_within_half": float(np.mean(centre < 0.5)), "median_log_size": float(np.median(size)),
            "mean_log_size": float(np.mean(size)), "n_frames": int(len(centre))}


def summarize_seeds(summaries: list[dict]) -> dict:
    """Mean ± std (population, ``ddof=0``) over per-seed summaries of :func:`summarize`.

    Returns the first summary's structure with scalars and curves replaced by means, plus
    ``std`` ``{key: float}``, ``per_attribute`` means and ``n_seeds``. ``per_sequence`` holds each
    sequence's scores averaged over the seeds, so :func:`mtl.stats.compare_summaries` of two such
    summaries pairs seed-averaged per-sequence AUCs.
    """
    if not summaries:
        raise ValueError("summarize_seeds needs at least one summary")
    out = dict(summaries[0])
    out["std"] = {}
    for k in SCALAR_KEYS:
        vals = np.array([s[k] for s in summaries], dtype=np.float64)
        out[k], out["std"][k] = float(np.mean(vals)), float(np.std(vals))
    for k in ("success_curve", "precision_curve", "norm_precision_curve"):
        out[k] = np.mean([s[k] for s in summaries], axis=0).tolist()
    out["per_attribute"] = {a: {"auc": float(np.mean([s["per_attribute"][a]["auc"] for s in summaries])),
                                "auc_std": float(np.std([s["per_attribute"][a]["auc"] for s in summaries])),
                                "n_seqs": v["n_seqs"]}
                            for a, v in summaries[0]["per_attribute"].items()}
    out["per_sequence"] = {name: {**row, **{k: float(np.mean([s["per_sequence"][name][k] for s in summaries]))
                                            for k in PER_SEQUENCE_SCORES}}
                           for name, row in summaries[0]["per_sequence"].items()}
    out["n_seeds"] = len(summaries)
    return out


def _group_seed_runs(names: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for n in sorted(names):
        m = re.fullmatch(r"(.+)-seed(\d+)", n)
        groups.setdefault(m.group(1) if m else n, []).append(n)
    return groups


def evaluate(results_dir, sequences, benchmark: str | None = None, tracker_names=None) -> dict:
    """Evaluate every tracker folder under ``<results_dir>/<benchmark>/`` on ``sequences``.

    ``benchmark`` None: ``results_dir`` has exactly one benchmark folder (else pass it). Folders
    ``<t>-seed<k>`` are grouped into one row with mean ± std. Every sequence must have a complete
    results file (errors name the file and line). Returns ``{"benchmark", "trackers": {name:
    summary}}`` with summaries as :func:`summarize` / :func:`summarize_seeds` (``n_seeds`` always set).
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder not found: {root}")
    if benchmark is None:
        benches = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.endswith("-reset"))
        if len(benches) != 1:
            raise ValueError(f"{root} holds benchmarks {benches}; pass benchmark=")
        benchmark = benches[0]
    bench_dir = root / benchmark
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"benchmark folder not found: {bench_dir}")
    sequences = list(sequences)
    names = sorted(p.name for p in bench_dir.iterdir() if p.is_dir())
    groups = _group_seed_runs(names)
    if tracker_names is not None:
        unknown = [t for t in tracker_names if t not in groups]
        if unknown:
            raise KeyError(f"no results for trackers {unknown} in {bench_dir}; found {sorted(groups)}")
        groups = {t: groups[t] for t in tracker_names}
    report = {"benchmark": benchmark, "trackers": {}}
    for tname, folders in groups.items():
        summaries = []
        for folder in folders:
            runs = {}
            for seq in sequences:
                runs[seq.name] = {
                    "boxes": read_boxes(results_file(root, benchmark, folder, seq.name), len(seq)),
                    "times": (read_times(tf, len(seq)) if (tf := times_file(root, benchmark, folder, seq.name)).is_file()
                              else np.zeros(len(seq))),
                }
                ff = failures_file(root, benchmark, folder, seq.name)
                if ff.is_file():
                    runs[seq.name]["failed_frames"] = [line for line in ff.read_text().splitlines() if line]
            summaries.append(summarize(runs, sequences))
        summary = summarize_seeds(summaries) if len(summaries) > 1 else {**summaries[0], "n_seeds": 1}
        report["trackers"][tname] = summary
    return report


def format_table(report: dict) -> str:
    """A text table of a report from :func:`evaluate` (``±`` std where several seeds ran)."""
    cols = [("AUC", "auc"), ("Prec@20", "precision"), ("NPrec@.2", "norm_precision"),
            ("AO", "ao"), ("SR.50", "sr50"), ("SR.75", "sr75"), ("FPS", "fps")]
    trackers = report["trackers"]
    width = max([len("tracker")] + [len(t) for t in trackers]) + 2
    head = "tracker".ljust(width) + "".join(c.rjust(17) for c, _ in cols) + "   seeds  failed"
    lines = [f"benchmark: {report.get('benchmark', '?')}", head, "-" * len(head)]
    for t, s in sorted(trackers.items(), key=lambda kv: -kv[1]["auc"]):
        cells = []
        for _, k in cols:
            v = s[k]
            fmt = "{:.1f}" if k == "fps" else "{:.3f}"
            cell = fmt.format(v)
            if s.get("n_seeds", 1) > 1:
                cell += "±" + fmt.format(s["std"][k])
            cells.append(cell.rjust(17))
        lines.append(t.ljust(width) + "".join(cells) + f"{s.get('n_seeds', 1):8d}{s.get('failed_frames', 0):8d}")
    return "\n".join(lines)


def summary_scalars(summary: dict) -> dict:
    """The scalar metrics of a summary (for JSON results tables): ``{key: float}`` plus ``*_std`` when seeded."""
    out = {k: float(summary[k]) for k in SCALAR_KEYS}
    for k, v in summary.get("std", {}).items():
        out[f"{k}_std"] = float(v)
    out["n_seeds"] = int(summary.get("n_seeds", 1))
    return out

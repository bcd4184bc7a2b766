"""What a notebook's full run would cost from a fresh clone, measured from one run with warm caches.

BRIEF §7 budgets a full notebook run at 40 minutes on 2 CPU cores with stored checkpoints. A session
rarely has an empty results cache, so the wall time of a run says little: most tracking runs are
served from ``runs/cache`` and most backbone features from ``data/cache/features``. Both caches keep
what their entries cost when they were made (per-frame tracking times; a feature file's build
``seconds``), so one warm run can add those costs back.

With the environment variable ``MTL_RUN_LEDGER`` set to a file, :func:`mtl.eval.run_ope` (results
cache runs), :func:`mtl.eval.run_side_by_side` (speed runs) and :func:`mtl.cache.cached_tensors`
(feature files) append one JSON line per call; the notebook's kernel inherits the variable.
:func:`summarize_ledger` turns the lines into the fresh-clone estimate. ``benchmarks/notebook_budget.py``
runs a notebook that way.

What the estimate leaves out, and says so: frame rendering of served runs (not in the stored
per-frame times; passed in as ``render_seconds_per_frame``) and process start-up of workers.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

LEDGER_ENV = "MTL_RUN_LEDGER"


def record(entry: dict) -> None:
    """Append ``entry`` as one JSON line to the ledger named by ``$MTL_RUN_LEDGER`` (nothing when unset).

    Give the variable an absolute path: notebooks run with ``notebooks/`` as their working directory.
    """
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def read_ledger(path) -> list[dict]:
    """The ledger's entries, in order. Raises ``ValueError`` naming the file and line of a bad one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ledger not found: {path}")
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not a JSON line ({exc.msg})") from exc
        if not isinstance(entry, dict) or entry.get("kind") not in ("tracking", "speed", "features"):
            raise ValueError(f"{path}:{n}: an entry needs kind tracking, speed or features")
        entries.append(entry)
    return entries


def summarize_ledger(entries: list[dict], wall_seconds: float, render_seconds_per_frame: float = 0.0) -> dict:
    """The fresh-clone estimate of one run from its ledger ``entries`` and its ``wall_seconds``.

    * tracking: each (benchmark, run folder, sequence) counts once, however often it was asked for;
      ``made`` = its stored per-frame times summed / the worker processes of the call that asked for it
      (a stored run does not keep how many workers made it: ``benchmarks/stored_time_drift.py`` checks
      the stored times against today's);
      ``served`` = the part this run read from the cache instead of tracking (``served_frames`` frames).
    * features: each file counts once; ``served`` = the build seconds of those loaded instead of built.
    * speed: wall seconds of the side-by-side runs (never cached, so already in ``wall_seconds``).

    ``fresh_clone_seconds`` = ``wall_seconds`` + served tracking + served features
    + ``served_frames`` × ``render_seconds_per_frame`` / processes. Reading a served run back costs
    little but is in ``wall_seconds`` too, so the estimate errs high by that much.
    """
    seen, features = {}, {}
    speed = 0.0
    for e in entries:
        if e["kind"] == "tracking":
            procs = max(1, int(e.get("processes", 1)))
            for seq, s in e["sequences"].items():
                k = (e["benchmark"], e["run"], seq)
                if k not in seen:  # the first request decides: a run tracked earlier in this execution is not served
                    seen[k] = {"made": float(s["seconds"]) / procs, "served": bool(s["served"]),
                               "frames": int(s["frames"]), "procs": procs}
        elif e["kind"] == "features":
            features.setdefault(e["file"], {"seconds": float(e.get("seconds") or 0.0), "served": bool(e["loaded"])})
        else:
            speed += float(e["seconds"])
    made = sum(v["made"] for v in seen.values())
    served = sum(v["made"] for v in seen.values() if v["served"])
    served_frames = sum(v["frames"] for v in seen.values() if v["served"])
    render = sum(v["frames"] / v["procs"] for v in seen.values() if v["served"]) * render_seconds_per_frame
    feat_served = sum(v["seconds"] for v in features.values() if v["served"])
    by_benchmark: dict[str, float] = {}
    for (bench, _, _), v in seen.items():
        by_benchmark[bench] = by_benchmark.get(bench, 0.0) + v["made"]
    return {
        "wall_seconds": float(wall_seconds),
        "tracking": {"made_seconds": made, "served_seconds": served, "served_frames": served_frames,
                     "runs": len({k[:2] for k in seen}), "sequence_runs": len(seen), "by_benchmark": by_benchmark},
        "features": {"built_seconds": sum(v["seconds"] for v in features.values() if not v["served"]),
                     "served_seconds": feat_served, "files": len(features)},
        "speed_seconds": speed,
        "render_seconds_estimate": render,
        "fresh_clone_seconds": float(wall_seconds) + served + feat_served + render,
    }


def machine_fps(threads: int = 2, repeats: int = 50) -> float:
    """This machine's speed in one number: SiamFC's backbone forward passes per second on one frame's
    3 search crops (255 px, ``channels_last``, no gradients) with ``threads`` torch threads; the fastest of
    ``repeats`` timed passes after one warm-up (other load on the machine only ever slows a pass down, so
    the fastest is the steadiest figure; on a noisy day it still read 52-60 where medians read 33-48).

    Budgets in minutes only compare between machines next to this number. Notebook 01's speed cell times
    the same forward pass on real crops as a mean over a tracking run (88.6 frames/s in its committed run;
    55 on a slower day when this function read 52-60). The weights are random (speed does not depend
    on them), so no checkpoint is needed.
    """
    import time

    import numpy as np
    import torch

    from mtl.ops import image_to_tensor
    from mtl.siamfc import SiamFCConfig, SiamFCNet

    if int(threads) < 1 or int(repeats) < 1:
        raise ValueError(f"threads and repeats must be >= 1, got {threads} and {repeats}")
    config = SiamFCConfig()
    size = config.instance_size
    crops = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    batch = image_to_tensor(crops, channels_last=True)
    backbone = SiamFCNet(width=config.width).backbone.eval()
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        times = []
        with torch.no_grad():
            backbone(batch)
            for _ in range(int(repeats)):
                start = time.perf_counter()
                backbone(batch)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(old)
    return 1.0 / float(np.min(times))

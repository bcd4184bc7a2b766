"""How far the per-frame times stored in the results cache are from what the engine takes today.

``benchmarks/notebook_budget.py`` prices a served run at its stored per-frame times. Those were
measured when the run was made, under whatever engine and machine load there was then, so a
fresh-clone estimate is only as good as they are. This script re-tracks a fixed sample of test
sequences (every ``--every``-th) for registered trackers whose stored full-test run exists (same
fingerprint, so same boxes), in 2 single-thread workers as the notebooks do, into a scratch folder,
and prints stored / now per tracker. The boxes must equal the stored ones; the script says if not.

    python benchmarks/stored_time_drift.py --out runs/drift siamfc siamfc_ema cfnet cfnet_ema

Do not run another torch job beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from mtl import eval as ev
    from mtl.data import load_dataset
    from mtl.results import run_cache_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trackers", nargs="+")
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    seqs = load_dataset("synth:test")[::args.every]
    cache = run_cache_dir(quick=False)
    rows = []
    for name in args.trackers:
        tracker = ev.make_tracker(name)
        folder = cache / "synth-test" / f"run-{ev.run_key(tracker, 0)}"
        if not folder.is_dir():
            print(f"{name}: no stored test run ({folder.name}); skipped", flush=True)
            continue
        stored = {s.name: ev.read_times(ev.times_file(cache, "synth-test", folder.name, s.name)) for s in seqs}
        stored_boxes = {s.name: ev.read_boxes(ev.results_file(cache, "synth-test", folder.name, s.name)) for s in seqs}
        with tempfile.TemporaryDirectory() as tmp:
            now = ev.run_ope(tracker, seqs, out_dir=tmp, benchmark="synth-test", seed=0, progress=False,
                             tracker_name="now", processes=args.processes)
            boxes_equal = all(np.array_equal(ev.read_boxes(ev.results_file(tmp, "synth-test", "now", s.name)),
                                             stored_boxes[s.name]) for s in seqs)
        t_stored = sum(float(np.sum(stored[s.name])) for s in seqs)
        t_now = sum(float(np.sum(now[s.name]["times"])) for s in seqs)
        frames = sum(len(s) for s in seqs)
        row = {"tracker": name, "run": folder.name, "sequences": len(seqs), "frames": frames,
               "stored_ms_per_frame": 1000 * t_stored / frames, "now_ms_per_frame": 1000 * t_now / frames,
               "stored_over_now": t_stored / t_now, "boxes_equal": boxes_equal}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

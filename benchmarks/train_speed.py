"""Time full-mode training (seconds per epoch) of SiamFC, GradNet and Learning to Update on one device.

Each model is trained from scratch into a temporary folder with its full-mode config, cut to
``--epochs`` epochs (the learning-rate schedule is shortened with it, so the weights are not the
stored ones; only the time per epoch is of interest). The stored checkpoints' manifest gives the
full schedule's length and the seconds it took where it was made, so the output also estimates the
full training time on this device and its ratio to the stored one.

    python benchmarks/train_speed.py --device cuda --epochs 2 --out runs/train_speed.json

A benchmark, not a test: timings vary between machines and runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import mtl
from mtl.cache import checkpoint_path

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "MANIFEST.json"


def stored_seconds(name: str, config) -> float | None:
    """Training seconds of the committed full checkpoint of ``name``/``config`` (None when absent)."""
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    entry = manifest.get(checkpoint_path(name, config).name)
    return None if entry is None else entry.get("train_seconds")


def time_one(name: str, epochs: int, device: torch.device, folder: Path) -> dict:
    from mtl.gradnet import GradNetConfig, train_gradnet
    from mtl.gradnet.train import train_key as gradnet_key
    from mtl.lu import LUConfig, train_lu
    from mtl.lu.train import train_key as lu_key
    from mtl.siamfc import SiamFCConfig, train_siamfc

    siamfc_config = SiamFCConfig()
    if name == "siamfc":
        full = siamfc_config
        key = full.train_key()
        run = lambda cfg: train_siamfc(cfg, device=device, retrain=True, progress=False, directory=folder)  # noqa: E731
    elif name == "gradnet":
        full = GradNetConfig()
        key = gradnet_key(full, siamfc_config)
        run = lambda cfg: train_gradnet(cfg, siamfc_config, device=device, retrain=True, progress=False,  # noqa: E731
                                        directory=folder, keep_snapshots=False)
    elif name == "lu":
        full = LUConfig()
        key = lu_key(full, siamfc_config)
        run = lambda cfg: train_lu(cfg, siamfc_config, device=device, retrain=True, progress=False,  # noqa: E731
                                   directory=folder)
    else:
        raise ValueError(f"unknown model {name!r}; choose siamfc, gradnet or lu")
    start = time.perf_counter()
    _, meta = run(dataclasses.replace(full, epochs=epochs))
    wall = time.perf_counter() - start
    per_epoch = sum(meta["history"]["seconds"]) / max(len(meta["history"]["seconds"]), 1)
    stored = stored_seconds(name, key)
    out = {"model": name, "epochs_timed": epochs, "full_epochs": full.epochs, "seconds_per_epoch": per_epoch,
           "wall_seconds": wall, "feature_seconds": meta.get("feature_seconds"),
           "estimated_full_seconds": per_epoch * full.epochs, "stored_full_seconds": stored}
    if stored:
        out["stored_over_this"] = stored / (per_epoch * full.epochs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per model")
    parser.add_argument("--models", default="siamfc,gradnet,lu", help="comma-separated: siamfc, gradnet, lu")
    parser.add_argument("--out", type=Path, default=None, help="JSON file, rewritten after each model")
    args = parser.parse_args(argv)
    device = mtl.try_gpu(args.device)
    report = {"device": str(device), "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            result = time_one(name.strip(), args.epochs, device, Path(tmp))
            report["results"].append(result)
            print(json.dumps(result), flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

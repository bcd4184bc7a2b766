"""Load-or-train checkpoints keyed by the config that made them (UvA-notebook style).

A checkpoint file is ``<name>-<key>.pt`` where ``key`` hashes the config, so a model trained with
other settings is never picked up by mistake. Files are written atomically and read with
``torch.load(weights_only=True)``: arbitrary pickled objects are refused. A file that is corrupt or
whose stored config does not match is reported with a warning naming the file and retrained, never
silently used.

Full-mode checkpoints live in ``data/checkpoints/`` (small ones are committed, listed in
``data/checkpoints/MANIFEST.json``); quick-mode ones under ``runs/quick/checkpoints/`` (ignored by git),
so a quick run can never overwrite a committed checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from mtl import budget
from mtl.utils import QUICK_DIR, ROOT, atomic_write_bytes

FULL_CHECKPOINT_DIR = ROOT / "data" / "checkpoints"
QUICK_CHECKPOINT_DIR = QUICK_DIR / "checkpoints"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used (corrupt, unsafe or made by another config)."""


def _plain(config: Any) -> Any:
    """Turn a config (dataclass, mapping, tuple, Path, ...) into JSON-able plain data."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return {str(k): _plain(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_plain(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    if isinstance(config, (str, int, float, bool)) or config is None:
        return config
    raise TypeError(f"config values must be plain data (str/int/float/bool/list/dict), got {type(config).__name__}")


def config_json(config: Any) -> str:
    """Canonical JSON of a config: sorted keys, so equal configs give equal strings."""
    return json.dumps(_plain(config), sort_keys=True, separators=(",", ":"))


def config_key(config: Any) -> str:
    """Short hash (12 hex digits) of the canonical config."""
    return hashlib.sha256(config_json(config).encode()).hexdigest()[:12]


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (16 hex digits) of a model's weights: names, shapes, dtypes and values, in key order.

    Two networks with equal weights hash equally wherever they live (CPU/GPU, any memory layout), so
    stored results can be keyed by the weights that made them, not by a file name.
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def checkpoint_path(name: str, config: Any, *, quick: bool = False, directory: str | Path | None = None) -> Path:
    """Where the checkpoint of model ``name`` trained with ``config`` lives."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"checkpoint name must be a plain file stem, got {name!r}")
    folder = Path(directory) if directory is not None else (QUICK_CHECKPOINT_DIR if quick else FULL_CHECKPOINT_DIR)
    return folder / f"{name}-{config_key(config)}.pt"


def default_checkpoint(name: str, config: Any, quick_config: Any, hint: str) -> Path:
    """The stored full-mode checkpoint of ``name``/``config``, or in quick mode (``MTL_QUICK=1``) the quick one of
    ``quick_config`` when no full one exists.

    Raises ``FileNotFoundError`` naming the file and ``hint`` (how to make it).
    """
    from mtl.utils import quick_mode

    path = checkpoint_path(name, config, quick=False)
    if not path.is_file() and quick_mode():
        quick_path = checkpoint_path(name, quick_config, quick=True)
        path = quick_path if quick_path.is_file() else path
    if not path.is_file():
        raise FileNotFoundError(f"no {name} checkpoint at {path}; {hint}")
    return path


def load_into(net: nn.Module, name: str, checkpoint: str | Path | None, config: Any, quick_config: Any, hint: str,
              device="cpu") -> nn.Module:
    """``net`` in eval mode on ``device`` with the weights of ``checkpoint``: ``"default"`` -> the stored one of
    ``name``/``config`` (:func:`default_checkpoint`), a path -> that file, ``None`` -> left as initialised."""
    if checkpoint is not None:
        if checkpoint == "default":
            checkpoint = default_checkpoint(name, config, quick_config, hint)
        state, _ = load_checkpoint(checkpoint)
        net.load_state_dict(state)
    return net.to(device).eval()


def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor], config: Any,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Atomically write ``state_dict`` with its config and JSON-able ``meta`` (e.g. training history)."""
    payload = {
        "format": FORMAT_VERSION,
        "config": config_json(config),
        "meta": json.dumps(_plain(dict(meta or {}))),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, config: Any | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint safely; return ``(state_dict, meta)``.

    Raises :class:`CheckpointError` naming the file when it cannot be unpickled with
    ``weights_only=True`` (corrupt, truncated, or holding arbitrary objects) or when ``config`` is given
    and differs from the config stored in the file. Raises ``FileNotFoundError`` when it is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip errors, EOFError, ...: all mean "do not use"
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or "state_dict" not in payload:
        raise CheckpointError(f"checkpoint {path} is not an mtl checkpoint (format {FORMAT_VERSION})")
    if config is not None and payload.get("config") != config_json(config):
        raise CheckpointError(f"checkpoint {path} was made by another config:\n  stored:  {payload.get('config')}\n"
                              f"  wanted:  {config_json(config)}")
    state = payload["state_dict"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds non-tensor entries in its state_dict")
    return state, json.loads(payload.get("meta", "{}"))


def _update_manifest(path: Path, name: str, config: Any, meta: Mapping[str, Any]) -> None:
    """Record a full-mode checkpoint in MANIFEST.json beside it (file, config, sha256, size, time)."""
    manifest_path = path.parent / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[path.name] = {
        "name": name,
        "key": config_key(config),
        "config": _plain(config),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
        "made_by": meta.get("made_by", ""),
        "train_seconds": meta.get("train_seconds"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_bytes(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def load_or_train(name: str, config: Any, model: nn.Module, train_fn: Callable[[nn.Module], Mapping[str, Any]], *,
                  retrain: bool = False, quick: bool = False, directory: str | Path | None = None,
                  made_by: str = "") -> dict:
    """Load the checkpoint of ``name``/``config`` into ``model``, or train it and store it.

    ``train_fn(model)`` trains ``model`` in place and returns a JSON-able meta dict (the training
    history, say); the checkpoint stores it so a notebook can plot its curves after loading.
    Returns the meta dict, with ``"loaded"`` True when the weights came from disk and
    ``"checkpoint"`` the file path.
    """
    path = checkpoint_path(name, config, quick=quick, directory=directory)
    if not retrain and path.exists():
        try:
            state, meta = load_checkpoint(path, config)
            model.load_state_dict(state)
            return {**meta, "loaded": True, "checkpoint": str(path)}
        except (CheckpointError, RuntimeError) as exc:  # RuntimeError: state_dict keys/shapes differ
            warnings.warn(f"{exc}\n-> retraining and replacing {path}", RuntimeWarning, stacklevel=2)
    start = time.perf_counter()
    meta = dict(train_fn(model) or {})
    meta.setdefault("train_seconds", time.perf_counter() - start)
    meta.setdefault("made_by", made_by)
    save_checkpoint(path, model.state_dict(), config, meta)
    if directory is None and not quick:
        _update_manifest(path, name, config, meta)
    return {**_plain(meta), "loaded": False, "checkpoint": str(path)}


#: Where full-mode feature caches live (ignored by git: rebuilt when missing); quick mode uses runs/quick/features.
FEATURE_DIR = ROOT / "data" / "cache" / "features"


def cached_tensors(prefix: str, key: Any, build: Callable[[], dict], *, quick: bool = False) -> dict:
    """``build()`` (a dict of tensors and plain values), stored under ``<folder>/<prefix>-<config_key(key)>.pt``.

    The file is reused only when the key stored in it equals ``repr(key)`` (so a hash collision or a
    changed recipe rebuilds it); a damaged file is rebuilt too. Full mode: :data:`FEATURE_DIR`; quick
    mode: ``runs/quick/features/``. Returns the dict plus ``key``, ``path`` and ``loaded``.
    """
    folder = QUICK_DIR / "features" if quick else FEATURE_DIR
    path = folder / f"{prefix}-{config_key(key)}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, weights_only=True)
            if stored.get("key") == repr(key):
                _record_features(path, stored, loaded=True)
                return {**stored, "path": str(path), "loaded": True}
        except (OSError, RuntimeError, EOFError):
            pass  # damaged: rebuild
    start = time.perf_counter()
    data = build()
    _record_features(path, {"seconds": time.perf_counter() - start, **data}, loaded=False)
    buffer = io.BytesIO()
    torch.save({**data, "key": repr(key)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return {**data, "key": repr(key), "path": str(path), "loaded": False}


def _record_features(path: Path, data: Mapping, loaded: bool) -> None:
    """One ledger line (:mod:`mtl.budget`) for a feature file: its build seconds, and whether it was loaded."""
    seconds = data.get("seconds")
    budget.record({"kind": "features", "file": path.name, "loaded": loaded,
                   "seconds": float(seconds) if isinstance(seconds, (int, float)) else None})

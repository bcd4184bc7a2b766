"""The ONE training loop of the project (SiamFC, GradNet, LU, DiMP and ROAM all train through :func:`fit`).

What differs between methods lives in a ``step_fn(model, batch)`` that returns the loss (a scalar
tensor) or a dict with a ``"loss"`` entry plus other scalars worth logging (accuracy, loss terms).
``fit`` does the rest: device transfer, train/eval modes, optimiser and scheduler steps, optional
gradient clipping, tqdm progress, and a per-epoch history of every logged scalar on the training
and the validation set.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor inside ``batch`` (nested tuples/lists/dicts) to ``device``; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def _as_scalars(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Split a step's output into (loss tensor, {name: float}) for logging."""
    if isinstance(out, Mapping):
        if "loss" not in out:
            raise ValueError(f"step_fn returned a dict without a 'loss' entry (keys: {sorted(out)})")
        loss = out["loss"]
        logs = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}
    else:
        loss = out
        logs = {"loss": float(loss.detach())}
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError(f"step_fn must return a scalar loss tensor, got {type(loss).__name__} "
                         f"{getattr(loss, 'shape', '')}")
    return loss, logs


def evaluate_loss(model: nn.Module, step_fn: Callable, loader: Iterable, device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean of every scalar ``step_fn`` logs over ``loader``, with the model in eval mode and no gradients."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for batch in loader:
            _, logs = _as_scalars(step_fn(model, to_device(batch, device)))
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


def fit(model: nn.Module, step_fn: Callable[[nn.Module, Any], Any], train_loader: Iterable,
        val_loader: Iterable | None = None, *, epochs: int, optimizer: torch.optim.Optimizer,
        scheduler: Any = None, device: torch.device | str = "cpu", desc: str = "train",
        grad_clip: float | None = None, progress: bool = True,
        on_epoch_end: Callable[[int, nn.Module, dict], None] | None = None) -> dict[str, list]:
    """Train ``model`` for ``epochs`` epochs; return the history.

    Args:
        model: the module to train (already on ``device``).
        step_fn: ``step_fn(model, batch) -> loss`` (scalar tensor) or ``{"loss": tensor, name: scalar...}``;
            ``batch`` arrives already moved to ``device``. It must not call ``backward``.
        train_loader / val_loader: iterables of batches (e.g. ``torch.utils.data.DataLoader``).
        optimizer: stepped once per batch. scheduler: stepped once per *epoch* (None: constant lr).
        grad_clip: max global gradient norm (None: no clipping).
        progress: show a tqdm bar (epochs x batches) with the running loss.
        on_epoch_end: ``on_epoch_end(epoch, model, history)`` after each epoch's validation (e.g. to keep
            a snapshot of the weights for a later evaluation).
    Returns:
        ``{"epoch": [1..E], "lr": [...], "seconds": [...], "train_<k>": [...], "val_<k>": [...]}``
        with one entry per epoch for every scalar ``k`` the step logs (``loss`` at least); plain
        Python floats, so it can be stored as checkpoint meta and plotted after loading.
    Raises:
        FloatingPointError when the training loss becomes NaN or infinite (names epoch and batch).
    """
    if epochs < 0 or int(epochs) != epochs:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    history: dict[str, list] = {"epoch": [], "lr": [], "seconds": []}
    try:
        n_batches = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        n_batches = None
    bar = None
    if progress:
        from mtl.utils import progress_bar  # quiet where stderr is not a terminal; MTL_PROGRESS=0 turns it off

        bar = progress_bar(total=None if n_batches is None else epochs * n_batches, desc=desc, leave=True)
    for epoch in range(1, int(epochs) + 1):
        model.train()
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        sums: dict[str, float] = {}
        n = 0
        for i, batch in enumerate(train_loader):
            loss, logs = _as_scalars(step_fn(model, to_device(batch, device)))
            if not math.isfinite(logs["loss"]):
                raise FloatingPointError(f"{desc}: training loss is {logs['loss']} at epoch {epoch}, batch {i}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if bar is not None:  # postfix first without a redraw, which update() does at its own pace
                bar.set_postfix(epoch=epoch, loss=f"{sums['loss'] / n:.4f}", refresh=False)
                bar.update(1)
        if scheduler is not None:
            scheduler.step()
        history["epoch"].append(epoch)
        history["lr"].append(float(lr))
        for k, v in sums.items():
            history.setdefault(f"train_{k}", []).append(v / max(n, 1))
        if val_loader is not None:
            for k, v in evaluate_loss(model, step_fn, val_loader, device).items():
                history.setdefault(f"val_{k}", []).append(v)
        history["seconds"].append(time.perf_counter() - start)
        if on_epoch_end is not None:
            on_epoch_end(epoch, model, history)
        if bar is not None:
            post = {"epoch": epoch, "loss": f"{history['train_loss'][-1]:.4f}"}
            if "val_loss" in history:
                post["val"] = f"{history['val_loss'][-1]:.4f}"
            bar.set_postfix(post, refresh=False)
    if bar is not None:
        bar.close()
    return history

"""OTB-style success and precision plots and the per-attribute comparison chart.

Inputs are the summaries of :func:`mtl.eval.summarize` / the ``"trackers"`` dict of
:func:`mtl.eval.evaluate` (``{name: summary}``). Legends carry the score as the got10k toolkit's
``_plot_curves`` does (``name: [0.612]``), sorted best first.
"""
from __future__ import annotations

import numpy as np

from mtl import metrics


def _axes(ax):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    return ax


def success_plot(summaries: dict, ax=None, title: str = "Success plots of OPE"):
    """Success curves (IoU threshold vs fraction of frames with ``iou > t``); AUC in the legend. Returns the axes."""
    ax = _axes(ax)
    for name, s in sorted(summaries.items(), key=lambda kv: -kv[1]["auc"]):
        ax.plot(metrics.IOU_THRESHOLDS, s["success_curve"], label=f"{name}: [{s['auc']:.3f}]")
    ax.set(xlabel="Overlap threshold", ylabel="Success rate", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return ax


def precision_plot(summaries: dict, ax=None, title: str = "Precision plots of OPE"):
    """Precision curves (centre-error threshold in px vs fraction with ``err <= t``); precision at 20 px in the legend."""
    ax = _axes(ax)
    for name, s in sorted(summaries.items(), key=lambda kv: -kv[1]["precision"]):
        ax.plot(metrics.CENTER_THRESHOLDS, s["precision_curve"], label=f"{name}: [{s['precision']:.3f}]")
    ax.axvline(20, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="Location error threshold (px)", ylabel="Precision", xlim=(0, 50), ylim=(0, 1.02), title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def attribute_chart(summaries: dict, ax=None, title: str = "Success AUC per attribute"):
    """Grouped bars: per-attribute AUC of each tracker (attribute labels show the sequence count). Returns the axes."""
    import matplotlib.pyplot as plt

    attrs = sorted({a for s in summaries.values() for a in s.get("per_attribute", {})})
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.8 * len(attrs) + 2), 4))
    if not attrs:
        ax.set_title(title + " (no attributes)")
        return ax
    names = list(summaries)
    width = 0.8 / len(names)
    x = np.arange(len(attrs))
    for i, name in enumerate(names):
        pa = summaries[name].get("per_attribute", {})
        vals = [pa[a]["auc"] if a in pa else np.nan for a in attrs]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, vals, width, label=name)
    counts = {a: next(s["per_attribute"][a]["n_seqs"] for s in summaries.values() if a in s.get("per_attribute", {}))
              for a in attrs}
    ax.set_xticks(x, [f"{a}\n({counts[a]})" for a in attrs])
    ax.set(ylabel="AUC", ylim=(0, 1), title=title)
    ax.legend(fontsize=8, ncol=min(len(names), 4))
    ax.grid(True, axis="y", alpha=0.3)
    return ax

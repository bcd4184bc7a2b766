"""One leaderboard for every update rule: each tracker on the same sequences, next to its own no-update base.

An :class:`Entry` names a row, the registered tracker and options that make it, and the row it is compared
with (its *base*: the same tracker without its update). :func:`leaderboard` runs every entry through the
results cache (:func:`mtl.eval.run_cached`: stored runs of the notebooks are reused when their fingerprint
matches, so only what is missing is tracked) and returns one row per entry: accuracy (AUC, precision, AO,
SR0.5 / SR0.75), throughput and, against the base, the paired bootstrap interval of the per-sequence AUC
difference and the ratio of throughputs. ``mtl leaderboard --dataset otb:PATH`` is the command-line form.

Speed ratios here come from separate runs (and from worker processes when ``processes`` > 1): read them as
indicative; the notebooks measure their ratios interleaved in one process (:func:`mtl.eval.run_side_by_side`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """A leaderboard row: ``name`` (its label), the registered ``tracker`` and its factory ``options``, and the
    label of its no-update ``base`` row (``None``: a base or a reference row itself)."""

    name: str
    tracker: str
    options: dict = field(default_factory=dict)
    base: str | None = None


#: The learned and hand-designed update rules of notebooks 02–06, each with its no-update base.
DEFAULT_ENTRIES = (
    Entry("siamfc", "siamfc"),
    Entry("siamfc_ema", "siamfc_ema", base="siamfc"),
    Entry("siamfc_gradnet", "siamfc_gradnet", base="siamfc"),
    Entry("siamfc_lu", "siamfc_lu", base="siamfc"),
    Entry("dimp_none", "dimp", {"update": "none"}),
    Entry("dimp", "dimp", base="dimp_none"),
    Entry("roam_none", "roam", {"update": "none"}),
    Entry("roam", "roam", base="roam_none"),
    Entry("roampp_none", "roampp", {"update": "none"}),
    Entry("roampp", "roampp", base="roampp_none"),
)


def parse_entries(specs: list[str]) -> list[Entry]:
    """Entries from ``NAME`` or ``NAME:BASE`` strings: a label of :data:`DEFAULT_ENTRIES` keeps its recipe, any other
    ``NAME`` is a registered tracker with default options; ``:BASE`` names (or overrides) its base row."""
    known = {e.name: e for e in DEFAULT_ENTRIES}
    out = []
    for spec in specs:
        name, _, base = spec.partition(":")
        if not name:
            raise ValueError(f"a tracker entry must be NAME or NAME:BASE, got {spec!r}")
        entry = known.get(name, Entry(name, name))
        out.append(Entry(entry.name, entry.tracker, dict(entry.options), base or entry.base))
    return out


def leaderboard(entries, sequences, cache_dir: str | Path, benchmark: str, *, seeds=(0,), processes: int = 1,
                progress: bool = True) -> list[dict]:
    """One row per entry on ``sequences``: ``tracker``, ``base``, ``auc``, ``precision``, ``ao``, ``sr50``, ``sr75``,
    ``fps`` (throughput), ``speed_vs_base``, ``diff`` / ``ci_low`` / ``ci_high`` / ``wins`` / ``ties`` / ``losses``
    (paired per-sequence AUC against the base, ``None`` without one), ``n_sequences`` and ``n_seeds``.

    A stochastic tracker runs once per seed of ``seeds`` (mean over seeds, ``auc_std`` their spread; its interval
    pairs seed-averaged per-sequence AUCs); a deterministic one runs once. Raises ``ValueError`` for a base that
    is not an entry or a duplicate label.
    """
    from mtl import eval as ev
    from mtl.stats import compare_summaries

    entries = list(entries)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate leaderboard rows: {sorted({n for n in names if names.count(n) > 1})}")
    missing = sorted({e.base for e in entries if e.base is not None and e.base not in names})
    if missing:
        raise ValueError(f"base rows {missing} are not in the leaderboard; add them (e.g. --trackers ... {missing[0]})")
    sequences = list(sequences)
    summaries = {}
    for e in entries:
        tracker = ev.make_tracker(e.tracker, **e.options)
        runs = []
        for i, s in enumerate(list(seeds)[:1] if tracker.is_deterministic else list(seeds)):
            if i:  # a fresh tracker per seed, as the notebooks run their seeds
                tracker = ev.make_tracker(e.tracker, **e.options)
            runs.append(ev.summarize(ev.run_cached(tracker, sequences, cache_dir, benchmark, seed=s, progress=progress,
                                                   processes=processes), sequences))
        summaries[e.name] = runs[0] if len(runs) == 1 else ev.summarize_seeds(runs)
    rows = []
    for e in entries:
        s = summaries[e.name]
        row = {"tracker": e.name, "base": e.base, "auc": s["auc"], "auc_std": s.get("std", {}).get("auc"),
               "precision": s["precision"], "ao": s["ao"], "sr50": s["sr50"], "sr75": s["sr75"],
               "fps": s["throughput_fps"], "speed_vs_base": None, "diff": None, "ci_low": None, "ci_high": None,
               "wins": None, "ties": None, "losses": None, "n_sequences": s["n_seqs"], "n_seeds": s.get("n_seeds", 1)}
        if e.base is not None:
            b = summaries[e.base]
            c = compare_summaries(s, b)
            row.update(speed_vs_base=s["throughput_fps"] / b["throughput_fps"], diff=c.diff, ci_low=c.ci_low,
                       ci_high=c.ci_high, wins=c.wins, ties=c.ties, losses=c.losses)
        rows.append(row)
    return rows


def format_leaderboard(rows: list[dict]) -> str:
    """The rows as a markdown table (intervals as ``+d [lo, hi]``)."""
    from mtl.reproduce import markdown_table

    table = []
    for r in rows:
        auc = f"{r['auc']:.3f}" + (f" ± {r['auc_std']:.3f}" if r.get("auc_std") is not None and r["n_seeds"] > 1 else "")
        table.append({"tracker": r["tracker"], "base": r["base"] or "", "AUC": auc, "AO": r["ao"], "SR0.75": r["sr75"],
                      "FPS": f"{r['fps']:.1f}",
                      "vs base [95% CI]": "" if r["diff"] is None else
                      f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], {r['wins']}/{r['ties']}/{r['losses']}",
                      "speed vs base": "" if r["speed_vs_base"] is None else f"{r['speed_vs_base']:.2f}"})
    return markdown_table(table)


__all__ = ["Entry", "DEFAULT_ENTRIES", "parse_entries", "leaderboard", "format_leaderboard"]

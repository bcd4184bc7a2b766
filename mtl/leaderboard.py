"""One leaderboard for every update rule: each tracker on the same sequences, next to its own no-update base.

An :class:`Entry` names a row, the registered tracker and options that make it, and the row it is compared
with (its *base*: the same tracker without its update). :func:`leaderboard` runs every entry through the
results cache (:func:`mtl.eval.run_cached`: stored runs of the notebooks are reused when their fingerprint
matches, so only what is missing is tracked) and returns one row per entry: accuracy (AUC, precision, AO,
SR0.5 / SR0.75), throughput and, against the base, the paired bootstrap interval of the per-sequence AUC
difference and the ratio of throughputs. ``mtl leaderboard --dataset otb:PATH`` is the command-line form.
Its parts, for a notebook: :func:`run_entries` (summaries), :func:`run_reset` (the VOT reset protocol, cached
too), :func:`versus_base` (paired intervals on any subset of sequences: an attribute's, say) and
:func:`leaderboard_rows`.

Speed ratios of :func:`leaderboard` come from separate runs (and from worker processes when ``processes`` > 1):
read them as indicative; notebook 07 passes ``fps`` measured interleaved in one process
(:func:`mtl.eval.run_side_by_side`) to :func:`leaderboard_rows`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Entry:
    """A leaderboard row: ``name`` (its label), the registered ``tracker`` and its factory ``options``, and the
    label of its no-update ``base`` row (``None``: a base or a reference row itself). ``every``: the row runs on
    every ``every``-th sequence only (a slow tracker), and its interval pairs it with its base on those."""

    name: str
    tracker: str
    options: dict = field(default_factory=dict)
    base: str | None = None
    every: int = 1


#: The learned and hand-designed update rules of notebooks 02–06, each with its no-update base.
DEFAULT_ENTRIES = (
    Entry("siamfc", "siamfc"),
    Entry("siamfc_ema", "siamfc_ema", base="siamfc"),
    Entry("siamfc_gradnet", "siamfc_gradnet", base="siamfc"),
    Entry("siamfc_lu", "siamfc_lu", base="siamfc"),
    Entry("cfnet", "cfnet"),
    Entry("cfnet_ema", "cfnet_ema", base="cfnet"),
    Entry("cfnet_lu", "cfnet_lu", base="cfnet"),
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
        out.append(Entry(entry.name, entry.tracker, dict(entry.options), base or entry.base, entry.every))
    return out


def check_entries(entries) -> list[Entry]:
    """``entries`` as a list; ``ValueError`` for a duplicate label, a base that is not an entry, a bad ``every``
    or a base that runs on fewer sequences than its row."""
    entries = list(entries)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate leaderboard rows: {sorted({n for n in names if names.count(n) > 1})}")
    missing = sorted({e.base for e in entries if e.base is not None and e.base not in names})
    if missing:
        raise ValueError(f"base rows {missing} are not in the leaderboard; add them (e.g. --trackers ... {missing[0]})")
    by_name = {e.name: e for e in entries}
    for e in entries:
        if e.every < 1:
            raise ValueError(f"row {e.name!r}: every must be >= 1, got {e.every}")
        if e.base is not None and e.every % by_name[e.base].every:
            raise ValueError(f"row {e.name!r} runs on every {e.every}th sequence, its base {e.base!r} on every "
                             f"{by_name[e.base].every}th: the base must cover the row's sequences")
    return entries


def _seeded_trackers(entry: Entry, seeds):
    """``(seed, tracker)`` for each run of ``entry``: the first seed only for a deterministic tracker, else every
    seed with a fresh tracker each (as the notebooks run their seeds)."""
    from mtl import eval as ev

    seeds = list(seeds)
    tracker = ev.make_tracker(entry.tracker, **entry.options)
    for i, s in enumerate(seeds[:1] if tracker.is_deterministic else seeds):
        yield s, tracker if i == 0 else ev.make_tracker(entry.tracker, **entry.options)


def run_entries(entries, sequences, cache_dir: str | Path, benchmark: str, *, seeds=(0,), processes: int = 1,
                progress: bool = True) -> dict:
    """``{label: summary}`` (:func:`mtl.eval.summarize`) of every entry on its sequences (``sequences[::every]``),
    run through the results cache. A stochastic tracker runs once per seed of ``seeds`` (a fresh tracker per
    seed, as the notebooks run them) and its summary is :func:`mtl.eval.summarize_seeds` of those runs."""
    from mtl import eval as ev

    sequences = list(sequences)
    summaries = {}
    for e in check_entries(entries):
        seqs = sequences[::e.every]
        runs = [ev.summarize(ev.run_cached(tracker, seqs, cache_dir, benchmark, seed=s, progress=progress,
                                           processes=processes), seqs) for s, tracker in _seeded_trackers(e, seeds)]
        summaries[e.name] = runs[0] if len(runs) == 1 else ev.summarize_seeds(runs)
    return summaries


def run_reset(entries, sequences, cache_dir: str | Path, benchmark: str, *, seeds=(0,), processes: int = 1,
              skip: int = 5, burnin: int = 10, progress: bool = True) -> dict:
    """``{label: {"accuracy", "robustness", "failures_per_100_frames", "n_frames", "n_seeds"}}``: the VOT reset
    protocol (:func:`mtl.eval.run_supervised`, through the results cache) of every entry on ``sequences[::every]``,
    averaged over the seeds of a stochastic tracker (robustness: failures per run)."""
    from mtl import eval as ev

    sequences = list(sequences)
    out = {}
    for e in check_entries(entries):
        reps = [ev.run_supervised(tracker, sequences[::e.every], skip=skip, burnin=burnin, seed=s, progress=progress,
                                  cache_dir=cache_dir, benchmark=benchmark, processes=processes)
                for s, tracker in _seeded_trackers(e, seeds)]
        out[e.name] = {k: float(np.mean([r[k] for r in reps])) for k in ("accuracy", "robustness",
                                                                         "failures_per_100_frames")}
        out[e.name].update(n_frames=reps[0]["n_frames"], n_seeds=len(reps))
    return out


def versus_base(entries, summaries: dict, sequence_names=None, key: str = "auc", min_sequences: int = 2) -> dict:
    """``{label: PairedComparison}`` of each entry with a base against it (:func:`mtl.stats.paired_bootstrap` of the
    per-sequence ``key``), on the sequences both ran, restricted to ``sequence_names`` when given (an attribute's
    sequences, say). An entry with fewer than ``min_sequences`` such sequences gets ``None``."""
    from mtl.stats import paired_bootstrap, per_sequence

    out = {}
    for e in entries:
        if e.base is None:
            continue
        a, b = per_sequence(summaries[e.name], key), per_sequence(summaries[e.base], key)
        names = sorted(set(a) & set(b) & (set(sequence_names) if sequence_names is not None else set(a)))
        out[e.name] = (paired_bootstrap({n: a[n] for n in names}, {n: b[n] for n in names})
                       if len(names) >= min_sequences else None)
    return out


def update_verdict(ci_low: float, ci_high: float) -> str:
    """The verdict of a row against its base from its paired interval: ``"better than base"`` (the interval is
    above 0), ``"worse than base"`` (below 0) or ``"tie"`` (it contains 0)."""
    return "better than base" if ci_low > 0 else "worse than base" if ci_high < 0 else "tie"


def leaderboard_rows(entries, summaries: dict, *, fps: dict | None = None, reset: dict | None = None) -> list[dict]:
    """One row per entry: ``tracker``, ``base``, ``auc`` (``auc_std`` over seeds), ``precision``, ``norm_precision``,
    ``ao``, ``sr50``, ``sr75``, ``fps``, ``speed_vs_base``, ``diff`` / ``ci_low`` / ``ci_high`` / ``wins`` / ``ties`` /
    ``losses`` (paired per-sequence AUC against the base, ``None`` without one), ``base_auc`` (the base's AUC on
    this row's sequences: a row on every k-th sequence is compared with that, not with the base's own row),
    ``verdict`` (:func:`update_verdict`), ``n_sequences``, ``n_seeds`` and, with ``reset`` (:func:`run_reset`),
    ``reset_accuracy`` / ``reset_failures_per_100``.

    ``fps``: ``{label: frames/s}`` measured side by side (:func:`mtl.eval.run_side_by_side`) to use instead of the
    throughput of the accuracy runs, which come from separate (perhaps worker-process) runs; it must then hold
    every row, so no ratio mixes the two kinds of measurement (``KeyError`` naming the rows it lacks).
    """
    entries = check_entries(entries)
    if fps is not None and (lacking := [e.name for e in entries if e.name not in fps]):
        raise KeyError(f"fps has no measurement for rows {lacking}")
    speed = {e.name: (fps[e.name] if fps is not None else summaries[e.name]["throughput_fps"]) for e in entries}
    comparisons = versus_base(entries, summaries)
    rows = []
    for e in entries:
        s = summaries[e.name]
        row = {"tracker": e.name, "base": e.base, "auc": s["auc"], "auc_std": s.get("std", {}).get("auc"),
               "precision": s["precision"], "norm_precision": s["norm_precision"], "ao": s["ao"], "sr50": s["sr50"],
               "sr75": s["sr75"], "fps": speed[e.name], "speed_vs_base": None, "diff": None, "ci_low": None,
               "ci_high": None, "wins": None, "ties": None, "losses": None, "base_auc": None, "verdict": None,
               "n_sequences": s["n_seqs"], "n_seeds": s.get("n_seeds", 1)}
        if reset is not None and e.name in reset:
            row.update(reset_accuracy=reset[e.name]["accuracy"],
                       reset_failures_per_100=reset[e.name]["failures_per_100_frames"])
        c = comparisons.get(e.name)
        if c is not None:
            row.update(speed_vs_base=speed[e.name] / speed[e.base], diff=c.diff, ci_low=c.ci_low, ci_high=c.ci_high,
                       wins=c.wins, ties=c.ties, losses=c.losses, base_auc=s["auc"] - c.diff,
                       verdict=update_verdict(c.ci_low, c.ci_high))
        rows.append(row)
    return rows


def leaderboard(entries, sequences, cache_dir: str | Path, benchmark: str, *, seeds=(0,), processes: int = 1,
                reset: bool = False, progress: bool = True) -> list[dict]:
    """:func:`leaderboard_rows` of :func:`run_entries` (and of :func:`run_reset` with ``reset``): what ``mtl
    leaderboard`` prints. Raises ``ValueError`` for a base that is not an entry or a duplicate label (before
    anything runs)."""
    entries = check_entries(entries)
    kw = dict(seeds=seeds, processes=processes, progress=progress)
    return leaderboard_rows(entries, run_entries(entries, sequences, cache_dir, benchmark, **kw),
                            reset=run_reset(entries, sequences, cache_dir, benchmark, **kw) if reset else None)


def format_leaderboard(rows: list[dict]) -> str:
    """The rows as a markdown table (intervals as ``+d [lo, hi]``)."""
    from mtl.reproduce import markdown_table

    table = []
    for r in rows:
        auc = f"{r['auc']:.3f}" + (f" ± {r['auc_std']:.3f}" if r.get("auc_std") is not None and r["n_seeds"] > 1 else "")
        table.append({"tracker": r["tracker"], "base": r["base"] or "", "AUC": auc, "AO": r["ao"], "SR0.75": r["sr75"],
                      **({"reset acc.": r["reset_accuracy"], "fail./100 fr.": f"{r['reset_failures_per_100']:.2f}"}
                         if "reset_accuracy" in r else {}),
                      "FPS": f"{r['fps']:.1f}", "n": r["n_sequences"],
                      "base AUC (same seqs)": r["base_auc"],
                      "vs base [95% CI]": "" if r["diff"] is None else
                      f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], {r['wins']}/{r['ties']}/{r['losses']}",
                      "verdict": r["verdict"] or "",
                      "speed vs base": "" if r["speed_vs_base"] is None else f"{r['speed_vs_base']:.2f}"})
    return markdown_table(table)


__all__ = ["Entry", "DEFAULT_ENTRIES", "parse_entries", "check_entries", "run_entries", "run_reset", "versus_base",
           "update_verdict", "leaderboard_rows", "leaderboard", "format_leaderboard"]

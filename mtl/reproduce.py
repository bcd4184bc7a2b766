"""``mtl reproduce``: execute every numbered notebook with papermill and report what they produced.

Executed copies go to ``runs/<timestamp>/``; each notebook writes its own results file
(``results/<notebook>.json`` in full mode, ``runs/quick/results/`` in quick mode), and this module
gathers those into ``report.md`` / ``report.json``, headed by the reproduction report (every paper claim the
notebooks test, with its verdict). A full run also regenerates the report and the results tables in
README.md (between ``<!-- results:start -->`` and ``<!-- results:end -->``) from the results files,
so no number in the README is typed by hand.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from mtl.results import results_path
from mtl.utils import ROOT, atomic_write_bytes

NOTEBOOK_DIR = ROOT / "notebooks"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def list_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order, optionally filtered by name prefixes."""
    notebooks = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if re.match(r"^\d\d_", p.name))
    if only:
        notebooks = [p for p in notebooks if any(p.stem.startswith(prefix) for prefix in only)]
        if not notebooks:
            raise ValueError(f"no notebook in {NOTEBOOK_DIR} starts with any of {only}")
    return notebooks


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict]) -> str:
    """A markdown table from a list of row dicts (columns in first-seen order)."""
    if not rows:
        return ""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def results_markdown(notebook: str, results: dict) -> str:
    """The tables a notebook published under the ``"tables"`` key of its results file, as markdown (but a table
    named ``findings``: those rows are in the reproduction report, :func:`findings_markdown`), then its
    ``"figures"`` ``{title: path relative to the repository root}`` as images."""
    parts = []
    for title, rows in (results.get("tables") or {}).items():
        if title == "findings":
            continue
        parts.append(f"**{notebook} — {title}**\n\n{markdown_table(rows)}\n")
    for title, path in (results.get("figures") or {}).items():
        parts.append(f"**{notebook} — {title}**\n\n![{title}]({path})\n")
    return "\n".join(parts)


VERDICTS = ("matches", "tie", "does NOT match")


def findings_markdown(results: dict[str, dict]) -> str:
    """The reproduction report: every ``findings`` entry of ``results`` ``{notebook: results dict}`` in one table
    (notebook, claim, paper, split, ours, 95% interval, verdict), headed by the count of each verdict."""
    rows = []
    for name, res in results.items():
        for f in res.get("findings") or []:
            ci = f.get("ci")
            rows.append({"notebook": name, "claim": f.get("claim", ""), "paper": f.get("paper", ""),
                         "split": f.get("split", ""), "ours": f.get("ours", ""),
                         "95% CI": f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "", "verdict": f.get("verdict", "")})
    if not rows:
        return ""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    other = len(rows) - sum(counts.values())
    head = ", ".join(f"{n} {v}" for v, n in counts.items()) + (f", {other} other" if other else "")
    n_ci = sum(bool(r["95% CI"]) for r in rows)
    return (f"**Reproduction report: {len(rows)} paper claims tested** ({head}). {n_ci} verdicts come from paired "
            f"bootstrap intervals (BRIEF §7: the 95% CI column; the sign of *ours* is the one its notebook defines; "
            f"a claim of equality matches when the interval contains 0); the {len(rows) - n_ci} without an "
            f"interval are descriptive checks (a speed ratio, a loss, a self-check) against the stated "
            f"threshold\n\n{markdown_table(rows)}\n")


def update_readme_tables(notebooks: list[str], readme: Path = ROOT / "README.md",
                         results_dir: str | Path | None = None) -> bool:
    """Regenerate README's results section from the committed (full-mode) results files: the reproduction report
    (:func:`findings_markdown`) first, then each notebook's tables."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    blocks, loaded = [], {}
    for name in notebooks:
        path = results_path(name, quick=False, directory=results_dir)
        if path.is_file():
            loaded[name] = json.loads(path.read_text())
            block = results_markdown(name, loaded[name])
            if block:
                blocks.append(block)
    report = findings_markdown(loaded)
    if report:
        blocks.insert(0, report)
    body = "\n".join(blocks) if blocks else "_No full-mode results yet: run `make reproduce`._\n"
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    atomic_write_bytes(readme, f"{head}{README_START}\n{body}\n{README_END}{tail}".encode())
    return True


def store_executed_notebook(executed: Path, target: Path) -> None:
    """Copy a papermill-executed notebook over ``target``, without papermill's injected-parameters cell.

    The injected cell would pin the run's parameters (``QUICK = False``) into the committed notebook,
    so the test command (``MTL_QUICK=1``, no injection) would run it in full mode.
    """
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    atomic_write_bytes(target, nbformat.writes(nb).encode())


def reproduce(*, quick: bool = False, train: bool = False, device: str = "auto", seed: int = 0,
              only: list[str] | None = None, out: str | Path | None = None,
              update_notebooks: bool = False, log=print) -> dict:
    """Run the notebooks in order with papermill; return (and write) the report.

    A failing notebook is recorded and the run goes on with the next one; ``report["ok"]`` is False
    if any failed.
    """
    import papermill as pm

    notebooks = list_notebooks(only)
    run_dir = Path(out) if out else ROOT / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"QUICK": bool(quick), "TRAIN": bool(train), "DEVICE": device, "SEED": int(seed)}
    report: dict[str, Any] = {"mode": "quick" if quick else "full", "parameters": parameters,
                              "run_dir": str(run_dir), "notebooks": []}
    log(f"mtl reproduce: {len(notebooks)} notebook(s), {report['mode']} mode -> {run_dir}")
    for nb in notebooks:
        start = time.perf_counter()
        started_wall = time.time()
        entry: dict[str, Any] = {"notebook": nb.stem}
        log(f"  running {nb.name} ...")
        try:
            pm.execute_notebook(str(nb), str(run_dir / nb.name), parameters=parameters,
                                kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=False)
            entry["status"] = "ok"
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            entry["status"] = "failed"
            entry["error"] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        entry["seconds"] = round(time.perf_counter() - start, 1)
        res = results_path(nb.stem, quick=quick)
        if res.is_file() and res.stat().st_mtime >= started_wall - 1:
            entry["results_file"] = str(res)
            entry["results"] = json.loads(res.read_text())
        log(f"  {nb.name}: {entry['status']} in {entry['seconds']:.0f} s"
            + (f" ({entry['error']})" if entry["status"] != "ok" else ""))
        report["notebooks"].append(entry)
    report["ok"] = all(e["status"] == "ok" for e in report["notebooks"])

    lines = [f"# mtl reproduce — {report['mode']} mode", "",
             f"Parameters: `{json.dumps(parameters)}`", "",
             markdown_table([{"notebook": e["notebook"], "status": e["status"], "seconds": e["seconds"],
                              "results": e.get("results_file", "—")} for e in report["notebooks"]]), ""]
    lines.append(findings_markdown({e["notebook"]: e["results"] for e in report["notebooks"] if "results" in e}))
    for e in report["notebooks"]:
        if "results" in e:
            lines.append(results_markdown(e["notebook"], e["results"]))
    atomic_write_bytes(run_dir / "report.md", "\n".join(lines).encode())
    atomic_write_bytes(run_dir / "report.json", json.dumps(report, indent=2, default=str).encode())
    log(f"report: {run_dir / 'report.md'}")

    if not quick and report["ok"]:
        if update_readme_tables([p.stem for p in list_notebooks()]):
            log("README.md results tables regenerated from results/*.json")
        if update_notebooks:
            for e in report["notebooks"]:
                store_executed_notebook(run_dir / f"{e['notebook']}.ipynb", NOTEBOOK_DIR / f"{e['notebook']}.ipynb")
            log("notebooks/ refreshed with the executed copies (outputs of this full run)")
    elif update_notebooks:
        log("notebooks/ NOT refreshed: only a successful full run may replace the committed outputs")
    return report

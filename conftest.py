"""Repository-wide pytest hooks: a per-notebook time summary at the end of the test run.

nbval turns each notebook cell into a test item; summing their durations per notebook shows at a
glance whether the quick suite stays inside its budget (25 minutes for everything on 2 CPU cores).
"""
from __future__ import annotations

from collections import defaultdict

_durations: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    _durations[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _durations:
        return
    notebooks = {k: v for k, v in _durations.items() if k.endswith(".ipynb")}
    units = sum(v for k, v in _durations.items() if not k.endswith(".ipynb"))
    tr = terminalreporter
    tr.section("time per notebook (quick mode) and unit tests")
    for path, seconds in sorted(notebooks.items()):
        tr.write_line(f"{seconds:8.1f} s  {path}")
    tr.write_line(f"{units:8.1f} s  unit tests (tests/)")
    tr.write_line(f"{units + sum(notebooks.values()):8.1f} s  total (budget: 1500 s)")

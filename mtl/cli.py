"""The ``mtl`` command line: ``mtl reproduce``, ``mtl generate``, ``mtl benchmark``, ``mtl evaluate``.

Each subcommand is a thin wrapper over a function in the package, so notebooks and tests call the
same code; ``main(argv)`` is importable for tests.
"""
from __future__ import annotations

import argparse
import sys


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="execute every notebook with papermill into runs/<timestamp>/ and write a report",
        description=(
            "Execute the numbered notebooks in order with papermill, writing the executed copies to "
            "runs/<timestamp>/ and a report (report.md, report.json) of the results they produced. "
            "Full mode writes results/<notebook>.json (the committed results); --quick runs the smoke "
            "mode, whose results go under runs/quick/ and never overwrite the committed ones."
        ),
    )
    p.add_argument("--quick", action="store_true", help="smoke mode: tiny data and training (minutes)")
    p.add_argument("--train", action="store_true", help="retrain models instead of loading stored checkpoints")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed passed to every notebook (default: 0)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only notebooks whose name starts with one of these (e.g. 00 01_siamfc)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<timestamp>)")
    p.add_argument("--update-notebooks", action="store_true",
                   help="after a successful full run, copy the executed notebooks over notebooks/ "
                        "(refreshes the outputs readers see on the repository page)")

    def run(args: argparse.Namespace) -> int:
        from mtl.reproduce import reproduce

        report = reproduce(quick=args.quick, train=args.train, device=args.device, seed=args.seed,
                           only=args.only, out=args.out, update_notebooks=args.update_notebooks)
        return 0 if report["ok"] else 1

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl",
        description="Learning to update visual object trackers: the notebooks' command line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_reproduce(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""The ``mtl`` command line: ``mtl reproduce``, ``mtl generate``, ``mtl benchmark``, ``mtl evaluate``,
``mtl leaderboard``, ``mtl track``.

Each subcommand is a thin wrapper over a function in the package, so notebooks and tests call the
same code; ``main(argv)`` is importable for tests.

Errors: a bad dataset, results file, option or image ends a command with one line on stderr,
``mtl: error: <message>`` (naming the file and line where there is one), and exit status 2;
``mtl --debug COMMAND ...`` raises instead, showing the traceback.
"""
from __future__ import annotations

import argparse
import sys


def _parse_options(pairs: list[str]) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; values are Python literals when they parse as one."""
    import ast

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--option expects KEY=VALUE with KEY a Python name, got {pair!r}")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def _make_tracker(name: str, options: dict):
    """``mtl.eval.make_tracker(name, **options)``, a TypeError from the options becoming a ValueError."""
    from mtl import eval as ev

    try:
        return ev.make_tracker(name, **options)
    except TypeError as e:  # an option the tracker's factory does not take, or a value of the wrong type
        given = f" (--option {', '.join(sorted(options))})" if options else ""
        raise ValueError(f"tracker {name!r} rejected its options{given}: {e}") from e


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


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="run a tracker on a dataset and store its results in the got10k toolkit's layout",
        description=(
            "Run a registered tracker (static, noisy_gt, constant_velocity, opencv_mil, ...) on a dataset "
            "and write <out>/<benchmark>/<tracker>/<seq>.txt and times/<seq>_time.txt. Complete stored "
            "results are reused unless --overwrite. Stochastic trackers run once per --seeds value."
        ),
    )
    p.add_argument("--tracker", required=True, help="registered tracker name")
    p.add_argument("--dataset", required=True, help="synth:test, synth:test:long_occlusion (a stress set), otb:PATH, got10k:PATH or lasot:PATH")
    p.add_argument("--protocol", choices=["ope", "reset"], default="ope",
                   help="ope: one-pass evaluation; reset: VOT-style re-initialisation after failures")
    p.add_argument("--out", required=True, help="results root folder")
    p.add_argument("--quick", action="store_true", help="a few short sequences only")
    p.add_argument("--seed", type=int, default=0, help="dataset seed and first run seed (default: 0)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds for a stochastic tracker (default: 3 when stochastic, else 1)")
    p.add_argument("--overwrite", action="store_true", help="re-run even when complete results exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="tracker option passed to its factory, e.g. --option checkpoint=path/to.pt "
                        "--option window_influence=0.3 (repeatable; values are Python literals or strings)")

    def run(args: argparse.Namespace) -> int:
        from mtl import eval as ev
        from mtl.data import load_dataset

        options = _parse_options(args.option)
        tracker = _make_tracker(args.tracker, options)  # before the dataset: cheap mistakes fail fast
        seqs = load_dataset(args.dataset, quick=args.quick, seed=args.seed)
        bench = ev.benchmark_name(args.dataset, quick=args.quick)
        n_seeds = args.seeds if args.seeds is not None else (1 if tracker.is_deterministic else 3)
        if args.protocol == "reset":
            rep = ev.run_supervised(tracker, seqs, seed=args.seed, progress=not args.no_progress,
                                    out_dir=args.out, benchmark=bench, tracker_name=args.tracker)
            print(f"{args.tracker} on {bench} (reset protocol): accuracy {rep['accuracy']:.3f}, "
                  f"robustness {rep['robustness']} failures ({rep['failures_per_100_frames']:.2f} per 100 frames)")
            return 0
        if n_seeds > 1:
            ev.run_ope_seeds(lambda: _make_tracker(args.tracker, options), seqs,
                             seeds=range(args.seed, args.seed + n_seeds), out_dir=args.out, benchmark=bench,
                             overwrite=args.overwrite, progress=not args.no_progress, tracker_name=args.tracker)
        else:
            ev.run_ope(tracker, seqs, out_dir=args.out, benchmark=bench, overwrite=args.overwrite,
                       seed=args.seed, progress=not args.no_progress, tracker_name=args.tracker)
        print(f"results written under {ev.results_file(args.out, bench, args.tracker, '').parent}")
        return 0

    p.set_defaults(func=run)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate stored results (OTB AUC/precision, normalized precision, GOT-10k AO/SR, FPS)",
        description="Read <results>/<benchmark>/<tracker>/ folders, compute the metrics, print a table.",
    )
    p.add_argument("--results", required=True, help="results root folder (the --out of mtl benchmark)")
    p.add_argument("--dataset", required=True, help="the dataset spec the results were made on")
    p.add_argument("--quick", action="store_true", help="the dataset was loaded with --quick")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--trackers", nargs="+", default=None, help="only these trackers (default: all)")
    p.add_argument("--json", default=None, help="also write the full report to this JSON file")

    def run(args: argparse.Namespace) -> int:
        import json

        from mtl import eval as ev
        from mtl.data import load_dataset

        seqs = load_dataset(args.dataset, quick=args.quick, seed=args.seed)
        report = ev.evaluate(args.results, seqs, benchmark=ev.benchmark_name(args.dataset, quick=args.quick),
                             tracker_names=args.trackers)
        print(ev.format_table(report))
        if args.json:
            from mtl.results import to_jsonable
            from mtl.utils import atomic_write_bytes

            atomic_write_bytes(args.json, json.dumps(to_jsonable(report), indent=1).encode())
        return 0

    p.set_defaults(func=run)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="write a split of the synthetic benchmark to disk in the OTB or GOT-10k layout",
        description="Render a synthetic split (train, val or test) and write it in a standard layout that "
                    "the otb: / got10k: loaders (and the got10k toolkit) read back with identical boxes.",
    )
    p.add_argument("--split", choices=["train", "val", "test"], default="test", help="which split (default: test)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=["otb", "got10k", "mp4"], default="otb",
                   help="folder layout, or mp4: one video per sequence with its boxes in <seq>.txt, "
                        "to try `mtl track` on (default: otb)")
    p.add_argument("--quick", action="store_true", help="the short quick-mode split")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument("--num-sequences", type=int, default=None, help="only the first N sequences")
    p.add_argument("--png", action="store_true", help="lossless PNG frames instead of JPEG (quality 95)")
    p.add_argument("--scenario", default=None,
                   help="write the split's stress set instead: long_occlusion or distractors (mtl.synth.SCENARIOS)")

    def run(args: argparse.Namespace) -> int:
        from mtl.data import generate

        out = generate(args.split, args.out, format=args.format, quick=args.quick, seed=args.seed,
                       num_sequences=args.num_sequences, image_ext=".png" if args.png else ".jpg",
                       scenario=args.scenario)
        what = f"{args.split} split" + (f", {args.scenario} stress set" if args.scenario else "")
        print(f"wrote the {what} ({args.format} layout) to {out}")
        if args.format == "mp4":
            from pathlib import Path

            first = sorted(Path(out).glob("*.mp4"))[0]
            box = (first.parent / f"{first.stem}.txt").read_text().split()[0]
            print(f"track one: mtl track --video {first} --box {box} --tracker siamfc --out runs/track")
        return 0

    p.set_defaults(func=run)


def _add_track(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track",
        help="run trackers on your own video from a first-frame box; write boxes, times and an annotated video",
        description=(
            "Read a video (any file OpenCV decodes, or a folder of images) frame by frame, run one or "
            "several registered trackers from the given first-frame box, and write under --out: "
            "<tracker>/<video>.txt (x,y,w,h per frame, the toolkit's format), <tracker>/times/<video>_time.txt, "
            "<video>_tracked.mp4 (one colour per tracker, legend, frame number) and <video>_tracked.gif "
            "(a short preview). Memory stays flat however long the video is."
        ),
    )
    p.add_argument("--video", required=True, help="video file or folder of images")
    p.add_argument("--box", default=None, metavar="X,Y,W,H",
                   help="the target's box on the first tracked frame (0-based pixels; a negative X as --box=-5,10,40,30)")
    p.add_argument("--select", action="store_true",
                   help="draw the box on the first frame in a window instead (needs a display)")
    p.add_argument("--tracker", action="append", default=None, metavar="NAME",
                   help="registered tracker (repeatable; default: siamfc), e.g. --tracker siamfc --tracker siamfc_gradnet")
    p.add_argument("--frames", default=None, metavar="A:B",
                   help="track frames A..B-1 only (0-based; the box is on frame A), e.g. 0:300 or 120:")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-gif", action="store_true", help="skip the GIF preview")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from mtl.video import track_video

        if args.box is None and not args.select:
            raise ValueError("give the target's box with --box X,Y,W,H (or --select to draw it, where a display is available)")
        result = track_video(args.video, args.box, trackers=args.tracker or ["siamfc"], out=args.out,
                             frames=args.frames, select=args.select, gif=not args.no_gif,
                             progress=not args.no_progress)
        for name, run_ in result["trackers"].items():
            fps = len(run_["times"]) / max(float(run_["times"].sum()), 1e-9)
            failed = f", {len(run_['failed_frames'])} failed frames" if run_["failed_frames"] else ""
            print(f"{name}: {result['frames']} frames at {fps:.1f} frames/s{failed} -> {run_['boxes_file']}")
        print(f"annotated video: {result['video']}" + (f" | preview: {result['gif']}" if result["gif"] else ""))
        return 0

    p.set_defaults(func=run)


def _add_leaderboard(sub: argparse._SubParsersAction) -> None:
    from mtl.leaderboard import DEFAULT_ENTRIES

    p = sub.add_parser(
        "leaderboard",
        help="every update rule and its no-update base on one dataset: accuracy, speed, paired intervals",
        description=(
            "Run each tracker (default: every update rule of notebooks 02-06 with its no-update base) on a dataset "
            "through a results cache in --out (runs already there are reused), then print one row per tracker: "
            "AUC, AO, SR0.75, FPS and, against its base, the paired bootstrap interval of the per-sequence AUC "
            "difference and the speed ratio."
        ),
    )
    p.add_argument("--dataset", required=True, help="synth:test, otb:PATH, got10k:PATH or lasot:PATH")
    p.add_argument("--trackers", nargs="+", default=[e.name for e in DEFAULT_ENTRIES], metavar="NAME[:BASE]",
                   help="rows: a default row's label or any registered tracker, optionally :BASE (default: "
                        + ", ".join(e.name for e in DEFAULT_ENTRIES) + ")")
    p.add_argument("--out", required=True, help="results cache folder (reused across calls)")
    p.add_argument("--quick", action="store_true", help="a few short sequences only")
    p.add_argument("--seed", type=int, default=0, help="dataset seed and first run seed (default: 0)")
    p.add_argument("--seeds", type=int, default=1, help="runs of a stochastic tracker (default: 1)")
    p.add_argument("--processes", type=int, default=1, help="worker processes for the runs (default: 1)")
    p.add_argument("--reset", action="store_true",
                   help="also run the VOT reset protocol: accuracy and failures per 100 frames columns")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        import json

        from mtl import eval as ev
        from mtl.data import load_dataset
        from mtl.leaderboard import format_leaderboard, leaderboard, parse_entries

        if args.seeds < 1 or args.processes < 1:
            raise ValueError("--seeds and --processes must be >= 1")
        entries = parse_entries(args.trackers)
        seqs = load_dataset(args.dataset, quick=args.quick, seed=args.seed)
        rows = leaderboard(entries, seqs, args.out, ev.benchmark_name(args.dataset, quick=args.quick),
                           seeds=range(args.seed, args.seed + args.seeds), processes=args.processes,
                           reset=args.reset, progress=not args.no_progress)
        print(format_leaderboard(rows))
        if args.json:
            from mtl.utils import atomic_write_bytes

            atomic_write_bytes(args.json, json.dumps(rows, indent=1).encode())
        return 0

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl",
        description="Learning to update visual object trackers: the notebooks' command line.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, raise it with its full Python traceback instead of printing one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_reproduce(sub)
    _add_generate(sub)
    _add_benchmark(sub)
    _add_evaluate(sub)
    _add_leaderboard(sub)
    _add_track(sub)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """What bad input raises (a missing or malformed file, a bad option, an unusable checkpoint)."""
    from mtl.cache import CheckpointError

    # FileNotFoundError and NotADirectoryError are OSErrors; TypeErrors of tracker options arrive as
    # ValueErrors (see _make_tracker), other TypeErrors are bugs and keep their traceback.
    return (OSError, ValueError, KeyError, CheckpointError)


def error_message(exc: BaseException) -> str:
    """One line for ``exc``: its message (a KeyError's without the repr quotes), newlines replaced."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        msg = exc.args[0]
    else:
        msg = str(exc)
    msg = " ".join(part.strip() for part in msg.splitlines() if part.strip())
    if " " not in msg:  # empty or a bare value (e.g. a dict key): say what kind of error it is
        msg = f"{type(exc).__name__}: {msg}".rstrip(": ")
    return msg


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a failed run, 2 bad input or usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse prints them and exits with status 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except _expected_errors() as e:
        if args.debug:
            raise
        sys.stdout.flush()
        print(f"mtl: error: {error_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

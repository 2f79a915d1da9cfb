"""`rayfit`: the only place that prints to the user and decides exit codes.

Exit codes: 0 success, 2 bad input (one `error: ...` line on stderr, no traceback), 1 a bug
(traceback kept), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Optional, Sequence

from rayfit.errors import UserError

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line and exit code 2 like every other."""

    def error(self, message: str):
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rayfit", description="Distributed training on Ray: data -> models -> report.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run an experiment (no arguments: the built-in quickstart)")
    run.add_argument("config", nargs="?", help="experiment YAML (see examples/)")
    run.add_argument("--data", help="a .csv / .parquet file or a built-in set (synthetic, iris, ...)")
    run.add_argument("--target", help="the column to predict")
    run.add_argument("--task", choices=["auto", "classification", "regression"], help="default: inferred")
    run.add_argument("--out", help="run directory (must not exist or be empty); default runs/<name>-<time>")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a config key, e.g. --set torch.epochs=10 (repeatable)")
    run.add_argument("--verbose", action="store_true", help="show Ray's own output on the terminal")

    resume = commands.add_parser("resume", help="finish an interrupted run from its checkpoints")
    resume.add_argument("run_dir", help="the run directory of the interrupted run")
    resume.add_argument("--verbose", action="store_true", help="show Ray's own output on the terminal")

    predict = commands.add_parser("predict", help="predict raw rows with a run's best model")
    predict.add_argument("run_dir", help="a finished run directory")
    predict.add_argument("--data", required=True, help="a .csv / .parquet file of raw rows")
    predict.add_argument("--out", help="where to write predictions (CSV); default: stdout")
    return parser


def _run(args) -> int:
    from rayfit.config import load_experiment
    from rayfit.pipeline import run_experiment
    from rayfit.progress import Display
    from rayfit.run_dir import terminal_stream

    exp = load_experiment(args.config, args.data, args.target, args.task, tuple(args.overrides))
    with Display(terminal_stream()) as display:
        run_dir = run_experiment(exp, args.out, display, verbose=args.verbose)
        display.say(f"report: {run_dir / 'report.html'}")
    return EXIT_OK


def _resume(args) -> int:
    from rayfit.pipeline import resume_experiment
    from rayfit.progress import Display
    from rayfit.run_dir import terminal_stream

    with Display(terminal_stream()) as display:
        run_dir = resume_experiment(args.run_dir, display, verbose=args.verbose)
        display.say(f"report: {run_dir / 'report.html'}")
    return EXIT_OK


def _predict(args) -> int:
    from rayfit.predict import predict_file

    frame = predict_file(args.run_dir, args.data)
    if args.out:
        from pathlib import Path

        if Path(args.out).exists():
            raise UserError(f"--out {args.out}: already exists; rayfit never overwrites a file")
        frame.to_csv(args.out, index=False)
    else:
        frame.to_csv(sys.stdout, index=False)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return {"run": _run, "resume": _resume, "predict": _predict}[args.command](args)
    except UserError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message held
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # a bug: keep the traceback so it can be fixed
        traceback.print_exc()
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())

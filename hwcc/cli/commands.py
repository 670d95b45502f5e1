"""The ``hwcc`` command. It maps flags to the Python API and prints; nothing more.

Bad input (flags, budgets, models, data files, an output that cannot be written) ends
with a short message on stderr (``hwcc COMMAND: error: ...`` and perhaps a hint line) and
exit code 2, never a traceback, and nothing is written. Flags are checked as they are
parsed, data and outputs before any work. Exit code 3: ``compile`` missed a budget (the
best model found is written) or ``apply --verify`` found the outputs changed (nothing is
written).

This module builds the parser and runs a command; ``compile`` is in
:mod:`hwcc.cli.compile_command`, ``jobs`` in :mod:`hwcc.cli.jobs_command`, the other
commands in :mod:`hwcc.cli.subcommands`, and what they share in :mod:`hwcc.cli.args`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from hwcc import __version__
from hwcc.cli import compile_command, jobs_command, subcommands
from hwcc.errors import HwccError

EPILOG = """\
MODEL is a path to an .onnx file or zoo:NAME for a bundled model (see 'hwcc zoo list').

examples:
  hwcc zoo list
  hwcc inspect zoo:alexnet
  hwcc inspect model.onnx --input-shape input:1x3x224x224 --json
  hwcc inspect zoo:alexnet --target eyeriss --batch 4
  hwcc targets
  hwcc apply fold_batchnorm zoo:resnet-digits -o folded.onnx --verify
"""


class _Parser(argparse.ArgumentParser):
    """argparse, reporting errors in hwcc's form: the error line and a hint, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n  hint: see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``hwcc`` and every command (each subparser is a ``_Parser`` too)."""
    parser = _Parser(
        prog="hwcc",
        description="A hardware-aware compiler for neural networks: an ONNX model, a target and "
        "a budget in; a model that meets the budget on that target with the least accuracy lost "
        "out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hwcc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    compile_command.add_parser(sub)
    subcommands.add_parsers(sub)
    jobs_command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hwcc`` with ``argv`` (default: the process's arguments); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    split = compile_command.split_budget(argv)
    if split is not None:
        return _report("compile", split)
    args, extras = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extras:
        return _report(
            args.command,
            HwccError(
                f"unrecognized arguments: {' '.join(extras)}", f"see 'hwcc {args.command} --help'"
            ),
        )
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warn_as(args.command)
            return args.func(args)
    except HwccError as e:
        return _report(args.command, e)
    except KeyboardInterrupt:
        print("hwcc: interrupted", file=sys.stderr)
        if args.command == "compile":
            out = args.output or compile_command.default_output(args.model, args.target)
            if Path(f"{out}.checkpoint", "state.json").is_file():
                print(
                    f"  the search is checkpointed in {out}.checkpoint: add --resume to the same "
                    "command to continue it",
                    file=sys.stderr,
                )
        if args.command == "jobs" and args.jobs_command == "run":
            print(
                "  finished jobs are kept and the others checkpointed: run the same command "
                "again to do what is left",
                file=sys.stderr,
            )
        return 130


def _warn_as(command: str):
    """Warnings as ``hwcc COMMAND: warning: ...`` lines, not Python's file:line format."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"hwcc {command}: warning: {message}", file=file or sys.stderr)

    return show


def _report(command: str, e: HwccError) -> int:
    """Print ``e`` as ``hwcc COMMAND: error: ...`` and its hint; return its exit code."""
    print(f"hwcc {command}: error: {e.message}", file=sys.stderr)
    if e.hint:
        print(f"  hint: {e.hint}", file=sys.stderr)
    return e.exit_code


if __name__ == "__main__":
    sys.exit(main())

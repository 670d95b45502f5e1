"""``hwcc jobs run`` and ``hwcc jobs status``: tuning jobs from a job file, on Ray.

Exit code of ``run``: 0 when every job met its budgets and accuracy floor; 3 when one
missed or failed (its row says why; the others still ran); 2 for a bad job file (nothing
runs), a results folder in use, or Ray missing. ``status`` exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import hwcc.jobs
from hwcc.errors import HwccError
from hwcc.jobs.results import status
from hwcc.jobs.view import JobsView, line_of

JOBS_EPILOG = (
    "examples:\n"
    "  hwcc jobs run jobs.toml -o results/                 (Ray started on this machine)\n"
    "  hwcc jobs run jobs.toml -o results/ --address auto  (join the running cluster)\n"
    "  hwcc jobs status results/\n"
)


def cmd_jobs_run(args: argparse.Namespace) -> int:
    """Run ``hwcc jobs run``: check the file, run what is left, print the table."""

    spec = hwcc.jobs.load_spec(args.jobs)  # a bad file: one error, before anything runs
    view = JobsView(sys.stderr)
    try:
        result = hwcc.jobs.run(spec, args.output, address=args.address, progress=view.update)
    finally:
        view.close()
    if result.skipped:
        print(f"{len(result.skipped)} jobs were already finished in {args.output}: not run again")
    for r in result.rows:
        print(line_of(r))
    print(view.totals(result.rows))
    print(f"summary: {result.folder / 'summary.json'}; page: {result.folder / 'index.html'}")
    return result.exit_code


def cmd_jobs_status(args: argparse.Namespace) -> int:
    """Run ``hwcc jobs status``: where every job of a results folder stands."""
    folder = Path(args.results)
    if not (folder / "summary.json").is_file():
        raise HwccError(
            f"{folder} holds no tuning jobs (no summary.json)",
            "give the folder that 'hwcc jobs run ... -o' wrote",
        )
    rows = status(folder)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in rows:
        line = line_of(r)
        if r["status"] == "interrupted" and r.get("iteration") is not None:
            line += f"  (checkpoint after iteration {r['iteration']})"
        print(line)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"{len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``jobs run`` and ``jobs status`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "jobs",
        help="tune many models for many targets and budgets, on Ray",
        description="Tuning jobs: a job file (TOML) lists models, targets, budgets and data, "
        "as a matrix and as single jobs; each job is a compile, run as a Ray task on a machine "
        "that offers its device, written to RESULTS/<job-id>/. See the README's 'Tuning jobs'.",
        epilog=JOBS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jsub = p.add_subparsers(dest="jobs_command", metavar="run|status", required=True)
    r = jsub.add_parser(
        "run",
        help="run the jobs of a job file that are not finished yet",
        description="Run every job of JOBS.toml whose artifact is not in RESULTS yet (a run "
        "killed and started again does only what is left). Exit code 0: every job met its "
        "budgets; 3: a job missed them or failed; 2: a bad job file (nothing runs).",
    )
    r.add_argument("jobs", metavar="JOBS.toml", help="the job file")
    r.add_argument("-o", "--output", required=True, metavar="RESULTS", help="the results folder")
    r.add_argument(
        "--address",
        metavar="ADDR",
        help="a Ray cluster to join: auto, or ray://HOST:PORT (default: start Ray on this "
        "machine, offering every device the job file names)",
    )
    r.set_defaults(func=cmd_jobs_run)
    s = jsub.add_parser("status", help="where every job of a results folder stands")
    s.add_argument("results", metavar="RESULTS", help="the folder 'hwcc jobs run -o' writes")
    s.add_argument("--json", action="store_true", help="print JSON instead of lines")
    s.set_defaults(func=cmd_jobs_status)

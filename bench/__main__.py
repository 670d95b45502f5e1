"""``python -m bench``: run every section and regenerate the benchmarks page.

Sections are found by file (see :mod:`bench`), read without importing them (a module's
``TITLE`` and ``ORDER`` are literals), and run one after another in ``ORDER``, each in a
process of its own (so one section's memory, threads and imports never weigh on the
next, and a crash is that section's alone) and timed; a section that raises or dies is
shown on the page as FAILED with its error, the others still run, and the exit code is 1.
Each section's result is saved as ``<results>/<name>.json`` as soon as it finishes; the
page is written at the end, atomically.

``--only`` runs the named sections and carries the others over from their saved results
(each section on the page says when it ran), so fixing one section does not need a
full run and never drops the rest from the page. The page's text is laid out by
:mod:`bench._page`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as dt
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench._common import ROOT, fmt_duration, write_atomic
from bench._page import render

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass
class Section:
    """A section module found on disk: its name (the file's stem), title and order."""

    name: str
    path: Path
    title: str
    order: float
    package: str | None  # import as ``package.name``; None: load from the file
    error: str | None = None  # why the file could not be read; running it fails with this


def discover(directory: Path = HERE, package: str | None = "bench") -> list[Section]:
    """The section modules in ``directory``, in ``ORDER`` (then name).

    A module is a section when it has a top-level ``TITLE`` and a top-level ``def run``.
    Files are parsed, not imported, so a section's heavy imports (or import errors) only
    matter when it runs.
    """
    found = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (SyntaxError, UnicodeDecodeError, OSError) as exc:
            # still listed, so the page shows it failed
            found.append(
                Section(path.stem, path, path.stem, 1000.0, package, f"{type(exc).__name__}: {exc}")
            )
            continue
        values: dict[str, Any] = {}
        funcs = {
            n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                try:
                    values[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    values[node.targets[0].id] = None
        if "TITLE" in values and "run" in funcs:
            order = values.get("ORDER")
            found.append(
                Section(
                    path.stem,
                    path,
                    str(values["TITLE"] or path.stem),
                    float(order) if isinstance(order, (int, float)) else 1000.0,
                    package,
                )
            )
    return sorted(found, key=lambda s: (s.order, s.name))


def load(section: Section):
    """Import a section's module."""
    if section.package:
        return importlib.import_module(f"{section.package}.{section.name}")
    spec = importlib.util.spec_from_file_location(f"bench_section_{section.name}", section.path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_section(section: Section, quick: bool, out: Path) -> dict[str, Any]:
    """Run one section; never raises for the section's own errors (they become FAILED)."""
    t0, load_before = time.monotonic(), _load()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    try:
        if section.error:
            raise ImportError(f"{section.path.name} cannot be read: {section.error}")
        result = dict(load(section).run(quick, out))
        for key in ("what", "markdown"):
            if not isinstance(result.get(key), str):
                raise TypeError(f"run() returned no '{key}' string")
        json.dumps(result.get("data"), default=_jsonable)  # unsaveable data is the section's error
        result.setdefault("title", section.title)
        result.setdefault("seconds", time.monotonic() - t0)
        result.update(status="ok", error=None)
    except Exception as exc:  # noqa: BLE001 - one failing section must not stop the others
        result = {
            "title": section.title,
            "what": "",
            "markdown": "",
            "data": None,
            "seconds": time.monotonic() - t0,
            "status": "FAILED",
            "error": f"{type(exc).__name__}: {exc}".strip().replace("`", "'"),
            "traceback": traceback.format_exc(),
        }
    result.update(
        name=section.name,
        order=section.order,
        started=started,
        quick=quick,
        file=_shown(section.path),
        load_before=load_before,
        load_after=_load(),
    )
    return result


def run_isolated(section: Section, args: argparse.Namespace, results_dir: Path) -> dict[str, Any]:
    """Run one section in a fresh ``python -m bench --run-section NAME``; read back its JSON."""
    saved = results_dir / f"{section.name}.json"
    saved.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--run-section",
        section.name,
        "--results",
        str(results_dir),
    ]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--sections", str(args.sections.resolve())] if args.sections else []
    t0, load_before = time.monotonic(), _load()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    code = subprocess.run(cmd, cwd=ROOT, stdin=subprocess.DEVNULL).returncode
    try:
        return json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        r = {
            "title": section.title,
            "what": "",
            "markdown": "",
            "data": None,
            "seconds": time.monotonic() - t0,
            "status": "FAILED",
            "error": f"the section's process ended ({why}) without a result",
            "traceback": "",
            "name": section.name,
            "order": section.order,
            "quick": args.quick,
            "started": started,
            "file": _shown(section.path),
            "load_before": load_before,
            "load_after": _load(),
        }
        write_atomic(saved, json.dumps(r, indent=1) + "\n")
        return r


def _load() -> float | None:
    """The 1-minute load average: how busy the (shared) machine was."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-able")


# ---------------------------------------------------------------------- command line
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of every section (about a minute): writes BENCHMARKS.quick.md and "
        "bench/results-quick/ unless --out/--results say otherwise",
    )
    ap.add_argument(
        "--only", metavar="NAME[,NAME]", help="run only these sections (file names without .py)"
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="the page to write (default BENCHMARKS.md; --quick: BENCHMARKS.quick.md)",
    )
    ap.add_argument(
        "--results",
        type=Path,
        help="folder for plots and raw JSON (default bench/results; --quick: bench/results-quick)",
    )
    ap.add_argument("--sections", type=Path, help="find sections in this folder instead of bench/")
    ap.add_argument("--list", action="store_true", help="list the sections and exit")
    ap.add_argument("--run-section", help=argparse.SUPPRESS)  # the child process of one section
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    sections = discover(args.sections.resolve(), None) if args.sections else discover()
    if args.list:
        for s in sections:
            print(f"{s.order:6g}  {s.name:20s} {s.title}")
        return 0
    if args.run_section:
        (section,) = [s for s in sections if s.name == args.run_section]
        args.results.mkdir(parents=True, exist_ok=True)
        r = run_section(section, args.quick, args.results)
        write_atomic(
            args.results / f"{section.name}.json", json.dumps(r, indent=1, default=_jsonable) + "\n"
        )
        return 0
    chosen = sections
    if args.only:
        wanted = [n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {s.name for s in sections})
        if unknown:
            print(
                f"python -m bench: no section named {', '.join(unknown)}; "
                f"sections: {', '.join(s.name for s in sections)}",
                file=sys.stderr,
            )
            return 2
        chosen = [s for s in sections if s.name in wanted]
    out = args.out or ROOT / ("BENCHMARKS.quick.md" if args.quick else "BENCHMARKS.md")
    results_dir = (
        args.results or ROOT / "bench" / ("results-quick" if args.quick else "results")
    ).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    started, t0 = dt.datetime.now(dt.timezone.utc), time.monotonic()
    ran = {}
    for i, section in enumerate(chosen, 1):
        print(
            f"[bench] {section.name}: started ({i}/{len(chosen)}) at {dt.datetime.now():%H:%M:%S}",
            file=sys.stderr,
            flush=True,
        )
        r = run_isolated(section, args, results_dir)
        note = "" if r["status"] == "ok" else f": {r['error']}"
        print(
            f"[bench] {section.name}: {r['status']} in {fmt_duration(r['seconds'])}{note}",
            file=sys.stderr,
            flush=True,
        )
        ran[section.name] = r
    if not args.only:
        _remove_stale(results_dir, started.timestamp())
    results = [ran.get(s.name) or _saved(results_dir, s, args.quick) for s in sections]
    results = [r for r in results if r is not None]
    link = Path(os.path.relpath(results_dir, out.resolve().parent)).as_posix()
    command = " ".join(["python -m bench", *argv])
    page = render(
        results, command=command, started=started, total_s=time.monotonic() - t0, results_link=link
    )
    write_atomic(out, page.rstrip("\n") + "\n")
    failed = [name for name, r in ran.items() if r["status"] != "ok"]
    print(
        f"[bench] wrote {out} ({len(ran)} sections run, {len(results) - len(ran)} carried over, "
        f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}) in "
        f"{fmt_duration(time.monotonic() - t0)}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _saved(folder: Path, section: Section, quick: bool) -> dict[str, Any] | None:
    """A section's result from an earlier run of the same kind (quick or full), marked as
    carried over."""
    try:
        r = json.loads((folder / f"{section.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(r, dict) or r.get("quick") != quick or "status" not in r:
        return None
    return {**r, "carried": True, "order": section.order}


def _remove_stale(folder: Path, since: float) -> None:
    """After a run of every section: drop plots and JSON no section wrote this time."""
    for path in folder.iterdir():
        if path.suffix in (".svg", ".json") and path.is_file() and path.stat().st_mtime < since - 1:
            path.unlink()


if __name__ == "__main__":
    sys.exit(main())

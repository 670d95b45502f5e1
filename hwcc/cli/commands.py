"""The ``hwcc`` command. It maps flags to the Python API and prints; nothing more.

Bad input (flags, budgets, models, data files, an output that cannot be written) ends
with a short message on stderr (``hwcc COMMAND: error: ...`` and perhaps a hint line) and
exit code 2, never a traceback, and nothing is written. Flags are checked as they are
parsed, data and outputs before any work. Exit code 3: ``compile`` missed a budget (the
best model found is written) or ``apply --verify`` found the outputs changed (nothing is
written).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

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


COMPILE_EPILOG = """\
examples:
  hwcc compile zoo:lenet5-digits --target cpu --budget 50% --data zoo:digits
  hwcc compile zoo:lenet300-digits --target eie --budget 50% --data zoo:digits -o lenet300-eie
  hwcc compile model.onnx --target eyeriss --budget 2mJ --budget 5ms --data calib.npz --max-accuracy-drop 1%
  hwcc compile model.onnx --target tpu --budget 50% -o out --resume      (continue a killed run)
"""


class _Parser(argparse.ArgumentParser):
    """argparse, reporting errors in hwcc's form: the error line and a hint, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n  hint: see '{self.prog} --help'\n")


def _ranged(kind: Callable[[str], float], accepted: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse ``type`` that reads a number and refuses it outside ``ok`` (nan included).

    argparse then says ``argument --decay: must be a number in (0, 1], got 'nan'``.
    """

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text!r}")
        return value

    return parse


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    accepted = f"a whole number from {low} to {high}" if high is not None else f"a whole number, {low} or more"
    return _ranged(int, accepted, lambda v: v >= low and (high is None or v <= high))


SEED = _whole(0, 2**32 - 1)
POSITIVE = _whole(1)
# Larger batches are not inference, and the measured CPU target would run kernels that big.
BATCH = _whole(1, 4096)
COUNT = _whole(0)
BITS = _whole(1, 64)
FRACTION = _ranged(float, "a number in [0, 1]", lambda v: 0 <= v <= 1)
TOLERANCE = _ranged(float, "a finite number, 0 or more", lambda v: 0 <= v < math.inf)


def _input_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    from hwcc.ir.onnx_io import parse_input_shape

    return dict(parse_input_shape(s) for s in specs or ())


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="an .onnx file, or zoo:NAME")
    p.add_argument("--input-shape", action="append", metavar="NAME:DIMS",
                   help="fix a dynamic input, e.g. input:1x3x224x224 (repeatable)")


def cmd_inspect(args: argparse.Namespace) -> int:
    import hwcc
    from hwcc.cli import workload_view
    from hwcc.ir import workload

    graph = hwcc.load(args.model, input_shapes=_input_shapes(args.input_shape))
    if args.target:
        return _inspect_target(graph, args)
    if args.batch != 1 or args.data or args.act_density is not None:
        raise HwccError("--batch, --data and --act-density price a model on a target",
                        "add --target, e.g. --target eie")
    kw = {k: v for k, v in (("weight_bits", args.weight_bits), ("act_bits", args.act_bits)) if v is not None}
    w = workload.analyze(graph, **kw)
    if args.json:
        print(json.dumps(workload_view.summary_json(w), indent=2))
    else:
        print(workload_view.format_table(w, show_all=args.all))
    return 0


def _inspect_target(graph, args: argparse.Namespace) -> int:
    from hwcc.cli.costview import format_cost_table
    from hwcc.targets.base import CostContext, load_target

    if args.data and args.act_density is not None:
        raise HwccError("give --data or --act-density, not both")
    density, vectors = args.act_density, None
    target = load_target(args.target)
    if args.data:
        from hwcc.data.activations import capture_activations, measure_density

        data = _read_data(graph, args.data)
        density = measure_density(graph, data)
        if target.uses_activation_vectors:
            vectors = capture_activations(graph, data, max_samples=16)
    gc = target.cost(graph, CostContext(batch=args.batch, act_density=density, activations=vectors))
    if args.json:
        print(json.dumps(gc.to_dict(), indent=2))
    else:
        print(format_cost_table(gc, breakdown=args.breakdown, show_all=args.all))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    import hwcc
    from hwcc.ir import transform as pass_infra

    settings = {}
    for s in args.set or ():
        key, sep, value = s.partition("=")
        if not sep or not key:
            raise HwccError(f"cannot read --set {s!r}", "write it as knob=value, e.g. --set ratio=0.25")
        settings[key.strip()] = value.strip()
    pass_infra.get_pass(args.pass_name)  # unknown pass: fail before loading the model
    _check_output(args.output, folder=False)
    graph = hwcc.load(args.model, input_shapes=_input_shapes(args.input_shape))
    data = _read_data(graph, args.data) if args.data else None
    report = pass_infra.apply_by_hand(graph, args.pass_name, settings, verify=args.verify,
                                      rtol=args.rtol, atol=args.atol, data=data)
    print(report.summary())
    if report.verification_failed:
        print(f"hwcc apply: error: {args.pass_name} changed the model's outputs beyond --rtol {args.rtol:g} / "
              f"--atol {args.atol:g}; nothing written", file=sys.stderr)
        print("  hint: a lossy pass changes outputs by design: loosen --rtol/--atol, or leave out --verify",
              file=sys.stderr)
        return pass_infra.VERIFY_FAILED_EXIT
    if report.modified or args.always_write:
        hwcc.save(report.graph, args.output)
        print(f"wrote {args.output}")
    else:
        print(f"nothing written: {args.pass_name} did not change the model")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from hwcc import models

    if args.zoo_command == "list":
        entries = models.list_models()
        if args.json:
            print(json.dumps([e.to_dict() if hasattr(e, "to_dict") else vars(e) for e in entries], indent=2, default=str))
        else:
            print(models.format_table(entries))
        return 0
    _check_output(args.output, folder=False)
    path = models.export(args.name, args.output)
    print(f"wrote {path}")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from hwcc.cli.costview import format_targets
    from hwcc.targets.base import list_targets

    targets = list_targets()
    if args.json:
        print(json.dumps([t.describe() for t in targets], indent=2, default=str))
    else:
        print(format_targets(targets))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    import hwcc
    from hwcc.targets.base import load_target

    target = load_target(args.target)
    graph = hwcc.load(args.model, input_shapes=_input_shapes(args.input_shape))
    report = target.profile(graph, progress=True)
    print(report.summary() if hasattr(report, "summary") else report)
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    import hwcc
    from hwcc.search.budget import parse_budget
    from hwcc.cli.compile_view import Reporter, format_result, json_summary, parse_accuracy_drop, parse_passes

    if not args.budget:
        raise HwccError("no budget given", "add --budget, e.g. --budget 5ms, --budget 2mJ or --budget 50%")
    for b in args.budget:
        parse_budget(b)  # bad budgets are reported before anything else happens
    options = {"seed": args.seed}
    for key in ("max_iterations", "short_term_steps", "long_term_steps", "initial_reduction", "decay"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.passes:
        options["passes"] = parse_passes(args.passes)
    if args.max_accuracy_drop is not None:
        options["max_accuracy_drop"] = parse_accuracy_drop(args.max_accuracy_drop)
    output = args.output or _default_output(args.model, args.target)
    _check_output(output, folder=True)
    reporter = Reporter(sys.stderr)
    try:
        result = hwcc.compile(args.model, args.target, args.budget, data=args.data, holdout=args.holdout,
                              output=output, resume=args.resume, input_shapes=_input_shapes(args.input_shape),
                              progress=reporter, **options)
    finally:
        reporter.close()
    if args.json:
        print(json.dumps(json_summary(result), indent=2))
    else:
        print(format_result(result, explain=args.explain))
    return result.exit_code


def _read_data(graph, text: str) -> dict:
    """The model's input arrays from ``--data`` (an .npz, or bundled data: its train split).

    Read and checked before any work, as ``compile`` reads its data: a bad file is
    reported as such, not as a failure of the pass or the cost model that reads it.
    """
    from hwcc.data.evaluate import load_dataset, zoo_dataset

    data = zoo_dataset(graph, text, "train") if text.startswith("zoo:") else load_dataset(graph, text)
    return data.inputs


def _check_output(output: str, *, folder: bool) -> None:
    """Refuse an output path that cannot be written, before any work is done.

    The nearest folder that exists on the way to ``output`` must be a folder and accept a
    new file (a probe, created unnamed or removed at once, finds out: permission bits do
    not tell root, a read-only mount or /proc apart).

    Args:
        output: the -o path.
        folder: the output is a folder (``compile``'s artifact) rather than a file.
    """
    path = Path(output)
    if not output.strip():
        raise HwccError("the output path (-o) is empty", "name the file or folder to write")
    if path.is_dir() and not folder:
        raise HwccError(f"output {output} is a folder", f"name the file to write, e.g. -o {path / 'model.onnx'}")
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HwccError(f"cannot write {output}: {parent} is a file, not a folder", "choose another output path")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise HwccError(f"cannot write {output}: {parent} does not accept new files ({e.strerror})",
                        "choose an output path in a folder you can write") from None


def _split_budget(argv: Sequence[str]) -> HwccError | None:
    """The error for ``--budget 5 ms`` typed unquoted: the shell cut the budget in two.

    Looked for before argparse, which would take ``ms`` for an unknown argument or, in
    front of MODEL, for the model.
    """
    from hwcc.search.budget import is_split_budget

    words = list(argv)
    if next((w for w in words if not w.startswith("-")), None) != "compile":
        return None
    for i, word in enumerate(words):
        flag, eq, value = word.partition("=")
        if len(flag) < 3 or not "--budget".startswith(flag):
            continue
        if eq:
            number, after = value, words[i + 1:i + 2]
        else:
            number, after = (words[i + 1] if i + 1 < len(words) else ""), words[i + 2:i + 3]
        if after and is_split_budget(number, after[0]):
            return HwccError(f"budget '{number} {after[0]}' is two words: the shell split it at the space",
                             f"a budget is one word: --budget {number}{after[0]}")
    return None


def _default_output(model: str, target: str) -> str:
    stem = model[4:] if model.startswith("zoo:") else Path(model).stem
    return f"{stem}.{Path(target).stem}.hwcc"


def build_parser() -> argparse.ArgumentParser:
    from hwcc import __version__

    parser = _Parser(
        prog="hwcc",
        description="A hardware-aware compiler for neural networks: an ONNX model, a target and a "
        "budget in; a model that meets the budget on that target with the least accuracy lost out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hwcc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("compile", help="compile a model for a target to a budget",
                       description="Compile MODEL for TARGET so that it meets every BUDGET with the least "
                       "accuracy lost: a NetAdapt search over the passes, priced by the target's cost model, "
                       "each proposal fine-tuned and evaluated on held-out data. Writes the artifact folder "
                       "(model.onnx, hwcc.json, report.html, the target's payload). Exit code 0: every budget "
                       "met; 3: a budget or the accuracy floor was not met (the best model found is still "
                       "written); 2: bad input (flags, budgets, model, data, an output that cannot be "
                       "written), and nothing is written.",
                       epilog=COMPILE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    p.add_argument("--target", required=True, help="cpu, gpu, tpu, eie, eyeriss (see 'hwcc targets'), or a .toml")
    p.add_argument("--budget", action="append", metavar="BUDGET",
                   help="one word: 5ms, 2mJ, 1.5MB, 50%% (of the input's primary metric), 40%%energy; at least "
                   "0.001ns, 1pJ, 1B or 0.01%%; repeatable: all must hold")
    p.add_argument("--data", metavar="D.npz", help="one array per model input and optionally 'labels'; split "
                   "with the seed into fine-tune and held-out sets. zoo:digits: the bundled digits (train split "
                   "to fine-tune, test split held out). Without it: random inputs, and accuracy means agreement "
                   "with the original model on noise")
    p.add_argument("--holdout", metavar="H.npz", help="a held-out set of its own (then --data is all fine-tune "
                   "data; zoo:digits: its test split)")
    p.add_argument("--max-accuracy-drop", metavar="DROP", help="stop before accuracy falls more than this: "
                   "1%% or 0.01 (one point)")
    p.add_argument("--passes", metavar="LIST", help="comma list of what the search may change: prune (channels "
                   "and weights), prune_channels, prune_weights, lowrank, winograd (default: prune,lowrank)")
    p.add_argument("-o", "--output", metavar="OUT", help="artifact folder (default: NAME.TARGET.hwcc)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run that writes OUT")
    p.add_argument("--seed", metavar="N", type=SEED, default=0,
                   help="seeds the data split, fine-tuning and everything random; 0 to 2**32-1 (default 0)")
    p.add_argument("--max-iterations", metavar="N", type=POSITIVE,
                   help="most search iterations, 1 or more (default 40)")
    p.add_argument("--initial-reduction", metavar="R", type=_ranged(float, "a number in (0, 1)", lambda v: 0 < v < 1),
                   help="first step as a fraction of the input's cost, in (0, 1) (default 0.1)")
    p.add_argument("--decay", metavar="D", type=_ranged(float, "a number in (0, 1]", lambda v: 0 < v <= 1),
                   help="each step is this times the previous one, in (0, 1] (default 0.96)")
    p.add_argument("--short-term-steps", metavar="N", type=COUNT,
                   help="fine-tune steps per proposal, 0 or more (default 30)")
    p.add_argument("--long-term-steps", metavar="N", type=COUNT,
                   help="fine-tune steps after the search, 0 or more (default 200)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout instead of the table")
    p.add_argument("--explain", action="store_true", help="also list why proposals were rejected")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("inspect", help="per-layer table: MACs, parameters, bytes moved",
                       description="Show the workload of every layer of MODEL: dimensions, MACs, "
                       "parameters, weight density and bytes moved at the given bit widths, with a totals line.")
    _add_model_args(p)
    p.add_argument("--target", help="price each layer on a target (see 'hwcc targets'), or a target .toml file")
    p.add_argument("--batch", type=BATCH, default=1,
                   help="with --target: inputs per batch, 1 to 4096; costs are per batch")
    p.add_argument("--data", metavar="D.npz", help="with --target: measure activation density on this data "
                   "(zoo:digits: the bundled digits' train split)")
    p.add_argument("--act-density", type=FRACTION, help="with --target: fraction of non-zero activations, in [0, 1]")
    p.add_argument("--breakdown", action="store_true", help="with --target: each layer's breakdown entries under its row")
    p.add_argument("--all", action="store_true", help="also list data-movement and constant nodes")
    p.add_argument("--weight-bits", type=BITS, help="count weights at this width, 1 to 64 (default: their ONNX type)")
    p.add_argument("--act-bits", type=BITS, help="count activations at this width, 1 to 64 (default: their ONNX type)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("apply", help="run one pass by hand",
                       description="Run one pass on MODEL and write the result. With --verify, the original "
                       "and the transformed model run in onnxruntime on the same inputs (random, or --data), "
                       "and nothing is written unless their outputs agree within --rtol/--atol. Exit code 0: "
                       "done; 3: --verify found the outputs changed (nothing written); 2: bad input.")
    p.add_argument("pass_name", metavar="PASS", help="the pass to run (see the list below)")
    _add_model_args(p)
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write the transformed model to")
    p.add_argument("--set", action="append", metavar="KNOB=VALUE", help="a knob of the pass (repeatable)")
    p.add_argument("--data", metavar="D.npz", help="calibration/importance data: one array per model input "
                   "(zoo:digits: the bundled digits' train split); --verify compares on it too")
    p.add_argument("--verify", action="store_true", help="check outputs against the original in onnxruntime; "
                   "exit code 3 and nothing written if they differ")
    p.add_argument("--rtol", type=TOLERANCE, default=1e-4,
                   help="relative tolerance for --verify, 0 or more (default 1e-4)")
    p.add_argument("--atol", type=TOLERANCE, default=1e-5,
                   help="absolute tolerance for --verify, 0 or more (default 1e-5)")
    p.add_argument("--always-write", action="store_true", help="write the output even if the pass changed nothing")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("targets", help="list targets, their parameters and where their numbers come from")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("profile", help="build this device's latency lookup table",
                       description="Time every distinct layer configuration of MODEL on this machine and "
                       "add it to the target's lookup table (cached on disk, keyed by the device).")
    p.add_argument("--target", default="cpu", help="a measured target (default cpu)")
    p.add_argument("--model", required=True, metavar="MODEL", help="an .onnx file, or zoo:NAME")
    p.add_argument("--input-shape", action="append", metavar="NAME:DIMS")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("zoo", help="bundled models: list or export",
                       description="Bundled models: architectures for costing (exported from their torch "
                       "definitions on first use and cached) and small models trained here on the UCI digits.")
    zsub = p.add_subparsers(dest="zoo_command", metavar="list|export", required=True)
    z = zsub.add_parser("list", help="list the bundled models")
    z.add_argument("--json", action="store_true")
    z = zsub.add_parser("export", help="write a bundled model as an .onnx file")
    z.add_argument("name", metavar="NAME")
    z.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.set_defaults(func=cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    split = _split_budget(argv)
    if split is not None:
        return _report("compile", split)
    args, extras = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extras:
        return _report(args.command, HwccError(f"unrecognized arguments: {' '.join(extras)}",
                                               f"see 'hwcc {args.command} --help'"))
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warn_as(args.command)
            return args.func(args)
    except HwccError as e:
        return _report(args.command, e)
    except KeyboardInterrupt:
        print("hwcc: interrupted", file=sys.stderr)
        if args.command == "compile":
            out = args.output or _default_output(args.model, args.target)
            if Path(f"{out}.checkpoint", "state.json").is_file():
                print(f"  the search is checkpointed in {out}.checkpoint: add --resume to the same command to "
                      "continue it", file=sys.stderr)
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

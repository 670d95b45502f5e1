"""The commands besides ``compile``: ``inspect``, ``apply``, ``targets``, ``profile``, ``zoo``.

Each has a ``cmd_*`` function that runs it and its flags in :func:`add_parsers`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import hwcc
from hwcc.cli import apply_view, workload_view
from hwcc.cli.args import (
    BATCH,
    BITS,
    FRACTION,
    TOLERANCE,
    add_model_args,
    check_output,
    input_shapes,
    read_data,
)
from hwcc.cli.costview import format_cost_table, format_targets
from hwcc.data.activations import capture_activations, measure_density
from hwcc.errors import HwccError
from hwcc.ir import transform as pass_infra
from hwcc.ir import workload
from hwcc.ir.specialise import specialise
from hwcc.targets.base import CostContext, list_targets, load_target
from hwcc.targets.pricing import first_run


def _loaded(args: argparse.Namespace) -> hwcc.Graph:
    """MODEL loaded at its --input-shape, specialised to it (shapes onnx leaves unknown read
    from onnxruntime, shape arithmetic folded: :mod:`hwcc.ir.specialise`), with a notice."""
    done = specialise(hwcc.load(args.model, input_shapes=input_shapes(args.input_shape)))
    if done.notice:
        warnings.warn(done.notice, stacklevel=1)
    return done.graph


def cmd_inspect(args: argparse.Namespace) -> int:
    """Run ``hwcc inspect``: the workload table, or the costs on ``--target``."""
    graph = _loaded(args)
    if args.target:
        return _inspect_target(graph, args)
    if args.batch != 1 or args.data or args.act_density is not None:
        raise HwccError(
            "--batch, --data and --act-density price a model on a target",
            "add --target, e.g. --target eie",
        )
    kw = {
        k: v
        for k, v in (("weight_bits", args.weight_bits), ("act_bits", args.act_bits))
        if v is not None
    }
    w = workload.analyze(graph, **kw)
    if args.json:
        print(json.dumps(workload_view.summary_json(w), indent=2))
    else:
        print(workload_view.format_table(w, show_all=args.all))
    return 0


def _inspect_target(graph, args: argparse.Namespace) -> int:
    if args.data and args.act_density is not None:
        raise HwccError("give --data or --act-density, not both")
    density, vectors, sample = args.act_density, None, None
    target = load_target(args.target)
    if args.data:
        data = read_data(graph, args.data)
        sample = first_run(graph, data)  # decides the branch an If on the inputs takes
        density = measure_density(graph, data)
        if target.uses_activation_vectors:
            vectors = capture_activations(graph, data, max_samples=16)
    gc = target.price(graph, CostContext(args.batch, density, vectors, sample=sample))
    if args.json:
        print(json.dumps(gc.to_dict(), indent=2))
    else:
        print(format_cost_table(gc, breakdown=args.breakdown, show_all=args.all))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Run ``hwcc apply``: one pass by hand, verified with ``--verify``."""
    settings = {}
    for s in args.set or ():
        key, sep, value = s.partition("=")
        if not sep or not key:
            raise HwccError(
                f"cannot read --set {s!r}", "write it as knob=value, e.g. --set ratio=0.25"
            )
        settings[key.strip()] = value.strip()
    pass_infra.get_pass(args.pass_name)  # unknown pass: fail before loading the model
    check_output(args.output, folder=False)
    graph = hwcc.load(args.model, input_shapes=input_shapes(args.input_shape))
    data = read_data(graph, args.data) if args.data else None
    report = apply_view.apply_by_hand(
        graph,
        args.pass_name,
        settings,
        verify=args.verify,
        rtol=args.rtol,
        atol=args.atol,
        data=data,
    )
    print(report.summary())
    if report.verification_failed:
        print(
            f"hwcc apply: error: {args.pass_name} changed the model's outputs beyond --rtol "
            f"{args.rtol:g} / --atol {args.atol:g}; nothing written",
            file=sys.stderr,
        )
        print(
            "  hint: a lossy pass changes outputs by design: loosen --rtol/--atol, or leave out "
            "--verify",
            file=sys.stderr,
        )
        return pass_infra.VERIFY_FAILED_EXIT
    if report.modified or args.always_write:
        hwcc.save(report.graph, args.output)
        print(f"wrote {args.output}")
    else:
        print(f"nothing written: {args.pass_name} did not change the model")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    """Run ``hwcc zoo list`` or ``hwcc zoo export``."""
    from hwcc import models  # the zoo imports torch: only for this command

    if args.zoo_command == "list":
        entries = models.list_models()
        if args.json:
            print(
                json.dumps(
                    [e.to_dict() if hasattr(e, "to_dict") else vars(e) for e in entries],
                    indent=2,
                    default=str,
                )
            )
        else:
            print(models.format_table(entries))
        return 0
    check_output(args.output, folder=False)
    path = models.export(args.name, args.output)
    print(f"wrote {path}")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    """Run ``hwcc targets``: every target, its parameters and their sources."""
    targets = list_targets()
    if args.json:
        print(json.dumps([t.describe() for t in targets], indent=2, default=str))
    else:
        print(format_targets(targets))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Run ``hwcc profile``: measure MODEL's layers into the target's lookup table."""
    target = load_target(args.target)
    graph = _loaded(args)
    report = target.profile(graph, progress=True)
    print(report.summary() if hasattr(report, "summary") else report)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``inspect``, ``apply``, ``targets``, ``profile`` and ``zoo`` to ``sub``."""
    p = sub.add_parser(
        "inspect",
        help="per-layer table: MACs, parameters, bytes moved",
        description="Show the workload of every layer of MODEL: dimensions, MACs, "
        "parameters, weight density and bytes moved at the given bit widths, with "
        "a totals line.",
    )
    add_model_args(p)
    p.add_argument(
        "--target", help="price each layer on a target (see 'hwcc targets'), or a target .toml file"
    )
    p.add_argument(
        "--batch",
        type=BATCH,
        default=1,
        help="with --target: inputs per batch, 1 to 4096; costs are per batch",
    )
    p.add_argument(
        "--data",
        metavar="D.npz",
        help="with --target: measure activation density "
        "on this data (zoo:digits: the bundled digits' train split)",
    )
    p.add_argument(
        "--act-density",
        type=FRACTION,
        help="with --target: fraction of non-zero activations, in [0, 1]",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="with --target: each layer's breakdown entries under its row",
    )
    p.add_argument("--all", action="store_true", help="also list data-movement and constant nodes")
    p.add_argument(
        "--weight-bits",
        type=BITS,
        help="count weights at this width, 1 to 64 (default: their ONNX type)",
    )
    p.add_argument(
        "--act-bits",
        type=BITS,
        help="count activations at this width, 1 to 64 (default: their ONNX type)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "apply",
        help="run one pass by hand",
        description="Run one pass on MODEL and write the result. With --verify, the "
        "original and the transformed model run in onnxruntime on the same inputs "
        "(random, or --data), and nothing is written unless their outputs agree "
        "within --rtol/--atol. Exit code 0: done; 3: --verify found the outputs "
        "changed (nothing written); 2: bad input.",
    )
    p.add_argument("pass_name", metavar="PASS", help="the pass to run (see the list below)")
    add_model_args(p)
    p.add_argument(
        "-o", "--output", required=True, help="the .onnx file to write the transformed model to"
    )
    p.add_argument(
        "--set", action="append", metavar="KNOB=VALUE", help="a knob of the pass (repeatable)"
    )
    p.add_argument(
        "--data",
        metavar="D.npz",
        help="calibration/importance data: one array per "
        "model input (zoo:digits: the bundled digits' train split); --verify compares "
        "on it too",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="check outputs against the original in "
        "onnxruntime; exit code 3 and nothing written if they differ",
    )
    p.add_argument(
        "--rtol",
        type=TOLERANCE,
        default=1e-4,
        help="relative tolerance for --verify, 0 or more (default 1e-4)",
    )
    p.add_argument(
        "--atol",
        type=TOLERANCE,
        default=1e-5,
        help="absolute tolerance for --verify, 0 or more (default 1e-5)",
    )
    p.add_argument(
        "--always-write",
        action="store_true",
        help="write the output even if the pass changed nothing",
    )
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser(
        "targets", help="list targets, their parameters and where their numbers come from"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser(
        "profile",
        help="build this device's latency lookup table",
        description="Time every distinct layer configuration of MODEL on this "
        "machine and add it to the target's lookup table (cached on disk, keyed by "
        "the device).",
    )
    p.add_argument("--target", default="cpu", help="a measured target (default cpu)")
    p.add_argument("--model", required=True, metavar="MODEL", help="an .onnx file, or zoo:NAME")
    p.add_argument("--input-shape", action="append", metavar="NAME:DIMS")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "zoo",
        help="bundled models: list or export",
        description="Bundled models: architectures for costing (exported from "
        "their torch definitions on first use and cached) and small models trained "
        "here on the UCI digits.",
    )
    zsub = p.add_subparsers(dest="zoo_command", metavar="list|export", required=True)
    z = zsub.add_parser("list", help="list the bundled models")
    z.add_argument("--json", action="store_true")
    z = zsub.add_parser("export", help="write a bundled model as an .onnx file")
    z.add_argument("name", metavar="NAME")
    z.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.set_defaults(func=cmd_zoo)

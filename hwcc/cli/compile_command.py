"""``hwcc compile``: its flags (:func:`add_parser`) and what it runs (:func:`cmd_compile`).

Exit code 0: every budget met; 3: a budget or the accuracy floor was not met (the best
model found is still written); 2: bad input, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import hwcc
from hwcc.cli.args import COUNT, POSITIVE, SEED, add_model_args, check_output, input_shapes, ranged
from hwcc.cli.compile_view import (
    Reporter,
    format_result,
    json_summary,
    parse_accuracy_drop,
    parse_passes,
    passes_help,
)
from hwcc.data.metrics import METRICS
from hwcc.errors import HwccError
from hwcc.ir.onnx_io import zoo_name
from hwcc.search.budget import is_split_budget, parse_budget

COMPILE_EPILOG = (
    "examples:\n"
    "  hwcc compile zoo:lenet5-digits --target cpu --budget 50% --data zoo:digits\n"
    "  hwcc compile zoo:lenet300-digits --target eie --budget 50% --data zoo:digits "
    "-o lenet300-eie\n"
    "  hwcc compile model.onnx --target eyeriss --budget 2mJ --budget 5ms --data calib.npz "
    "--max-accuracy-drop 1%\n"
    "  hwcc compile model.onnx --target tpu --budget 50% -o out --resume"
    "      (continue a killed run)\n"
)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Writes the ``--passes`` help from the pass registry when the help is shown: every
    command builds this parser, and only ``hwcc compile --help`` needs the passes discovered."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "--passes" in action.option_strings:
            return passes_help().replace("%", "%%")
        return super()._get_help_string(action)


def cmd_compile(args: argparse.Namespace) -> int:
    """Run ``hwcc compile``: check the budgets and the output, then :func:`hwcc.compile`."""
    if not args.budget:
        raise HwccError(
            "no budget given", "add --budget, e.g. --budget 5ms, --budget 2mJ or --budget 50%"
        )
    budgets = [parse_budget(b) for b in args.budget]  # reported before anything else happens
    options = {"seed": args.seed}
    for key in (
        "max_iterations",
        "short_term_steps",
        "long_term_steps",
        "lr",
        "criterion",
        "initial_reduction",
        "decay",
        "one_shot",
        "int8_start",
    ):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.passes:
        options["passes"] = parse_passes(args.passes)
    if args.max_accuracy_drop is not None:
        options["max_accuracy_drop"] = parse_accuracy_drop(args.max_accuracy_drop)
    output = args.output or default_output(args.model, args.target)
    check_output(output, folder=True)
    reporter = Reporter(sys.stderr)
    try:
        result = hwcc.compile(
            args.model,
            args.target,
            budgets,
            data=args.data,
            holdout=args.holdout,
            metric=args.metric,
            output=output,
            resume=args.resume,
            input_shapes=input_shapes(args.input_shape),
            progress=reporter,
            **options,
        )
    finally:
        reporter.close()
    if args.json:
        print(json.dumps(json_summary(result), indent=2))
    else:
        print(format_result(result, explain=args.explain))
    return result.exit_code


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``compile`` and its flags to the subcommands ``sub``."""
    p = sub.add_parser(
        "compile",
        help="compile a model for a target to a budget",
        description="Compile MODEL for TARGET so that it meets every BUDGET with the least "
        "accuracy lost: a NetAdapt search over the passes, priced by the target's cost model, "
        "each proposal fine-tuned and evaluated on held-out data. Writes the artifact folder "
        "(model.onnx, hwcc.json, report.html, the target's payload). Exit code 0: every budget "
        "met; 3: a budget or the accuracy floor was not met (the best model found is still "
        "written); 2: bad input (flags, budgets, model, data, an output that cannot be "
        "written), and nothing is written.",
        epilog=COMPILE_EPILOG,
        formatter_class=_HelpFormatter,
    )
    add_model_args(p)
    p.add_argument(
        "--target",
        required=True,
        help="cpu, gpu, tpu, eie, eyeriss (see 'hwcc targets'), or a .toml",
    )
    p.add_argument(
        "--budget",
        action="append",
        metavar="BUDGET",
        help="one word: 5ms, 2mJ, 1.5MB, 50%% (of the input's primary metric), "
        "40%%energy; at least 0.001ns, 1pJ, 1B or 0.01%%; latency and energy count the chip "
        "and its host, chip:2mJ or chip:40%%energy the chip alone; repeatable: all must hold",
    )
    p.add_argument(
        "--data",
        metavar="D.npz",
        help="one array per model input and optionally 'labels' (one per sample). For an "
        "input of shape S, an array [N, *S[1:]] holds samples on axis 0 (runs of S[0]); "
        "[R, *S] holds R whole runs (a state whose batch is not on axis 0, a scalar per "
        "run as [R]); exactly S is one run fed to every run (a state at zeros, a 0-d "
        "scalar); all arrays give the same number of runs. Split by runs with the seed "
        "into fine-tune and held-out sets. zoo:digits: the bundled digits (train split "
        "to fine-tune, test split held out). Without it: random inputs, and accuracy "
        "means agreement with the original model on noise",
    )
    p.add_argument(
        "--holdout",
        metavar="H.npz",
        help="a held-out set of its own (then --data is all fine-tune data; "
        "zoo:digits: its test split)",
    )
    p.add_argument(
        "--metric",
        choices=("auto", *METRICS),
        default="auto",
        help="how accuracy is measured: top1 (classes on axis 1), per-step (a decision per "
        "step: CTC, taggers), binary (one probability per sample, at 0.5), cosine (embeddings, "
        "dense maps); against the labels when the data has them, else against the original "
        "model. auto (default) picks from the original's output",
    )
    p.add_argument(
        "--max-accuracy-drop",
        metavar="DROP",
        help="stop before accuracy falls more than this: 1%% or 0.01 (one point); "
        "default 5%%; none: no floor",
    )
    p.add_argument(
        "--passes",
        metavar="LIST",
        help="comma list of what the search may change",  # the passes: see _HelpFormatter
    )
    p.add_argument(
        "-o", "--output", metavar="OUT", help="artifact folder (default: NAME.TARGET.hwcc)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the interrupted run that writes OUT"
    )
    p.add_argument(
        "--seed",
        metavar="N",
        type=SEED,
        default=0,
        help="seeds the data split, fine-tuning and everything random; 0 to 2**32-1 (default 0)",
    )
    p.add_argument(
        "--max-iterations",
        metavar="N",
        type=POSITIVE,
        help="most search iterations, 1 or more (default 40)",
    )
    p.add_argument(
        "--initial-reduction",
        metavar="R",
        type=ranged(float, "a number in (0, 1)", lambda v: 0 < v < 1),
        help="first step as a fraction of the input's cost, in (0, 1) (default 0.1)",
    )
    p.add_argument(
        "--decay",
        metavar="D",
        type=ranged(float, "a number in (0, 1]", lambda v: 0 < v <= 1),
        help="each step is this times the previous one, in (0, 1] (default 0.96)",
    )
    p.add_argument(
        "--one-shot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start by pruning every channel group at once, each by its measured "
        "sensitivity, then refine one layer per iteration (default: off)",
    )
    p.add_argument(
        "--int8-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="on the cpu, start with every large MatMul and Gemm in dynamic int8 when that "
        "is priced faster and keeps accuracy above the floor (default: on)",
    )
    p.add_argument(
        "--short-term-steps",
        metavar="N",
        type=COUNT,
        help="fine-tune steps per proposal, 0 or more (default 30)",
    )
    p.add_argument(
        "--long-term-steps",
        metavar="N",
        type=COUNT,
        help="fine-tune steps after the search, 0 or more (default: six epochs of the "
        "fine-tune data, 200 to 2000 steps, fewer for a heavy model)",
    )
    p.add_argument(
        "--criterion",
        choices=("l2", "l1", "activation"),
        help="how pruning picks the channels that go: activation, the smallest mean "
        "activations on the fine-tune data (default; keeps channels that carry a constant "
        "the next layer needs), or l2/l1, the smallest filters (NetAdapt's; no measuring)",
    )
    p.add_argument(
        "--lr",
        metavar="RATE",
        type=ranged(float, "a learning rate above 0", lambda v: v > 0),
        help="the fine-tunes' peak learning rate (default: Adam's 1e-3 with labels; without, "
        "1e-4, or less where ten steps at it move the unchanged model off itself)",
    )
    p.add_argument(
        "--json", action="store_true", help="print a JSON summary on stdout instead of the table"
    )
    p.add_argument("--explain", action="store_true", help="also list why proposals were rejected")
    p.set_defaults(func=cmd_compile)


def split_budget(argv: Sequence[str]) -> HwccError | None:
    """The error for ``--budget 5 ms`` typed unquoted: the shell cut the budget in two.

    Looked for before argparse, which would take ``ms`` for an unknown argument or, in
    front of MODEL, for the model.
    """
    words = list(argv)
    if next((w for w in words if not w.startswith("-")), None) != "compile":
        return None
    for i, word in enumerate(words):
        flag, eq, value = word.partition("=")
        if len(flag) < 3 or not "--budget".startswith(flag):
            continue
        if eq:
            number, after = value, words[i + 1 : i + 2]
        else:
            number, after = (words[i + 1] if i + 1 < len(words) else ""), words[i + 2 : i + 3]
        if after and is_split_budget(number, after[0]):
            return HwccError(
                f"budget '{number} {after[0]}' is two words: the shell split it at the space",
                f"a budget is one word: --budget {number}{after[0]}",
            )
    return None


def default_output(model: str, target: str) -> str:
    """The artifact folder when ``-o`` is not given: ``NAME.TARGET.hwcc``."""
    name = zoo_name(model)
    stem = Path(model).stem if name is None else name
    return f"{stem}.{Path(target).stem}.hwcc"

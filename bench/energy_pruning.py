"""Energy-aware against magnitude pruning on the Eyeriss model (Yang, Chen, Sze, CVPR 2017).

The paper prunes AlexNet to 3.7x less energy on Eyeriss with energy-aware pruning, against
2.1x for magnitude pruning as in Deep Compression, both under 1 % top-5 loss. Two
measurements here, both priced by hwcc's ``eyeriss`` target:

1. **Digits models at equal accuracy.** Each bundled digits model, cleaned up as
   ``hwcc compile`` does (BatchNormalization folded), is pruned two ways:

   * magnitude pruning: every layer to the same density ``d`` (the ``prune_weights`` pass,
     uniform), swept over ``d``;
   * hwcc's energy-aware search (``hwcc.compile`` with an energy budget: NetAdapt, layers
     visited most-energy-first), its model after every iteration kept.

   Every point then gets fine-tuning to the same total number of steps ``T`` (the search's
   points already had ``S`` steps per iteration along their path; they get the rest), is put
   in Eyeriss' legal form (16-bit fixed point) and is scored on the digits test split in
   onnxruntime. Reported: the largest energy reduction ``E0/E`` each method reaches while
   keeping accuracy at or above the dense model's minus one point.

2. **AlexNet at equal weight count** (no ImageNet here, so no accuracy): the dense model,
   Deep Compression's per-layer densities, and an energy-aware *allocation* of the same
   number of weights (greedy: remove weights where Eyeriss' per-layer energy falls the most
   per weight removed), priced at batch 1 with published activation densities.

This module holds how much is run and the digits part of the page; the constants, the
settings' type and the pure pieces are :mod:`bench._energy_common`, the experiments
:mod:`bench._energy_digits` and :mod:`bench._energy_alexnet` (which also writes the AlexNet
part of the page).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import fmt_times, md_table, one_torch_thread
from bench._energy_common import (
    DEFAULT_PASSES,
    LOOSE_DROP,
    PAPER_ENERGY_AWARE,
    PAPER_MAGNITUDE,
    SEED,
    Settings,
    best_at_floor,
    passes_label,
)
from bench._energy_common import greedy_allocation as greedy_allocation  # the tests import it

TITLE = "Energy-aware against magnitude pruning on Eyeriss"
ORDER = 10

QUICK = Settings(
    models=(("lenet300-digits", (("prune_weights",),)),),
    densities=(0.6, 0.4, 0.25, 0.15),
    budget="25%energy",
    max_iterations=5,
    short_term_steps=10,
    total_steps=60,
    max_units=2,
    stop_drop=None,
    alexnet_apply=False,
)
FULL = Settings(
    models=(
        ("lenet300-digits", (("prune_weights",), DEFAULT_PASSES)),
        ("lenet5-digits", (("prune_weights",), DEFAULT_PASSES)),
        ("mobilenet-digits", (DEFAULT_PASSES,)),
        ("resnet-digits", (DEFAULT_PASSES,)),
    ),
    densities=(0.8, 0.6, 0.4, 0.25, 0.15, 0.08),
    budget="25%energy",
    max_iterations=7,
    short_term_steps=20,
    total_steps=160,
    max_units=6,
    stop_drop=None,
    alexnet_apply=True,
)


# ---------------------------------------------------------------------- the section
ESTIMATIONS = ("chip", "paper")  # eyeriss.toml's estimation: as the chip runs, as CVPR 2017


def run(quick: bool, out: Path) -> dict[str, Any]:
    # The experiments import hwcc (and torch): when the section runs, not with its pure pieces.
    from bench._energy_alexnet import alexnet, alexnet_markdown
    from bench._energy_digits import digits
    from hwcc.targets.base import load_target  # hwcc only when the section runs

    s = QUICK if quick else FULL
    t0 = time.monotonic()
    by: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for est in ESTIMATIONS:
            target = load_target(_target_file(load_target("eyeriss"), est, Path(tmp)))
            with one_torch_thread():
                found = digits(s, out, target, "" if est == "chip" else f"_{est}")
            by[est] = {"digits": found["models"], "plots": found["plots"]}
            by[est]["alexnet"] = alexnet(s, target)
    data = {
        "settings": dataclasses.asdict(s),
        "estimations": by,
        "paper": {"energy_aware": PAPER_ENERGY_AWARE, "magnitude": PAPER_MAGNITUDE},
        "seconds": time.monotonic() - t0,
    }
    body = (
        _markdown(by) + "\n" + "\n".join(alexnet_markdown({k: v["alexnet"] for k, v in by.items()}))
    )
    return {"title": TITLE, "what": _what(s), "markdown": body, "data": data}


def _target_file(bundled, estimation: str, folder: Path) -> Path:
    """The bundled Eyeriss TOML with ``estimation`` set, as a file ``hwcc.compile`` takes
    (named ``eyeriss.toml``, so the target keeps its name)."""
    text = Path(bundled.source).read_text()
    line = f'estimation = "{bundled.estimation}"'
    if line not in text:
        raise RuntimeError(f"{bundled.source} has no line {line!r} to set the estimation in")
    path = folder / estimation / "eyeriss.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(line, f'estimation = "{estimation}"'))
    return path


def _what(s: Settings) -> str:
    runs = "; ".join(f"`{m}`: " + " and ".join(passes_label(p) for p in ps) for m, ps in s.models)
    densities = ", ".join(f"{d:g}" for d in s.densities)
    applied = (
        "the first two applied with `prune_weights` (`layer_density`) and priced as graphs, "
        "the rest layer by layer."
        if s.alexnet_apply
        else "priced layer by layer (the pass is not applied in quick mode)."
    )
    return (
        "Target `eyeriss` (legal form 16-bit fixed point) under both settings of its "
        "`estimation` (eyeriss.toml): `chip`, as the JSSC chip runs, and `paper`, as Yang, Chen, "
        "Sze (CVPR 2017) estimate energy (only effectual MACs, compressed weights in DRAM); "
        "every experiment runs once under each, the search with the setting's TOML. "
        f"Seed {SEED}. Digits models ({runs}), "
        "BatchNormalization folded first as `hwcc compile` does; fine-tuning on the digits train "
        "split (1438 images, SGD, lr 0.01, batch 32, one torch thread), accuracy on the test "
        "split (359 images) in onnxruntime. Magnitude pruning: `prune_weights`, the same density "
        f"in every layer: {densities}. hwcc: one `hwcc.compile(model, <eyeriss TOML>, "
        f"'{s.budget}', "
        f"data='zoo:digits', max_iterations={s.max_iterations}, "
        f"short_term_steps={s.short_term_steps}, max_units={s.max_units}, "
        f"max_accuracy_drop={s.stop_drop}, long_term_steps=0, one_shot=False)` per pass set "
        "(NetAdapt's iterations without the one-shot start, which would jump to the budget in "
        "one point); its model after each iteration is a point. Every point, of either "
        "method, is fine-tuned to "
        f"{s.total_steps} steps in all, legalized, priced and scored. AlexNet (`zoo:alexnet`, "
        "two-group, 227x227, batch 1, activation densities from JSSC 2017 Table V and EIE Table "
        "III): dense, Deep Compression's per-layer densities, and a greedy energy-aware "
        "allocation of as many weights; " + applied
    )


def _markdown(by: dict[str, Any]) -> str:
    lines = [
        "**Digits models: energy reduction at equal accuracy, under each estimation.** The "
        "largest `E0/E` among the points whose test accuracy is at least the dense model's minus "
        "one point (the dense model itself counts, at 1x; one test image is 0.28 points, so the "
        "last column repeats the chip's with a two-point floor). *Chip* is the Eyeriss chip's "
        "energy, the quantity the paper reports; *system* adds the host that runs what Eyeriss "
        "cannot (pooling, Add, global average pooling): the embedded core the target declares "
        "(`host-45nm`, priced per operation and per DRAM byte at 45 nm). The system energy is "
        "what `hwcc compile` budgets and searches on by default (`chip:` budgets the chip alone). "
        "*chip* estimation: as the JSSC chip runs (zero input activations gate the MAC; zero "
        "weights are read and multiplied); *paper*: as CVPR 2017 estimates (a MAC counts only "
        "when weight and input are both non-zero, with its RF accesses; weights compressed in "
        "DRAM).",
        "",
    ]
    rows = []
    for est, got in by.items():
        for mod in got["digits"]:
            for run in mod["runs"]:
                pts = [mod["dense"], *run["points"]]
                cells = []
                for key, floor in (
                    ("chip_energy_j", mod["floor"]),
                    ("energy_j", mod["floor"]),
                    ("chip_energy_j", mod["accuracy0"] - LOOSE_DROP),
                ):
                    b = best_at_floor(pts, floor, key)
                    cells.append(
                        f"{fmt_times(b[f'reduction_{key}'])} ({b['label']}, {b['accuracy']:.2%})"
                    )
                rows.append(
                    (
                        est,
                        f"`{mod['model']}`",
                        run["method"],
                        f"{mod['accuracy0']:.2%}",
                        *cells,
                        len(run["points"]),
                    )
                )
    headers = [
        "estimation",
        "model",
        "method",
        "dense accuracy",
        "chip E0/E, -1 point (point, accuracy)",
        "system E0/E, -1 point",
        "chip E0/E, -2 points",
        "points",
    ]
    lines += [md_table(headers, rows, "lllllllr"), ""]
    for est, got in by.items():
        lines += [f"*{est}* estimation. " + _headline(got["digits"]), ""]
    lines += _digits_findings(by) + [""]
    for got in by.values():
        lines += got["plots"]
    return "\n".join(lines + [""])


def _headline(models: list[dict[str, Any]]) -> str:
    """One sentence per model: each method's chip E0/E at the one-point floor, the best named."""
    parts = []
    for mod in models:
        got = []
        for run in mod["runs"]:
            b = best_at_floor([mod["dense"], *run["points"]], mod["floor"], "chip_energy_j")
            got.append((b["reduction_chip_energy_j"], run["method"]))
        top = max(got)
        shown = ", ".join(f"{m} {fmt_times(v)}" for v, m in got)
        if top[0] < 1.005:
            parts.append(f"`{mod['model']}`: no method saves chip energy at the floor ({shown}).")
        else:
            parts.append(f"`{mod['model']}`: {top[1]} saves the most ({shown}).")
    return "Chip E0/E at the one-point floor: " + " ".join(parts)


def _digits_findings(by: dict[str, Any]) -> list[str]:
    out = [_model_finding(mod, est) for est, got in by.items() for mod in got["digits"]]
    differ = {
        est: sum(
            not p["legal_price_equals_float"]
            for mod in got["digits"]
            for r in mod["runs"]
            for p in r["points"]
        )
        for est, got in by.items()
    }
    if any(differ.values()):
        out.append(
            "- Points priced differently in their legal form (16-bit fixed point) than in "
            "float: "
            + ", ".join(f"{n} under *{est}*" for est, n in differ.items())
            + ": rounding to 16-bit fixed point zeroes a few of the smallest weights (the legal "
            "form's weight count is below the float one's), which only the paper's count skips."
        )
    else:
        out.append(
            "- Every point priced identically in float and in the legal form (16-bit fixed "
            "point): Eyeriss prices every value as a 16-bit word, whatever its type."
        )
    out.append(
        "- Host energies are modelled as the chip's are (`host-45nm`: 70 pJ per operation, "
        "160 pJ per DRAM byte), so neither moves between runs or machines; the host is the "
        "same under both estimations, which differ on the chip only."
    )
    out.append(
        "- Why weight pruning buys so little under the *chip* estimation: the JSSC chip gates "
        "MACs on zero *input activations* only; a zero weight is still read and multiplied, and "
        "saves only its share of the DRAM stream (run-length coded). Layers whose energy is "
        "mostly weights read from DRAM (FC layers run once per image) gain; convolutions, which "
        "reuse each weight many times, barely do. Under the *paper* estimation a zero weight "
        "also removes its MACs and their RF accesses, so convolutions gain in proportion to "
        "the weights removed. Channel pruning (hwcc's default passes) shrinks activations and "
        "MACs under both."
    )
    return out


def _model_finding(mod: dict[str, Any], est: str) -> str:
    host = 1 - mod["chip_energy0_j"] / mod["energy0_j"]
    mag = max(mod["runs"][0]["points"], key=lambda p: p["reduction_chip_energy_j"])
    line = (
        f"- *{est}*, `{mod['model']}`: dense {mod['chip_energy0_j'] * 1e6:.2f} uJ on the chip, "
        f"{mod['energy0_j'] * 1e6:.1f} uJ in total ({host:.0%} on the host). The sparsest "
        f"magnitude point ({mag['label']}) cuts chip energy "
        f"{fmt_times(mag['reduction_chip_energy_j'])}, at {mag['accuracy']:.2%}."
    )
    for run in mod["runs"][1:]:
        line += (
            f" {run['method']}: {run['iterations']} iterations in {run['search_s']:.0f} s, "
            f"stopped: {run['stop']}."
        )
    steps = [r["first_step"] for r in mod["runs"][1:] if r.get("first_step")]
    if steps and host > 0.5:
        ask = steps[0] * mod["energy0_j"] / mod["chip_energy0_j"]
        line += (
            f" The search's first step asks for {steps[0]:.1%} of the total energy, "
            f"{ask:.1f}x the chip's whole energy"
        )
        line += (
            ": only cuts that shrink the host's work (whole channels feeding pooling and Add) "
            "can meet it."
            if ask >= 1
            else " in one step."
        )
    return line

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
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench._common import md_table, one_torch_thread, save_svg

TITLE = "Energy-aware against magnitude pruning on Eyeriss"
ORDER = 10

SEED = 0
FLOOR_DROP = 0.01   # "equal accuracy": at least the dense model's accuracy minus one point
LOOSE_DROP = 0.02   # the same with two points, to show how much one image at the floor matters
PLOT_DEPTH = 0.10   # plots show accuracy down to the dense model's minus ten points

# Yang, Chen, Sze, CVPR 2017 (abstract and Sec. 5): AlexNet energy reduction, <1 % top-5 loss.
PAPER_ENERGY_AWARE = 3.7
PAPER_MAGNITUDE = 2.1

# Han, Pool, Tran, Dally, NIPS 2015, Table 4 (the pruning stage of Deep Compression, Han, Mao,
# Dally, ICLR 2016, Table 4): AlexNet weights kept per layer, 61 M -> 6.7 M (9x). The FC
# densities are also EIE Table III's (Han et al., ISCA 2016: Alex-6/7/8 at 9 %, 9 %, 25 %).
DEEP_COMPRESSION = (("conv1", 0.84), ("conv2", 0.38), ("conv3", 0.35), ("conv4", 0.37), ("conv5", 0.37),
                    ("fc6", 0.09), ("fc7", 0.09), ("fc8", 0.25))
# Fraction of non-zero input activations per layer: CONV1-5 = 1 - "zeros in ifmaps" of JSSC
# 2017 Table V (Chen et al.); FC6-8 = EIE Table III activation % (Alex-6/7/8).
ALEXNET_ACT_DENSITY = (1 - 0.0001, 1 - 0.387, 1 - 0.725, 1 - 0.793, 1 - 0.776, 0.351, 0.353, 0.375)
REFERENCE_DENSITY = 0.1   # AlexNet's per-layer table: energy saved per weight, dense -> 10 %
DENSITY_GRID = tuple(round(1 - 0.02 * i, 2) for i in range(50))   # 1.00, 0.98, ... 0.02

DEFAULT_PASSES = ("prune_channels", "prune_weights", "low_rank")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much is run.

    Attributes:
        models: digits models and, for each, the pass sets hwcc's search may use.
        densities: the magnitude-pruning sweep (fraction of weights kept, every layer).
        budget: the search's energy budget (relative to the dense model).
        max_iterations: search iterations (one point each).
        short_term_steps: the search's fine-tune steps per proposal.
        total_steps: fine-tune steps every point has had in all.
        max_units: proposals per iteration (most-energy-first), 0 for all.
        stop_drop: the search stops before its accuracy falls this far (a fraction); None:
            it runs every iteration (each one is a point, fine-tuned further afterwards).
        alexnet_apply: apply ``prune_weights`` to AlexNet and price the graphs (10-30 s per
            allocation on two shared cores), besides pricing layer by layer.
    """

    models: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]
    densities: tuple[float, ...]
    budget: str
    max_iterations: int
    short_term_steps: int
    total_steps: int
    max_units: int
    stop_drop: float | None
    alexnet_apply: bool


QUICK = Settings(models=(("lenet300-digits", (("prune_weights",),)),), densities=(0.6, 0.4, 0.25, 0.15),
                 budget="25%energy", max_iterations=5, short_term_steps=10, total_steps=60, max_units=2,
                 stop_drop=None, alexnet_apply=False)
FULL = Settings(models=(("lenet300-digits", (("prune_weights",), DEFAULT_PASSES)),
                        ("lenet5-digits", (("prune_weights",), DEFAULT_PASSES)),
                        ("mobilenet-digits", (DEFAULT_PASSES,)),
                        ("resnet-digits", (DEFAULT_PASSES,))),
                densities=(0.8, 0.6, 0.4, 0.25, 0.15, 0.08), budget="25%energy", max_iterations=7,
                short_term_steps=20, total_steps=160, max_units=6, stop_drop=None, alexnet_apply=True)


# ---------------------------------------------------------------------- pure pieces
def best_at_floor(points: Sequence[Mapping[str, float]], floor: float, key: str) -> Mapping[str, float] | None:
    """The point with the largest ``reduction_<key>`` whose accuracy is at least ``floor``."""
    ok = [p for p in points if p["accuracy"] >= floor - 1e-12]
    return max(ok, key=lambda p: p[f"reduction_{key}"], default=None)


def greedy_allocation(sizes: Mapping[str, int], energy: Callable[[str, float], float], keep: int,
                      grid: Sequence[float] = DENSITY_GRID, floor: float = 0.0) -> dict[str, float]:
    """Per-layer densities keeping ``keep`` weights in all, chosen for energy.

    Greedy on the lower convex hull of each layer's energy-against-weights curve: each step
    moves one layer from its density ``d`` to a lower grid density ``d'`` (``>= floor``),
    the move that saves the most energy per weight removed,

        (energy(l, d) - energy(l, d')) / (n_l · (d - d')),

    so a flat stretch (no saving from 1.0 to 0.7, say) does not stop the layer from being
    pruned further down. The last move stops exactly at ``keep`` (a density between two
    grid points). Ties go to the earlier layer and then to the larger density.

    Args:
        sizes: layer name -> weights in the layer.
        energy: ``energy(layer, density)``, the layer's energy at that density.
        keep: total weights to keep.
        grid: densities a layer may move to, besides the exact last one.
        floor: no layer goes below this density.
    """
    dens = {name: 1.0 for name in sizes}
    kept = float(sum(sizes.values()))
    memo: dict[tuple[str, float], float] = {}

    def e(name: str, d: float) -> float:
        if (name, d) not in memo:
            memo[(name, d)] = energy(name, d)
        return memo[(name, d)]

    while kept > keep + 0.5:
        best = None
        for name, n in sizes.items():
            d = dens[name]
            for lower in grid:
                if lower >= d - 1e-12 or lower < floor - 1e-12:
                    continue
                slope = (e(name, d) - e(name, lower)) / (n * (d - lower))
                if best is None or slope > best[0] + 1e-30:
                    best = (slope, name, lower)
        if best is None:
            break  # every layer at the floor
        _, name, lower = best
        removed = sizes[name] * (dens[name] - lower)
        if removed > kept - keep:
            lower = dens[name] - (kept - keep) / sizes[name]
            removed = kept - keep
        dens[name] = lower
        kept -= removed
    return dens


# ---------------------------------------------------------------------- helpers


def _cleanup(graph):
    from hwcc.api import CLEANUP
    from hwcc.ir.transform import PassContext, PassManager

    return PassManager(list(CLEANUP), PassContext(seed=SEED, verify=True)).run(graph).graph


def _legalize(graph, target, calib):
    """``graph`` in the target's legal form (Eyeriss: 16-bit fixed point), as hwcc compile does."""
    from hwcc.ir.transform import PassContext, get_pass

    for name, knobs in (target.legal_form or {}).items():
        ctx = PassContext(knobs={name: dict(knobs)}, data=calib, seed=SEED, verify=False)
        graph = get_pass(name)(graph, ctx).graph
    return graph


def _price(target, graph, ctx=None) -> dict[str, float]:
    c = target.price(graph, ctx)
    return {"energy_j": float(c.energy_j), "chip_energy_j": float(c.energy_j - c.host_energy_j)}


def _weights_kept(graph) -> float:
    from hwcc.ir.workload import analyze

    w = [(x.weight_density, x.params) for x in analyze(graph).layers if x.kind in _WEIGHTED and x.params]
    return sum(d * n for d, n in w) / max(sum(n for _, n in w), 1)


_WEIGHTED = ("conv", "grouped_conv", "depthwise_conv", "gemm", "matmul")


# ---------------------------------------------------------------------- digits
class _Digits:
    """One digits model: its data, evaluator, legal form and dense reference."""

    def __init__(self, name: str, target):
        import hwcc
        from hwcc.data.evaluate import Evaluator, resolve_data

        self.name, self.target = name, target
        self.graph = _cleanup(hwcc.load(f"zoo:{name}"))
        self.tune, held, _ = resolve_data(self.graph, "zoo:digits", None, SEED)
        self.evaluator = Evaluator(self.graph, held)
        self.calib = {k: v[:64] for k, v in self.tune.inputs.items()}
        dense = self.point(self.graph, 0, "dense", "dense")
        self.acc0, self.e0, self.chip0 = dense["accuracy"], dense["energy_j"], dense["chip_energy_j"]
        self.dense = self.relative(dense)

    def point(self, graph, steps: int, method: str, label: str) -> dict[str, Any]:
        from hwcc.train.finetune import finetune

        if steps > 0:
            graph = finetune(graph, self.tune.inputs, self.tune.labels, steps=steps, seed=SEED).graph
        legal = _legalize(graph, self.target, self.calib)
        price, float_price = _price(self.target, legal), _price(self.target, graph)
        return {"method": method, "label": label, "accuracy": self.evaluator.accuracy(legal),
                "weights_kept": _weights_kept(legal), "steps": steps, **price,
                "legal_price_equals_float": price == float_price}

    def relative(self, p: dict[str, Any]) -> dict[str, Any]:
        return {**p, "reduction_energy_j": self.e0 / p["energy_j"], "reduction_chip_energy_j": self.chip0 / p["chip_energy_j"]}


def _magnitude(m: _Digits, s: Settings) -> list[dict[str, Any]]:
    from hwcc.ir.transform import PassContext, get_pass

    out = []
    for d in s.densities:
        pruned = get_pass("prune_weights")(m.graph, PassContext(knobs={"prune_weights": {"density": d}},
                                                                verify=False)).graph
        out.append(m.relative(m.point(pruned, s.total_steps, "magnitude", f"density {d:g}")))
    return out


def _search(m: _Digits, s: Settings, passes: tuple[str, ...]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import hwcc

    picked: list[tuple[int, Any, float | None, str, dict]] = []
    schedule: dict[str, float] = {}

    def progress(kind: str, info: dict[str, Any]) -> None:
        if kind == "picked":
            p = info["proposal"]
            picked.append((info["state"]["iteration"], p.graph, p.accuracy, p.unit.id, p.unit.settings(p.amount)))
        if kind == "iteration":
            schedule.update(info["state"]["schedule"])

    t0 = time.monotonic()
    result = hwcc.compile(m.graph, "eyeriss", s.budget, data="zoo:digits", seed=SEED, passes=passes,
                          max_units=s.max_units, max_iterations=s.max_iterations,
                          short_term_steps=s.short_term_steps, long_term_steps=0,
                          max_accuracy_drop=s.stop_drop, progress=progress)
    search_s = time.monotonic() - t0
    method = f"hwcc ({_passes_label(passes)})"
    points = []
    for i, graph, acc_search, unit, settings in picked:
        p = m.relative(m.point(graph, s.total_steps - i * s.short_term_steps, method, f"iteration {i}"))
        points.append({**p, "iteration": i, "changed": unit, "settings": settings, "search_accuracy": acc_search})
    info = {"method": method, "passes": list(passes), "search_s": search_s, "iterations": len(picked),
            "first_step": schedule.get("r0"),
            "stop": result.summary["exit_reason"], "warnings": result.summary["warnings"]}
    return points, info


def _passes_label(passes: Sequence[str]) -> str:
    return "default passes" if tuple(passes) == DEFAULT_PASSES else ", ".join(passes)


def _digits(s: Settings, out: Path, target) -> dict[str, Any]:
    models = []
    for name, pass_sets in s.models:
        t0 = time.monotonic()
        m = _Digits(name, target)
        runs = [{"method": "magnitude", "points": _magnitude(m, s)}]
        for passes in pass_sets:
            points, info = _search(m, s, passes)
            runs.append({**info, "points": points})
        models.append({"model": name, "accuracy0": m.acc0, "energy0_j": m.e0, "chip_energy0_j": m.chip0,
                       "floor": m.acc0 - FLOOR_DROP, "dense": m.dense, "runs": runs,
                       "seconds": time.monotonic() - t0})
    plots = [_digits_plot(mod, out) for mod in models]
    return {"models": models, "plots": plots}


def _digits_plot(mod: dict[str, Any], out: Path) -> str:
    from hwcc.report.svg import BLUE, GREEN, GREY, ORANGE, RED, Chart, count_labels, percent_labels

    chart = Chart(f"{mod['model']} on Eyeriss: accuracy against chip energy", "Eyeriss chip energy / dense (legal form)",
                  "test accuracy", count_labels, percent_labels)
    colors = iter((BLUE, ORANGE, GREEN, RED))
    for run in mod["runs"]:
        pts = [mod["dense"]] + sorted(run["points"], key=lambda p: -p["chip_energy_j"])
        xs = [p["chip_energy_j"] / mod["chip_energy0_j"] for p in pts]
        ys = [max(p["accuracy"], mod["accuracy0"] - PLOT_DEPTH) for p in pts]
        color = next(colors)
        chart.line(xs, ys, color, run["method"])
        chart.points(xs, ys, color, [f"{run['method']}, {p['label']}: accuracy {p['accuracy']:.2%}, chip energy "
                                     f"x{p['chip_energy_j'] / mod['chip_energy0_j']:.3f}, total energy x"
                                     f"{p['energy_j'] / mod['energy0_j']:.3f}" for p in pts])
    chart.hline(mod["floor"], GREY, "dense - 1 point")
    chart.hline(mod["accuracy0"] - PLOT_DEPTH, GREY, f"dense - {PLOT_DEPTH * 100:.0f} points (lower points drawn here)")
    name = f"energy_pruning_{mod['model']}.svg"
    return save_svg(out, name, chart.render(), f"{mod['model']}: accuracy against Eyeriss energy, both methods")


# ---------------------------------------------------------------------- AlexNet
def _alexnet(s: Settings, target) -> dict[str, Any]:
    import hwcc
    from hwcc.ir.transform import PassContext, get_pass
    from hwcc.passes.prune_weights import keep_count
    from hwcc.targets.base import CostContext
    from hwcc.ir.workload import analyze

    t0 = time.monotonic()
    graph = hwcc.load("zoo:alexnet")
    weighted = [x for x in analyze(graph).layers if x.kind in _WEIGHTED]
    if len(weighted) != len(DEEP_COMPRESSION):
        raise RuntimeError(f"zoo:alexnet has {len(weighted)} weighted layers, expected {len(DEEP_COMPRESSION)}")
    short = {x.name: name for x, (name, _) in zip(weighted, DEEP_COMPRESSION)}
    act = _act_density(graph, [x.name for x in weighted])
    ctx = CostContext(batch=1, act_density=act)
    work = analyze(graph, act_density=act)
    gctx = target.graph_context(graph, work, ctx)   # fused ReLUs and written densities, from the graph
    layers = {x.name: x for x in work.layers if x.name in short}
    sizes = {n: _weight_count(graph, n) for n in layers}

    def energy(name: str, d: float) -> float:
        """One layer's Eyeriss energy with its weight density set to ``d``."""
        return target.cost_layer(dataclasses.replace(layers[name], weight_density=d), gctx).energy_j

    dc = {x.name: d for x, (_, d) in zip(weighted, DEEP_COMPRESSION)}
    keep = sum(keep_count(sizes[n], d) for n, d in dc.items())
    allocations = [("Deep Compression (magnitude)", dc, True),
                   ("energy-aware allocation", greedy_allocation(sizes, energy, keep), True),
                   ("energy-aware, no layer below 9 %", greedy_allocation(sizes, energy, keep, floor=min(dc.values())),
                    False)]
    dense = _price(target, graph, ctx)
    rows = []
    for label, alloc, apply in allocations:
        row = {"allocation": label, "densities": {short[n]: alloc[n] for n in layers},
               "weights_kept": sum(keep_count(sizes[n], alloc[n]) for n in layers),
               "layer_energy_j": {short[n]: energy(n, alloc[n]) for n in layers}}
        row["chip_energy_j"] = dense["chip_energy_j"] - sum(energy(n, 1.0) - energy(n, alloc[n]) for n in layers)
        if apply and s.alexnet_apply:
            chosen = {n: alloc[n] for n in layers if alloc[n] < 1.0}
            knobs = {"prune_weights": {"density": 1.0, "layer_density": json.dumps(chosen)}}  # others untouched
            pruned = get_pass("prune_weights")(graph, PassContext(knobs=knobs, verify=False)).graph
            priced = _price(target, pruned, ctx)
            row.update(graph_chip_energy_j=priced["chip_energy_j"], graph_energy_j=priced["energy_j"])
        rows.append(row)
    per_layer = [{"layer": short[n], "weights": sizes[n], "act_density": layers[n].act_density,
                  "energy_j": energy(n, 1.0), "dc_density": dc[n],
                  "saved_per_weight_j": (energy(n, 1.0) - energy(n, REFERENCE_DENSITY)) /
                                        (sizes[n] * (1 - REFERENCE_DENSITY))}
                 for n in layers]
    return {"dense": dense, "weights": sum(sizes.values()), "keep": keep, "rows": rows, "layers": per_layer,
            "applied": s.alexnet_apply, "seconds": time.monotonic() - t0}


def _act_density(graph, weighted: Sequence[str]) -> dict[str, float]:
    """Published input densities on the weighted layers, and on the LRN and pooling nodes
    before each (they feed it: their input is at least as sparse; the repository's Eyeriss
    test does the same)."""
    from hwcc.ir.workload import analyze

    density = dict(zip(weighted, ALEXNET_ACT_DENSITY))
    following = None
    for x in reversed(analyze(graph).layers):
        if x.name in density:
            following = density[x.name]
        elif x.kind in ("norm", "pool") and following is not None:
            density[x.name] = following
    return density


def _weight_count(graph, node_name: str) -> int:
    node = next(n for n in graph.nodes if n.name == node_name)
    first = graph.tensors[node.inputs[0]].data
    index = 0 if node.op_type == "MatMul" and first is not None else 1
    return int(graph.tensors[node.inputs[index]].data.size)


# ---------------------------------------------------------------------- the section
def run(quick: bool, out: Path) -> dict[str, Any]:
    from hwcc.targets.base import load_target

    s = QUICK if quick else FULL
    target = load_target("eyeriss")
    t0 = time.monotonic()
    with one_torch_thread():
        digits = _digits(s, out, target)
    alex = _alexnet(s, target)
    data = {"settings": dataclasses.asdict(s), "digits": digits["models"], "alexnet": alex,
            "paper": {"energy_aware": PAPER_ENERGY_AWARE, "magnitude": PAPER_MAGNITUDE},
            "seconds": time.monotonic() - t0}
    return {"title": TITLE, "what": _what(s), "markdown": _markdown(data, digits["plots"]), "data": data}


def _what(s: Settings) -> str:
    runs = "; ".join(f"`{m}`: " + " and ".join(_passes_label(p) for p in ps) for m, ps in s.models)
    return (
        f"Target `eyeriss` (legal form 16-bit fixed point), seed {SEED}. Digits models ({runs}), "
        "BatchNormalization folded first as `hwcc compile` does; fine-tuning on the digits train split (1438 images, "
        "SGD, lr 0.01, batch 32, one torch thread), accuracy on the test split (359 images) in onnxruntime. "
        f"Magnitude pruning: `prune_weights`, the same density in every layer: {', '.join(f'{d:g}' for d in s.densities)}. "
        f"hwcc: one `hwcc.compile(model, 'eyeriss', '{s.budget}', data='zoo:digits', max_iterations={s.max_iterations}, "
        f"short_term_steps={s.short_term_steps}, max_units={s.max_units}, max_accuracy_drop={s.stop_drop}, "
        "long_term_steps=0)` per pass set; its model after each iteration is a point. Every point, of either method, "
        f"is fine-tuned to {s.total_steps} steps in all, legalized, priced and scored. AlexNet (`zoo:alexnet`, "
        "two-group, 227x227, batch 1, activation densities from JSSC 2017 Table V and EIE Table III): dense, Deep "
        "Compression's per-layer densities, and a greedy energy-aware allocation of as many weights; "
        + ("the first two applied with `prune_weights` (`layer_density`) and priced as graphs, the rest layer by layer."
           if s.alexnet_apply else "priced layer by layer (the pass is not applied in quick mode)."))


def _x(v: float) -> str:
    return f"{v:.2f}x"


def _markdown(data: dict[str, Any], plots: list[str]) -> str:
    lines = ["**Digits models: energy reduction at equal accuracy.** The largest `E0/E` among the points whose "
             "test accuracy is at least the dense model's minus one point (the dense model itself counts, at 1x; "
             "one test image is 0.28 points, so the last column repeats the chip's with a two-point floor). "
             "*Chip* is the Eyeriss chip's energy, the quantity the paper reports; *total* adds the host CPU that "
             "runs what Eyeriss cannot (pooling, Add, global average pooling), priced by hwcc's `cpu` target at "
             "73 W: that is what `hwcc compile` budgets and searches on.", ""]
    rows = []
    for mod in data["digits"]:
        for run in mod["runs"]:
            pts = [mod["dense"], *run["points"]]
            cells = []
            for key, floor in (("chip_energy_j", mod["floor"]), ("energy_j", mod["floor"]),
                               ("chip_energy_j", mod["accuracy0"] - LOOSE_DROP)):
                b = best_at_floor(pts, floor, key)
                cells.append(f"{_x(b[f'reduction_{key}'])} ({b['label']}, {b['accuracy']:.2%})")
            rows.append((f"`{mod['model']}`", run["method"], f"{mod['accuracy0']:.2%}", *cells, len(run["points"])))
    lines += [md_table(["model", "method", "dense accuracy", "chip E0/E, -1 point (point, accuracy)",
                        "total E0/E, -1 point", "chip E0/E, -2 points", "points"], rows, "llllllr"), ""]
    lines += [_headline(data["digits"]), ""]
    lines += _digits_findings(data["digits"]) + [""] + plots + [""]
    lines += _alexnet_markdown(data["alexnet"])
    return "\n".join(lines)


def _headline(models: list[dict[str, Any]]) -> str:
    """One sentence per model: each method's chip E0/E at the one-point floor, the best named."""
    parts = []
    for mod in models:
        got = []
        for run in mod["runs"]:
            b = best_at_floor([mod["dense"], *run["points"]], mod["floor"], "chip_energy_j")
            got.append((b["reduction_chip_energy_j"], run["method"]))
        top = max(got)
        shown = ", ".join(f"{m} {_x(v)}" for v, m in got)
        if top[0] < 1.005:
            parts.append(f"`{mod['model']}`: no method saves chip energy at the floor ({shown}).")
        else:
            parts.append(f"`{mod['model']}`: {top[1]} saves the most ({shown}).")
    return "Chip E0/E at the one-point floor: " + " ".join(parts)


def _digits_findings(models: list[dict[str, Any]]) -> list[str]:
    out = []
    for mod in models:
        host = 1 - mod["chip_energy0_j"] / mod["energy0_j"]
        mag = max(mod["runs"][0]["points"], key=lambda p: p["reduction_chip_energy_j"])
        line = (f"- `{mod['model']}`: dense {mod['chip_energy0_j'] * 1e6:.2f} uJ on the chip, "
                f"{mod['energy0_j'] * 1e6:.1f} uJ in total ({host:.0%} on the host). The sparsest magnitude "
                f"point ({mag['label']}) cuts chip energy {_x(mag['reduction_chip_energy_j'])}, at "
                f"{mag['accuracy']:.2%}.")
        for run in mod["runs"][1:]:
            line += f" {run['method']}: {run['iterations']} iterations in {run['search_s']:.0f} s, stopped: {run['stop']}."
        steps = [r["first_step"] for r in mod["runs"][1:] if r.get("first_step")]
        if steps and host > 0.5:
            ask = steps[0] * mod["energy0_j"] / mod["chip_energy0_j"]
            line += f" The search's first step asks for {steps[0]:.1%} of the total energy, {ask:.1f}x the chip's whole energy"
            line += (": only cuts that shrink the host's work (whole channels feeding pooling and Add) can meet it."
                     if ask >= 1 else " in one step.")
        out.append(line)
    if any(not all(p["legal_price_equals_float"] for r in mod["runs"] for p in r["points"]) for mod in models):
        out.append("- Some points priced differently in their legal form than in float (see the data).")
    else:
        out.append("- Every point priced identically in float and in the legal form (16-bit fixed point): Eyeriss "
                   "prices every value as a 16-bit word, whatever its type.")
    out.append("- Host energies come from this machine's measured CPU kernel table (73 W times the measured time), "
               "so totals move by some percent between runs and for every new channel count a pruned model has; "
               "chip energies are a model and do not move.")
    out.append("- Why weight pruning buys so little on the chip: hwcc's Eyeriss model follows the JSSC chip, which "
               "gates MACs on zero *input activations* only; a zero weight is still read and multiplied, and saves "
               "only its share of the DRAM stream (run-length coded). Layers whose energy is mostly weights read from "
               "DRAM (FC layers run once per image) gain; convolutions, which reuse each weight many times, barely do. "
               "Channel pruning (hwcc's default passes) shrinks activations and MACs as well.")
    return out


def _alexnet_markdown(a: dict[str, Any]) -> list[str]:
    dense = a["dense"]["chip_energy_j"]
    host = a["dense"]["energy_j"] - dense
    lines = [f"**AlexNet: energy at an equal number of weights** ({a['keep'] / 1e6:.2f} M of {a['weights'] / 1e6:.1f} M "
             "kept, Deep Compression's count). There is no ImageNet here, so no accuracy: the paper's "
             f"{PAPER_ENERGY_AWARE}x (energy-aware) and {PAPER_MAGNITUDE}x (magnitude) are at equal top-5 accuracy "
             "(under 1 % loss), while these compare allocations of the same number of weights, with no accuracy "
             f"check at all. Dense: {dense * 1e3:.2f} mJ per image on the chip; the host CPU (LRN, pooling) adds "
             f"{host * 1e3:.1f} mJ that weight pruning does not change.", ""]
    paper = {"Deep Compression (magnitude)": f"{PAPER_MAGNITUDE}x", "energy-aware allocation": f"{PAPER_ENERGY_AWARE}x"}
    rows = []
    for r in a["rows"]:
        e = r.get("graph_chip_energy_j", r["chip_energy_j"])
        how = "graph" if "graph_chip_energy_j" in r else "layer by layer"
        rows.append((r["allocation"], " / ".join(f"{v:.0%}" for v in r["densities"].values()),
                     f"{r['weights_kept'] / 1e6:.2f} M", f"{e * 1e3:.2f} mJ ({how})", _x(dense / e),
                     paper.get(r["allocation"], "")))
    lines += [md_table(["allocation", "densities conv1-5, fc6-8", "weights kept", "chip energy",
                        "chip E0/E here", "paper E0/E"], rows, "llrrrr"), ""]
    saved = sorted(a["layers"], key=lambda x: x["saved_per_weight_j"])
    typical = saved[len(saved) // 2]["saved_per_weight_j"]
    high = [x for x in saved if x["saved_per_weight_j"] > 1.5 * typical]
    high_text = ", ".join(f"{x['layer']} {x['saved_per_weight_j'] * 1e9:.2f} nJ" for x in high)
    dc, aware = _energy(a["rows"][0]), _energy(a["rows"][1])
    lines += [f"- A pruned weight saves {typical * 1e9:.2f} nJ in the typical layer (dense to "
              f"{REFERENCE_DENSITY:.0%}, table below): its 16-bit DRAM read, run-length coded (nothing at 75 % "
              "density or more, where the code would be longer than the raw stream)"
              + (f"; more in {high_text}, as the model reads those filters from DRAM more than once (they do "
                 "not fit the 8 KB filter buffer)" if high else "") + ". So the greedy allocation takes those layers down first, but they hold few "
              f"weights: at equal weight count it saves {dc / aware - 1:.1%} more energy than Deep Compression's "
              "allocation. It is an energy-only allocation (it prunes whatever is cheapest, regardless of accuracy), "
              "not the paper's method.",
              f"- Magnitude pruning at Deep Compression's densities: {_x(dense / dc)} here against the paper's "
              f"{PAPER_MAGNITUDE}x. The paper's energy-aware {PAPER_ENERGY_AWARE}x is not reproduced: "
              f"{_x(dense / aware)} at equal weight count. hwcc's Eyeriss model, like the JSSC chip, gates MACs on zero "
              "input activations only, so a pruned weight saves DRAM traffic and nothing else, about equally in most "
              "layers: no allocation of the same number of weights gets far from Deep Compression's. The paper's gap "
              "between the two methods would need an energy model in which the layer matters more, or more weights "
              "removed at equal accuracy; without ImageNet neither can be checked here.", ""]
    lines += [md_table(["layer", "weights", "input density", "dense energy",
                        f"saved per weight removed (dense to {REFERENCE_DENSITY:.0%})"],
                       [(x["layer"], f"{x['weights']:,}", f"{x['act_density']:.3f}", f"{x['energy_j'] * 1e6:.0f} uJ",
                         f"{x['saved_per_weight_j'] * 1e9:.2f} nJ") for x in a["layers"]], "lrrrr")]
    return lines


def _energy(row: dict[str, Any]) -> float:
    return row.get("graph_chip_energy_j", row["chip_energy_j"])

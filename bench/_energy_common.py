"""energy_pruning's constants, settings type and pure pieces, shared with its experiments.

Imported by :mod:`bench.energy_pruning`, :mod:`bench._energy_digits` and
:mod:`bench._energy_alexnet` (never the reverse); no hwcc here, so the tests import the pure
pieces without running anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

SEED = 0
FLOOR_DROP = 0.01  # "equal accuracy": at least the dense model's accuracy minus one point
LOOSE_DROP = 0.02  # the same with two points, to show how much one image at the floor matters
PLOT_DEPTH = 0.10  # plots show accuracy down to the dense model's minus ten points

# Yang, Chen, Sze, CVPR 2017 (abstract and Sec. 5): AlexNet energy reduction, <1 % top-5 loss.
PAPER_ENERGY_AWARE = 3.7
PAPER_MAGNITUDE = 2.1

DENSITY_GRID = tuple(round(1 - 0.02 * i, 2) for i in range(50))  # 1.00, 0.98, ... 0.02

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


# ---------------------------------------------------------------------- pure pieces
def best_at_floor(
    points: Sequence[Mapping[str, float]], floor: float, key: str
) -> Mapping[str, float] | None:
    """The point with the largest ``reduction_<key>`` whose accuracy is at least ``floor``."""
    ok = [p for p in points if p["accuracy"] >= floor - 1e-12]
    return max(ok, key=lambda p: p[f"reduction_{key}"], default=None)


def greedy_allocation(
    sizes: Mapping[str, int],
    energy: Callable[[str, float], float],
    keep: int,
    grid: Sequence[float] = DENSITY_GRID,
    floor: float = 0.0,
) -> dict[str, float]:
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


def passes_label(passes: Sequence[str]) -> str:
    """How a pass set is named on the page."""
    return "default passes" if tuple(passes) == DEFAULT_PASSES else ", ".join(passes)

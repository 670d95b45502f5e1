"""Torch-Pruning as a peer of hwcc and the width multiplier (the width section's peer points).

`Torch-Pruning <https://github.com/VainF/Torch-Pruning>`_ (Fang et al., CVPR 2023) prunes
a ``torch.nn.Module``'s channels structurally, following every dependency (residual Adds,
depthwise convolutions, BatchNorms) with its dependency graph. Here it prunes the zoo's own
torch definitions with their trained weights (:func:`hwcc.models.zoo.build_torch`), each
point at one ``pruning_ratio``:

* **magnitude**: ``BasePruner`` (``MagnitudePruner``) with ``MagnitudeImportance(p=2)``
  (group L2 norm), the same ratio in every layer;
* **global**: the same importance with ``global_pruning=True``: the ratio is the share of
  all channels removed, ranked across layers (``max_pruning_ratio`` keeps a layer from
  being emptied).

The classifier (the last ``Linear``) keeps its outputs. Each pruned network is exported to
ONNX as the zoo exports (BatchNorm folded, opset and names of the zoo's), loaded and
cleaned up as ``hwcc compile`` loads a model, and from there is a point like the others of
:mod:`bench.width`: fine-tuned with the same SGD steps on the same data, scored on the
same test split and timed in the same round-robin. Torch-Pruning is in the ``bench`` extra;
without it the width section runs without its points.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Sequence
from pathlib import Path

import hwcc
from hwcc.models.onnx_export import export_onnx
from hwcc.models.registry import get_spec
from hwcc.models.zoo import build_torch, example_inputs

MAX_RATIO = 0.9  # global pruning: no layer loses more than this share of its channels
KINDS = ("magnitude", "global")


def available() -> bool:
    """Whether Torch-Pruning is installed."""
    return importlib.util.find_spec("torch_pruning") is not None


def prune(name: str, ratio: float, kind: str):
    """The zoo model ``name`` (trained weights) with Torch-Pruning's ``kind`` at ``ratio``.

    Args:
        name: a zoo model.
        ratio: Torch-Pruning's ``pruning_ratio``, the share of channels removed.
        kind: ``"magnitude"`` (the same ratio in every layer) or ``"global"``.

    Returns:
        The pruned ``torch.nn.Module``, in eval mode.
    """
    import torch_pruning as tp  # in the bench extra only: checked by available()
    from torch import nn

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    net = build_torch(name).eval()
    example = example_inputs(name)[0]
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MagnitudePruner(
        net,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        global_pruning=kind == "global",
        max_pruning_ratio=MAX_RATIO,
        ignored_layers=last,
    )
    pruner.step()
    return net.eval()


def export(name: str, net, path: Path) -> Path:
    """``net`` (a pruned zoo model ``name``) as ONNX at ``path``, as the zoo exports."""

    return export_onnx(net, example_inputs(name), get_spec(name), Path(path))


def graphs(name: str, ratios: Sequence[float], kinds: Sequence[str] = KINDS) -> list[dict]:
    """Every Torch-Pruning point of ``name``: ``{"kind", "ratio", "graph"}``, the graph loaded
    from the exported ONNX (not yet cleaned up or fine-tuned)."""

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for ratio in ratios:
                path = export(name, prune(name, ratio, kind), Path(tmp) / f"{kind}-{ratio}.onnx")
                out.append({"kind": kind, "ratio": ratio, "graph": hwcc.load(str(path))})
    return out

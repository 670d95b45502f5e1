"""The exact cleanups every compile starts with, as one pipeline the API and the bench share.

BatchNormalization folded into the layer before it, constants folded, hard-sigmoid and
hard-swish written as arithmetic turned into ``HardSigmoid``, scales and shifts by
constants folded into the Convs beside them, dead code removed: each is exact, so the
pipeline runs verified (original and cleaned graph through onnxruntime on the same
inputs, to the pass manager's tolerances).
"""

from __future__ import annotations

from hwcc.ir.graph import Graph
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.transform import PassContext

__all__ = ["CLEANUP", "cleanup"]

CLEANUP = (
    "fold_batchnorm",
    "fold_constants",
    "fuse_hard_activations",
    "fold_affine",
    "eliminate_dead",
)


def cleanup(graph: Graph, seed: int = 0, verify: bool = True) -> Graph:
    """``graph`` after :data:`CLEANUP`, in order (a new graph; the input is left as it was).

    Raises:
        PassError: a pass failed or, with ``verify``, changed the outputs.
    """
    return PassManager(list(CLEANUP), PassContext(seed=seed, verify=verify)).run(graph).graph

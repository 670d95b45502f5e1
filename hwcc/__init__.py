"""hwcc: a hardware-aware compiler for neural networks.

ONNX model in; a target and a budget in; a deployable model out that meets the budget
on that target with the least accuracy lost.
"""

from hwcc.api import CompileResult, compile
from hwcc.errors import HwccError
from hwcc.ir import Graph, Node, Tensor
from hwcc.ir.onnx_io import load, save

__version__ = "0.1.0"
__all__ = [
    "compile",
    "CompileResult",
    "Graph",
    "Node",
    "Tensor",
    "HwccError",
    "load",
    "save",
    "__version__",
]

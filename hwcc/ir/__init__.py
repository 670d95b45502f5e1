"""The intermediate representation and what reads and checks it.

``Graph``, ``Node`` and ``Tensor`` (:mod:`.graph`, over networkx) are re-exported here;
the sub-modules are the ONNX boundary (:mod:`.onnx_io`), element types (:mod:`.dtypes`),
the layer view targets price (:mod:`.workload`), the pass contract and manager
(:mod:`.transform`) and equivalence checks in onnxruntime (:mod:`.verify`).
"""

from hwcc.ir.graph import Dim, Graph, IRError, Node, Tensor

__all__ = ["Dim", "Graph", "IRError", "Node", "Tensor"]

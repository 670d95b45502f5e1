"""ONNX ``ModelProto`` to :class:`hwcc.ir.Graph` and back.

This package is the only code that builds or reads ONNX protos for graphs. Contract:
``save(load(m))`` gives a model that passes ``onnx.checker.check_model(full_check=True)``
whenever ``m`` does, and runs in onnxruntime with outputs identical to ``m``'s.

What it takes care of, and where:

1. Shape inference (``onnx.shape_inference`` with data propagation) fills in the shape
   of every intermediate tensor it can; data propagation stays off where it would cost
   gigabytes (:mod:`.shapes`).
2. Dynamic dimensions of the graph inputs must be fixed, from ``input_shapes`` (the
   CLI's ``--input-shape NAME:1x3x224x224``), or the model is refused with a message
   that names the input and the flag to use (:mod:`.dims`).
3. Model files and their external data are read safely: regular files only, data only
   from inside the model's own folder; ``zoo:NAME`` names a bundled model (:mod:`.files`).
4. Node annotations that transforms leave in ``node.meta`` (``winograd``, ``low_rank``,
   ...) are kept in the model's metadata and restored (:mod:`.node_annotations`).
5. What the IR does not interpret passes through unchanged: ops of unknown domains,
   subgraph attributes (If/Loop/Scan bodies), functions, non-tensor types (sequences,
   optionals, maps), training info, metadata. Initializers that no transform touched
   are written back from their original protos, bit for bit (:mod:`.reader`,
   :mod:`.writer`).
6. A malformed file is refused with a :class:`~hwcc.errors.ModelLoadError` that says
   what is wrong and where, never with an exception from onnx, protobuf or numpy: the
   whole model is audited before the IR is built (:mod:`.audit`).
"""

from hwcc.ir.onnx_io.dims import parse_input_shape
from hwcc.ir.onnx_io.files import resolve_model_path, zoo_name
from hwcc.ir.onnx_io.node_annotations import ANNOTATIONS_KEY
from hwcc.ir.onnx_io.protos import RawAttribute
from hwcc.ir.onnx_io.reader import from_proto, load
from hwcc.ir.onnx_io.shapes import STANDARD_DOMAINS, infer_shapes
from hwcc.ir.onnx_io.writer import EXTERNAL_THRESHOLD, save, to_proto

__all__ = [
    "ANNOTATIONS_KEY",
    "EXTERNAL_THRESHOLD",
    "RawAttribute",
    "STANDARD_DOMAINS",
    "from_proto",
    "infer_shapes",
    "load",
    "parse_input_shape",
    "resolve_model_path",
    "save",
    "to_proto",
    "zoo_name",
]

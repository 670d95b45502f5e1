"""The torch implementation of each ONNX operator that :mod:`hwcc.train.graph_module` can run.

One builder per op type, registered with :func:`register`. A builder runs once, when a
graph is turned into a module: it reads the node's attributes (and any input that is a
constant), rejects what it cannot run with an :class:`~hwcc.errors.HwccError`, and
returns a plain function from the node's input tensors (``None`` for omitted optional
inputs) to its output tensor, or to a tuple for several outputs. Everything a builder
rejects is therefore rejected before any training starts.

``register(..., weights=(i, ...))`` declares which inputs hold trainable weights when
they are float initializers (Conv's ``W`` and ``B``, BatchNormalization's scale and
bias, ...): the declaration is the data :func:`hwcc.train.graph_module.to_torch` reads
to decide what becomes an ``nn.Parameter``.

Batch: graphs of the zoo are exported with a fixed batch of 1 and trained on batches of
32 or more. A Reshape whose target's first entry is that fixed batch, applied to a
tensor whose first dimension is the batch, keeps the batch of the tensor it is given.

Quantization: QuantizeLinear yields float tensors holding the integer values (rounded
half to even and saturated, as ONNX does); the rounding passes gradients straight
through (Bengio et al. 2013) and saturation stops them.

Ops of onnxruntime's ``com.microsoft`` domain that hwcc's own passes write
(``DynamicQuantizeMatMul``) are registered as ``com.microsoft.<op>``; :func:`op_spec`
finds a node's builder by its domain and type.

The builders live in the modules of this package, one per op family; importing the
package imports each of them, so a new family joins by being a module here.
"""

import importlib
import pkgutil

from hwcc.train.ops.registry import OPS, BuildContext, OpSpec, op_spec, register, reject

__all__ = ["OPS", "BuildContext", "OpSpec", "op_spec", "register", "reject"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

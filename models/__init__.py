"""hwcc's model zoo: published architectures for costing, small trained digits models.

Use ``zoo:NAME`` wherever hwcc takes a model, or the functions below::

    from hwcc import models
    for entry in models.list_models():
        print(entry.name, entry.input_shapes)
    path = models.model_path("alexnet")        # exported and cached on first use
    net = models.build_torch("lenet5-digits")  # trained weights, eval mode

New models join by decorating a builder with :func:`register` in a module named
``arch_*.py`` of this package.
"""

from hwcc.models.registry import register
from hwcc.models.zoo import (
    ZooEntry,
    build_torch,
    example_inputs,
    export,
    format_table,
    list_models,
    model_path,
)

__all__ = [
    "ZooEntry",
    "build_torch",
    "example_inputs",
    "export",
    "format_table",
    "list_models",
    "model_path",
    "register",
]

"""hwcc's model zoo: published architectures for costing, small trained digits models.

Use ``zoo:NAME`` wherever hwcc takes a model, or the functions below::

    from hwcc import models
    for entry in models.list_models():
        print(entry.name, entry.input_shapes)
    path = models.model_path("alexnet")        # exported and cached on first use
    net = models.build_torch("lenet5-digits")  # trained weights, eval mode
    x, y = models.load_data("digits", "train")  # bundled data, as --data zoo:digits

New models join by decorating a builder with :func:`register` in a module named
``arch_*.py`` of this package.
"""

from hwcc.models.registry import register
from hwcc.models.zoo import (
    DATA_SETS,
    ZooEntry,
    build_torch,
    data_set,
    example_inputs,
    export,
    format_table,
    list_models,
    load_data,
    model_path,
)

__all__ = [
    "DATA_SETS",
    "ZooEntry",
    "build_torch",
    "data_set",
    "example_inputs",
    "export",
    "format_table",
    "list_models",
    "load_data",
    "model_path",
    "register",
]

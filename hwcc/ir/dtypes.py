"""ONNX element types and numpy dtypes.

The IR stores ONNX element type codes; this table maps the ones with a numpy
equivalent. Kept apart from ``onnx_io`` so that ``ir`` can use it without onnx.
"""

from __future__ import annotations

import numpy as np

# ONNX TensorProto.DataType codes (onnx.proto: FLOAT = 1, UINT8 = 2, ...).
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLOAT16, DOUBLE, UINT32, UINT64, COMPLEX64, COMPLEX128, BFLOAT16 = 10, 11, 12, 13, 14, 15, 16

_TO_NUMPY = {
    FLOAT: np.float32,
    UINT8: np.uint8,
    INT8: np.int8,
    UINT16: np.uint16,
    INT16: np.int16,
    INT32: np.int32,
    INT64: np.int64,
    BOOL: np.bool_,
    FLOAT16: np.float16,
    DOUBLE: np.float64,
    UINT32: np.uint32,
    UINT64: np.uint64,
    COMPLEX64: np.complex64,
    COMPLEX128: np.complex128,
    STRING: np.object_,
}
_FROM_NUMPY = {np.dtype(v): k for k, v in _TO_NUMPY.items()}
# Element types whose arrays have a fixed-size numpy dtype: all of the table but STRING.
FIXED_SIZE = frozenset(_TO_NUMPY) - {STRING}

# Bytes per element, for workload and memory accounting.
BYTES = {
    FLOAT: 4,
    UINT8: 1,
    INT8: 1,
    UINT16: 2,
    INT16: 2,
    INT32: 4,
    INT64: 8,
    BOOL: 1,
    FLOAT16: 2,
    DOUBLE: 8,
    UINT32: 4,
    UINT64: 8,
    COMPLEX64: 8,
    COMPLEX128: 16,
    BFLOAT16: 2,
}


def numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX element type; ``KeyError`` if there is none."""
    return np.dtype(_TO_NUMPY[elem_type])


def onnx_type_of(dtype: np.dtype) -> int:
    """The ONNX element type of a numpy dtype; ``KeyError`` if there is none."""
    dtype = np.dtype(dtype)
    if dtype.kind in "US":
        return STRING
    return _FROM_NUMPY[dtype]

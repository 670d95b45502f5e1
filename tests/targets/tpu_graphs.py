"""Graphs and chips for the TPU target's tests (tests/targets/test_tpu_*.py).

``TOML`` is the bundled targets/tpu/tpu.toml; :func:`variant` is a copy of it with some
[params] changed, a new chip of the family; :func:`qlinear_conv` is a one-QLinearConv graph
(the other int8 builders are bench/tpu_workloads.py's).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from onnx import TensorProto as TP
from onnx import helper

from bench.tpu_workloads import Net
from hwcc.targets.base import load_target

__all__ = ["TOML", "qlinear_conv", "variant"]


TOML = Path(__file__).resolve().parents[2] / "targets" / "tpu" / "tpu.toml"


def qlinear_conv(c, hw, m, k):
    """One QLinearConv, 1×c×hw×hw → 1×m×hw×hw (same padding)."""
    net = Net()
    x = net.fresh("x")
    net.inputs.append(helper.make_tensor_value_info(x, TP.UINT8, [1, c, hw, hw]))
    uz = net.const(np.array(0, np.uint8))
    w = net.const(np.ones((m, c, k, k), np.int8))
    return net.graph(
        net.op(
            "QLinearConv",
            [x, net.s, uz, w, net.s, net.z, net.s, uz],
            name="conv",
            pads=[k // 2] * 4,
        )
    )


def variant(tmp_path, name, **params):
    """A copy of targets/tpu/tpu.toml with some [params] changed: a new chip of the family."""
    text = TOML.read_text()
    for key, value in params.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_target(path)

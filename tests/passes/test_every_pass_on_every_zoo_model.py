"""Every registered pass on every zoo model: each either gives a valid model (onnx.checker
full check) that onnxruntime runs with the original's output names, shapes and types
(and, for exact passes, values), or says why it does not apply. Never an invalid model.

Passes and models come from their registries, so a new pass or a new zoo model is
covered by adding it. The small models run by default; the rest are marked slow.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

import hwcc
from hwcc import models
from hwcc.ir import Graph, onnx_io
from hwcc.ir.transform import PassContext, get_pass, list_passes
from hwcc.ir.verify import random_feeds, run_onnx

FAST_MODELS = (
    "lenet300-digits",
    "lenet5-digits",
    "mobilenet-digits",
    "resnet-digits",
    "lenet5",
    "squeezenet1_1",
)
# Knob values that make a pass do something on a zoo model where its default would not
# (prune_channels prunes nothing by default); used only where the pass declares the knob.
SETTINGS = {"prune_channels": {"ratio": 0.25}, "low_rank": {"rank_ratio": 0.25}}
CALIBRATION_SAMPLES = 16
EXACT_RTOL = 1e-3  # exact passes: loose enough for reassociated float sums in big models


def _cases() -> list:
    cases = []
    for model in (e.name for e in models.list_models()):
        marks = () if model in FAST_MODELS else (pytest.mark.slow,)
        cases += [pytest.param(p, model, marks=marks, id=f"{p}-{model}") for p in list_passes()]
    return cases


@functools.lru_cache(maxsize=2)
def _model(name: str) -> tuple[Graph, dict[str, np.ndarray], list[np.ndarray]]:
    """The zoo graph, the inputs the checks use, and the original outputs on them."""
    g = hwcc.load(f"zoo:{name}")
    feeds = _real_inputs(name, g, 1) or random_feeds(g, seed=0)
    return g, feeds, run_onnx(g, feeds)


def _real_inputs(name: str, g: Graph, count: int) -> dict[str, np.ndarray] | None:
    """Digits samples for the models trained on them, stacked along the batch axis."""
    if not name.endswith("-digits"):
        return None
    from hwcc.models import digits

    x, _ = digits.load_split("test")
    return {g.real_inputs()[0]: x[:count]}


def _context(pass_name: str, model: str, g: Graph) -> PassContext:
    p = get_pass(pass_name)
    declared = {k.name for k in p.knobs}
    knobs = {k: v for k, v in SETTINGS.get(pass_name, {}).items() if k in declared}
    data = _real_inputs(model, g, CALIBRATION_SAMPLES)
    if data is None:  # random calibration samples of the input's shape, stacked
        sets = [random_feeds(g, seed=i) for i in range(CALIBRATION_SAMPLES)]
        data = {n: np.concatenate([s[n] for s in sets]) for n in g.real_inputs()}
    return PassContext(knobs={pass_name: knobs}, data=data, verify=False)


@pytest.mark.parametrize("pass_name,model", _cases())
def test_pass_gives_a_valid_model_or_a_reason(pass_name, model):
    g, feeds, want = _model(model)
    p = get_pass(pass_name)
    result = p(g.copy() if p.in_place else g, _context(pass_name, model, g))
    if not result.modified:
        assert result.reason and result.reason.strip(), (
            f"{pass_name} did nothing on {model} and said nothing"
        )
        return
    out = result.graph
    assert out is not g
    onnx.checker.check_model(onnx_io.to_proto(out), full_check=True)
    got = run_onnx(out, feeds)
    assert out.outputs == g.outputs
    assert [(a.shape, a.dtype) for a in got] == [(a.shape, a.dtype) for a in want]
    assert all(np.isfinite(a).all() for a in got if a.dtype.kind == "f")
    if p.exact:
        for a, b in zip(want, got):
            scale = float(np.abs(a).max(initial=0.0)) if a.dtype.kind == "f" else 0.0
            np.testing.assert_allclose(b, a, rtol=EXACT_RTOL, atol=EXACT_RTOL * max(scale, 1e-3))

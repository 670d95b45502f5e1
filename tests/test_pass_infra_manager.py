"""The pass manager and verification: a failing pass named with the passes before it,
results collected in sequence, shapes refreshed, invalid graphs and broken in-place
promises caught, initializers read-only during a pass, wrong rewrites refused (lossy ones
reported), and ``apply_by_hand``'s refusals and summaries."""

from __future__ import annotations

import numpy as np
import pytest
from pass_infra_passes import ATOL, RTOL, FlipSign, mul_relu, simple_pass

from hwcc.cli.apply_view import apply_by_hand
from hwcc.errors import HwccError, PassError
from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.transform import Pass, PassContext, PassResult, PassTimer, register_pass


def conv_bn() -> Graph:
    rng = np.random.default_rng(0)
    g = Graph("conv_bn")
    g.add_input("x", dtypes.FLOAT, (1, 2, 5, 5))
    g.add_initializer("w", rng.normal(size=(3, 2, 3, 3)).astype(np.float32))
    g.add_node("Conv", ["x", "w"], ["c"], name="conv")
    for name, value in (
        ("scale", rng.uniform(0.5, 2, 3)),
        ("bias", rng.normal(size=3)),
        ("mean", rng.normal(size=3)),
        ("var", rng.uniform(0.5, 2, 3)),
    ):
        g.add_initializer(name, value.astype(np.float32))
    g.add_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"], name="bn")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


class LossyFlipSign(FlipSign):
    """The same rewrite, declared lossy.

    1. Fires like flip_sign; its error is reported, not refused.
    """

    name = "lossy_flip_sign"
    exact = False


class Boom(Pass):
    """Fails.

    1. Always raises.
    """

    name = "boom"

    def call(self, graph, ctx):
        raise ValueError("kaboom")


# ---------------------------------------------------------------------- manager
def test_manager_names_the_failing_pass_and_every_pass_before_it():
    with pytest.raises(PassError) as err:
        PassManager(["fold_constants", "eliminate_dead", Boom()], PassContext(verify=False)).run(
            mul_relu()
        )
    e = err.value
    assert "pass 'boom' failed" in e.message and "'fold_constants', 'eliminate_dead'" in e.message
    assert "ValueError: kaboom" in e.message
    assert (e.pass_name, e.passes_before) == ("boom", ["fold_constants", "eliminate_dead"])
    assert isinstance(e.__cause__, ValueError)


def test_manager_runs_in_sequence_and_collects_results():
    timer = PassTimer()
    ctx = PassContext(rtol=RTOL, atol=ATOL, instruments=[timer])
    g = mul_relu()
    result = PassManager(["fold_constants", "eliminate_dead"], ctx).run(g)
    assert result.modified and len(result.graph) == 2 and len(g) == 3
    (n1, r1), (n2, r2) = result.details["results"]
    assert (n1, r1.modified, r1.reason) == (
        "fold_constants",
        False,
        "no node has only constant inputs",
    )
    assert (n2, r2.modified) == ("eliminate_dead", True) and r2.details["verification"].passed
    assert [name for name, _ in timer.timings] == ["fold_constants", "eliminate_dead"]
    assert all(sec >= 0 for _, sec in timer.timings) and "eliminate_dead" in timer.summary()


def test_nothing_applied_gives_every_reason():
    result = PassManager(["fold_batchnorm", "fold_constants"], PassContext()).run(mul_relu())
    assert not result.modified
    assert result.reason == (
        "fold_batchnorm: the graph has no BatchNormalization; "
        "fold_constants: no node has only constant inputs"
    )


def test_shapes_are_refreshed_after_a_modifying_pass():
    def add_transpose(graph):
        g = graph.copy()
        g.add_node("Transpose", ["y"], ["yt"])
        g.outputs.append("yt")
        return PassResult(g, True)

    result = PassManager(
        [simple_pass("add_transpose", add_transpose)], PassContext(verify=False)
    ).run(mul_relu())
    assert result.graph.tensors["yt"].shape == (3, 2)


def test_an_invalid_graph_is_caught_after_the_pass_that_made_it():
    def dangle(graph):
        g = graph.copy()
        g.set_input(g.node("relu"), 0, "nowhere")
        return PassResult(g, True)

    with pytest.raises(PassError, match="pass 'dangle' failed"):
        PassManager(
            ["eliminate_dead", simple_pass("dangle", dangle)], PassContext(verify=False)
        ).run(mul_relu())


@pytest.mark.parametrize(
    "body,in_place,words",
    [
        (
            lambda g: (g.erase_node(g.node("relu"), force=True), PassResult(g.copy(), True))[1],
            False,
            "declared not in_place but changed its input graph",
        ),
        (
            lambda g: PassResult(g, True),
            False,
            "declared not in_place but returned its input graph as modified",
        ),
        (
            lambda g: PassResult(g.copy(), True),
            True,
            "declared in_place but returned a different graph",
        ),
        (
            lambda g: (g.node("relu").attrs.update(alpha=1.0), PassResult(g, False))[1],
            True,
            "reported modified=False but changed the graph",
        ),
        (lambda g: "not a result", False, "returned str, not a PassResult"),
    ],
)
def test_the_in_place_promise_is_enforced(body, in_place, words):
    with pytest.raises(PassError) as err:
        simple_pass("liar", body, in_place=in_place)(mul_relu(), PassContext(verify=False))
    assert words in err.value.message and "pass 'liar'" in err.value.message


def test_initializers_are_read_only_while_a_pass_runs():
    def scribble(graph):
        g = graph.copy()
        g.initializers["w"][0, 0] = 100.0  # shared with the input graph
        return PassResult(g, True)

    g = mul_relu()
    with pytest.raises(PassError) as err:
        simple_pass("scribble", scribble)(g, PassContext(verify=False))
    assert "assign a new array" in err.value.hint
    assert g.initializers["w"][0, 0] == 1.0 and g.initializers["w"].flags.writeable


# ---------------------------------------------------------------------- verification
def test_verification_catches_a_wrong_rewrite():
    with pytest.raises(PassError) as err:
        FlipSign()(mul_relu(), PassContext(rtol=RTOL, atol=ATOL))
    assert (
        "pass 'flip_sign' failed" in err.value.message
        and "verification FAILED" in err.value.message
    )
    assert "output 'y'" in err.value.message


def test_a_lossy_pass_reports_its_error_instead():
    result = LossyFlipSign()(mul_relu(), PassContext(rtol=RTOL, atol=ATOL))
    v = result.details["verification"]
    assert not v.passed and v.max_abs_err > 1


def test_apply_by_hand_refuses_a_rewrite_that_fails_verification(registry):
    register_pass(FlipSign)
    g = mul_relu()
    with pytest.raises(HwccError) as err:
        apply_by_hand(g, "flip_sign", {}, verify=True, rtol=RTOL, atol=ATOL)
    assert "flip_sign" in err.value.message and "verification FAILED" in err.value.message
    assert g.initializer("w")[0, 0] == 1.0
    unchecked = apply_by_hand(g, "flip_sign", {}, verify=False, rtol=RTOL, atol=ATOL)
    assert "not verified" in unchecked.summary()


def test_apply_by_hand_summary_of_a_fold():
    g = conv_bn()
    report = apply_by_hand(g, "fold_batchnorm", {}, verify=True, rtol=RTOL, atol=ATOL)
    assert report.modified and len(report.graph) == 1 and len(g) == 2
    lines = report.summary().splitlines()
    assert lines[0] == "fold_batchnorm: applied"
    assert lines[1] == "  nodes: 2 -> 1 (BatchNormalization -1)"
    assert lines[2] == "  initializer bytes: 264 B -> 228 B"
    assert lines[3].startswith("  verification passed: max abs err")
    assert report.verification.passed and report.verification.max_abs_err < ATOL


def test_apply_by_hand_summary_when_nothing_applies():
    report = apply_by_hand(mul_relu(), "fold_batchnorm", {}, verify=True, rtol=RTOL, atol=ATOL)
    assert not report.modified and report.verification is None
    assert report.summary() == "fold_batchnorm: did not apply: the graph has no BatchNormalization"

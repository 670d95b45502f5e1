"""The pass infrastructure: registry and discovery, knobs, the manager's checks of the pass
contract, verification, and ``apply_by_hand``; plus ``hwcc.ir.verify``."""

from __future__ import annotations

import sys
import textwrap

import hwcc.passes
import numpy as np
import pytest
from hwcc.passes.lib.edits import set_constant_input

from hwcc.cli.apply_view import apply_by_hand
from hwcc.errors import HwccError, PassError
from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir import transform as pass_infra
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.transform import (
    Knob,
    Pass,
    PassContext,
    PassResult,
    PassTimer,
    get_pass,
    list_passes,
    register_pass,
)
from hwcc.ir.verify import compare, random_feeds, run_onnx

RTOL, ATOL = 1e-5, 1e-5
CLEANUP = {"fold_batchnorm", "fold_constants", "eliminate_dead"}


def mul_relu() -> Graph:
    """x -> Mul(w) -> Identity -> Relu -> y."""
    g = Graph("mul_relu")
    g.add_input("x", dtypes.FLOAT, (2, 3))
    g.add_initializer("w", np.arange(1, 7, dtype=np.float32).reshape(2, 3))
    g.add_node("Mul", ["x", "w"], ["m"], name="mul")
    g.add_node("Identity", ["m"], ["i"], name="copy")
    g.add_node("Relu", ["i"], ["y"], name="relu")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


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


class FlipSign(Pass):
    """A wrong rewrite: negates the weight of the first Mul.

    1. Fires on any graph with a Mul by an initializer (and is wrong every time).
    """

    name = "flip_sign"

    def call(self, graph, ctx):
        g = graph.copy()
        mul = g.find("Mul")[0]
        set_constant_input(g, mul, 1, -g.initializer(mul.inputs[1]))
        return PassResult(g, True)


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


def simple_pass(name_: str, body, *, in_place: bool = False) -> Pass:
    """A one-off pass whose ``call`` is ``body(graph) -> PassResult``."""
    cls = type(
        name_,
        (Pass,),
        {
            "name": name_,
            "in_place": in_place,
            "__doc__": "Test.\n\n1. Case.",
            "call": lambda self, graph, ctx: body(graph),
        },
    )
    return cls()


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so that test passes do not leak into others."""
    reg = dict(pass_infra._discover())
    monkeypatch.setattr(pass_infra, "_REGISTRY", reg)
    return reg


# ---------------------------------------------------------------------- registry
def test_discovery_finds_the_cleanup_passes():
    assert CLEANUP <= set(list_passes())
    for name in CLEANUP:
        p = get_pass(name)
        assert isinstance(p, Pass) and p.name == name and p.summary()


def test_adding_a_pass_is_adding_a_file(tmp_path, monkeypatch, registry):
    (tmp_path / "zz_extra_pass.py").write_text(
        textwrap.dedent('''
        from hwcc.ir.transform import Pass, PassResult, register_pass

        @register_pass
        class Extra(Pass):
            """Does nothing.

            1. Never fires.
            """
            name = "zz_extra"

            def call(self, graph, ctx):
                return PassResult(graph, False, "it never fires")
    ''')
    )
    monkeypatch.setattr(hwcc.passes, "__path__", [*hwcc.passes.__path__, str(tmp_path)])
    try:
        assert "zz_extra" in list_passes()
        assert get_pass("zz_extra")(mul_relu()).reason == "it never fires"
    finally:
        sys.modules.pop("hwcc.passes.zz_extra_pass", None)


def test_unknown_pass_names_the_known_ones():
    with pytest.raises(HwccError) as err:
        get_pass("fold_batchnrom")
    assert "unknown pass 'fold_batchnrom'" in err.value.message
    assert "did you mean 'fold_batchnorm'" in err.value.hint
    assert all(name in err.value.hint for name in CLEANUP)


def test_register_pass_checks_the_declaration(registry):
    class NoCases(Pass):
        """No numbered cases here."""

        name = "no_cases"

    class BadDefault(Pass):
        """Bad knob.

        1. Case.
        """

        name = "bad_default"
        knobs = (Knob("k", int, 11, "a knob", range=(0, 10)),)

    class Clash(Pass):
        """Takes a registered name.

        1. Case.
        """

        name = "fold_constants"

    for cls, words in (
        (NoCases, "numbered"),
        (BadDefault, "default of knob 'k'"),
        (Clash, "two passes"),
    ):
        with pytest.raises(TypeError, match=words):
            register_pass(cls)
    register_pass(FlipSign)
    assert register_pass(FlipSign) is FlipSign  # re-registering the same class is harmless


# ---------------------------------------------------------------------- knobs
@pytest.mark.parametrize(
    "knob,text,value",
    [
        (Knob("n", int, 1, "", range=(0, 10)), "7", 7),
        (Knob("n", int, 1, "", range=(0, None)), "1_000_000", 1_000_000),
        (Knob("r", float, 0.5, "", range=(0.0, 1.0)), "0.25", 0.25),
        (Knob("r", float, 0.5, "", range=(0.0, 1.0)), "1", 1.0),
        (Knob("b", bool, False, ""), "Yes", True),
        (Knob("b", bool, True, ""), "off", False),
        (Knob("s", str, "l2", "", choices=("l1", "l2")), "l1", "l1"),
    ],
)
def test_knob_parses_accepted_values(knob, text, value):
    got = knob.parse(text, "some_pass")
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    "knob,text,accepts",
    [
        (Knob("n", int, 1, "", range=(0, 10)), "11", "an int in [0, 10]"),
        (Knob("n", int, 1, "", range=(0, 10)), "2.5", "an int in [0, 10]"),
        (Knob("n", int, 1, "", range=(0, None)), "-1", "an int >= 0"),
        (Knob("r", float, 0.5, "", range=(0.0, 1.0)), "nan", "a float in [0.0, 1.0]"),
        (Knob("b", bool, False, ""), "maybe", "true or false"),
        (Knob("s", str, "l2", "", choices=("l1", "l2")), "l3", "one of 'l1', 'l2'"),
    ],
)
def test_knob_errors_name_pass_knob_and_accepted_values(knob, text, accepts):
    with pytest.raises(HwccError) as err:
        knob.parse(text, "some_pass")
    assert "pass 'some_pass'" in err.value.message and f"knob {knob.name!r}" in err.value.message
    assert accepts in err.value.hint


def test_knob_values_from_the_context_are_checked_before_any_pass_runs():
    ran = []
    spy = simple_pass("spy", lambda g: ran.append(1) or PassResult(g, False, "spy"))
    for knobs, words in (
        ({"max_bytes": "big"}, "knob 'max_bytes' cannot be 'big'"),
        ({"max_byte": 1}, "has no knob 'max_byte'"),
    ):
        with pytest.raises(HwccError, match=words):
            PassManager([spy, "fold_constants"], PassContext(knobs={"fold_constants": knobs})).run(
                mul_relu()
            )
    assert ran == []


def test_unknown_knob_in_settings():
    with pytest.raises(HwccError) as err:
        apply_by_hand(
            mul_relu(), "fold_constants", {"max_megabytes": "3"}, verify=False, rtol=RTOL, atol=ATOL
        )
    assert "no knob 'max_megabytes'" in err.value.message and "max_bytes" in err.value.hint


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


# ---------------------------------------------------------------------- hwcc.ir.verify
def test_random_feeds_cover_every_real_input_with_its_dtype():
    g = Graph("inputs")
    g.add_input("f", dtypes.FLOAT, (2, 3))
    g.add_input("i", dtypes.INT64, (50,))
    g.add_input("b", dtypes.BOOL, (50,))
    g.add_input("h", dtypes.FLOAT16, ())
    g.add_initializer("w", np.ones(2, np.float32))
    g.inputs.append("w")
    feeds = random_feeds(g, seed=1)
    assert set(feeds) == {"f", "i", "b", "h"}
    assert feeds["f"].dtype == np.float32 and feeds["f"].shape == (2, 3)
    assert feeds["i"].dtype == np.int64 and 0 <= feeds["i"].min() and feeds["i"].max() < 4
    assert feeds["b"].dtype == np.bool_ and feeds["b"].any() and not feeds["b"].all()
    assert feeds["h"].dtype == np.float16 and feeds["h"].shape == ()
    again = random_feeds(g, seed=1)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    assert not np.array_equal(feeds["f"], random_feeds(g, seed=2)["f"])


def test_random_feeds_need_fixed_shapes():
    g = Graph("dynamic")
    g.add_input("x", dtypes.FLOAT, ("N", 3))
    with pytest.raises(HwccError, match="dynamic shape") as err:
        random_feeds(g, seed=0)
    assert "--input-shape x:" in err.value.hint


def test_compare_reports_per_output_errors():
    g = mul_relu()
    wrong = FlipSign().call(g, PassContext()).graph
    v = compare(g, wrong, rtol=RTOL, atol=ATOL, n=3)
    assert not v.passed and v.samples == 3 and [o.name for o in v.outputs] == ["y"]
    feeds = {"x": np.ones((2, 3), np.float32)}
    (y,) = run_onnx(wrong, feeds)
    assert (y == 0).all()  # Relu(-w) on positive inputs
    exact = compare(g, g, rtol=0, atol=0, feeds=feeds)
    assert exact.passed and exact.max_abs_err == 0 and exact.samples == 1


def test_compare_flags_a_changed_shape():
    g = mul_relu()
    reshaped = g.copy()
    reshaped.add_initializer("flat", np.array([6], np.int64))
    reshaped.add_node("Reshape", ["i"], ["r"])
    reshaped.set_inputs(reshaped.node("relu"), ["r"])
    reshaped.set_inputs(reshaped.find("Reshape")[0], ["i", "flat"])
    onnx_io.infer_shapes(reshaped)
    v = compare(g, reshaped, rtol=RTOL, atol=ATOL)
    assert not v.passed and "shape changed to [6]" in v.summary()


def test_run_onnx_explains_what_it_cannot_run():
    g = mul_relu()
    g.add_node("Frobnicate", ["y"], ["z"], domain="com.example")
    g.opset_imports["com.example"] = 1
    g.outputs.append("z")
    g.tensors["z"].elem_type = dtypes.FLOAT
    with pytest.raises(HwccError, match="onnxruntime cannot load the model"):
        run_onnx(g, {"x": np.ones((2, 3), np.float32)})
    with pytest.raises(HwccError, match="no value given for model input"):
        run_onnx(mul_relu(), {})


def test_compare_takes_files_and_graphs(tmp_path):
    g = mul_relu()
    path = onnx_io.save(g, tmp_path / "m.onnx")
    v = compare(
        str(path), get_pass("eliminate_dead")(g, PassContext(verify=False)).graph, rtol=0, atol=0
    )
    assert v.passed and v.samples == 2

"""The pass registry and its knobs: discovery of the pass modules, adding a pass as a file,
unknown pass names, the checks of a pass's declaration, and knob values parsed, refused
with the accepted values, and checked before any pass runs. The ``registry`` fixture (a
private copy of the registry) is in tests/conftest.py."""

from __future__ import annotations

import sys
import textwrap

import pytest
from pass_infra_passes import ATOL, RTOL, FlipSign, mul_relu, simple_pass

import hwcc.passes
from hwcc.cli.apply_view import apply_by_hand
from hwcc.errors import HwccError
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.transform import (
    Knob,
    Pass,
    PassContext,
    PassResult,
    get_pass,
    list_passes,
    register_pass,
)

CLEANUP = {"fold_batchnorm", "fold_constants", "eliminate_dead"}


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

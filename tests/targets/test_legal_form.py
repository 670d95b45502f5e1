"""A target's legal form: the ``[legal_form.<pass>]`` tables of its TOML, read in order and
checked against the pass registry (and, for EIE, against the chip's codebook index)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hwcc.errors import HwccError
from hwcc.targets.base import load_target

TARGETS = Path(__file__).resolve().parents[2] / "targets"


@pytest.mark.parametrize(
    "name, form",
    [
        ("tpu", {"quantize_int8": {"calibration": "minmax"}}),
        ("eie", {"quantize_kmeans": {"bits": 4, "zero_slot": True, "codebook_bits": 16}}),
        ("eyeriss", {"quantize_fixed16": {}}),
        ("cpu", {}),
        ("gpu", {}),
        ("gpu-v100", {}),
        ("gpu-h100", {}),
    ],
)
def test_legal_form_is_read_from_the_toml(name, form):
    t = load_target(name)
    assert t.legal_form == form
    assert t.describe()["legal_form"] == form
    t.legal_form.setdefault("quantize", {})["mode"] = "changed"  # a copy: the target keeps its own
    assert t.legal_form == form


def test_eie_legal_form_bits_are_the_chip_s_index_bits():
    eie = load_target("eie")
    assert eie.legal_form["quantize_kmeans"]["bits"] == eie.index_bits == 4


@pytest.mark.parametrize(
    "table, message",
    [
        ('[legal_form.quantise]\nmode = "int8"\n', "unknown pass 'quantise'"),
        ('[legal_form.quantize]\nmodes = "int8"\n', "has no knob 'modes'"),
        ('[legal_form.quantize]\nmode = "int4"\n', "knob 'mode' cannot be 'int4'"),
        ('legal_form = "int8"\n', "legal_form must be a table"),
        ('[legal_form]\nquantize = "int8"\n', "legal_form.quantize must be a table"),
    ],
)
def test_a_bad_legal_form_is_an_error_naming_the_file(tmp_path, table, message):
    text = re.sub(
        r"^\[legal_form\.quantize_int8\]\ncalibration = .*\n",
        "",
        (TARGETS / "tpu" / "tpu.toml").read_text(),
        flags=re.M,
    )
    assert "legal_form" not in text
    head, params = text.split("[params]", 1)  # top-level keys must come before the first table
    path = tmp_path / "bad.toml"
    path.write_text(
        head + table + "\n[params]" + params if not table.startswith("[") else text + "\n" + table
    )
    with pytest.raises(HwccError) as e:
        load_target(path)
    assert str(path) in e.value.message and message in e.value.message


def test_eie_legal_form_wider_than_the_codebook_index_is_an_error(tmp_path):
    text = (
        (TARGETS / "eie" / "eie.toml")
        .read_text()
        .replace("bits = 4                        # = index_bits", "bits = 5")
    )
    path = tmp_path / "eie5.toml"
    path.write_text(text)
    with pytest.raises(HwccError, match="shares weights at 5 bits"):
        load_target(path)


def test_eie_legal_form_through_the_quantize_alias_is_checked_too(tmp_path):
    """``[legal_form.quantize] mode = "kmeans"`` is the same codebook: its bits are checked."""
    text = (TARGETS / "eie" / "eie.toml").read_text()
    head = text[: text.index("[legal_form.quantize_kmeans]")]
    assert "legal_form" not in head
    alias = '[legal_form.quantize]\nmode = "kmeans"\nbits = {}\nzero_slot = true\n'
    (tmp_path / "eie4.toml").write_text(head + alias.format(4))
    eie = load_target(tmp_path / "eie4.toml")
    assert eie.legal_form == {"quantize": {"mode": "kmeans", "bits": 4, "zero_slot": True}}
    (tmp_path / "eie5.toml").write_text(head + alias.format(5))
    with pytest.raises(HwccError, match="shares weights at 5 bits"):
        load_target(tmp_path / "eie5.toml")

"""Text that is not UTF-8 in a model: names are refused with the field that holds them, doc
strings load and save with replacement characters, attribute strings round trip as bytes,
and saving text that has no UTF-8 form is a clean error that writes nothing."""

from __future__ import annotations

import onnx
import pytest
from hostile_models import make_model, refused, write
from onnx import helper

import hwcc
from hwcc.errors import HwccError


# ---------------------------------------------------------------- text that is not UTF-8
def _break_utf8(model: onnx.ModelProto, token: str) -> bytes:
    """The serialised model with ``token``'s first two bytes made invalid UTF-8 wherever it
    occurs (lengths stay the same, so the protobuf is still well formed)."""
    data = model.SerializeToString()
    assert token.encode() in data
    return data.replace(token.encode(), b"\xff\xfe" + token.encode()[2:])


_NAMED_NODES = {  # where the bad text goes: (nodes with a TOKEN there, the field the error names)
    "node name": ([helper.make_node("Relu", ["x"], ["y"], name="TOKEN")], r"graph.node\[0\].name"),
    "tensor name": (
        [helper.make_node("Relu", ["x"], ["TOKEN"]), helper.make_node("Neg", ["TOKEN"], ["y"])],
        r"graph.node\[0\].output",
    ),
    "attribute name": (
        [helper.make_node("Relu", ["x"], ["y"], TOKEN=1)],
        r"graph.node\[0\].attribute\[0\].name",
    ),
    "domain": ([helper.make_node("Relu", ["x"], ["y"], domain="TOKEN")], r"graph.node\[0\].domain"),
}


@pytest.mark.parametrize("where", list(_NAMED_NODES))
def test_names_that_are_not_utf8_are_refused(tmp_path, where):
    nodes, field = _NAMED_NODES[where]
    e = refused(
        write(tmp_path, _break_utf8(make_model(nodes), "TOKEN")),
        field + r" is not valid UTF-8 text",
    )
    assert "b'\\xff\\xfeKEN'" in str(e)


def test_doc_strings_that_are_not_utf8_load_and_save(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], name="n", doc_string="NODEDOC")
    m = make_model([node])
    m.doc_string, m.graph.doc_string = "MODELDOC", "GRAPHDOC"
    m.graph.input[0].doc_string = "INPUTDOC"
    data = m.SerializeToString()
    for token in ("NODEDOC", "MODELDOC", "GRAPHDOC", "INPUTDOC"):
        data = data.replace(token.encode(), b"\xff\xfe" + token.encode()[2:])
    g = hwcc.load(write(tmp_path, data))
    assert g.node("n").meta["doc_string"] == "\ufffd\ufffdDEDOC"
    assert g.meta["doc_string"] == "\ufffd\ufffdDELDOC"
    hwcc.save(g, tmp_path / "out.onnx")
    back = onnx.load(str(tmp_path / "out.onnx"))
    assert back.graph.node[0].doc_string == "\ufffd\ufffdDEDOC"
    assert back.graph.doc_string == "\ufffd\ufffdAPHDOC"
    assert back.graph.input[0].doc_string == "\ufffd\ufffdPUTDOC"


def test_attribute_strings_that_are_not_utf8_round_trip_as_bytes(tmp_path):
    node = helper.make_node(
        "Custom", ["x"], ["y"], name="n", domain="acme", mode="MODEVALUE", tags=["TAGVALUE", "ok"]
    )
    data = _break_utf8(make_model([node], opsets=[("acme", 1)]), "MODEVALUE")
    data = data.replace(b"TAGVALUE", b"\xff\xfeGVALUE")
    g = hwcc.load(write(tmp_path, data))
    assert g.node("n").attrs["mode"] == b"\xff\xfeDEVALUE"
    assert g.node("n").attrs["tags"] == [b"\xff\xfeGVALUE", "ok"]
    hwcc.save(g, tmp_path / "out.onnx")
    attrs = {a.name: a for a in onnx.load(str(tmp_path / "out.onnx")).graph.node[0].attribute}
    assert attrs["mode"].s == b"\xff\xfeDEVALUE"
    assert list(attrs["tags"].strings) == [b"\xff\xfeGVALUE", b"ok"]


@pytest.mark.parametrize("where", ["node name", "doc string", "attribute"])
def test_saving_text_that_has_no_utf8_form_is_a_clean_error(tmp_path, where):
    g = hwcc.load(make_model([helper.make_node("Relu", ["x"], ["y"], name="n")]))
    bad = "n\udcff"  # a lone surrogate, as os.fsdecode makes of a bad byte
    if where == "node name":
        g.node("n").meta["onnx_name"] = bad
    elif where == "doc string":
        g.node("n").meta["doc_string"] = bad
    else:
        g.node("n").attrs["mode"] = bad
    with pytest.raises(
        HwccError, match=r"cannot write .*out.onnx: the text 'n\\udcff' .* is not valid UTF-8"
    ):
        hwcc.save(g, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()

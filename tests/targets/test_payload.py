"""What a compiler takes from a target besides prices: its legal form and its payload.

Legal form: each chip runs the model in its form (the tables themselves are read and
checked in test_legal_form.py). Payload: the files ``Target.write_payload`` writes beside
the model, checked against the format (EIE: decoding what was written gives the weights
back exactly), the model (TPU: the int8 weights are the QDQ model's) and the cost model
(TPU: one tile load per tile and accumulator pass, ``T·c``; Eyeriss: the mapping priced
and its energy).
"""

from __future__ import annotations

import json
import math
import shlex
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from onnx import TensorProto, helper

import hwcc
from hwcc.errors import HwccError
from hwcc.formats import sparse as eie_format
from hwcc.ir import onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.models import model_path
from hwcc.models.digits import load_split
from hwcc.passes.lib.calibration import Runner
from hwcc.targets.base import CostContext, load_target
from hwcc.targets.eie.payload import read_layer

MATRIX_OPS = ("Conv", "Gemm", "MatMul")


# ---------------------------------------------------------------------- fixtures
def zoo(name: str):
    return onnx_io.load(model_path(name))


@pytest.fixture(scope="module")
def feeds():
    x, _ = load_split("train")
    return {"input": x[:64]}


@pytest.fixture(scope="module")
def lenet5_int8(feeds):
    res = get_pass("quantize")(
        zoo("lenet5-digits"), PassContext(knobs={"quantize": {"mode": "int8"}}, data=feeds)
    )
    assert res.modified
    return res.graph


@pytest.fixture(scope="module")
def lenet300_eie():
    """lenet300-digits pruned to 10 % of its weights, then shared at 4 bits: EIE's form."""
    pruned = get_pass("prune_weights")(
        zoo("lenet300-digits"), PassContext(knobs={"prune_weights": {"density": 0.1}})
    )
    shared = get_pass("quantize")(
        pruned.graph, PassContext(knobs={"quantize": {"mode": "kmeans", "bits": 4}})
    )
    assert pruned.modified and shared.modified
    return shared.graph


def conv_relu_graph():
    """Conv → Relu: nothing EIE runs."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3, 3], np.linspace(-1, 1, 36).tolist())
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
            helper.make_node("Relu", ["h"], ["y"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        initializer=[w],
    )
    return hwcc.load(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    )


def parse_listing(text: str) -> list[tuple[str, dict[str, str]]]:
    """``(instruction, operands)`` of every non-comment line of a TPU program."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            kind, *ops = shlex.split(line)
            out.append((kind, dict(op.split("=", 1) for op in ops)))
    return out


# ---------------------------------------------------------------------- legal forms priced
def test_tpu_prices_a_float_graph_on_the_host_and_its_legal_form_on_the_tpu(lenet5_int8):
    tpu = load_target("tpu")
    float_cost = tpu.price(zoo("lenet5-digits"))
    assert {x.on for x in float_cost.layers if x.layer.op_type in MATRIX_OPS} == {"cpu"}
    int8_cost = tpu.price(lenet5_int8)
    matrix = [x for x in int8_cost.layers if x.layer.op_type in MATRIX_OPS]
    assert len(matrix) == 4 and {x.on for x in matrix} == {"tpu"}
    # Only the float input's QuantizeLinear is left to the host.
    assert [x.layer.op_type for x in int8_cost.layers if x.on != "tpu"] == ["QuantizeLinear"]
    assert int8_cost.latency_s < float_cost.latency_s


def test_eie_and_eyeriss_run_their_legal_forms(lenet300_eie):
    eie = load_target("eie")
    fc = [x for x in eie.cost(lenet300_eie).layers if x.layer.op_type == "Gemm"]
    assert len(fc) == 3 and {x.on for x in fc} == {"eie"}
    assert {x.layer.weight_bits for x in fc} == {4}
    eyeriss = load_target("eyeriss")
    fixed = get_pass("quantize")(
        zoo("lenet5-digits"), PassContext(knobs={"quantize": {"mode": "fixed16"}})
    ).graph
    layers = [x for x in eyeriss.price(fixed).layers if x.layer.op_type in MATRIX_OPS]
    assert (
        len(layers) == 4
        and {x.on for x in layers} == {"eyeriss"}
        and {x.layer.weight_bits for x in layers} == {16}
    )


# ---------------------------------------------------------------------- no payload
@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_targets_that_run_the_model_write_nothing(tmp_path, name):
    assert load_target(name).write_payload(zoo("lenet5-digits"), tmp_path) == {}
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- EIE
def test_eie_payload_decodes_to_the_weights_exactly(tmp_path, lenet300_eie):
    eie = load_target("eie")
    files = eie.write_payload(lenet300_eie, tmp_path)
    manifest = json.loads((tmp_path / "eie/manifest.json").read_text())
    assert set(files) == {"eie/manifest.json"} | {x["file"] for x in manifest["layers"]}
    assert all((tmp_path / f).is_file() for f in files)
    assert [x["name"] for x in manifest["layers"]] == ["/1/Gemm", "/3/Gemm", "/5/Gemm"]
    assert manifest["host_layers"] == [] and manifest["format"]["n_pes"] == 64
    total = 0
    for entry in manifest["layers"]:
        node = lenet300_eie.node(entry["name"])
        w = lenet300_eie.initializer(node.inputs[1])  # transB = 1: stored as outputs × inputs
        assert node.attr("transB") == 1 and entry["shape"] == list(w.shape)
        with np.load(tmp_path / entry["file"], allow_pickle=False) as f:
            n, off = int(f["n_pes"]), f["entry_offsets"]
            assert n == 64 and f["v"].dtype == np.uint8 and f["z"].dtype == np.uint8
            assert f["p"].shape == (n, w.shape[1] + 1) and f["p"].dtype == np.uint16
            book = f["codebook"]
            assert book[0] == 0 and len(book) <= 16 and set(book[1:]) == set(np.unique(w[w != 0]))
            m = eie_format.EIEMatrix(
                tuple(f["shape"]),
                n,
                book.astype(np.float64),
                [f["v"][off[k] : off[k + 1]] for k in range(n)],
                [f["z"][off[k] : off[k + 1]] for k in range(n)],
                [f["p"][k].astype(np.int64) for k in range(n)],
            )
            step = 2.0 ** -int(f["codebook_frac_bits"])
            assert np.all(np.abs(f["codebook_fixed"] * step - book) <= step / 2)
            assert f["codebook_fixed"].dtype == np.int16
            np.testing.assert_array_equal(f["bias"], lenet300_eie.initializer(node.inputs[2]))
        np.testing.assert_array_equal(eie_format.decode(m), w.astype(np.float64))  # exact
        # The interleaving: row i on PE i mod 64, so PE k holds the non-zeros of rows k, k+64, ...
        assert m.nnz_per_pe.tolist() == entry["nnz_per_pe"]
        assert entry["nnz_per_pe"] == [int(np.count_nonzero(w[k::n])) for k in range(n)]
        assert sum(entry["nnz_per_pe"]) == entry["nnz"] == np.count_nonzero(w)
        expected = eie_format.encode(w, 64, 4, np.concatenate([[0.0], np.unique(w[w != 0])]))
        assert entry["storage_bits"] == m.storage_bits == expected.storage_bits
        assert entry["storage_bytes"] == math.ceil(expected.storage_bits / 8)
        assert sum(entry["storage_bits_per_pe"]) == expected.storage_bits
        total += entry["storage_bytes"] + entry["codebook_bytes"]
    assert manifest["total_bytes"] == total


def test_eie_payload_of_a_host_only_graph_writes_no_layer(tmp_path):
    files = load_target("eie").write_payload(conv_relu_graph(), tmp_path)
    assert list(files) == ["eie/manifest.json"]
    manifest = json.loads((tmp_path / "eie/manifest.json").read_text())
    assert manifest["layers"] == [] and manifest["total_bytes"] == 0
    assert [(x["name"], x["on"]) for x in manifest["host_layers"]] == [
        ("conv", "host-45nm"),
        ("relu", "host-45nm"),
    ]
    assert sorted(p.name for p in (tmp_path / "eie").iterdir()) == ["manifest.json"]


def test_eie_payload_needs_shared_weights(tmp_path):
    with pytest.raises(HwccError, match="(?s)distinct non-zero weights.*kmeans bits=4"):
        load_target("eie").write_payload(zoo("lenet300-digits"), tmp_path)
    # Dense and shared at 4 bits: 16 values, no index left for zero.
    dense = get_pass("quantize")(
        zoo("lenet300-digits"), PassContext(knobs={"quantize": {"mode": "kmeans"}})
    ).graph
    with pytest.raises(HwccError, match="holds 16 distinct"):
        load_target("eie").write_payload(dense, tmp_path)


def test_eie_payload_of_a_dense_model_in_the_legal_form_decodes_exactly(tmp_path):
    """Dense lenet300 through EIE's own legal form (zero slot, 16-bit fixed codebook): 15
    shared values and zero per layer, and the int16 codebook times 2^-f is the weights."""
    eie = load_target("eie")
    dense = zoo("lenet300-digits")
    form = eie.legal_form["quantize_kmeans"]
    g = get_pass("quantize_kmeans")(dense, PassContext(knobs={"quantize_kmeans": form})).graph
    eie.write_payload(g, tmp_path)
    manifest = json.loads((tmp_path / "eie/manifest.json").read_text())
    assert [x["name"] for x in manifest["layers"]] == ["/1/Gemm", "/3/Gemm", "/5/Gemm"]
    for entry in manifest["layers"]:
        node = g.node(entry["name"])
        w = g.initializer(node.inputs[1])
        assert np.count_nonzero(w) == w.size == entry["nnz"]  # still dense: no weight became zero
        assert entry["codebook_entries"] == 16 and entry["codebook_fixed_max_error"] == 0.0
        assert entry["codebook_frac_bits"] == node.meta["weight_sharing"]["codebook_frac_bits"]
        m = read_layer(tmp_path / entry["file"])
        with np.load(tmp_path / entry["file"], allow_pickle=False) as f:
            codes, frac = f["codebook_fixed"], int(f["codebook_frac_bits"])
            assert codes.dtype == np.int16 and codes[0] == 0 and len(np.unique(codes)) == 16
            fixed = codes.astype(np.float64) * 2.0**-frac
            # int16 codebook × scale == shared values
            np.testing.assert_array_equal(fixed, f["codebook"])
        decoded = eie_format.decode(replace(m, codebook=fixed))
        # == the model's weights, exactly
        np.testing.assert_array_equal(decoded, w.astype(np.float64))


# ---------------------------------------------------------------------- TPU
def test_tpu_weights_are_the_int8_initializers_of_the_qdq_graph(tmp_path, lenet5_int8, feeds):
    files = load_target("tpu").write_payload(lenet5_int8, tmp_path)
    assert set(files) == {"tpu/weights.npz", "tpu/program.txt"}
    g = lenet5_int8
    dq_of = {}
    with np.load(tmp_path / "tpu/weights.npz", allow_pickle=False) as f:
        names = list(f["layers"])
        assert names == ["/0/Conv", "/2/Conv", "/6/Gemm", "/8/Gemm"]
        for i, name in enumerate(names):
            key = f"L{i:02d}."
            dq = g.producer(g.node(name).inputs[1])
            assert dq.op_type == "DequantizeLinear"
            q, s, z = f[key + "weight"], f[key + "weight_scale"], f[key + "weight_zero_point"]
            assert (
                q.dtype == np.int8
                and z.dtype == np.int8
                and int(f[key + "weight_axis"]) == dq.attr("axis")
            )
            np.testing.assert_array_equal(q, g.initializer(dq.inputs[0]))
            assert f[key + "bias"].dtype == np.int32
            shape = [-1] + [1] * (q.ndim - 1)
            dq_of[dq.outputs[0]] = (
                q.astype(np.float32) - z.astype(np.float32).reshape(shape)
            ) * s.reshape(shape)
    out = Runner(g, list(dq_of)).run({"input": feeds["input"][:1]})
    for tensor, mine in dq_of.items():
        np.testing.assert_array_equal(mine, out[tensor])  # exact: the same float32 product


@pytest.mark.parametrize("model, batch", [("lenet5-digits", 1), ("resnet-digits", 64)])
def test_tpu_listing_loads_the_tiles_the_cost_model_prices(
    tmp_path, feeds, lenet5_int8, model, batch
):
    tpu = load_target("tpu")
    g = (
        lenet5_int8
        if model == "lenet5-digits"
        else get_pass("quantize")(
            zoo(model),
            PassContext(knobs={"quantize": {"mode": "int8"}}, data={"input": feeds["input"][:8]}),
        ).graph
    )
    ctx = CostContext(batch=batch)
    tpu.write_payload(g, tmp_path, ctx)
    text = (tmp_path / "tpu/program.txt").read_text()
    prog = parse_listing(text)
    kinds = [k for k, _ in prog]
    assert set(kinds) <= {
        "Read_Host_Memory",
        "Read_Weights",
        "MatrixMultiply",
        "Convolve",
        "Activate",
        "Write_Host_Memory",
    }
    assert kinds[0] == "Read_Host_Memory" and kinds[-1] == "Write_Host_Memory"
    first = {
        k: kinds.index(k)
        for k in (
            "Read_Host_Memory",
            "Read_Weights",
            "Convolve",
            "MatrixMultiply",
            "Activate",
            "Write_Host_Memory",
        )
    }
    assert (
        first["Read_Host_Memory"]
        < first["Read_Weights"]
        < first["Convolve"]
        < first["Activate"]
        < first["MatrixMultiply"]
        < first["Write_Host_Memory"]
    )
    cost = tpu.cost(g, ctx)
    priced = {
        x.layer.name: x.cost.breakdown["tiles"] * x.cost.breakdown["passes"]
        for x in cost.layers
        if x.on == "tpu" and "tiles" in x.cost.breakdown
    }
    assert priced and Counter(ops["layer"] for k, ops in prog if k == "Read_Weights") == priced
    # Every multiply runs on the tile loaded just before it; a layer's passes cover its rows.
    for (k0, a), (k1, b) in zip(prog, prog[1:]):
        if k1 in ("MatrixMultiply", "Convolve"):
            assert k0 == "Read_Weights" and (a["layer"], a["tile"], a["pass"]) == (
                b["layer"],
                b["tile"],
                b["pass"],
            )
    for x in cost.layers:
        if x.layer.name in priced:
            [(_, rows, _, _, _)] = tpu.multiplies(x.layer)
            mm = [
                ops
                for k, ops in prog
                if k in ("MatrixMultiply", "Convolve") and ops["layer"] == x.layer.name
            ]
            assert sum(int(ops["rows"]) for ops in mm if ops["tile"].startswith("0/")) == rows
            assert all(
                int(ops["acc"]) + int(ops["rows"]) <= tpu.params["accumulator_entries"]
                for ops in mm
            )
    # Host nodes are comments, in graph order with the instructions.
    assert "# host (cpu): input_QuantizeLinear (QuantizeLinear)" in text
    assert text.index("# host (cpu): input_QuantizeLinear") < text.index("Read_Host_Memory")


def test_tpu_listing_of_a_float_graph_is_all_host(tmp_path):
    load_target("tpu").write_payload(zoo("lenet5-digits"), tmp_path)
    text = (tmp_path / "tpu/program.txt").read_text()
    assert parse_listing(text) == []
    assert sum(line.startswith("# host (cpu): ") for line in text.splitlines()) == 9
    with np.load(tmp_path / "tpu/weights.npz", allow_pickle=False) as f:
        assert list(f["layers"]) == [] and f.files == ["layers"]


# ---------------------------------------------------------------------- Eyeriss
def test_eyeriss_mapping_has_every_layer_and_the_cost_s_energy(tmp_path):
    eyeriss = load_target("eyeriss")
    g = get_pass("quantize")(
        zoo("lenet5-digits"), PassContext(knobs={"quantize": {"mode": "fixed16"}})
    ).graph
    ctx = CostContext(batch=4)
    files = eyeriss.write_payload(g, tmp_path, ctx)
    assert list(files) == ["eyeriss/mapping.json"]
    doc = json.loads((tmp_path / "eyeriss/mapping.json").read_text())
    cost = eyeriss.cost(g, ctx)
    assert [x["name"] for x in doc["layers"]] == ["/0/Conv", "/2/Conv", "/6/Gemm", "/8/Gemm"]
    for entry in doc["layers"]:
        mp = entry["mapping"]
        assert set("mnepqrt") | {"active_pes", "passes", "processing_cycles"} <= set(mp)
        assert 1 <= mp["active_pes"] <= 168
        priced = cost.layer(entry["name"])
        assert {k: mp[k] for k in "mnepqrt"} == {
            k: priced.cost.breakdown[f"map_{k}"] for k in "mnepqrt"
        }
        e = entry["energy"]
        assert entry["energy_j"] == pytest.approx(priced.cost.energy_j, rel=1e-12)
        assert e["mac_j"] + sum(e["by_level"].values()) == pytest.approx(
            entry["energy_j"], rel=1e-9
        )
        assert e["mac_j"] + sum(e["by_type"].values()) == pytest.approx(entry["energy_j"], rel=1e-9)
    assert [(x["name"], x["on"]) for x in doc["host_layers"]] == [("/4/MaxPool", "host-45nm")]
    everything = doc["layers"] + doc["other_layers"] + doc["host_layers"]
    assert len(everything) == len(g.nodes)
    assert sum(x["energy_j"] for x in everything) == pytest.approx(cost.energy_j, rel=1e-12)
    assert doc["total"]["energy_j"] == pytest.approx(cost.energy_j) and doc["batch"] == 4


@pytest.mark.slow
def test_tpu_listing_packs_grouped_convolutions_as_the_cost_model_does(tmp_path, feeds):
    tpu = load_target("tpu")
    knobs = {"quantize": {"mode": "int8"}}
    g = get_pass("quantize")(
        zoo("mobilenet-digits"), PassContext(knobs=knobs, data={"input": feeds["input"][:8]})
    ).graph
    ctx = CostContext(batch=64)
    assert any(x.layer.groups > 1 and x.on == "tpu" for x in tpu.cost(g, ctx).layers)
    tpu.write_payload(g, tmp_path, ctx)
    prog = parse_listing((tmp_path / "tpu/program.txt").read_text())
    priced = {
        x.layer.name: x.cost.breakdown["tiles"] * x.cost.breakdown["passes"]
        for x in tpu.cost(g, ctx).layers
        if x.on == "tpu" and "tiles" in x.cost.breakdown
    }
    assert Counter(ops["layer"] for k, ops in prog if k == "Read_Weights") == priced
    assert any("groups" in ops for k, ops in prog if k == "Read_Weights")

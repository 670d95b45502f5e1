"""EIE's payload: each FC layer's compressed, interleaved weights and its codebook.

For every Gemm/MatMul the EIE cost model runs on the chip (not on its host), the weight
matrix ``W`` (rows = outputs, ``W = Bᵀ`` unless ``transB``; Gemm's ``alpha`` folded in) is
encoded by :func:`hwcc.formats.sparse.encode` for the chip's ``num_pes`` PEs, with the
codebook ``[0, c_1, ..., c_k]`` made of the layer's own distinct non-zero values: the
model is expected in the legal form (k-means weight sharing), so nothing is re-clustered
and the encoding is exact. A layer with more than ``2**index_bits − 1`` distinct non-zero
values has no such codebook and is an error (a dense layer shared at 4 bits without the
quantize_kmeans pass's ``zero_slot`` has 16 values and no index left for zero). The legal form
(``zero_slot = true``, ``codebook_bits = 16``) gives every layer, dense ones included, at
most 15 non-zero values, each already 16-bit fixed point: ``codebook_fixed`` then decodes
to the model's weights exactly (``codebook_fixed_max_error`` is 0).

Files, under ``eie/``:

* ``NN_<layer>.npz`` per layer:

  - ``v``, ``z`` (uint8): the codebook indices and relative row indices of every entry,
    PE after PE; PE ``k`` holds entries ``entry_offsets[k] : entry_offsets[k + 1]``;
  - ``p`` (``n_pes × (cols + 1)``, uint16, or uint32 when a PE holds more entries than
    16-bit pointers reach): each PE's column pointers, relative to its first entry;
  - ``codebook`` (float32, ``codebook[0] == 0``) and ``codebook_fixed`` (int16): the
    shared values and their 16-bit fixed-point codes ``round(c·2^f)`` with
    ``f = codebook_frac_bits`` (:mod:`hwcc.formats.fixed_point`, per layer);
  - ``bias`` / ``bias_fixed`` / ``bias_frac_bits`` when the Gemm has one: row ``i``'s
    bias, which PE ``i mod n_pes`` loads into its accumulator (the cost model prices the
    bias as one more column of the matrix instead; the 16-entry codebook cannot hold it);
  - ``shape``, ``n_pes``, ``index_bits``, ``z_bits``, ``pointer_bits``.

* ``manifest.json``: the format, each layer's file, shape, non-zeros (in all and per
  PE), entries and padding, storage bits per PE (sparse-matrix SRAM + pointer SRAM) and in
  all (:attr:`EIEMatrix.storage_bits`), bytes, the fixed-point codebook's largest error,
  and the layers left to the host with the reason.

After writing, each layer's file is read back and decoded; the result must equal the
layer's weights exactly.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.formats import sparse as eie_format
from hwcc.formats.fixed_point import TOTAL_BITS, frac_bits
from hwcc.ir import Graph, Node
from hwcc.targets.base import CostContext

__all__ = ["write_eie_payload", "read_layer"]

_THROUGH = ("Identity", "Cast")
_MATRIX_OPS = ("Gemm", "MatMul")


def _file_stem(index: int, name: str) -> str:
    """A file stem for the ``index``-th layer: its name reduced to ``[A-Za-z0-9_.-]``."""
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_.') or 'layer'}"


def _constant(g: Graph, name: str) -> np.ndarray | None:
    """The real values of a constant tensor (through Identity, Cast and DequantizeLinear)."""
    p = g.producer(name)
    if p is None:
        return g.initializer(name)
    if p.op_type == "Constant":
        v = p.attr("value")
        return v if isinstance(v, np.ndarray) else None
    if p.op_type in _THROUGH:
        return _constant(g, p.inputs[0])
    if p.op_type == "DequantizeLinear":
        q, s = _constant(g, p.inputs[0]), _constant(g, p.inputs[1])
        z = _constant(g, p.inputs[2]) if len(p.inputs) > 2 and p.inputs[2] else None
        if q is None or s is None:
            return None
        shape = [1] * q.ndim
        if s.size > 1:
            shape[int(p.attr("axis", 1)) % q.ndim] = -1
        zero = (
            np.zeros((), np.float32)
            if z is None
            else z.astype(np.float32).reshape(shape if z.size > 1 else ())
        )
        return (q.astype(np.float32) - zero) * s.astype(np.float32).reshape(
            shape if s.size > 1 else ()
        )
    return None


def layer_matrix(g: Graph, node: Node) -> tuple[np.ndarray, np.ndarray | None]:
    """``(W, bias)`` of an FC node as EIE computes ``b = W a + bias``: rows are outputs."""
    b = _constant(g, node.inputs[1])
    if b is None or b.ndim != 2:
        raise HwccError(f"{node.name}: EIE needs a constant 2-D weight as input B")
    w = b if node.op_type == "Gemm" and node.attr("transB", 0) else b.T
    bias = None
    if node.op_type == "Gemm":
        alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
        if alpha != 1.0:
            w = (w * np.float32(alpha)).astype(w.dtype)
        if len(node.inputs) > 2 and node.inputs[2]:
            c = _constant(g, node.inputs[2])
            if c is None:
                raise HwccError(f"{node.name}: its bias is computed at run time")
            bias = np.broadcast_to(c.reshape(-1) * np.float32(beta), (w.shape[0],)).astype(
                np.float32
            )
    return np.ascontiguousarray(w), bias


def codebook_of(name: str, w: np.ndarray, index_bits: int) -> np.ndarray:
    """``[0, distinct non-zero values...]`` of ``w`` (float64); an error if they do not fit."""
    distinct = np.unique(w[w != 0].astype(np.float64))
    room = (1 << index_bits) - 1
    if len(distinct) > room:
        raise HwccError(
            f"EIE payload: layer {name} holds {len(distinct)} distinct non-zero weights; EIE's "
            f"{index_bits}-bit codebook holds {room} besides zero",
            f"compile to EIE's legal form first (quantize_kmeans bits={index_bits} zero_slot=true "
            f"codebook_bits=16); a dense layer shared at {index_bits} bits without zero_slot "
            f"has {room + 1} values and no index left for zero",
        )
    return np.concatenate([[0.0], distinct])


def _fixed(values: np.ndarray) -> tuple[np.ndarray, int, float]:
    """16-bit fixed-point codes of ``values``, their fraction bits and the largest error."""
    f = frac_bits(float(values.min()), float(values.max()), TOTAL_BITS)
    codes = np.clip(
        np.round(values.astype(np.float64) * 2.0**f),
        -(2 ** (TOTAL_BITS - 1)),
        2 ** (TOTAL_BITS - 1) - 1,
    )
    err = float(np.max(np.abs(codes * 2.0**-f - values))) if values.size else 0.0
    return codes.astype(np.int16), f, err


def _arrays(
    m: eie_format.EIEMatrix, book: np.ndarray, bias: np.ndarray | None
) -> dict[str, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum(m.entries_per_pe)]).astype(np.int64)
    ptr_max = max(int(p[-1]) for p in m.p) if m.p else 0
    ptr_type = np.uint16 if ptr_max < 1 << 16 else np.uint32
    codes, f, _ = _fixed(book)
    out = {
        "v": np.concatenate(m.v).astype(np.uint8) if m.v else np.zeros(0, np.uint8),
        "z": np.concatenate(m.z).astype(np.uint8) if m.z else np.zeros(0, np.uint8),
        "entry_offsets": offsets,
        "p": np.stack(m.p).astype(ptr_type),
        "codebook": book.astype(np.float32),
        "codebook_fixed": codes,
        "codebook_frac_bits": np.int64(f),
        "shape": np.array(m.shape, np.int64),
        "n_pes": np.int64(m.n_pes),
        "index_bits": np.int64(m.index_bits),
        "z_bits": np.int64(m.z_bits),
        "pointer_bits": np.int64(m.pointer_bits),
    }
    if bias is not None:
        bcodes, bf, _ = _fixed(bias)
        out.update(bias=bias.astype(np.float32), bias_fixed=bcodes, bias_frac_bits=np.int64(bf))
    return out


def read_layer(path: Path) -> eie_format.EIEMatrix:
    """The :class:`EIEMatrix` stored in one layer file (codebook as float values)."""
    with np.load(path, allow_pickle=False) as f:
        off, n = f["entry_offsets"], int(f["n_pes"])
        return eie_format.EIEMatrix(
            shape=tuple(int(x) for x in f["shape"]),
            n_pes=n,
            codebook=f["codebook"].astype(np.float64),
            v=[f["v"][off[k] : off[k + 1]] for k in range(n)],
            z=[f["z"][off[k] : off[k + 1]] for k in range(n)],
            p=[f["p"][k].astype(np.int64) for k in range(n)],
            index_bits=int(f["index_bits"]),
            z_bits=int(f["z_bits"]),
            pointer_bits=int(f["pointer_bits"]),
        )


def write_eie_payload(
    target: Any, graph: Graph, folder: Path, ctx: CostContext | None
) -> dict[str, str]:
    """Write ``eie/`` (module docstring) for ``target`` (an :class:`EIE`); returns the files."""
    out = Path(folder) / target.family
    out.mkdir(parents=True, exist_ok=True)
    cost = target.price(graph, ctx)
    written: dict[str, str] = {}
    layers, host = [], []
    for node, lc in zip(graph.nodes, cost.layers):
        if lc.layer.kind == "constant":
            continue
        if lc.on != target.name:
            host.append(
                {"name": node.name, "op_type": node.op_type, "on": lc.on, "reason": lc.cost.note}
            )
            continue
        if node.op_type not in _MATRIX_OPS:
            continue
        w, bias = layer_matrix(graph, node)
        book = codebook_of(node.name, w, target.index_bits)
        m = eie_format.encode(
            w,
            target.n_pes,
            target.index_bits,
            book,
            z_bits=target.z_bits,
            pointer_bits=target.pointer_bits,
        )
        rel = f"{target.family}/{_file_stem(len(layers), node.name)}.npz"
        np.savez(Path(folder) / rel, **_arrays(m, book, bias))
        if not np.array_equal(
            eie_format.decode(read_layer(Path(folder) / rel)), w.astype(np.float64)
        ):
            raise HwccError(
                f"EIE payload: {rel} does not decode to the weights of {node.name}",
                "this is a bug in hwcc: please report it",
            )
        _, f, err = _fixed(book)
        per_pe = m.spmat_bits_per_pe + m.pointer_bits_per_pe
        layers.append(
            {
                "name": node.name,
                "op_type": node.op_type,
                "file": rel,
                "shape": list(m.shape),
                "nnz": int(np.count_nonzero(w)),
                "nnz_per_pe": m.nnz_per_pe.tolist(),
                "entries": int(m.entries_per_pe.sum()),
                "padding": int(m.padding_per_pe.sum()),
                "storage_bits_per_pe": per_pe.tolist(),
                "storage_bits": m.storage_bits,
                "storage_bytes": math.ceil(m.storage_bits / 8),
                "codebook_entries": len(book),
                "codebook_bytes": len(book) * TOTAL_BITS // 8,
                "codebook_frac_bits": f,
                "codebook_fixed_max_error": err,
                "bias": bias is not None,
            }
        )
        written[rel] = (
            f"{node.name}: {m.shape[0]}x{m.shape[1]}, {layers[-1]['nnz']} non-zeros in "
            f"interleaved CSC over {m.n_pes} PEs, {len(book)}-entry codebook"
        )
    manifest = {
        "target": target.name,
        "format": {
            "n_pes": target.n_pes,
            "index_bits": target.index_bits,
            "z_bits": target.z_bits,
            "pointer_bits": target.pointer_bits,
            "codebook_bits": TOTAL_BITS,
            "interleave": "row i on PE i mod n_pes",
            "reference": "Han et al., ISCA 2016, Section III",
        },
        "layers": layers,
        "host_layers": host,
        "total_storage_bits": sum(x["storage_bits"] for x in layers),
        "total_bytes": sum(x["storage_bytes"] + x["codebook_bytes"] for x in layers),
    }
    rel = f"{target.family}/manifest.json"
    (Path(folder) / rel).write_text(json.dumps(manifest, indent=2) + "\n")
    written[rel] = (
        f"EIE layers ({len(layers)}), their storage per PE and in all, "
        "and the layers left to the host"
    )
    return dict(sorted(written.items(), key=lambda kv: kv[0] != rel))

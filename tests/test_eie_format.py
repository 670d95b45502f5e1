"""The EIE weight format (Han et al., ISCA 2016, Section III-B/C, Figures 2 and 3)."""

from __future__ import annotations

import numpy as np
import pytest

from hwcc.formats.sparse import (
    decode,
    decode_column,
    encode,
    encode_column,
    make_codebook,
    quantize,
    work_counts,
)

# Figure 2 of the paper: a 16×8 matrix over 4 PEs, written by position as printed (a few
# subscripts in the figure do not match their position, e.g. "w5,4" sits in column 3; the
# rows of PE 0, which Figure 3 lays out, are consistent).
FIG2_NONZEROS = {
    0: [0, 2, 4, 5, 6],
    1: [1, 3, 6],
    2: [2, 4, 7],
    3: [1, 5],
    4: [1, 4],
    5: [3, 7],
    6: [4, 6],
    7: [0, 3, 6],
    8: [0, 7],
    9: [0, 6, 7],
    10: [4],
    11: [2, 7],
    12: [0, 2, 5, 7],
    13: [0, 1, 6],
    14: [2, 3, 4, 5],
    15: [2, 3, 5],
}


def fig2_matrix() -> np.ndarray:
    """Figure 2 with w[i,j] = a distinct-enough code in 1..15 (codebook index = value)."""
    W = np.zeros((16, 8), dtype=np.int64)
    for i, cols in FIG2_NONZEROS.items():
        for j in cols:
            W[i, j] = (3 * i + j) % 15 + 1
    return W


IDENTITY_BOOK = np.arange(16, dtype=np.float64)  # codebook[k] = k: indices read as values


def test_paper_column_example():
    # Section III-B: [0,0,1,2,0×18,3] -> v=[1,2,0,3], z=[2,0,15,2]
    col = np.array([0, 0, 1, 2] + [0] * 18 + [3])
    v, z = encode_column(col)
    assert v.tolist() == [1, 2, 0, 3]
    assert z.tolist() == [2, 0, 15, 2]
    assert decode_column(v, z, len(col)).tolist() == col.tolist()


@pytest.mark.parametrize(
    "zeros, v, z",
    [
        (15, [7], [15]),  # 15 zeros fit in 4 bits: no padding
        (16, [0, 7], [15, 0]),  # 16: one padding entry (15 zeros + itself), then z = 0
        (31, [0, 7], [15, 15]),  # 31 = 16 + 15
        (32, [0, 0, 7], [15, 15, 0]),
    ],
)
def test_padding_rule(zeros, v, z):
    col = np.array([0] * zeros + [7])
    got_v, got_z = encode_column(col)
    assert got_v.tolist() == v and got_z.tolist() == z
    assert decode_column(got_v, got_z, len(col)).tolist() == col.tolist()


def test_trailing_zeros_and_empty_columns_cost_nothing():
    v, z = encode_column(np.array([5] + [0] * 40))
    assert v.tolist() == [5] and z.tolist() == [0]
    v, z = encode_column(np.zeros(40))
    assert len(v) == len(z) == 0


def test_figure3_layout_of_pe0():
    m = encode(fig2_matrix(), 4, codebook=IDENTITY_BOOK)
    W = fig2_matrix()
    # Figure 3, PE 0 holds rows 0, 4, 8, 12 (local rows 0..3):
    order = [
        (0, 0),
        (8, 0),
        (12, 0),
        (4, 1),
        (0, 2),
        (12, 2),
        (0, 4),
        (4, 4),
        (0, 5),
        (12, 5),
        (0, 6),
        (8, 7),
        (12, 7),
    ]
    assert m.v[0].tolist() == [W[i, j] for i, j in order]
    assert m.z[0].tolist() == [0, 1, 0, 1, 0, 2, 0, 0, 0, 2, 0, 2, 0]
    assert m.p[0].tolist() == [0, 3, 4, 6, 6, 8, 10, 11, 13]


def test_figure2_layout_of_pe1_by_hand():
    # PE 1 holds rows 1, 5, 9, 13 (local 0..3). By column: c0 rows 9,13 -> z 2,0; c1 rows 1,13
    # -> z 0,2; c2 none; c3 rows 1,5 -> z 0,0; c4, c5 none; c6 rows 1,9,13 -> z 0,1,0;
    # c7 rows 5,9 -> z 1,0.
    m = encode(fig2_matrix(), 4, codebook=IDENTITY_BOOK)
    assert m.z[1].tolist() == [2, 0, 0, 2, 0, 0, 0, 1, 0, 1, 0]
    assert m.p[1].tolist() == [0, 2, 4, 4, 6, 6, 6, 9, 11]


def test_storage_accounted_in_bits():
    m = encode(fig2_matrix(), 4, codebook=IDENTITY_BOOK)
    # PE 0: 13 entries · (4 + 4) bits + (8 + 1) pointers · 16 bits = 104 + 144 = 248
    assert m.spmat_bits_per_pe[0] == 104 and m.pointer_bits_per_pe == 144
    # all PEs: 44 non-zeros, no padding (4 local rows) -> 44 · 8 + 4 · 9 · 16 = 352 + 576
    assert m.entries_per_pe.sum() == 44 and m.padding_per_pe.sum() == 0
    assert m.storage_bits == 928


def test_padding_counted_per_pe_after_interleaving():
    # 2 PEs, 70 rows: PE 0 holds even rows. Non-zeros in column 0 at rows 0 and 68:
    # on PE 0 local rows 0 and 34 -> gap 33 zeros -> 2 padding entries (33 // 16), z = 1.
    W = np.zeros((70, 1))
    W[[0, 68], 0] = 1.0
    m = encode(W, 2)
    assert m.z[0].tolist() == [0, 15, 15, 1] and m.v[0].tolist() == [1, 0, 0, 1]
    assert m.padding_per_pe.tolist() == [2, 0]
    entries, nnz = work_counts(W, 2)
    assert entries.tolist() == [[4], [0]] and nnz.tolist() == [[2], [0]]


def test_round_trip_exact_with_few_values():
    rng = np.random.default_rng(0)
    W = rng.choice([-0.5, 0.25, 1.0], size=(200, 37)) * (rng.random((200, 37)) < 0.07)
    m = encode(W, 8)
    assert m.codebook.tolist() == [0.0, -0.5, 0.25, 1.0]
    np.testing.assert_array_equal(decode(m), W)
    assert m.padding_per_pe.sum() > 0  # sparse enough to need padding on 25 local rows


def test_round_trip_after_weight_sharing():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(300, 50)) * (rng.random((300, 50)) < 0.1)
    m = encode(W, 16)
    assert len(m.codebook) == 16 and m.codebook[0] == 0
    Wq = np.where(W != 0, m.codebook[quantize(W, m.codebook)], 0.0)
    np.testing.assert_array_equal(decode(m), Wq)
    np.testing.assert_array_equal(decode(m) != 0, W != 0)
    # 15 linear-initialised k-means centroids: error below half the widest cluster spacing
    assert np.abs(Wq - W)[W != 0].max() < np.diff(m.codebook[1:]).max()


def test_codebook_kmeans_improves_on_its_linear_start():
    rng = np.random.default_rng(2)
    x = rng.normal(size=5000)
    book = make_codebook(x, 4)
    linear = np.concatenate([[0.0], np.linspace(x.min(), x.max(), 15)])
    err = lambda b: np.mean((b[quantize(x, b)] - x) ** 2)  # noqa: E731
    assert err(book) < err(linear)  # Lloyd steps never increase the squared error


@pytest.mark.parametrize("n_pes", [1, 3, 64])
def test_work_counts_match_the_encoding(n_pes):
    rng = np.random.default_rng(n_pes)
    W = rng.normal(size=(500, 41)) * (rng.random((500, 41)) < 0.04)
    m = encode(W, n_pes)
    for layout in (W, np.asfortranarray(W)):  # both memory orders walk the same way
        entries, nnz = work_counts(layout, n_pes)
        np.testing.assert_array_equal(entries, m.column_entries())
        np.testing.assert_array_equal(nnz.sum(axis=1), m.nnz_per_pe)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(W=np.zeros(5), n_pes=2), "2-D"),
        (dict(W=np.eye(3), n_pes=0), "n_pes"),
        (dict(W=np.eye(3), n_pes=2, index_bits=0), "index_bits"),
        (dict(W=np.eye(3), n_pes=2, codebook=np.array([1.0, 2.0])), "codebook"),
        (dict(W=np.eye(3), n_pes=2, codebook=np.zeros(17)), "codebook"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode(**kwargs)

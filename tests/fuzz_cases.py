"""The loader fuzzer's cases (tests/test_fuzz_loader_*.py): the case of a seed, a base
model with one to three mutations (protobuf-level ones from tests/fuzz_*_mutations.py,
in a fixed order so that a seed always makes the same case, or byte-level ones) and the
arguments of ``hwcc.load``; and writing a case to a folder of its own."""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx
from fuzz_bases import DATA, MODEL, SECRET, Base
from fuzz_graph_mutations import (
    m_attribute,
    m_function,
    m_graph_io,
    m_metadata,
    m_nodes,
    m_opset,
    m_rename,
    m_subgraph,
)
from fuzz_tensor_mutations import (
    m_dim,
    m_external,
    m_sparse,
    m_tensor_data,
    m_tensor_dims,
    m_tensor_type,
    m_tensor_values,
    m_type,
)


@dataclass
class Case:
    """One mutated model: how to write it and load it, and what was done to it."""

    seed: int
    base: str
    model: bytes
    data: bytes | None
    kwargs: dict
    steps: list[str] = field(default_factory=list)
    data_is_secret_link: bool = False

    def describe(self) -> str:
        return f"seed={self.seed} base={self.base} kwargs={self.kwargs} mutations={self.steps}"


PROTO_MUTATIONS: dict[str, Callable] = {
    f.__name__[2:]: f
    for f in (
        m_dim,
        m_type,
        m_tensor_dims,
        m_tensor_type,
        m_tensor_values,
        m_tensor_data,
        m_external,
        m_rename,
        m_graph_io,
        m_nodes,
        m_attribute,
        m_subgraph,
        m_opset,
        m_sparse,
        m_function,
        m_metadata,
    )
}


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    how = rng.choice(["flip", "flip", "truncate", "insert", "delete", "duplicate", "utf8"])
    b = bytearray(data)
    if not b:
        return bytes(rng.randrange(256) for _ in range(8)), "bytes: random"
    if how == "flip":
        spots = [rng.randrange(len(b)) for _ in range(rng.randint(1, 8))]
        for i in spots:
            b[i] ^= rng.randrange(1, 256)
        return bytes(b), f"bytes: flip at {spots}"
    i = rng.randrange(len(b))
    if how == "truncate":
        return bytes(b[:i]), f"bytes: truncate at {i}"
    if how == "insert":
        return bytes(b[:i]) + rng.randbytes(rng.randint(1, 16)) + bytes(
            b[i:]
        ), f"bytes: insert at {i}"
    if how == "delete":
        return bytes(b[:i] + b[i + rng.randint(1, 16) :]), f"bytes: delete at {i}"
    if how == "duplicate":
        j = min(len(b), i + rng.randint(1, 64))
        return bytes(b[:j] + b[i:j] + b[j:]), f"bytes: duplicate {i}:{j}"
    printable = [
        k for k in range(len(b) - 1) if 0x61 <= b[k] <= 0x7A
    ]  # inside some text, most likely
    k = rng.choice(printable) if printable else i
    b[k] = 0xFF
    return bytes(b), f"bytes: 0xff at {k}"


def make_case(seed: int, bases: list[Base]) -> Case:
    """The case of ``seed``: a base, its mutations, and the arguments of ``hwcc.load``."""
    rng = random.Random(seed)
    base = bases[rng.randrange(len(bases))]
    case = Case(seed, base.name, base.model, base.data, {})
    if rng.random() < 0.7:
        m = onnx.ModelProto.FromString(base.model)
        for _ in range(rng.randint(1, 3)):
            case.steps.append(_apply(rng.choice(list(PROTO_MUTATIONS)), m, rng))
        case.model = m.SerializeToString()
    if not case.steps or rng.random() < 0.2:
        case.model, step = mutate_bytes(case.model, rng)
        case.steps.append(step)
    if base.data is not None and rng.random() < 0.1:
        case.data_is_secret_link = True
        case.steps.append(f"files: {DATA} is a symbolic link to ../{SECRET}")
    case.kwargs = _load_kwargs(case.model, rng)
    return case


def _apply(name: str, m: onnx.ModelProto, rng: random.Random) -> str:
    """Apply one mutation; one that finds the model too broken by an earlier one to work
    on (a tensor that no longer converts, say) is recorded as skipped."""
    try:
        return PROTO_MUTATIONS[name](m, rng)
    except Exception as e:  # noqa: BLE001 - the generator's own trouble, not the loader's
        return f"{name}: skipped ({type(e).__name__})"


def _load_kwargs(model: bytes, rng: random.Random) -> dict:
    """Half the cases keep dynamic dims, some fix the first input's dims, the rest load plainly."""
    r = rng.random()
    if r < 0.5:
        return {"allow_dynamic": True}
    if r < 0.8:
        return {}
    try:
        x = onnx.ModelProto.FromString(model).graph.input[0]
    except Exception:  # noqa: BLE001 - a mutated model need not parse; then there is no input to fix
        return {}
    if not isinstance(x.name, str):  # not UTF-8: protobuf gives bytes, which JSON cannot carry
        return {}
    dims = [
        d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else rng.randint(1, 4)
        for d in x.type.tensor_type.shape.dim
    ]
    return {"input_shapes": {x.name: dims}}


def write_case(case: Case, folder: Path) -> Path:
    """Write ``case`` into ``folder`` (emptied first) and return the model's path."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / MODEL).write_bytes(case.model)
    if case.data_is_secret_link:
        os.symlink(folder.parent / SECRET, folder / DATA)
    elif case.data is not None:
        (folder / DATA).write_bytes(case.data)
    return folder / MODEL

"""The zoo's transformer encoder as users export it: through torch's TorchScript exporter
and through its dynamo exporter, which write the same network as different graphs.

The TorchScript exporter writes MatMul, Reshape and Transpose with constant shapes;
the dynamo exporter (``torch.onnx.export(dynamo=True)``, through onnxscript) writes its
own op choices, opset 18, and value names of its own. hwcc must compile both. Token ids
are drawn from sentences: each word of :func:`bench.practice._render.random_text` is
hashed into the vocabulary, so the ids repeat as words do in text (not uniform noise).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch

from bench.practice._render import random_text
from hwcc.models.arch_sequence import transformer_encoder

EXPORTERS = ("script", "dynamo")
SEQ, VOCAB = 32, 1000


def export(exporter: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Write the zoo's transformer encoder (weights seeded with ``seed``) with ``exporter``
    (``"script"`` or ``"dynamo"``) to ``path``, atomically."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, not {exporter!r}")
    torch.manual_seed(seed)
    module = transformer_encoder().eval()
    tokens = torch.zeros(1, SEQ, dtype=torch.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        if exporter == "script":
            buffer = io.BytesIO()
            torch.onnx.export(
                module,
                (tokens,),
                buffer,
                dynamo=False,
                opset_version=17,
                input_names=["tokens"],
                output_names=["hidden"],
            )
            tmp.write_bytes(buffer.getvalue())
        else:
            program = torch.onnx.export(
                module, (tokens,), dynamo=True, input_names=["tokens"], output_names=["hidden"]
            )
            program.save(str(tmp))
    os.replace(tmp, path)
    return path


def tokens(n: int, seed: int) -> np.ndarray:
    """``[n, 32]`` token ids of sentences, words hashed into the vocabulary."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, SEQ), np.int64)
    for i in range(n):
        words: list[str] = []
        while len(words) < SEQ:
            words += random_text(rng, (4, 12)).lower().split() + ["."]
        out[i] = [_word_id(w) for w in words[:SEQ]]
    return out


def _word_id(word: str) -> int:
    return int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % VOCAB

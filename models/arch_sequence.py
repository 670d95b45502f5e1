"""Datacenter-style workloads for costing: a TPU MLP, an LSTM LM, a transformer encoder.

* ``tpu_mlp``: like MLP0 of Jouppi et al. 2017 (TPU paper, Table 1): 5 fully-connected
  layers, 2048 wide, ReLU, 21 M weights. Batch 1 here (the paper batches 200).
* ``lstm_lm``: the "small" word-level LSTM language model of Zaremba et al. 2014:
  10k vocabulary, 2 LSTM layers of 200 units, 35 steps. ``nn.LSTM`` exports as the ONNX
  ``LSTM`` op (one node per layer).
* ``transformer_encoder``: a BERT-style post-LayerNorm encoder, 2 layers, d=128,
  4 heads, MLP 512 with GELU, 32 tokens. Attention is written out with MatMul and
  Softmax so every product is visible to the cost model.

The token models take ``tokens`` (int64, batch 1, fixed length) instead of ``input``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hwcc.models.registry import register

_TPU_WIDTH = 2048
_LM_VOCAB, _LM_HIDDEN, _LM_STEPS = 10_000, 200, 35
_TF_VOCAB, _TF_DIM, _TF_HEADS, _TF_MLP, _TF_SEQ = 1000, 128, 4, 512, 32


@register(
    "tpu_mlp",
    description="TPU-style MLP: 5 FC layers 2048 wide with ReLU (21 M weights), batch 1",
    input_shapes={"input": (1, _TPU_WIDTH)},
)
def tpu_mlp() -> nn.Module:
    """Five 2048x2048 fully-connected layers, ReLU after the first four."""
    layers: list[nn.Module] = []
    for i in range(5):
        layers.append(nn.Linear(_TPU_WIDTH, _TPU_WIDTH))
        if i < 4:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class LstmLanguageModel(nn.Module):
    """Embedding (Gather) -> multi-layer LSTM -> Linear to the vocabulary.

    Args:
        vocab: vocabulary size.
        hidden: embedding and LSTM width.
        layers: stacked LSTM layers.
    """

    def __init__(self, vocab: int = _LM_VOCAB, hidden: int = _LM_HIDDEN, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)
        # Zero initial states as (persistent) buffers, so they export as initializers;
        # otherwise the exporter builds them from the input's shape at run time
        # (Shape/Gather/Concat/Expand before every LSTM node).
        self.register_buffer("h0", torch.zeros(layers, 1, hidden))
        self.register_buffer("c0", torch.zeros(layers, 1, hidden))

    def forward(self, tokens):
        hidden, _ = self.lstm(self.embed(tokens), (self.h0, self.c0))
        return self.decoder(hidden)


@register(
    "lstm_lm",
    description="LSTM language model: embedding, 2x LSTM(200), linear to 10k vocab, 35 steps",
    input_shapes={"tokens": (1, _LM_STEPS)},
    input_dtypes={"tokens": "int64"},
    vocab=_LM_VOCAB,
)
def lstm_lm() -> nn.Module:
    """Zaremba et al.'s small LSTM LM (10k words, 2 layers of 200)."""
    return LstmLanguageModel()


class SelfAttention(nn.Module):
    """Multi-head self-attention written with MatMul and Softmax.

    ``softmax(Q K^T / sqrt(d_head)) V`` per head, then an output projection.
    Shapes are fixed at construction so the ONNX graph has constant Reshape targets.

    Args:
        dim: model width.
        heads: number of heads (``dim`` must divide evenly).
        seq: sequence length.
    """

    def __init__(self, dim: int, heads: int, seq: int):
        super().__init__()
        self.heads, self.head_dim, self.seq = heads, dim // heads, seq
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x):
        return x.reshape(1, self.seq, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x):
        q = self._split(self.q(x)) * (1.0 / math.sqrt(self.head_dim))
        k, v = self._split(self.k(x)), self._split(self.v(x))
        attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)), dim=-1)
        ctx = torch.matmul(attn, v).transpose(1, 2)
        return self.out(ctx.reshape(1, self.seq, self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer: x = LN(x + MHSA(x)); x = LN(x + MLP(x)), GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp: int, seq: int):
        super().__init__()
        self.attn = SelfAttention(dim, heads, seq)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class TransformerEncoder(nn.Module):
    """Token + learned position embeddings, then a stack of encoder layers.

    Args:
        vocab: vocabulary size.
        dim: model width.
        heads: attention heads.
        mlp: hidden width of the MLP.
        seq: fixed sequence length.
        layers: number of encoder layers.
    """

    def __init__(
        self, vocab=_TF_VOCAB, dim=_TF_DIM, heads=_TF_HEADS, mlp=_TF_MLP, seq=_TF_SEQ, layers=2
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads, mlp, seq) for _ in range(layers)])

    def forward(self, tokens):
        return self.layers(self.embed(tokens) + self.position)


@register(
    "transformer_encoder",
    description="Transformer encoder: 2 layers, d=128, 4 heads, GELU MLP 512, 32 tokens",
    input_shapes={"tokens": (1, _TF_SEQ)},
    input_dtypes={"tokens": "int64"},
    vocab=_TF_VOCAB,
)
def transformer_encoder() -> nn.Module:
    """A small BERT-style encoder; output is the final hidden states [1, 32, 128]."""
    return TransformerEncoder()

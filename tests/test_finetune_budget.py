"""The fine-tune batch shrinks with the model's cost (``step_macs``), so that a heavy
model's proposals cost about as much to fine-tune as a light one's."""

from __future__ import annotations

import numpy as np
import pytest

import hwcc
import hwcc.train.finetune as finetune_module
from hwcc.data.evaluate import load_dataset
from hwcc.ir.workload import analyze
from hwcc.search.config import SearchConfig
from hwcc.search.finetuning import finetuner


@pytest.mark.parametrize("step_macs, want", [(0, 32), (1e12, 32), ("one sample", 1)])
def test_the_batch_fits_the_step_budget(monkeypatch, step_macs, want):
    graph = hwcc.load("zoo:lenet5-digits")
    macs = analyze(graph).macs
    step_macs = macs * 1.5 if step_macs == "one sample" else step_macs
    data = load_dataset(graph, {"input": np.zeros((40, 1, 8, 8), np.float32)})
    seen = []

    def fake(g, inputs, labels, **kw):
        seen.append(kw["batch_size"])
        return finetune_module.FinetuneResult(g, [], 0)

    monkeypatch.setattr(finetune_module, "finetune", fake)
    run = finetuner(graph, data, SearchConfig(step_macs=step_macs))
    run(graph, 3, 0)
    assert seen == [want]

"""bench.peers: a Torch-Pruning point of a small zoo model exports to ONNX and runs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch_pruning")


@pytest.mark.parametrize("kind", ["magnitude", "global"])
def test_a_torch_pruning_point_exports_to_onnx_and_runs(tmp_path, kind):
    import onnxruntime as ort
    from torch import nn

    from bench import peers
    from hwcc.models.zoo import build_torch, example_inputs

    name = "lenet5-digits"
    full = sum(p.numel() for p in build_torch(name).parameters())
    net = peers.prune(name, 0.25, kind)
    assert sum(p.numel() for p in net.parameters()) < full
    assert [m for m in net.modules() if isinstance(m, nn.Linear)][-1].out_features == 10
    path = peers.export(name, net, tmp_path / "pruned.onnx")
    x = example_inputs(name)[0].numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert out.shape == (1, 10) and np.isfinite(out).all()
    np.testing.assert_allclose(out, net(example_inputs(name)[0]).detach().numpy(), atol=1e-4)


def test_an_unknown_kind_is_refused():
    from bench import peers

    with pytest.raises(ValueError, match="kind"):
        peers.prune("lenet5-digits", 0.25, "random")

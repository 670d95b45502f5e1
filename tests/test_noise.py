"""The warning for calibration data that looks like noise: white noise warns, smooth
signals do not, and inputs that cannot be judged (integers, all-zero states) are skipped."""

from __future__ import annotations

import numpy as np

from hwcc.data.evaluate import resolve_data
from hwcc.data.noise import lag1_correlation, noise_warning
from hwcc.testing import conv_graph

rng = np.random.default_rng(0)


def _smooth_images(n: int) -> np.ndarray:
    """Random images blurred along both axes: what a camera or a renderer gives."""
    x = rng.standard_normal((n, 3, 32, 32))
    for axis in (2, 3):
        x = (x + np.roll(x, 1, axis) + np.roll(x, 2, axis) + np.roll(x, 3, axis)) / 4
    return x.astype(np.float32)


def test_white_noise_warns_and_smooth_signals_do_not():
    noise = {"x": rng.random((16, 3, 32, 32)).astype(np.float32)}
    assert abs(lag1_correlation(noise["x"])) < 0.1
    assert "looks like noise" in noise_warning(noise, "D.npz")
    assert noise_warning({"x": _smooth_images(16)}, "D.npz") is None
    t = np.arange(16000) / 16000
    audio = np.sin(2 * np.pi * 220 * t * (1 + 0.1 * t))[None].astype(np.float32)
    assert noise_warning({"audio": audio}, "D.npz") is None


def test_inputs_that_cannot_be_judged_are_skipped():
    zeros = np.zeros((16, 2, 1, 128), np.float32)
    ids = rng.integers(0, 1000, (16, 32))
    assert lag1_correlation(zeros) is None and lag1_correlation(ids) is None
    assert noise_warning({"state": zeros, "tokens": ids}, "D.npz") is None
    noise = rng.standard_normal((16, 576)).astype(np.float32)
    assert "'input'" in noise_warning({"input": noise, "state": zeros}, "D.npz")


def test_compile_data_that_is_noise_is_warned_about():
    graph = conv_graph(batch=1, cin=3, cout=4, size=16)
    data = {"x": rng.standard_normal((20, 3, 16, 16)).astype(np.float32)}
    assert "looks like noise" in resolve_data(graph, data, None, 0)[2]
    smooth = {"x": _smooth_images(20)[:, :, :16, :16]}
    warning = resolve_data(graph, smooth, None, 0)[2]  # 4 held out: too few, not noise
    assert "looks like noise" not in warning and "only 4 held-out samples" in warning

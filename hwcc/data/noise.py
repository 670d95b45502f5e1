"""A warning when the calibration data a user gives looks like noise.

A compile fits the model to the data it is given: on random inputs it can meet every
budget and still answer one class for every real input. Real signals (images, text
lines, audio, spectrograms) are smooth at the scale of one sample: neighbouring values
along the last axis are strongly correlated (a lag-1 correlation of 0.46 to 0.98 on the
practice set's rendered text, scenes, audio and spectrograms), and white noise is not
(about 0). Inputs that are integers (token ids, flags) or all zero
(a recurrent state at its start) say nothing either way and are not judged.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["NOISE_CORRELATION", "lag1_correlation", "noise_warning"]

NOISE_CORRELATION = 0.2  # below this lag-1 correlation along the last axis: noise


def lag1_correlation(a: np.ndarray, max_rows: int = 4096) -> float | None:
    """The correlation of neighbouring values along the last axis of ``a`` (rows centred
    on their mean), or None when ``a`` has too few values per row or no variation."""
    if a.ndim < 1 or a.shape[-1] < 8 or a.dtype.kind != "f":
        return None
    rows = a.reshape(-1, a.shape[-1])[:max_rows].astype(np.float64)
    rows = rows - rows.mean(axis=1, keepdims=True)
    power = float(np.sum(rows * rows))
    if power == 0.0 or not np.isfinite(power):
        return None
    return float(np.sum(rows[:, :-1] * rows[:, 1:]) / power)


def noise_warning(inputs: Mapping[str, np.ndarray], source: str) -> str | None:
    """One line when every input that can be judged looks like white noise, else None."""
    judged = {k: r for k, a in inputs.items() if (r := lag1_correlation(np.asarray(a))) is not None}
    if not judged or any(abs(r) >= NOISE_CORRELATION for r in judged.values()):
        return None
    worst = ", ".join(f"{k!r} {r:+.2f}" for k, r in judged.items())
    return (
        f"{source} looks like noise: neighbouring values are uncorrelated (lag-1 correlation "
        f"{worst}; rendered text, images and audio give 0.4 or more), so the search fits the "
        "model to noise and its accuracy says little about real inputs; give real samples"
    )

"""Label-free metrics: which one fits an output, what each measures, and the compile's
``metric`` option (a name or a callable)."""

from __future__ import annotations

import numpy as np
import pytest

import hwcc
from hwcc.data.metrics import (
    METRICS,
    _wilson,
    accuracy_interval,
    auto_metric,
    correlation_time,
    describe,
    resolve_metric,
)
from hwcc.errors import HwccError

rng = np.random.default_rng(0)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _not_integral_at_the_end() -> np.ndarray:
    a = rng.integers(0, 50, (8, 400)).astype(np.float32)
    a[-1, -1] = 0.5
    return a


@pytest.mark.parametrize(
    "reference, labels, want",
    [
        (rng.standard_normal((8, 10)), None, "top1"),  # logits of a classifier
        (_softmax(rng.standard_normal((8, 40, 97))), None, "per-step"),  # a CTC recogniser
        (rng.integers(0, 50, (8, 12)).astype(np.float32), None, "per-step"),  # decoded ids
        (rng.integers(0, 50, (8, 400)).astype(np.float32), None, "per-step"),  # more of them
        (_not_integral_at_the_end(), None, "top1"),  # its first 1024 values are whole numbers
        (rng.random((8, 1)), None, "binary"),  # one probability per sample
        (rng.random(8), None, "binary"),
        (rng.standard_normal((8, 384)) * 1.5, None, "top1"),  # [N, C]: read as classes
        (rng.standard_normal((8, 3549, 6)), None, "cosine"),  # raw detector boxes
        (rng.standard_normal((8, 1, 32, 32)), None, "cosine"),  # a dense map
        (rng.standard_normal((8, 1)) * 5, None, "cosine"),  # one unbounded value
        (rng.standard_normal((8, 10)), np.arange(8), "top1"),
    ],
)
def test_auto_picks_the_metric_that_fits_the_output(reference, labels, want):
    assert auto_metric(reference, labels) == want


def test_each_metric_on_hand_made_outputs():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    out = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.9, 0.1]])
    assert METRICS["top1"](out, ref, None) == pytest.approx(0.75)
    assert METRICS["top1"](out, None, np.array([1, 1, 1, 0])) == pytest.approx(1.0)
    seq_ref = np.eye(3)[[[0, 1, 2, 2], [1, 1, 0, 0]]]  # [2 samples, 4 steps, 3 classes]
    seq_out = np.eye(3)[[[0, 1, 2, 0], [1, 1, 0, 0]]]
    assert METRICS["per-step"](seq_out, seq_ref, None) == pytest.approx(7 / 8)
    ids = np.array([[3.0, 4.0, 5.0], [1.0, 1.0, 1.0]])
    assert METRICS["per-step"](ids + [[0, 0, 1], [0, 0, 0]], ids, None) == pytest.approx(5 / 6)
    p_ref, p_out = np.array([0.9, 0.1, 0.6, 0.4]), np.array([0.7, 0.2, 0.4, 0.45])
    assert METRICS["binary"](p_out, p_ref, None) == pytest.approx(0.75)
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 1.0], [0.0, 3.0]])
    assert METRICS["cosine"](b, a, None) == pytest.approx((1 / np.sqrt(2) + 1.0) / 2)


def test_unknown_names_and_cosine_against_labels_are_refused():
    with pytest.raises(HwccError, match="unknown metric 'f1'"):
        resolve_metric("f1", np.zeros((2, 3)), None)
    with pytest.raises(HwccError, match="not with labels"):
        METRICS["cosine"](np.zeros((2, 3)), None, np.array([0, 1]))


def test_the_report_says_which_metric_and_how_many_samples():
    assert describe("per-step", False, 32) == (
        "per-step agreement with the original model on 32 held-out samples"
    )
    assert describe("top1", True, 10) == "top-1 accuracy on 10 held-out labelled samples"


def test_compile_takes_a_metric_by_name_and_a_callable():
    calls = []

    def worst_case(out, ref, labels):
        calls.append(out.shape)
        return float(np.min(np.argmax(out, 1) == np.argmax(ref, 1)))

    common = dict(data=None, max_iterations=1, short_term_steps=1, long_term_steps=0)
    named = hwcc.compile("zoo:lenet300-digits", "eie", "90%", metric="cosine", **common)
    assert named.summary.accuracy_kind.startswith("cosine similarity")
    custom = hwcc.compile("zoo:lenet300-digits", "eie", "90%", metric=worst_case, **common)
    assert custom.summary.accuracy_kind.startswith("worst_case (a metric given in Python)")
    assert calls and all(len(s) == 2 for s in calls)
    for run in (named, custom):  # the final accuracy's interval holds the accuracy itself
        lo, hi = run.summary.accuracy_interval
        assert lo <= run.summary.final["accuracy"] <= hi


def _agreeing(n: int, agree: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of ``n`` samples over 4 classes and a reference that ``agree`` of them match,
    the others spread evenly among them (no streak: see test_streaks_widen_the_interval)."""
    ref = np.eye(4)[np.arange(n) % 4]
    out = ref.copy()
    wrong = np.round(np.linspace(0, n - 1, n - agree)).astype(int)
    out[wrong] = np.roll(out[wrong], 1, axis=1)
    return out, ref


def _stream(n: int, rng, p: float = 0.1, streak: float = 5.0) -> np.ndarray:
    """``n`` frames' agreement (1) or not (0), disagreements in streaks of ``streak``
    frames on average, ``p`` of all frames in the long run (a two-state Markov chain)."""
    leave = 1.0 / streak  # disagree -> agree
    enter = p * leave / (1.0 - p)  # agree -> disagree, so that p is the stationary share
    agree, state = np.empty(n), rng.random() >= p
    for i in range(n):
        agree[i] = state
        state = rng.random() >= (1.0 - leave if not state else enter)
    return agree


def _scored(agree: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.eye(4)[np.zeros(len(agree), int)]
    return np.where(agree[:, None] > 0, ref, np.roll(ref, 1, axis=1)), ref


def test_streaks_widen_the_interval_to_what_the_frames_are_worth():
    """Frames of a stream disagree in streaks of 5 on average (10 % of all frames): 400 of
    them hold far fewer than 400 independent decisions. Drawn 300 times, the 95 % interval
    held the true 90 % in 89 % of draws at 400 frames and 93 % at 1000 (τ estimated from
    the frames themselves, a little short on few); Wilson's over all the frames in 50 and
    53 %. The same frames in a random order are independent and keep the narrow one."""
    draws = np.random.default_rng(3)
    covered = narrow = 0
    for _ in range(200):
        agree = _stream(400, draws)
        lo, hi = accuracy_interval(METRICS["top1"], *_scored(agree), None)
        covered += lo <= 0.9 <= hi
        p = agree.mean()
        wlo, whi = _wilson(p, 400, 0.95)
        narrow += wlo <= 0.9 <= whi
    assert covered >= 0.85 * 200 and narrow < 0.7 * 200
    agree = _stream(400, np.random.default_rng(4))
    assert correlation_time(agree) > 3.0
    shuffled = np.random.default_rng(5).permutation(agree)
    assert correlation_time(shuffled) == 1.0
    assert accuracy_interval(METRICS["top1"], *_scored(shuffled), None) == pytest.approx(
        _wilson(shuffled.mean(), 400, 0.95)
    )


def test_the_correlation_time_of_a_known_process():
    """An AR(1) series with coefficient 0.6 has τ = (1 + 0.6) / (1 − 0.6) = 4; white noise 1."""
    taus = []
    for seed in range(5):
        e = np.random.default_rng(seed).normal(size=20000)
        x = np.empty_like(e)
        x[0] = e[0]
        for i in range(1, len(e)):
            x[i] = 0.6 * x[i - 1] + e[i]
        taus.append(correlation_time(x))
        assert correlation_time(e) == 1.0
    assert np.median(taus) == pytest.approx(4.0, rel=0.1)
    assert correlation_time(np.ones(50)) == 1.0  # every sample agrees: nothing varies


def test_the_accuracy_interval_holds_the_measured_share_and_narrows_with_more_samples():
    out, ref = _agreeing(32, 30)
    lo, hi = accuracy_interval(METRICS["top1"], out, ref, None)
    assert lo < 30 / 32 < hi <= 1.0
    assert accuracy_interval(METRICS["top1"], out, ref, None) == (lo, hi)  # seeded
    big_out, big_ref = _agreeing(320, 300)
    lo2, hi2 = accuracy_interval(METRICS["top1"], big_out, big_ref, None)
    assert (hi2 - lo2) < 0.5 * (hi - lo)
    assert accuracy_interval(METRICS["top1"], out[:1], ref[:1], None) is None
    # every sample agreeing: Wilson's interval stays open below (32 of 32: 89.3 % to 100 %)
    lo3, hi3 = accuracy_interval(METRICS["top1"], ref, ref, None)
    assert lo3 == pytest.approx(0.8928, abs=1e-3) and hi3 == 1.0
    # a cosine in [-1, 1] is mapped to [0, 1] and back
    lo4, hi4 = accuracy_interval(METRICS["cosine"], -ref, ref, None)
    assert -1.0 <= lo4 < hi4 < -0.78


@pytest.mark.parametrize("n, floor", [(32, 0.9), (160, 0.9)])
def test_the_interval_covers_the_true_share_near_what_it_says(n, floor):
    """``n`` samples of a model that agrees on 90 % of all inputs, drawn 200 times: the
    share of 95 % intervals that hold 90 %. Wilson's interval, measured over 300 draws:
    95 % at 32 samples, 97 % at 160 (a percentile bootstrap: 84 % at 32); a point
    estimate covers never."""
    draws = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        agree = draws.random(n) < 0.9
        ref = np.eye(4)[np.zeros(n, int)]
        out = np.where(agree[:, None], ref, np.roll(ref, 1, axis=1))
        lo, hi = accuracy_interval(METRICS["top1"], out, ref, None)
        covered += lo <= 0.9 <= hi
    assert covered >= floor * 200


def test_a_metric_that_is_no_mean_of_its_samples_is_bootstrapped_whole():
    """The worst sample's cosine is no mean: each draw is scored as a whole, so the
    interval's lower end is the worst sample's score, which a mean never reaches."""
    ref = rng.normal(size=(40, 8))
    out = ref.copy()
    out[0] = -ref[0]  # one sample opposite: cosine −1

    def worst(o, r, labels):
        return float(
            min(METRICS["cosine"](o[i : i + 1], r[i : i + 1], None) for i in range(len(o)))
        )

    lo, hi = accuracy_interval(worst, out, ref, None, resamples=200)
    assert lo == pytest.approx(-1.0) and hi == pytest.approx(1.0)
    mean_lo, _ = accuracy_interval(METRICS["cosine"], out, ref, None, resamples=200)
    assert mean_lo > -0.2


def test_the_output_distortion_is_relative_and_zero_for_the_original():
    """Evaluator.distortion: Σ (y − y₀)² / Σ y₀² against the input model's outputs, also
    when the held-out set has labels (the one-shot start ranks layers by it)."""
    from hwcc.data.evaluate import Evaluator, load_dataset

    g = hwcc.load("zoo:lenet300-digits")
    x = np.random.default_rng(0).normal(0, 1, (8, *g.tensors[g.inputs[0]].shape[1:]))
    data = load_dataset(g, {g.inputs[0]: x.astype(np.float32)})
    ev = Evaluator(g, data)
    assert ev.distortion(g) == 0.0
    double = g.copy()  # the last layer's weight and bias doubled: every logit twice as large
    last = double.producer(double.outputs[0])
    for t in last.inputs[1:]:
        double.tensors[t].data = double.tensors[t].data * 2
    assert ev.distortion(double) == pytest.approx(1.0, rel=1e-5)  # (2 − 1)² y₀² / y₀²


def test_a_cosine_that_rounds_past_one_still_gets_wilsons_interval():
    """float32 outputs equal to the reference give cosines of 1 + 6e-8: still a score in
    [-1, 1], so the interval stays open below (40 samples: about 91 % to 100 %)."""
    r = np.random.default_rng(0).normal(size=(40, 384)).astype(np.float32)
    lo, hi = accuracy_interval(METRICS["cosine"], r, r, None)
    assert 0.8 < lo < 0.95 and hi == pytest.approx(1.0)

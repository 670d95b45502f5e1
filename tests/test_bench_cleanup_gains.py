"""The cleanup bench section's page from made-up measurements (no model is run here)."""

from __future__ import annotations

from bench import cleanup_gains


def _copy(nodes, kernels, predicted, measured, ratio):
    return {
        "nodes": nodes,
        "kernels": kernels,
        "predicted_s": predicted,
        "measured_s": measured,
        "ratio": ratio,
    }


def _row(model, before, now):
    return {
        "model": model,
        "original": _copy(200, 150, 2e-3, 1e-3, 1.0),
        "before": _copy(190, 150, 2e-3, before * 1e-3, before),
        "now": _copy(120, 80, 1.2e-3, now * 1e-3, now),
    }


def test_body_lists_counts_ratios_and_the_models_that_gained():
    text = cleanup_gains.body([_row("paddle_net", 0.96, 0.61), _row("plain_net", 0.99, 0.97)])
    assert (
        "| paddle_net | 1.00 ms | 200 / 190 / 120 | 150 / 150 / 80 | 0.96x | 0.61x | 0.60x |"
        in text
    )
    assert "more than 5 % than the cleanups of before: `paddle_net`." in text


def test_body_says_none_when_no_model_gained():
    assert cleanup_gains.body([_row("plain_net", 0.99, 0.97)]).endswith("before: none.")


def test_the_cleanups_of_before_are_a_part_of_todays():
    from hwcc.ir.cleanup import CLEANUP

    assert set(cleanup_gains.BEFORE) < set(CLEANUP)

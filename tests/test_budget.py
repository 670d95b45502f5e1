import pytest

from hwcc.errors import BudgetError
from hwcc.search.budget import Budget, format_metric, parse_budget


@pytest.mark.parametrize(
    "text, metric, limit",
    [
        ("5ms", "latency_s", 5e-3),
        ("250us", "latency_s", 250e-6),
        ("1.2s", "latency_s", 1.2),
        ("2mJ", "energy_j", 2e-3),
        ("30uJ", "energy_j", 30e-6),
        ("0.5J", "energy_j", 0.5),
        ("1.5MB", "size_bytes", 1.5e6),
        ("800KB", "size_bytes", 800e3),
        ("2MiB", "size_bytes", 2 * 1024**2),
        (" 40 ns ", "latency_s", 40e-9),
    ],
)
def test_absolute_forms(text, metric, limit):
    b = parse_budget(text)
    assert b.metric == metric
    assert b.limit == pytest.approx(limit, rel=1e-12)
    assert not b.is_relative


def test_relative_budget_resolves_against_the_input_model():
    b = parse_budget("50%")
    assert b.is_relative and b.metric is None and b.fraction == 0.5
    r = b.resolve({"latency_s": 0.010, "energy_j": 2.0}, primary_metric="latency_s")
    assert r.metric == "latency_s" and r.limit == pytest.approx(0.005)
    e = parse_budget("40%energy").resolve(
        {"latency_s": 0.010, "energy_j": 2.0}, primary_metric="latency_s"
    )
    assert e.metric == "energy_j" and e.limit == pytest.approx(0.8)


def test_is_met_compares_the_right_metric():
    b = parse_budget("5ms")
    assert b.is_met({"latency_s": 0.004, "energy_j": 99})
    assert not b.is_met({"latency_s": 0.006, "energy_j": 0})
    with pytest.raises(ValueError):
        parse_budget("50%").is_met({"latency_s": 1})


@pytest.mark.parametrize(
    "text", ["", "5", "fast", "5 parsecs", "-3ms", "0ms", "150%", "0%", "50%speed", "5m s", "ms"]
)
def test_malformed_budgets_list_the_accepted_forms(text):
    with pytest.raises(BudgetError) as e:
        parse_budget(text)
    assert (
        "accepted forms" in str(e.value)
        or "between 0% and 100%" in str(e.value)
        or "positive" in str(e.value)
    )


def test_format_metric():
    assert format_metric("latency_s", 0.0052) == "5.2 ms"
    assert format_metric("energy_j", 3e-5) == "30 uJ"
    assert format_metric("size_bytes", 1.5e6) == "1.5 MB"
    assert Budget("5ms", "latency_s", 5e-3).describe().startswith("5 ms")


@pytest.mark.parametrize(
    "text, metric, limit, fraction",
    [
        ("chip:2mJ", "chip_energy_j", 2e-3, None),
        ("chip:5 ms", "chip_latency_s", 5e-3, None),
        ("chip:40%energy", "chip_energy_j", None, 0.4),
        ("system:2mJ", "energy_j", 2e-3, None),
        ("2mJ", "energy_j", 2e-3, None),
    ],
)
def test_chip_and_system_budgets(text, metric, limit, fraction):
    b = parse_budget(text)
    assert (b.metric, b.text, b.fraction) == (metric, text, fraction)
    assert b.limit == (pytest.approx(limit) if limit else None)
    assert b.chip == text.startswith("chip:")


@pytest.mark.parametrize("text", ["chip:2MB", "chip:chip:2mJ", "chip:", "chip:25%size"])
def test_chip_budgets_refused(text):
    with pytest.raises(BudgetError):
        parse_budget(text)


def test_chip_metrics_format_like_the_system_ones():
    assert format_metric("chip_energy_j", 2e-3) == format_metric("energy_j", 2e-3) == "2 mJ"

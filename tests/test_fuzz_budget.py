"""The budget parser under random input: it accepts a budget or raises BudgetError, nothing else.

Inputs are mutations of valid budgets: characters inserted, deleted and replaced (unicode
digits and letters, control characters, whitespace, signs, exponents, units), numbers
swapped for extremes (1e308, 4.9e-324, inf, nan, 0), budgets joined, cut and repeated.
Every accepted budget must resolve against an input model's metrics to a finite, positive
limit, and every refusal must fit on one line. A few hundred inputs run by default; the
slow test runs 20,000.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from hwcc.errors import BudgetError
from hwcc.search.budget import Budget, format_metric, parse_budget

VALID = [
    "5ms",
    "250us",
    "1.2s",
    "800ns",
    "2mJ",
    "30uJ",
    "0.5J",
    "40nJ",
    "1pJ",
    "1.5MB",
    "800KB",
    "2MiB",
    "512B",
    "1GiB",
    "50%",
    "50%latency",
    "40%energy",
    "25%size",
    "0.01%",
    "99.99%",
    "1e-3ns",
    ".5ms",
    "5.ms",
    "40 ns",
]
UNITS = [
    "s",
    "ms",
    "us",
    "µs",
    "μs",
    "ns",
    "ps",
    "J",
    "mJ",
    "uJ",
    "nJ",
    "pJ",
    "B",
    "KB",
    "kB",
    "MB",
    "GB",
    "KiB",
    "MiB",
    "GiB",
    "TB",
    "%",
    "%latency",
    "%energy",
    "%size",
    "%speed",
    "parsecs",
    "",
    "m s",
    "M",
    "b",
]
NUMBERS = [
    "0",
    "0.0",
    "-0",
    "1e308",
    "1e309",
    "1e-308",
    "4.9e-324",
    "1e-320",
    "1e999",
    "inf",
    "nan",
    "-1",
    "+5",
    "1e",
    "1e+",
    ".",
    "..5",
    "5..",
    "1_000",
    "0x10",
    "9" * 400,
    "0." + "0" * 300 + "1",
    "100",
    "99.999999",
]
CHARS = (
    [chr(c) for c in range(32)]
    + ["\x7f", "\x85", "\xa0", "\u2009", "\u200b", "\u2028", "\ufeff", "\u3000"]
    + list("0123456789.eE+-% ")
    + ["µ", "μ", "٣", "５", "𝟓", "é", "∞", "½", "²", "🙂", "\ud800", "ﬀ", "K", "i", "B"]
)
ORIGINAL = {"latency_s": 2.5e-3, "energy_j": 4e-4, "size_bytes": 1.7e6}


def _mutate(rng: random.Random, text: str) -> str:
    """One random change to ``text``."""
    i = rng.randrange(len(text) + 1)
    kind = rng.randrange(9)
    if kind == 0:
        return text[:i] + rng.choice(CHARS) + text[i:]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    if kind == 2:
        return text[:i] + rng.choice(CHARS) + text[i + 1 :]
    if kind == 3:
        return rng.choice(NUMBERS) + rng.choice(UNITS)
    if kind == 4:
        return text + rng.choice([" ", "\t", "\n", "\r\n", "\x00"]) + rng.choice(VALID)
    if kind == 5:
        return (
            rng.choice([" ", "  ", "\t", "\u00a0", ""]) + text + rng.choice([" ", "\n", "\x0b", ""])
        )
    if kind == 6:
        return text * rng.randint(2, 40)
    if kind == 7:
        return text[:i]
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 4)))
    return (
        f"{rng.choice(['', '-', '+'])}{rng.choice(['1', '9.9', '.1'])}"
        f"e{rng.choice(['', '-', '+'])}{digits}{rng.choice(UNITS)}"
    )


def budget_strings(seed: int, n: int) -> list[str]:
    """``n`` deterministic budget strings: valid budgets with one to four mutations each."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = rng.choice(VALID)
        for _ in range(rng.randint(1, 4)):
            text = _mutate(rng, text)
        out.append(text)
    return out


def fuzz(strings: list[str]) -> Counter:
    """Parse every string; count accepted budgets and clean refusals, and keep foreign
    exceptions."""
    counts: Counter = Counter()
    foreign = []
    for text in strings:
        try:
            budget = parse_budget(text)
        except BudgetError as e:
            counts["clean errors"] += 1
            assert "\n" not in e.message and "\n" not in (e.hint or ""), repr(text)
            continue
        except Exception as e:  # noqa: BLE001 - the point is to catch anything that is not a BudgetError
            counts["foreign exceptions"] += 1
            foreign.append((text, e))
            continue
        counts["accepted"] += 1
        _check_accepted(text, budget)
    assert not foreign, f"{len(foreign)} foreign exceptions, e.g. {foreign[:5]}"
    counts["inputs"] = len(strings)
    return counts


def _check_accepted(text: str, budget: Budget) -> None:
    for primary in ("latency_s", "energy_j", "size_bytes"):
        limit = budget.resolve(ORIGINAL, primary_metric=primary)
        assert limit.metric in ORIGINAL, repr(text)
        assert math.isfinite(limit.limit) and limit.limit > 0, repr(text)
        limit.is_met(ORIGINAL)
        assert limit.describe()


def _summary(counts: Counter) -> str:
    return ", ".join(
        f"{k} {counts[k]}" for k in ("inputs", "accepted", "clean errors", "foreign exceptions")
    )


def test_a_few_hundred_random_budgets_parse_or_fail_cleanly(report_line):
    counts = fuzz(budget_strings(seed=0, n=400))
    assert (
        counts["accepted"] > 0 and counts["clean errors"] > 0
    )  # the mutations reach both outcomes
    report_line(f"budget fuzz (fast): {_summary(counts)}")


@pytest.mark.slow
def test_twenty_thousand_random_budgets_parse_or_fail_cleanly(report_line):
    counts = fuzz(budget_strings(seed=1, n=20_000) + VALID)
    assert counts["inputs"] >= 20_000 and counts["foreign exceptions"] == 0
    report_line(f"budget fuzz (slow): {_summary(counts)}")


@pytest.mark.parametrize(
    "text",
    [
        "4.9e-324%",
        "1e-320s",
        "1e-9%",
        "1e-4ns",
        "0.5B",
        "0ms",
        "0%",
        "-3ms",
        "+5ms",
        "1e999J",
        "inf ms",
        "nanms",
        "5\tms",
        "5\x00ms",
        "5\u00a0ms",
        "5ms\n",
        "５ms",
        "5  ms",
        "5 ms ms",
        "1" * 100 + "ms",
    ],
)
def test_refused(text):
    with pytest.raises(BudgetError) as e:
        parse_budget(text)
    assert e.value.hint and "\n" not in e.value.message


@pytest.mark.parametrize("text", ["1e-3ns", "1pJ", "1B", "0.01%", "99.99%", " 40 ns ", "1e300s"])
def test_the_smallest_and_largest_accepted(text):
    budget = parse_budget(text)
    _check_accepted(text, budget)


@pytest.mark.parametrize(
    "metric, value, shown",
    [
        ("latency_s", 0.0052, "5.2 ms"),
        ("latency_s", 2.5e-4, "250 us"),
        ("latency_s", 8e-7, "800 ns"),
        ("latency_s", 12.3, "12.3 s"),
        ("latency_s", 0.0009996, "1 ms"),
        ("latency_s", 999.7e-9, "1 us"),
        ("latency_s", 1e-12, "0.001 ns"),
        ("energy_j", 3e-5, "30 uJ"),
        ("energy_j", 0.99999, "1 J"),
        ("size_bytes", 999_999, "1 MB"),
        ("size_bytes", 512, "512 B"),
    ],
)
def test_budget_and_proposal_messages_scale_their_units(metric, value, shown):
    """What the search's messages print: the unit a value reaches once rounded, never 1e+03 us."""
    assert format_metric(metric, value) == shown

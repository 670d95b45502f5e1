"""The HTML report's page: well-formed, self-contained, escaped, plots that carry the data,
the Pareto front computed by hand, and the atomic write. The axis ticks and SI labels are in
test_report_axes.py."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from hwcc.report import html as report
from hwcc.report.html import pareto_front

_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}

# (latency_s, accuracy) of the proposals in the fixture; the front, by hand, is
# (1e-4, .90) -> (2e-4, .95) -> (4e-4, .97): (2e-4, .93) and (3e-4, .94) are beaten by
# (2e-4, .95), (5e-4, .96) by (4e-4, .97), and the second (4e-4, .97) is a duplicate.
_PROPOSALS = [
    (2e-4, 0.93),
    (1e-4, 0.90),
    (3e-4, 0.94),
    (2e-4, 0.95),
    (4e-4, 0.97),
    (5e-4, 0.96),
    (4e-4, 0.97),
]
_FRONT = [(1e-4, 0.90), (2e-4, 0.95), (4e-4, 0.97)]


@pytest.fixture
def summary():
    history = []
    lat, acc = 3e-4, 0.989
    for i, (layer, pass_, settings) in enumerate(
        [
            ("group /0/Conv", "prune_channels", {"k": 4}),
            ("/fc1/Gemm", "prune_weights", {"density": 0.3}),
            ("/fc2/Gemm", "quantize", {"mode": "int8", "per_channel": True}),
        ],
        start=1,
    ):
        lat, acc = lat - 4e-5, acc - 0.002
        history.append(
            {
                "iteration": i,
                "layer": layer,
                "pass": pass_,
                "settings": settings,
                "metric": "latency_s",
                "target": lat + 1e-6,
                "delta_latency_s": -4e-5,
                "delta_energy_j": -2e-4,
                "delta_size_bytes": -30000,
                "delta_accuracy": -0.002,
                "metrics": {
                    "latency_s": lat,
                    "energy_j": 2e-3 - 2e-4 * i,
                    "size_bytes": 250000 - 30000 * i,
                    "accuracy": acc,
                },
            }
        )
    proposals = [
        {
            "iteration": 1 + i // 3,
            "layer": f"/L{i}",
            "pass": "prune_channels",
            "settings": {"k": i},
            "latency_s": x,
            "energy_j": 1e-3,
            "size_bytes": 1e5,
            "accuracy": y,
            "picked": i in (3, 4),
        }
        for i, (x, y) in enumerate(_PROPOSALS)
    ]
    return {
        "hwcc_version": "0.1.0",
        "created": "2026-11-22T10:00:00Z",
        "input": {
            "model": "zoo:lenet5-digits",
            "sha256": "ab" * 32,
            "data": "digits.npz",
            "data_sha256": "cd" * 32,
        },
        "target": {
            "name": "eie",
            "provenance": "model",
            "primary_metric": "latency_s",
            "description": "EIE sparse engine, 64 PEs",
        },
        "budgets": [
            {"text": "50%", "metric": "latency_s", "limit": 1.5e-4, "met": True},
            {"text": "200KB", "metric": "size_bytes", "limit": 2e5, "met": True},
        ],
        "accuracy_kind": "top-1 accuracy on labels",
        "original": {"latency_s": 3e-4, "energy_j": 2e-3, "size_bytes": 250000, "accuracy": 0.989},
        "final": {"latency_s": 1.4e-4, "energy_j": 1e-3, "size_bytes": 90000, "accuracy": 0.983},
        "measured": {"original_latency_s": 1.2e-3, "final_latency_s": 7e-4},
        "budget_met": True,
        "exit_reason": "every budget met",
        "warnings": ["fc3 runs on the host: EIE has no Softmax"],
        "legal_form": {"quantize": {"mode": "int8"}},
        "layers": [
            {
                "name": "/0/Conv",
                "op_type": "Conv",
                "on": "eie",
                "before": {"latency_s": 1e-4, "energy_j": 8e-4},
                "after": {"latency_s": 5e-5, "energy_j": 4e-4},
            },
            {
                "name": "/fc1/Gemm",
                "op_type": "Gemm",
                "on": "eie",
                "before": {"latency_s": 1.5e-4, "energy_j": 1e-3},
                "after": {"latency_s": 8e-5, "energy_j": 5e-4},
            },
            {
                "name": "/dead/Relu",
                "op_type": "Relu",
                "on": "eie",
                "before": {"latency_s": 1e-6, "energy_j": 1e-6},
                "after": None,
            },
            {
                "name": "/Softmax",
                "op_type": "Softmax",
                "on": "cpu(host)",
                "before": {"latency_s": 2e-6, "energy_j": 0.0},
                "after": {"latency_s": 2e-6, "energy_j": 0.0},
            },
        ],
        "history": history,
        "proposals": proposals,
        "rejected": [
            {
                "iteration": 2,
                "layer": "/fc2/Gemm",
                "pass": "low_rank",
                "reason": "rank 64 saves nothing",
            }
        ],
        "payload": {
            "eie/fc1.npz": "per-PE compressed weights of fc1",
            "eie/codebook.npz": "4-bit codebooks",
        },
        "timing": {"wall_s": 42.0, "iterations": 3},
    }


class _StrictParser(HTMLParser):
    """Fails on a tag closed out of order or left open, which html.parser lets through."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _check_page(page: str) -> list[ET.Element]:
    parser = _StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<(?:script|link|iframe|img)\b", page, re.I)
    return [ET.fromstring(block) for block in _svgs(page)]


def _svgs(page: str) -> list[str]:
    blocks = re.findall(r"<svg\b.*?</svg>", page, re.S)
    assert len(blocks) == page.count("<svg")
    return blocks


def _circles(svg: ET.Element) -> list[ET.Element]:
    return svg.findall(".//circle")


def test_full_report_is_wellformed_and_selfcontained(summary):
    page = report.render(summary)
    svgs = _check_page(page)
    # accuracy-against-latency and -size panels, latency and energy bars, the front
    assert len(svgs) == 5
    titles = [svg.findtext("title") for svg in svgs]
    assert titles[0].startswith("Accuracy against latency") and titles[1].startswith(
        "Accuracy against size"
    )
    assert (
        "latency" in titles[2] and "energy" in titles[3] and titles[4].startswith("Every proposal")
    )
    for text in (
        "zoo:lenet5-digits",
        "eie",
        "an analytic model",
        "every budget met",
        "EIE has no Softmax",
        "digits.npz",
        "rank 64 saves nothing",
        "quantize(mode=int8)",
        "eie/fc1.npz",
        "per-PE compressed weights of fc1",
        "<details>",
    ):
        assert text in page
    assert "not met" not in page


def test_summary_table_formats_units_ratios_and_percent(summary):
    page = report.render(summary)
    table = page[page.index("Original and final") : page.index("Plots")]
    assert "300 us" in table and "140 us" in table and "0.467×" in table  # latency 3e-4 -> 1.4e-4
    assert "2 mJ" in table and "1 mJ" in table and "0.5×" in table
    assert "250 KB" in table and "90 KB" in table and "0.36×" in table
    assert "measured" in table and "1.2 ms" in table and "700 us" in table and "0.583×" in table
    assert "98.90%" in table and "98.30%" in table and "-0.60 pp" in table


def test_progress_panels_have_a_point_per_iteration_and_the_budget_line(summary):
    svgs = _check_page(report.render(summary))
    for svg in svgs[:2]:
        circles = _circles(svg)
        assert len(circles) == len(summary["history"]) + 2  # original, each iteration, final
        assert all(c.findtext("title") for c in circles)
        assert svg.find(".//line[@stroke-dasharray='6 4']") is not None  # the budget limit
        labels = [t.text for t in svg.iter("text")]
        assert {"orig", "1", "2", "3", "final"} <= set(labels)
    # the x axis of the latency panel reads in SI units
    assert any(t.text and t.text.endswith(" us") for t in svgs[0].iter("text"))


def test_layer_bars_mark_removed_layers(summary):
    svgs = _check_page(report.render(summary))
    for svg in svgs[2:4]:
        assert _circles(svg) == []
        assert (
            len(svg.findall("rect[title]")) == 2 * 4 - 1
        )  # before for each layer, after for the kept ones
        assert [t.text for t in svg.iter("text")].count("removed") == 1


def test_front_plot_has_every_proposal_and_the_hand_computed_front(summary):
    svg = _check_page(report.render(summary))[4]
    circles = _circles(svg)
    assert len(circles) == len(summary["proposals"])
    assert sum("(picked)" in c.findtext("title") for c in circles) == 2
    (step,) = svg.findall("polyline")
    assert len(step.get("points").split()) == 1 + 2 * (len(_FRONT) - 1)  # a step: across, then up


def test_pareto_front_by_hand():
    assert pareto_front(_PROPOSALS) == _FRONT
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5)]) == [(1.0, 0.5)]
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [(1.0, 0.5)]
    assert pareto_front([(1.0, 0.9), (2.0, 0.8), (3.0, 0.7)]) == [(1.0, 0.9)]  # one point beats all
    assert pareto_front([(1.0, 0.5), (2.0, None), (math.nan, 0.9), (3.0, 0.6)]) == [
        (1.0, 0.5),
        (3.0, 0.6),
    ]


def test_strings_from_the_model_are_escaped(summary):
    evil = "<script>alert(1)</script>"
    summary["layers"][0]["name"] = evil
    summary["history"][0]["layer"] = evil
    summary["proposals"][0]["layer"] = evil
    summary["warnings"].append('weights "a" & <b>')
    summary["input"]["model"] = "m'<x>"
    page = report.render(summary)
    assert evil not in page and "& <b>" not in page and "m'<x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "weights &quot;a&quot; &amp; &lt;b&gt;" in page and "m&#x27;&lt;x&gt;" in page
    _check_page(page)


def test_missing_optional_keys_still_render():
    minimal = {
        "input": {"model": "m.onnx"},
        "target": {"name": "tpu"},
        "budgets": [{"text": "1ms", "metric": "latency_s", "limit": 1e-3, "met": False}],
        "original": {"latency_s": 2e-3, "accuracy": None},
        "final": {"latency_s": 1.5e-3, "accuracy": None},
        "measured": None,
        "history": [],
        "proposals": [],
        "rejected": [],
        "payload": None,
        "legal_form": None,
        "budget_met": False,
        "exit_reason": "no pass can cut latency further",
        "layers": [
            {
                "name": "/a",
                "op_type": "Conv",
                "on": "tpu",
                "before": {"latency_s": 2e-3, "energy_j": 1e-3},
                "after": None,
            }
        ],
    }
    page = report.render(minimal)
    svgs = _check_page(page)
    assert len(svgs) == 3  # latency per iteration, latency and energy bars; no proposals, no front
    assert len(_circles(svgs[0])) == 2  # original and final
    assert "not met" in page and "no pass can cut latency further" in page
    assert "accuracy was not measured" in page.lower() and "removed" in page
    assert "measured on this CPU" not in page
    assert len(_check_page(report.render({}))) == 1


def test_accuracy_not_measured_plots_resource_per_iteration(summary):
    for part in [summary["original"], summary["final"]] + [
        h["metrics"] for h in summary["history"]
    ]:
        part["accuracy"] = None
    for p in summary["proposals"]:
        p["accuracy"] = None
    summary["history"][1].pop("metrics")  # the trajectory falls back on the deltas
    svgs = _check_page(report.render(summary))
    assert len(svgs) == 5
    assert "not measured" in svgs[0].findtext("title")
    assert len(_circles(svgs[0])) == len(summary["history"]) + 2
    assert (
        svgs[0].find(".//line[@stroke-dasharray='6 4']") is not None
    )  # the budget, now horizontal
    assert len(_circles(svgs[4])) == len(summary["proposals"]) and svgs[4].find("polyline") is None


def test_equal_values_and_a_single_proposal(summary):
    summary["final"] = dict(summary["original"])
    summary["history"] = []
    summary["proposals"] = summary["proposals"][:1]
    for ly in summary["layers"]:
        ly["before"] = ly["after"] = {"latency_s": 0.0, "energy_j": 0.0}
    page = report.render(summary)
    assert "nan" not in page.lower()
    svgs = _check_page(page)
    assert len(_circles(svgs[0])) == 2 and len(_circles(svgs[4])) == 1


def test_write_is_atomic_and_replaces(summary, tmp_path):
    path = tmp_path / "report.html"
    path.write_text("old")
    assert report.write(summary, path) == path
    assert path.read_text(encoding="utf-8") == report.render(summary)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]

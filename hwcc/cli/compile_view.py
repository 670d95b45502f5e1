"""What ``hwcc compile`` shows: the progress of the search, the result table, ``--json``.

On a terminal the search draws a progress bar (iteration, the proposal just kept,
metrics against the budget, time left); elsewhere it logs one line per iteration, so a
log file stays readable.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, TextIO

from hwcc.errors import HwccError
from hwcc.ir.transform import get_pass, resolve_search_passes, search_passes
from hwcc.progress import Progress
from hwcc.search.budget import CHIP_METRICS, format_metric
from hwcc.search.state import needed_reduction

__all__ = [
    "Reporter",
    "format_result",
    "json_summary",
    "parse_accuracy_drop",
    "parse_passes",
    "passes_help",
]


def parse_passes(text: str) -> tuple[str, ...]:
    """``prune,lowrank`` -> the pass names the search drives (names and aliases come from the
    pass registry: a pass declares itself searchable).

    Raises:
        HwccError: an unknown name (``quantize`` is named: it is the target's legal form).
    """
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise HwccError("--passes is empty", "e.g. --passes prune,lowrank")
    try:
        return resolve_search_passes(words)
    except HwccError as e:
        word = next((w for w in words if w.startswith("quant")), None)
        hint = (
            " quantization is applied as the target's legal form (int8 on the TPU, fixed point on "
            "Eyeriss and EIE), not searched"
            if word
            else ""
        )
        raise HwccError(f"--passes: {e.message}.{hint}", e.hint) from None


def passes_help() -> str:
    """The ``--passes`` help, read from the pass registry so that it cannot drift: every
    searchable pass with its aliases (an alias shared by several passes names them all), and
    the default in its shortest spelling (``prune,low_rank``)."""
    names = search_passes()
    aliases = {n: get_pass(n).aliases for n in names}
    groups: dict[str, list[str]] = {}
    for n in names:
        for a in aliases[n]:
            groups.setdefault(a, []).append(n)
    words = []
    for n in names:
        words += [f"{a} ({_and(g)})" for a, g in groups.items() if len(g) > 1 and g[0] == n]
        own = [a for a in aliases[n] if len(groups[a]) == 1]
        words.append(f"{n} (or {', '.join(own)})" if own else n)
    default, left = [], search_passes(default_only=True)
    while left:  # a shared alias stands for its passes when the default holds them all
        shared = [a for a in aliases[left[0]] if len(groups[a]) > 1 and set(groups[a]) <= set(left)]
        word, covered = (shared[0], groups[shared[0]]) if shared else (left[0], [left[0]])
        default.append(word)
        left = [m for m in left if m not in covered]
    return (
        f"comma list of what the search may change: {', '.join(words)} "
        f"(default: {','.join(default)})"
    )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def parse_accuracy_drop(text: str) -> float | None:
    """``1%`` or ``0.01`` -> 0.01 (a fraction: one point of accuracy); ``none`` -> None."""
    s = text.strip()
    if s.lower() == "none":
        return None
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise HwccError(
            f"--max-accuracy-drop {text!r} is not a number",
            "e.g. --max-accuracy-drop 1% (or 0.01): one point of accuracy; none: no floor",
        ) from None
    if not 0 <= value < 1:
        raise HwccError(f"--max-accuracy-drop {text!r} must be between 0 and 100%")
    return value


class Reporter:
    """Receives the search's events; a bar on a terminal, a line per iteration otherwise."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.bar: Progress | None = None

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        handler = getattr(self, f"on_{kind}", None)  # one method per event; others are not shown
        if handler is not None:
            handler(info)

    def on_warning(self, info: dict[str, Any]) -> None:
        self._line(f"hwcc compile: warning: {info['message']}")

    def on_resumed(self, info: dict[str, Any]) -> None:
        self._line(f"hwcc compile: resuming after iteration {info['state'].iteration}")

    def on_iteration(self, info: dict[str, Any]) -> None:
        state = info["state"]
        if self.tty and self.bar is None:
            expected = state.schedule.iterations_for(needed_reduction(state.original, state.limits))
            self.bar = Progress(
                expected,
                "searching",
                unit="iterations (expected)",
                stream=self.stream,
                enabled=True,
            )
            self.bar.done = state.iteration
            self.bar.__enter__()

    def on_proposal(self, info: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(
                0, note=f"proposal {info['done']}/{info['total']}: {info['proposal'].unit.id}"
            )

    def on_picked(self, info: dict[str, Any]) -> None:
        p, state = info["proposal"], info["state"]
        text = (
            f"iteration {state.iteration}: "
            + "; ".join(
                f"{_short(m)} {format_metric(m, state.current[m])}/{format_metric(m, lim)}"
                for m, lim in state.limits.items()
            )
            + (f"; accuracy {p.accuracy:.2%}" if p.accuracy is not None else "")
            + f"; {p.unit.id} ({_settings(p.step.shown)})"
        )
        if self.bar is not None:
            self.bar.log(f"hwcc compile: {text}")
            self.bar.note = ""
            self.bar.update(1)
        else:
            self._line(f"hwcc compile: {text}")

    def on_one_shot(self, info: dict[str, Any]) -> None:
        stage = info["stage"]
        if stage == "sensitivity" and "done" not in info:
            self._line("hwcc compile: one-shot start: measuring each channel group's sensitivity")
        elif stage == "fine-tune":
            self._line(f"hwcc compile: one-shot start: fine-tuning {info['units']} groups pruned")
        elif stage == "tried" and info["untuned"] is not None:
            tuned = "" if info["tuned"] is None else f", {info['tuned']:.2%} after fine-tuning"
            self._line(
                f"hwcc compile: one-shot start at {info['share']:.0%} of the way to the budget: "
                f"accuracy {info['untuned']:.2%}{tuned}"
            )

    def on_int8_start(self, info: dict[str, Any]) -> None:
        stage = info["stage"]
        if stage == "evaluating":
            self._line(f"hwcc compile: int8 start: {info['layers']} MatMul/Gemm layers in int8")
        elif stage == "kept":
            acc = info["state"].accuracy
            held = "" if acc is None else f", held-out accuracy {acc:.2%}"
            self._line(f"hwcc compile: int8 start kept{held}")

    def on_recovery(self, info: dict[str, Any]) -> None:
        self.close()
        self._line(
            "hwcc compile: every proposal is below the accuracy floor: fine-tuning the "
            f"current network ({info['steps']} steps) before giving up"
        )

    def on_long_term(self, info: dict[str, Any]) -> None:
        self.close()
        if info["steps"]:
            self._line(
                f"hwcc compile: long-term fine-tune ({info['steps']} steps), legal form, "
                "final pricing"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.close()
        print(text, file=self.stream, flush=True)


def _short(metric: str) -> str:
    return metric.split("_")[0]


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items() if k != "group")


def format_result(result: Any, explain: bool = False) -> str:
    """The table ``hwcc compile`` prints: each metric before and after, the budgets, accuracy."""
    s = result.summary.to_json()
    budgets = {b["metric"]: b for b in s["budgets"]}
    rows = [("metric", "original", "final", "ratio", "budget", "status")]
    # the system's metrics (chip and host), then the chip's alone where the target has a host
    chip = [m for m in CHIP_METRICS if m in s["original"] and m in s["final"]]
    for m in ("latency_s", "energy_j", "size_bytes", *chip):
        o, f = s["original"][m], s["final"][m]
        b = budgets.get(m)
        rows.append(
            (
                m,
                format_metric(m, o),
                format_metric(m, f),
                f"{f / o:.2f}x" if o else "-",
                format_metric(m, b["limit"]) if b else "",
                ("met" if b["met"] else "NOT MET") if b else "",
            )
        )
    if s.get("measured"):
        me = s["measured"]
        ok = "met" if me.get("budget_met") else "NOT MET"
        limit = min(me["limits_s"]) if me.get("limits_s") else None
        repeats = len(me.get("ratios", ()))
        rows.append(
            (
                f"latency measured (worst of {repeats})" if repeats > 1 else "latency measured",
                format_metric("latency_s", me["original_latency_s"]),
                format_metric("latency_s", me["final_latency_s"]),
                f"{me['final_latency_s'] / me['original_latency_s']:.2f}x",
                format_metric("latency_s", limit) if limit else "",
                ok if limit else "",
            )
        )
    a0, a1 = s["original"]["accuracy"], s["final"]["accuracy"]
    if a0 is not None and a1 is not None:
        floor = s.get("accuracy_floor")
        rows.append(
            (
                "accuracy",
                f"{a0:.2%}",
                f"{a1:.2%}",
                f"{(a1 - a0) * 100:+.2f} pp",
                f">= {floor:.2%}" if floor is not None else "",
                ("met" if s["accuracy_floor_met"] else "NOT MET") if floor is not None else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    t = s["target"]
    head = (
        f"{s['input']['model']} for {t['name']} ({t['provenance']}): {s['exit_reason']}; "
        f"{s['timing']['iterations']} iterations in {s['timing']['wall_s']:.0f} s"
    )
    out = [head, "", *lines, "", f"accuracy: {s['accuracy_kind']}{_interval(s)}"]
    out.append(_input_line(result.graph))
    if s.get("legal_form"):
        out.append(
            "legal form: "
            + ", ".join(f"{p} {_settings(k)}".rstrip() for p, k in s["legal_form"].items())
        )
    for w in s["warnings"]:
        out.append(f"warning: {w}")
    if result.path is not None:
        out.append(f"artifact: {result.path}  (report: {result.path / 'report.html'})")
    if explain:
        out += ["", "rejected proposals (why a pass did not apply):"]
        seen: dict[tuple[str, str], str] = {}
        for r in s["rejected"]:
            seen[(r["layer"], r["pass"])] = f"iteration {r['iteration']}: {r['reason']}"
        out += [f"  {layer} [{p}]: {why}" for (layer, p), why in seen.items()] or ["  none"]
    if not result.budget_met or not s["accuracy_floor_met"]:
        out.append("result: NOT MET (exit code 3); the best model found was still written")
    return "\n".join(out)


def _input_line(graph: Any) -> str:
    """The compiled model's input shapes: it is compiled for them, batch size included."""
    shapes = {n: graph.tensors[n].shape for n in graph.real_inputs()}
    text = ", ".join(f"{n} {'x'.join(map(str, s or ()))}" for n, s in shapes.items())
    batches = {s[0] for s in shapes.values() if s}
    if batches == {1}:
        return f"model input: {text} (fixed shapes: it takes batch 1 only)"
    return f"model input: {text} (fixed shapes)"


def json_summary(result: Any) -> dict[str, Any]:
    """What ``--json`` prints: the headline numbers, not the full history (``hwcc.json`` has it)."""
    s = result.summary.to_json()
    keep = (
        "input",
        "target",
        "budgets",
        "original",
        "final",
        "measured",
        "budget_met",
        "accuracy_floor",
        "accuracy_floor_met",
        "exit_reason",
        "warnings",
        "legal_form",
        "timing",
        "accuracy_kind",
    )
    out = {k: s.get(k) for k in keep}
    out["artifact"] = str(result.path) if result.path else None
    out["exit_code"] = result.exit_code
    return json.loads(
        json.dumps(out, default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)
    )


def _interval(s: dict[str, Any]) -> str:
    """The final accuracy's 95 % interval, as a clause of the accuracy line."""
    if not s.get("accuracy_interval"):
        return ""
    lo, hi = s["accuracy_interval"]
    return f"; the final model's 95 % interval over them: {lo:.1%} to {hi:.1%}"

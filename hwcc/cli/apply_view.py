"""``hwcc apply``: one pass run by hand, and the few lines that say what it did."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hwcc.ir import Graph
from hwcc.ir.knobs import show_value
from hwcc.ir.transform import PassContext, PassResult, get_pass
from hwcc.ir.verify import Verification

__all__ = ["ApplyReport", "apply_by_hand"]


@dataclass
class ApplyReport:
    """What ``hwcc apply`` did, for :meth:`summary`.

    Attributes:
        pass_name: the pass.
        settings: every knob's value used (defaults included).
        result: the pass's result; ``result.graph`` is what to write.
        ops_before: op type -> count in the input graph.
        ops_after: op type -> count in the result.
        init_bytes_before: bytes of initializers in the input graph.
        init_bytes_after: bytes of initializers in the result.
        verification: the onnxruntime comparison, or ``None`` if not asked for.
    """

    pass_name: str
    settings: dict[str, Any]
    result: PassResult
    ops_before: Counter
    ops_after: Counter
    init_bytes_before: int
    init_bytes_after: int
    verification: Verification | None

    @property
    def graph(self) -> Graph:
        return self.result.graph

    @property
    def modified(self) -> bool:
        return self.result.modified

    @property
    def verification_failed(self) -> bool:
        """The outputs were compared and disagree: the result must not be written."""
        return self.verification is not None and not self.verification.passed

    def summary(self) -> str:
        """A few lines for a person: what changed or why nothing did, and the check."""
        knobs = ", ".join(f"{k}={show_value(v)}" for k, v in self.settings.items())
        head = f"{self.pass_name}" + (f" ({knobs})" if knobs else "")
        if not self.modified:
            return f"{head}: did not apply: {self.result.reason or 'nothing to change'}"
        n0, n1 = sum(self.ops_before.values()), sum(self.ops_after.values())
        delta = {
            op: self.ops_after[op] - self.ops_before[op] for op in self.ops_before | self.ops_after
        }
        changes = ", ".join(f"{op} {d:+d}" for op, d in sorted(delta.items()) if d)
        lines = [
            f"{head}: applied",
            f"  nodes: {n0} -> {n1}" + (f" ({changes})" if changes else ""),
            f"  initializer bytes: {_bytes(self.init_bytes_before)} -> "
            f"{_bytes(self.init_bytes_after)}",
        ]
        if self.verification is None:
            lines.append("  not verified (use --verify to compare outputs in onnxruntime)")
        else:
            lines.extend("  " + s for s in self.verification.summary().splitlines())
        return "\n".join(lines)


def _bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def apply_by_hand(
    graph: Graph,
    pass_name: str,
    settings: Mapping[str, str],
    *,
    verify: bool,
    rtol: float,
    atol: float,
    seed: int = 0,
    data: Any = None,
) -> ApplyReport:
    """Run one pass as ``hwcc apply PASS MODEL [--set knob=value ...] [--verify]`` does.

    Args:
        graph: the loaded model; left unchanged.
        pass_name: a registered pass.
        settings: knob name -> value as typed on the command line.
        verify: compare the outputs before and after in onnxruntime.
        rtol: relative tolerance of the comparison.
        atol: absolute tolerance of the comparison.
        seed: seed of the random inputs.
        data: calibration or importance data for passes that use it (a mapping from
            input name to array, or an ``.npz`` path), as ``PassContext.data``.

    Returns:
        The report; write ``report.graph`` only after this returns.

    Raises:
        HwccError: unknown pass or knob, a bad knob value, or a failed pass; a
            :class:`PassError` with ``exit_code`` :data:`VERIFY_FAILED_EXIT` when an exact
            pass fails verification (a lossy one's failure is in the report).
    """
    p = get_pass(pass_name)
    ctx = PassContext(
        knobs={p.name: p.parse_settings(settings)},
        seed=seed,
        verify=verify,
        rtol=rtol,
        atol=atol,
        data=data,
    )
    options = p.options(ctx)
    ops_before, bytes_before = _census(graph)
    result = p(graph.copy() if p.in_place else graph, ctx)
    ops_after, bytes_after = _census(result.graph)
    return ApplyReport(
        p.name,
        options,
        result,
        ops_before,
        ops_after,
        bytes_before,
        bytes_after,
        result.details.get("verification"),
    )


def _census(graph: Graph) -> tuple[Counter, int]:
    return Counter(n.op_type for n in graph.nodes), sum(
        a.nbytes for a in graph.initializers.values()
    )

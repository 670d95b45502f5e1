"""Settings and readers for the compile tests (tests/test_compile_*.py): the short
fine-tunes and few iterations the fast tests compile lenet300-digits with, as API
arguments and as CLI flags, and the summary an artifact holds."""

from __future__ import annotations

import json
from pathlib import Path

FAST = {"short_term_steps": 8, "long_term_steps": 8, "max_iterations": 4}
FAST_FLAGS = ["--short-term-steps", "8", "--long-term-steps", "8", "--max-iterations", "4"]


def read_summary(folder: Path) -> dict:
    """The artifact's ``hwcc.json``."""
    return json.loads((folder / "hwcc.json").read_text())

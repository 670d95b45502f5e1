"""Fixtures shared by the target tests in this folder.

``eyeriss`` is the bundled Eyeriss target with its host swapped for a test host that prices
any layer at 1 ms and 1 mJ (tests/targets/test_eyeriss_*.py); ``tpu`` is the bundled TPU v1
target (tests/targets/test_tpu_*.py). Both are module-scoped: each test module loads its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hwcc
import hwcc.targets
from hwcc.targets.base import Cost, Target, load_target, register_family


# ---------------------------------------------------------------------- eyeriss
@register_family("eyeriss_test_host")
class _TestHost(Target):
    """Prices any layer at 1 ms and 1 mJ, so host rows are easy to spot."""

    def cost_layer(self, layer, ctx):
        return Cost(1e-3, 1e-3, note="test host")


@pytest.fixture(scope="module")
def eyeriss(tmp_path_factory):
    """The bundled eyeriss target with its host swapped for the test host."""
    d = tmp_path_factory.mktemp("eyeriss")
    (d / "host.toml").write_text('family = "eyeriss_test_host"\nprovenance = "model"\n')
    text = (Path(hwcc.targets.__file__).parent / "eyeriss" / "eyeriss.toml").read_text()
    text, n = re.subn(r'^host = "[^"]*"', f'host = "{d / "host.toml"}"', text, flags=re.M)
    assert n == 1
    (d / "eyeriss.toml").write_text(text)
    return load_target(d / "eyeriss.toml")


# ---------------------------------------------------------------------- tpu
@pytest.fixture(scope="module")
def tpu():
    return load_target("tpu")

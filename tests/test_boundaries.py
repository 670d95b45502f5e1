"""The boundaries between the packages, kept by a test: who may import what, module sizes.

Read from the source (every ``import`` statement, at the top of a module or inside a
function), so a new edge fails here before it hides in the code:

* networkx only in the IR's graph module; ONNX graph building (``onnx.helper``) only in
  the ONNX I/O package, the test builders (:mod:`hwcc.testing`) and the tests;
* torch only in the training package (``hwcc.train``) and the zoo (``hwcc.models``);
* passes never import targets; targets never import the passes' helpers (``hwcc.passes``);
* the core (``hwcc/``) never imports a target family by name, only the target contract
  (``hwcc.targets.base``) and pricing (``hwcc.targets.pricing``);
* an import inside a function that crosses a package boundary says why in a comment;
* no module, test modules included, is longer than 400 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> the package it ships as
PACKAGES = {
    "hwcc": "hwcc",
    "passes": "hwcc.passes",
    "targets": "hwcc.targets",
    "models": "hwcc.models",
    "bench": "bench",
}
MAX_LINES = 400


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    path: Path
    line: int
    target: str  # the imported module (``from a.b import c`` gives a.b and a.b.c)
    nested: bool  # inside a function
    commented: bool  # a comment on the line or the line above


def _modules() -> Iterator[tuple[str, Path]]:
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            yield ".".join((package, *parts)), path


def _import_nodes(node: ast.AST, nested: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every import statement under ``node``, and whether it is inside a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, nested
        else:
            inside = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from _import_nodes(child, inside)


def _imports() -> list[Import]:
    out = []
    for module, path in _modules():
        text = path.read_text()
        lines = text.splitlines()
        for node, nested in _import_nodes(ast.parse(text)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")[
                        : len(module.split(".")) - node.level + (path.name == "__init__.py")
                    ]
                    base = ".".join([*anchor, *([base] if base else [])])
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            here = lines[node.lineno - 1] + (lines[node.lineno - 2] if node.lineno > 1 else "")
            for name in names:
                out.append(Import(module, path, node.lineno, name, nested, "#" in here))
    return out


IMPORTS = _imports()


def _where(i: Import) -> str:
    return f"{i.path.relative_to(ROOT)}:{i.line} imports {i.target}"


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations(importer: str, imported: str, allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        _where(i)
        for i in IMPORTS
        if _under(i.module, importer)
        and _under(i.target, imported)
        and not any(_under(i.module, a) for a in allowed)
    ]


def _users(imported: str, allowed: tuple[str, ...]) -> list[str]:
    return [
        _where(i)
        for i in IMPORTS
        if _under(i.target, imported) and not any(_under(i.module, a) for a in allowed)
    ]


def test_the_reader_sees_the_imports():
    """The checks below read real edges: a few that must exist do."""
    edges = {(i.module, i.target) for i in IMPORTS}
    assert ("hwcc.ir.graph", "networkx") in edges
    assert any(m.startswith("hwcc.train") and t == "torch" for m, t in edges)
    assert any(
        m == "hwcc.passes.prune_channels" and t.startswith("hwcc.passes.lib") for m, t in edges
    )


def test_networkx_only_in_the_ir_graph():
    assert _users("networkx", ("hwcc.ir.graph",)) == []


def test_onnx_graph_building_only_in_onnx_io_and_the_test_builders():
    assert _users("onnx.helper", ("hwcc.ir.onnx_io", "hwcc.testing", "bench")) == []


def test_torch_only_in_training_and_the_zoo():
    assert _users("torch", ("hwcc.train", "hwcc.models", "bench")) == []


def test_passes_never_import_targets():
    assert _violations("hwcc.passes", "hwcc.targets") == []


def test_targets_never_import_the_passes_helpers():
    assert _violations("hwcc.targets", "hwcc.passes") == []


def test_the_core_never_imports_a_target_family_by_name():
    families = sorted(p.name for p in (ROOT / "targets").iterdir() if (p / "__init__.py").is_file())
    assert families, "no target family found"
    bad = [
        v
        for fam in families
        for v in _violations("hwcc", f"hwcc.targets.{fam}")
        if not v.split(":")[0].startswith(("targets/", "passes/", "models/"))
    ]
    assert bad == []


def _package(module: str) -> str:
    """The package a module belongs to, for boundaries: ``hwcc.search``, ``hwcc.targets.cpu``..."""
    parts = module.split(".")
    if parts[0] == "bench":
        return "bench"
    if parts[:2] == ["hwcc", "targets"] or parts[:2] == ["hwcc", "passes"]:
        return ".".join(parts[:3]) if len(parts) > 3 else ".".join(parts[:2])
    return ".".join(parts[:2]) if len(parts) > 2 else "hwcc"


def test_an_import_inside_a_function_that_crosses_a_package_says_why():
    silent = [
        _where(i)
        for i in IMPORTS
        if i.nested
        and i.target.startswith("hwcc.")
        and i.target.count(".") >= 1
        and not i.commented
        and _package(i.module) != _package(i.target)
        and i.target != "hwcc"
    ]
    assert silent == [], (
        "say why the import is not at the top of the module (a comment on its line)"
    )


def _every_file() -> list[Path]:
    """The shipped modules, the bench's, and the tests'."""
    return [p for _, p in _modules()] + sorted((ROOT / "tests").rglob("*.py"))


@pytest.mark.parametrize("path", _every_file(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, (
        f"{path.relative_to(ROOT)} has {n} lines (at most {MAX_LINES}): split it by concern"
    )

"""Dependency direction, no import cycles, and precision changes in clip/ only where the policy says.

Layers: ``train.py -> trainers -> {clip, engine}``, ``datasets -> engine``, ``tools`` on top; ``fileio`` is a
leaf every layer may use. Each check is a function that returns its findings, and the last tests feed those
functions offending source, so a check that cannot fail is caught too.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("clip", "engine", "trainers", "datasets", "tools")
FORBIDDEN = {  # layer -> top-level modules it must not import
    "engine": {"clip", "trainers", "datasets", "train", "tools"},
    "clip": {"engine", "trainers", "datasets", "train", "tools"},
    "datasets": {"clip", "trainers", "train", "tools"},
    "trainers": {"datasets", "train", "tools"},
}
CAST_METHODS = {"half", "float", "double", "bfloat16", "cuda"}
LOW_LEVEL_DTYPES = {"float16", "half", "bfloat16", "float64", "double", "float32", "float"}
# where clip/ may change dtypes: the one cast function, and LayerNorm, which computes in fp32 by design
CAST_ALLOWED = {"cast_model", "forward@LayerNorm"}


def _modules() -> Dict[str, Path]:
    found = {"train": REPO / "train.py", "fileio": REPO / "fileio.py"}
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports_of(source: str, module: str) -> Iterator[Tuple[int, str]]:
    """``(line, imported module)`` for every import, relative ones resolved against ``module``."""
    package = module if module in PACKAGES else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # level 1 = this package, each further level one package up
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def layer_violations(source: str, module: str) -> List[str]:
    forbidden = FORBIDDEN.get(module.split(".")[0], set())
    return [f"{module}:{line} imports {name}" for line, name in imports_of(source, module)
            if name.split(".")[0] in forbidden]


def import_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every cycle found by a depth-first walk of ``{module: modules it imports}`` (each reported once)."""
    cycles, state = [], {}

    def visit(node: str, stack: List[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def cast_violations(source: str, name: str) -> List[str]:
    """Calls of ``.half()``/``.float()``/... and ``.to(<literal dtype>)`` outside ``CAST_ALLOWED``."""
    found = []

    def walk(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                walk(child, child.name)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = f"{child.name}@{where}" if where else child.name
                if scope not in CAST_ALLOWED:
                    walk(child, where)
                continue
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
                literal = [a for a in [*child.args, *(k.value for k in child.keywords)]
                           if isinstance(a, ast.Attribute) and a.attr in LOW_LEVEL_DTYPES]
                if child.func.attr in CAST_METHODS or (child.func.attr == "to" and literal):
                    found.append(f"{name}:{child.lineno} .{child.func.attr}(...)")
            walk(child, where)

    walk(ast.parse(source), "")
    return found


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_layer_imports_only_downwards(module):
    assert not layer_violations(MODULES[module].read_text(), module)


def test_no_import_cycles_between_project_modules():
    graph = {}
    for module, path in MODULES.items():
        targets = {name for _, name in imports_of(path.read_text(), module)}
        graph[module] = {t for t in targets if t in MODULES and t != module}
    assert not import_cycles(graph)


@pytest.mark.parametrize("path", sorted((REPO / "clip").glob("*.py")), ids=lambda p: p.name)
def test_clip_changes_dtypes_only_in_cast_model(path):
    assert not cast_violations(path.read_text(), path.name)


def test_clip_names_no_method_and_reads_no_config():
    text = "\n".join(p.read_text() for p in (REPO / "clip").glob("*.py"))
    for word in ("cfg.", "MaPLe", "CoOp", "design_details"):
        assert word not in text, word
    assert not re.search(r"(?<![.\w])eval\(", text), "clip/ must not eval() strings"


def test_the_checks_catch_offending_code():
    assert layer_violations("import clip.model\nfrom trainers import coop\n", "engine.trainer") == [
        "engine.trainer:1 imports clip.model", "engine.trainer:2 imports trainers",
        "engine.trainer:2 imports trainers.coop"]
    assert layer_violations("from ..engine import x\n", "clip.model") == ["clip.model:1 imports engine",
                                                                        "clip.model:1 imports engine.x"]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    offending = ("def f(x):\n    return x.to(torch.float16)\n"
                 "def g(x):\n    return x.to(dtype=torch.bfloat16) + x.half()\n"
                 "def cast_model(m):\n    return m.to(torch.float16)\n"
                 "class LayerNorm:\n    def forward(self, x):\n        return x.to(torch.float32)\n"
                 "    def other(self, x):\n        return x.float()\n")
    assert cast_violations(offending, "m.py") == ["m.py:2 .to(...)", "m.py:4 .to(...)", "m.py:4 .half(...)",
                                                  "m.py:11 .float(...)"]
    assert cast_violations("def f(x, y):\n    return x.to(y.dtype)\n", "ok.py") == []

"""Dependency direction: engine/ imports nothing from clip/, trainers/, datasets/; clip/ has no dtype/device casts."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN_FOR_ENGINE = {"clip", "trainers", "datasets", "train"}
FORBIDDEN_CALLS_IN_CLIP = {"half", "cuda", "float"}


def _imported_top_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def _py_files(folder: str):
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


def test_engine_imports_no_upper_layer():
    bad = []
    for path in _py_files("engine"):
        tree = ast.parse(path.read_text(), filename=str(path))
        bad += [f"{path.relative_to(REPO)}:{line} imports {mod}" for line, mod in _imported_top_modules(tree)
                if mod in FORBIDDEN_FOR_ENGINE]
    assert not bad, "\n".join(bad)


def test_clip_has_no_half_cuda_float_calls():
    bad = []
    for path in _py_files("clip"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in FORBIDDEN_CALLS_IN_CLIP):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} calls .{node.func.attr}()")
    assert not bad, "\n".join(bad)


def test_the_checks_catch_violations():
    # The AST checks above must see both kinds of offence.
    tree = ast.parse("import clip.model\nfrom trainers import coop\nx = y.half()\n")
    assert {m for _, m in _imported_top_modules(tree)} == {"clip", "trainers"}
    calls = [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert calls == ["half"]

"""clip/ stays a pure backbone: no scattered precision/device casts, no imports from the layers above it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

CLIP_DIR = Path(__file__).resolve().parents[2] / "clip"
FILES = sorted(CLIP_DIR.glob("*.py"))
FORBIDDEN_CALLS = {"half", "float", "cuda", "double", "bfloat16"}
FORBIDDEN_PACKAGES = {"engine", "trainers", "datasets", "train", "tools"}


def test_clip_package_has_the_expected_modules():
    assert {p.name for p in FILES} >= {"__init__.py", "clip.py", "model.py", "prompts.py", "loading.py",
                                        "tokenizer.py"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_precision_or_device_method_calls(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = [f"line {node.lineno}: .{node.func.attr}()" for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in FORBIDDEN_CALLS]
    assert not calls, f"{path.name} casts outside cast_model: {calls}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_imports_nothing_from_upper_layers(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN_PACKAGES, f"{path.name} imports {sorted(imported & FORBIDDEN_PACKAGES)}"


def test_no_method_names_or_config_in_clip():
    text = "\n".join(p.read_text() for p in FILES)
    for word in ("cfg.", "MaPLe", "CoOp", "design_details"):
        assert word not in text, word
    assert not re.search(r"(?<![.\w])eval\(", text), "clip/ must not eval() strings"

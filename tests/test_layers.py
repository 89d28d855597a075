"""Imports follow the layer table of docs/architecture.md, read from every module's source (imports inside
functions included), and the plain-Python layer never loads torch. Which modules may start processes, and
the finer rules between data and verifiers, are checked in tests/test_sandbox_layout.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "prorl"

# (layer, module prefixes), lowest layer first; a module belongs to the first layer with a matching prefix.
LAYERS = [
    ("leaf", ["prorl.errors", "prorl.text"]),
    ("plain", ["prorl.config", "prorl.data", "prorl.verifiers"]),
    ("tensor", ["prorl.algo", "prorl.eval.passk"]),
    ("model", ["prorl.policy", "prorl.logprobs", "prorl.rollout", "prorl.tiny"]),
    ("orchestration", ["prorl.groups", "prorl.batch", "prorl.update", "prorl.run", "prorl.train", "prorl.checkpoint",
                       "prorl.runlog", "prorl.eval", "prorl.report", "prorl.demo", "prorl.score_cmd", "prorl.check_cmd",
                       "prorl"]),
    ("entry", ["prorl.cli"]),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
# What each layer may import from prorl besides the layers below it (None: anything below or beside it).
MAY_IMPORT = {
    "leaf": set(),
    "plain": {"leaf", "plain"},
    "tensor": set(),
    "model": {"leaf", "plain", "tensor", "model"},
    "orchestration": {"leaf", "plain", "tensor", "model", "orchestration"},
    "entry": {"leaf", "plain", "tensor", "model", "orchestration"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer_of(module: str) -> str:
    for name, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


def prorl_imports(path: Path) -> set[str]:
    """Every prorl module ``path`` imports; ``from prorl.x import y`` counts ``prorl.x.y`` when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "prorl")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prorl":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layer_table(module):
    layer = layer_of(module)
    for target in sorted(prorl_imports(MODULES[module])):
        if target == module or module.startswith(target + "."):
            continue  # a package's own parent (importing prorl.x from prorl.x.y)
        assert layer_of(target) in MAY_IMPORT[layer], f"{module} ({layer}) imports {target} ({layer_of(target)})"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("prorl.verifiers")))
def test_verifiers_take_only_the_schema_from_data(module):
    from_data = {t for t in prorl_imports(MODULES[module]) if t.startswith("prorl.data")}
    assert from_data <= {"prorl.data.schema"}, f"{module} imports {sorted(from_data)}"


PLAIN = sorted(m for m in MODULES if layer_of(m) in ("leaf", "plain"))


@pytest.mark.parametrize("module", PLAIN)
def test_plain_python_layer_does_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"{module} imports torch"


def test_algo_imports_no_model_code():
    code = "import sys, prorl.algo; print(sorted(m for m in sys.modules if m.startswith(('transformers', 'prorl.train'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]"

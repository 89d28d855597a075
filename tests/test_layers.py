"""Imports follow layers: the plain-Python pieces (config, data, verifiers) never import torch."""

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prorl"
PLAIN = ["prorl.config", "prorl.errors"] + [
    "prorl." + ".".join(p.relative_to(SRC).with_suffix("").parts)
    for pkg in ("data", "verifiers")
    for p in sorted((SRC / pkg).rglob("*.py"))
    if p.name != "__init__.py"
] + ["prorl.data", "prorl.verifiers"]


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

"""Where things live, checked on the source with ``ast``: process launching, the text module, data vs verifiers.

- Only ``prorl.verifiers.sandbox`` starts processes at the Python level: nowhere else under src/prorl is
  ``subprocess`` (or ``pty``) imported or ``os.fork``, ``os.exec*``, ``os.system``, ``os.spawn*`` (or
  their relatives ``os.forkpty``, ``os.popen``, ``os.posix_spawn*``) used. Source text in strings, which runs
  inside a sandbox (the code verifier's harness), is not code here; the pool's ``multiprocessing``
  fork server is allowed.
- ``prorl.text`` is a leaf: standard library only, nothing from prorl.
- Nothing under ``prorl.data`` imports ``prorl.verifiers``; ``prorl.verifiers.logic`` takes only the
  schema from ``prorl.data``; the STEM verifier reads answers through ``prorl.text``, not the math verifier.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PRORL = SRC / "prorl"
SANDBOX = PRORL / "verifiers" / "sandbox"
LAUNCHERS = {"fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp"}
"""``os`` functions that start a process, besides the ``exec*`` and ``spawn*`` families."""
LAUNCHING_MODULES = ("subprocess", "pty")
"""Modules whose import alone counts: their purpose is starting processes."""


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (function bodies too), as absolute names.

    ``from a import b`` counts as both ``a`` and ``a.b`` (``b`` may be a submodule).
    """
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def process_launches(source: str) -> list[str]:
    """Each place where ``source`` imports subprocess or pty or names a launching ``os`` function, as "line: what"."""
    tree = ast.parse(source)
    os_names = {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names.update(alias.asname for alias in node.names if alias.name == "os" and alias.asname)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in LAUNCHING_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in LAUNCHING_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "os":
                found += [f"{node.lineno}: from os import {a.name}" for a in node.names if _launches(a.name)]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in os_names:
            if _launches(node.attr):
                found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))  # ast.walk goes breadth-first


def _launches(name: str) -> bool:
    return name in LAUNCHERS or name.startswith(("exec", "spawn"))


SOURCES = sorted(PRORL.rglob("*.py"))


def test_the_checks_find_what_they_look_for():
    # Self-check: the walk sees the package, and the finder sees every form of a launch (and no lookalike).
    assert PRORL / "text.py" in SOURCES and SANDBOX / "run.py" in SOURCES
    source = ("import os as o, subprocess\nfrom os import execv, getpid\nfrom subprocess import run\n"
              "o.fork()\nos.spawnlp\nos.system('x')\nos.posix_spawn\nos.kill(1, 9)\nos.environ\n"
              "'os.fork()'\nfrom pty import spawn\n")
    assert process_launches(source) == ["1: import subprocess", "2: from os import execv",
                                        "3: from subprocess import ...", "4: o.fork", "5: os.spawnlp",
                                        "6: os.system", "7: os.posix_spawn", "11: from pty import ..."]
    in_sandbox = [hit for path in SANDBOX.glob("*.py") for hit in process_launches(path.read_text())]
    assert any("import subprocess" in hit for hit in in_sandbox)


@pytest.mark.parametrize("path", [p for p in SOURCES if SANDBOX not in p.parents],
                         ids=lambda p: str(p.relative_to(PRORL)))
def test_only_the_sandbox_starts_processes(path):
    assert process_launches(path.read_text()) == [], f"{path.relative_to(SRC)} starts processes outside the sandbox"


def test_the_code_verifiers_harness_is_text_not_code():
    # The harness forks inside the sandbox; it is a string in code.py, so the check above passes code.py.
    from prorl.verifiers import code

    assert "os.fork()" in code.HARNESS
    assert process_launches((PRORL / "verifiers" / "code.py").read_text()) == []


def test_text_is_a_leaf_of_the_standard_library():
    found = {name.split(".")[0] for name in imports(PRORL / "text.py")}
    assert "prorl" not in found
    assert found - {"__future__"} <= set(sys.stdlib_module_names), found - set(sys.stdlib_module_names)


@pytest.mark.parametrize("path", sorted((PRORL / "data").rglob("*.py")), ids=lambda p: p.name)
def test_data_does_not_import_verifiers(path):
    assert not [name for name in imports(path) if name.startswith("prorl.verifiers")]


def test_logic_takes_only_the_schema_from_data_and_stem_does_not_use_the_math_verifier():
    from_data = {name for name in imports(PRORL / "verifiers" / "logic.py") if name.startswith("prorl.data")}
    assert from_data <= {"prorl.data.schema", "prorl.data.schema.Problem"}, from_data
    assert not [name for name in imports(PRORL / "verifiers" / "stem.py") if name.startswith("prorl.verifiers.math")]

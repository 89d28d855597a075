"""``prorl data check FILE...``: validate problem files and list every bad row, not only the first.

Each bad row is printed as ``<path>:<position>: field '<name>': <expected>, got <value>`` (positions as
in :mod:`prorl.data.loaders`), then one summary line per file: ``<path>: N rows, M bad`` with the
count of good rows per domain. Exit code 0 when every file is clean, 1 otherwise.

Plain Python: this module never imports torch.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from prorl.data.adapters import ADAPTERS
from prorl.data.loaders import iter_problems
from prorl.data.schema import DOMAINS
from prorl.errors import DataError


def check_rows(path: str | Path, *, adapter: str | None = None,
               domain: str | None = None) -> tuple[int, list[str], Counter]:
    """(rows read, every error message, good rows per domain) for one file.

    A file-level problem (missing file, unknown format, undetectable row format) is one error and 0 rows.
    """
    rows, errors, domains = 0, [], Counter()
    try:
        for item in iter_problems(path, adapter=adapter, domain=domain):
            rows += 1
            if isinstance(item, DataError):
                errors.append(str(item))
            else:
                domains[item.domain] += 1
    except DataError as exc:
        errors.append(str(exc))
    if rows == 0 and not errors:
        errors.append(f"{path}: no rows")
    return rows, errors, domains


def check_file(path: str | Path, *, adapter: str | None = None, domain: str | None = None) -> list[str]:
    """Every error message for ``path`` (empty when clean); arguments as in ``load_problems``.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "p.jsonl"
    >>> _ = f.write_text('{"id": "a", "domain": "code", "prompt": "x", "tests": {"inputs": ["1"], "outputs": []}}\\n'
    ...                  '{"id": "a", "domain": "math", "prompt": "y", "answer": "2"}\\n')
    >>> for message in check_file(f): print(message.replace(str(f), "p.jsonl"))
    p.jsonl:1: field 'tests': expected as many outputs as inputs, got 1 inputs and 0 outputs
    """
    return check_rows(path, adapter=adapter, domain=domain)[1]


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``prorl data check``."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="problem files: .jsonl, .jsonl.gz, .parquet, or a saved dataset directory")
    parser.add_argument("--adapter", choices=list(ADAPTERS), default=None,
                        help="source format of the rows (default: our schema, or detected from the first row)")
    parser.add_argument("--domain", choices=list(DOMAINS), default=None,
                        help="the files' domain (filled in where rows lack one; rows of another domain are bad)")


def main_check(args: argparse.Namespace) -> int:
    """Print every bad row and a summary line per file; 0 if all files are clean, else 1."""
    any_bad = False
    for path in args.files:
        rows, errors, domains = check_rows(path, adapter=args.adapter, domain=args.domain)
        for message in errors:
            print(message)
        per_domain = ", ".join(f"{d} {domains[d]}" for d in DOMAINS if domains[d])
        print(f"{path}: {rows} rows, {len(errors)} bad" + (f" (good: {per_domain})" if per_domain else ""))
        any_bad = any_bad or bool(errors)
    return 1 if any_bad else 0

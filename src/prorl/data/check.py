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
from typing import Callable

from prorl.data.adapters import ADAPTERS
from prorl.data.loaders import LoadReport, iter_problems
from prorl.data.schema import DOMAINS, Problem
from prorl.errors import DataError


def check_rows(path: str | Path, *, adapter: str | None = None, domain: str | None = None,
               grade: Callable[[Problem], str | None] | None = None) -> tuple[int, list[str], Counter, LoadReport]:
    """(rows read, every error message, good rows per domain, the loader's report) for one file.

    Rows the adapter leaves out on purpose (e.g. an SCP-116K row with no derivable answer) are not read
    rows; the report counts them per reason.

    ``grade`` (``prorl data check`` passes :func:`prorl.verifiers.gradeable.why_ungradeable`) says why a
    loaded problem could not be graded, or None; such rows are bad too. A file-level problem (missing
    file, unknown format, undetectable row format) is one error and 0 rows.
    """
    rows, errors, domains = 0, [], Counter()
    report = LoadReport()
    try:
        for item in iter_problems(path, adapter=adapter, domain=domain, report=report):
            rows += 1
            if isinstance(item, DataError):
                errors.append(str(item))
            elif grade is not None and (why := grade(item)) is not None:
                errors.append(f"{item.source}: {why}")
            else:
                domains[item.domain] += 1
    except DataError as exc:
        errors.append(str(exc))
    if rows == 0 and not errors and not report.num_skipped:
        errors.append(f"{path}: no rows")
    return rows, errors, domains, report


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


def main_check(args: argparse.Namespace, grade: Callable[[Problem], str | None] | None = None) -> int:
    """Print every bad row and a summary line per file; 0 if all files are clean, else 1."""
    any_bad = False
    for path in args.files:
        rows, errors, domains, report = check_rows(path, adapter=args.adapter, domain=args.domain, grade=grade)
        for message in errors:
            print(message)
        for first in report.first_skipped.values():
            print(first)
        per_domain = ", ".join(f"{d} {domains[d]}" for d in DOMAINS if domains[d])
        print(f"{path}: {rows} rows, {len(errors)} bad" + (f" (good: {per_domain})" if per_domain else ""))
        if report.adapter not in (None, "prorl") or report.num_skipped:  # a source format, or rows left out
            reasons = ", ".join(f"{reason}: {n}" for reason, n in report.skipped.most_common())
            print(f"  adapter {report.adapter}: {report.loaded} loaded, {report.num_skipped} skipped"
                  + (f" ({reasons})" if reasons else ""))
        any_bad = any_bad or bool(errors)
    return 1 if any_bad else 0

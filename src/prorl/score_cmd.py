"""``prorl score FILE.jsonl``: score saved responses with the verifiers and summarise per domain.

Input, one JSON object per line: a problem in our schema (its fields at the top level, or nested
under ``"problem"``) and either ``"response"`` (a string) or ``"responses"`` (a list of strings).
A row without an ``id`` gets ``<file stem>-<line>``; ids may repeat (several rows may answer the same
problem). A malformed row stops the command before anything is scored, with every bad row listed.

Output, ``FILE.scored.jsonl`` next to the input (or ``--out``), one line per response, in input order:
``{"id", "domain", "line", "sample", "score", "reason", "status"}`` where ``line`` is the input line
and ``sample`` the response's index in that row (0 for ``"response"``). Then a table per domain:
count, mean score, accuracy (fraction of responses scoring exactly 1), errors and timeouts (verdicts
whose status is ``error`` / ``timeout``), and an ``all`` row.

Scoring runs in :class:`prorl.verifiers.pool.ScoringPool` (``--workers``, ``--timeout``), in chunks
so that a large file is written as it goes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prorl.data.adapters import FieldError, from_prorl, validate_problem
from prorl.data.schema import DOMAINS, Problem
from prorl.errors import DataError

CHUNK = 512
"""Responses handed to the pool at once; the output file grows chunk by chunk."""
MAX_LISTED_ERRORS = 20
"""Bad input rows named in the error message before the rest are only counted."""


def default_out_path(path: str | Path) -> Path:
    """``x.jsonl`` -> ``x.scored.jsonl`` (``.jsonl.gz`` too; other names get ``.scored.jsonl`` appended).

    >>> str(default_out_path("runs/eval.jsonl")), str(default_out_path("a.txt"))
    ('runs/eval.scored.jsonl', 'a.txt.scored.jsonl')
    """
    path = Path(path)
    for ext in (".jsonl.gz", ".jsonl"):
        if path.name.endswith(ext):
            return path.with_name(path.name[: -len(ext)] + ".scored.jsonl")
    return path.with_name(path.name + ".scored.jsonl")


def parse_row(row: Any, *, default_id: str) -> tuple[Problem, list[str]]:
    """(problem, responses) of one input row, or FieldError.

    >>> p, rs = parse_row({"problem": {"domain": "math", "prompt": "1+1=", "answer": "2"},
    ...                    "responses": ["\\\\boxed{2}", "3"]}, default_id="f-1")
    >>> p.id, p.answer, rs
    ('f-1', '2', ['\\\\boxed{2}', '3'])
    >>> parse_row({"id": "a", "domain": "math", "prompt": "1+1=", "answer": "2"}, default_id="f-2")
    Traceback (most recent call last):
    ...
    prorl.data.adapters.FieldError: field 'response': expected a string (or 'responses': a list of strings), got nothing
    """
    if not isinstance(row, dict):
        raise FieldError("problem", f"expected a JSON object, got {type(row).__name__}")
    if "problem" in row:
        if not isinstance(row["problem"], dict):
            raise FieldError("problem", f"expected an object, got {type(row['problem']).__name__}")
        problem_row = row["problem"]
    else:
        problem_row = {k: v for k, v in row.items() if k not in ("response", "responses")}
    problem = validate_problem(from_prorl(problem_row, default_id=default_id))
    if "responses" in row:
        responses = row["responses"]
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise FieldError("responses", "expected a list of strings")
    elif isinstance(row.get("response"), str):
        responses = [row["response"]]
    else:
        got = "nothing" if row.get("response") is None else type(row["response"]).__name__
        raise FieldError("response", f"expected a string (or 'responses': a list of strings), got {got}")
    return problem, responses


def read_scoring_input(path: str | Path) -> list[tuple[int, Problem, list[str]]]:
    """(line, problem, responses) for each row of a JSONL file; DataError listing every bad row."""
    from prorl.data.loaders import read_rows

    path = Path(path)
    stem = default_out_path(path).name[: -len(".scored.jsonl")]
    items, errors = [], []
    for line, row, error in read_rows(path):
        try:
            if error is not None:
                raise DataError(f"{path}:{line}: {error}")
            problem, responses = parse_row(row, default_id=f"{stem}-{line}")
            items.append((line, problem, responses))
        except (FieldError, DataError) as exc:
            errors.append(str(exc) if isinstance(exc, DataError) else f"{path}:{line}: {exc}")
    if errors:
        listed = "\n".join(errors[:MAX_LISTED_ERRORS])
        more = f"\n... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        raise DataError(f"{len(errors)} bad row(s), nothing scored:\n{listed}{more}")
    return items


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per-domain (and ``all``) count, mean score, accuracy, errors and timeouts of scored rows.

    >>> s = summarize([{"domain": "math", "score": 1.0, "status": "ok"},
    ...                {"domain": "math", "score": 0.0, "status": "timeout"},
    ...                {"domain": "code", "score": 0.5, "status": "ok"}])
    >>> s["math"], s["all"]["mean"]
    ({'count': 2, 'mean': 0.5, 'accuracy': 0.5, 'errors': 0, 'timeouts': 1}, 0.5)
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["domain"], []).append(row)
    ordered = [d for d in DOMAINS if d in groups] + sorted(set(groups) - set(DOMAINS))
    out = {}
    for name, members in [(d, groups[d]) for d in ordered] + [("all", rows)]:
        n = len(members)
        out[name] = {
            "count": n,
            "mean": sum(r["score"] for r in members) / n if n else 0.0,
            "accuracy": sum(r["score"] >= 1.0 for r in members) / n if n else 0.0,
            "errors": sum(r["status"] == "error" for r in members),
            "timeouts": sum(r["status"] == "timeout" for r in members),
        }
    return out


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    """The summary as a fixed-width table.

    >>> print(format_summary({"all": {"count": 2, "mean": 0.5, "accuracy": 0.5, "errors": 0, "timeouts": 1}}))
    domain       count    mean  accuracy  errors  timeouts
    all              2  0.5000    0.5000       0         1
    """
    lines = [f"{'domain':<12}{'count':>6}{'mean':>8}{'accuracy':>10}{'errors':>8}{'timeouts':>10}"]
    for name, s in summary.items():
        lines.append(f"{name:<12}{s['count']:>6}{s['mean']:>8.4f}{s['accuracy']:>10.4f}"
                     f"{s['errors']:>8}{s['timeouts']:>10}")
    return "\n".join(lines)


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``prorl score``."""
    parser.add_argument("file", metavar="FILE.jsonl", help="rows of problem + response(s); see docs/data.md")
    parser.add_argument("--out", default=None, help="output JSONL (default: FILE.scored.jsonl)")
    parser.add_argument("--workers", type=int, default=2, help="verifier worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds allowed per response before it scores 0 as a timeout (default 30)")


def main_score(args: argparse.Namespace) -> int:
    """Score every response of ``args.file``, write the scored rows, print the per-domain table; 0 on success."""
    from prorl.verifiers.pool import ScoringPool

    items = read_scoring_input(args.file)
    pairs = [(line, sample, problem, response)
             for line, problem, responses in items for sample, response in enumerate(responses)]
    out_path = Path(args.out) if args.out else default_out_path(args.file)
    scored: list[dict] = []
    with ScoringPool(args.workers, timeout_s=args.timeout) as pool, open(out_path, "w", encoding="utf-8") as out:
        for start in range(0, len(pairs), CHUNK):
            chunk = pairs[start:start + CHUNK]
            verdicts = pool.score_batch([p for _, _, p, _ in chunk], [r for _, _, _, r in chunk])
            for (line, sample, problem, _), verdict in zip(chunk, verdicts):
                row = {"id": problem.id, "domain": problem.domain, "line": line, "sample": sample,
                       "score": verdict.score, "reason": verdict.reason, "status": verdict.status}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                scored.append(row)
            out.flush()
    print(format_summary(summarize(scored)))
    print(f"wrote {len(scored)} scored responses to {out_path}")
    return 0

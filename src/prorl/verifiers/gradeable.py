"""Can a problem be graded? The checks ``prorl data check`` and ``prorl train`` run before any sampling.

The loaders (:mod:`prorl.data.adapters`) check a row's shape; these checks ask each domain's verifier
whether it can grade the problem at all, so that a run does not find out as score-0 samples:

- math: the ground truth parses with math-verify;
- stem: the ground truth is one option letter (A-J) or one number (a trailing unit allowed);
- code: the tests are well formed (inputs and outputs of equal, non-zero length; ``fn_name`` an identifier);
- logic: the Reasoning Gym task exists and the entry is an object;
- instruction: every instruction id is known and its kwargs are valid for it.

:func:`why_ungradeable` returns ``"field 'X': why"`` or None. Plain Python: no torch.

>>> from prorl.data.schema import Problem
>>> why_ungradeable(Problem("m", "math", "?", answer="2")) is None
True
>>> why_ungradeable(Problem("s", "stem", "?", answer="B or C"))
"field 'answer': expected one option letter (A-J) or one number, got 'B or C'"
"""

from __future__ import annotations

from prorl.data.schema import Problem
from prorl.errors import DataError


def why_ungradeable(problem: Problem) -> str | None:
    """Why ``problem``'s verifier cannot grade it (naming the field), or None when it can."""
    from prorl.verifiers import CUSTOM

    if problem.domain in CUSTOM:
        return None  # a user's scorer: it judges its own problems
    check = _CHECKS.get(problem.domain)
    if check is None:
        return f"field 'domain': no verifier for {problem.domain!r}"
    return check(problem)


def _math(problem: Problem) -> str | None:
    from prorl.verifiers.math import _parse_gold, _timeouts

    try:
        _parse_gold(str(problem.answer), _timeouts()[0])
    except ValueError:
        return f"field 'answer': math-verify cannot parse {problem.answer!r}"
    return None


def _stem(problem: Problem) -> str | None:
    from prorl.verifiers.stem import LETTERS, _numeric_truth

    truth = (problem.answer or "").strip()
    if (len(truth) == 1 and truth.upper() in LETTERS) or _numeric_truth(truth) is not None:
        return None
    return f"field 'answer': expected one option letter (A-J) or one number, got {truth!r}"


def _code(problem: Problem) -> str | None:
    from prorl.verifiers.code import _check_tests

    why = _check_tests(problem.tests)
    return f"field 'tests': {why}" if why else None


def _logic(problem: Problem) -> str | None:
    from reasoning_gym.factory import DATASETS

    task = problem.metadata.get("task")
    if task not in DATASETS:
        return f"field 'metadata.task': {task!r} is not a Reasoning Gym task"
    if not isinstance(problem.metadata.get("entry"), dict):
        return "field 'metadata.entry': expected the Reasoning Gym entry (an object)"
    return None


def _instruction(problem: Problem) -> str | None:
    from prorl.verifiers.instructions import validate_metadata

    try:
        validate_metadata(problem.metadata)
    except DataError as exc:
        return str(exc)
    return None


_CHECKS = {"math": _math, "stem": _stem, "code": _code, "logic": _logic, "instruction": _instruction}

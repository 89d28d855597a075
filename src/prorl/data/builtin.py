"""Built-in synthetic problems: short arithmetic with exact answers, for the embedded demo and tests.

Answers use the math domain's format (``\\boxed{N}``) so the real math verifier scores them. The
kinds form a ladder: a small model warm-started on the easy rungs can reach the next ones with RL.

>>> p = make_problems("add", 2, seed=0)[0]
>>> p.domain, p.prompt.endswith("="), p.answer.isdigit()
('math', True, True)
"""

from __future__ import annotations

import random

from prorl.data.schema import Problem

# kind -> (description, operand generator). Operands are drawn uniformly from the given ranges.
KINDS = {
    "add": "one-digit + one-digit",
    "sub": "one-digit - one-digit, non-negative result",
    "add21": "two-digit + one-digit",
    "add3": "one-digit + one-digit + one-digit",
    "add22": "two-digit + two-digit",
}


def _operands(kind: str, rng: random.Random) -> list[int]:
    if kind == "add":
        return [rng.randrange(10), rng.randrange(10)]
    if kind == "sub":
        a, b = rng.randrange(10), rng.randrange(10)
        return [max(a, b), min(a, b)]
    if kind == "add21":
        return [rng.randrange(10, 100), rng.randrange(10)]
    if kind == "add3":
        return [rng.randrange(10), rng.randrange(10), rng.randrange(10)]
    if kind == "add22":
        return [rng.randrange(10, 100), rng.randrange(10, 100)]
    raise ValueError(f"unknown built-in problem kind {kind!r}; expected one of {', '.join(KINDS)}")


def make_problem(kind: str, operands: list[int], index: int = 0) -> Problem:
    op = "-" if kind == "sub" else "+"
    expr = op.join(str(x) for x in operands)
    value = operands[0] - operands[1] if kind == "sub" else sum(operands)
    return Problem(
        id=f"{kind}-{index}-{expr}", domain="math", prompt=f"{expr}=", answer=str(value),
        metadata={"task": kind}, source="builtin",
    )


def make_problems(kind: str, count: int, *, seed: int, exclude: set[str] | None = None) -> list[Problem]:
    """``count`` problems of one kind, drawn with ``seed``; prompts in ``exclude`` are skipped when the
    kind has enough distinct problems (held-out sets exclude the training prompts this way)."""
    rng = random.Random(f"{kind}:{seed}")
    exclude = exclude or set()
    out: list[Problem] = []
    attempts = 0
    while len(out) < count:
        problem = make_problem(kind, _operands(kind, rng), len(out))
        attempts += 1
        if problem.prompt in exclude and attempts < 50 * count:
            continue
        out.append(problem)
    return out


def solution_text(problem: Problem) -> str:
    """The supervised target for warm-starting: just the boxed answer."""
    return f"\\boxed{{{problem.answer}}}"

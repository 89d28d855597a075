"""Built-in synthetic problems: short arithmetic with exact answers, for the embedded demo and tests.

Answers use the math domain's format (``\\boxed{N}``) so the real math verifier scores them. The
kinds form a ladder: a small model warm-started on the easy rungs can reach the next ones with RL.

Held-out split: a fixed quarter of every kind's prompts (by a CRC-32 of the prompt text, so the same
on every machine and run) is never used for training. ``split="train"`` draws only outside it,
``split="heldout"`` only inside it. The one-digit kinds are small (``add`` has 100 prompts, 26
held out; ``sub`` 55, 13 held out), so a held-out set of them is small too; draws without a split
would cover a whole kind in a few hundred problems.

>>> p = make_problems("add", 2, seed=0)[0]
>>> p.domain, p.prompt.endswith("="), p.answer.isdigit()
('math', True, True)
"""

from __future__ import annotations

import random
import zlib

from prorl.data.schema import Problem

HELDOUT_BUCKETS = 4
"""One prompt in this many (by CRC-32) is held out."""

# kind -> (description, operand generator). Operands are drawn uniformly from the given ranges.
KINDS = {
    "add": "one-digit + one-digit",
    "sub": "one-digit - one-digit, non-negative result",
    "add21": "two-digit + one-digit",
    "add3": "one-digit + one-digit + one-digit",
    "add22": "two-digit + two-digit",
    "add12": "one-digit + two-digit (add21's operands in the other order)",
}


def parse_builtin(spec: str) -> list[tuple[str, int]]:
    """``data.builtin``'s value as (kind, weight) pairs: ``"add,add3:3"`` trains on add3 three times as often.

    Raises ``ValueError`` naming the first entry that is not ``KIND`` or ``KIND:W`` (W an integer >= 1).

    >>> parse_builtin("add, sub,add3:3")
    [('add', 1), ('sub', 1), ('add3', 3)]
    """
    out = []
    for entry in (e.strip() for e in str(spec).split(",")):
        if not entry:
            continue
        kind, _, weight = entry.partition(":")
        kind = kind.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown built-in problem kind {kind!r}; expected one of {', '.join(KINDS)}")
        if weight and not (weight.strip().isdigit() and int(weight) >= 1):
            raise ValueError(f"{entry!r}: the weight after ':' must be an integer >= 1")
        out.append((kind, int(weight) if weight else 1))
    if not out:
        raise ValueError("no kinds given")
    return out


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
    if kind == "add12":
        return [rng.randrange(10), rng.randrange(10, 100)]
    raise ValueError(f"unknown built-in problem kind {kind!r}; expected one of {', '.join(KINDS)}")


def make_problem(kind: str, operands: list[int], index: int = 0) -> Problem:
    op = "-" if kind == "sub" else "+"
    expr = op.join(str(x) for x in operands)
    value = operands[0] - operands[1] if kind == "sub" else sum(operands)
    return Problem(
        id=f"{kind}-{index}-{expr}", domain="math", prompt=f"{expr}=", answer=str(value),
        metadata={"task": kind}, source="builtin",
    )


def is_heldout(prompt: str) -> bool:
    """True for the prompts of the held-out quarter.

    >>> sum(is_heldout(f"{a}+{b}=") for a in range(10) for b in range(10))
    26
    """
    return zlib.crc32(prompt.encode()) % HELDOUT_BUCKETS == 0


def make_problems(kind: str, count: int, *, seed: int, split: str = "all", distinct: bool = False,
                  exclude: set[str] | None = None) -> list[Problem]:
    """``count`` problems of one kind, drawn with ``seed``.

    split: "train" (never a held-out prompt), "heldout" (only held-out prompts) or "all".
    distinct: no prompt twice; then fewer than ``count`` come back when the split has fewer.
    exclude: prompts never to return.

    >>> len(make_problems("sub", 50, seed=0, split="heldout", distinct=True))
    13
    >>> any(is_heldout(p.prompt) for p in make_problems("add", 500, seed=0, split="train"))
    False
    """
    if split not in ("all", "train", "heldout"):
        raise ValueError(f"split must be 'all', 'train' or 'heldout', got {split!r}")
    rng = random.Random(f"{kind}:{seed}")
    skip = set(exclude or ())
    out: list[Problem] = []
    misses = 0
    while len(out) < count and misses < 10_000:  # a run of 10,000 rejected draws: the split is used up
        problem = make_problem(kind, _operands(kind, rng), len(out))
        wanted = split == "all" or is_heldout(problem.prompt) == (split == "heldout")
        if not wanted or problem.prompt in skip:
            misses += 1
            continue
        misses = 0
        out.append(problem)
        if distinct:
            skip.add(problem.prompt)
    return out


def solution_text(problem: Problem) -> str:
    """The supervised target for warm-starting: just the boxed answer."""
    return f"\\boxed{{{problem.answer}}}"

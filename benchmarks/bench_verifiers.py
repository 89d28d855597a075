"""Throughput of the math verifier: in-process, and through the scoring pool.

Run: ``.venv/bin/python benchmarks/bench_verifiers.py [--items 600] [--repeats 3] [--workers 2]``

Prints math verifications per second for a fixed mix of right and wrong ``\\boxed{}`` answers
(integers and fractions; a quarter written differently from the ground truth, e.g. ``0.5`` for
``\\frac{1}{2}``), as the median of ``repeats`` alternated runs (timings on a shared machine swing):

- in-process: :func:`prorl.verifiers.safe_score` in a loop (one core);
- pool: :meth:`ScoringPool.score_batch` with ``workers`` processes, after a warm-up batch (worker
  start and math-verify import are not counted; the ground-truth cache is warm in both modes).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from prorl.data.schema import Problem
from prorl.verifiers import safe_score
from prorl.verifiers.pool import ScoringPool


def make_items(count: int, seed: int = 0) -> tuple[list[Problem], list[str]]:
    """``count`` (problem, response) pairs: half right, half wrong; integers and fractions."""
    rng = random.Random(seed)
    problems, responses = [], []
    for i in range(count):
        if i % 2 == 0:
            value = rng.randrange(1, 1000)
            truth, right, wrong = str(value), str(value), str(value + rng.randrange(1, 9))
        else:
            a, b = rng.randrange(1, 50), rng.randrange(51, 100)
            truth, right, wrong = f"\\frac{{{a}}}{{{b}}}", f"\\frac{{{2 * a}}}{{{2 * b}}}", f"\\frac{{{b}}}{{{a}}}"
            if i % 4 == 1:
                right = repr(a / b) if len(repr(a / b)) < 8 else right  # a decimal form when it is exact enough
        answer = right if rng.random() < 0.5 else wrong
        problems.append(Problem(id=f"bench-{i}", domain="math", prompt="?", answer=truth))
        responses.append(f"Reasoning... so the result is \\boxed{{{answer}}}.")
    return problems, responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    problems, responses = make_items(args.items)

    in_process, pooled = [], []
    with ScoringPool(args.workers, timeout_s=30.0) as pool:
        warm = pool.score_batch(problems[:50], responses[:50])  # start workers, import math-verify
        for p, r in zip(problems[:50], responses[:50]):
            safe_score(p, r)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            local = [safe_score(p, r) for p, r in zip(problems, responses)]
            in_process.append(args.items / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            remote = pool.score_batch(problems, responses)
            pooled.append(args.items / (time.perf_counter() - t0))
        assert [v.score for v in local] == [v.score for v in remote], "pool and in-process disagree"
        assert all(v.status == "ok" for v in warm + remote)
    correct = sum(v.score for v in local)
    print(f"{args.items} math items ({correct:.0f} right), {args.repeats} repeats, median (min-max):")
    print(f"  in-process:          {statistics.median(in_process):8.1f} /s  "
          f"({min(in_process):.1f}-{max(in_process):.1f})")
    print(f"  pool, {args.workers} workers:     {statistics.median(pooled):8.1f} /s  "
          f"({min(pooled):.1f}-{max(pooled):.1f})")


if __name__ == "__main__":
    main()

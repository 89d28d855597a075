"""Throughput of the sandbox and the code verifier, and where a sandboxed run spends its time.

Run: ``.venv/bin/python benchmarks/bench_sandbox.py [--runs 200] [--concurrency 2]``

Prints:
- trivial executions per second: ``print(1)`` through ``sandbox.run_python``, ``concurrency`` threads;
- code-verifier problems per second: a 3-test stdin problem (a + b), same concurrency;
- a breakdown of one run (sequential medians): Python start-up alone, bwrap around /bin/true,
  cgroup create + remove, and the full sandboxed ``print(1)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from prorl.data.schema import Problem
from prorl.verifiers import code, sandbox

PROBLEM = Problem(
    id="bench-add",
    domain="code",
    prompt="Print the sum of two integers.",
    tests={"inputs": ["1 2\n", "3 4\n", "10 -5\n"], "outputs": ["3\n", "7\n", "5\n"]},
)
RESPONSE = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"


def rate(fn, runs: int, concurrency: int) -> float:
    """Calls per second of ``fn`` over ``runs`` calls on ``concurrency`` threads (after 4 warm-up calls)."""
    for _ in range(4):
        fn()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: fn(), range(runs)))
    return runs / (time.perf_counter() - start)


def median_ms(fn, repeats: int = 30) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def check_trivial() -> None:
    r = sandbox.run_python("print(1)")
    assert r.stdout == b"1\n", r


def check_problem() -> None:
    v = code.score(PROBLEM, RESPONSE)
    assert v.score == 1.0, v


def cgroup_cycle() -> None:
    setup = sandbox._get_setup()
    if setup.cgroup is not None:
        sandbox._RunCgroup(setup.cgroup, 1024, 66).remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="executions per measurement")
    parser.add_argument("--concurrency", type=int, default=2, help="threads issuing runs at once")
    args = parser.parse_args()

    # Wall-clock rates fall with whatever else runs on the machine: the load average is printed beside them.
    # (CPU-time accounting cannot replace them: rusage does not see processes reaped inside bwrap's pid namespace.)
    print(f"isolation: {sandbox.isolation()}   cores: {os.cpu_count()}   python: {sys.version.split()[0]}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    trivial = rate(check_trivial, args.runs, args.concurrency)
    print(f"trivial print(1): {trivial:.1f} executions/s (concurrency {args.concurrency}, {args.runs} runs)")
    problems = rate(check_problem, args.runs // 2, args.concurrency)
    print(f"code verifier, 3-test stdin problem: {problems:.1f} problems/s (concurrency {args.concurrency})")

    print(f"load average after: {os.getloadavg()[0]:.2f}")
    base_python = sandbox._python_argv(False)
    setup = sandbox._get_setup()
    print("where one sequential run spends its time (median ms):")
    print(f"  python -I -c pass, no sandbox     {median_ms(lambda: subprocess.run([*base_python, '-c', 'pass'])):6.1f}")
    print(f"  cgroup create + remove            {median_ms(cgroup_cycle):6.2f}")
    print(f"  sandbox.run(['/bin/true'])        {median_ms(lambda: sandbox.run(['/bin/true'])):6.1f}")
    if setup.bwrap:
        bare = [setup.bwrap, "--ro-bind", "/", "/", "--unshare-all", "--", "/bin/true"]
        print(f"  bare bwrap /bin/true              {median_ms(lambda: subprocess.run(bare)):6.1f}")
    print(f"  sandbox.run_python('print(1)')    {median_ms(check_trivial):6.1f}")
    print(f"  code.score(3-test problem)        {median_ms(check_problem):6.1f}")


if __name__ == "__main__":
    main()

"""Throughput of the sandbox and the code verifier, and where a sandboxed run spends its time.

Run: ``.venv/bin/python benchmarks/bench_sandbox.py [--runs 200] [--concurrency 2]``

Prints:
- trivial executions per second: ``print(1)`` through ``sandbox.run_python``, ``concurrency`` threads;
- code-verifier problems per second: a 3-test stdin problem (a + b), same concurrency;
- CPU time per execution and per problem, all processes included (cgroup v1 cpuacct, where writable),
  and the rate two idle cores would allow: robust to other work on the machine;
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
from prorl.verifiers.sandbox import cgroup, command, probe

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


class CpuMeter:
    """CPU time of this process and all its descendants, sandboxed ones included, from a cgroup v1 cpuacct group.

    Wall-clock rates fall with whatever else runs on the machine; CPU time per run barely moves, and
    ``2 cores / CPU per run`` is the rate two idle cores would allow. rusage cannot do this: it does not
    see processes reaped inside bwrap's pid namespace. Kernel work in kernel threads (e.g. tearing down
    network namespaces) is not counted, so the derived rate is an upper bound. None where unavailable.
    """

    def __init__(self) -> None:
        self.path = None
        own = dict(line.split(":", 2)[1:] for line in open("/proc/self/cgroup").read().splitlines())
        parent = os.path.normpath(f"/sys/fs/cgroup/cpuacct/{own.get('cpuacct', own.get('cpu,cpuacct', '/'))}")
        path = os.path.join(parent, f"prorl-bench-{os.getpid()}")
        try:
            os.mkdir(path)
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            self.path, self.parent = path, parent
        except OSError:
            pass

    def ns(self) -> int:
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read())

    def close(self) -> None:
        if self.path:
            with open(os.path.join(self.parent, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            os.rmdir(self.path)


def cpu_ms_per_call(meter: CpuMeter, fn, calls: int) -> float:
    """CPU milliseconds per call of ``fn`` (all processes involved), sequentially."""
    fn()
    before = meter.ns()
    for _ in range(calls):
        fn()
    return (meter.ns() - before) / 1e6 / calls


def check_trivial() -> None:
    r = sandbox.run_python("print(1)")
    assert r.stdout == b"1\n", r


def check_problem() -> None:
    v = code.score(PROBLEM, RESPONSE)
    assert v.score == 1.0, v


def cgroup_cycle() -> None:
    setup = probe._get_setup()
    if setup.cgroup is not None:
        cgroup._RunCgroup(setup.cgroup, 1024, 66).remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="executions per measurement")
    parser.add_argument("--concurrency", type=int, default=2, help="threads issuing runs at once")
    args = parser.parse_args()

    # Wall-clock rates fall with whatever else runs on the machine: the load average is printed beside them,
    # and CPU time per run (load-robust) after them.
    print(f"isolation: {sandbox.isolation()}   cores: {os.cpu_count()}   python: {sys.version.split()[0]}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    trivial = rate(check_trivial, args.runs, args.concurrency)
    print(f"trivial print(1): {trivial:.1f} executions/s (concurrency {args.concurrency}, {args.runs} runs)")
    problems = rate(check_problem, args.runs // 2, args.concurrency)
    print(f"code verifier, 3-test stdin problem: {problems:.1f} problems/s (concurrency {args.concurrency})")

    print(f"load average after: {os.getloadavg()[0]:.2f}")
    meter = CpuMeter()
    if meter.path:
        try:
            trivial_cpu = cpu_ms_per_call(meter, check_trivial, 100)
            problem_cpu = cpu_ms_per_call(meter, check_problem, 50)
            parts = {
                "sandbox.run(['/bin/true'])": lambda: sandbox.run(["/bin/true"]),
                "python -I -c pass, no sandbox": lambda: subprocess.run([*command._python_argv(False), "-c", "pass"]),
                "python -I -S -c pass, no sandbox": lambda: subprocess.run([*command._python_argv(False), "-S", "-c", "pass"]),
            }  # fmt: skip
            part_cpu = {name: cpu_ms_per_call(meter, fn, 50) for name, fn in parts.items()}
        finally:
            meter.close()
        print(f"CPU per trivial execution: {trivial_cpu:.1f} ms -> at most {2000 / trivial_cpu:.0f}/s on 2 idle cores")
        print(f"CPU per 3-test problem:    {problem_cpu:.1f} ms -> at most {2000 / problem_cpu:.0f}/s on 2 idle cores")
        for name, ms in part_cpu.items():
            print(f"  CPU {name:34s} {ms:6.1f} ms")
    base_python = command._python_argv(False)
    setup = probe._get_setup()
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

"""Tests of prorl.verifiers.code, from tables: right, wrong, partial, unparseable, crashing, slow, adversarial."""

from __future__ import annotations

import dataclasses
import secrets
import textwrap
import time

import pytest

from prorl.data.schema import Problem
from prorl.verifiers import code as code_verifier
from prorl.verifiers import sandbox

ADD = {"inputs": ["1 2\n", "3 4\n", "10 -5\n"], "outputs": ["3\n", "7\n", "5\n"]}
"""A stdin problem: print the sum of two integers."""
ADD_CALL = {"fn_name": "add", "inputs": [[1, 2], [3, 4], [10, -5]], "outputs": [3, 7, 5]}
"""The same problem, call-based."""
HALF = {"inputs": ["1\n", "3\n"], "outputs": ["0.5\n", "1.5000000\n"]}
"""A float problem: print n / 2."""


def problem(tests: dict) -> Problem:
    return Problem(id="t", domain="code", prompt="", tests=tests)


def block(source: str, tag: str = "python") -> str:
    """A response whose answer is one fenced code block."""
    return f"Here is my solution.\n```{tag}\n{textwrap.dedent(source).strip()}\n```\n"


STDIN_RIGHT = block("a, b = map(int, input().split())\nprint(a + b)")

CASES = [
    # (name, tests, response, expected score, reason contains)
    ("stdin right", ADD, STDIN_RIGHT, 1.0, "passed 3/3 tests"),
    ("stdin right, untagged fence", ADD, block("a, b = map(int, input().split())\nprint(a + b)", tag=""), 1.0,
     "passed 3/3"),
    ("stdin right, trailing spaces and blank lines", ADD,
     block("a, b = map(int, input().split())\nprint(a + b, '  ')\nprint()\nprint()"), 1.0, "passed 3/3"),
    ("stdin right via sys.stdin and sys.exit(0) after printing", ADD,
     block("import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\nsys.exit(0)"), 1.0, "passed 3/3"),
    ("last block counts", ADD, block("print('draft')") + STDIN_RIGHT, 1.0, "passed 3/3"),
    ("earlier right block does not count", ADD, STDIN_RIGHT + block("print(0)"), 0.0, "passed 0/3"),
    ("float within tolerance", HALF, block("print(int(input()) / 2 + 1e-9)"), 1.0, "passed 2/2"),
    ("float outside tolerance", HALF, block("print(int(input()) / 2 + 1e-3)"), 0.0, "passed 0/2"),
    ("wrong", ADD, block("a, b = map(int, input().split())\nprint(a - b)"), 0.0, "test 1: wrong answer"),
    ("partial: only the first test wrong, the rest still run", ADD,
     block("a, b = map(int, input().split())\nprint(a + b if a != 1 else 0)"), 2 / 3, "passed 2/3 tests; test 1"),
    ("runtime error in one test", ADD,
     block("a, b = map(int, input().split())\nprint(a + b if a != 3 else 1 // 0)"), 2 / 3,
     "test 2: ZeroDivisionError"),
    ("main() in a thread with a big stack, not joined", ADD,
     block("import sys, threading\ndef main():\n    a, b = map(int, input().split())\n    print(a + b)\n"
           "threading.stack_size(1 << 26)\nsys.setrecursionlimit(10 ** 6)\nthreading.Thread(target=main).start()"),
     1.0, "passed 3/3"),
    ("deep recursion crash in one test", ADD,
     block("import sys\nsys.setrecursionlimit(10 ** 9)\ndef f(n):\n    return f(n + 1)\n"
           "a, b = map(int, input().split())\nprint(f(0) if a == 10 else a + b)"), 2 / 3, "test 3:"),
    ("non-zero exit counts as an error", ADD, block("import sys\nprint(3)\nsys.exit(2)"), 0.0, "SystemExit: 2"),
    ("no code block", ADD, "The answer is a + b.", 0.0, "no code block"),
    ("unclosed code block", ADD, "```python\nprint(3)\n", 0.0, "no code block"),
    ("another language only", ADD, block("int main() { return 0; }", tag="cpp"), 0.0, "no code block"),
    ("syntax error", ADD, block("a = (1,\nprint(a"), 0.0, "syntax error: line"),
    ("syntax error reports the line", ADD, block("x = 1\ny = = 2"), 0.0, "syntax error: line 2"),
    ("call: top-level function", ADD_CALL, block("def add(a, b):\n    return a + b"), 1.0, "passed 3/3"),
    ("call: Solution method", ADD_CALL,
     block("class Solution:\n    def add(self, a, b):\n        return a + b"), 1.0, "passed 3/3"),
    ("call: expected wrapped in a one-element list",
     {"fn_name": "pair", "inputs": [[1], [2]], "outputs": [[[1, 1]], [[2, 2]]]},
     block("def pair(x):\n    return (x, x)"), 1.0, "passed 2/2"),
    ("call: float tolerance", {"fn_name": "half", "inputs": [[1]], "outputs": [0.5]},
     block("def half(x):\n    return x / 2 + 1e-9"), 1.0, "passed 1/1"),
    ("call: wrong", ADD_CALL, block("def add(a, b):\n    return a * b"), 0.0, "wrong answer"),
    ("call: main block does not run", ADD_CALL,
     block("def add(a, b):\n    return a + b\nif __name__ == '__main__':\n    input()"), 1.0, "passed 3/3"),
    ("call: missing function", ADD_CALL, block("def plus(a, b):\n    return a + b"), 0.0, "NameError"),
    ("call: returns nothing printable as expected", ADD_CALL, block("def add(a, b):\n    print(a + b)"), 0.0,
     "wrong answer"),
]  # fmt: skip


@pytest.mark.parametrize("name, tests, response, expected, reason", CASES, ids=[c[0] for c in CASES])
def test_score_table(name, tests, response, expected, reason):
    verdict = code_verifier.score(problem(tests), response)
    assert verdict.score == pytest.approx(expected, abs=1e-12), verdict
    assert reason in verdict.reason
    assert verdict.status == "ok"


HANGS_ON_THREE = block(
    """
    a, b = map(int, input().split())
    while a == 3:  # the second test never ends
        pass
    print(a + b)
    """
)


def test_running_past_the_total_limit_scores_zero_as_in_the_paper():
    start = time.monotonic()
    verdict = code_verifier.score(problem(ADD), HANGS_ON_THREE, timeout_s=1.0)
    elapsed = time.monotonic() - start
    assert verdict.score == 0.0
    assert verdict.reason.startswith("over the 1 s limit; passed 1/3 tests; test 2: timeout"), verdict.reason
    assert elapsed < 1.0 + 1.5  # the budget plus start-up, never the sandbox's slack on top of a hang


def test_partial_on_timeout_keeps_the_results_of_tests_that_finished():
    verdict = code_verifier.score(problem(ADD), HANGS_ON_THREE, timeout_s=1.0, partial_on_timeout=True)
    assert verdict.score == pytest.approx(1 / 3, abs=1e-12)
    assert verdict.reason.startswith("passed 1/3 tests; test 2: timeout"), verdict.reason


def test_the_budget_is_for_the_whole_problem_not_each_test():
    # Each test sleeps 0.4 s: three fit in 1.5 s, six do not.
    six = {"inputs": ["1 1\n"] * 6, "outputs": ["2\n"] * 6}
    response = block("import time\ntime.sleep(0.4)\na, b = map(int, input().split())\nprint(a + b)")
    verdict = code_verifier.score(problem(six), response, timeout_s=1.5, partial_on_timeout=True)
    assert 0 < verdict.score < 1 and "timeout" in verdict.reason
    assert code_verifier.score(problem(six), response, timeout_s=1.5).score == 0.0


def test_the_problem_can_set_its_own_time_limit():
    # Three tests of 0.4 s each: over a 0.6 s limit given by the problem, within the default 5 s.
    three = {"inputs": ["1 1\n"] * 3, "outputs": ["2\n"] * 3}
    response = block("import time\ntime.sleep(0.4)\na, b = map(int, input().split())\nprint(a + b)")
    assert code_verifier.score(problem(three), response).score == 1.0
    tight = dataclasses.replace(problem(three), metadata={"time_limit_s": 0.6})
    verdict = code_verifier.score(tight, response)
    assert verdict.score == 0.0 and "over the 0.6 s limit" in verdict.reason


# ---------------------------------------------------------------------------------------------
# Adversarial responses


def secret_problem() -> tuple[Problem, str]:
    """A problem whose expected output cannot be computed from its input: only a leak could pass it."""
    token = "LEAK-" + secrets.token_hex(8)
    return problem({"inputs": ["x\n", "y\n"], "outputs": [token + "\n", token + "\n"]}), token


ADVERSARIAL = [
    ("prints a fake all-passed marker", "print('passed 2/2 tests')\nprint('ALL TESTS PASSED')\nprint('Verdict(1.0)')"),
    ("forges harness records without the delimiter",
     "import json\nfor i in range(2):\n    print(json.dumps({'i': i, 'status': 'ok', 'stdout': 'anything'}))"),
    ("writes records to the harness's stdout through /proc", """
        import os, json
        for i in range(2):
            record = json.dumps({"i": i, "status": "ok", "stdout": "forged", "result": "forged"})
            try:
                fd = os.open(f"/proc/{os.getppid()}/fd/1", os.O_WRONLY)
                os.write(fd, b"@@" + record.encode() + b"\\n")
            except OSError:
                pass
        """),
    ("searches files, environment and other processes for the expected output", """
        import os, re, stat
        found = set()
        pattern = re.compile(rb"LEAK-[0-9a-f]{16}")
        paths = [f"/proc/{p}/{n}" for p in os.listdir("/proc") if p.isdigit() for n in ("cmdline", "environ")]
        for root in ("/sandbox", "/tmp", "/dev/shm", "."):
            for dirpath, dirnames, filenames in os.walk(root):
                paths += [os.path.join(dirpath, name) for name in filenames]
        for path in paths:
            try:
                if stat.S_ISREG(os.stat(path).st_mode):  # never block on a pipe or device
                    with open(path, "rb") as f:
                        found.update(pattern.findall(f.read(1 << 20)))
            except Exception:
                pass
        for token in found:
            print(token.decode())
        """),
    ("exits with status 0 before printing (os._exit)", "import os\nos._exit(0)\nprint('never')"),
    ("exits with status 0 before printing (sys.exit)", "import sys\nsys.exit(0)\nprint('never')"),
    ("kills the harness", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
    ("kills everything it can", "import os\nos.kill(-1, 9)"),
]  # fmt: skip


@pytest.mark.parametrize("name, source", ADVERSARIAL, ids=[a[0] for a in ADVERSARIAL])
def test_adversarial_responses_score_zero(name, source):
    if ("/proc" in source or "kill" in source) and not sandbox.isolation().startswith("bwrap"):
        pytest.skip("without namespaces the code can see, and signal, the trainer's own processes")
    secret, token = secret_problem()
    verdict = code_verifier.score(secret, block(source), timeout_s=3.0)
    assert verdict.score == 0.0, verdict
    assert verdict.status == "ok"


def test_the_leak_search_finds_what_is_in_the_sandbox():
    # Control for the search above: when the token IS in the sandbox (as the input), the search finds it.
    token = "LEAK-" + secrets.token_hex(8)
    leaky = problem({"inputs": [token + "\n"], "outputs": [token + "\n"]})
    source = dict(ADVERSARIAL)["searches files, environment and other processes for the expected output"]
    assert code_verifier.score(leaky, block(source), timeout_s=3.0).score == 1.0


def test_the_expected_output_never_enters_the_sandbox(monkeypatch):
    secret, token = secret_problem()
    seen = []
    real_run_python = sandbox.run_python

    def spy(source, **kwargs):
        seen.append((source, kwargs))
        return real_run_python(source, **kwargs)

    monkeypatch.setattr(sandbox, "run_python", spy)
    code_verifier.score(secret, block("print(input())"))
    (source, kwargs), = seen
    everything = source.encode() + kwargs["stdin"] + b"".join(
        v.encode() if isinstance(v, str) else v for v in kwargs["files"].values()
    )
    assert token.encode() not in everything


# ---------------------------------------------------------------------------------------------
# Bad problems and the comparison rules


@pytest.mark.parametrize(
    "tests, reason",
    [
        (None, "no tests"),
        ({"inputs": ["1"]}, "'inputs' and 'outputs'"),
        ({"inputs": [], "outputs": []}, "empty"),
        ({"inputs": ["1", "2"], "outputs": ["1"]}, "2 inputs but 1 outputs"),
        ({"inputs": ["1"], "outputs": ["1"], "fn_name": "not valid"}, "not a Python identifier"),
    ],
)
def test_unusable_tests_give_an_error_verdict_not_an_exception(tests, reason):
    verdict = code_verifier.score(Problem("bad-1", "code", "", tests=tests), STDIN_RIGHT)
    assert (verdict.score, verdict.status) == (0.0, "error")
    assert "bad-1" in verdict.reason and reason in verdict.reason


@pytest.mark.parametrize(
    "produced, expected, match",
    [
        ("3\n", "3", True),
        ("3   \n\n\n", "3\n", True),
        ("1 2\n3 4", "1 2 \n3 4\n", True),
        ("  3", "3", True),  # token rule: leading spaces do not matter either
        ("1 2", "1\n2", True),  # token rule ignores line structure
        ("0.3333333", "0.333333333", True),
        ("1.0000001", "1", True),  # one side non-integer: tolerance applies
        ("1.01", "1", False),
        ("1000000000000000000001", "1000000000000000000000", False),  # integers are exact
        ("3", "", False),
        ("", "3", False),
        ("YES", "yes", False),
        ("nan", "nan", True),  # equal text
        ("1 2 3", "1 2", False),
    ],
)
def test_stdout_comparison_rule(produced, expected, match):
    assert code_verifier.stdout_matches(produced, expected) is match


@pytest.mark.parametrize(
    "response, code",
    [
        ("```python\nx = 1\n```", "x = 1\n"),
        ("```py\nx = 1\n```\ntext\n```python3\ny = 2\n```", "y = 2\n"),
        ("```Python\nx = 1\n```", "x = 1\n"),
        ("```python title=sol.py\nx = 1\n```", "x = 1\n"),
        ("```python\nx = 1\n```\n```cpp\nint x;\n```", "x = 1\n"),
        ("no fence", None),
        ("```\n```", None),  # an empty fence has no body line
        ("```python\nx = 1\n```\n```python\n\n```", "x = 1\n"),  # blank blocks are skipped
    ],
)
def test_extract_code(response, code):
    assert code_verifier.extract_code(response) == code


def test_the_verifier_and_the_sandbox_never_import_torch():
    import subprocess
    import sys

    check = "import sys, prorl.verifiers.code, prorl.verifiers.sandbox; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout == "False\n"

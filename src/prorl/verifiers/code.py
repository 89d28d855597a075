"""The code verifier: run the response's last code block on the problem's tests, reward = fraction passed.

Tests use the APPS / TACO / PRIME (Eurus-2-RL) format ``{"inputs": [...], "outputs": [...], "fn_name": ...}``:

- Without ``fn_name`` (stdin mode) each input is the program's standard input and each output the expected
  standard output. The program runs as ``__main__``. An input or output given as a list of lines is
  joined with newlines.
- With ``fn_name`` (call mode) each input is the list of arguments (a non-list is one argument) for a call
  of ``fn_name``: a top-level function, or else a method of a top-level ``Solution`` class (LeetCode
  style), called on a fresh ``Solution()``. The module runs as ``__solution__``, so an
  ``if __name__ == "__main__":`` block does not run. Data sets sometimes wrap the expected return value in
  a one-element list (``[[1, 2]]`` for ``[1, 2]``; APPS does this): a return value passes when it equals
  the expected value or, when that is a one-element list, its only element. The price of accepting both:
  where the right answer really is a one-element list ``[y]``, returning ``y`` also passes.

How it runs (one sandbox execution per problem, for throughput): the code is compiled here first
(compiling is safe, executing is not) so a syntax error costs no sandbox run. Then a small harness runs
in :mod:`prorl.verifiers.sandbox` and, for every test input, forks a child that runs the candidate with
that input as stdin (or calls the function) and its stdout captured in a file; the harness reports each
produced output as one line (a Python literal, read back here with ``ast.literal_eval``; return values
travel as JSON text) behind a random per-run delimiter. Expected outputs never enter the
sandbox: this (trusted) process compares. A fork per test means each test starts from a fresh interpreter
state, and a crash, ``os._exit`` or ``sys.exit`` in one test touches only that test.

Forgery: the candidate cannot produce a passing result other than by producing the right output. Its
stdout is a file, not the channel the harness reports on; a process that reached the harness's stdout
(e.g. through ``/proc``) could write records, but records carry only outputs, never verdicts, and the
harness's own record for a test comes after the candidate's run and wins. So a forged record holds
nothing the program could not have printed itself. The delimiter keeps stray text out of the parser.

Time: ``timeout_s`` (default: the problem's ``metadata["time_limit_s"]``, else 5 s) is the budget for
running all tests, measured by the harness from its start (the interpreter's start-up is not charged).
A test still running at the budget is killed. As in the paper, a program that runs past the total
budget scores 0 (reason "... timeout"), even if some tests had passed before; with
``partial_on_timeout=True`` the tests that finished keep their results and only the rest fail. The
sandbox's own deadline is one second later, in case the harness itself is stuck.

Comparison (stdin mode): both texts are normalised by stripping trailing whitespace on every line and
trailing blank lines; equal texts pass. Otherwise they are split into whitespace-separated tokens; they
pass when there are as many tokens and each pair is equal as text or, where either is written as a
non-integer number (``0.5``, ``1e-3``), both parse as floats within ``abs <= 1e-6`` or
``rel <= 1e-6``. Integers compare exactly. Case matters ("YES" != "yes").
Comparison (call mode): the return value goes through JSON (tuples become lists, sets sorted lists);
values are equal when of the same shape with equal leaves, floats within the same tolerance.

Known limits: only Python is run (a block tagged with another language is ignored); special judges
(several right answers) are not supported. The last fenced block is taken from the response as given:
through :func:`prorl.verifiers.score` that is the text after the last ``</think>``
(:func:`prorl.text.answer_region`), so a block written only inside the reasoning is not run.

>>> from prorl.data.schema import Problem
>>> p = Problem("add", "code", "Add two numbers.", tests={"inputs": ["1 2\\n", "5 5\\n"], "outputs": ["3\\n", "10\\n"]})
>>> score(p, "```python\\na, b = map(int, input().split())\\nprint(a + b)\\n```")
Verdict(score=1.0, reason='passed 2/2 tests', status='ok')
>>> score(p, "I think the answer is 3.")
Verdict(score=0.0, reason='no code block', status='ok')
"""

from __future__ import annotations

import ast
import json
import marshal
import math
import re
import secrets
import warnings
from typing import Any

from prorl.data.schema import Problem
from prorl.verifiers import sandbox
from prorl.verifiers.verdict import Verdict

FLOAT_TOLERANCE = 1e-6
"""Absolute and relative tolerance for numbers written as non-integers."""
MAX_OUTPUT_PER_TEST = 1 << 20
"""Bytes of a test's stdout kept by the harness; more is cut (and will not match)."""
_SANDBOX_GRACE_S = 1.0
"""Extra wall-clock time the sandbox grants beyond the test budget: interpreter start-up and reporting."""
_PYTHON_TAGS = {"", "python", "python3", "py", "py3"}

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)```", re.DOTALL)

# The harness runs inside the sandbox: it reads its settings from stdin, runs every test in a forked child,
# and writes one record per test to fd 1. It never sees expected outputs.
HARNESS = r'''
import marshal, os, select, sys, time  # kept small: every import here is paid once per problem

cfg = marshal.loads(sys.stdin.buffer.read())  # written by the trusted parent
# The exchange files live in the private working directory (under bwrap /tmp is private too, but in the
# fallbacks it is the host's, shared by concurrent runs).
io_dir = os.path.join(os.getcwd(), ".harness")
os.mkdir(io_dir)
IN_PATH, OUT_PATH, ERR_PATH, RESULT_PATH = (os.path.join(io_dir, n) for n in ("in", "out", "err", "result"))
start = time.monotonic()
deadline = start + cfg["budget_s"]
delim = cfg["delimiter"].encode()
fn_name = cfg["fn_name"]
cap = cfg["max_output"]
with open("solution.py", encoding="utf-8") as f:
    code = compile(f.read(), "solution.py", "exec")
sys.stdin.close()
if fn_name:
    import json


def emit(record):
    os.write(1, delim + repr(record).encode("utf-8", "replace") + b"\n")


def to_json(value):
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    return repr(value)


def child(i, args):
    # The candidate's stdin, stdout and stderr are files; the harness's stdout is closed in the child.
    for fd, path, flags in ((0, IN_PATH, os.O_RDONLY), (1, OUT_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, ERR_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        new = os.open(path, flags, 0o600)
        os.dup2(new, fd)
        os.close(new)
    sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
    status = 0
    try:
        g = {"__name__": "__solution__" if fn_name else "__main__", "__builtins__": __builtins__}
        exec(code, g)
        if fn_name:
            if callable(g.get(fn_name)):
                fn = g[fn_name]
            elif isinstance(g.get("Solution"), type) and hasattr(g["Solution"], fn_name):
                fn = getattr(g["Solution"](), fn_name)
            else:
                raise NameError(f"no function {fn_name!r} and no Solution.{fn_name}")
            result = json.dumps(fn(*args), default=to_json)
            with open(RESULT_PATH, "w") as f:
                f.write(result)
    except SystemExit as e:
        if e.code not in (None, 0):
            print(f"SystemExit: {e.code}", file=sys.stderr)
            status = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    try:  # as the interpreter does at exit: wait for non-daemon threads (solutions often run main() in a
        # thread to get a bigger stack), then run atexit handlers
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os._exit(status)


def wait(pid):
    """Wait for pid until the deadline; returns the wait status, or None after killing it at the deadline."""
    try:  # a pidfd wakes us the moment the child exits; polling is the fallback for old kernels
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    delay = 0.0005
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return None
            if fd is not None:
                select.select([fd], [], [], left)
            else:
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.005)
    finally:
        if fd is not None:
            os.close(fd)


def tail(path, limit=120):
    try:
        with open(path, "rb") as f:
            text = f.read()[-4096:].decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return text.splitlines()[-1][:limit] if text else ""


for i, test_input in enumerate(cfg["inputs"]):
    if time.monotonic() >= deadline:
        break
    for path in (RESULT_PATH, OUT_PATH, ERR_PATH):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    with open(IN_PATH, "w", encoding="utf-8") as f:
        f.write("" if fn_name else test_input)
    pid = os.fork()
    if pid == 0:
        try:
            child(i, test_input if fn_name else None)
        finally:
            os._exit(1)
    status = wait(pid)
    record = {"i": i}
    if status is None:
        record["status"] = "timeout"
    elif os.WIFSIGNALED(status):
        record["status"] = "error"
        record["error"] = f"killed by signal {os.WTERMSIG(status)}"
    elif os.WEXITSTATUS(status) != 0:
        record["status"] = "error"
        record["error"] = tail(ERR_PATH) or f"exit status {os.WEXITSTATUS(status)}"
    else:
        record["status"] = "ok"
    try:
        with open(OUT_PATH, "rb") as f:
            record["stdout"] = f.read(cap).decode("utf-8", "replace")
    except OSError:
        record["stdout"] = ""
    if fn_name and record["status"] == "ok":
        try:
            with open(RESULT_PATH, encoding="utf-8") as f:
                record["result_json"] = f.read(cap)
        except OSError:
            record["status"], record["error"] = "error", "no return value"
    emit(record)
'''


def extract_code(response: str) -> str | None:
    """The last fenced Python (or untagged) code block in ``response`` with a non-blank body, or None.

    >>> extract_code("a\\n```python\\nx = 1\\n```\\nb\\n```\\nprint(2)\\n```")
    'print(2)\\n'
    >>> extract_code("```cpp\\nint main(){}\\n```") is None
    True
    """
    blocks = [body for tag, body in _FENCE.findall(response) if tag.lower() in _PYTHON_TAGS and body.strip()]
    return blocks[-1] if blocks else None


def _as_text(value: Any) -> str:
    """A stdin input or expected stdout as text: lists of lines are joined with newlines."""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def _normalise(text: str) -> str:
    """Strip trailing whitespace on each line and trailing blank lines."""
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def _is_non_integer_number(token: str) -> bool:
    """True for tokens such as ``0.5``, ``1e-3``, ``inf`` that float() parses and int() does not."""
    try:
        float(token)
    except ValueError:
        return False
    try:
        int(token)
    except ValueError:
        return True
    return False


def _close(a: float, b: float) -> bool:
    """Floats equal within FLOAT_TOLERANCE (absolute or relative)."""
    return math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)


def stdout_matches(produced: str, expected: str) -> bool:
    """The stdin-mode comparison rule (see the module docstring).

    >>> stdout_matches("3  \\n\\n", "3")
    True
    >>> stdout_matches("0.3333333", "0.333333333")
    True
    >>> stdout_matches("10", "10.0000001"), stdout_matches("1 2", "1\\n2"), stdout_matches("YES", "yes")
    (True, True, False)
    >>> stdout_matches("1000001", "1000000")
    False
    """
    if _normalise(produced) == _normalise(expected):
        return True
    got, want = produced.split(), expected.split()
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if g == w:
            continue
        if not (_is_non_integer_number(g) or _is_non_integer_number(w)):
            return False
        try:
            if not _close(float(g), float(w)):
                return False
        except ValueError:
            return False
    return True


def values_match(produced: Any, expected: Any) -> bool:
    """Call-mode equality: same JSON shape, equal leaves, floats within tolerance.

    >>> values_match([1, 2.0000000001], [1, 2]), values_match({"a": [1]}, {"a": [2]}), values_match(1, "1")
    (True, False, False)
    """
    if isinstance(produced, bool) or isinstance(expected, bool):
        return produced == expected and isinstance(produced, bool) == isinstance(expected, bool)
    if isinstance(produced, (int, float)) and isinstance(expected, (int, float)):
        if isinstance(produced, int) and isinstance(expected, int):
            return produced == expected
        return _close(float(produced), float(expected))
    if isinstance(produced, list) and isinstance(expected, list):
        return len(produced) == len(expected) and all(values_match(p, e) for p, e in zip(produced, expected))
    if isinstance(produced, dict) and isinstance(expected, dict):
        return produced.keys() == expected.keys() and all(values_match(produced[k], expected[k]) for k in produced)
    return produced == expected


def _result_matches(produced: Any, expected: Any) -> bool:
    """Call mode: the value itself, or the value the data set wrapped in a one-element list."""
    if values_match(produced, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and values_match(produced, expected[0])


def _check_tests(tests: Any) -> str:
    """Why ``tests`` is unusable, or "" when it is fine."""
    if not isinstance(tests, dict):
        return "problem has no tests"
    inputs, outputs = tests.get("inputs"), tests.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        return "tests need 'inputs' and 'outputs' lists"
    if not inputs:
        return "tests are empty"
    if len(inputs) != len(outputs):
        return f"tests have {len(inputs)} inputs but {len(outputs)} outputs"
    fn_name = tests.get("fn_name")
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        return f"fn_name {fn_name!r} is not a Python identifier"
    return ""


def _call_args(test_input: Any) -> list[Any]:
    """Call-mode arguments: a list is the argument list; anything else is a single argument."""
    return test_input if isinstance(test_input, list) else [test_input]


def _loads(text: Any) -> Any:
    """A call-mode return value from its JSON text; a marker that matches nothing when unreadable."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return _UNREADABLE


_UNREADABLE = object()


def parse_records(stdout: bytes, delimiter: str) -> dict[int, dict[str, Any]]:
    """The harness's records by test index; the last record for an index wins (see module docstring).

    >>> parse_records(b'noise\\n@@{"i": 0, "status": "ok"}\\n@@{"i": 0, "status": "error"}\\n@@{bad\\n', "@@")
    {0: {'i': 0, 'status': 'error'}}
    """
    records: dict[int, dict[str, Any]] = {}
    prefix = delimiter.encode()
    for line in stdout.split(b"\n"):
        if not line.startswith(prefix):
            continue
        try:
            record = ast.literal_eval(line[len(prefix) :].decode("utf-8", "replace"))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("i"), int):
            records[record["i"]] = record
    return records


DEFAULT_TIME_LIMIT_S = 5.0
"""Total time for all tests of a problem when neither the caller nor ``metadata["time_limit_s"]`` sets one."""


def score(problem: Problem, response: str, *, timeout_s: float | None = None, memory_mb: int = 1024,
          partial_on_timeout: bool = False) -> Verdict:
    """Reward = fraction of ``problem.tests`` the last code block in ``response`` passes.

    problem: a code problem; ``problem.tests`` in the APPS/TACO/PRIME format.
    response: the model's full response text.
    timeout_s: time budget for running all tests of this problem (None: ``metadata["time_limit_s"]``
        of the problem, else :data:`DEFAULT_TIME_LIMIT_S`).
    memory_mb: memory limit for the whole run (all tests).
    partial_on_timeout: when the budget runs out, keep the tests that passed before it (default: the
        paper's rule, score 0).

    Never raises for anything the response contains; a problem with unusable tests gives score 0 with
    status "error", and so does a sandbox that cannot start.
    """
    problem_error = _check_tests(problem.tests)
    if problem_error:
        return Verdict(0.0, f"problem {problem.id}: {problem_error}", "error")
    code = extract_code(response)
    if code is None:
        return Verdict(0.0, "no code block")
    try:
        with warnings.catch_warnings():  # invalid escape sequences etc.: not worth a log line per sample
            warnings.simplefilter("ignore")
            compile(code, "solution.py", "exec")
    except SyntaxError as e:
        return Verdict(0.0, f"syntax error: line {e.lineno}")
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return Verdict(0.0, f"syntax error: {type(e).__name__}")

    if timeout_s is None:
        timeout_s = _time_limit(problem)
    tests = problem.tests
    assert tests is not None
    fn_name = tests.get("fn_name")
    inputs = [_call_args(x) if fn_name else _as_text(x) for x in tests["inputs"]]
    delimiter = "@@" + secrets.token_hex(16) + "@@"
    config = {
        "budget_s": timeout_s,
        "delimiter": delimiter,
        "fn_name": fn_name,
        "inputs": inputs,
        "max_output": MAX_OUTPUT_PER_TEST,
    }
    try:
        harness_input = marshal.dumps(config)
    except ValueError as e:  # e.g. a numpy array among the inputs
        return Verdict(0.0, f"problem {problem.id}: test inputs are not plain JSON values: {e}", "error")
    try:
        result = sandbox.run_python(
            HARNESS,
            stdin=harness_input,
            files={"solution.py": code},
            timeout_s=timeout_s + _SANDBOX_GRACE_S,
            memory_mb=memory_mb,
            # A record's text is at most 4x its bytes (repr escapes); the total is bounded all the same.
            max_output_bytes=min(len(inputs) * (4 * MAX_OUTPUT_PER_TEST + 4096), 64 << 20),
        )
    except OSError as e:
        return Verdict(0.0, f"sandbox error: {e}", "error")

    records = parse_records(result.stdout, delimiter)
    n = len(inputs)
    passed = 0
    first_problem = ""
    out_of_time = result.timed_out
    for i, expected in enumerate(tests["outputs"]):
        record = records.get(i)
        if record is None:
            ok, why = False, f"test {i + 1}: not reached ({n - i} not run)"
        elif record.get("status") == "timeout":
            ok, why = False, f"test {i + 1}: timeout"
        elif record.get("status") != "ok":
            ok, why = False, f"test {i + 1}: {record.get('error', 'error')}"
        elif fn_name:
            ok, why = _result_matches(_loads(record.get("result_json")), expected), f"test {i + 1}: wrong answer"
        else:
            ok, why = stdout_matches(str(record.get("stdout", "")), _as_text(expected)), f"test {i + 1}: wrong answer"
        passed += ok
        if not ok and not first_problem:
            first_problem = why
        if record is not None and record.get("status") == "timeout":
            out_of_time = True
        if record is None or record.get("status") == "timeout":
            break  # later tests were not reached either; they fail
    reason = f"passed {passed}/{n} tests"
    if first_problem:
        reason += f"; {first_problem}"
    if passed < n and out_of_time and "timeout" not in reason:
        reason += "; timeout"
    if out_of_time and not partial_on_timeout:
        return Verdict(0.0, f"over the {timeout_s:g} s limit; {reason}")
    return Verdict(passed / n, reason)


def _time_limit(problem: Problem) -> float:
    """``metadata["time_limit_s"]`` when it is a positive number, else :data:`DEFAULT_TIME_LIMIT_S`."""
    value = problem.metadata.get("time_limit_s")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_TIME_LIMIT_S

"""Logic verifier: Reasoning Gym tasks, scored by each task's own scorer on the last ``<answer>`` text.

Problems come from :func:`prorl.data.reasoning_gym.build_problems` (or from Reasoning Gym JSONL
through :func:`prorl.data.adapters.from_reasoning_gym`). ``problem.metadata`` holds what scoring
needs: ``task`` (the Reasoning Gym dataset name), ``entry`` (the generated entry, after a JSON round
trip) and, optionally, ``config`` (the task settings the scorer is rebuilt with); see
:mod:`prorl.data.reasoning_gym`.

Scoring (:func:`score`): the text inside the LAST ``<answer>...</answer>`` of the response, stripped
(none: 0, ``"no <answer> tag"``), goes to the task's ``score_answer(answer, entry)``. The score is
continuous in [0, 1] as the task defines it (many tasks give 0.01 or 0.05 for a well-formed wrong
answer). ``binarize=True`` gives 1.0 only for a task score ``>= 1.0`` (exactly the tasks' "correct")
and 0.0 otherwise. The response is read as given: :func:`prorl.verifiers.score` has already cut it
to the text after the last ``</think>`` (:func:`prorl.text.answer_region`), so an ``<answer>``
inside the reasoning is not read there.

Status: ``"error"`` means a verifier fault only. Model text the task's scorer cannot grade is a
wrong answer: when the scorer raises on the answer (``prime_factorization`` given "I don't know"
raises ``ValueError``), or the isolated scorer process dies while scoring it (killed for memory, a
signal), the verdict is ``Verdict(0.0, "ungradeable answer: <what>")`` with status ``"ok"``. It is a
fault of ours, and raises (an error verdict through :func:`prorl.verifiers.safe_score` and the pool),
when the metadata is broken, the task is unknown or its settings are bad (the scorer cannot be
built), or the scorer fails on the problem's own reference answer too (:func:`reference_answer`:
checked only after a failure on the model's text; for a process that died, by a second isolated
run). Limit: a task with no reference answer (``graph_color``, ``rush_hour``, ...) cannot be checked
that way, and a scorer that raises on everything there shows up as ungradeable answers.

Three departures from calling the scorer directly:

- :data:`RISKY_TASKS` evaluate the model's text as Python (``eval``) or with
  ``sympy.parse_expr`` (which calls ``eval`` too and computes ``9**9**9**9`` for ever), or expand
  a repetition count from it. Their scorer runs in a separate process with a hard deadline
  (:data:`ISOLATED_TIMEOUT_S`), always through :func:`prorl.verifiers.sandbox.run_python` with
  ``site_packages=True``: the one sandbox, at the strongest isolation the machine offers (its own
  weaker levels, down to ``"rlimit-only"``, are announced there; see :mod:`prorl.verifiers.sandbox`).
  A scorer past its deadline gives ``Verdict(0, "scorer timeout after Xs", status="timeout")``; a
  process that dies before its scorer is built (an import failure) is a verifier fault.
  Cost: ~3 s per scoring on this machine (a fresh interpreter imports Reasoning Gym).
- ``game_of_life_halting``: its scorer returns ``bool(answer) == bool(entry["answer"])``; both are
  non-empty strings, so ANY non-empty answer scores 1.0. This adapter scores it against the ground
  truth instead: 1.0 when the answer equals ``entry["answer"]`` (``"True"`` / ``"False"``) ignoring
  case and surrounding spaces, else 0.0.
- ``arc_agi`` and ``rearc`` compare the parsed board with ``metadata["output"]`` as a tuple of
  tuples, which a JSON round trip turns into lists; :data:`ENTRY_FIXES` restores the tuples.

>>> from prorl.data.reasoning_gym import build_problems
>>> [p] = build_problems(["basic_arithmetic"], size=1, seed=0, split="train")
>>> p.domain, p.metadata["task"]
('logic', 'basic_arithmetic')
>>> score(p, f"<answer>{p.answer}</answer>")
Verdict(score=1.0, reason='correct', status='ok')
>>> score(p, "I think it is 3").reason
'no <answer> tag'
>>> [q] = build_problems(["prime_factorization"], size=1, seed=0, split="train")
>>> score(q, "<answer>I don't know</answer>").status
'ok'
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from typing import Callable

from prorl.data.schema import Problem
from prorl.text import last_tag
from prorl.verifiers import sandbox
from prorl.verifiers.verdict import Verdict

RISKY_TASKS = {
    "countdown": "sympy.parse_expr(answer): evaluates the text; 9**9**9**9 never returns",
    "puzzle24": "sympy.parse_expr(answer): evaluates the text; 9**9**9**9 never returns",
    "polynomial_multiplication": "sympy.parse_expr(answer)",
    "simple_integration": "sympy.parse_expr(answer), then sympy.simplify",
    "intermediate_integration": "sympy.parse_expr(answer), then sympy.simplify",
    "string_insertion": "eval(answer) when the answer is not the exact string",
    "spiral_matrix": "eval(answer) on some answers",
    "binary_matrix": "eval(answer) on some answers",
    "n_queens": "eval(answer) on some answers",
    "rubiks_cube": "expands move repetition counts: 'R999999999' builds a list of a billion moves",
}
"""Tasks whose scorer runs isolated with a deadline, and why (read from reasoning_gym 0.1.25's source)."""

ISOLATED_TIMEOUT_S = 15.0
"""Wall-clock seconds for one isolated scoring, interpreter start and Reasoning Gym import included (~3 s)."""

ISOLATED_MEMORY_MB = 2048
"""Memory for one isolated scoring."""


@functools.lru_cache(maxsize=256)
def _scorer(task: str, config_json: str):
    """The task's ``score_answer``, built once per process with the problem's task settings."""
    import reasoning_gym

    config = json.loads(config_json)
    if not config:
        return reasoning_gym.get_score_answer_fn(task)
    return reasoning_gym.create_dataset(task, size=1, seed=0, **config).score_answer


def _board_as_tuples(entry: dict) -> dict:
    """``entry`` with ``metadata["output"]`` as a tuple of tuples, the type the ARC scorers compare with."""
    output = entry["metadata"]["output"]
    return {**entry, "metadata": {**entry["metadata"], "output": tuple(tuple(row) for row in output)}}


ENTRY_FIXES = {
    "arc_agi": _board_as_tuples,
    "rearc": _board_as_tuples,
}
"""Tasks whose scorer compares with a tuple field that JSON turns into a list: restored before scoring
(found by the round-trip test over every task; without it the right answer scores 0.05)."""


def _grader(task: str, config: dict, entry: dict) -> Callable[[str], float]:
    """``answer -> score`` for one problem, with our fixes applied. Raises on a verifier fault
    (unknown task, bad settings, an entry the fixes cannot read): nothing of the model's is used here."""
    if task == "game_of_life_halting":
        truth = str(entry["answer"]).strip().lower()
        return lambda answer: float(answer.strip().lower() == truth)
    if task in ENTRY_FIXES:
        entry = ENTRY_FIXES[task](entry)
    scorer = _scorer(task, json.dumps(config, sort_keys=True))
    return lambda answer: float(scorer(answer, entry))


def task_score(task: str, config: dict, answer: str, entry: dict) -> float:
    """The task's own score for ``answer`` (in this process; no isolation), with our fixes applied."""
    return _grader(task, config, entry)(answer)


def reference_answer(problem: Problem) -> str | None:
    """The answer the scorer is checked with when it raises on model text: ``problem.answer``, else
    ``entry["answer"]``; None when the task has none (some tasks accept many answers)."""
    if problem.answer is not None:
        return problem.answer
    entry = problem.metadata.get("entry") or {}
    return None if entry.get("answer") is None else str(entry["answer"])


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _ungradeable(what: str) -> Verdict:
    """Model text the scorer cannot grade: a wrong answer (status ok), not a verifier fault."""
    return Verdict(0.0, f"ungradeable answer: {what}")


# Self-contained: the sandbox mounts site-packages (Reasoning Gym) but not this source tree.
# It reports on stdout with lines "PRORL_<KIND> <nonce> <payload>": READY once the scorer is built
# (what fails after it fails on the model's answer), then SCORE <value>, or UNGRADEABLE <why> (the
# scorer raised on the answer, not on the reference) or FAULT <why> (on the reference too). The
# nonce is fresh per run and kept in a local, so text the scorer evaluates cannot forge a report
# by printing one; only the last report counts.
_ISOLATED_SOURCE = """
import json, sys
def main():
    job = json.loads(sys.stdin.read())
    nonce = job.pop("nonce")
    def report(kind, payload=""):
        sys.stdout.write("\\nPRORL_" + kind + " " + nonce + " " + payload + "\\n")
        sys.stdout.flush()
    def describe(exc):
        return json.dumps(type(exc).__name__ + ": " + " ".join(str(exc).split())[:200])
    import reasoning_gym
    if job["config"]:
        scorer = reasoning_gym.create_dataset(job["task"], size=1, seed=0, **job["config"]).score_answer
    else:
        scorer = reasoning_gym.get_score_answer_fn(job["task"])
    report("READY")
    try:
        value = float(scorer(job.pop("answer"), job["entry"]))
    except Exception as exc:
        kind, what = "UNGRADEABLE", describe(exc)
        if job["reference"] is not None:
            try:
                float(scorer(job["reference"], job["entry"]))
            except Exception as ref_exc:
                kind, what = "FAULT", describe(ref_exc)
        report(kind, what)
    else:
        report("SCORE", repr(value))
main()
"""


def _isolated_run(task: str, config: dict, answer: str, entry: dict, timeout_s: float,
                  reference: str | None) -> tuple[str, str]:
    """One isolated scoring: ``("score", value)``, ``("ungradeable", why)``, ``("killed", why)``
    (died after the scorer was built, i.e. on the answer: memory, a signal) or ``("timeout", "")``.
    Raises RuntimeError for a verifier fault: the process died before its scorer was built, or the
    scorer raised on the reference answer too."""
    nonce = secrets.token_hex(16)
    job = json.dumps({"task": task, "config": config, "answer": answer, "entry": entry,
                      "reference": reference, "nonce": nonce}).encode()
    result = sandbox.run_python(_ISOLATED_SOURCE, stdin=job, timeout_s=timeout_s, memory_mb=ISOLATED_MEMORY_MB,
                                site_packages=True, files=None)
    if result.timed_out:
        return "timeout", ""
    returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
    reports = re.findall(rb"\nPRORL_(READY|SCORE|UNGRADEABLE|FAULT) " + nonce.encode() + rb" ([^\n]*)\n", stdout)
    kind, payload = reports[-1] if reports else (b"", b"")
    kind, payload = kind.decode().lower(), payload.decode("utf-8", "replace")
    if returncode == 0 and kind == "score":
        return kind, payload
    if returncode == 0 and kind in ("ungradeable", "fault"):
        what = json.loads(payload)
        if kind == "fault":
            raise RuntimeError(f"isolated {task} scorer fails on the reference answer too: {what}")
        return kind, what
    tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    if any(k == b"READY" for k, _ in reports):
        return "killed", f"isolated scorer died (exit {returncode}): {tail[0][:200]}"
    raise RuntimeError(f"isolated {task} scorer failed (exit {returncode}): {tail[0][:200]}")


def _isolated_score(task: str, config: dict, answer: str, entry: dict, timeout_s: float,
                    reference: str | None = None) -> float | Verdict | None:
    """``task_score`` in a separate process: the score; a Verdict for an ungradeable answer; None
    when it passed ``timeout_s``. A process that dies while scoring the answer (killed for memory, a
    signal) is scored once more with the reference answer: when that run fails too, the fault is ours
    (RuntimeError), otherwise the answer is ungradeable."""
    kind, what = _isolated_run(task, config, answer, entry, timeout_s, reference)
    if kind == "timeout":
        return None
    if kind == "score":
        return float(what)
    if kind == "killed" and reference is not None:
        check, _ = _isolated_run(task, config, reference, entry, timeout_s, None)
        if check != "score":
            raise RuntimeError(f"isolated {task} scorer fails on the reference answer too ({check}): {what}")
    return _ungradeable(what)


def score(problem: Problem, response: str, *, binarize: bool = False,
          isolated_timeout_s: float = ISOLATED_TIMEOUT_S) -> Verdict:
    """The task's score for the last ``<answer>`` of ``response``; binary with ``binarize`` (1.0 iff >= 1.0)."""
    task = problem.metadata.get("task")
    entry = problem.metadata.get("entry")
    if not isinstance(task, str) or not isinstance(entry, dict):
        raise ValueError(f"logic problem {problem.id!r}: metadata needs 'task' (a name) and 'entry' (an object)")
    config = problem.metadata.get("config") or {}
    answer = last_tag(response, "answer")
    if answer is None:
        return Verdict(0.0, "no <answer> tag")
    if task in RISKY_TASKS:
        value = _isolated_score(task, config, answer, entry, isolated_timeout_s, reference_answer(problem))
        if value is None:
            return Verdict(0.0, f"scorer timeout after {isolated_timeout_s:g}s", status="timeout")
        if isinstance(value, Verdict):
            return value
    else:
        grade = _grader(task, config, entry)  # raises on a verifier fault, before any model text is read
        try:
            value = grade(answer)
        except Exception as exc:  # noqa: BLE001 - the scorer choked on the model's text, or is broken
            reference = reference_answer(problem)
            if reference is not None:
                try:
                    grade(reference)
                except Exception as ref_exc:  # noqa: BLE001 - fails on our own answer: our fault
                    raise RuntimeError(f"{task} scorer fails on the reference answer too: "
                                       f"{_describe(ref_exc)}") from exc
            return _ungradeable(_describe(exc))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{task} scorer returned {value!r}, outside [0, 1]")
    if binarize:
        value = 1.0 if value >= 1.0 else 0.0
    if value >= 1.0:
        return Verdict(1.0, "correct")
    shown = " ".join(answer.split())[:80]
    return Verdict(value, f"wrong: got {shown}" if value == 0.0 else f"partial {value:.3g}: got {shown}")

"""Math verifier: the last ``\\boxed{}`` of the response, compared with the ground truth by math-verify.

Rules:

- The response is read as given: :func:`prorl.verifiers.score` has already cut it to its answer
  region (:func:`prorl.text.answer_region`, the text after the last ``</think>``).
- The answer is the content of the LAST ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched, so
  ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``. An unclosed box counts as no box.
- Both sides are wrapped in ``\\boxed{}`` before ``math_verify.parse``: math-verify does not parse a
  bare ground truth such as ``\\frac{1}{2}`` reliably (it returns an empty list without an error).
- ``math_verify.verify(gold, answer)``: binary reward. Reasons: ``"correct"``, ``"wrong: got X"``,
  ``"no \\boxed{} answer"``, ``"unparseable answer"`` (math-verify found no expression, only its
  raw-string fallback). A missing ground truth, or one that gives nothing at all, raises
  ``ValueError`` (a data problem: the pool turns it into an error verdict, counted in metrics).

Threads: math-verify bounds its own parse / verify time with ``signal.alarm``, which works only in a
process's main thread. Called from any other thread, this module disables math-verify's timeout
(``parsing_timeout=None``, ``timeout_seconds=None``) and a pathological answer can then run
unbounded: scoring from threads is unsupported except under an outer deadline, such as the
:class:`prorl.verifiers.pool.ScoringPool` worker's, whose workers call this from their main thread.
In-process scoring (``ScoringPool(0)``) turns the limits off (:func:`without_time_limits`): it has no
deadlines by definition, and a wall-clock limit would make its verdicts depend on the machine's load.

>>> from prorl.data.schema import Problem
>>> p = Problem(id="m1", domain="math", prompt="Half of one?", answer="\\\\frac{1}{2}")
>>> score(p, "Maybe \\\\boxed{2}? No: it is \\\\boxed{0.5}.")
Verdict(score=1.0, reason='correct', status='ok')
>>> score(p, "It is \\\\boxed{\\\\frac{1}{3}}.").reason
'wrong: got \\\\frac{1}{3}'
"""

from __future__ import annotations

import contextlib
import functools
import threading

from prorl.data.schema import Problem
from prorl.text import last_boxed
from prorl.verifiers.verdict import Verdict

MATH_VERIFY_TIMEOUT_S = 5
"""Seconds math-verify may spend on one parse or one verify (main thread only, see the module doc)."""


_state = threading.local()


@contextlib.contextmanager
def without_time_limits():
    """math-verify's own wall-clock limits off in this thread: for in-process scoring
    (``ScoringPool(0)``), which promises no deadlines, so that its results never depend on how busy
    the machine is. Pool workers keep the limits, under the pool's own deadline."""
    previous = getattr(_state, "unlimited", False)
    _state.unlimited = True
    try:
        yield
    finally:
        _state.unlimited = previous


def _timeouts() -> tuple[int | None, int | None]:
    # signal.alarm exists only for the main thread; elsewhere math-verify would raise.
    if threading.current_thread() is threading.main_thread() and not getattr(_state, "unlimited", False):
        return MATH_VERIFY_TIMEOUT_S, MATH_VERIFY_TIMEOUT_S
    return None, None


@functools.lru_cache(maxsize=4096)
def _parse_gold(answer: str, parsing_timeout: int | None) -> tuple:
    # Ground truths repeat n times per prompt (n samples): parse each once per process.
    from math_verify import parse

    gold = parse(f"\\boxed{{{answer}}}", parsing_timeout=parsing_timeout)
    if not gold:
        raise ValueError(f"ground truth {answer!r} does not parse")
    return tuple(gold)


def score(problem: Problem, response: str) -> Verdict:
    """Binary reward: 1.0 when the last boxed answer equals ``problem.answer`` (or another of
    :func:`accepted_answers`) by math-verify."""
    from math_verify import parse, verify

    if problem.answer is None or not str(problem.answer).strip():
        raise ValueError(f"math problem {problem.id!r} has no answer")
    content = last_boxed(response)
    if content is None:
        return Verdict(0.0, "no \\boxed{} answer")
    parsing_timeout, verify_timeout = _timeouts()
    predicted = parse(f"\\boxed{{{content}}}", parsing_timeout=parsing_timeout) if content.strip() else []
    for answer in accepted_answers(problem):
        gold = _parse_gold(answer, parsing_timeout)
        if predicted and verify(list(gold), predicted, timeout_seconds=verify_timeout):
            return Verdict(1.0, "correct")
    # parse() falls back to the raw string when no expression comes out; a text ground truth may still
    # match that string (above), but for the reason a string-only parse means "unparseable".
    if not any(not isinstance(x, str) for x in predicted):
        return Verdict(0.0, "unparseable answer")
    return Verdict(0.0, f"wrong: got {_short(content)}")


def accepted_answers(problem: Problem) -> list[str]:
    """``problem.answer``, then any other acceptable answers the source listed (``metadata["answers"]``).

    >>> accepted_answers(Problem("m", "math", "?", answer="2", metadata={"answers": ["2", "two", 2.0]}))
    ['2', 'two', '2.0']
    """
    answers = [str(problem.answer)]
    extra = problem.metadata.get("answers") if isinstance(problem.metadata, dict) else None
    for item in extra if isinstance(extra, list) else []:
        if str(item).strip() and str(item) not in answers:
            answers.append(str(item))
    return answers


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."

"""Math verifier: the last ``\\boxed{}`` of the response, compared with the ground truth by math-verify.

Rules:

- Only the text after the last ``</think>`` is read when the response has one (the reasoning may
  try several answers; the final one counts).
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

>>> from prorl.data.schema import Problem
>>> p = Problem(id="m1", domain="math", prompt="Half of one?", answer="\\\\frac{1}{2}")
>>> score(p, "<think>maybe \\\\boxed{2}</think> It is \\\\boxed{0.5}.")
Verdict(score=1.0, reason='correct', status='ok')
>>> score(p, "It is \\\\boxed{\\\\frac{1}{3}}.").reason
'wrong: got \\\\frac{1}{3}'
"""

from __future__ import annotations

import functools
import threading

from prorl.data.schema import Problem
from prorl.verifiers.verdict import Verdict

MATH_VERIFY_TIMEOUT_S = 5
"""Seconds math-verify may spend on one parse or one verify (main thread only, see the module doc)."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def final_answer_region(response: str) -> str:
    """The text after the last ``</think>``, or the whole response when there is none.

    >>> final_answer_region("<think>a</think>b</think>c")
    'c'
    """
    head, sep, tail = response.rpartition("</think>")
    return tail if sep else response


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``, braces matched; None if none.

    >>> last_boxed("\\\\boxed{1} then \\\\boxed{\\\\frac{a}{b}}")
    '\\\\frac{a}{b}'
    >>> last_boxed("\\\\boxed{unclosed") is None
    True
    """
    starts = [i for cmd in _BOX_COMMANDS for i in _find_all(text, cmd)]
    for start in sorted(starts, reverse=True):
        content = _braced_after(text, start)
        if content is not None:
            return content
    return None


def _find_all(text: str, needle: str) -> list[int]:
    out, i = [], text.find(needle)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + 1)
    return out


def _braced_after(text: str, start: int) -> str | None:
    """The balanced ``{...}`` group that opens right after the command at ``start`` (spaces allowed)."""
    i = start + 1
    while i < len(text) and text[i].isalpha():  # skip the command name
        i += 1
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def _timeouts() -> tuple[int | None, int | None]:
    # signal.alarm exists only for the main thread; elsewhere math-verify would raise.
    if threading.current_thread() is threading.main_thread():
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
    """Binary reward: 1.0 when the last boxed answer equals ``problem.answer`` by math-verify."""
    from math_verify import parse, verify

    if problem.answer is None or not str(problem.answer).strip():
        raise ValueError(f"math problem {problem.id!r} has no answer")
    content = last_boxed(final_answer_region(response))
    if content is None:
        return Verdict(0.0, "no \\boxed{} answer")
    parsing_timeout, verify_timeout = _timeouts()
    gold = _parse_gold(str(problem.answer), parsing_timeout)
    predicted = parse(f"\\boxed{{{content}}}", parsing_timeout=parsing_timeout) if content.strip() else []
    if predicted and verify(list(gold), predicted, timeout_seconds=verify_timeout):
        return Verdict(1.0, "correct")
    # parse() falls back to the raw string when no expression comes out; a text ground truth may still
    # match that string (above), but for the reason a string-only parse means "unparseable".
    if not any(not isinstance(x, str) for x in predicted):
        return Verdict(0.0, "unparseable answer")
    return Verdict(0.0, f"wrong: got {_short(content)}")


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."

"""STEM verifier: multiple choice (option letters A-J) or a number within a relative tolerance. Binary.

Where the final answer is read (in the response as given: :func:`prorl.verifiers.score` has already
cut it to the text after the last ``</think>``, see :func:`prorl.text.answer_region`):

1. the content of the LAST ``\\boxed{...}`` / ``\\fbox{...}``, when the response has one;
2. otherwise the LAST phrase ``answer is X`` / ``answer is (X)`` / ``Answer: X`` (case-insensitive,
   ``The correct answer is`` included).

Multiple choice (``problem.answer`` is one letter A-J): the answer must start with an option
letter, optionally in parentheses (``B``, ``(B)``, ``B. neutron``). A lower-case letter counts
only when parenthesised or standing alone (``\\boxed{b}``, ``answer is (c)``), so that
"the answer is a neutron" is not read as option A. An answer naming several options
(``\\boxed{A, C}``, ``Answer: A or B``) scores 0 with reason ``"several options"``: listing every
option must not earn the reward.

Numeric (``problem.answer`` parses as a number, e.g. ``"80"``, ``"2.5e3"``, ``"1/2"``): the answer's
number (plain, ``a/b``, ``\\frac{a}{b}``, ``x \\times 10^{n}``; thousands separators and a trailing
unit ignored) must satisfy ``|got - want| <= rel_tol * |want|``; ``rel_tol`` is
:data:`DEFAULT_REL_TOL` (1e-2) unless ``problem.metadata["rel_tol"]`` sets it. Limit: with a ground
truth of exactly 0 only an exact 0 passes (a relative tolerance of 0 is 0). An answer holding
several numbers (``\\boxed{2, 3}``) scores 0 with reason ``"several numbers"``.

Reasons: ``"correct"``, ``"wrong: got X"``, ``"no answer found"``, ``"several options"``,
``"several numbers"``, ``"unparseable answer"``.

>>> from prorl.data.schema import Problem
>>> mc = Problem(id="s1", domain="stem", prompt="...", answer="B")
>>> score(mc, "Neutrons are neutral. The answer is (B).")
Verdict(score=1.0, reason='correct', status='ok')
>>> score(mc, "Answer: A or B").reason
'several options'
>>> score(Problem(id="s2", domain="stem", prompt="...", answer="80"), "\\\\boxed{79.5 km/h}").score
1.0
"""

from __future__ import annotations

import math
import re

from prorl.data.schema import Problem
from prorl.text import last_boxed
from prorl.verifiers.verdict import Verdict

DEFAULT_REL_TOL = 1e-2
"""Relative tolerance for numeric answers, unless ``problem.metadata["rel_tol"]`` overrides it."""

LETTERS = "ABCDEFGHIJ"
"""The option letters a multiple-choice answer may name."""

_PHRASE = re.compile(r"answer\s*(?:is|:)\s*:?", re.IGNORECASE)
_OPTION = re.compile(r"\s*(?:\\text\{\s*)?(\()?\s*([A-Ja-j])\s*(\))?\s*\}?(?![A-Za-z0-9])")
_SEPARATOR = re.compile(r"\s*(?:,|;|/|&|\band\b|\bor\b)\s*", re.IGNORECASE)
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"
_SCI = re.compile(rf"({_NUMBER})\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{{?\s*([-+]?\d+)\s*\}}?")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?[\d.]+)\s*\}\s*\{\s*([-+]?[\d.]+)\s*\}")
_SLASH = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)(?![\d.])")
_PLAIN = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\d])|(?<![\w.])[-+]?\.\d+")


def extract_final_answer(response: str) -> str | None:
    """The final-answer text: the last boxed content, else the text after the last "answer is"/"Answer:".

    >>> extract_final_answer("Answer: C\\nbecause")
    'C'
    >>> extract_final_answer("no verdict here") is None
    True
    """
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip()
    phrases = list(_PHRASE.finditer(response))
    if not phrases:
        return None
    tail = response[phrases[-1].end():].split("\n", 1)[0]
    return tail.strip().rstrip(".").strip()


def leading_options(answer: str) -> list[str]:
    """The option letters an answer starts with: ``"B. neutron"`` -> [B]; ``"A, C"`` -> [A, C].

    >>> leading_options("(b)"), leading_options("A or B"), leading_options("a neutron")
    (['B'], ['A', 'B'], [])
    """
    letters: list[str] = []
    pos = 0
    while True:
        m = _OPTION.match(answer, pos)
        if m is None:
            break
        parenthesised = bool(m.group(1) and m.group(3))
        rest = answer[m.end():].strip()
        if m.group(2).islower() and not parenthesised and rest and rest[0] not in ".,;)/&" and \
                not _SEPARATOR.match(answer, m.end()):
            break  # "a neutron": an article, not option A
        letters.append(m.group(2).upper())
        sep = _SEPARATOR.match(answer, m.end())
        if sep is None:
            break
        pos = sep.end()
    return letters


def parse_number(text: str) -> float | None:
    """A plain number, ``a/b``, ``\\frac{a}{b}`` or ``x \\times 10^{n}``; None when not a number.

    >>> parse_number("1/4"), parse_number("1,200 m"), parse_number("3 \\\\times 10^{8}")
    (0.25, 1200.0, 300000000.0)
    """
    numbers = numbers_in(text)
    return numbers[0] if len(numbers) == 1 else None


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (scientific and fraction forms each count once)."""
    text = text.replace("$", "").replace("{,}", ",").replace("\\!", "").replace("−", "-")
    found: list[float] = []
    for pattern, value in ((_SCI, lambda m: float(m.group(1) or 1) * 10.0 ** int(m.group(2))),
                           (_FRAC, lambda m: float(m.group(1)) / float(m.group(2))),
                           (_SLASH, lambda m: float(m.group(1)) / float(m.group(2)))):
        while (m := pattern.search(text)) is not None:
            try:
                found.append(value(m))
            except (ValueError, ZeroDivisionError, OverflowError):
                pass
            text = text[:m.start()] + " " + text[m.end():]
    for m in _PLAIN.finditer(text):
        try:
            found.append(float(m.group(0).replace(",", "")))
        except ValueError:
            pass
    return found


def _numeric_truth(answer: str) -> float | None:
    numbers = numbers_in(answer)  # a unit in the ground truth ("80 km/h") is allowed and ignored
    return numbers[0] if len(numbers) == 1 else None


def score(problem: Problem, response: str) -> Verdict:
    """Binary reward: the final answer names the right option, or is within ``rel_tol`` of the number."""
    truth = (problem.answer or "").strip()
    if not truth:
        raise ValueError(f"stem problem {problem.id!r} has no answer")
    final = extract_final_answer(response)
    if final is None:
        return Verdict(0.0, "no answer found")
    if len(truth) == 1 and truth.upper() in LETTERS:
        options = leading_options(final)
        if not options:
            return Verdict(0.0, "unparseable answer")
        if len(set(options)) > 1:
            return Verdict(0.0, "several options")
        if options[0] == truth.upper():
            return Verdict(1.0, "correct")
        return Verdict(0.0, f"wrong: got {options[0]}")
    want = _numeric_truth(truth)
    if want is None:
        raise ValueError(f"stem problem {problem.id!r}: answer {truth!r} is neither an option letter A-J nor a number")
    rel_tol = float(problem.metadata.get("rel_tol", DEFAULT_REL_TOL))
    numbers = numbers_in(final)
    if not numbers:
        return Verdict(0.0, "unparseable answer")
    if len(numbers) > 1:
        return Verdict(0.0, "several numbers")
    got = numbers[0]
    if math.isfinite(got) and abs(got - want) <= rel_tol * abs(want):
        return Verdict(1.0, "correct")
    return Verdict(0.0, f"wrong: got {final[:80]}")

"""STEM verifier: multiple choice (option letters A-J) or a number within a relative tolerance. Binary.

Where the final answer is read (in the response as given: :func:`prorl.verifiers.score` has already
cut it to the text after the last ``</think>``, see :func:`prorl.text.answer_region`):

1. the content of the LAST ``\\boxed{...}`` / ``\\fbox{...}``, when the response has one;
2. otherwise the LAST phrase ``answer is X`` / ``answer is (X)`` / ``Answer: X`` (case-insensitive,
   ``The correct answer is`` included).

Multiple choice (``problem.answer`` is one letter A-J). The valid letters: as many as
``metadata["choices"]``; else the letters the prompt lists at line starts (``A. ...``, ``(B) ...``);
else A-J. Markup is removed first (``**B**``, ``__B__``, ``\\textbf{B}``, ``\\text{B}``,
``\\mathrm{B}``, ``$C$``), then the answer is read token by token (:func:`leading_options`):

- words before the first option are a lead-in and skipped ("I think it is C", "Option (B)");
- an option is a standalone valid letter (``B``, ``(B)``, ``B)``, ``B.``); a lower-case letter only
  when parenthesised or not followed by a word, so "the answer is a neutron" is not option A;
- ``I`` before a verb-like word ("I think", "I would", "I am") is the pronoun, never option I;
- a capital ``A`` or ``I`` before another word ("A neutron") may be an article: it counts only when
  no other option is named, and then the LAST such letter is taken ("A neutron, so B" is B);
- after an option, separators and hedge words (``or``, ``and``, ``maybe``, ``either``...) keep
  reading, any other word ends the answer ("B because C is wrong" is B; "B, not C" is B).

An answer naming two or more different options is ambiguous and scores 0 with reason
``"several options"`` (``\\boxed{A, C}``, ``Answer: A or B``, "B or maybe C", ``B/C``, "either A
or D", "A and C"; a letter the problem does not list still counts in such a list): hedging or
listing every option must not earn the reward.

Numeric (``problem.answer`` parses as a number, e.g. ``"80"``, ``"2.5e3"``, ``"1/2"``): the answer's
number (plain, ``1e-3``, ``a/b``, ``\\frac{a}{b}`` / ``\\dfrac`` / ``\\tfrac``, ``\\sqrt{a}``,
``a^{b}``, ``10^{-3}``, ``x \\times 10^{n}`` with ``\\times``, ``\\cdot``, ``x``, ``×`` or ``·``;
thousands separators ignored) must satisfy ``|got - want| <= rel_tol * |want|``; ``rel_tol`` is
:data:`DEFAULT_REL_TOL` (1e-2) unless ``problem.metadata["rel_tol"]`` sets it. A sign before a
form or a bracket applies to it (``-\\frac{1}{2}``, ``-\\sqrt{2}``, ``-(3)``,
``-\\left(\\frac{1}{2}\\right)``; the Unicode minus ``−`` too). A trailing unit is ignored, its
exponent included: an exponent after a letter belongs to the unit (``9.8 m/s^2``, ``5 cm^3``,
``3 \\text{ m}^2``, ``2 kg·m^2``, ``m²``). Limit: with a ground truth of exactly 0 only an exact 0
passes (a relative tolerance of 0 is 0). An answer holding several numbers (``\\boxed{2, 3}``)
scores 0 with reason ``"several numbers"``.

Reasons: ``"correct"``, ``"wrong: got X"``, ``"no answer found"``, ``"several options"``,
``"several numbers"``, ``"unparseable answer"``.

>>> from prorl.data.schema import Problem
>>> mc = Problem(id="s1", domain="stem", prompt="...", answer="B")
>>> score(mc, "Neutrons are neutral. The answer is (B).")
Verdict(score=1.0, reason='correct', status='ok')
>>> score(mc, "Answer: A or B").reason, score(mc, "Answer: I think it is **B**").score
('several options', 1.0)
>>> score(Problem(id="s3", domain="stem", prompt="...", answer="-0.5"), "\\\\boxed{-\\\\frac{1}{2}}").score
1.0
>>> score(Problem(id="s2", domain="stem", prompt="...", answer="80"), "\\\\boxed{79.5 km/h}").score
1.0
"""

from __future__ import annotations

import functools
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


# ---- multiple choice

_MARKUP = re.compile(r"\\(?:textbf|text|mathrm|mathbf|mathit|textit|textrm|operatorname|bf|rm)\b\s*|[{}$*`]|_{2,}"
                     r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
"""Markup around an option letter, removed before reading: ``\\text{}``-like commands, braces, ``$``,
bold/italic ``*`` and ``_``, backticks."""
_TOKEN = re.compile(r"\(\s*([A-Za-z])\s*\)|([A-Za-z]+(?:['\u2019][A-Za-z]+)*)|([,;/&|+])|(\S)")
_CONNECTORS = {"or", "and", "maybe", "perhaps", "possibly", "probably", "either", "also", "alternatively",
               "else", "otherwise", "even", "likely", "plus", "nor"}
"""Words that may join option letters in a hedge ("B or maybe C", "either A or D", "A and C")."""
_AFTER_OPTION = _CONNECTORS | {
    "is", "was", "seems", "appears", "looks", "because", "since", "as", "which", "that", "would", "should",
    "for", "due", "given", "so", "then", "with", "it", "this", "here", "there", "being", "must", "will",
    "can", "could", "might", "may", "best", "only", "correct", "right", "true", "wins", "holds", "fits",
    "again", "too", "though", "but", "not", "if", "when", "where", "while", "from", "by", "of", "in", "on",
    "at", "to"}
"""Words that, after a capital ``A`` or ``I``, make it read as an option ("A because ...", "I is correct")."""
_PRONOUN_VERBS = {
    "think", "believe", "am", "guess", "would", "will", "feel", "suppose", "say", "choose", "pick", "select",
    "go", "chose", "picked", "selected", "was", "have", "had", "can", "could", "should", "must", "might",
    "may", "need", "know", "reckon", "conclude", "got", "get", "see", "agree", "hope", "bet", "expect",
    "prefer", "do", "did", "estimate", "calculate", "calculated", "computed", "found", "find", "get",
    "assume", "consider", "want", "answer", "determine", "determined", "obtain", "obtained", "believed",
    "thought", "concluded", "really", "also", "still", "just", "personally", "honestly", "now"}
"""Words after ``I`` that make it the pronoun ("I think", "I would go with"): never read as option I."""


def _option_letters(problem: Problem) -> str:
    """The option letters valid for ``problem``: as many as ``metadata["choices"]``; else the letters
    the prompt lists at line starts (``A. ...``, ``(B) ...``, ``C) ...``, ``D: ...``; two or more);
    else A-J. The ground-truth letter is always valid."""
    truth = (problem.answer or "").strip().upper()
    choices = problem.metadata.get("choices")
    if isinstance(choices, (list, tuple, dict)) and 2 <= len(choices) <= len(LETTERS):
        letters = LETTERS[:len(choices)]
    else:
        listed = {m.group(1) for m in re.finditer(r"(?m)^[ \t]*\(?([A-J])(?:[.):]|\)\s)", problem.prompt or "")}
        letters = "".join(c for c in LETTERS if c in listed) if len(listed) >= 2 else LETTERS
    return letters if truth in letters else "".join(sorted(set(letters + truth)))


def _letter_tokens(answer: str):
    """(kind, value) pairs of ``answer`` without markup: "paren" (a parenthesised letter), "word", "sep", "punct"."""
    text = _MARKUP.sub(" ", answer.replace("\\(", " ").replace("\\)", " "))
    for m in _TOKEN.finditer(text):
        if m.group(1):
            yield "paren", m.group(1)
        elif m.group(2):
            yield "word", m.group(2)
        elif m.group(3):
            yield "sep", m.group(3)
        else:
            yield "punct", m.group(4)


def _in_a_list(tokens: list, i: int) -> bool:
    """Token ``i`` is next to a separator or a joining word ("E or", ", E", "and E")."""
    def joins(j: int) -> bool:
        return 0 <= j < len(tokens) and (tokens[j][0] == "sep" or
                                         (tokens[j][0] == "word" and tokens[j][1].lower() in ("or", "and", "nor")))
    return joins(i - 1) or joins(i + 1)


def leading_options(answer: str, letters: str = LETTERS) -> list[str]:
    """The option letters an answer names: ``"B. neutron"`` -> [B]; ``"A, C"`` -> [A, C].

    Rule, token by token (markup removed first: ``**B**``, ``\\textbf{B}``, ``$C$``):

    - Before the first option, other words are skipped ("I think it is C", "Option (B)", "either A or D").
    - An option is a standalone letter in ``letters`` (``B``, ``(B)``, ``B)``, ``B.``). A lower-case
      letter counts only when parenthesised or not followed by a word, so "a neutron" is not option A.
      ``I`` followed by a verb-like word ("I think", "I would") is the pronoun and never an option.
      A capital ``A`` or ``I`` followed by another word ("A neutron") is weak: it counts only when the
      answer names no other option, and then the LAST such weak letter is taken.
    - After an option, separators (``, ; / & |``), punctuation and hedge words (``or``, ``and``,
      ``maybe``, ``perhaps``...) keep reading; any other word ends the answer ("B because C is wrong"
      names B only).

    >>> leading_options("(b)"), leading_options("A or B"), leading_options("a neutron")
    (['B'], ['A', 'B'], [])
    >>> leading_options("I think it is C"), leading_options("B or maybe C"), leading_options("**Option B**")
    (['C'], ['B', 'C'], ['B'])
    """
    tokens = list(_letter_tokens(answer))
    found: list[str] = []
    weak: list[str] = []
    for i, (kind, value) in enumerate(tokens):
        nxt_kind, nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "paren" and value.upper() in letters:
            found.append(value.upper())
            continue
        if kind == "word" and len(value) == 1 and value.upper() in letters:
            follows_word = nxt_kind == "word"
            if value.islower():
                if not follows_word or nxt.lower() in _CONNECTORS:
                    found.append(value.upper())
                    continue
            elif value == "I" and follows_word and nxt.lower() in _PRONOUN_VERBS:
                pass  # "I think": the pronoun
            elif value in "AI" and follows_word and nxt.lower() not in _AFTER_OPTION:
                weak.append(value)  # "A neutron": an article, unless nothing else is named
                if found:
                    break
                continue
            else:
                found.append(value)
                continue
        elif kind == "word" and len(value) == 1 and value in LETTERS and _in_a_list(tokens, i) and \
                (nxt_kind != "word" or nxt.lower() in _CONNECTORS):
            found.append(value)  # "E or B" where E is no option of the problem: still a hedge
            continue
        if not found:
            continue  # a lead-in: "I think it is", "Option", "either"
        if kind == "word" and value.lower() not in _CONNECTORS:
            break  # the answer's explanation starts
    return found or weak[-1:]


# ---- numbers

_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
"""An unsigned decimal number, optionally with an exponent (``2``, ``2.5``, ``.5``, ``1e-3``)."""
_INT_EXP = r"(?:\{\s*([-+]?\d+(?:\.\d+)?)\s*\}|([-+]?\d+(?:\.\d+)?))"
"""An exponent, braced or not (``{-3}``, ``-3``, ``8``): groups (braced, bare)."""
_UNIT_EXPONENT = re.compile(r"(?<=[A-Za-z])(\s*\}?)\s*\^\s*(?:\{\s*[-+]?\d+(?:\.\d+)?\s*\}|[-+]?\d+(?:\.\d+)?)"
                            r"|(?<=[A-Za-z])[\u00b2\u00b3\u00b9\u2070\u2074-\u2079\u207b]+")
"""A unit's exponent (``m/s^2``, ``cm^{3}``, ``\\text{ m}^2``, ``m²``): after a letter, never part of the number."""
_SCI = re.compile(rf"({_NUM})?\s*(?:\\times|\\cdot|\*|x|\u00d7|\u00b7|\u22c5)\s*10\s*\^\s*{_INT_EXP}")
_POWER = re.compile(rf"(?<![\w.])({_NUM})\s*\^\s*{_INT_EXP}")
_SQRT = re.compile(rf"(?<![\w.])({_NUM})?\s*\\sqrt\s*(?:\{{\s*({_NUM})\s*\}}|({_NUM}))")
_FRAC = re.compile(rf"\\[dt]?frac\s*(?:\{{\s*([-+]?{_NUM})\s*\}}\s*\{{\s*([-+]?{_NUM})\s*\}}|(\d)\s*(\d))")
_SLASH = re.compile(rf"(?<![\w.])([-+]?{_NUM})\s*/\s*({_NUM})(?![\d.])")
_PLAIN = re.compile(r"(?<![\w.])((?:[-+] ?){0,4})((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\d])|\.\d+)")
_SPACING = re.compile(r"\\left\b|\\right\b|\\[,;:! ]|\\quad\b|~")


_NESTING = 4
"""Passes of each form's replacement, so that forms nested this deep are read (linear time each)."""


_FORMS = ((_SQRT, lambda m: float(m.group(1) or 1) * math.sqrt(float(m.group(2) or m.group(3)))),
          (_FRAC, lambda m: float(m.group(1) or m.group(3)) / float(m.group(2) or m.group(4))),
          (_SCI, lambda m: float(m.group(1) or 1) * 10.0 ** float(m.group(2) or m.group(3))),
          (_POWER, lambda m: float(m.group(1)) ** float(m.group(2) or m.group(3))),
          (_SLASH, lambda m: float(m.group(1)) / float(m.group(2))))
"""Written forms of a number and their values, replaced in this order (roots inside fractions first)."""


def _replace(value, m: re.Match) -> str:
    """The value of one written form as a plain literal (spaced off); a space when it has none."""
    try:
        number = value(m)
    except (ValueError, ZeroDivisionError, OverflowError):
        return " "
    return f" {number!r} " if isinstance(number, float) and math.isfinite(number) else " "


def parse_number(text: str) -> float | None:
    """A plain number, ``a/b``, ``\\frac{a}{b}``, ``\\sqrt{a}``, ``a^b`` or ``x \\times 10^{n}``; None when not one number.

    >>> parse_number("1/4"), parse_number("1,200 m"), parse_number("3 \\\\times 10^{8}")
    (0.25, 1200.0, 300000000.0)
    >>> parse_number("-\\\\frac{1}{2}"), parse_number("9.8 m/s^2"), parse_number("3×10^{8}")
    (-0.5, 9.8, 300000000.0)
    """
    numbers = numbers_in(text)
    return numbers[0] if len(numbers) == 1 else None


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (scientific, power, root and fraction forms each count once).

    Each form is replaced by its value, innermost first (roots, then fractions, then powers of ten,
    powers and ``a/b``); then brackets become spaces and a sign before a number applies to it, also
    across spaces and brackets (``-\\frac{1}{2}``, ``-(3)``, ``-\\left(\\frac{1}{2}\\right)``, ``−2``).
    A unit's exponent (``^2`` after a letter) is removed first.
    """
    text = text.replace("$", "").replace("{,}", ",").replace("\u2212", "-")
    text = _SPACING.sub(" ", text)
    text = _UNIT_EXPONENT.sub(lambda m: m.group(1) or "", text)
    for _ in range(_NESTING):  # a value may complete an outer form: \frac{\frac{1}{2}}{3}, \frac{10^3}{2}
        changed = 0
        for pattern, value in _FORMS:
            text, count = pattern.subn(functools.partial(_replace, value), text)
            changed += count
        if not changed:
            break
    text = " ".join(re.sub(r"[()\[\]{}]", " ", text).split())
    found: list[float] = []
    for m in _PLAIN.finditer(text):
        try:
            number = float(m.group(2).replace(",", ""))
        except ValueError:
            continue
        found.append(-number if m.group(1).count("-") % 2 else number)
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
        options = leading_options(final, _option_letters(problem))
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

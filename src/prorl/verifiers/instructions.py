"""Instruction-following verifier: the 25 instruction types of IFEval (Zhou et al. 2023).

A problem of the ``"instruction"`` domain carries
``metadata = {"instruction_ids": [...], "kwargs": [{...}, ...]}``: one kwargs dict per id, in the
same order; a ``None`` value (or a missing key) means "not set". The reward is the fraction of the
listed instructions the response follows, so it is continuous in [0, 1]:

>>> from prorl.data.schema import Problem
>>> p = Problem("ex", "instruction", "Write a haiku. No commas. End with 'Bye.'",
...             metadata={"instruction_ids": ["punctuation:no_comma", "startend:end_checker"],
...                       "kwargs": [{}, {"end_phrase": "Bye."}]})
>>> import prorl.verifiers  # cuts the think block off first, as for every domain
>>> prorl.verifiers.score(p, "<think>ok, so</think>Quiet pond at dusk\\nA frog leaps in and is gone\\nBye.")
Verdict(score=1.0, reason='followed 2/2', status='ok')
>>> score(p, "Quiet pond, at dusk. Bye!")
Verdict(score=0.0, reason='followed 0/2; failed: punctuation:no_comma, startend:end_checker', status='ok')

What is scored, and how (each rule is also tabulated in ``docs/instructions.md``):

- The response is checked as given. Through :func:`prorl.verifiers.score` (the pool, training,
  evaluation, ``prorl score``) that is only the text after the LAST ``</think>``, and a ``<think>``
  with no ``</think>`` after it scores 0 ("unterminated think") before this module is called; the
  rule is :func:`prorl.text.answer_region`.
- An empty (whitespace-only) answer follows no instruction and scores 0 ("empty response"); otherwise
  "no commas" or "fewer than 50 words" would reward saying nothing. IFEval's evaluation does the same.
- Strict mode checks the answer as it is. Loose mode (IFEval's "loose" accuracy) counts an
  instruction as followed when ANY of eight variants passes: the answer; without its first line;
  without its last line; without both; and each of these four with every ``*`` removed. Variants
  that are empty after stripping are skipped.
- Bad metadata (unknown instruction id, missing or ill-typed kwarg, unknown kwarg) never raises out
  of :func:`score`: it returns score 0 with ``status="error"`` and a reason naming the problem and the
  field, so one bad row costs one sample, not the run, and shows up in the verifier-error metric.
  :func:`check_instruction` and :func:`validate_metadata` raise :class:`~prorl.errors.DataError`
  instead, so a loader can reject bad rows up front.

Language detection uses ``langdetect`` through a private ``DetectorFactory`` whose seed is fixed to 0
(langdetect draws random numbers during detection; unseeded, the same text can get different answers
on different calls). The profiles ship inside the package: nothing is downloaded. The global
``langdetect.detect`` state is left untouched. Profiles load once, on the first language check (~0.6 s here).

Limits: sentence splitting and word counting are simple regular-expression rules (documented on
:func:`split_sentences` and :func:`count_words`), not a trained tokenizer; text without spaces
(Chinese, Japanese, Thai) counts as few long words. langdetect is unreliable on very short texts.

Plain Python: this module never imports torch.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any, Callable

from prorl.data.schema import Problem
from prorl.errors import DataError
from prorl.verifiers.verdict import Verdict

# ---------------------------------------------------------------------------------------------
# Text rules shared by several checks.

_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
"""A word: a run of letters or digits; an inner apostrophe or hyphen joins ("don't", "well-known")."""


def words(text: str) -> list[str]:
    """The words of ``text``: runs of letters/digits, joined across inner ``'``, ``’`` or ``-``.

    Punctuation, markdown symbols and underscores are not words. Text without spaces (Chinese,
    Japanese) is one long word per run: a known limit.

    >>> words("Don't stop -- it's a well-known 3-step plan, e.g. *this*.")
    ["Don't", 'stop', "it's", 'a', 'well-known', '3-step', 'plan', 'e', 'g', 'this']
    """
    return _WORD_RE.findall(text)


def count_words(text: str) -> int:
    """The number of :func:`words` in ``text``.

    >>> count_words("Hello, world! It's 2024.")
    4
    """
    return len(words(text))


_SENTENCE_END_RE = re.compile(
    # The lookbehind starts a match only at the beginning of a run of end marks: without it a long
    # run ("......x") is retried from every position, which is quadratic in the run's length.
    r"(?<![.!?\u2026\u3002\uff01\uff1f])[.!?\u2026\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*(?=\s|$)"
)
"""A sentence end: a run of . ! ? … 。 ！ ？, optional closing quotes/brackets, then space or the end."""

_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "approx", "fig", "inc", "ltd"}
)
"""Words whose trailing period does not end a sentence."""

_TOKEN_BEFORE_RE = re.compile(r"([A-Za-z](?:[A-Za-z.]*[A-Za-z])?)$")


def _is_abbreviation(before: str) -> bool:
    """Whether a period right after ``before`` belongs to an abbreviation or an initial."""
    # Look at a short tail only: searching the whole prefix at every period is quadratic on long lines.
    tail = before[-32:]
    match = _TOKEN_BEFORE_RE.search(tail)
    if match is None or (match.start() == 0 and len(before) > len(tail)):
        return False  # no token, or one longer than any abbreviation
    token = match.group(1)
    if token.lower() in _ABBREVIATIONS:
        return True
    # Single letters and dotted letter groups: initials ("J. K."), "e.g", "i.e", "U.S".
    return all(len(part) == 1 for part in token.split("."))


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with a simple rule.

    A sentence ends at a line break, or at a run of ``. ! ? … 。 ！ ？`` (plus closing quotes or
    brackets) that is followed by whitespace or the end of the text. A single ``.`` does not end a
    sentence after a listed abbreviation (Mr, Dr, etc, vs, ...), a single letter (an initial) or a
    dotted letter group (e.g, i.e, U.S). Pieces with no letter or digit (a lone ``***`` line, a
    stray ``-``) are dropped. Limits: "3 p.m. Then", "the U.S. Then" and a sentence ending in a
    one-letter word ("so did I. Then") stay one sentence; an ellipsis in mid-sentence
    ("Well... yes") splits it. Line breaks split because bullets, headings
    and titles are separate units even without a final period.

    >>> split_sentences("Dr. Smith arrived. He said hi! Was it 3.5 p.m.? Yes.\\n* a bullet\\n***")
    ['Dr. Smith arrived.', 'He said hi!', 'Was it 3.5 p.m.?', 'Yes.', '* a bullet']
    """
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END_RE.finditer(line):
            if match.group().rstrip("\"'\u201d\u2019)]") == "." and _is_abbreviation(line[: match.start()]):
                continue
            sentences.append(line[start : match.end()].strip())
            start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if any(ch.isalnum() for ch in s)]


_BLANK_LINE_RE = re.compile(r"\n[ \t\r\f\v]*\n")


def blank_line_paragraphs(text: str) -> list[str]:
    """Paragraphs separated by one or more blank (whitespace-only) lines; empty ones dropped.

    >>> blank_line_paragraphs("First one.\\n\\n  \\nSecond\\nstill second.\\n\\n")
    ['First one.', 'Second\\nstill second.']
    """
    return [p.strip() for p in _BLANK_LINE_RE.split(text) if p.strip()]


def divider_paragraphs(text: str) -> list[str] | None:
    """Paragraphs separated by markdown dividers: lines that are exactly ``***`` (spaces around ok).

    Returns the non-empty paragraphs, or None when an empty paragraph sits between two dividers
    (``***`` twice in a row), which breaks the "separated by ***" format. Empty text before the
    first or after the last divider is allowed.

    >>> divider_paragraphs("One.\\n***\\nTwo.\\n\\nStill two.\\n***\\n")
    ['One.', 'Two.\\n\\nStill two.']
    >>> divider_paragraphs("One.\\n***\\n***\\nTwo.") is None
    True
    """
    pieces: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip() == "***":
            pieces.append([])
        else:
            pieces[-1].append(line)
    paragraphs = ["\n".join(lines).strip() for lines in pieces]
    inner = paragraphs[1:-1]
    if any(not p for p in inner):
        return None
    return [p for p in paragraphs if p]


# ---------------------------------------------------------------------------------------------
# Language detection (langdetect, seeded, loaded once).

_LANG_LOCK = threading.Lock()
_LANG_FACTORY: Any = None


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code langdetect gives ``text`` (``"en"``, ``"de"``, ``"zh-cn"``), or None.

    None means langdetect found no usable characters (digits or punctuation only). The answer is
    the same on every call: a private factory with seed 0 is used, never langdetect's global one.

    >>> detect_language("The weather is lovely today and we are going for a walk in the park.")
    'en'
    >>> detect_language("12345 !!!") is None
    True
    """
    global _LANG_FACTORY
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    from langdetect.lang_detect_exception import LangDetectException

    with _LANG_LOCK:
        if _LANG_FACTORY is None:
            # Load the profiles in sorted order: langdetect's own loader follows os.listdir, whose
            # order varies between file systems and would change the language index on ties.
            texts = []
            for name in sorted(os.listdir(PROFILES_DIRECTORY)):
                with open(os.path.join(PROFILES_DIRECTORY, name), encoding="utf-8") as handle:
                    texts.append(handle.read())
            factory = DetectorFactory()
            factory.load_json_profile(texts)
            factory.set_seed(0)
            _LANG_FACTORY = factory
    detector = _LANG_FACTORY.create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None


def _same_language(detected: str | None, wanted: str) -> bool:
    """Compare language codes on their primary part, so ``"zh"`` matches ``"zh-cn"``."""
    if detected is None:
        return False
    return detected.split("-")[0].lower() == wanted.split("-")[0].strip().lower()


# ---------------------------------------------------------------------------------------------
# Keyword arguments: coercion with clear errors.


def _int_arg(kwargs: dict, name: str, minimum: int = 0) -> int:
    """Read an integer kwarg; integral floats and digit strings are accepted (Parquet, CSV)."""
    value = kwargs[name]
    if isinstance(value, bool):
        raise DataError(f"kwarg {name!r}: expected an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise DataError(f"kwarg {name!r}: expected an integer, got {value!r}")
    if value < minimum:
        raise DataError(f"kwarg {name!r}: expected an integer >= {minimum}, got {value}")
    return value


def _str_arg(kwargs: dict, name: str) -> str:
    """Read a non-empty string kwarg."""
    value = kwargs[name]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"kwarg {name!r}: expected a non-empty string, got {value!r}")
    return value


def _str_list_arg(kwargs: dict, name: str) -> list[str]:
    """Read a non-empty list of non-empty strings."""
    value = kwargs[name]
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"kwarg {name!r}: expected a non-empty list of strings, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise DataError(f"kwarg {name!r}: expected a non-empty list of strings, got {value!r}")
    return list(value)


_RELATIONS = ("less than", "at least")


def _compare(count: int, kwargs: dict, relation_name: str, number_name: str, minimum: int = 0) -> bool:
    """``count < N`` for relation "less than", ``count >= N`` for "at least"."""
    relation = _str_arg(kwargs, relation_name).strip().lower()
    number = _int_arg(kwargs, number_name, minimum)
    if relation == "less than":
        return count < number
    if relation == "at least":
        return count >= number
    raise DataError(f"kwarg {relation_name!r}: expected one of {_RELATIONS}, got {kwargs[relation_name]!r}")


# ---------------------------------------------------------------------------------------------
# The 25 checks. Each takes (response, kwargs, prompt) with kwargs already stripped of None values
# and checked for required names, and returns whether the response follows the instruction.


def _phrase_pattern(phrase: str) -> re.Pattern:
    """A case-insensitive whole-word pattern for ``phrase``, taken literally (not as a regex).

    Word boundaries are required only at ends that are word characters, so "C++" or "P.S." still
    match; inner whitespace may be any run of whitespace.
    """
    phrase = phrase.strip()
    body = r"\s+".join(re.escape(part) for part in phrase.split())
    left = r"(?<!\w)" if re.match(r"\w", phrase) else ""
    right = r"(?!\w)" if re.search(r"\w$", phrase) else ""
    return re.compile(left + body + right, re.IGNORECASE)


def _keywords_existence(response: str, kwargs: dict, prompt: str) -> bool:
    return all(_phrase_pattern(k).search(response) for k in _str_list_arg(kwargs, "keywords"))


def _keywords_frequency(response: str, kwargs: dict, prompt: str) -> bool:
    count = len(_phrase_pattern(_str_arg(kwargs, "keyword")).findall(response))
    return _compare(count, kwargs, "relation", "frequency")


def _forbidden_words(response: str, kwargs: dict, prompt: str) -> bool:
    return not any(_phrase_pattern(w).search(response) for w in _str_list_arg(kwargs, "forbidden_words"))


def _letter_frequency(response: str, kwargs: dict, prompt: str) -> bool:
    letter = _str_arg(kwargs, "letter").strip()
    if len(letter) != 1 or not letter.isalpha():
        raise DataError(f"kwarg 'letter': expected a single letter, got {kwargs['letter']!r}")
    count = response.casefold().count(letter.casefold())
    return _compare(count, kwargs, "let_relation", "let_frequency")


def _response_language(response: str, kwargs: dict, prompt: str) -> bool:
    return _same_language(detect_language(response), _str_arg(kwargs, "language"))


def _number_sentences(response: str, kwargs: dict, prompt: str) -> bool:
    return _compare(len(split_sentences(response)), kwargs, "relation", "num_sentences")


def _number_paragraphs(response: str, kwargs: dict, prompt: str) -> bool:
    paragraphs = divider_paragraphs(response)
    return paragraphs is not None and len(paragraphs) == _int_arg(kwargs, "num_paragraphs", 1)


def _number_words(response: str, kwargs: dict, prompt: str) -> bool:
    return _compare(count_words(response), kwargs, "relation", "num_words")


def _nth_paragraph_first_word(response: str, kwargs: dict, prompt: str) -> bool:
    num_paragraphs = _int_arg(kwargs, "num_paragraphs", 1)
    nth = _int_arg(kwargs, "nth_paragraph", 1)
    if nth > num_paragraphs:
        raise DataError(f"kwarg 'nth_paragraph': {nth} is more than num_paragraphs={num_paragraphs}")
    wanted = _str_arg(kwargs, "first_word").strip().lower()
    paragraphs = blank_line_paragraphs(response)
    if len(paragraphs) != num_paragraphs:
        return False
    first = words(paragraphs[nth - 1])
    return bool(first) and first[0].lower() == wanted


_PLACEHOLDER_RE = re.compile(r"\[([^\[\]\n]*)\](?!\()")


def _number_placeholders(response: str, kwargs: dict, prompt: str) -> bool:
    count = sum(1 for inner in _PLACEHOLDER_RE.findall(response) if inner.strip())
    return count >= _int_arg(kwargs, "num_placeholders")


def _postscript(response: str, kwargs: dict, prompt: str) -> bool:
    marker = _str_arg(kwargs, "postscript_marker").strip()
    # Any spacing after the marker's periods is accepted ("P. S." and "P.S." alike).
    body = "".join(re.escape(ch) + (r"\s*" if ch == "." else "") for ch in marker.replace(" ", ""))
    pattern = re.compile(r"^[ \t]*" + body, re.IGNORECASE | re.MULTILINE)
    return pattern.search(response) is not None


_BULLET_RE = re.compile(r"^[ \t]*[*-][ \t]+\S", re.MULTILINE)


def _number_bullet_lists(response: str, kwargs: dict, prompt: str) -> bool:
    return len(_BULLET_RE.findall(response)) == _int_arg(kwargs, "num_bullets")


_CONSTRAINED_OPTIONS = ("my answer is yes.", "my answer is no.", "my answer is maybe.")


def _constrained_response(response: str, kwargs: dict, prompt: str) -> bool:
    text = " ".join(response.lower().split())
    return sum(option in text for option in _CONSTRAINED_OPTIONS) == 1


# Markdown emphasis: the text right inside the asterisks must not be whitespace ("* item" is a bullet).
_HIGHLIGHT_RE = re.compile(r"\*\*(?=\S)[^\n*]+(?<=\S)\*\*|\*(?=\S)[^\n*]+(?<=\S)\*")


def _number_highlighted_sections(response: str, kwargs: dict, prompt: str) -> bool:
    return len(_HIGHLIGHT_RE.findall(response)) >= _int_arg(kwargs, "num_highlights")


def _multiple_sections(response: str, kwargs: dict, prompt: str) -> bool:
    splitter = _str_arg(kwargs, "section_spliter").strip()
    pattern = re.compile(r"^[ \t#*>]*" + re.escape(splitter) + r"[ \t]+\d+(?!\w)", re.IGNORECASE | re.MULTILINE)
    return len(pattern.findall(response)) >= _int_arg(kwargs, "num_sections", 1)


_FENCE_RE = re.compile(r"^```[A-Za-z]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)


def _json_format(response: str, kwargs: dict, prompt: str) -> bool:
    text = response.strip()
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested brackets ("[[[[...")
        return False
    # A bare number or string is valid JSON but would let "1" earn the reward: ask for structure.
    return isinstance(value, (dict, list))


# The title may not contain "<", ">" or a line break; this also keeps the search linear on "<<<<...".
_TITLE_RE = re.compile(r"<<([^<>\n]+)>>")


def _title(response: str, kwargs: dict, prompt: str) -> bool:
    return any(inner.strip() for inner in _TITLE_RE.findall(response))


def _two_responses(response: str, kwargs: dict, prompt: str) -> bool:
    parts = [p.strip() for p in re.split(r"\*{6,}", response)]
    inner_empty = any(not p for p in parts[1:-1])
    parts = [p for p in parts if p]
    return not inner_empty and len(parts) == 2 and parts[0] != parts[1]


def _repeat_prompt(response: str, kwargs: dict, prompt: str) -> bool:
    wanted = kwargs.get("prompt_to_repeat", prompt)
    if not isinstance(wanted, str) or not wanted.strip():
        raise DataError("kwarg 'prompt_to_repeat': expected a non-empty string (and the problem has no prompt)")
    normal = lambda s: " ".join(s.lower().split())  # noqa: E731 - case and spacing do not matter
    return normal(response).startswith(normal(wanted))


_CLOSING_QUOTES = "\"'\u201d\u2019"
"""Closing quotation marks the end check looks past: straight ``"`` and ``'``, curly ``\u201d`` and ``\u2019``."""


def _end_checker(response: str, kwargs: dict, prompt: str) -> bool:
    """The answer ends with the phrase, looking past closing quotes and whitespace after it.

    Each closing quote (with the whitespace around it) is peeled off the end in turn and the phrase
    is tried again, so a phrase that itself ends with a quote still matches, and an answer that
    must also be quoted (``startend:quotation``) can end with ``...phrase"``.

    >>> _end_checker('"Done. Any other questions?" ', {"end_phrase": "Any other questions?"}, "")
    True
    >>> _end_checker("Any other questions? Bye.", {"end_phrase": "Any other questions?"}, "")
    False
    """
    phrase = " ".join(_str_arg(kwargs, "end_phrase").lower().split())
    text = " ".join(response.lower().split())
    while True:
        if text.endswith(phrase):
            return True
        if not text or text[-1] not in _CLOSING_QUOTES:
            return False
        text = text[:-1].rstrip()


def _capital_word_frequency(response: str, kwargs: dict, prompt: str) -> bool:
    count = sum(1 for w in words(response) if w.isupper())
    return _compare(count, kwargs, "capital_relation", "capital_frequency")


def _english_capital(response: str, kwargs: dict, prompt: str) -> bool:
    # langdetect's profiles are mostly lower-case text: detect on the lower-cased copy.
    return response.isupper() and _same_language(detect_language(response.lower()), "en")


def _english_lowercase(response: str, kwargs: dict, prompt: str) -> bool:
    return response.islower() and _same_language(detect_language(response), "en")


_COMMAS = (",", "\uff0c")  # ASCII comma and the full-width comma of CJK text


def _no_comma(response: str, kwargs: dict, prompt: str) -> bool:
    return not any(c in response for c in _COMMAS)


def _quotation(response: str, kwargs: dict, prompt: str) -> bool:
    text = response.strip()
    return len(text) >= 2 and (
        (text[0] == '"' and text[-1] == '"') or (text[0] == "\u201c" and text[-1] == "\u201d")
    )


_Check = Callable[[str, dict, str], bool]

_CHECKS: dict[str, tuple[_Check, tuple[str, ...], tuple[str, ...]]] = {
    # id: (check, required kwargs, optional kwargs)
    "keywords:existence": (_keywords_existence, ("keywords",), ()),
    "keywords:frequency": (_keywords_frequency, ("keyword", "frequency", "relation"), ()),
    "keywords:forbidden_words": (_forbidden_words, ("forbidden_words",), ()),
    "keywords:letter_frequency": (_letter_frequency, ("letter", "let_frequency", "let_relation"), ()),
    "language:response_language": (_response_language, ("language",), ()),
    "length_constraints:number_sentences": (_number_sentences, ("num_sentences", "relation"), ()),
    "length_constraints:number_paragraphs": (_number_paragraphs, ("num_paragraphs",), ()),
    "length_constraints:number_words": (_number_words, ("num_words", "relation"), ()),
    "length_constraints:nth_paragraph_first_word": (
        _nth_paragraph_first_word,
        ("num_paragraphs", "nth_paragraph", "first_word"),
        (),
    ),
    "detectable_content:number_placeholders": (_number_placeholders, ("num_placeholders",), ()),
    "detectable_content:postscript": (_postscript, ("postscript_marker",), ()),
    "detectable_format:number_bullet_lists": (_number_bullet_lists, ("num_bullets",), ()),
    "detectable_format:constrained_response": (_constrained_response, (), ()),
    "detectable_format:number_highlighted_sections": (_number_highlighted_sections, ("num_highlights",), ()),
    "detectable_format:multiple_sections": (_multiple_sections, ("section_spliter", "num_sections"), ()),
    "detectable_format:json_format": (_json_format, (), ()),
    "detectable_format:title": (_title, (), ()),
    "combination:two_responses": (_two_responses, (), ()),
    "combination:repeat_prompt": (_repeat_prompt, (), ("prompt_to_repeat",)),
    "startend:end_checker": (_end_checker, ("end_phrase",), ()),
    "change_case:capital_word_frequency": (
        _capital_word_frequency,
        ("capital_frequency", "capital_relation"),
        (),
    ),
    "change_case:english_capital": (_english_capital, (), ()),
    "change_case:english_lowercase": (_english_lowercase, (), ()),
    "punctuation:no_comma": (_no_comma, (), ()),
    "startend:quotation": (_quotation, (), ()),
}

INSTRUCTION_IDS: tuple[str, ...] = tuple(_CHECKS)
"""The 25 supported IFEval instruction ids."""


def _clean_kwargs(instruction_id: str, kwargs: dict | None) -> dict:
    """Drop None values, then check the names against the instruction's required and optional ones."""
    if instruction_id not in _CHECKS:
        raise DataError(f"unknown instruction id {instruction_id!r}; supported: {', '.join(INSTRUCTION_IDS)}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise DataError(f"{instruction_id}: kwargs must be a dict, got {type(kwargs).__name__}")
    _, required, optional = _CHECKS[instruction_id]
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise DataError(f"{instruction_id}: missing kwarg(s) {', '.join(missing)}")
    unknown = sorted(k for k in kwargs if k not in required and k not in optional)
    if unknown:
        raise DataError(f"{instruction_id}: unknown kwarg(s) {', '.join(unknown)}")
    return kwargs


def check_instruction(instruction_id: str, response: str, kwargs: dict, prompt: str = "") -> bool:
    """Whether ``response`` follows one instruction, checked strictly (the text as it is).

    ``kwargs`` holds the instruction's IFEval keyword arguments; None values mean "not set".
    ``prompt`` is the problem's prompt, used by ``combination:repeat_prompt`` when its
    ``prompt_to_repeat`` is not set. The response is checked as given: no think-block handling
    (:func:`prorl.verifiers.score` does that), no empty-response rule (see :func:`score`). Raises
    DataError for an unknown id or bad kwargs.

    >>> check_instruction("keywords:frequency", "Rain, rain, go away.",
    ...                   {"keyword": "rain", "frequency": 2, "relation": "at least"})
    True
    >>> check_instruction("length_constraints:number_words", "Too many words here.",
    ...                   {"num_words": 3, "relation": "less than"})
    False
    """
    kwargs = _clean_kwargs(instruction_id, kwargs)
    try:
        check = _CHECKS[instruction_id][0]
        return bool(check(response, kwargs, prompt))
    except DataError as error:
        raise DataError(f"{instruction_id}: {error}") from None


def loose_variants(response: str) -> list[str]:
    """The texts IFEval's loose mode tries: the response, without its first line, without its last
    line, without both, and each of those with ``*`` removed; empty ones and duplicates are dropped.

    >>> loose_variants("Ok!\\n*A*\\nBye")
    ['Ok!\\n*A*\\nBye', '*A*\\nBye', 'Ok!\\n*A*', '*A*', 'Ok!\\nA\\nBye', 'A\\nBye', 'Ok!\\nA', 'A']
    """
    lines = response.split("\n")
    cut = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    variants: list[str] = []
    for text in cut + [t.replace("*", "") for t in cut]:
        if text.strip() and text not in variants:
            variants.append(text)
    return variants


def validate_metadata(metadata: dict, where: str = "metadata") -> list[tuple[str, dict]]:
    """Check an instruction problem's metadata; return its (instruction_id, kwargs) pairs.

    ``where`` prefixes error messages (a loader passes ``"file.jsonl:12: metadata"``). Raises
    DataError naming the field for: a missing or empty ``instruction_ids`` list, a ``kwargs`` list of
    another length, an unknown id, a missing, ill-typed or unknown kwarg. A missing ``kwargs`` list
    means no kwargs for every id.

    >>> validate_metadata({"instruction_ids": ["punctuation:no_comma"]})
    [('punctuation:no_comma', {})]
    >>> validate_metadata({"instruction_ids": ["nope"], "kwargs": [{}]}, "a.jsonl:3: metadata")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prorl.errors.DataError: a.jsonl:3: metadata.instruction_ids[0]: unknown instruction id 'nope'; ...
    """
    if not isinstance(metadata, dict):
        raise DataError(f"{where}: expected a dict with instruction_ids and kwargs")
    ids = metadata.get("instruction_ids")
    if not isinstance(ids, (list, tuple)) or not ids:
        raise DataError(f"{where}.instruction_ids: expected a non-empty list of instruction ids, got {ids!r}")
    all_kwargs = metadata.get("kwargs")
    if all_kwargs is None:
        all_kwargs = [{}] * len(ids)
    if not isinstance(all_kwargs, (list, tuple)) or len(all_kwargs) != len(ids):
        raise DataError(f"{where}.kwargs: expected a list of {len(ids)} dicts (one per instruction id)")
    pairs = []
    for i, (instruction_id, kwargs) in enumerate(zip(ids, all_kwargs)):
        if not isinstance(instruction_id, str):
            raise DataError(f"{where}.instruction_ids[{i}]: expected a string, got {instruction_id!r}")
        if instruction_id not in _CHECKS:
            raise DataError(
                f"{where}.instruction_ids[{i}]: unknown instruction id {instruction_id!r}; "
                f"supported: {', '.join(INSTRUCTION_IDS)}"
            )
        try:
            kwargs = _clean_kwargs(instruction_id, kwargs)
            _check_kwarg_types(instruction_id, kwargs)
        except DataError as error:
            raise DataError(f"{where}.kwargs[{i}]: {error}") from None
        pairs.append((instruction_id, kwargs))
    return pairs


def _check_kwarg_types(instruction_id: str, kwargs: dict) -> None:
    """Raise DataError for ill-typed kwargs, by running the check once on a neutral text."""
    check = _CHECKS[instruction_id][0]
    if instruction_id.startswith("language:") or instruction_id.startswith("change_case:english"):
        # These read no typed kwargs beyond a string; skip the (slow, first-call) language model.
        if instruction_id.startswith("language:"):
            _str_arg(kwargs, "language")
        return
    try:
        check("Probe text.", kwargs, "Probe prompt.")
    except DataError as error:
        raise DataError(f"{instruction_id}: {error}") from None


def score(problem: Problem, response: str, *, loose: bool = False) -> Verdict:
    """Reward = fraction of the problem's instructions that ``response`` follows.

    ``response`` is the final answer, checked as given (:func:`prorl.verifiers.score` passes only the
    text after the last ``</think>``; see :func:`prorl.text.answer_region`). Strict by default;
    ``loose=True`` accepts an instruction when any of :func:`loose_variants` passes. The reason lists
    the failed instruction ids in order (an id listed twice counts twice). Bad metadata gives score 0
    with ``status="error"`` (never an exception); so does an unexpected crash.

    >>> from prorl.data.schema import Problem
    >>> p = Problem("q1", "instruction", "Answer in JSON.",
    ...             metadata={"instruction_ids": ["detectable_format:json_format"], "kwargs": [{}]})
    >>> score(p, 'Here it is:\\n{"a": 1}').score, score(p, 'Here it is:\\n{"a": 1}', loose=True).score
    (0.0, 1.0)
    """
    where = f"problem {problem.id!r}" + (f" ({problem.source})" if problem.source else "") + ": metadata"
    try:
        return _score(problem, response, loose, where)
    except DataError as error:
        return Verdict(0.0, str(error), "error")
    except Exception as error:  # a crashing check costs this sample, never the run
        return Verdict(0.0, f"verifier error: {type(error).__name__}: {error}", "error")


def _score(problem: Problem, response: str, loose: bool, where: str) -> Verdict:
    """:func:`score` without its error handling."""
    pairs = validate_metadata(problem.metadata, where)
    if not response.strip():
        return Verdict(0.0, "empty response", "ok")
    texts = loose_variants(response) if loose else [response]
    failed: list[str] = []
    for instruction_id, kwargs in pairs:
        if not any(check_instruction(instruction_id, text, kwargs, problem.prompt) for text in texts):
            failed.append(instruction_id)
    followed = len(pairs) - len(failed)
    reason = f"followed {followed}/{len(pairs)}"
    if failed:
        reason += "; failed: " + ", ".join(failed)
    return Verdict(followed / len(pairs), reason, "ok")

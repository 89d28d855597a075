"""Tables of cases for the instruction-following verifier (prorl.verifiers.instructions).

Every expected value is worked out by hand; the comment on a case says why when it is not obvious.
"""

import pytest

import prorl.verifiers
from prorl.data.schema import Problem
from prorl.errors import DataError
from prorl.verifiers.instructions import (
    INSTRUCTION_IDS,
    check_instruction,
    count_words,
    detect_language,
    divider_paragraphs,
    score,
    split_sentences,
    validate_metadata,
)

LESS, AT_LEAST = "less than", "at least"

# (instruction id, kwargs, response, followed?) - strict checks, one block per instruction type.
CASES = [
    # keywords:existence - every keyword, case-insensitive, as whole words
    ("keywords:existence", {"keywords": ["moon", "tide"]}, "The Moon pulls the tide.", True),
    ("keywords:existence", {"keywords": ["moon", "tide"]}, "The moon is bright.", False),
    ("keywords:existence", {"keywords": ["moon"]}, "Honeymoon plans.", False),  # not a whole word
    ("keywords:existence", {"keywords": ["machine learning"]}, "Machine\nlearning rocks.", True),
    ("keywords:existence", {"keywords": ["C++"]}, "I write c++ daily.", True),  # taken literally
    # keywords:frequency - whole-word occurrences vs frequency
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": AT_LEAST}, "Cat, cat and CAT.", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": AT_LEAST}, "cat cats category cat", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LESS}, "One cat.", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LESS}, "cat cat", False),  # 2 < 2 no
    # keywords:forbidden_words
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "awful"]}, "It was fine.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "awful"]}, "Not BAD at all.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "A badge and a badger.", True),  # substrings ok
    # keywords:letter_frequency - case-insensitive letter count
    ("keywords:letter_frequency", {"letter": "e", "let_frequency": 3, "let_relation": AT_LEAST},
     "Eels see.", True),  # E,e,e,e = 4
    ("keywords:letter_frequency", {"letter": "e", "let_frequency": 3, "let_relation": AT_LEAST},
     "Eel!", False),  # 2
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 1, "let_relation": LESS}, "No such.", True),
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 1, "let_relation": LESS}, "zoo", False),
    # language:response_language - langdetect, seeded
    ("language:response_language", {"language": "de"},
     "Heute ist das Wetter sehr schön und wir gehen im Park spazieren.", True),
    ("language:response_language", {"language": "de"},
     "Today the weather is very nice and we are going for a walk in the park.", False),
    ("language:response_language", {"language": "zh"}, "今天天气很好，我们去公园散步吧。", True),  # zh-cn
    ("language:response_language", {"language": "en"}, "1234 5678 !!!", False),  # nothing to detect
    # length_constraints:number_sentences - 3 sentences; the abbreviation does not split
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": AT_LEAST},
     "Dr. Who came. He left! Why?", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LESS},
     "Dr. Who came. He left! Why?", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": LESS}, "Pi is 3.14 exactly.", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST},
     "# Title\nOne line only", True),  # a line break ends a sentence
    # length_constraints:number_paragraphs - exactly N, separated by *** lines
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n\nSecond.", False),  # 1 paragraph
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\nB\n***\nC", False),  # 3
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\n***\nB", False),  # empty between
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nA\n  ***  \nB\n***", True),
    # length_constraints:number_words
    ("length_constraints:number_words", {"num_words": 5, "relation": LESS}, "Four words right here.", True),
    ("length_constraints:number_words", {"num_words": 4, "relation": LESS}, "Four words right here.", False),
    ("length_constraints:number_words", {"num_words": 4, "relation": AT_LEAST}, "Don't stop well-known 3.5 ...",
     True),  # Don't, stop, well-known, 3, 5 = 5
    ("length_constraints:number_words", {"num_words": 1, "relation": AT_LEAST}, "*** --- ...", False),  # 0 words
    # length_constraints:nth_paragraph_first_word - blank-line paragraphs, exact count
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"},
     "Intro here.\n\n**Then** came the end.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "Intro here.\n\nAfter that, the end.", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "intro"},
     "Intro.\n\nTwo.\n\nThree.", False),  # 3 paragraphs, not 2
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 1, "nth_paragraph": 1, "first_word": "so"},
     "Sofa first.", False),  # first word is "sofa"
    # detectable_content:number_placeholders - at least N [..]
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], see [link](x.com) and []",
     False),  # a link and an empty pair are not placeholders
    # detectable_content:postscript
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\nP.S. Bring snacks.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\np. s. see you", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\nP.S. only one.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Mention P.S. inline only.", False),
    # detectable_format:number_bullet_lists - exactly N markdown bullets
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Intro:\n* one\n  - two\nEnd", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n* three", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n**bold**\n---\n-1 degrees", False),  # 1
    # detectable_format:constrained_response
    ("detectable_format:constrained_response", {}, "My answer is yes.", True),
    ("detectable_format:constrained_response", {}, "After thought:  my answer\nis maybe.", True),
    ("detectable_format:constrained_response", {}, "Yes.", False),
    ("detectable_format:constrained_response", {}, "My answer is yes. My answer is no.", False),  # two options
    # detectable_format:number_highlighted_sections - at least N *..* or **..**
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two** here", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "* bullet\n* bullet *x*", False),  # 1
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "** ** and * *", False),
    # detectable_format:multiple_sections - at least N "<splitter> <number>" at line starts
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nHi.\n## Section 2\nBye.", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nSee SECTION 2 below.", False),  # the second is mid-line
    ("detectable_format:multiple_sections", {"section_spliter": "Part", "num_sections": 1}, "Partly 1 done", False),
    # detectable_format:json_format - object or array, optional ``` fence
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, '  [1, 2]  ', True),
    ("detectable_format:json_format", {}, '{"a": 1,}', False),  # trailing comma
    ("detectable_format:json_format", {}, '42', False),  # bare scalar
    ("detectable_format:json_format", {}, 'Result: {"a": 1}', False),
    # detectable_format:title
    ("detectable_format:title", {}, "<<Ode to Joy>>\nText.", True),
    ("detectable_format:title", {}, "<< >> and <<\nbroken>>", False),
    ("detectable_format:title", {}, "Ode to Joy", False),
    # combination:two_responses
    ("combination:two_responses", {}, "First take.\n******\nSecond take.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A\n******\nB\n******\nC", False),
    ("combination:two_responses", {}, "Only one.", False),
    # combination:repeat_prompt (kwarg prompt_to_repeat)
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a  poem about rain."},
     "write a poem about\nrain. Drops fall...", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about rain."}, "Drops fall.", False),
    # startend:end_checker
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done.\nany other questions?  \n", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    # change_case:capital_word_frequency - words with no lower-case letter
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": AT_LEAST},
     "NASA and the ESA agree.", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LESS},
     "NASA and the ESA agree.", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": LESS}, "Nasa 42 agrees.",
     True),  # "42" has no cased letter
    # change_case:english_capital
    ("change_case:english_capital", {}, "THE WEATHER IS LOVELY TODAY AND WE WALK IN THE PARK.", True),
    ("change_case:english_capital", {}, "THE WEATHER IS LOVELY TODAY AND we WALK IN THE PARK.", False),
    ("change_case:english_capital", {}, "DAS WETTER IST HEUTE SEHR SCHÖN UND WIR GEHEN IM PARK SPAZIEREN.", False),
    # change_case:english_lowercase
    ("change_case:english_lowercase", {}, "the weather is lovely today and we walk in the park.", True),
    ("change_case:english_lowercase", {}, "The weather is lovely today and we walk in the park.", False),
    ("change_case:english_lowercase", {}, "das wetter ist heute sehr schön und wir gehen im park spazieren.", False),
    # punctuation:no_comma
    ("punctuation:no_comma", {}, "No commas here. None.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
    ("punctuation:no_comma", {}, "你好，世界", False),  # full-width comma
    # startend:quotation
    ("startend:quotation", {}, ' "Wrapped in quotes." \n', True),
    ("startend:quotation", {}, "\u201cCurly quotes.\u201d", True),
    ("startend:quotation", {}, '"Opened only.', False),
    ("startend:quotation", {}, '"', False),  # one character cannot both open and close
]


@pytest.mark.parametrize("instruction_id,kwargs,response,expected", CASES)
def test_check_instruction_table(instruction_id, kwargs, response, expected):
    assert check_instruction(instruction_id, response, kwargs) is expected


def test_every_instruction_type_has_a_followed_and_a_failed_case():
    assert len(INSTRUCTION_IDS) == 25 and len(set(INSTRUCTION_IDS)) == 25
    outcomes = {}
    for instruction_id, _, _, expected in CASES:
        outcomes.setdefault(instruction_id, set()).add(expected)
    assert set(outcomes) == set(INSTRUCTION_IDS)
    assert all(seen == {True, False} for seen in outcomes.values()), outcomes


def test_repeat_prompt_falls_back_to_the_problem_prompt():
    assert check_instruction("combination:repeat_prompt", "Say hi. Hi!", {"prompt_to_repeat": None}, "Say hi.")
    assert not check_instruction("combination:repeat_prompt", "Hi!", {}, "Say hi.")


def test_language_detection_is_the_same_on_every_call_and_every_run():
    # Unseeded, langdetect answered "auto mobil" with lt 29 times and it 21 times out of 50 calls.
    # Seeded, it is "lt" on every call and (the pinned value) in every process.
    assert {detect_language("auto mobil") for _ in range(30)} == {"lt"}
    assert check_instruction("language:response_language", "auto mobil", {"language": "lt"})


# ------------------------------------------------------------------ helpers

@pytest.mark.parametrize(
    "text,expected",
    [
        ("", []),
        ("One. Two? Three!", ["One.", "Two?", "Three!"]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("See e.g. the U.S. map. Done.", ["See e.g. the U.S. map.", "Done."]),
        ("Wait... what?! Ok", ["Wait...", "what?!", "Ok"]),
        ("中文句子。第二句！", ["中文句子。第二句！"]),  # no space after 。: one sentence (documented limit)
        ("line one\n\n- line two\n***", ["line one", "- line two"]),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [("", 0), ("a", 1), ("snake_case", 2), ("l'amour – naïve café", 3), ("x-y-z --- 1,000", 3)],
)
def test_count_words(text, expected):
    # "snake_case": the underscore is not part of a word; "1,000" is two runs of digits (1 and 000).
    assert count_words(text) == expected


def test_divider_paragraphs_ignores_inline_asterisks():
    assert divider_paragraphs("a *** b\n***bold***") == ["a *** b\n***bold***"]


# ------------------------------------------------------------------ score

def problem(ids, kwargs=None, prompt="Do the thing.", **extra):
    metadata = {"instruction_ids": ids}
    if kwargs is not None:
        metadata["kwargs"] = kwargs
    return Problem("p1", "instruction", prompt, metadata=metadata, source="ifeval.jsonl:7", **extra)


THREE = problem(
    ["punctuation:no_comma", "length_constraints:number_words", "startend:end_checker"],
    [{}, {"num_words": 6, "relation": "less than", "keyword": None}, {"end_phrase": "Bye."}],
)


@pytest.mark.parametrize(
    "response,loose,expected_score,expected_reason",
    [
        ("Short answer. Bye.", False, 1.0, "followed 3/3"),
        ("Short, answer. Bye.", False, 2 / 3, "followed 2/3; failed: punctuation:no_comma"),
        ("A much, much longer answer here. Bye!", False, 0.0,
         "followed 0/3; failed: punctuation:no_comma, length_constraints:number_words, startend:end_checker"),
        ("<think>Hmm, fine, long thoughts.</think>Short answer. Bye.", False, 1.0, "followed 3/3"),
        ("<think>Short answer. Bye.", False, 0.0, "unterminated think"),
        ("", False, 0.0, "empty response"),
        ("<think>x</think>  \n ", False, 0.0, "empty response"),
        # Loose mode: dropping the first line "Sure, here it is:" removes the comma and 4 words.
        ("Sure, here it is:\nShort answer. Bye.", False, 1 / 3, None),
        ("Sure, here it is:\nShort answer. Bye.", True, 1.0, "followed 3/3"),
    ],
)
def test_score_table(response, loose, expected_score, expected_reason):
    # Strict rows go through prorl.verifiers.score, which cuts the think block off (prorl.text.answer_region)
    # before this verifier sees the answer; loose mode exists only on the module's own score.
    verdict = score(THREE, response, loose=True) if loose else prorl.verifiers.score(THREE, response)
    assert verdict.status == "ok"
    assert verdict.score == pytest.approx(expected_score, rel=1e-12)
    if expected_reason is not None:
        assert verdict.reason == expected_reason


def test_loose_mode_removes_markdown_asterisks_and_last_line():
    p = problem(["startend:end_checker"], [{"end_phrase": "The end."}])
    # strict: ends with "**The end.**"; loose: the "*"-free variant ends with "The end."
    assert score(p, "Story.\n**The end.**").score == 0.0
    assert score(p, "Story.\n**The end.**", loose=True).score == 1.0
    # strict fails on the trailing sign-off line; loose drops the last line
    q = problem(["detectable_format:json_format"], [{}])
    assert score(q, '{"a": 1}\nHope this helps!').score == 0.0
    assert score(q, '{"a": 1}\nHope this helps!', loose=True).score == 1.0
    # loose cannot rescue a response that no variant fixes
    assert score(q, "Here:\nnot json\nThanks", loose=True).score == 0.0


def test_an_instruction_listed_twice_counts_twice():
    p = problem(["punctuation:no_comma", "punctuation:no_comma", "detectable_format:title"])  # kwargs omitted
    verdict = score(p, "a, b")
    assert verdict.score == 0.0
    assert verdict.reason == "followed 0/3; failed: punctuation:no_comma, punctuation:no_comma, detectable_format:title"


def test_repeat_prompt_in_score_uses_the_problem_prompt():
    p = problem(["combination:repeat_prompt"], [{}], prompt="Name a fruit.")
    assert score(p, "Name a fruit. Apple.").score == 1.0
    assert score(p, "Apple.").score == 0.0


# ------------------------------------------------------------------ bad metadata

BAD_METADATA = [
    ({"instruction_ids": ["keywords:nope"], "kwargs": [{}]},
     "metadata.instruction_ids[0]: unknown instruction id 'keywords:nope'"),
    ({"instruction_ids": []}, "metadata.instruction_ids: expected a non-empty list"),
    ({}, "metadata.instruction_ids: expected a non-empty list"),
    ({"instruction_ids": ["punctuation:no_comma"], "kwargs": [{}, {}]}, "metadata.kwargs: expected a list of 1"),
    ({"instruction_ids": ["keywords:frequency"], "kwargs": [{"keyword": "a", "relation": "at least"}]},
     "metadata.kwargs[0]: keywords:frequency: missing kwarg(s) frequency"),
    ({"instruction_ids": ["keywords:frequency"],
      "kwargs": [{"keyword": "a", "frequency": 2, "relation": "more than"}]},
     "metadata.kwargs[0]: keywords:frequency: kwarg 'relation': expected one of"),
    ({"instruction_ids": ["length_constraints:number_words"],
      "kwargs": [{"num_words": "many", "relation": "at least"}]},
     "metadata.kwargs[0]: length_constraints:number_words: kwarg 'num_words': expected an integer"),
    ({"instruction_ids": ["punctuation:no_comma"], "kwargs": [{"keywords": ["x"]}]},
     "metadata.kwargs[0]: punctuation:no_comma: unknown kwarg(s) keywords"),
    ({"instruction_ids": ["keywords:letter_frequency"],
      "kwargs": [{"letter": "ab", "let_frequency": 1, "let_relation": "at least"}]},
     "kwarg 'letter': expected a single letter"),
    ({"instruction_ids": ["length_constraints:nth_paragraph_first_word"],
      "kwargs": [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "x"}]},
     "kwarg 'nth_paragraph': 3 is more than num_paragraphs=2"),
]


@pytest.mark.parametrize("metadata,message", BAD_METADATA)
def test_bad_metadata_scores_zero_with_an_error_status(metadata, message):
    p = Problem("p9", "instruction", "x", metadata=metadata, source="data.jsonl:12")
    verdict = score(p, "Some answer.")
    assert (verdict.score, verdict.status) == (0.0, "error")
    assert verdict.reason.startswith("problem 'p9' (data.jsonl:12): metadata")
    assert message in verdict.reason


@pytest.mark.parametrize("metadata,message", BAD_METADATA)
def test_validate_metadata_raises_data_error(metadata, message):
    with pytest.raises(DataError) as info:
        validate_metadata(metadata, "data.jsonl:12: metadata")
    assert message in str(info.value)


def test_check_instruction_raises_on_unknown_id():
    with pytest.raises(DataError, match="unknown instruction id 'x:y'"):
        check_instruction("x:y", "text", {})


def test_kwargs_from_columnar_files_are_coerced():
    # Parquet readers hand back floats for integer columns that have nulls elsewhere.
    kwargs = {"num_words": 3.0, "relation": "less than"}
    assert check_instruction("length_constraints:number_words", "two words", kwargs)
    with pytest.raises(DataError, match="expected an integer"):
        check_instruction("length_constraints:number_words", "two words", {"num_words": 2.5, "relation": "less than"})


def test_a_crashing_check_costs_one_sample(monkeypatch):
    import prorl.verifiers.instructions as module

    def explode(response, kwargs, prompt):
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(module._CHECKS, "startend:quotation", (explode, (), ()))
    verdict = score(problem(["startend:quotation"], [{}]), "text")
    assert verdict == module.Verdict(0.0, "verifier error: ZeroDivisionError: boom", "error")


# ------------------------------------------------------------------ adversarial long answers

ALL_KWARGS = {
    "keywords:existence": {"keywords": ["a"]},
    "keywords:frequency": {"keyword": "a", "frequency": 2, "relation": "at least"},
    "keywords:forbidden_words": {"forbidden_words": ["x"]},
    "keywords:letter_frequency": {"letter": "a", "let_frequency": 2, "let_relation": "at least"},
    "language:response_language": {"language": "en"},
    "length_constraints:number_sentences": {"num_sentences": 2, "relation": "at least"},
    "length_constraints:number_paragraphs": {"num_paragraphs": 2},
    "length_constraints:number_words": {"num_words": 2, "relation": "at least"},
    "length_constraints:nth_paragraph_first_word": {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "a"},
    "detectable_content:number_placeholders": {"num_placeholders": 2},
    "detectable_content:postscript": {"postscript_marker": "P.S."},
    "detectable_format:number_bullet_lists": {"num_bullets": 2},
    "detectable_format:number_highlighted_sections": {"num_highlights": 2},
    "detectable_format:multiple_sections": {"section_spliter": "Section", "num_sections": 2},
    "startend:end_checker": {"end_phrase": "bye"},
    "change_case:capital_word_frequency": {"capital_frequency": 2, "capital_relation": "at least"},
    "combination:repeat_prompt": {"prompt_to_repeat": "hi"},
}
ALL_25 = problem(list(INSTRUCTION_IDS), [ALL_KWARGS.get(i, {}) for i in INSTRUCTION_IDS])


@pytest.mark.parametrize(
    "answer",
    # Each once made a check slow (quadratic regex backtracking) or crash (JSON recursion).
    ["<<" * 25_000, "." * 50_000 + "x", "[" * 25_000 + "]" * 25_000, "a. " * 17_000, "* x *" * 10_000],
    ids=["title-open", "period-run", "nested-json", "many-sentences", "emphasis"],
)
def test_long_adversarial_answers_are_scored_quickly(answer):
    import time

    start = time.perf_counter()
    for loose in (False, True):
        assert score(ALL_25, answer, loose=loose).status == "ok"
    # Linear checks take ~0.05 s here; the quadratic versions took 10 s and more at this size.
    assert time.perf_counter() - start < 3.0


# ------------------------------------------------------------------ end phrase followed by closing quotes

END = {"end_phrase": "Any other questions?"}

END_QUOTE_CASES = [
    # (end_phrase kwargs, response, followed?)
    (END, '"Done. Any other questions?"', True),
    (END, '"Done. Any other questions?" \n', True),
    (END, "\u201cDone. Any other questions?\u201d", True),
    (END, "'Done. Any other questions?'", True),
    (END, "\u2018Done. Any other questions?\u2019", True),
    (END, 'Done. Any other questions? "  ', True),  # space before the closing quote
    (END, "\"'Done. Any other questions?'\"", True),  # nested quotes
    (END, 'Done. any other QUESTIONS?"', True),  # case-insensitive as before
    (END, '"Done. Any other questions?" Bye.', False),  # text after the quote still fails
    (END, '"Done. Any other questions"', False),  # the phrase itself must be complete
    (END, 'Done. Any other questions?".', False),  # only quotes and whitespace are looked past
    (END, '"Done. Any other questions?"**', False),
    ({"end_phrase": 'He said "bye"'}, 'Then he said "bye"', True),  # a phrase ending in a quote
    ({"end_phrase": 'He said "bye"'}, '"Then he said "bye""', True),
    ({"end_phrase": 'He said "bye"'}, 'Then he said bye', False),
]


@pytest.mark.parametrize("kwargs,response,expected", END_QUOTE_CASES)
def test_end_checker_looks_past_closing_quotes(kwargs, response, expected):
    assert check_instruction("startend:end_checker", response, kwargs) is expected


QUOTED_END = problem(["startend:quotation", "startend:end_checker"], [{}, {"end_phrase": "Is there anything else?"}])


@pytest.mark.parametrize(
    "response,expected_score",
    [
        ('"Here is my answer. Is there anything else?"', 1.0),
        ('<think>quote it, end with the phrase</think>\n"Here is my answer. Is there anything else?"\n', 1.0),
        ("\u201cHere is my answer. Is there anything else?\u201d", 1.0),
        ('"Here is my answer. Is there anything else? "', 1.0),
        ('"Here is my answer." Is there anything else?', 0.5),  # ends with the phrase, not quoted
        ('Here is my answer. Is there anything else?', 0.5),
        ('"Here is my answer. Anything else?"', 0.5),  # quoted, wrong phrase
        ('"Here is my answer."', 0.5),
        ('Here is my answer.', 0.0),
    ],
)
def test_quotation_and_end_phrase_together(response, expected_score):
    verdict = prorl.verifiers.score(QUOTED_END, response)
    assert verdict.status == "ok"
    assert verdict.score == pytest.approx(expected_score, rel=1e-12)

"""Table tests of prorl.verifiers.stem: option letters, several options, numbers within tolerance.

The tables go through the dispatch (prorl.verifiers.score), which cuts the answer region first.
"""

from __future__ import annotations

import math

import pytest

from prorl.data.schema import Problem
from prorl.verifiers import Verdict, safe_score, score
from prorl.verifiers.stem import DEFAULT_REL_TOL, leading_options, numbers_in


def problem(answer: str, **metadata) -> Problem:
    return Problem(id="s", domain="stem", prompt="?", answer=answer, metadata=metadata)


CHOICE_CASES = [
    # (ground truth, response, score, reason)
    ("B", "\\boxed{B}", 1.0, "correct"),
    ("B", "\\boxed{(B)}", 1.0, "correct"),
    ("B", "\\boxed{\\text{B}}", 1.0, "correct"),
    ("B", "\\boxed{b}", 1.0, "correct"),
    ("B", "\\boxed{B. neutron}", 1.0, "correct"),
    ("B", "\\boxed{C}", 0.0, "wrong: got C"),
    ("B", "The answer is (B).", 1.0, "correct"),
    ("B", "the correct answer is B because neutrons are neutral", 1.0, "correct"),
    ("B", "Answer: B", 1.0, "correct"),
    ("B", "ANSWER: (b)", 1.0, "correct"),
    ("J", "Answer: J", 1.0, "correct"),
    ("b", "Answer: B", 1.0, "correct"),  # a lower-case ground truth is the same option
    # the final answer counts: the last box, else the last phrase
    ("B", "\\boxed{A} ... on reflection \\boxed{B}", 1.0, "correct"),
    ("B", "Answer: B. Wait, no. Answer: C", 0.0, "wrong: got C"),
    ("B", "Answer: C\n\\boxed{B}", 1.0, "correct"),  # a box beats a phrase
    ("B", "<think>Answer: B</think>Answer: D", 0.0, "wrong: got D"),
    ("B", "<think>Answer: B", 0.0, "unterminated think"),
    # several options never earn the reward
    ("B", "\\boxed{A, B}", 0.0, "several options"),
    ("B", "\\boxed{B,C}", 0.0, "several options"),
    ("B", "Answer: A or B", 0.0, "several options"),
    ("B", "The answer is B and C", 0.0, "several options"),
    ("B", "\\boxed{A/B/C/D}", 0.0, "several options"),
    ("B", "\\boxed{B, B}", 1.0, "correct"),  # the same option twice is one option
    # nothing usable
    ("B", "I am not sure.", 0.0, "no answer found"),
    ("B", "the answer is a neutron", 0.0, "unparseable answer"),
    ("B", "\\boxed{K}", 0.0, "unparseable answer"),
    ("B", "\\boxed{}", 0.0, "unparseable answer"),
    ("B", "", 0.0, "no answer found"),
]


@pytest.mark.parametrize("answer, response, expected_score, reason", CHOICE_CASES)
def test_multiple_choice(answer, response, expected_score, reason):
    assert score(problem(answer), response) == Verdict(expected_score, reason)


NUMERIC_CASES = [
    # (ground truth, response, metadata, score, reason)
    ("80", "\\boxed{80}", {}, 1.0, "correct"),
    ("80", "\\boxed{80.0 km/h}", {}, 1.0, "correct"),
    ("80", "\\boxed{80.79}", {}, 1.0, "correct"),  # |0.79| <= 0.01 * 80 = 0.8
    ("80", "\\boxed{80.81}", {}, 0.0, "wrong: got 80.81"),  # 0.81 > 0.8
    ("80", "\\boxed{79.21}", {}, 1.0, "correct"),
    ("80", "\\boxed{81}", {"rel_tol": 0.02}, 1.0, "correct"),  # 1 <= 0.02 * 80 = 1.6
    ("80", "\\boxed{80.5}", {"rel_tol": 0.001}, 0.0, "wrong: got 80.5"),  # 0.5 > 0.08
    ("-3.5", "\\boxed{-3.5}", {}, 1.0, "correct"),
    ("-3.5", "\\boxed{3.5}", {}, 0.0, "wrong: got 3.5"),
    ("0.25", "\\boxed{\\frac{1}{4}}", {}, 1.0, "correct"),
    ("0.25", "\\boxed{1/4}", {}, 1.0, "correct"),
    ("3e8", "\\boxed{3 \\times 10^{8}}", {}, 1.0, "correct"),
    ("3e8", "\\boxed{2.98 \\times 10^8 m/s}", {}, 1.0, "correct"),
    ("1200", "\\boxed{1,200}", {}, 1.0, "correct"),
    ("1200", "Answer: 1200 J", {}, 1.0, "correct"),
    ("2", "The answer is 2.", {}, 1.0, "correct"),
    ("0", "\\boxed{0}", {}, 1.0, "correct"),
    ("0", "\\boxed{0.0001}", {}, 0.0, "wrong: got 0.0001"),  # relative tolerance of 0 is 0 (documented)
    ("2", "\\boxed{2, 3}", {}, 0.0, "several numbers"),
    ("2", "\\boxed{two}", {}, 0.0, "unparseable answer"),
    ("2", "no number", {}, 0.0, "no answer found"),
]


@pytest.mark.parametrize("answer, response, metadata, expected_score, reason", NUMERIC_CASES)
def test_numeric(answer, response, metadata, expected_score, reason):
    assert score(problem(answer, **metadata), response) == Verdict(expected_score, reason)


def test_default_tolerance_is_one_percent():
    assert DEFAULT_REL_TOL == 1e-2


@pytest.mark.parametrize("text, expected", [
    ("A", ["A"]), ("(C)", ["C"]), ("A, C", ["A", "C"]), ("A and B", ["A", "B"]), ("c.", ["C"]),
    ("a neutron", []), ("Z", []), ("AB", []), ("", []),
])
def test_leading_options(text, expected):
    assert leading_options(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("5", [5.0]), ("-2.5e-3", [-0.0025]), ("\\frac{3}{4}", [0.75]), ("1,000,000", [1e6]),
    ("3 \\times 10^{-2}", [0.03]), ("x1", []), ("2 and 3", [2.0, 3.0]),
])
def test_numbers_in(text, expected):
    assert numbers_in(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("answer", ["", "maybe", "1 or 2"])
def test_bad_ground_truth_is_an_error(answer):
    assert safe_score(problem(answer), "\\boxed{1}").status == "error"


# ---- a sign before a fraction, a root or a bracket applies to the number

SIGN_CASES = [
    # (response, the number it holds); each is checked against that number (1) and its negation (0)
    ("\\boxed{-\\frac{1}{2}}", -0.5),
    ("\\boxed{-\\dfrac{1}{2}}", -0.5),
    ("\\boxed{-\\tfrac{1}{2}}", -0.5),
    ("\\boxed{- \\frac{3}{4}}", -0.75),
    ("\\boxed{-\\frac12}", -0.5),
    ("\\boxed{\\frac{-1}{2}}", -0.5),
    ("\\boxed{-\\frac{-1}{2}}", 0.5),
    ("\\boxed{-\\sqrt{2}}", -math.sqrt(2)),
    ("\\boxed{-2\\sqrt{3}}", -2 * math.sqrt(3)),
    ("\\boxed{-\\frac{\\sqrt{3}}{2}}", -math.sqrt(3) / 2),
    ("\\boxed{-(3)}", -3.0),
    ("\\boxed{-(-3)}", 3.0),
    ("\\boxed{-\\left(\\frac{1}{2}\\right)}", -0.5),
    ("\\boxed{-\\left( 2.5 \\right)}", -2.5),
    ("\\boxed{-[4]}", -4.0),
    ("\\boxed{\u2212\\frac{1}{2}}", -0.5),  # Unicode minus
    ("\\boxed{\u22122.5}", -2.5),
    ("Answer: \u22123 m/s", -3.0),
    ("Answer: $-\\frac{1}{4}$", -0.25),
    ("\\boxed{-\\frac{1}{2} \\text{ J}}", -0.5),
    ("\\boxed{-1/2}", -0.5),
    ("\\boxed{-3 \\times 10^{8}}", -3e8),
]


@pytest.mark.parametrize("response, value", SIGN_CASES)
def test_a_sign_before_a_fraction_root_or_bracket_counts(response, value):
    assert score(problem(repr(value)), response) == Verdict(1.0, "correct")
    assert score(problem(repr(-value)), response).score == 0.0


def test_a_negative_ground_truth_in_latex_is_read_with_its_sign():
    assert score(problem("-\\frac{1}{2}"), "\\boxed{-0.5}") == Verdict(1.0, "correct")
    assert score(problem("-\\frac{1}{2}"), "\\boxed{0.5}").score == 0.0


# ---- a unit's exponent is part of the unit, not of the number

UNIT_CASES = [
    # (ground truth, response); each also checked against a ground truth 10x off (0)
    ("9.8", "\\boxed{9.8 m/s^2}"),
    ("9.8", "\\boxed{9.8\\ \\text{m/s}^2}"),
    ("9.8", "\\boxed{9.8 \\, \\mathrm{m\\,s^{-2}}}"),
    ("9.8", "\\boxed{9.8 m/s\u00b2}"),
    ("5", "\\boxed{5 cm^3}"),
    ("5", "\\boxed{5 \\text{cm}^{3}}"),
    ("3", "\\boxed{3 \\text{ m}^2}"),
    ("2", "\\boxed{2 kg\u00b7m^2}"),
    ("2", "\\boxed{2 \\mathrm{kg \\cdot m^2}}"),
    ("4", "\\boxed{4 m^{-1}}"),
    ("0.5", "\\boxed{\\frac{1}{2} \\text{ m}^2}"),
    ("1200", "Answer: 1,200 J/m^3"),
    ("6.02e23", "\\boxed{6.02 \\times 10^{23}\\ \\text{mol}^{-1}}"),
    ("8.99e9", "\\boxed{8.99 \\times 10^9 \\text{ N m}^2/\\text{C}^2}"),
    ("1e-3", "\\boxed{10^{-3} m^3}"),
]


@pytest.mark.parametrize("answer, response", UNIT_CASES)
def test_a_unit_exponent_is_not_part_of_the_number(answer, response):
    assert score(problem(answer), response) == Verdict(1.0, "correct")
    assert score(problem(repr(float(answer) * 10)), response).score == 0.0


# ---- scientific notation and powers

SCIENTIFIC_CASES = [
    ("3e8", "\\boxed{3 \u00d7 10^8}"),
    ("3e8", "\\boxed{3\u00d710^{8}}"),
    ("3e8", "\\boxed{3 \\times 10^8}"),
    ("3e8", "\\boxed{3 \\cdot 10^{8}}"),
    ("3e8", "\\boxed{3\u00b710^8}"),
    ("3e8", "Answer: 3 x 10^8 m/s"),
    ("3e8", "Answer: $3 \\times 10^{8}$ m/s"),
    ("3e8", "\\boxed{3e8}"),
    ("1e-3", "\\boxed{10^{-3}}"),
    ("1e-3", "\\boxed{1e-3}"),
    ("1e-3", "Answer: 10^-3"),
    ("1e-3", "\\boxed{1 \\times 10^{-3}}"),
    ("1e-3", "\\boxed{1.0E-3}"),
    ("1.6e-19", "\\boxed{1.6 \\times 10^{-19} \\text{ C}}"),
    ("1024", "\\boxed{2^{10}}"),
    ("1e6", "\\boxed{10^6}"),
]


@pytest.mark.parametrize("answer, response", SCIENTIFIC_CASES)
def test_scientific_notation(answer, response):
    assert score(problem(answer), response) == Verdict(1.0, "correct")
    assert score(problem(repr(float(answer) * 10)), response).score == 0.0
    assert score(problem(repr(-float(answer))), response).score == 0.0


# ---- hedges: two or more different options never earn the reward

HEDGE_CASES = [
    "Answer: B or maybe C",
    "Answer: B or C",
    "\\boxed{B/C}",
    "\\boxed{B or C}",
    "Answer: either B or D",
    "Answer: B and C",
    "Answer: B (or possibly C)",
    "Answer: probably B, perhaps C",
    "The answer is **B** or **C**.",
    "Answer: (B) or (C)",
    "Answer: C or B",
    "Answer: I think B or maybe C",
    "\\boxed{\\text{B or C}}",
    "Answer: B, C, or D",
    "Answer: B | C",
]


@pytest.mark.parametrize("response", HEDGE_CASES)
def test_a_hedge_naming_two_options_scores_zero(response):
    assert score(problem("B"), response) == Verdict(0.0, "several options")
    assert score(problem("C"), response) == Verdict(0.0, "several options")


def test_a_hedge_with_a_letter_the_problem_does_not_list_is_still_a_hedge():
    listed = Problem(id="s", domain="stem", prompt="Q?\nA. x\nB. y\nC. z\nD. w", answer="B")
    for response in ("Answer: E or B", "Answer: B or E", "\\boxed{B, E}"):
        assert score(listed, response) == Verdict(0.0, "several options")


# ---- which letter is the option: pronouns, articles, the problem's own letters

def listed(answer: str, letters: str = "ABCD") -> Problem:
    options = "\n".join(f"{c}. option {c}" for c in letters)
    return Problem(id="s", domain="stem", prompt=f"Which one?\n{options}\nAnswer with a letter.", answer=answer)


LETTER_CASES = [
    # (ground truth, response, score, reason): with the full A-J range and with a problem listing A-D
    ("C", "Answer: I think it is C", 1.0, "correct"),
    ("C", "Answer: I believe C", 1.0, "correct"),
    ("C", "Answer: I guess C.", 1.0, "correct"),
    ("C", "Answer: I would say C", 1.0, "correct"),
    ("C", "Answer: I am fairly sure it is C", 1.0, "correct"),
    ("C", "Answer: I'd go with C", 1.0, "correct"),
    ("C", "Answer: I'm confident: C", 1.0, "correct"),
    ("C", "The answer is, I think, C", 1.0, "correct"),
    ("D", "Answer: I think it is C", 0.0, "wrong: got C"),
    ("B", "Answer: B because option C is wrong", 1.0, "correct"),
    ("B", "Answer: B, not C", 1.0, "correct"),
    ("B", "Answer: B. A neutron has no charge.", 1.0, "correct"),
    ("A", "Answer: A because it is neutral", 1.0, "correct"),
    ("A", "Answer: A is correct", 1.0, "correct"),
    ("A", "Answer: A neutron", 1.0, "correct"),  # weak A, nothing else named: the last weak letter
    ("B", "Answer: A neutron, so B", 1.0, "correct"),  # "A" before a noun is an article
    ("C", "Answer: a neutron, which is C", 1.0, "correct"),
    ("B", "Answer: A neutron", 0.0, "wrong: got A"),
    ("B", "Answer: It's B", 1.0, "correct"),
    ("B", "Answer: the neutron, B", 1.0, "correct"),
]


@pytest.mark.parametrize("answer, response, expected_score, reason", LETTER_CASES)
def test_which_letter_is_the_option(answer, response, expected_score, reason):
    assert score(problem(answer), response) == Verdict(expected_score, reason)
    assert score(listed(answer), response) == Verdict(expected_score, reason)


def test_option_i_is_still_read_when_the_problem_has_it():
    ten = listed("I", "ABCDEFGHIJ")
    for response in ("Answer: I", "Answer: I.", "\\boxed{I}", "Answer: (I)", "Answer: I is correct", "Answer: I)"):
        assert score(ten, response) == Verdict(1.0, "correct"), response
    assert score(ten, "Answer: I think it is C") == Verdict(0.0, "wrong: got C")


def test_letters_come_from_choices_or_the_listed_options():
    with_choices = Problem(id="s", domain="stem", prompt="?", answer="B", metadata={"choices": ["x", "y", "z"]})
    assert score(with_choices, "Answer: I think B") == Verdict(1.0, "correct")
    assert score(with_choices, "Answer: B or D") == Verdict(0.0, "several options")
    assert score(listed("B"), "Answer: F") == Verdict(0.0, "unparseable answer")  # F is no option here
    assert score(listed("B"), "Answer: E is my pick") == Verdict(0.0, "unparseable answer")


# ---- answer markup a careful grader accepts

MARKUP_CASES = [
    "**B**", "Answer: **B**", "**Answer:** B", "**Answer: B**", "Answer: __B__", "Answer: *B*",
    "\\boxed{\\textbf{B}}", "\\boxed{\\text{B}}", "\\boxed{\\mathrm{B}}", "\\boxed{\\mathbf{B}}",
    "\\boxed{\\text{(B)}}", "\\boxed{\\text{B. neutron}}", "Answer: Option B", "Answer: option (B)",
    "The answer is option (B).", "Answer: $B$", "Answer: $\\text{B}$", "Answer: (B)", "Answer: B)",
    "The correct answer is: **(B)**", "Answer: `B`", "\\boxed{\\text{Option B}}",
]


@pytest.mark.parametrize("response", MARKUP_CASES)
def test_answer_markup(response):
    if "Answer" not in response and "answer" not in response and "boxed" not in response:
        response = f"The answer is {response}"
    assert score(problem("B"), response) == Verdict(1.0, "correct")
    assert score(problem("C"), response) == Verdict(0.0, "wrong: got B")
    assert score(listed("B"), response) == Verdict(1.0, "correct")


@pytest.mark.parametrize("text, expected", [
    ("\\frac{10^3}{2}", [500.0]), ("\\frac{\\frac{1}{2}}{4}", [0.125]), ("\\frac{\\sqrt{3}}{2}", [math.sqrt(3) / 2]),
    ("\\sqrt 9", [3.0]), ("2^{-1}", [0.5]), ("-2^{2}", [-4.0]), ("5 \\text{m^{2}}", [5.0]), ("- - 3", [3.0]),
    ("3 x 10^{8} and 2", [3e8, 2.0]), ("9^9^9^9", []), ("1/0", []),
])
def test_numbers_in_written_forms(text, expected):
    assert numbers_in(text) == pytest.approx(expected, rel=1e-12)

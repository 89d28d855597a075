"""Table tests of prorl.verifiers.stem: option letters, several options, numbers within tolerance.

The tables go through the dispatch (prorl.verifiers.score), which cuts the answer region first.
"""

from __future__ import annotations

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

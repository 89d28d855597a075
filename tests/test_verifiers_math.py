"""Table tests of prorl.verifiers.math and the dispatch in prorl.verifiers: right, wrong, unparseable, adversarial.

The cases go through the dispatch (prorl.verifiers.score), which cuts the answer region first; reading
``\\boxed{}`` itself is tested with prorl.text in tests/test_text.py.
"""

from __future__ import annotations

import threading

import pytest

from prorl.data.schema import Problem
from prorl.errors import DataError
from prorl.verifiers import VERIFIERS, Verdict, safe_score, score
from prorl.verifiers import math as math_verifier


def problem(answer: str, domain: str = "math") -> Problem:
    return Problem(id="p", domain=domain, prompt="?", answer=answer)


CASES = [
    # (ground truth, response, score, reason)
    ("42", "so \\boxed{42}", 1.0, "correct"),
    ("42", "\\boxed{41}", 0.0, "wrong: got 41"),
    ("\\frac{1}{2}", "\\boxed{0.5}", 1.0, "correct"),
    ("\\frac{1}{2}", "\\boxed{\\frac{2}{4}}", 1.0, "correct"),
    ("\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", 1.0, "correct"),
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}", 0.0, "wrong: got \\frac{1}{3}"),
    ("0.5", "\\boxed{1/2}", 1.0, "correct"),
    ("\\sqrt{2}", "\\boxed{\\sqrt{2}}", 1.0, "correct"),
    ("\\sqrt{2}", "\\boxed{1.41}", 0.0, "wrong: got 1.41"),
    ("x^2+2x+1", "\\boxed{(x+1)^2}", 1.0, "correct"),
    ("42", "\\fbox{42}", 1.0, "correct"),
    ("42", "\\boxed {42}", 1.0, "correct"),
    # the LAST box counts, nested braces are matched
    ("42", "first \\boxed{41}, finally \\boxed{42}", 1.0, "correct"),
    ("42", "first \\boxed{42}, finally \\boxed{41}", 0.0, "wrong: got 41"),
    ("\\frac{3}{4}", "\\boxed{\\frac{\\sqrt{9}}{4}}", 1.0, "correct"),
    # only the text after the last </think>
    ("42", "<think>\\boxed{42}</think> I give up.", 0.0, "no \\boxed{} answer"),
    ("42", "<think>\\boxed{41}</think>\\boxed{42}", 1.0, "correct"),
    ("42", "<think>a</think><think>b</think>\\boxed{42}", 1.0, "correct"),
    ("42", "<think>\\boxed{42}", 0.0, "unterminated think"),  # reasoning that never ends has no answer
    # no box, empty box, unclosed box, garbage
    ("42", "The answer is 42.", 0.0, "no \\boxed{} answer"),
    ("42", "\\boxed{}", 0.0, "unparseable answer"),
    ("42", "\\boxed{42", 0.0, "no \\boxed{} answer"),
    ("42", "\\boxed{\\%\\&}", 0.0, "unparseable answer"),
    ("42", "", 0.0, "no \\boxed{} answer"),
]


@pytest.mark.parametrize("answer, response, expected_score, reason", CASES)
def test_math_cases(answer, response, expected_score, reason):
    verdict = score(problem(answer), response)
    assert verdict == Verdict(expected_score, reason), verdict


def test_a_long_adversarial_answer_is_scored_wrong_not_fatal():
    verdict = safe_score(problem("2"), "\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}")
    assert verdict.score == 0.0 and verdict.status in ("ok", "error")


@pytest.mark.parametrize("answer", ["", "   "])
def test_missing_ground_truth_is_an_error_not_a_wrong_answer(answer):
    verdict = safe_score(problem(answer), "\\boxed{1}")
    assert verdict.status == "error" and "has no answer" in verdict.reason


def test_a_text_ground_truth_matches_its_string():
    assert score(problem("\\text{Monday}"), "\\boxed{\\text{Monday}}").score == 1.0


def test_scoring_from_a_thread_disables_math_verify_signals():
    # math-verify's signal-based timeout raises outside the main thread; the verifier switches it off there.
    out = []
    thread = threading.Thread(target=lambda: out.append(score(problem("\\frac{1}{2}"), "\\boxed{0.5}")))
    thread.start()
    thread.join(30)
    assert out == [Verdict(1.0, "correct")]


# ---- dispatch

def test_dispatch_table_covers_every_domain():
    from prorl.data.schema import DOMAINS

    assert set(VERIFIERS) == set(DOMAINS)


def test_unknown_domain_raises_a_clear_error_and_safe_score_contains_it():
    with pytest.raises(DataError, match="no verifier for 'poetry'; expected one of math, code"):
        score(problem("1", domain="poetry"), "x")
    assert safe_score(problem("1", domain="poetry"), "x").status == "error"


def test_out_of_range_scores_are_refused(monkeypatch):
    monkeypatch.setattr(math_verifier, "score", lambda p, r: Verdict(1.5, "too generous"))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        score(problem("1"), "x")
    monkeypatch.setattr(math_verifier, "score", lambda p, r: Verdict(float("nan"), "nan"))
    assert safe_score(problem("1"), "x").status == "error"


def test_importing_verifiers_is_light():
    import subprocess
    import sys

    code = ("import sys, prorl.verifiers; heavy = [m for m in ('torch', 'math_verify', 'reasoning_gym', 'sympy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_any_listed_answer_is_accepted():
    # verl-format rows may list several acceptable ground truths; the first is `answer`, all are in metadata.
    p = Problem(id="m", domain="math", prompt="?", answer="\\frac{1}{2}", metadata={"answers": ["\\frac{1}{2}", "50\\%"]})
    assert math_verifier.score(p, "\\boxed{0.5}").score == 1.0
    assert math_verifier.score(p, "\\boxed{50\\%}").score == 1.0
    assert math_verifier.score(p, "\\boxed{0.3}").score == 0.0

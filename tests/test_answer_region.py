"""One answer-region rule for every domain, applied by prorl.verifiers.score before the domain's verifier.

Each domain gets a small real problem with a right and a wrong answer; the same response shapes are
scored for all five: no think tag, one terminated think block, several ``</think>``, an unterminated
``<think>``, and the right answer only inside the reasoning. The rule itself is tabulated in
tests/test_text.py.
"""

from __future__ import annotations

import importlib

import pytest

from prorl.data.reasoning_gym import build_problems
from prorl.data.schema import Problem
from prorl.errors import DataError
from prorl.verifiers import VERIFIERS, Verdict, score
from prorl.verifiers.pool import DEFAULT_SCORE_FN, ScoringPool


def _logic_problem() -> Problem:
    [problem] = build_problems(["basic_arithmetic"], size=1, seed=0, split="train")
    return problem


DOMAINS = {
    # domain: (problem factory, right answer, wrong answer, reason when the region holds nothing)
    "math": (lambda: Problem("m", "math", "What is 1 + 1?", answer="2"),
             "So \\boxed{2}.", "So \\boxed{3}.", "no \\boxed{} answer"),
    "stem": (lambda: Problem("s", "stem", "Which has no charge?\nA. electron\nB. neutron\nC. proton", answer="B",
                             metadata={"choices": ["electron", "neutron", "proton"]}),
             "The answer is \\boxed{B}.", "The answer is \\boxed{C}.", "no answer found"),
    "code": (lambda: Problem("c", "code", "Read n, print n + 1.", tests={"inputs": ["1\n"], "outputs": ["2\n"]}),
             "```python\nprint(int(input()) + 1)\n```", "```python\nprint(0)\n```", "no code block"),
    "logic": (_logic_problem, None, "<answer>zzz</answer>", "no <answer> tag"),  # right: the problem's own answer
    "instruction": (lambda: Problem("i", "instruction", "Describe rain without commas.",
                                    metadata={"instruction_ids": ["punctuation:no_comma"], "kwargs": [{}]}),
                    "Rain falls softly on the roof", "Rain falls, softly, on the roof", "empty response"),
}

SHAPES = [
    # (id, response from (right, wrong), expected score, expected reason or None)
    ("a-no-think-right", lambda r, w: r, 1.0, None),
    ("a-no-think-wrong", lambda r, w: w, 0.0, None),
    ("b-terminated", lambda r, w: f"<think>First try: {w}</think>{r}", 1.0, None),
    ("b-terminated-wrong-after", lambda r, w: f"<think>{r}</think>{w}", 0.0, None),
    ("c-several-right-last", lambda r, w: f"<think>hm</think>{w}</think>{r}", 1.0, None),
    ("c-several-right-before-last", lambda r, w: f"<think>hm</think>{r}</think>{w}", 0.0, None),
    ("d-unterminated", lambda r, w: f"<think>{r}", 0.0, "unterminated think"),
    ("d-reopened", lambda r, w: f"<think>hm</think>{r}<think>on second thought", 0.0, "unterminated think"),
    ("e-right-only-in-think", lambda r, w: f"<think>{r}</think>", 0.0, "nothing"),
]


@pytest.fixture(scope="module")
def cases():
    built = {}
    for domain, (make, right, wrong, nothing) in DOMAINS.items():
        problem = make()
        built[domain] = (problem, right if right is not None else f"<answer>{problem.answer}</answer>", wrong, nothing)
    return built


@pytest.mark.parametrize("shape, respond, expected_score, expected_reason", SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_domain_follows_the_one_rule(cases, domain, shape, respond, expected_score, expected_reason):
    problem, right, wrong, nothing = cases[domain]
    verdict = score(problem, respond(right, wrong))
    assert verdict.status == "ok", verdict
    assert verdict.score == expected_score, verdict
    if expected_reason == "nothing":  # the verifier was handed an empty region
        assert verdict.reason == nothing, verdict
    elif expected_reason is not None:
        assert verdict.reason == expected_reason, verdict


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_an_unterminated_response_never_reaches_the_domain_verifier(cases, domain, monkeypatch):
    def must_not_run(problem, response):
        raise AssertionError(f"{domain} verifier called with {response!r}")

    monkeypatch.setattr(importlib.import_module(VERIFIERS[domain]), "score", must_not_run)
    problem, right, _, _ = cases[domain]
    assert score(problem, f"<think>{right}") == Verdict(0.0, "unterminated think", "ok")


def test_an_unterminated_response_is_not_checked_against_bad_data():
    # The verifier is not called, so a problem it would reject (no ground truth) is not noticed here.
    assert score(Problem("m", "math", "?", answer=""), "<think>\\boxed{2}") == Verdict(0.0, "unterminated think")


def test_an_unknown_domain_is_refused_before_the_region_is_read():
    with pytest.raises(DataError, match="no verifier for 'poetry'"):
        score(Problem("x", "poetry", "?"), "<think>never closed")


def test_the_pool_scores_through_the_rule(cases):
    assert DEFAULT_SCORE_FN == "prorl.verifiers:score"  # what workers call
    problem, right, _, _ = cases["math"]
    with ScoringPool(0) as pool:
        verdicts = pool.score_batch([problem, problem], [f"<think>x</think>{right}", f"<think>{right}"])
    assert verdicts == [Verdict(1.0, "correct"), Verdict(0.0, "unterminated think")]

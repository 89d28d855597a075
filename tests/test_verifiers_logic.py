"""Tests of prorl.verifiers.logic: real task scorers on <answer> text, the fixed scorers, the risky tasks.

Problems are built with prorl.data.reasoning_gym (its own tests: tests/test_reasoning_gym.py).
"""

from __future__ import annotations

import json

import pytest

from prorl.data.reasoning_gym import build_problems, split_seed
from prorl.data.schema import Problem
from prorl.verifiers import Verdict
from prorl.verifiers import logic


def built(task, **kwargs) -> Problem:
    [problem] = build_problems([task], size=1, seed=kwargs.pop("seed", 0), split=kwargs.pop("split", "train"))
    return problem


def roundtrip(problem: Problem) -> Problem:
    row = json.loads(json.dumps(problem.to_dict()))
    return Problem(**row)


# ---- scoring real tasks (hand-checked partial credit: the default scorer gives len(oracle) / len(answer)
#      when the oracle is inside the answer)

@pytest.mark.parametrize("task", ["basic_arithmetic", "chain_sum", "leg_counting", "spell_backward"])
def test_real_tasks_right_wrong_missing(task):
    p = roundtrip(built(task))
    assert logic.score(p, f"<think>hm</think><answer>{p.answer}</answer>") == Verdict(1.0, "correct")
    assert logic.score(p, f"<answer> {p.answer}\n</answer>").score == 1.0  # stripped
    assert logic.score(p, "<answer>zzz</answer>") == Verdict(0.0, "wrong: got zzz")
    assert logic.score(p, f"the answer is {p.answer}") == Verdict(0.0, "no <answer> tag")
    assert logic.score(p, f"<answer>{p.answer}</answer> ... <answer>zzz</answer>").score == 0.0  # the last tag


def test_partial_credit_and_binarize():
    p = built("leg_counting")
    response = f"<answer>{p.answer} x</answer>"
    expected = len(p.answer) / (len(p.answer) + 2)  # oracle inside a longer answer
    verdict = logic.score(p, response)
    assert verdict.score == pytest.approx(expected, rel=1e-12) and verdict.reason.startswith("partial")
    assert logic.score(p, response, binarize=True) == Verdict(0.0, f"wrong: got {p.answer} x")
    assert logic.score(p, f"<answer>{p.answer}</answer>", binarize=True).score == 1.0


def test_bad_metadata_raises():
    with pytest.raises(ValueError, match="metadata needs 'task'"):
        logic.score(Problem(id="x", domain="logic", prompt="?"), "<answer>1</answer>")


def test_adapter_rows_score_too():
    from prorl.data.adapters import from_reasoning_gym

    entry = {"question": "Calculate 5 - 3 - 6.", "answer": "-4",
             "metadata": {"source_dataset": "basic_arithmetic", "source_index": 0, "expression": "5 - 3 - 6"}}
    p = from_reasoning_gym(entry, default_id="x")
    assert logic.score(p, "<answer>-4</answer>").score == 1.0


# ---- game_of_life_halting: the library scorer rewards any non-empty answer; ours scores against the truth

def test_game_of_life_halting_library_scorer_rewards_anything_and_ours_does_not():
    import reasoning_gym

    p = built("game_of_life_halting")
    library = reasoning_gym.get_score_answer_fn("game_of_life_halting")
    wrong = "False" if p.answer == "True" else "True"
    assert library("banana", p.metadata["entry"]) == 1.0  # the claim, checked
    assert library(wrong, p.metadata["entry"]) == 1.0
    assert logic.score(p, f"<answer>{p.answer}</answer>").score == 1.0
    assert logic.score(p, f"<answer> {p.answer.lower()} </answer>").score == 1.0
    assert logic.score(p, f"<answer>{wrong}</answer>").score == 0.0
    assert logic.score(p, "<answer>banana</answer>").score == 0.0


# ---- risky tasks: isolated with a deadline

def test_risky_task_scores_correctly_in_isolation():
    p = roundtrip(built("countdown"))
    assert "countdown" in logic.RISKY_TASKS
    assert logic.score(p, f"<answer>{p.answer}</answer>") == Verdict(1.0, "correct")
    assert logic.score(p, "<answer>1 + 1</answer>").score == pytest.approx(0.05, abs=1e-12)  # numbers not used


def test_risky_task_that_never_returns_is_cut_at_the_deadline():
    p = built("countdown")
    verdict = logic.score(p, "<answer>9**9**9**9</answer>", isolated_timeout_s=4.0)
    assert verdict == Verdict(0.0, "scorer timeout after 4s", status="timeout")


def test_eval_of_model_text_cannot_write_host_files(tmp_path):
    # string_insertion's scorer eval()s answers that are not the exact string; in the sandbox the
    # host's directories are not mounted, so the write fails inside the scorer (which then gives 0).
    target = tmp_path / "pwned"
    p = built("string_insertion")
    verdict = logic.score(p, f"<answer>open({str(target)!r}, 'w').write('x') or 'ab'</answer>")
    assert verdict.score == 0.0
    assert not target.exists()


def test_under_the_sandboxs_weakest_isolation_the_deadline_still_holds(monkeypatch):
    # The isolated scorer has no process launcher of its own: forced down to "rlimit-only" (no bwrap,
    # no cgroup), the one sandbox still scores and still enforces the deadline.
    from prorl.verifiers.sandbox import probe

    weak = probe._Setup("rlimit-only", None, None, (), "bubblewrap not found (forced by a test)", probe._can_drop_uid())
    monkeypatch.setattr(probe, "_probe", lambda: weak)
    monkeypatch.setattr(probe, "_setup", None)
    p = built("countdown")
    with pytest.warns(RuntimeWarning, match="rlimit-only"):
        assert logic.score(p, f"<answer>{p.answer}</answer>").score == 1.0
    assert logic.score(p, "<answer>9**9**9**9</answer>", isolated_timeout_s=4.0).status == "timeout"


# ---- every task: entries survive a JSONL round trip and their oracle answer keeps its score

def test_every_task_round_trips_through_json():
    # The scorer must give the oracle answer the same score on the raw entry (tuples, as generated)
    # and on the stored one (after build_problems' and a JSONL round trip). "composite" needs a list of
    # datasets as settings and is skipped.
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    failures = []
    for task in sorted(set(DATASETS) - {"composite"}):
        try:
            raw = reasoning_gym.create_dataset(task, size=2, seed=split_seed(1, "train"))
            problems = [roundtrip(p) for p in build_problems([task], size=2, seed=1, split="train")]
            for index, p in enumerate(problems):
                entry = raw[index]
                if entry.get("answer") is None:
                    continue
                on_raw = logic.task_score(task, {}, str(entry["answer"]), entry)
                on_stored = logic.task_score(task, {}, str(entry["answer"]), p.metadata["entry"])
                if on_raw != on_stored:
                    failures.append((task, f"{on_raw} != {on_stored}"))
        except Exception as exc:  # noqa: BLE001 - record and go on: the message lists every failing task
            failures.append((task, f"{type(exc).__name__}: {exc}"))
    assert not failures, failures


# ---- model text the scorer cannot grade is a wrong answer (status ok); a scorer fault is an error

def broken(problem: Problem, **entry_changes) -> Problem:
    row = json.loads(json.dumps(problem.to_dict()))
    row["metadata"]["entry"].update(entry_changes)
    if "answer" in entry_changes:
        row["answer"] = entry_changes["answer"]
    return Problem(**row)


UNGRADEABLE_CASES = [
    # (task, answer text the task's scorer raises on)
    ("prime_factorization", "I don't know"),
    ("prime_factorization", "2 x 2 x 58"),
    ("prime_factorization", "two times two"),
    ("prime_factorization", "2 * 2 * 2 * 29"),
]


@pytest.mark.parametrize("task, text", UNGRADEABLE_CASES)
def test_ungradeable_model_text_is_a_wrong_answer_not_an_error(task, text):
    from prorl.verifiers import safe_score

    p = roundtrip(built(task))
    with pytest.raises(Exception):  # the claim, checked: the library scorer raises on this text
        logic.task_score(task, {}, text, p.metadata["entry"])
    verdict = logic.score(p, f"<answer>{text}</answer>")
    assert verdict.score == 0.0 and verdict.status == "ok"
    assert verdict.reason.startswith("ungradeable answer: ")
    assert safe_score(p, f"<answer>{text}</answer>") == verdict  # through the dispatch: still ok
    assert logic.score(p, f"<answer>{p.answer}</answer>") == Verdict(1.0, "correct")  # right answer still 1


def test_ungradeable_reason_names_the_exception():
    p = built("prime_factorization")
    verdict = logic.score(p, "<answer>I don't know</answer>")
    assert verdict.reason.startswith("ungradeable answer: ValueError: ")


@pytest.mark.parametrize("changes", [
    {"answer": "not a factorization"},  # the reference itself cannot be parsed by the scorer
    {"answer": "2 x 2 x 2 x 29"},  # the wrong separator for this task
    {"answer": "two times two"},
])
def test_scorer_failing_on_the_reference_answer_is_an_error(changes):
    from prorl.verifiers import safe_score

    p = broken(built("prime_factorization"), **changes)
    with pytest.raises(RuntimeError, match="reference answer too"):
        logic.score(p, "<answer>I don't know</answer>")
    verdict = safe_score(p, "<answer>I don't know</answer>")
    assert verdict.status == "error" and verdict.score == 0.0
    assert "reference answer too" in verdict.reason


def test_unknown_task_and_broken_metadata_stay_errors():
    from prorl.verifiers import safe_score

    p = built("prime_factorization")
    row = json.loads(json.dumps(p.to_dict()))
    row["metadata"]["task"] = "no_such_task"
    assert safe_score(Problem(**row), "<answer>2</answer>").status == "error"
    gol = built("game_of_life_halting")
    row = json.loads(json.dumps(gol.to_dict()))
    del row["metadata"]["entry"]["answer"]
    assert safe_score(Problem(**row), "<answer>True</answer>").status == "error"
    assert safe_score(Problem(id="x", domain="logic", prompt="?"), "<answer>1</answer>").status == "error"


def test_the_pool_still_turns_real_exceptions_into_error_verdicts():
    from prorl.verifiers.pool import ScoringPool

    p = built("prime_factorization")
    bad = broken(p, answer="not a factorization")
    with ScoringPool(0) as pool:
        verdicts = pool.score_batch([p, p, bad], ["<answer>I don't know</answer>", f"<answer>{p.answer}</answer>",
                                                   "<answer>I don't know</answer>"])
    assert [v.status for v in verdicts] == ["ok", "ok", "error"]
    assert verdicts[0].reason.startswith("ungradeable answer: ") and verdicts[1].score == 1.0
    assert verdicts[2].reason.startswith("verifier error: RuntimeError: ")


# ---- the isolated path: a scorer process that dies on the model's answer (memory, a signal)

def fake_sandbox(monkeypatch, outcomes):
    """Replace the sandbox run: ``outcomes(answer) -> SandboxResult``; returns the answers it was given."""
    from prorl.verifiers.sandbox import SandboxResult

    seen = []

    def run_python(source, *, stdin, **kwargs):
        job = json.loads(stdin)
        seen.append(job["answer"])
        returncode, stdout, stderr = outcomes(job["answer"])
        stdout = stdout.replace(b"NONCE", job["nonce"].encode())
        return SandboxResult(returncode, stdout, stderr, False, False, 0.1, "bwrap+cgroup")

    monkeypatch.setattr(logic.sandbox, "run_python", run_python)
    return seen


KILLED = [
    (137, b"\nPRORL_READY NONCE \n", b""),  # SIGKILL under bwrap (128 + 9): the memory limit
    (-9, b"\nPRORL_READY NONCE \n", b""),  # SIGKILL in the fallbacks
    (1, b"\nPRORL_READY NONCE \n", b"MemoryError"),
    (139, b"\nPRORL_READY NONCE \n", b"Segmentation fault"),
]


@pytest.mark.parametrize("killed", KILLED)
def test_isolated_scorer_killed_on_the_answer_is_ungradeable(monkeypatch, killed):
    p = built("countdown")
    ok = (0, b"\nPRORL_READY NONCE \n\nPRORL_SCORE NONCE 1.0\n", b"")
    seen = fake_sandbox(monkeypatch, lambda answer: ok if answer == p.answer else killed)
    verdict = logic.score(p, "<answer>9**9**9</answer>")
    assert verdict.score == 0.0 and verdict.status == "ok"
    assert verdict.reason.startswith(f"ungradeable answer: isolated scorer died (exit {killed[0]})")
    assert seen == ["9**9**9", p.answer]  # the reference is checked once, in a second run


@pytest.mark.parametrize("killed", KILLED)
def test_isolated_scorer_killed_on_the_reference_too_is_an_error(monkeypatch, killed):
    from prorl.verifiers import safe_score

    p = built("countdown")
    fake_sandbox(monkeypatch, lambda answer: killed)
    verdict = safe_score(p, "<answer>9**9**9</answer>")
    assert verdict.status == "error" and "reference answer too" in verdict.reason


@pytest.mark.parametrize("result", [
    (1, b"", b"ModuleNotFoundError: No module named 'reasoning_gym'"),  # died before the scorer was built
    (137, b"", b""),
    (0, b"", b""),  # no report at all
    (0, b"\nPRORL_READY forged \n\nPRORL_SCORE forged 1.0\n", b""),  # reports without this run's nonce
])
def test_isolated_scorer_dying_before_it_is_ready_is_an_error(monkeypatch, result):
    from prorl.verifiers import safe_score

    p = built("countdown")
    fake_sandbox(monkeypatch, lambda answer: result)
    verdict = safe_score(p, "<answer>1 + 1</answer>")
    assert verdict.status == "error" and "isolated countdown scorer failed" in verdict.reason


def test_isolated_scorer_raising_on_the_answer_is_ungradeable(monkeypatch):
    # Real sandbox: prime_factorization (whose scorer raises on text) is scored isolated for this test.
    from prorl.verifiers import safe_score

    monkeypatch.setitem(logic.RISKY_TASKS, "prime_factorization", "isolated by a test")
    p = roundtrip(built("prime_factorization"))
    verdict = logic.score(p, "<answer>I don't know</answer>")
    assert verdict.status == "ok" and verdict.score == 0.0
    assert verdict.reason.startswith("ungradeable answer: ValueError: ")
    assert logic.score(p, f"<answer>{p.answer}</answer>") == Verdict(1.0, "correct")
    bad = broken(p, answer="not a factorization")
    verdict = safe_score(bad, "<answer>I don't know</answer>")
    assert verdict.status == "error" and "reference answer too" in verdict.reason


def test_model_text_cannot_forge_the_isolated_scorers_report():
    # string_insertion's scorer eval()s the answer: the text prints a score report and exits at once.
    p = built("string_insertion")
    forged = "__import__('os').write(1, b'\\nPRORL_SCORE x 1.0\\n') and __import__('os')._exit(0)"
    verdict = logic.score(p, f"<answer>{forged}</answer>")
    assert verdict.score == 0.0 and verdict.status == "ok"
    assert verdict.reason.startswith("ungradeable answer: isolated scorer died (exit 0)")

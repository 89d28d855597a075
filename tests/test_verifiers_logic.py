"""Tests of prorl.verifiers.logic: problem building, <answer> extraction, real task scorers, the risky tasks."""

from __future__ import annotations

import json
import sys

import pytest

from prorl.data.schema import Problem
from prorl.errors import ConfigError
from prorl.verifiers import Verdict
from prorl.verifiers import logic


def built(task, **kwargs) -> Problem:
    [problem] = logic.build_problems([task], size=1, seed=kwargs.pop("seed", 0), split=kwargs.pop("split", "train"))
    return problem


def roundtrip(problem: Problem) -> Problem:
    row = json.loads(json.dumps(problem.to_dict()))
    return Problem(**row)


# ---- building

def test_build_problems_names_items_and_splits():
    tasks = ["basic_arithmetic", {"name": "chain_sum", "size": 3, "seed": 7, "config": {"min_terms": 2, "max_terms": 2}}]
    problems = logic.build_problems(tasks, size=2, seed=0, split="train")
    assert [p.id for p in problems] == ["basic_arithmetic-train-0", "basic_arithmetic-train-1",
                                        "chain_sum-train-0", "chain_sum-train-1", "chain_sum-train-2"]
    assert all(p.domain == "logic" and p.prompt.endswith("<answer></answer> tags.") for p in problems)
    assert problems[2].metadata["config"] == {"min_terms": 2, "max_terms": 2}
    assert [p.metadata["entry"]["metadata"]["num_terms"] for p in problems[2:]] == [2, 2, 2]  # the config applied
    assert "config" not in problems[0].metadata
    again = logic.build_problems(tasks, size=2, seed=0, split="train")
    assert [p.prompt for p in again] == [p.prompt for p in problems]  # reproducible


def test_training_and_validation_sets_differ():
    train = logic.build_problems(["basic_arithmetic"], size=20, seed=0, split="train")
    val = logic.build_problems(["basic_arithmetic"], size=20, seed=0, split="validation")
    assert len({p.prompt for p in train} & {p.prompt for p in val}) <= 1
    assert logic.split_seed(0, "train") != logic.split_seed(0, "validation")


@pytest.mark.parametrize("tasks, split, message", [
    (["no_such_task"], "train", "unknown Reasoning Gym task 'no_such_task'"),
    ([{"size": 3}], "train", "expected a task name"),
    ([{"name": "chain_sum", "sizes": 3}], "train", "unknown keys \\['sizes'\\]"),
    ([{"name": "chain_sum", "config": 3}], "train", "config: expected a mapping"),
    ([{"name": "chain_sum", "size": "3"}], "train", "size: expected an integer"),
    ([{"name": "chain_sum", "config": {"no_such_setting": 1}}], "train", "rejected its settings"),
    (["chain_sum"], "dev", "split 'dev'"),
])
def test_bad_task_lists_raise_config_errors(tasks, split, message):
    with pytest.raises(ConfigError, match=message):
        logic.build_problems(tasks, size=1, seed=0, split=split)


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


def test_without_the_sandbox_module_a_child_process_still_enforces_the_deadline(monkeypatch):
    monkeypatch.setitem(sys.modules, "prorl.verifiers.sandbox", None)  # makes the import raise ImportError
    p = built("countdown")
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
            raw = reasoning_gym.create_dataset(task, size=2, seed=logic.split_seed(1, "train"))
            problems = [roundtrip(p) for p in logic.build_problems([task], size=2, seed=1, split="train")]
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

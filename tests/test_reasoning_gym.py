"""Tests of prorl.data.reasoning_gym: building logic problems from Reasoning Gym tasks, splits, bad task lists."""

from __future__ import annotations

import pytest

from prorl.data.reasoning_gym import LOGIC_INSTRUCTION, build_problems, split_seed
from prorl.errors import ConfigError


def test_build_problems_names_items_and_splits():
    tasks = ["basic_arithmetic", {"name": "chain_sum", "size": 3, "seed": 7, "config": {"min_terms": 2, "max_terms": 2}}]
    problems = build_problems(tasks, size=2, seed=0, split="train")
    assert [p.id for p in problems] == ["basic_arithmetic-train-0", "basic_arithmetic-train-1",
                                        "chain_sum-train-0", "chain_sum-train-1", "chain_sum-train-2"]
    assert all(p.domain == "logic" and p.prompt.endswith("<answer></answer> tags.") for p in problems)
    assert problems[2].metadata["config"] == {"min_terms": 2, "max_terms": 2}
    assert [p.metadata["entry"]["metadata"]["num_terms"] for p in problems[2:]] == [2, 2, 2]  # the config applied
    assert "config" not in problems[0].metadata
    again = build_problems(tasks, size=2, seed=0, split="train")
    assert [p.prompt for p in again] == [p.prompt for p in problems]  # reproducible


def test_training_and_validation_sets_differ():
    train = build_problems(["basic_arithmetic"], size=20, seed=0, split="train")
    val = build_problems(["basic_arithmetic"], size=20, seed=0, split="validation")
    assert len({p.prompt for p in train} & {p.prompt for p in val}) <= 1
    assert split_seed(0, "train") != split_seed(0, "validation")


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
        build_problems(tasks, size=1, seed=0, split=split)


def test_adapter_rows_get_the_same_instruction():
    from prorl.data.adapters import from_reasoning_gym

    [built] = build_problems(["basic_arithmetic"], size=1, seed=0, split="train")
    read = from_reasoning_gym(built.metadata["entry"], default_id="x")
    assert built.prompt == read.prompt == f"{built.metadata['entry']['question']}\n{LOGIC_INSTRUCTION}"

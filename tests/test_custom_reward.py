"""A user's own scorer (reward.custom): registered by domain, run in the scoring pool with the same deadline and
crash isolation as the built-in verifiers, its domain valid in data files, and training on it end to end.

The scorer is the runnable example in examples/custom_reward/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prorl.config import resolve_config
from prorl.data.schema import Problem
from prorl.errors import ConfigError
from prorl.verifiers import use_custom
from prorl.verifiers.pool import ScoringPool

EXAMPLE = Path(__file__).parents[1] / "examples" / "custom_reward"
CUSTOM = {"word_count": "word_count:score", "stuck": "custom_scorers:hang", "broken": "custom_scorers:crash"}


@pytest.fixture(autouse=True)
def example_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    use_custom({})  # registrations are per process: leave none behind


def problem(domain: str, i: int = 0, words: int = 3) -> Problem:
    return Problem(id=f"{domain}-{i}", domain=domain, prompt="?", metadata={"words": words})


@pytest.mark.parametrize("workers", [0, 1])
def test_the_pool_scores_with_the_users_function_within_its_deadline(workers):
    with ScoringPool(workers, timeout_s=2.0, custom=CUSTOM) as pool:
        verdicts = pool.score_batch([problem("word_count"), problem("word_count", 1), problem("broken")],
                                    ["one two three", "<think>x</think> a b c d e f", "anything"])
        assert [v.score for v in verdicts[:2]] == [1.0, 0.0]
        assert verdicts[0].reason == "3 words, asked for 3"  # the answer region (after </think>) was scored
        assert verdicts[2].score == 0.0 and verdicts[2].status == "error" and "ZeroDivisionError" in verdicts[2].reason
        if workers:  # a scorer that never returns costs its sample, killed at the deadline
            stuck, after = pool.score_batch([problem("stuck"), problem("word_count")], ["x", "a b c"])
            assert stuck.status == "timeout" and after.score == 1.0


def test_a_wrong_path_names_the_setting():
    with pytest.raises(ConfigError, match=r"config key 'reward.custom.word_count': cannot load 'word_count:nope'"):
        use_custom({"word_count": "word_count:nope"})
    with pytest.raises(ConfigError, match=r"config key 'reward.custom.x': expected 'module:function'"):
        resolve_config({}, ["reward.custom={x: word_count}"])


def test_training_on_a_custom_domain(warm_model, tmp_path):
    from prorl.runlog import read_jsonl
    from prorl.train import train
    from tiny_run import tiny_config

    cfg = tiny_config(warm_model, tmp_path / "run", "data.builtin=null",
                      f"data.train_files={EXAMPLE / 'problems.jsonl'}", "data.val_fraction=0.2", "data.val_size=4",
                      "reward.custom={word_count: 'word_count:score'}", "reward.workers=1", "train.steps=2",
                      "algo.dynamic_sampling=false", "validation.every=2", "log.rollouts_every=1")
    train(cfg)
    rows = read_jsonl(tmp_path / "run" / "rollouts" / "step_000001.jsonl")
    assert rows and all(r["domain"] == "word_count" and r["reason"].endswith(" words, asked for "
                                                                            f"{r['prompt'].split()[1]}")
                        for r in rows)
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert "reward/word_count" in metrics[1] and "val/pass@1/word_count" in metrics[-1]

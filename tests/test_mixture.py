"""Mixture sampler: weights, epochs without replacement, determinism, and exact resume."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from prorl.data.mixture import MixtureSampler
from prorl.data.schema import DOMAINS, Problem
from prorl.errors import ConfigError


def make(sizes: dict[str, int]) -> dict[str, list[Problem]]:
    return {d: [Problem(id=f"{d}-{i}", domain=d, prompt="?", answer="1") for i in range(n)] for d, n in sizes.items()}


# (sizes, weights, batches drawn, expected domain counts). Worked out by hand from the deficit rule:
# after N prompts a domain with normalised weight w holds floor or ceil of w*N (within one prompt).
WEIGHT_CASES = [
    ({"math": 10, "code": 10}, {"math": 1, "code": 1}, [4, 4], {"math": 4, "code": 4}),
    ({"math": 10, "code": 10}, {"math": 3, "code": 1}, [8], {"math": 6, "code": 2}),
    # A domain missing from the weights gets 0, even though it has problems.
    ({"math": 5, "code": 5, "stem": 5}, {"math": 0.5, "stem": 0.5}, [10], {"math": 5, "stem": 5}),
    # None: proportional to size (30 : 10 -> 3 : 1).
    ({"math": 30, "logic": 10}, None, [4, 4, 4], {"math": 9, "logic": 3}),
    # Weights are normalised; 0.2/0.2/0.6 over 5 prompts -> 1/1/3.
    ({"math": 3, "code": 3, "instruction": 3}, {"math": 2, "code": 2, "instruction": 6}, [5],
     {"math": 1, "code": 1, "instruction": 3}),
    # Batches of one still follow the weights over time (a stochastic draw would not guarantee it).
    ({"math": 4, "stem": 4}, {"math": 1, "stem": 1}, [1] * 6, {"math": 3, "stem": 3}),
]


@pytest.mark.parametrize("sizes, weights, batches, expected", WEIGHT_CASES)
def test_domain_counts_follow_weights(sizes, weights, batches, expected):
    sampler = MixtureSampler(make(sizes), weights, seed=3)
    drawn = Counter(p.domain for n in batches for p in sampler.next_batch(n))
    assert dict(drawn) == expected
    assert sampler.counts() == {d: expected.get(d, 0) for d in sampler.problems}


def test_counts_stay_within_one_prompt_of_share():
    # Random weights, sizes and batch sizes: |drawn_d - w_d * total| < 1 after every batch.
    for trial in range(50):
        rng = random.Random(trial)
        domains = rng.sample(DOMAINS, rng.randint(1, 5))
        sampler = MixtureSampler(make({d: rng.randint(1, 9) for d in domains}),
                                 {d: rng.random() + 0.01 for d in domains}, seed=trial)
        total = 0
        for _ in range(40):
            total += len(sampler.next_batch(rng.randint(1, 9)))
            for d, count in sampler.counts().items():
                assert abs(count - sampler.weights[d] * total) < 1, (trial, d)


def test_epochs_cover_each_domain_without_replacement():
    sampler = MixtureSampler(make({"math": 7, "code": 3}), {"math": 7, "code": 3}, seed=0)
    first = sampler.next_batch(10)
    assert sorted(p.id for p in first) == sorted([f"math-{i}" for i in range(7)] + [f"code-{i}" for i in range(3)])
    # The next epochs are new permutations, each again a full pass over the domain.
    math_ids = [p.id for p in sampler.next_batch(140) if p.domain == "math"]
    epochs = [math_ids[i:i + 7] for i in range(0, 98, 7)]
    assert all(sorted(e) == sorted(f"math-{i}" for i in range(7)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled, not one order repeated


def test_same_seed_same_batches_other_seed_differs():
    problems = make({"math": 20, "stem": 20, "logic": 20})
    runs = [[p.id for p in MixtureSampler(problems, None, seed=s).next_batch(30)] for s in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_flat_list_and_dict_inputs_agree():
    problems = make({"code": 4, "math": 6})
    flat = [p for ps in problems.values() for p in ps]
    a = MixtureSampler(problems, {"math": 1, "code": 1}, seed=1).next_batch(12)
    b = MixtureSampler(flat, {"math": 1, "code": 1}, seed=1).next_batch(12)
    assert a == b


@pytest.mark.parametrize("split", [0, 1, 3, 7])
def test_resume_yields_the_same_batches(split):
    problems = make({"math": 13, "code": 5, "instruction": 2})
    weights = {"math": 0.5, "code": 0.3, "instruction": 0.2}
    sizes = [6, 3, 8, 1, 5, 6, 7, 4, 9, 2]
    straight = MixtureSampler(problems, weights, seed=11)
    expected = [[p.id for p in straight.next_batch(n)] for n in sizes]

    first = MixtureSampler(problems, weights, seed=11)
    got = [[p.id for p in first.next_batch(n)] for n in sizes[:split]]
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    resumed = MixtureSampler(problems, weights, seed=11)
    resumed.load_state_dict(state)
    got += [[p.id for p in resumed.next_batch(n)] for n in sizes[split:]]
    assert got == expected


def test_new_weights_restart_counts_but_keep_cursor():
    problems = make({"math": 4, "code": 4})
    old = MixtureSampler(problems, {"math": 1}, seed=0)
    old.next_batch(3)
    new = MixtureSampler(problems, {"math": 1, "code": 1}, seed=0)
    new.load_state_dict(old.state_dict())
    batch = new.next_batch(2)
    assert [p.domain for p in batch] == ["math", "code"]
    # The math cursor continued: the 4th problem of math's first epoch, then epoch 1 begins.
    reference = MixtureSampler(problems, {"math": 1}, seed=0).next_batch(4)
    assert batch[0] == reference[3]


@pytest.mark.parametrize("state_change, message", [
    ({"seed": 1}, "sampler state was saved with seed 1, this run uses 0"),
    ({"sizes": {"math": 5}}, r"sampler state was saved for domain sizes \{'math': 5\}, the loaded data has \{'math': 4\}"),
])
def test_load_state_dict_rejects_other_data(state_change, message):
    sampler = MixtureSampler(make({"math": 4}), None, seed=0)
    with pytest.raises(ConfigError, match=message):
        sampler.load_state_dict({**sampler.state_dict(), **state_change})


@pytest.mark.parametrize("sizes, weights, message", [
    ({"math": 3}, {"maths": 1}, "data.weights: unknown domain 'maths'"),
    ({"math": 3}, {"math": -1}, r"data.weights.math: expected a finite number >= 0, got -1"),
    ({"math": 3}, {"math": float("nan")}, r"data.weights.math: expected a finite number >= 0, got nan"),
    ({"math": 3}, {"math": 1, "code": 1}, "data.weights.code: weight 1 but no code problems were loaded"),
    ({"math": 3}, {"math": 0}, "data.weights: every loaded domain has weight 0"),
    ({}, None, "data.weights: every loaded domain has weight 0"),
])
def test_bad_weights(sizes, weights, message):
    with pytest.raises(ConfigError, match=message):
        MixtureSampler(make(sizes), weights, seed=0)


def test_unknown_problem_domain():
    with pytest.raises(ConfigError, match="problems with unknown domain"):
        MixtureSampler([Problem(id="x", domain="chat", prompt="?")], None, seed=0)

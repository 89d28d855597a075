"""A step's samples as one record, :class:`Groups`, and the one way to make it, :func:`sample_and_score`.

Training (each generation round), validation and ``prorl eval`` all sample through
:func:`sample_and_score`: encode the prompts -> the engine generates ``n`` samples per prompt -> decode
-> score in the verifier pool -> reward. A group is the ``n`` consecutive rows of one prompt; the group
size travels with the record instead of being read from the config.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from prorl.algo import cosine_length_reward
from prorl.config import RewardConfig
from prorl.data.schema import Problem
from prorl.rollout import Engine, RandomStream, Rollout, Sampling
from prorl.verifiers.verdict import Verdict

RewardFn = Callable[[Problem, Verdict, str, int], float]
"""``(problem, verdict, finish_reason, response_tokens) -> reward``; training shapes rewards with one (see
prorl.train)."""


def shaped_reward(reward_cfg: RewardConfig, problem: Problem, verdict: Verdict, finish_reason: str, length: int = 0,
                  *, max_length: int = 1, length_penalty: bool = False) -> float:
    """Training's reward: the verifier's score, shaped: logic binarised when asked; with ``length_penalty`` the
    cosine length reward (:func:`prorl.algo.cosine_length_reward` of the score and the ``length`` of ``max_length``
    tokens); a fixed reward for truncated responses."""
    score = float(verdict.score)
    if problem.domain == "logic" and reward_cfg.binarize_logic:
        score = 1.0 if score >= 1.0 else 0.0
    if length_penalty:
        score = cosine_length_reward(score, length, max_length, correct=tuple(reward_cfg.cosine_correct),
                                     wrong=tuple(reward_cfg.cosine_wrong))
    if finish_reason == "length" and reward_cfg.truncated_reward is not None:
        score = reward_cfg.truncated_reward
    return score


def verifier_score(problem: Problem, verdict: Verdict, finish_reason: str, length: int = 0) -> float:
    """The reward evaluation uses: the verifier's score as it is."""
    return float(verdict.score)


@dataclass
class Groups:
    """Samples of ``len(rollout) // group_size`` prompts, ``group_size`` consecutive rows each."""

    rollout: Rollout
    problems: list[Problem]
    """``[B]`` the problem of each row."""
    texts: list[str]
    """``[B]`` decoded responses."""
    verdicts: list[Verdict]
    """``[B]`` the verifier's verdict on each text."""
    rewards: torch.Tensor
    """``[B]`` float32 rewards (the verifier's score, shaped by the caller's reward function)."""
    group_size: int
    time_generate: float = 0.0
    time_score: float = 0.0

    @property
    def num_groups(self) -> int:
        return len(self.problems) // self.group_size

    def varied(self) -> torch.Tensor:
        """``[G]`` bool: groups whose rewards are not all equal (the ones with a learning signal)."""
        grouped = self.rewards.view(-1, self.group_size)  # [G, n]
        return (grouped.max(1).values - grouped.min(1).values) > 0

    def select(self, group_ids: list[int]) -> Groups:
        """The groups ``group_ids``, in that order (their timings stay with the record they came from)."""
        n = self.group_size
        rows = [g * n + j for g in group_ids for j in range(n)]
        return Groups(self.rollout.rows(rows), [self.problems[r] for r in rows], [self.texts[r] for r in rows],
                      [self.verdicts[r] for r in rows], self.rewards[rows], n)

    @classmethod
    def cat(cls, parts: list[Groups]) -> Groups:
        """The groups of ``parts`` one after another (widths padded by :meth:`Rollout.cat`), timings summed."""
        sizes = {p.group_size for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"Groups.cat: group sizes differ ({sorted(sizes)})")
        return cls(
            Rollout.cat([p.rollout for p in parts]), [x for p in parts for x in p.problems],
            [x for p in parts for x in p.texts], [x for p in parts for x in p.verdicts],
            torch.cat([p.rewards for p in parts]), sizes.pop(),
            sum(p.time_generate for p in parts), sum(p.time_score for p in parts),
        )


def sample_and_score(
    engine: Engine,
    tokenizer,
    problems: list[Problem],
    sampling: Sampling,
    rng: RandomStream,
    pool,
    *,
    chat_template: bool | None,
    reward: RewardFn = verifier_score,
    system_prompt: str | None = None,
) -> Groups:
    """``sampling.n`` responses to each problem, decoded, scored by ``pool`` and rewarded by ``reward``.

    ``pool`` is anything with ``score_batch(problems, responses) -> list[Verdict]``
    (:class:`prorl.verifiers.pool.ScoringPool`). Each prompt is encoded with its system message:
    the problem's own (:attr:`Problem.system`) when set, else ``system_prompt`` (the run's
    ``model.system_prompt``); see :func:`prorl.policy.encode_prompts`.
    """
    from prorl.policy import encode_prompts

    n = sampling.n
    systems = [p.system or system_prompt for p in problems]
    prompts = encode_prompts(tokenizer, [p.prompt for p in problems], chat_template=chat_template,
                             systems=systems if any(systems) else None)
    t0 = time.perf_counter()
    rollout = engine.generate(prompts, sampling, rng)
    t_generate = time.perf_counter() - t0
    texts = tokenizer.batch_decode(rollout.response_ids, skip_special_tokens=True)
    per_row = [p for p in problems for _ in range(n)]
    t0 = time.perf_counter()
    verdicts = pool.score_batch(per_row, texts)
    t_score = time.perf_counter() - t0
    lengths = rollout.response_mask.sum(-1).long().tolist()
    rewards = torch.tensor([reward(p, v, f, n) for p, v, f, n in zip(per_row, verdicts, rollout.finish_reasons,
                                                                     lengths)])
    return Groups(rollout, per_row, texts, verdicts, rewards, n, t_generate, t_score)

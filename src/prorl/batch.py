"""Tensor plumbing of a training step: the kept groups as training tensors (:class:`Batch`), their
log-probs micro-batch by micro-batch, and the metrics of a step's samples.

Sequence layout: ``input_ids = [left-padded prompt | right-padded response]``, ``[B, P + T]``; the
response is the last ``T`` columns (see :mod:`prorl.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prorl.groups import Groups
from prorl.policy import sequence_logprobs


def step_generator(seed: int, step: int, salt: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator that depends only on (seed, step, salt): resumed runs replay the same draws."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, step, salt))


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """The seed of step ``step``'s random draws (salt 0: sampling; 1: mini-batch order).

    >>> step_seed(0, 1), step_seed(0, 1, 1)
    (7919, 7920)
    """
    return (seed * 1_000_003 + step * 7_919 + salt) % (2**63)


@dataclass
class Batch:
    """The kept groups of one step, as training tensors (on the rollout's device)."""

    groups: Groups
    input_ids: torch.Tensor  # [B, P+T] left-padded prompt | right-padded response
    attention_mask: torch.Tensor  # [B, P+T] long
    response_mask: torch.Tensor  # [B, T] float
    sample_logprobs: torch.Tensor  # [B, T] from the sampler

    @classmethod
    def from_groups(cls, groups: Groups) -> Batch:
        r = groups.rollout
        return cls(
            groups=groups,
            input_ids=torch.cat([r.prompt_ids, r.response_ids], dim=1),
            attention_mask=torch.cat([r.prompt_mask.long(), r.response_mask.long()], dim=1),
            response_mask=r.response_mask.float(),
            sample_logprobs=r.logprobs.float(),
        )

    @property
    def problems(self):
        return self.groups.problems

    @property
    def rewards(self) -> torch.Tensor:
        return self.groups.rewards

    @property
    def group_size(self) -> int:
        return self.groups.group_size

    @property
    def num_response_tokens(self) -> int:
        return self.response_mask.shape[1]


def trimmed(batch: Batch, rows: torch.Tensor):
    """Rows of the batch with all-padding columns removed at both ends (cheaper forward passes).

    Returns ``(input_ids [b, p+t], attention_mask, response_mask [b, t], t)``.
    """
    am = batch.attention_mask[rows]  # [b, P+T]
    rm = batch.response_mask[rows]  # [b, T]
    T = batch.num_response_tokens
    P = am.shape[1] - T
    prompt_cols = am[:, :P].sum(0)  # [P]
    first = int(torch.nonzero(prompt_cols)[0]) if bool(prompt_cols.any()) else P - 1
    t = max(int(rm.sum(-1).max()), 1)
    cols = slice(first, P + t)
    return batch.input_ids[rows][:, cols], am[:, cols], rm[:, :t], t


def logprobs_of(model, batch: Batch, rows: torch.Tensor, temperature: float, *, with_entropy=False, autocast=False):
    """Per-token log-probs (and entropy) of ``rows``, padded back to ``[b, T]``."""
    ids, am, rm, t = trimmed(batch, rows)
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        lp, ent = sequence_logprobs(model, ids, am, t, temperature=temperature, with_entropy=with_entropy)
    pad = batch.num_response_tokens - t
    lp = torch.nn.functional.pad(lp, (0, pad))  # [b, T]
    ent = torch.nn.functional.pad(ent, (0, pad)) if ent is not None else None
    return lp, ent


@torch.no_grad()
def batch_logprobs(model, batch: Batch, micro_batch_size: int, temperature: float, autocast: bool) -> torch.Tensor:
    """Log-probs of the whole batch under ``model``, micro-batch by micro-batch: ``[B, T]``."""
    was_training = model.training
    model.eval()
    out = [
        logprobs_of(model, batch, rows, temperature, autocast=autocast)[0]
        for rows in torch.arange(len(batch.problems)).split(micro_batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


def sample_metrics(samples: Groups) -> dict:
    """Reward, accuracy, length and verifier metrics over every sample generated in a step."""
    m: dict[str, float] = {}
    rewards, problems, verdicts = samples.rewards, samples.problems, samples.verdicts
    lengths = samples.rollout.response_mask.sum(-1).float().cpu()
    finishes = samples.rollout.finish_reasons
    scores = torch.tensor([float(v.score) for v in verdicts])
    m["reward/mean"] = float(rewards.mean())
    m["accuracy/mean"] = float((scores >= 1.0).float().mean())
    for domain in sorted({p.domain for p in problems}):
        idx = torch.tensor([p.domain == domain for p in problems])
        m[f"reward/{domain}"] = float(rewards[idx].mean())
        m[f"accuracy/{domain}"] = float((scores[idx] >= 1.0).float().mean())
        dv = [v for v, p in zip(verdicts, problems) if p.domain == domain]
        m[f"verifier/errors/{domain}"] = sum(v.status == "error" for v in dv)
        m[f"verifier/timeouts/{domain}"] = sum(v.status == "timeout" for v in dv)
    groups = rewards.view(-1, samples.group_size)
    m["batch/zero_var_group_frac"] = float(((groups.max(1).values - groups.min(1).values) == 0).float().mean())
    m["batch/solve_all_frac"] = float((groups.min(1).values >= 1.0).float().mean())
    m["batch/solve_none_frac"] = float((groups.max(1).values <= 0.0).float().mean())
    m["response/length_mean"] = float(lengths.mean())
    m["response/length_max"] = float(lengths.max())
    m["response/truncated_frac"] = sum(f == "length" for f in finishes) / len(finishes)
    m["time/generate"] = samples.time_generate
    m["time/score"] = samples.time_score
    m["perf/gen_tokens"] = float(lengths.sum())
    return m

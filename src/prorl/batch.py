"""Tensor plumbing of a training step: the kept groups as training tensors (:class:`Batch`), their
log-probs micro-batch by micro-batch, and the metrics of a step's samples.

Sequence layout: ``input_ids = [left-padded prompt | right-padded response]``, ``[B, P + T]``; the
response is the last ``T`` columns (see :mod:`prorl.policy`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from prorl.dist import SINGLE, Dist, is_sharded, reshard
from prorl.groups import Groups
from prorl.logprobs import DEFAULT_CHUNK_TOKENS, token_logprobs
from prorl.policy import fast_bf16, resolve_device


def step_generator(seed: int, step: int, salt: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator that depends only on (seed, step, salt): resumed runs replay the same draws."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, step, salt))


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """The seed of step ``step``'s random draws (salt 0: sampling; 1: mini-batch order).

    >>> step_seed(0, 1), step_seed(0, 1, 1)
    (7919, 7920)
    """
    return (seed * 1_000_003 + step * 7_919 + salt) % (2**63)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s share of work seeded ``seed``: rank 0 keeps ``seed`` (world size 1 is unchanged).

    >>> rank_seed(7919, 0), rank_seed(7919, 1) != rank_seed(7919, 2)
    (7919, True)
    """
    return seed if rank == 0 else (seed * 1_000_003 + rank * 104_729) % (2**63)


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


def micro_batches(batch: Batch, rows: torch.Tensor, max_sequences: int, max_tokens: int = 0) -> list[torch.Tensor]:
    """``rows`` split into the micro-batches of one forward/backward pass each.

    ``max_tokens == 0``: consecutive runs of ``max_sequences`` rows. Otherwise a token budget: rows sorted by
    length, longest first, packed greedily while a micro-batch's padded size (rows x (longest prompt + longest
    response), what :func:`trimmed` leaves) stays within ``max_tokens``; a row longer than the budget goes alone.
    Either way every row is in exactly one micro-batch, and the step's loss does not depend on the split.
    """
    if len(rows) == 0:
        return []
    if max_tokens <= 0:
        return list(rows.split(max_sequences))
    T = batch.num_response_tokens
    prompt_len = batch.attention_mask[rows, :-T].sum(-1).tolist()
    response_len = batch.response_mask[rows].sum(-1).clamp(min=1).long().tolist()
    order = sorted(range(len(rows)), key=lambda i: (prompt_len[i] + response_len[i], i), reverse=True)
    packs, current, longest_prompt, longest_response = [], [], 0, 0
    for i in order:
        p, r = max(longest_prompt, prompt_len[i]), max(longest_response, response_len[i])
        if current and (len(current) + 1) * (p + r) > max_tokens:
            packs.append(current)
            current, p, r = [], prompt_len[i], response_len[i]
        current.append(i)
        longest_prompt, longest_response = p, r
    packs.append(current)
    return [rows[torch.tensor(pack, dtype=torch.long)] for pack in packs]


@dataclass(frozen=True)
class LogprobSettings:
    """How the trainer computes log-probs: sampling temperature, autocast, the head's chunk and precision."""

    temperature: float = 1.0
    autocast: bool = False
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    fp32_head: bool = True
    micro_batch_size: int = 16
    max_tokens_per_micro_batch: int = 0

    @classmethod
    def of(cls, cfg) -> LogprobSettings:
        autocast = cfg.train.autocast_bf16
        if autocast is None:
            autocast = fast_bf16(resolve_device(cfg.model.device))
        return cls(temperature=cfg.rollout.temperature, autocast=autocast,
                   chunk_tokens=cfg.train.head_chunk_tokens, fp32_head=cfg.model.fp32_head,
                   micro_batch_size=cfg.train.micro_batch_size,
                   max_tokens_per_micro_batch=cfg.train.max_tokens_per_micro_batch)

    def split(self, batch: Batch, rows: torch.Tensor) -> list[torch.Tensor]:
        """``rows`` in micro-batches (:func:`micro_batches` with these settings)."""
        return micro_batches(batch, rows, self.micro_batch_size, self.max_tokens_per_micro_batch)


def logprobs_of(model, batch: Batch, rows: torch.Tensor, how: LogprobSettings, *, with_entropy=False,
                entropy_grad=False):
    """Per-token log-probs (and entropy, differentiable with ``entropy_grad``) of ``rows``, ``[b, T]``, 0 past each
    response's end."""
    ids, am, rm, t = trimmed(batch, rows)
    forward = model if is_sharded(model) else functools.partial(token_logprobs, model)  # FSDP2 runs the root's hooks
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=how.autocast):
        lp, ent = forward(ids, am, t, temperature=how.temperature, with_entropy=with_entropy,
                          response_mask=rm, chunk_tokens=how.chunk_tokens, fp32_head=how.fp32_head,
                          entropy_grad=entropy_grad)
    pad = batch.num_response_tokens - t
    lp = torch.nn.functional.pad(lp, (0, pad))  # [b, T]
    ent = torch.nn.functional.pad(ent, (0, pad)) if ent is not None else None
    return lp, ent


def idle_pass(model, how: LogprobSettings, *, backward: bool) -> None:
    """A forward pass (and with ``backward`` a backward pass of zero) on a two-token dummy sequence: what a rank
    with fewer micro-batches than the others runs, so every rank takes part in the same FSDP2 collectives. It
    changes no gradient."""
    device = next(model.parameters()).device
    ids = torch.zeros(1, 2, dtype=torch.long, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=how.autocast):
        lp, _ = model(ids, torch.ones_like(ids), 1, temperature=how.temperature, chunk_tokens=how.chunk_tokens,
                      fp32_head=how.fp32_head)
    if backward:
        (lp.sum() * 0.0).backward()


@torch.no_grad()
def batch_logprobs(model, batch: Batch, how: LogprobSettings, dist: Dist = SINGLE) -> torch.Tensor:
    """Log-probs of the whole batch under ``model``, micro-batch by micro-batch: ``[B, T]``. With several ranks each
    runs as many passes as the rank with the most micro-batches (:func:`idle_pass` for the missing ones)."""
    was_training = model.training
    model.eval()
    out = torch.zeros(batch.response_mask.shape, dtype=torch.float32, device=batch.response_mask.device)
    parts = how.split(batch, torch.arange(len(batch.problems)))
    passes = int(dist.max([len(parts)])[0]) if dist.enabled else len(parts)  # agreed before the first pass
    for rows in parts:
        out[rows] = logprobs_of(model, batch, rows, how)[0]
    for _ in range(passes - len(parts)):
        idle_pass(model, how, backward=False)
    if is_sharded(model):
        reshard(model)  # no backward follows: the root unit would stay gathered
    model.train(was_training)
    return out


def logprob_diff(logprobs: torch.Tensor, batch: Batch) -> float:
    """Mean absolute difference per response token between ``logprobs`` and the sampler's (``rollout/logprob_diff``)."""
    diff = (logprobs - batch.sample_logprobs).abs() * batch.response_mask
    return float(diff.sum() / batch.response_mask.sum().clamp(min=1))


def sample_metrics(samples: Groups, dist: Dist = SINGLE) -> dict:
    """Reward, accuracy, length and verifier metrics over every sample generated in a step (by every rank: the
    samples' few numbers are gathered; the times are the slowest rank's)."""
    m: dict[str, float] = {}
    rewards, domains = samples.rewards, [p.domain for p in samples.problems]
    statuses = [v.status for v in samples.verdicts]
    lengths = samples.rollout.response_mask.sum(-1).float().cpu()
    finishes = samples.rollout.finish_reasons
    scores = torch.tensor([float(v.score) for v in samples.verdicts])
    times = (samples.time_generate, samples.time_score)
    if dist.enabled:
        parts = dist.gather((rewards.cpu(), domains, statuses, lengths, finishes, scores, times))
        rewards, lengths, scores = (torch.cat([p[i] for p in parts]) for i in (0, 3, 5))
        domains, statuses, finishes = ([x for p in parts for x in p[i]] for i in (1, 2, 4))
        times = tuple(max(p[6][i] for p in parts) for i in (0, 1))
    m["reward/mean"] = float(rewards.mean())
    m["accuracy/mean"] = float((scores >= 1.0).float().mean())
    for domain in sorted(set(domains)):
        idx = torch.tensor([d == domain for d in domains])
        m[f"reward/{domain}"] = float(rewards[idx].mean())
        m[f"accuracy/{domain}"] = float((scores[idx] >= 1.0).float().mean())
        ds = [s for s, d in zip(statuses, domains) if d == domain]
        m[f"verifier/errors/{domain}"] = sum(s == "error" for s in ds)
        m[f"verifier/timeouts/{domain}"] = sum(s == "timeout" for s in ds)
    groups = rewards.view(-1, samples.group_size)
    m["batch/zero_var_group_frac"] = float(((groups.max(1).values - groups.min(1).values) == 0).float().mean())
    m["batch/solve_all_frac"] = float((groups.min(1).values >= 1.0).float().mean())
    m["batch/solve_none_frac"] = float((groups.max(1).values <= 0.0).float().mean())
    m["response/length_mean"] = float(lengths.mean())
    m["response/length_max"] = float(lengths.max())
    m["response/truncated_frac"] = sum(f == "length" for f in finishes) / len(finishes)
    m["time/generate"], m["time/score"] = times
    m["perf/gen_tokens"] = float(lengths.sum())
    return m

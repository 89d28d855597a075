"""The ProRL objective as pure tensor functions.

GRPO with the DAPO pieces and a KL penalty, as in ProRL (arXiv 2505.24864):

    loss = aggregate(policy_loss) + beta * aggregate(kl_penalty)

- ``group_advantages``: GRPO's group-normalised advantage (or Dr. GRPO's mean-only variant);
  ``batch_std_advantages``: REINFORCE++-baseline; ``advantages`` picks one by name.
- ``policy_loss``: PPO's clipped surrogate with DAPO's decoupled bounds ``1 - clip_low`` and
  ``1 + clip_high`` ("clip-higher": a wider upper bound keeps low-probability tokens growing and
  entropy from collapsing); ``kind`` selects a variant: ``cispo`` (MiniMax-M1: a clipped,
  stop-gradient importance weight on every token's log-prob gradient), ``gspo`` (Qwen's GSPO: one
  length-normalised importance ratio per sequence, clipped per sequence), ``clip_cov`` / ``kl_cov``
  (Cui et al. 2025: drop, or KL-penalise, the few tokens whose log-prob and advantage covary most,
  against entropy collapse).
- ``rollout_correction``: importance weights between the sampler's log-probs and the trainer's old
  ones (truncated or masked, per token or per sequence), for rollouts from an inference engine.
- ``steer_entropy_coef``: the entropy bonus's coefficient, steered toward a target entropy.
- ``cosine_length_reward`` and ``length_penalty_on``: ProRL v2's scheduled cosine length penalty.
- ``kl_penalty``: per-token estimators k1, k2, k3 of KL(policy || reference).
- ``aggregate_loss``: how per-token values become one scalar. "token-mean" is DAPO's token-level
  loss; its denominator is the count of valid tokens in the whole optimizer step, passed in as
  ``num_tokens`` so that gradients do not depend on how the step is split into micro-batches.

Tensors and numbers in, tensors and numbers out: no config, model, rank or file in here.
"""

from __future__ import annotations

import math

import torch


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, scale_by_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """GRPO advantages: ``(r - group mean) / (group std + eps)``, std unbiased (torch's default).

    ``rewards``: ``[num_groups * group_size]``, consecutive entries form a group. With
    ``scale_by_std=False`` returns ``r - group mean`` (Dr. GRPO). A group whose rewards are all
    equal gets advantage 0 for every member.

    >>> group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.5]), 2)
    tensor([ 0.7071, -0.7071,  0.0000,  0.0000])
    """
    if rewards.ndim != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)  # [G, n]
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # [G, n]
    if scale_by_std:
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
        centred = centred / (std + eps)  # [G, n]
    return centred.reshape(-1)  # [G*n]


def batch_std_advantages(rewards: torch.Tensor, group_size: int, *, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++-baseline: the group mean as baseline, then one std over the whole batch.

    >>> batch_std_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), 2)  # centred [.5, -.5, 0, 0], std 0.408
    tensor([ 1.2247, -1.2247,  0.0000,  0.0000])
    """
    centred = group_advantages(rewards, group_size, scale_by_std=False)
    return centred / (centred.std() + eps) if centred.numel() > 1 else centred


ADVANTAGES = {
    "grpo": group_advantages,
    "drgrpo": lambda rewards, group_size: group_advantages(rewards, group_size, scale_by_std=False),
    "rloo-batch-std": batch_std_advantages,
}
"""``algo.advantage`` -> estimator ``(rewards [G*n], group_size) -> advantages [G*n]``."""


def advantages(rewards: torch.Tensor, group_size: int, kind: str) -> torch.Tensor:
    """``[G*n]`` advantages by the estimator named ``kind`` (a key of :data:`ADVANTAGES`)."""
    if kind not in ADVANTAGES:
        raise ValueError(f"unknown advantage estimator {kind!r}; expected one of {', '.join(ADVANTAGES)}")
    return ADVANTAGES[kind](rewards, group_size)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.4,
    kind: str = "ppo",
    cov_fraction: float | None = None,
    cov_bounds: tuple[float, float] = (1.0, 5.0),
    kl_cov_coef: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate with decoupled bounds, per token (``kind="ppo"``; see below for the variants).

    ``logprobs``, ``old_logprobs``, ``response_mask``: ``[B, T]``; ``advantages``: ``[B]`` or ``[B, T]``.
    ``ratio = exp(logprobs - old_logprobs)``; per-token loss
    ``-min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)``, zero where the mask is 0.

    Metrics (fractions of valid tokens, detached): ``clip_frac_low`` where the low bound binds
    (A < 0 and ratio < 1 - clip_low), ``clip_frac_high`` where the high bound binds (A > 0 and
    ratio > 1 + clip_high), ``ratio_mean``, ``approx_kl_old`` (mean of old - new log-prob).

    >>> lp = torch.log(torch.tensor([[1.5, 0.5]]))
    >>> loss, m = policy_loss(lp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2))
    >>> loss  # token 1: min(1.5, 1.4) = 1.4 -> -1.4 ; token 2: min(0.5, 0.8) = 0.5 -> -0.5
    tensor([[-1.4000, -0.5000]])
    >>> float(m["clip_frac_high"]), float(m["clip_frac_low"])
    (0.5, 0.0)

    ``kind="cispo"``: per-token loss ``-sg(min(ratio, 1 + clip_high)) * A * logprobs``: the weight is
    clipped from above only and carries no gradient, so a clipped token still gets the gradient
    ``-w * A`` of its log-prob (PPO would give it none); ``clip_low`` is not used. ``clip_frac_high``
    counts the tokens whose weight was clipped, whatever the sign of A.

    ``kind="gspo"``: the ratio of sequence ``i`` is ``s_i = exp(mean over its tokens of (logprobs -
    old_logprobs))``, and every token gets ``-min(s A, clip(s, 1 - clip_low, 1 + clip_high) A)`` with the
    gradient of ``s_i`` flowing through its own log-prob (GSPO's token form: the value is ``s_i``, the
    gradient ``s_i * grad logprob``); aggregated with ``seq-mean-token-mean`` this is GSPO's objective.
    A whole sequence is clipped or not; GSPO's ranges are small (3e-4 and 4e-4 in its paper).

    ``kind="clip_cov"`` and ``kind="kl_cov"`` (Cui et al. 2025, entropy control): each valid token's
    ``cov = (A - mean A) * (logprob - mean logprob)`` over the valid tokens of this call (detached).
    Clip-Cov is the PPO loss above with the tokens it does not already clip whose ``cov`` lies strictly
    inside ``cov_bounds`` as candidates; ``max(1, int(cov_fraction * valid tokens))`` of them, drawn at
    random with ``generator`` (all when there are no more), lose their loss and gradient. KL-Cov uses no
    clipping: every token gets ``-ratio * A``, and the ``max(1, int(cov_fraction * valid tokens))`` tokens of
    largest ``cov`` get ``+ kl_cov_coef * |logprobs - old_logprobs|`` on top (it acts from the second update
    of a batch on: at the first the log-ratio is 0). ``cov_fraction=None`` takes the paper's value for the kind
    (:data:`COV_FRACTION`). ``cov_frac`` is the fraction of valid tokens selected.
    """
    if kind not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {kind!r}; expected one of {', '.join(POLICY_LOSSES)}")
    if cov_fraction is None:
        cov_fraction = COV_FRACTION.get(kind, 0.0)
    mask = response_mask.to(logprobs.dtype)  # [B, T]
    if advantages.ndim == 1:
        advantages = advantages.unsqueeze(-1)  # [B, 1]
    advantages = advantages.expand_as(logprobs)  # [B, T]
    log_ratio = logprobs - old_logprobs  # [B, T]
    if kind == "gspo":
        per_seq = (log_ratio.detach() * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1.0)  # [B, 1]
        log_ratio = per_seq + logprobs - logprobs.detach()  # [B, T]: value s_i, gradient through each token
    ratio = torch.exp(log_ratio)  # [B, T]
    selected = torch.zeros_like(mask, dtype=torch.bool)  # [B, T] tokens Clip-Cov / KL-Cov act on
    if kind == "cispo":
        weight = torch.clamp(ratio, max=1.0 + clip_high).detach()  # [B, T]
        per_token = -weight * advantages * logprobs * mask  # [B, T]
    elif kind == "kl_cov":
        selected = _top_cov_tokens(logprobs, advantages, mask, cov_fraction)
        per_token = (-ratio * advantages + kl_cov_coef * log_ratio.abs() * selected) * mask  # [B, T]
    else:
        unclipped = ratio * advantages  # [B, T]
        clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages  # [B, T]
        per_token = -torch.minimum(unclipped, clipped) * mask  # [B, T]
        if kind == "clip_cov":
            selected = _clip_cov_tokens(logprobs, advantages, mask, unclipped > clipped, cov_fraction, cov_bounds,
                                        generator)
            per_token = per_token * ~selected  # [B, T]

    with torch.no_grad():
        n = mask.sum().clamp(min=1.0)
        binds_high = (ratio > 1.0 + clip_high) if kind == "cispo" else (advantages > 0) & (ratio > 1.0 + clip_high)
        high = binds_high.to(mask.dtype) * mask
        low = ((advantages < 0) & (ratio < 1.0 - clip_low)).to(mask.dtype) * mask * (kind != "cispo")
        metrics = {
            "clip_frac_high": high.sum() / n,
            "clip_frac_low": low.sum() / n,
            "ratio_mean": (ratio * mask).sum() / n,
            "approx_kl_old": (-log_ratio * mask).sum() / n,
            "cov_frac": (selected.to(mask.dtype) * mask).sum() / n,
        }
    return per_token, metrics


POLICY_LOSSES = ("ppo", "cispo", "gspo", "clip_cov", "kl_cov")
"""``algo.policy_loss``: the variants :func:`policy_loss` computes."""

COV_FRACTION = {"clip_cov": 2e-4, "kl_cov": 2e-3}
"""The fraction of tokens Clip-Cov and KL-Cov act on unless told (Cui et al. 2025)."""


def _token_cov(logprobs, advantages, mask) -> torch.Tensor:
    """``(A - mean A) * (logprob - mean logprob)`` per token, means over the valid tokens, detached: ``[B, T]``."""
    valid = mask > 0
    lp, adv = logprobs.detach(), advantages.detach()
    return (adv - adv[valid].mean()) * (lp - lp[valid].mean())


def _how_many(mask, fraction: float) -> int:
    return max(1, int(fraction * float(mask.sum())))


def _top_cov_tokens(logprobs, advantages, mask, fraction) -> torch.Tensor:
    """KL-Cov's tokens: the ``max(1, int(fraction * valid))`` valid tokens of largest covariance, ``[B, T]`` bool."""
    cov = _token_cov(logprobs, advantages, mask).masked_fill(mask <= 0, float("-inf")).flatten()
    k = min(_how_many(mask, fraction), int((mask > 0).sum()))
    selected = torch.zeros_like(cov, dtype=torch.bool)
    selected[torch.topk(cov, k).indices] = True
    return selected.view_as(mask)


def _clip_cov_tokens(logprobs, advantages, mask, already_clipped, fraction, bounds, generator) -> torch.Tensor:
    """Clip-Cov's tokens: up to ``max(1, int(fraction * valid))`` drawn among the valid, unclipped tokens whose
    covariance lies strictly inside ``bounds``, ``[B, T]`` bool."""
    cov = _token_cov(logprobs, advantages, mask)
    low, high = bounds
    candidates = torch.nonzero(((cov > low) & (cov < high) & (mask > 0) & ~already_clipped).flatten()).flatten()
    k = min(_how_many(mask, fraction), len(candidates))
    order = torch.randperm(len(candidates), generator=generator, device="cpu")[:k].to(candidates.device)
    selected = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
    selected[candidates[order]] = True
    return selected.view_as(mask)


ROLLOUT_CORRECTIONS = ("off", "token_tis", "seq_tis", "seq_mask", "icepop")
"""``algo.rollout_correction``: the importance weights :func:`rollout_correction` computes."""

ROLLOUT_CORRECTION_BOUNDS = {"token_tis": (0.0, 2.0), "seq_tis": (0.0, 2.0), "seq_mask": (0.0, 2.0),
                             "icepop": (0.5, 5.0)}
"""Default ``[low, high]`` per mode: TIS's C = 2 (Yao et al. 2025), MIS's C = 2 (Liu, Li et al. 2025), IcePop's
[0.5, 5]."""


def rollout_correction(
    old_logprobs: torch.Tensor,
    sampler_logprobs: torch.Tensor,
    response_mask: torch.Tensor,
    mode: str = "off",
    bounds: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Importance weights between the trainer's old policy and the sampler that drew the tokens, ``[B, T]``.

    An inference engine (vLLM, or any copy in another precision) samples from ``pi_sampler``, not from the
    ``pi_old`` the trainer recomputes; the weights put the policy gradient back on ``pi_old``'s
    distribution. ``rho_t = exp(old_logprobs - sampler_logprobs)`` per token and ``rho_i = exp(sum over
    the sequence's tokens of the log-ratio)`` per sequence; with ``bounds = (low, high)``:

    - ``off``: 1 everywhere;
    - ``token_tis`` (truncated IS): ``clamp(rho_t, low, high)``;
    - ``seq_tis``: ``clamp(rho_i, low, high)`` on every token of sequence ``i``;
    - ``seq_mask`` (masked IS, MIS): ``rho_i`` where ``low <= rho_i <= high``, else 0 for the whole sequence;
    - ``icepop``: ``rho_t`` where ``low <= rho_t <= high``, else 0 for that token.

    ``bounds=None`` takes :data:`ROLLOUT_CORRECTION_BOUNDS`. Weights are detached, 0 where the mask is 0;
    multiply them into the per-token policy-gradient term (not the KL term).

    Metrics (detached, over valid tokens; sequence modes count a sequence's weight once per token):
    ``weight_p50``, ``weight_p99``, ``weight_max``; ``masked_frac`` (weights a mask set to 0),
    ``truncated_frac`` (weights a bound changed); ``mismatch_kl``, the k3 estimate of KL(sampler || old),
    ``mean(rho_t - 1 - log rho_t)``, whatever the mode.

    >>> old = torch.log(torch.tensor([[0.5, 0.4, 0.2]]))
    >>> sampler = torch.log(torch.tensor([[0.2, 0.4, 0.5]]))  # rho_t = 2.5, 1, 0.4
    >>> mask = torch.ones(1, 3)
    >>> rollout_correction(old, sampler, mask, "token_tis")[0]
    tensor([[2.0000, 1.0000, 0.4000]])
    >>> rollout_correction(old, sampler, mask, "icepop")[0]  # outside [0.5, 5]: dropped
    tensor([[2.5000, 1.0000, 0.0000]])
    >>> rollout_correction(old, sampler, mask, "seq_tis")[0]  # rho_i = 2.5 * 1 * 0.4 = 1
    tensor([[1., 1., 1.]])
    """
    if mode not in ROLLOUT_CORRECTIONS:
        raise ValueError(f"unknown rollout correction {mode!r}; expected one of {', '.join(ROLLOUT_CORRECTIONS)}")
    low, high = bounds if bounds is not None else ROLLOUT_CORRECTION_BOUNDS.get(mode, (0.0, math.inf))
    mask = response_mask.to(torch.float32)  # [B, T]
    valid = mask > 0
    log_ratio = ((old_logprobs.detach() - sampler_logprobs.detach()).float() * mask)  # [B, T], 0 where masked
    if mode in ("seq_tis", "seq_mask"):
        log_ratio_used = log_ratio.sum(-1, keepdim=True).expand_as(log_ratio)  # [B, T]: the sequence's on each token
    else:
        log_ratio_used = log_ratio
    # exp of a clamped log keeps a long sequence's product finite; the clamp is outside every bound used here
    rho = torch.exp(log_ratio_used.clamp(max=80.0))  # [B, T]
    if mode == "off":
        weights = torch.ones_like(rho)
    elif mode in ("token_tis", "seq_tis"):
        weights = rho.clamp(min=low, max=high)
    else:
        weights = rho * ((rho >= low) & (rho <= high))
    weights = weights * mask
    with torch.no_grad():
        n = mask.sum().clamp(min=1.0)
        w = weights[valid] if bool(valid.any()) else torch.zeros(1)
        masked = (weights == 0) & valid & (mode in ("seq_mask", "icepop"))
        truncated = (weights != rho) & valid & (mode in ("token_tis", "seq_tis"))
        rho_t = torch.exp(log_ratio)
        p50, p99 = _quantiles(w, (0.5, 0.99))
        metrics = {
            "weight_p50": p50,
            "weight_p99": p99,
            "weight_max": w.max(),
            "masked_frac": masked.float().sum() / n,
            "truncated_frac": truncated.float().sum() / n,
            "mismatch_kl": ((rho_t - 1.0 - log_ratio) * mask).sum() / n,
        }
    return weights, metrics


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference), with ``log r = ref_logprobs - logprobs``.

    - "k1": ``-log r`` (unbiased, high variance, can be negative)
    - "k2": ``(log r)^2 / 2`` (biased, low variance; its gradient is the true KL gradient)
    - "k3": ``exp(log r) - 1 - log r`` (unbiased, always >= 0; ProRL's choice)

    All three are 0 where the policy equals the reference, e.g. right after a reference reset.

    >>> kl_penalty(torch.tensor([0.0]), torch.log(torch.tensor([2.0])), "k3")  # 2 - 1 - log 2
    tensor([0.3069])
    """
    log_r = ref_logprobs - logprobs
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r.square()
    if kind == "k3":
        return torch.exp(log_r) - 1.0 - log_r
    raise ValueError(f"unknown KL estimator {kind!r}; expected 'k1', 'k2' or 'k3'")


def _quantiles(values: torch.Tensor, qs: tuple[float, ...]) -> list[torch.Tensor]:
    """``torch.quantile(values, q)`` (linear interpolation) for each ``q``, from one sort. ``torch.quantile`` refuses
    more than 2**24 elements, fewer than one step of the paper's batches has tokens.

    >>> [float(v) for v in _quantiles(torch.tensor([4.0, 1.0, 3.0, 2.0]), (0.0, 0.5, 1.0))]
    [1.0, 2.5, 4.0]
    """
    ordered = values.flatten().sort().values
    last = ordered.numel() - 1
    out = []
    for q in qs:
        pos = q * last
        lo = int(math.floor(pos))
        hi = min(lo + 1, last)
        out.append(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
    return out


def cosine_length_reward(score: float, length: int, max_length: int, *, correct: tuple[float, float] = (1.0, 0.5),
                         wrong: tuple[float, float] = (0.0, 0.0)) -> float:
    """The cosine length reward (Yeo et al. 2025; ProRL v2's length penalty): a reward that falls along a half
    cosine from its value at length 0 to its value at ``max_length``.

    ``correct = (r0, rL)`` for a fully correct response (score 1), ``wrong`` for a score of 0, and a partial
    score in between mixes the two: ``score * c(L) + (1 - score) * w(L)`` with
    ``c(L) = rL + (r0 - rL) * (1 + cos(pi * L / max_length)) / 2``. Lengths past ``max_length`` count as it.

    >>> cosine_length_reward(1.0, 0, 100), cosine_length_reward(1.0, 50, 100), cosine_length_reward(1.0, 100, 100)
    (1.0, 0.75, 0.5)
    >>> cosine_length_reward(0.0, 50, 100, wrong=(-1.0, 0.0))  # a short wrong answer costs more
    -0.5
    """
    x = min(max(length, 0), max_length) / max(max_length, 1)
    shape = (1.0 + math.cos(math.pi * x)) / 2  # 1 at length 0, 0 at max_length

    def at(bounds):
        return bounds[1] + (bounds[0] - bounds[1]) * shape

    return score * at(correct) + (1.0 - score) * at(wrong)


def length_penalty_on(step_in_stage: int, schedule: list | tuple) -> bool:
    """Whether a scheduled length penalty is on at the (1-based) step of its stage: ``schedule = [on, off]``
    repeats ``on`` steps with it, then ``off`` steps without; an empty schedule is always on.

    >>> [length_penalty_on(s, [2, 1]) for s in range(1, 7)]
    [True, True, False, True, True, False]
    """
    if not schedule:
        return True
    on, off = schedule
    return (step_in_stage - 1) % (on + off) < on


def steer_entropy_coef(coef: float, entropy: float, target: float, step: float, max_coef: float) -> float:
    """One step of the entropy bonus's coefficient toward a target entropy: ``coef + step`` when the measured
    ``entropy`` is below ``target``, ``coef - step`` when above, kept in ``[0, max_coef]`` (adaptive entropy
    control, as in Skywork-OR1). A bonus ``-coef * entropy`` in the loss then pushes the entropy up only while it
    is too low.

    >>> steer_entropy_coef(0.0, 0.1, 0.3, 0.002, 0.01), steer_entropy_coef(0.004, 0.5, 0.3, 0.002, 0.01)
    (0.002, 0.002)
    >>> steer_entropy_coef(0.01, 0.1, 0.3, 0.002, 0.01), steer_entropy_coef(0.001, 0.5, 0.3, 0.002, 0.01)
    (0.01, 0.0)
    """
    moved = coef + step if entropy < target else coef - step
    return min(max(moved, 0.0), max_coef)


def kl_share(pg_magnitude: float, kl_magnitude: float) -> float:
    """The KL term's share of the loss: ``kl / (pg + kl)`` for the summed per-token magnitudes
    ``sum |pg_t| m_t`` and ``beta * sum |kl_t| m_t`` of one step (0 when both are 0).

    Magnitudes, not the signed loss: with group-normalised advantages the policy-gradient loss sums to about 0
    whatever the signal, so a share of the signed loss would say nothing. A share near 1 is the paper's "the KL
    term dominates the loss": the policy is held at the reference and a reset is due.

    >>> kl_share(3.0, 1.0)
    0.25
    >>> kl_share(0.0, 0.0)
    0.0
    """
    total = pg_magnitude + kl_magnitude
    return kl_magnitude / total if total > 0 else 0.0


AGGREGATION_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def aggregate_loss(
    per_token_loss: torch.Tensor,
    response_mask: torch.Tensor,
    mode: str = "token-mean",
    *,
    num_tokens: float | torch.Tensor | None = None,
    num_sequences: float | None = None,
    max_response_length: int | None = None,
) -> torch.Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar.

    - "token-mean" (DAPO): ``sum(loss * mask) / num_tokens``. Pass ``num_tokens`` = valid response
      tokens of the whole optimizer step (counted once, before micro-batching) and the gradient of
      a step is the same however it is split; default is this batch's ``mask.sum()``.
    - "seq-mean-token-mean" (original GRPO): mean over tokens within a sequence, then sum over
      sequences divided by ``num_sequences`` (default this batch's B). Long responses weigh less
      per token: the length bias DAPO removed.
    - "seq-mean-token-sum-norm" (Dr. GRPO): ``sum(loss * mask) / (num_sequences * max_response_length)``,
      a constant denominator with no length bias. ``max_response_length`` defaults to ``T``.

    >>> loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    >>> mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    >>> aggregate_loss(loss, mask, "token-mean")  # (1+2+3+4)/4
    tensor(2.5000)
    >>> aggregate_loss(loss, mask, "seq-mean-token-mean")  # (2 + 4)/2
    tensor(3.)
    >>> aggregate_loss(loss, mask, "seq-mean-token-sum-norm")  # 10/(2*3)
    tensor(1.6667)
    """
    mask = response_mask.to(per_token_loss.dtype)  # [B, T]
    masked = per_token_loss * mask  # [B, T]
    if mode == "token-mean":
        denom = mask.sum() if num_tokens is None else num_tokens
        return masked.sum() / torch.clamp(torch.as_tensor(denom, dtype=masked.dtype), min=1.0)
    n_seq = float(per_token_loss.shape[0]) if num_sequences is None else float(num_sequences)
    if mode == "seq-mean-token-mean":
        per_seq = masked.sum(-1) / mask.sum(-1).clamp(min=1.0)  # [B]
        return per_seq.sum() / max(n_seq, 1.0)
    if mode == "seq-mean-token-sum-norm":
        horizon = per_token_loss.shape[1] if max_response_length is None else max_response_length
        return masked.sum() / (max(n_seq, 1.0) * horizon)
    raise ValueError(f"unknown loss aggregation {mode!r}; expected one of {', '.join(AGGREGATION_MODES)}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is 1.

    >>> masked_mean(torch.tensor([1.0, 5.0, 3.0]), torch.tensor([1.0, 0.0, 1.0]))
    tensor(2.)
    """
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)

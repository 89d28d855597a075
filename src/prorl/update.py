"""The policy update of one step: mini-batch optimizer steps over the kept groups, and the optimizer.

Each optimizer step covers ``train.mini_batch_prompts`` groups, accumulated over micro-batches of
``train.micro_batch_size`` sequences. The loss is :mod:`prorl.algo`'s clipped surrogate plus
``beta`` times the KL penalty, aggregated with one denominator for the whole optimizer step (counted
before micro-batching, so the gradient does not depend on the micro-batch size). A non-finite loss or
gradient skips that optimizer step and never reaches the weights.
"""

from __future__ import annotations

import math

import torch

from prorl import algo
from prorl.batch import Batch, LogprobSettings, idle_pass, logprob_diff, logprobs_of
from prorl.config import Config
from prorl.dist import SINGLE, Dist, copy_shards, is_sharded, reshard, squared_norm
from prorl.errors import UserError


def single_update(cfg: Config, batch: Batch, total_sequences: int | None = None) -> bool:
    """Whether the batch gets exactly one optimizer step (one epoch, one mini-batch): then the old log-probs are the
    first forward pass's, detached, and need no pass of their own. ``total_sequences``: the sequences of every
    rank (default: this batch's)."""
    total = len(batch.problems) if total_sequences is None else total_sequences
    return cfg.train.epochs == 1 and cfg.train.mini_batch_prompts * batch.group_size >= total


def rollout_correction_of(cfg: Config) -> tuple[str, tuple[float, float] | None]:
    """The importance-weight mode and bounds of ``algo.rollout_correction``: when unset, ``token_tis`` for the vLLM
    engine (its log-probs come from other kernels in another precision) and ``off`` for the built-in engine."""
    mode = cfg.algo.rollout_correction or ("token_tis" if cfg.rollout.engine == "vllm" else "off")
    bounds = cfg.algo.rollout_correction_bounds
    return mode, (tuple(bounds) if bounds is not None else None)


def update_policy(model, optimizer, scheduler, batch: Batch, advantages, old_logprobs, ref_logprobs, cfg: Config,
                  generator, entropy_coef: float = 0.0, dist: Dist = SINGLE) -> tuple[dict, int]:
    """Mini-batch updates over one rollout batch. Returns (metrics, optimizer steps skipped for a NaN).

    ``old_logprobs=None`` (only when :func:`single_update`): the policy's own log-probs of this pass, detached, are
    the old ones (the ratio is exactly 1). The metrics include ``rollout/logprob_diff`` and ``rollout/mismatch_kl``
    of the old log-probs against the sampler's, and the importance weights' statistics when
    ``algo.rollout_correction`` is on (the weights multiply the policy-gradient term, not the KL term).
    ``entropy_coef > 0`` adds the entropy bonus ``- entropy_coef * aggregate(entropy)`` (its gradient included).

    With several ranks (``dist``) each holds its share of the batch: an optimizer step takes the same number of
    mini-batches on every rank, its denominators (tokens, sequences) count every rank's rows, every rank runs as
    many micro-batches as the busiest one (:func:`prorl.batch.idle_pass`), and the skip decision and the metrics
    use values reduced over the ranks; the gradient equals the single-process gradient of the union.
    """
    B = len(batch.problems)
    B_all = int(dist.sum([B])[0]) if dist.enabled else B
    seqs_per_update = cfg.train.mini_batch_prompts * batch.group_size
    how = LogprobSettings.of(cfg)
    correction, bounds = rollout_correction_of(cfg)
    first_pass = old_logprobs is None
    if first_pass:
        if not single_update(cfg, batch, B_all):
            raise ValueError("update_policy: old_logprobs=None needs one epoch and one mini-batch")
        old_logprobs = torch.zeros_like(batch.response_mask)  # [B, T], filled micro-batch by micro-batch below
    sums = {k: 0.0 for k in ("pg_loss", "kl_loss", "entropy", "kl", "clip_low", "clip_high", "ratio", "cov", "pg_abs",
                             "kl_abs", "entropy_bonus")}
    tokens_seen = 0.0
    grad_norms, skipped, updates = [], 0, 0
    beta = cfg.algo.kl_beta
    norm = weights_norm(model, dist)  # kept current below: only optimizer steps change the weights here
    model.train()
    for _ in range(cfg.train.epochs):
        order = torch.randperm(B, generator=generator)
        # The same number of mini-batches on every rank (some may be empty on a rank with few rows).
        mini_batches = torch.tensor_split(order, -(-B_all // seqs_per_update)) if dist.enabled else \
            order.split(seqs_per_update)
        for mb in mini_batches:
            # Token-level loss: the denominator is fixed for the whole optimizer step, before micro-batching
            # (and counts every rank's tokens).
            num_tokens, num_sequences = batch.response_mask[mb].sum(), len(mb)
            if dist.enabled:
                num_tokens, num_sequences = dist.sum([num_tokens, num_sequences])
            agg = dict(num_tokens=num_tokens, num_sequences=num_sequences,
                       max_response_length=cfg.rollout.max_new_tokens)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            parts = how.split(batch, mb)
            passes = int(dist.max([len(parts)])[0]) if dist.enabled else len(parts)  # agreed before the first pass
            for rows in parts:
                mask = batch.response_mask[rows]  # [b, T]
                logprobs, entropy = logprobs_of(model, batch, rows, how, with_entropy=True,
                                                entropy_grad=entropy_coef > 0)  # [b, T]
                if first_pass:
                    old_logprobs[rows] = logprobs.detach()
                pg, pm = algo.policy_loss(logprobs, old_logprobs[rows], advantages[rows], mask,
                                          clip_low=cfg.algo.clip_low, clip_high=cfg.algo.clip_high,
                                          kind=cfg.algo.policy_loss, cov_fraction=cfg.algo.cov_fraction,
                                          cov_bounds=tuple(cfg.algo.cov_bounds), kl_cov_coef=cfg.algo.kl_cov_coef,
                                          generator=generator)
                if correction != "off":
                    weights, _ = algo.rollout_correction(old_logprobs[rows], batch.sample_logprobs[rows], mask,
                                                         correction, bounds)  # [b, T], detached
                    pg = pg * weights.to(pg.dtype)
                pg_loss = algo.aggregate_loss(pg, mask, cfg.algo.loss_agg, **agg)
                loss = pg_loss
                if beta > 0:
                    kl = algo.kl_penalty(logprobs, ref_logprobs[rows], cfg.algo.kl_kind)  # [b, T]
                    kl_loss = algo.aggregate_loss(kl, mask, cfg.algo.loss_agg, **agg)
                    loss = loss + beta * kl_loss
                    sums["kl_loss"] += kl_loss.item()
                    sums["kl"] += float((kl.detach() * mask).sum())
                    sums["kl_abs"] += beta * float((kl.detach().abs() * mask).sum())
                sums["pg_abs"] += float((pg.detach().abs() * mask).sum())
                if entropy_coef > 0:
                    bonus = entropy_coef * algo.aggregate_loss(entropy, mask, cfg.algo.loss_agg, **agg)
                    loss = loss - bonus
                    sums["entropy_bonus"] += bonus.item()
                (loss * dist.grad_scale if dist.enabled else loss).backward()  # FSDP2 averages over the ranks
                step_loss += loss.item()
                ntok = float(mask.sum())
                tokens_seen += ntok
                sums["pg_loss"] += pg_loss.item()
                sums["entropy"] += float((entropy.detach() * mask).sum())
                sums["clip_low"] += float(pm["clip_frac_low"]) * ntok
                sums["clip_high"] += float(pm["clip_frac_high"]) * ntok
                sums["ratio"] += float(pm["ratio_mean"]) * ntok
                sums["cov"] += float(pm["cov_frac"]) * ntok
            for _ in range(passes - len(parts)):
                idle_pass(model, how, backward=True)
            if dist.enabled:
                step_loss = dist.sum([step_loss])[0]  # a non-finite loss on any rank skips the step on all
            params = [p for p in model.parameters() if p.grad is not None]
            max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)  # the global norm (a DTensor when sharded)
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                optimizer.zero_grad(set_to_none=True)  # never let a NaN reach the weights
                skipped += 1
                continue
            optimizer.step()
            norm = check_weights(model, norm, optimizer.param_groups[0]["lr"], dist)
            scheduler.step()
            grad_norms.append(grad_norm)
            updates += 1
    optimizer.zero_grad(set_to_none=True)
    if dist.enabled:
        keys = list(sums)
        *values, tokens_seen = dist.sum([sums[k] for k in keys] + [tokens_seen])
        sums = dict(zip(keys, values))
    denom = max(tokens_seen, 1.0)
    n_mb = max(updates + skipped, 1)
    metrics = {
        "actor/pg_loss": sums["pg_loss"] / n_mb,
        "actor/kl_loss": sums["kl_loss"] / n_mb,
        "actor/kl": sums["kl"] / denom,
        "actor/entropy": sums["entropy"] / denom,
        "actor/clip_frac_low": sums["clip_low"] / denom,
        "actor/clip_frac_high": sums["clip_high"] / denom,
        "actor/ratio_mean": sums["ratio"] / denom,
        "actor/grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else float("nan"),
        "actor/lr": scheduler.get_last_lr()[0],
        "actor/updates": updates,
        "actor/skipped_updates": skipped,
    }
    metrics |= mismatch_metrics(old_logprobs, batch, correction, bounds, dist)
    if entropy_coef > 0 or cfg.algo.entropy_target is not None:
        metrics["actor/entropy_coef"] = entropy_coef
        metrics["actor/entropy_bonus"] = sums["entropy_bonus"] / n_mb
    if beta > 0:
        metrics["actor/kl_share"] = algo.kl_share(sums["pg_abs"], sums["kl_abs"])
    if cfg.algo.policy_loss in algo.COV_FRACTION:
        metrics["actor/cov_frac"] = sums["cov"] / denom
    return metrics, skipped


IS_STATS = ("weight_p50", "weight_p99", "weight_max", "masked_frac", "truncated_frac")
"""The importance weights' statistics logged as ``rollout/is_*`` when ``algo.rollout_correction`` is on."""


def mismatch_metrics(old_logprobs, batch: Batch, correction: str, bounds, dist: Dist = SINGLE) -> dict:
    """``rollout/logprob_diff``, ``rollout/mismatch_kl`` and (correction on) ``rollout/is_*`` of the trainer's old
    log-probs against the sampler's. Over several ranks: token-weighted means, except the weights' p99 and maximum
    (the largest rank's) and their median (the token-weighted mean of the ranks' medians)."""
    if not dist.enabled:
        _, cm = algo.rollout_correction(old_logprobs, batch.sample_logprobs, batch.response_mask, correction, bounds)
        out = {"rollout/logprob_diff": logprob_diff(old_logprobs, batch), "rollout/mismatch_kl": float(cm["mismatch_kl"])}
        if correction != "off":
            out |= {f"rollout/is_{k}": float(cm[k]) for k in IS_STATS}
        return out
    mask = batch.response_mask
    tokens = float(mask.sum())
    diff = float(((old_logprobs - batch.sample_logprobs).abs() * mask).sum())
    cm = {k: 0.0 for k in ("mismatch_kl",) + IS_STATS}
    if tokens > 0:
        cm = {k: float(v) for k, v in algo.rollout_correction(old_logprobs, batch.sample_logprobs, mask, correction,
                                                              bounds)[1].items()}
    weighted = ("mismatch_kl", "weight_p50", "masked_frac", "truncated_frac")
    total, diff_sum, *sums = dist.sum([tokens, diff] + [cm.get(k, 0.0) * tokens for k in weighted])
    highest = dict(zip(("weight_p99", "weight_max"), dist.max([cm.get("weight_p99", 0.0), cm.get("weight_max", 0.0)])))
    means = {k: v / max(total, 1.0) for k, v in zip(weighted, sums)}
    out = {"rollout/logprob_diff": diff_sum / max(total, 1.0), "rollout/mismatch_kl": means["mismatch_kl"]}
    if correction != "off":
        out |= {f"rollout/is_{k}": (highest | means)[k] for k in IS_STATS}
    return out


MAX_NORM_GROWTH = 2.0
"""An optimizer step that multiplies the weights' global norm by more than this is taken as divergence."""


def weights_norm(model, dist: Dist = SINGLE) -> float:
    """The global L2 norm of the trainable weights (one read of every parameter; of every rank's shards)."""
    if dist.enabled:
        reshard(model)
        return math.sqrt(dist.sum([squared_norm(p for p in model.parameters() if p.requires_grad)])[0])
    params = [p.detach() for p in model.parameters() if p.requires_grad]
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params))))


def check_weights(model, norm_before: float, lr: float, dist: Dist = SINGLE) -> float:
    """The weights' norm after an optimizer step; stops the run (:class:`UnstableUpdate`) when the step left
    non-finite or exploded weights.

    Raised before anything is logged or checkpointed, so the last checkpoint stays the run's latest good state.
    """
    after = weights_norm(model, dist)
    if math.isfinite(after) and after <= MAX_NORM_GROWTH * norm_before + 1e-12:
        return after
    what = "non-finite weights" if not math.isfinite(after) else (
        f"weights whose norm grew from {norm_before:.4g} to {after:.4g} (more than {MAX_NORM_GROWTH:g}x)")
    raise UnstableUpdate(f"an optimizer step produced {what} at learning rate {lr:g}; they were not logged or "
                         f"checkpointed, the latest checkpoint is intact: lower train.lr and resume from it")


class UnstableUpdate(UserError):
    """An optimizer step that made the weights non-finite or blew them up."""


def make_optimizer(model, cfg: Config):
    """A fresh AdamW and its constant-after-warm-up schedule (also what a hard reset rebuilds)."""
    trainable = [p for p in model.parameters() if p.requires_grad]  # all of them, or a LoRA adapter's
    optimizer = torch.optim.AdamW(trainable, lr=cfg.train.lr, betas=tuple(cfg.train.betas),
                                  weight_decay=cfg.train.weight_decay)
    warmup = cfg.train.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0)
    return optimizer, scheduler


def reset_reference(policy, reference) -> None:
    """Hard reset of the reference: it becomes an exact copy of the current policy (the KL is 0 right after).
    A LoRA reference (:class:`prorl.lora.AdapterReference`) copies the policy's adapter."""
    if hasattr(reference, "reset"):
        reference.reset()
        return
    if is_sharded(reference):  # FSDP2: the same sharding, so each rank copies its own shards
        copy_shards(policy, reference)
        return
    reference.load_state_dict(policy.state_dict())

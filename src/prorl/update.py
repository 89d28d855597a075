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
from prorl.batch import Batch, LogprobSettings, logprob_diff, logprobs_of
from prorl.config import Config
from prorl.errors import UserError


def single_update(cfg: Config, batch: Batch) -> bool:
    """Whether the batch gets exactly one optimizer step (one epoch, one mini-batch): then the old log-probs are the
    first forward pass's, detached, and need no pass of their own."""
    return cfg.train.epochs == 1 and cfg.train.mini_batch_prompts * batch.group_size >= len(batch.problems)


def rollout_correction_of(cfg: Config) -> tuple[str, tuple[float, float] | None]:
    """The importance-weight mode and bounds of ``algo.rollout_correction``: when unset, ``token_tis`` for the vLLM
    engine (its log-probs come from other kernels in another precision) and ``off`` for the built-in engine."""
    mode = cfg.algo.rollout_correction or ("token_tis" if cfg.rollout.engine == "vllm" else "off")
    bounds = cfg.algo.rollout_correction_bounds
    return mode, (tuple(bounds) if bounds is not None else None)


def update_policy(model, optimizer, scheduler, batch: Batch, advantages, old_logprobs, ref_logprobs, cfg: Config,
                  generator, entropy_coef: float = 0.0) -> tuple[dict, int]:
    """Mini-batch updates over one rollout batch. Returns (metrics, optimizer steps skipped for a NaN).

    ``old_logprobs=None`` (only when :func:`single_update`): the policy's own log-probs of this pass, detached, are
    the old ones (the ratio is exactly 1). The metrics include ``rollout/logprob_diff`` and ``rollout/mismatch_kl``
    of the old log-probs against the sampler's, and the importance weights' statistics when
    ``algo.rollout_correction`` is on (the weights multiply the policy-gradient term, not the KL term).
    ``entropy_coef > 0`` adds the entropy bonus ``- entropy_coef * aggregate(entropy)`` (its gradient included).
    """
    B = len(batch.problems)
    seqs_per_update = cfg.train.mini_batch_prompts * batch.group_size
    how = LogprobSettings.of(cfg)
    correction, bounds = rollout_correction_of(cfg)
    first_pass = old_logprobs is None
    if first_pass:
        if not single_update(cfg, batch):
            raise ValueError("update_policy: old_logprobs=None needs one epoch and one mini-batch")
        old_logprobs = torch.zeros_like(batch.response_mask)  # [B, T], filled micro-batch by micro-batch below
    sums = {k: 0.0 for k in ("pg_loss", "kl_loss", "entropy", "kl", "clip_low", "clip_high", "ratio", "cov", "pg_abs",
                             "kl_abs", "entropy_bonus")}
    tokens_seen = 0.0
    grad_norms, skipped, updates = [], 0, 0
    beta = cfg.algo.kl_beta
    norm = weights_norm(model)  # kept current below: only optimizer steps change the weights here
    model.train()
    for _ in range(cfg.train.epochs):
        order = torch.randperm(B, generator=generator)
        for mb in order.split(seqs_per_update):
            # Token-level loss: the denominator is fixed for the whole optimizer step, before micro-batching.
            num_tokens = batch.response_mask[mb].sum()
            agg = dict(num_tokens=num_tokens, num_sequences=len(mb), max_response_length=cfg.rollout.max_new_tokens)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for rows in how.split(batch, mb):
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
                loss.backward()
                step_loss += loss.item()
                ntok = float(mask.sum())
                tokens_seen += ntok
                sums["pg_loss"] += pg_loss.item()
                sums["entropy"] += float((entropy.detach() * mask).sum())
                sums["clip_low"] += float(pm["clip_frac_low"]) * ntok
                sums["clip_high"] += float(pm["clip_frac_high"]) * ntok
                sums["ratio"] += float(pm["ratio_mean"]) * ntok
                sums["cov"] += float(pm["cov_frac"]) * ntok
            params = [p for p in model.parameters() if p.grad is not None]
            max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                optimizer.zero_grad(set_to_none=True)  # never let a NaN reach the weights
                skipped += 1
                continue
            optimizer.step()
            norm = check_weights(model, norm, optimizer.param_groups[0]["lr"])
            scheduler.step()
            grad_norms.append(grad_norm)
            updates += 1
    optimizer.zero_grad(set_to_none=True)
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
        "rollout/logprob_diff": logprob_diff(old_logprobs, batch),
    }
    _, cm = algo.rollout_correction(old_logprobs, batch.sample_logprobs, batch.response_mask, correction, bounds)
    metrics["rollout/mismatch_kl"] = float(cm["mismatch_kl"])
    if correction != "off":
        metrics |= {f"rollout/is_{k}": float(cm[k]) for k in ("weight_p50", "weight_p99", "weight_max",
                                                                "masked_frac", "truncated_frac")}
    if entropy_coef > 0 or cfg.algo.entropy_target is not None:
        metrics["actor/entropy_coef"] = entropy_coef
        metrics["actor/entropy_bonus"] = sums["entropy_bonus"] / n_mb
    if beta > 0:
        metrics["actor/kl_share"] = algo.kl_share(sums["pg_abs"], sums["kl_abs"])
    if cfg.algo.policy_loss in algo.COV_FRACTION:
        metrics["actor/cov_frac"] = sums["cov"] / denom
    return metrics, skipped


MAX_NORM_GROWTH = 2.0
"""An optimizer step that multiplies the weights' global norm by more than this is taken as divergence."""


def weights_norm(model) -> float:
    """The global L2 norm of the trainable weights (one read of every parameter)."""
    params = [p.detach() for p in model.parameters() if p.requires_grad]
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params))))


def check_weights(model, norm_before: float, lr: float) -> float:
    """The weights' norm after an optimizer step; stops the run (:class:`UnstableUpdate`) when the step left
    non-finite or exploded weights.

    Raised before anything is logged or checkpointed, so the last checkpoint stays the run's latest good state.
    """
    after = weights_norm(model)
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
    reference.load_state_dict(policy.state_dict())

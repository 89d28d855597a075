"""The ProRL training loop, in one function read top to bottom: :func:`train`.

Each step: sample prompts -> generate ``n`` responses each -> score them -> drop groups whose
scores are all equal and generate again until the batch is full (dynamic sampling, bounded) ->
advantages -> old and reference log-probs (once per batch) -> mini-batch updates -> maybe reset
the reference -> maybe validate -> maybe checkpoint -> log.

Where this departs from the textbook algorithm, and why:

- Old log-probs are recomputed by the trained model before the first update instead of taken from
  the sampler: generation runs on a lower-precision copy (``rollout.dtype``), and the ratio must
  compare like with like. The sampler's own log-probs feed the ``rollout/logprob_diff`` metric.
- Log-probs are taken at the sampling temperature (logits / T), so the ratio and the KL describe
  the distribution responses were drawn from.
- A reference reset copies the policy into the reference and (by default) builds a fresh AdamW
  and learning-rate schedule: ProRL's "hard reset". ``reset.keep_optimizer`` keeps the state (v2).
- Dynamic sampling refills from new prompts; when ``algo.max_gen_batches`` is spent the step
  trains on the groups it has (fewer than ``prompts_per_step``), and a step with none is skipped
  and logged, never an error.
- Randomness of step ``s`` comes from generators seeded with ``(train.seed, s)``, so a resumed
  run draws exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prorl import algo
from prorl.checkpoint import latest_checkpoint, load_trainer_state, load_weights_into, save_checkpoint
from prorl.config import Config, dump_yaml, stage_configs
from prorl.data.schema import Problem
from prorl.errors import UserError
from prorl.policy import DTYPES, encode_prompts, eos_token_ids, load_policy, resolve_device, sequence_logprobs
from prorl.runlog import RunLog

RESET_REQUEST = "reset.request"
"""File in the run directory that asks the running trainer for a reference reset (``prorl reset``)."""


@dataclass
class TrainState:
    """What a checkpoint must restore besides weights and optimizer."""

    step: int = 0
    """Completed training steps."""
    stage: int = -1
    """Index of the current stage (-1 before the first)."""
    resets: int = 0
    """Reference resets so far."""
    last_reset_step: int = 0
    """Step of the last reset (0 at the start)."""
    best_val: float | None = None
    """Best mean validation pass@1 since the last reset (for the plateau trigger)."""
    val_since_best: int = 0
    """Validations since best_val improved."""
    sampler: dict = field(default_factory=dict)
    """The data sampler's cursor."""


@dataclass
class Batch:
    """The kept groups of one step, as training tensors."""

    problems: list[Problem]  # [B] one per sequence, groups consecutive
    input_ids: torch.Tensor  # [B, P+T] left-padded prompt | right-padded response
    attention_mask: torch.Tensor  # [B, P+T]
    response_mask: torch.Tensor  # [B, T] float
    rewards: torch.Tensor  # [B]
    sample_logprobs: torch.Tensor  # [B, T] from the sampler
    responses: list[str]  # [B] decoded
    reasons: list[str]  # [B]
    finish_reasons: list[str]  # [B]

    @property
    def num_response_tokens(self) -> int:
        return self.response_mask.shape[1]


# ---------------------------------------------------------------- data


def load_data(cfg: Config) -> tuple[list[Problem], list[Problem]]:
    """Training and validation problems from files or the built-in generator."""
    if cfg.data.builtin:
        from prorl.data.builtin import make_problems

        kinds = [k.strip() for k in cfg.data.builtin.split(",") if k.strip()]
        # Validation draws from the held-out split, which training never sees (see prorl.data.builtin).
        train = [p for k in kinds for p in make_problems(k, 5000, seed=cfg.train.seed, split="train")]
        per_kind = max(1, cfg.data.val_size // len(kinds))
        val = [p for k in kinds
               for p in make_problems(k, per_kind, seed=cfg.train.seed + 10_000, split="heldout", distinct=True)]
        return train, val
    if not cfg.data.train_files:
        raise UserError("no training data: set data.train_files (JSONL/Parquet/HF dataset dir) or data.builtin")
    from prorl.data.loaders import load_problems

    train = [p for f in cfg.data.train_files for p in load_problems(f, adapter=cfg.data.adapter)]
    if cfg.data.val_files:
        val = [p for f in cfg.data.val_files for p in load_problems(f, adapter=cfg.data.adapter)]
    else:
        rng = random.Random(cfg.train.seed)
        shuffled = train[:]
        rng.shuffle(shuffled)
        n_val = int(len(shuffled) * cfg.data.val_fraction)
        val, train = shuffled[:n_val], shuffled[n_val:]
    return train, val[: cfg.data.val_size]


def make_sampler(problems: list[Problem], cfg: Config):
    from prorl.data.mixture import MixtureSampler

    return MixtureSampler(problems, cfg.data.weights or None, seed=cfg.train.seed)


# ---------------------------------------------------------------- tensors


def step_generator(seed: int, step: int, salt: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator that depends only on (seed, step, salt): resumed runs replay the same draws.

    Sampling needs it on the model's device; the same seed gives different draws on cpu and cuda.
    """
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + step * 7_919 + salt) % (2**63))


def assemble(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]], pad_id: int):
    """Concatenate rollout pieces of different widths: left-pad prompts, right-pad responses.

    Each part is ``(prompt_ids [b, P_i], prompt_mask, response_ids [b, T_i], response_mask, logprobs)``.
    Returns ``input_ids [B, P+T]``, ``attention_mask [B, P+T]``, ``response_mask [B, T]``, ``logprobs [B, T]``.
    """
    P = max(p[0].shape[1] for p in parts)
    T = max(p[2].shape[1] for p in parts)
    ids, attn, rmask, lps = [], [], [], []
    for prompt_ids, prompt_mask, response_ids, response_mask, logprobs in parts:
        lp, lt = P - prompt_ids.shape[1], T - response_ids.shape[1]
        prompt_ids = torch.nn.functional.pad(prompt_ids, (lp, 0), value=pad_id)
        prompt_mask = torch.nn.functional.pad(prompt_mask.float(), (lp, 0))
        response_ids = torch.nn.functional.pad(response_ids, (0, lt), value=pad_id)
        response_mask = torch.nn.functional.pad(response_mask.float(), (0, lt))
        ids.append(torch.cat([prompt_ids, response_ids], dim=1))
        attn.append(torch.cat([prompt_mask, response_mask], dim=1))
        rmask.append(response_mask)
        lps.append(torch.nn.functional.pad(logprobs.float(), (0, lt)))
    return torch.cat(ids), torch.cat(attn).long(), torch.cat(rmask), torch.cat(lps)


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


# ---------------------------------------------------------------- phases


def generate_and_score(gen_model, tokenizer, problems: list[Problem], cfg: Config, pool, generator) -> dict:
    """Generate ``n`` responses per problem and score them. Returns the pieces of one generation batch."""
    from prorl.rollout import generate

    n = cfg.rollout.n
    prompts = encode_prompts(tokenizer, [p.prompt for p in problems], chat_template=cfg.model.chat_template)
    prompt_ids = [ids for ids in prompts for _ in range(n)]
    t0 = time.perf_counter()
    out = generate(
        gen_model, prompt_ids, max_new_tokens=cfg.rollout.max_new_tokens, eos_token_ids=eos_token_ids(gen_model, tokenizer),
        pad_token_id=tokenizer.pad_token_id, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
        generator=generator, batch_size=cfg.rollout.batch_size,
    )
    t_gen = time.perf_counter() - t0
    texts = tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
    per_seq = [p for p in problems for _ in range(n)]
    t0 = time.perf_counter()
    verdicts = pool.score_batch(per_seq, texts)
    t_score = time.perf_counter() - t0
    rewards = []
    for problem, verdict, finish in zip(per_seq, verdicts, out.finish_reasons):
        score = float(verdict.score)
        if problem.domain == "logic" and cfg.reward.binarize_logic:
            score = 1.0 if score >= 1.0 else 0.0
        if finish == "length" and cfg.reward.truncated_reward is not None:
            score = cfg.reward.truncated_reward
        rewards.append(score)
    return dict(rollout=out, problems=per_seq, texts=texts, verdicts=verdicts, rewards=torch.tensor(rewards),
                t_gen=t_gen, t_score=t_score)


def collect_batch(gen_model, tokenizer, sampler, cfg: Config, pool, generator) -> tuple[Batch | None, dict]:
    """Dynamic sampling: generate until ``prompts_per_step`` groups with unequal scores are kept.

    Returns the batch (None when no group was kept) and metrics over every generated sample.
    """
    n, want = cfg.rollout.n, cfg.train.prompts_per_step
    kept_parts, kept_idx, all_pieces = [], [], []
    kept_groups = gen_batches = 0
    while kept_groups < want and gen_batches < max(cfg.algo.max_gen_batches, 1):
        gen_batches += 1
        pieces = generate_and_score(gen_model, tokenizer, sampler.next_batch(want), cfg, pool, generator)
        all_pieces.append(pieces)
        grouped = pieces["rewards"].view(-1, n)  # [G, n]
        varied = (grouped.max(1).values - grouped.min(1).values) > 0  # [G]
        keep = varied if cfg.algo.dynamic_sampling else torch.ones_like(varied)
        for g in torch.nonzero(keep).flatten().tolist():
            if kept_groups == want:
                break
            kept_idx.append((len(all_pieces) - 1, g))
            kept_groups += 1
    metrics = rollout_metrics(all_pieces, n)
    metrics["batch/gen_batches"] = gen_batches
    metrics["batch/groups_kept"] = kept_groups
    if kept_groups == 0:
        return None, metrics
    for b, g in kept_idx:
        r = all_pieces[b]["rollout"]
        rows = slice(g * n, (g + 1) * n)
        kept_parts.append((r.prompt_ids[rows], r.prompt_mask[rows], r.response_ids[rows], r.response_mask[rows], r.logprobs[rows]))
    input_ids, attention_mask, response_mask, sample_lps = assemble(kept_parts, tokenizer.pad_token_id)

    def gather(get):
        """The kept groups' rows of one per-sample sequence (``get`` picks it from a piece), in batch order."""
        return [x for b, g in kept_idx for x in get(all_pieces[b])[g * n:(g + 1) * n]]

    batch = Batch(
        problems=gather(lambda p: p["problems"]), input_ids=input_ids, attention_mask=attention_mask,
        response_mask=response_mask, rewards=torch.stack(gather(lambda p: p["rewards"])), sample_logprobs=sample_lps,
        responses=gather(lambda p: p["texts"]), reasons=[v.reason for v in gather(lambda p: p["verdicts"])],
        finish_reasons=gather(lambda p: p["rollout"].finish_reasons),
    )
    return batch, metrics


def rollout_metrics(all_pieces: list[dict], n: int) -> dict:
    """Reward, accuracy, length and verifier metrics over every sample generated in a step."""
    m: dict[str, float] = {}
    rewards = torch.cat([p["rewards"] for p in all_pieces])
    problems = [q for p in all_pieces for q in p["problems"]]
    verdicts = [v for p in all_pieces for v in p["verdicts"]]
    lengths = torch.cat([p["rollout"].response_mask.sum(-1) for p in all_pieces]).float().cpu()
    finishes = [f for p in all_pieces for f in p["rollout"].finish_reasons]
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
    groups = rewards.view(-1, n)
    m["batch/zero_var_group_frac"] = float(((groups.max(1).values - groups.min(1).values) == 0).float().mean())
    m["batch/solve_all_frac"] = float((groups.min(1).values >= 1.0).float().mean())
    m["batch/solve_none_frac"] = float((groups.max(1).values <= 0.0).float().mean())
    m["response/length_mean"] = float(lengths.mean())
    m["response/length_max"] = float(lengths.max())
    m["response/truncated_frac"] = sum(f == "length" for f in finishes) / len(finishes)
    m["time/generate"] = sum(p["t_gen"] for p in all_pieces)
    m["time/score"] = sum(p["t_score"] for p in all_pieces)
    m["perf/gen_tokens"] = float(lengths.sum())
    return m


def compute_advantages(rewards: torch.Tensor, group_size: int, kind: str) -> torch.Tensor:
    """``[B]`` advantages by the configured estimator (one place where the variant is chosen)."""
    if kind == "grpo":
        return algo.group_advantages(rewards, group_size)
    if kind == "drgrpo":
        return algo.group_advantages(rewards, group_size, scale_by_std=False)
    if kind == "rloo-batch-std":  # REINFORCE++-baseline: group mean baseline, batch-level std
        centred = algo.group_advantages(rewards, group_size, scale_by_std=False)
        return centred / (centred.std() + 1e-6) if centred.numel() > 1 else centred
    raise ValueError(f"unknown advantage estimator {kind!r}")


def update_policy(model, optimizer, scheduler, batch: Batch, advantages, old_logprobs, ref_logprobs, cfg: Config,
                  generator) -> tuple[dict, int]:
    """Mini-batch updates over one rollout batch. Returns (metrics, optimizer steps skipped for a NaN)."""
    n = cfg.rollout.n
    B = len(batch.problems)
    seqs_per_update = cfg.train.mini_batch_prompts * n
    sums = {k: 0.0 for k in ("pg_loss", "kl_loss", "entropy", "kl", "clip_low", "clip_high", "ratio")}
    tokens_seen = 0.0
    grad_norms, skipped, updates = [], 0, 0
    beta = cfg.algo.kl_beta
    model.train()
    for _ in range(cfg.train.epochs):
        order = torch.randperm(B, generator=generator)
        for mb in order.split(seqs_per_update):
            # Token-level loss: the denominator is fixed for the whole optimizer step, before micro-batching.
            num_tokens = batch.response_mask[mb].sum()
            agg = dict(num_tokens=num_tokens, num_sequences=len(mb), max_response_length=cfg.rollout.max_new_tokens)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for rows in mb.split(cfg.train.micro_batch_size):
                mask = batch.response_mask[rows]  # [b, T]
                logprobs, entropy = logprobs_of(model, batch, rows, cfg.rollout.temperature, with_entropy=True,
                                                autocast=cfg.train.autocast_bf16)  # [b, T]
                pg, pm = algo.policy_loss(logprobs, old_logprobs[rows], advantages[rows], mask,
                                          clip_low=cfg.algo.clip_low, clip_high=cfg.algo.clip_high)
                pg_loss = algo.aggregate_loss(pg, mask, cfg.algo.loss_agg, **agg)
                loss = pg_loss
                if beta > 0:
                    kl = algo.kl_penalty(logprobs, ref_logprobs[rows], cfg.algo.kl_kind)  # [b, T]
                    kl_loss = algo.aggregate_loss(kl, mask, cfg.algo.loss_agg, **agg)
                    loss = loss + beta * kl_loss
                    sums["kl_loss"] += kl_loss.item()
                    sums["kl"] += float((kl.detach() * mask).sum())
                loss.backward()
                step_loss += loss.item()
                ntok = float(mask.sum())
                tokens_seen += ntok
                sums["pg_loss"] += pg_loss.item()
                sums["entropy"] += float((entropy * mask).sum())
                sums["clip_low"] += float(pm["clip_frac_low"]) * ntok
                sums["clip_high"] += float(pm["clip_frac_high"]) * ntok
                sums["ratio"] += float(pm["ratio_mean"]) * ntok
            params = [p for p in model.parameters() if p.grad is not None]
            max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                optimizer.zero_grad(set_to_none=True)  # never let a NaN reach the weights
                skipped += 1
                continue
            optimizer.step()
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
    }
    return metrics, skipped


def make_optimizer(model, cfg: Config):
    """A fresh AdamW and its constant-after-warm-up schedule (also what a hard reset rebuilds)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, betas=tuple(cfg.train.betas),
                                  weight_decay=cfg.train.weight_decay)
    warmup = cfg.train.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0)
    return optimizer, scheduler


def reset_reference(model, reference) -> None:
    """Hard reset: the reference becomes an exact copy of the current policy."""
    reference.load_state_dict(model.state_dict())


@torch.no_grad()
def sync_generation_copy(model, gen_model) -> None:
    """Copy the trained weights into the generation copy (a cast when dtypes differ)."""
    if gen_model is model:
        return
    for p_gen, p in zip(gen_model.parameters(), model.parameters()):
        p_gen.copy_(p)


def validate(gen_model, tokenizer, problems, cfg: Config, pool, step: int) -> tuple[dict, dict]:
    """Validation with the evaluation code: pass@1 from ``validation.n`` samples per problem."""
    from prorl.eval.evaluate import evaluate

    result = evaluate(
        gen_model, tokenizer, problems, n=cfg.validation.n, ks=[1], temperature=cfg.validation.temperature,
        top_p=cfg.validation.top_p, max_new_tokens=cfg.validation.max_new_tokens or cfg.rollout.max_new_tokens,
        pool=pool, seed=cfg.train.seed * 7 + step, batch_size=cfg.rollout.batch_size, chat_template=cfg.model.chat_template,
    )
    metrics = {}
    for domain, d in result["domains"].items():
        metrics[f"val/pass@1/{domain}"] = d["pass@1"]
        metrics[f"val/mean_score/{domain}"] = d["mean@n"]
    metrics["val/pass@1/mean"] = sum(d["pass@1"] for d in result["domains"].values()) / max(len(result["domains"]), 1)
    return metrics, result


def write_rollouts(run_dir: Path, step: int, batch: Batch, how_many: int) -> None:
    import json

    path = run_dir / "rollouts" / f"step_{step:06d}.jsonl"
    path.parent.mkdir(exist_ok=True)
    with path.open("w") as fh:
        for i in range(min(how_many, len(batch.problems))):
            p = batch.problems[i]
            fh.write(json.dumps({"id": p.id, "domain": p.domain, "prompt": p.prompt, "response": batch.responses[i],
                                 "reward": float(batch.rewards[i]), "reason": batch.reasons[i],
                                 "finish": batch.finish_reasons[i]}) + "\n")


def sandbox_status(problems: list[Problem], log: RunLog, step: int) -> dict:
    """When code is trained on, say how the sandbox isolates it: an event, a warning and a metric."""
    if not any(p.domain == "code" for p in problems):
        return {}
    from prorl.verifiers.sandbox import isolation

    level = isolation()
    log.event(step, "sandbox", isolation=level)
    if level != "bwrap+cgroup":
        print(f"WARNING: model-written code runs with weaker isolation ({level}); see docs/sandbox.md")
    return {"sandbox/isolated": 1.0 if level == "bwrap+cgroup" else 0.0}


# ---------------------------------------------------------------- the loop


def stage_at(stages: list, step: int) -> int:
    """Index of the stage that step ``step`` (1-based) belongs to."""
    end = 0
    for i, (_, steps, _, _) in enumerate(stages):
        end += steps
        if step <= end:
            return i
    return len(stages) - 1


def train(cfg: Config, *, resume: bool = False) -> dict:
    """Run (or resume) ProRL training as configured. Returns the last step's metrics."""
    from tqdm import tqdm

    from prorl.verifiers.pool import ScoringPool

    run_dir = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and not resume:
        raise UserError(f"run directory {run_dir} already has a checkpoint ({ckpt.name}); "
                        f"continue it with `prorl train --resume {run_dir}` or choose another run_dir")
    if not cfg.model.path:
        raise UserError("model.path is not set: give a Hugging Face model directory (or hub id)")
    torch.manual_seed(cfg.train.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    log = RunLog(run_dir)
    stages = stage_configs(cfg)
    total_steps = sum(s[1] for s in stages)

    device = resolve_device(cfg.model.device)
    model, tokenizer = load_policy(ckpt / "policy" if ckpt else cfg.model.path, dtype=cfg.model.dtype, device=device)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    reference = copy.deepcopy(model).eval().requires_grad_(False) if cfg.algo.kl_beta > 0 else None
    gen_model = model if cfg.rollout.dtype == cfg.model.dtype else copy.deepcopy(model).to(DTYPES[cfg.rollout.dtype]).eval()
    optimizer, scheduler = make_optimizer(model, stages[0][3])
    state = TrainState()
    sampler = None

    if ckpt is not None:
        saved = load_trainer_state(ckpt)
        state = TrainState(**saved["train_state"])
        if reference is not None:
            load_weights_into(reference, ckpt / "reference")
        optimizer, scheduler = make_optimizer(model, stages[max(state.stage, 0)][3])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        sync_generation_copy(model, gen_model)
        log.truncate_after(state.step)
        log.event(state.step, "resume", checkpoint=ckpt.name)
    train_problems, val_problems = load_data(stages[max(state.stage, 0)][3])

    def do_reset(step: int, reason: str) -> None:
        nonlocal optimizer, scheduler
        if reference is not None:
            reset_reference(model, reference)
        if not stage_cfg.reset.keep_optimizer:
            optimizer, scheduler = make_optimizer(model, stage_cfg)
        state.resets += 1
        state.last_reset_step = step
        state.best_val, state.val_since_best = None, 0
        log.event(step, "reset", reason=reason, resets=state.resets, optimizer="kept" if stage_cfg.reset.keep_optimizer else "reinitialised")

    def do_checkpoint(step: int) -> None:
        path = save_checkpoint(run_dir, step, policy=model, reference=reference, tokenizer=tokenizer, keep_last=stage_cfg.checkpoint.keep_last,
                               trainer_state={"train_state": vars(state) | {"sampler": sampler.state_dict()},
                                              "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                              "config": dump_yaml(cfg)})
        log.event(step, "checkpoint", path=str(path.relative_to(run_dir)))

    def maybe_checkpoint(step: int) -> None:
        every = stage_cfg.checkpoint.every
        if (every > 0 and step % every == 0) or step == total_steps:
            do_checkpoint(step)

    def maybe_reset_and_validate(step: int, metrics: dict) -> None:
        """Scheduled or KL-triggered reset, then validation when due; adds to ``metrics``.

        Also runs on a step skipped for equal rewards, so the schedule does not slip.
        """
        rc = stage_cfg.reset
        if rc.every > 0 and step - state.last_reset_step >= rc.every and step < total_steps:
            do_reset(step, "schedule")
        elif rc.kl_threshold > 0 and metrics.get("actor/kl", 0.0) > rc.kl_threshold:
            do_reset(step, f"kl {metrics['actor/kl']:.4g} > {rc.kl_threshold}")
        vc = stage_cfg.validation
        if vc.every > 0 and val_problems and (step % vc.every == 0 or step == total_steps):
            t0 = time.perf_counter()
            val_metrics, result = validate(gen_model, tokenizer, val_problems, stage_cfg, pool, step)
            metrics |= val_metrics
            metrics["time/validation"] = time.perf_counter() - t0
            log.event(step, "validation", results={k: v for k, v in result.items() if k != "problems"})
            score = val_metrics["val/pass@1/mean"]
            if state.best_val is None or score > state.best_val:
                state.best_val, state.val_since_best = score, 0
            else:
                state.val_since_best += 1
            if rc.val_patience > 0 and state.val_since_best >= rc.val_patience and step < total_steps:
                do_reset(step, f"validation plateau ({state.val_since_best} validations without improvement)")

    sandbox_metrics = sandbox_status(train_problems, log, state.step)
    pool = ScoringPool(cfg.reward.workers, timeout_s=cfg.reward.timeout_s)
    bar = tqdm(total=total_steps, initial=state.step, disable=not cfg.log.progress, desc="prorl", dynamic_ncols=True)
    last: dict = {}
    try:
        stage_cfg = stages[max(state.stage, 0)][3]
        if state.step == 0 and cfg.validation.at_start and cfg.validation.every > 0 and val_problems:
            val_metrics, result = validate(gen_model, tokenizer, val_problems, stage_cfg, pool, 0)
            log.metrics(0, val_metrics)
            log.event(0, "validation", results={k: v for k, v in result.items() if k != "problems"})

        for step in range(state.step + 1, total_steps + 1):
            t_step = time.perf_counter()
            # ---- stage boundaries (a new stage may change lengths, samples, data, and may begin with a reset)
            stage_idx = stage_at(stages, step)
            name, _, reset_at_start, stage_cfg = stages[stage_idx]
            if stage_idx != state.stage:
                if state.stage >= 0:
                    train_problems, val_problems = load_data(stage_cfg)
                sampler = make_sampler(train_problems, stage_cfg)
                log.event(step - 1, "stage", stage=stage_idx, name=name)
                if reset_at_start and state.stage >= 0:
                    do_reset(step - 1, f"stage {name}")
                state.stage = stage_idx
            elif sampler is None:  # resumed inside a stage: continue its data cursor
                sampler = make_sampler(train_problems, stage_cfg)
                sampler.load_state_dict(state.sampler)
            # ---- a reset asked for by hand (prorl reset RUN_DIR)
            request = run_dir / RESET_REQUEST
            if request.exists():
                request.unlink()
                do_reset(step - 1, "manual")

            generator = step_generator(cfg.train.seed, step, device=device)
            # ---- generate, score, keep groups with unequal scores
            batch, metrics = collect_batch(gen_model, tokenizer, sampler, stage_cfg, pool, generator)
            state.sampler = sampler.state_dict()
            if batch is None:
                log.event(step, "skip", reason="every group had equal scores", gen_batches=metrics["batch/gen_batches"])
                state.step = step
                maybe_reset_and_validate(step, metrics)
                log.metrics(step, metrics | {"stage": stage_idx, "reset/count": state.resets,
                                             "time/step": time.perf_counter() - t_step})
                maybe_checkpoint(step)
                bar.update(1)
                continue
            # ---- advantages, then old and reference log-probs once per batch
            advantages = compute_advantages(batch.rewards, stage_cfg.rollout.n, stage_cfg.algo.advantage).to(device)  # [B]
            t0 = time.perf_counter()
            mb, temp, ac = stage_cfg.train.micro_batch_size, stage_cfg.rollout.temperature, stage_cfg.train.autocast_bf16
            old_logprobs = batch_logprobs(model, batch, mb, temp, ac)  # [B, T]
            ref_logprobs = batch_logprobs(reference, batch, mb, temp, ac) if reference is not None else None
            metrics["time/logprobs"] = time.perf_counter() - t0
            diff = (old_logprobs - batch.sample_logprobs).abs() * batch.response_mask
            metrics["rollout/logprob_diff"] = float(diff.sum() / batch.response_mask.sum().clamp(min=1))
            # ---- policy update
            t0 = time.perf_counter()
            update_metrics, skipped = update_policy(model, optimizer, scheduler, batch, advantages, old_logprobs,
                                                    ref_logprobs, stage_cfg, step_generator(cfg.train.seed, step, 1))
            sync_generation_copy(model, gen_model)
            metrics["time/update"] = time.perf_counter() - t0
            metrics |= update_metrics
            if skipped:
                log.event(step, "skip", reason="non-finite loss or gradient", updates_skipped=skipped)
            state.step = step
            # ---- maybe reset the reference, maybe validate
            maybe_reset_and_validate(step, metrics)
            # ---- log, then maybe checkpoint (the checkpoint holds the state after this step's log line)
            if stage_cfg.log.rollouts_every > 0 and step % stage_cfg.log.rollouts_every == 0:
                write_rollouts(run_dir, step, batch, stage_cfg.log.rollouts_per_step)
            metrics |= sandbox_metrics
            metrics["stage"] = stage_idx
            metrics["reset/count"] = state.resets
            metrics["time/step"] = time.perf_counter() - t_step
            metrics["perf/tokens_per_s"] = metrics["perf/gen_tokens"] / max(metrics["time/generate"], 1e-9)
            log.metrics(step, metrics)
            last = metrics
            maybe_checkpoint(step)
            bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", kl=f"{metrics['actor/kl']:.2g}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
        pool.close()
    return last

"""The ProRL training loop, read top to bottom in :func:`train`; each phase is one named function here.

Each step: sample prompts -> generate ``n`` responses each -> score them -> drop groups whose
scores are all equal and generate again until the batch is full (dynamic sampling, bounded) ->
advantages -> old and reference log-probs (once per batch) -> mini-batch updates -> maybe reset
the reference -> maybe validate -> maybe checkpoint -> log.

Where this departs from the textbook algorithm, and why:

- Old log-probs are recomputed by the trained model before the first update instead of taken from
  the sampler: generation runs on a lower-precision copy (``rollout.dtype``), and the ratio must
  compare like with like. The sampler's own log-probs feed the ``rollout/logprob_diff`` metric.
  When the batch gets a single optimizer step, the update's own forward pass gives them (detached,
  the ratio is exactly 1) and no separate pass is run.
- Log-probs are taken at the sampling temperature (logits / T), so the ratio and the KL describe
  the distribution responses were drawn from. Where the sampler's own log-probs differ from the
  recomputed old ones (another engine, another precision), ``algo.rollout_correction`` weights the
  policy gradient by their ratio (on by default with the vLLM engine).
- The engine sleeps while the trainer computes log-probs and updates, and gets the updated weights
  pushed after every update; an engine asked to generate between the two raises instead of sampling
  from stale weights.
- A reference reset copies the policy into the reference and (by default) builds a fresh AdamW
  and learning-rate schedule: ProRL's "hard reset". ``reset.keep_optimizer`` keeps the state (v2).
- Dynamic sampling refills from new prompts; when ``algo.max_gen_batches`` is spent the step
  trains on the groups it has (fewer than ``prompts_per_step``), and a step with none is skipped
  and logged, never an error.
- Randomness of step ``s`` comes from generators seeded with ``(train.seed, s)``, so a resumed
  run draws exactly what the uninterrupted run would have.

Where the rest lives: sampling and scoring in :mod:`prorl.groups` (the engine behind
:mod:`prorl.rollout`'s contract), training tensors and log-probs in :mod:`prorl.batch`, the update in
:mod:`prorl.update`, the objective in :mod:`prorl.algo`, the run's data in :mod:`prorl.data.run_data`.
"""

from __future__ import annotations

import functools
import signal
import time

import torch

from prorl import algo, dist
from prorl.batch import Batch, LogprobSettings, batch_logprobs, rank_seed, sample_metrics, step_generator, step_seed
from prorl.config import Config, Stage, stage_of
from prorl.data.run_data import load_data, make_sampler
from prorl.dist import SINGLE, weights_of
from prorl.groups import Groups, sample_and_score, shaped_reward
from prorl.rollout import RandomStream, Sampling
from prorl.errors import Stopped
from prorl.run import Run, StopOnSignal, open_run, read_reset_request, save
from prorl.update import make_optimizer, reset_reference, single_update, update_policy
from prorl.verifiers.gradeable import why_ungradeable

# ---------------------------------------------------------------- phases around the update


def begin_step(run: Run, step: int) -> None:
    """At the boundary before ``step``: a scheduled reset left over from the end of a shorter run, the step's
    stage when it starts one (new data, maybe a reset), then a reset asked for by hand (``prorl reset``)."""
    if step > 1 and reset_due(run, step - 1):
        reset(run, step - 1, "schedule")  # fell due on the last step of the run this one extends
    stage = stage_of(run.stages, step)
    if stage.index != run.state.stage:
        enter_stage(run, stage, step)
    elif run.sampler is None:  # resumed inside a stage: continue its data cursor
        run.sampler = make_sampler(run.train_problems, stage.cfg)
        run.sampler.load_state_dict(run.state.sampler)
    token = run.dist.broadcast(read_reset_request(run.dir))  # rank 0's reading: every rank acts on the same one
    if token is not None and token != run.state.manual_reset_token:
        run.state.manual_reset_token = token
        reset(run, step - 1, "manual")


def enter_stage(run: Run, stage: Stage, step: int) -> None:
    """Switch to ``stage`` before ``step``: its data, sampler and scoring deadlines; a reset if it asks for one."""
    from prorl.verifiers.pool import ScoringPool

    first = run.state.stage < 0
    if not first:
        run.train_problems, run.val_problems = load_data(stage.cfg, grade=why_ungradeable)
    old_reward, run.stage = run.stage.cfg.reward, stage
    if (stage.cfg.reward.workers, stage.cfg.reward.timeout_s) != (old_reward.workers, old_reward.timeout_s):
        run.pool.close()
        run.pool = ScoringPool(stage.cfg.reward.workers, timeout_s=stage.cfg.reward.timeout_s,
                               custom=stage.cfg.reward.custom)
    run.sampler = make_sampler(run.train_problems, stage.cfg)
    run.log.event(step - 1, "stage", stage=stage.index, name=stage.name)
    if stage.reset_at_start and not first:
        reset(run, step - 1, f"stage {stage.name}")
    run.state.stage = stage.index


def reset(run: Run, step: int, reason: str) -> None:
    """Hard reset after ``step``: the reference becomes the policy; a fresh optimizer and schedule unless the
    stage keeps them. At most one reset per step boundary: a second trigger there is logged as merged."""
    if run.state.resets and run.state.last_reset_step == step:
        run.log.event(step, "reset_merged", reason=reason)
        return
    keep = run.stage.cfg.reset.keep_optimizer
    if run.reference is not None:
        reset_reference(run.policy, run.reference)
    if not keep:
        run.optimizer, run.scheduler = make_optimizer(run.policy, run.stage.cfg)
    run.state.resets += 1
    run.state.last_reset_step = step
    run.state.best_val, run.state.val_since_best, run.state.kl_share_steps = None, 0, 0
    run.log.event(step, "reset", reason=reason, resets=run.state.resets, optimizer="kept" if keep else "reinitialised")


def reset_due(run: Run, step: int) -> bool:
    """Whether the reset schedule (``reset.every``) calls for a reset at the end of ``step``."""
    every = run.stage.cfg.reset.every
    return every > 0 and step - run.state.last_reset_step >= every


def reset_and_validate(run: Run, step: int, metrics: dict) -> None:
    """After a step: a scheduled or KL-triggered reset, then validation when due (and a plateau reset).

    Runs on a step skipped for equal rewards too, so the schedule does not slip.
    """
    rc, vc, last = run.stage.cfg.reset, run.stage.cfg.validation, step == run.total_steps
    if reset_due(run, step) and not last:
        reset(run, step, "schedule")
    elif rc.kl_threshold > 0 and metrics.get("actor/kl", 0.0) > rc.kl_threshold:
        reset(run, step, f"kl {metrics['actor/kl']:.4g} > {rc.kl_threshold}")
    elif kl_dominates(run, metrics) and not last:
        reset(run, step, f"kl share {metrics['actor/kl_share']:.3g} > {rc.kl_share_threshold} for "
                         f"{rc.kl_share_patience} steps")
    if not (vc.every > 0 and run.val_problems and (step % vc.every == 0 or last)):
        return
    t0 = time.perf_counter()
    metrics |= validate(run, step)
    metrics["time/validation"] = time.perf_counter() - t0
    score, state = metrics["val/pass@1/mean"], run.state
    if state.best_val is None or score > state.best_val:
        state.best_val, state.val_since_best = score, 0
    else:
        state.val_since_best += 1
    if rc.val_patience > 0 and state.val_since_best >= rc.val_patience and not last:
        reset(run, step, f"validation plateau ({state.val_since_best} validations without improvement)")


def kl_dominates(run: Run, metrics: dict) -> bool:
    """The KL-dominance trigger: whether ``actor/kl_share`` has exceeded ``reset.kl_share_threshold`` for
    ``reset.kl_share_patience`` steps in a row (a step without an update breaks no run and extends none)."""
    rc = run.stage.cfg.reset
    if rc.kl_share_threshold <= 0 or "actor/kl_share" not in metrics:
        return False
    run.state.kl_share_steps = run.state.kl_share_steps + 1 if metrics["actor/kl_share"] > rc.kl_share_threshold else 0
    return run.state.kl_share_steps >= rc.kl_share_patience


def validate(run: Run, step: int) -> dict:
    """pass@1 on the validation problems from ``validation.n`` samples each, by the evaluation code; logs an event."""
    from prorl.eval.evaluate import evaluate, validation_metrics

    cfg = run.stage.cfg
    vc = cfg.validation
    sampling = Sampling(n=vc.n, temperature=vc.temperature, top_p=vc.top_p, batch_size=cfg.rollout.batch_size,
                        max_new_tokens=vc.max_new_tokens or cfg.rollout.max_new_tokens)
    result = evaluate(run.engine, run.tokenizer, run.val_problems, sampling, ks=[1], pool=run.pool,
                      seed=cfg.train.seed * 7 + step, chat_template=cfg.model.chat_template,
                      system_prompt=cfg.model.system_prompt, dist=run.dist)
    run.log.event(step, "validation", results={k: v for k, v in result.items() if k != "problems"})
    return validation_metrics(result)


# ---------------------------------------------------------------- one step


def collect_groups(run: Run, step: int) -> tuple[Groups | None, Groups, dict]:
    """Dynamic sampling: generate until ``prompts_per_step`` groups with unequal rewards are kept (bounded).

    Returns this rank's kept groups (None when no rank kept one; none of its own is an empty record), every group it
    generated, and the metrics of every rank's samples.

    With several ranks, each round draws the next ``prompts_per_step`` prompts from the one global sampler and each
    rank generates its slice (every ``world``-th prompt); the count of kept groups is global, so every rank runs the
    same rounds, and the groups kept are the first ones in the global order, exactly as one process would keep them.
    """
    cfg, d = run.stage.cfg, run.dist
    want, rounds = cfg.train.prompts_per_step, max(cfg.algo.max_gen_batches, 1)
    sampling = Sampling(cfg.rollout.n, cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens,
                        cfg.rollout.batch_size)
    rng = RandomStream(rank_seed(step_seed(cfg.train.seed, step), d.rank))
    penalty = cfg.reward.length_penalty == "cosine" and algo.length_penalty_on(step - run.stage.first + 1,
                                                                                 cfg.reward.length_penalty_schedule)
    reward = functools.partial(shaped_reward, cfg.reward, max_length=cfg.rollout.max_new_tokens, length_penalty=penalty)
    generated, kept, num_kept = [], [], 0
    while num_kept < want and len(generated) < rounds:
        drawn = run.sampler.next_batch(want)
        groups = sample_and_score(run.engine, run.tokenizer, drawn[d.rank::d.world], sampling, rng, run.pool,
                                  chat_template=cfg.model.chat_template, reward=reward,
                                  system_prompt=cfg.model.system_prompt)
        generated.append(groups)
        keep = groups.varied() if cfg.algo.dynamic_sampling else torch.ones(groups.num_groups, dtype=torch.bool)
        ids = torch.nonzero(keep).flatten().tolist()
        if d.enabled:  # the first groups of the round in the global order (prompt i is rank i % world's)
            chosen = set(sorted(x for part in d.gather([d.rank + i * d.world for i in ids]) for x in part)
                         [: want - num_kept])
            num_kept += len(chosen)
            ids = [i for i in ids if d.rank + i * d.world in chosen]
        else:
            ids = ids[: want - num_kept]
            num_kept += len(ids)
        if ids:
            kept.append(groups.select(ids))
    every = Groups.cat(generated)
    metrics = sample_metrics(every, d)
    metrics["batch/gen_batches"] = len(generated)
    metrics["batch/groups_kept"] = num_kept
    if cfg.reward.length_penalty != "none":
        metrics["reward/length_penalty_on"] = float(penalty)
    if not num_kept:
        return None, every, metrics
    return (Groups.cat(kept) if kept else every.select([])), every, metrics


def train_step(run: Run, step: int) -> dict:
    """Generate and score, then (when a group was kept) advantages, old/reference log-probs and the update."""
    cfg, device, d = run.stage.cfg, next(run.policy.parameters()).device, run.dist
    kept, generated, metrics = collect_groups(run, step)
    run.state.sampler = run.sampler.state_dict()
    run.state.step = step
    rollouts_due = cfg.log.rollouts_every > 0 and step % cfg.log.rollouts_every == 0
    if kept is None:
        run.log.event(step, "skip", reason="every group had equal scores", gen_batches=metrics["batch/gen_batches"])
        if rollouts_due:  # what the model produced is what one needs to see on such a step
            run.log.rollouts(step, generated, cfg.log.rollouts_per_step)
        return metrics
    batch = Batch.from_groups(kept)
    advantages = algo.advantages(batch.rewards, batch.group_size, cfg.algo.advantage).to(device)  # [B]
    run.engine.sleep()  # an engine on the training GPU gives its memory back until the push below
    t0 = time.perf_counter()
    how = LogprobSettings.of(cfg)
    # One optimizer step on the batch: its first forward pass gives the old log-probs (update_policy takes None).
    total = int(d.sum([len(batch.problems)])[0]) if d.enabled else None  # sequences of every rank
    old_logprobs = None if single_update(cfg, batch, total) else batch_logprobs(run.policy, batch, how, d)  # [B, T]
    ref_logprobs = reference_logprobs(run.reference, batch, how, d)
    metrics["time/logprobs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    coef = entropy_coef(run)
    update_metrics, skipped = update_policy(run.policy, run.optimizer, run.scheduler, batch, advantages, old_logprobs,
                                            ref_logprobs, cfg, step_generator(cfg.train.seed, step, 1), coef, d)
    if cfg.algo.entropy_target is not None:
        a = cfg.algo
        run.state.entropy_coef = algo.steer_entropy_coef(coef, update_metrics["actor/entropy"], a.entropy_target,
                                                         a.entropy_coef_step, a.entropy_coef_max)
    metrics["time/update"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run.engine.load_weights(weights_of(run.policy))
    metrics["time/weight_push"] = time.perf_counter() - t0
    metrics |= update_metrics
    if skipped:
        run.log.event(step, "skip", reason="non-finite loss or gradient", updates_skipped=skipped)
    if rollouts_due:
        run.log.rollouts(step, kept if kept.num_groups else generated, cfg.log.rollouts_per_step)
    return metrics


def reference_logprobs(reference, batch, how, dist=SINGLE):
    """The reference's log-probs of the batch (None without a reference): its own model, or a LoRA adapter."""
    if reference is None:
        return None
    if hasattr(reference, "logprobs"):  # prorl.lora.AdapterReference
        return reference.logprobs(batch, how)
    return batch_logprobs(reference, batch, how, dist)


def entropy_coef(run: Run) -> float:
    """The entropy bonus's coefficient for this step: the stage's ``algo.entropy_coef``, or with
    ``algo.entropy_target`` the steered one (starting from ``algo.entropy_coef``)."""
    a = run.stage.cfg.algo
    if a.entropy_target is None or run.state.entropy_coef is None:
        return a.entropy_coef
    return run.state.entropy_coef


# ---------------------------------------------------------------- the loop


def train(cfg: Config, *, resume: bool = False) -> dict:
    """Run (or resume) ProRL training as configured. Returns the last step's metrics.

    Started by ``torchrun`` with several processes, each is one rank of the same loop (:mod:`prorl.dist`).
    """
    from tqdm import tqdm

    d = dist.from_env(cfg.model.device)
    run = open_run(cfg, resume, d)
    bar = tqdm(total=run.total_steps, initial=run.state.step, disable=not (cfg.log.progress and d.main),
               desc="prorl", dynamic_ncols=True)
    metrics: dict = {}
    last_val, skipped = None, 0  # shown by the progress bar
    with StopOnSignal() as stop:
        try:
            vc = run.stage.cfg.validation
            if run.state.step == 0 and vc.at_start and vc.every > 0 and run.val_problems:
                run.log.metrics(0, validate(run, 0))
            for step in range(run.state.step + 1, run.total_steps + 1):
                t_step = time.perf_counter()
                begin_step(run, step)
                metrics = train_step(run, step)
                reset_and_validate(run, step, metrics)
                metrics |= run.sandbox_metrics | {"stage": run.stage.index, "reset/count": run.state.resets,
                                                  "time/step": time.perf_counter() - t_step}
                metrics["perf/tokens_per_s"] = metrics["perf/gen_tokens"] / max(metrics["time/generate"], 1e-9)
                run.log.metrics(step, metrics)
                every = run.stage.cfg.checkpoint.every
                signum = stop.signum
                if d.enabled:  # a signal may reach the ranks at different steps: stop where the first got one
                    signum = int(d.max([signum or 0])[0]) or None
                if (every > 0 and step % every == 0) or step == run.total_steps or signum is not None:
                    save(run, step)
                if signum is not None:
                    stopped(run, step, signum)
                if "val/pass@1/mean" in metrics:
                    last_val = metrics["val/pass@1/mean"]
                skipped += "actor/updates" not in metrics
                bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", kl=f"{metrics.get('actor/kl', 0.0):.2g}",
                                **({"val": f"{last_val:.3f}"} if last_val is not None else {}),
                                **({"skipped": skipped} if skipped else {}), refresh=False)
                bar.update(1)
        finally:
            bar.close()
            run.pool.close()
            run.log.close()
    dist.close(d)
    return metrics


def run_summary(run_dir) -> list[str]:
    """The end-of-run summary ``prorl train`` prints, read from the run's logs (so a resumed run's earlier steps
    count): steps trained, skipped and why, resets, best and last validation, the final checkpoint."""
    from collections import Counter
    from pathlib import Path

    from prorl.checkpoint import latest_checkpoint
    from prorl.runlog import read_jsonl

    run_dir = Path(run_dir)
    metrics = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    events = read_jsonl(run_dir / "events.jsonl") if (run_dir / "events.jsonl").exists() else []
    steps = [r["step"] for r in metrics if r["step"] > 0]
    skips = Counter(e["reason"] for e in events if e["event"] == "skip")
    lines = [f"steps: {len(steps)} logged (last {max(steps, default=0)})"]
    lines.append("skipped: " + ("none" if not skips else "; ".join(f"{n} x {why}" for why, n in skips.items())))
    resets = [(e["step"], e["reason"]) for e in events if e["event"] == "reset"]
    lines.append(f"resets: {len(resets)}" + (" (" + ", ".join(f"step {s}: {why}" for s, why in resets) + ")"
                                              if resets else ""))
    val = [(r["step"], r["val/pass@1/mean"]) for r in metrics if "val/pass@1/mean" in r]
    if val:
        best = max(val, key=lambda sv: sv[1])
        lines.append(f"validation pass@1: best {best[1]:.4f} at step {best[0]}, last {val[-1][1]:.4f} at step "
                     f"{val[-1][0]}")
    else:
        lines.append("validation: never ran (validation.every=0 or no validation problems)")
    ckpt = latest_checkpoint(run_dir)
    how = ""
    if ckpt and (ckpt / "policy").is_dir():
        how = f" (load with from_pretrained: {ckpt / 'policy'})"
    elif ckpt and (ckpt / "adapter").is_dir():
        how = f" (LoRA adapter in PEFT format: {ckpt / 'adapter'})"
    lines.append(f"final checkpoint: {ckpt if ckpt else 'none'}{how}")
    return lines


def stopped(run: Run, step: int, signum: int) -> None:
    """After the checkpoint of ``step``: log the stop and end training with :class:`prorl.errors.Stopped`."""
    name = signal.Signals(signum).name
    run.log.event(step, "stopped", signal=name)
    raise Stopped(f"stopped by {name} after step {step}, checkpoint step_{step:06d} written; "
                  f"continue with `prorl train --resume {run.dir}`", signum)

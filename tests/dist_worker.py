"""What ``tests/test_distributed.py`` runs under ``torchrun --nproc_per_node=2`` (gloo, CPU).

``python dist_worker.py checks MODEL_DIR OUT.json``: the FSDP2 checks that need the process group (gradients
against one process, equal work with a rank that holds nothing, a reset, dynamic sampling's coordination, a
one-process optimizer state on two ranks); rank 0 writes what it measured to ``OUT.json``, the test asserts.

``python dist_worker.py fail-at-step STEP -- prorl-train-args...``: ``prorl train`` whose rank 1 raises after
``STEP``, for the test that one failing rank ends the whole launch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

torch.set_num_threads(1)


def shares(groups, d):
    """Rank ``d.rank``'s groups of ``groups`` (every ``world``-th, as training deals prompts)."""
    ids = list(range(groups.num_groups))[d.rank::d.world]
    return groups.select(ids)


def sgd_update(model, batch, cfg, d, reference=None):
    """One ``update_policy`` with SGD at learning rate 1: the weights move by exactly minus the gradient."""
    from prorl import algo
    from prorl.batch import LogprobSettings, batch_logprobs
    from prorl.update import update_policy

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    advantages = algo.advantages(batch.rewards, batch.group_size, "grpo")
    ref = batch_logprobs(reference, batch, LogprobSettings.of(cfg), d) if reference is not None else None
    metrics, _ = update_policy(model, optimizer, scheduler, batch, advantages, None, ref, cfg,
                               torch.Generator().manual_seed(0), 0.0, d)
    return metrics


def weights(module):
    from prorl.dist import full_named_parameters, is_sharded

    pairs = full_named_parameters(module) if is_sharded(module) else module.named_parameters()
    return {n: p.detach().clone() for n, p in pairs}


def max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def gradient_check(model, groups, cfg, d, num_groups):
    """Sharded update on each rank's share vs one process on the union: returns (ours, per-rank mean) errors."""
    from prorl.batch import Batch
    from prorl.dist import SINGLE, Dist, shard

    union = groups.select(list(range(num_groups)))
    single, single_ref = copy.deepcopy(model), copy.deepcopy(model).requires_grad_(False)
    expected_metrics = sgd_update(single, Batch.from_groups(union), cfg, SINGLE, single_ref)
    expected = weights(single)

    class LocalSums(Dist):
        """Each rank's own loss denominators (update_policy's one two-value sum: the mini-batch's tokens and
        sequences), the mistake the global count prevents; every other collective as it is."""

        def sum(self, values):
            return [float(v) for v in values] if len(values) == 2 else super().sum(values)

    out = {}
    for name, how in (("global", d), ("per_rank", LocalSums(d.rank, d.world, d.local_rank))):
        policy, reference = shard(copy.deepcopy(model)), shard(copy.deepcopy(model), trainable=False)
        mine = Batch.from_groups(shares(union, d))
        metrics = sgd_update(policy, mine, cfg, how, reference)
        out[name] = max_diff(weights(policy), expected)
        if name == "global":
            out["rows"] = d.gather(len(mine.problems))
            out["metrics"] = {k: (metrics[k], expected_metrics[k]) for k in
                              ("actor/pg_loss", "actor/kl", "actor/entropy", "actor/grad_norm", "actor/updates")}
    out["grad_scale"] = max(float(p.abs().max()) for p in expected.values())
    return out


def reset_check(model, groups, cfg, d):
    """After an update, a reset makes the reference's log-probs equal the policy's, exactly, on every rank."""
    from prorl.batch import Batch, LogprobSettings, batch_logprobs
    from prorl.dist import shard
    from prorl.update import reset_reference

    policy, reference = shard(copy.deepcopy(model)), shard(copy.deepcopy(model), trainable=False)
    mine = Batch.from_groups(shares(groups, d))
    sgd_update(policy, mine, cfg, d, reference)
    how = LogprobSettings.of(cfg)
    before = bool(torch.equal(batch_logprobs(policy, mine, how, d), batch_logprobs(reference, mine, how, d)))
    reset_reference(policy, reference)
    after = bool(torch.equal(batch_logprobs(policy, mine, how, d), batch_logprobs(reference, mine, how, d)))
    return {"equal_before": d.gather(before), "equal_after": d.gather(after)}


def nan_check(model, groups, cfg, d):
    """A non-finite loss on rank 1 alone skips the optimizer step on both ranks; the weights stay as they were."""
    from prorl.batch import Batch
    from prorl.dist import shard
    from prorl.update import make_optimizer, update_policy

    policy = shard(copy.deepcopy(model))
    optimizer, scheduler = make_optimizer(policy, cfg)
    mine = Batch.from_groups(shares(groups, d))
    advantages = torch.ones(len(mine.problems)) * (float("nan") if d.rank == 1 else 1.0)
    before = weights(policy)
    metrics, skipped = update_policy(policy, optimizer, scheduler, mine, advantages, None, None,
                                     cfg, torch.Generator().manual_seed(0), 0.0, d)
    return {"skipped": d.gather(skipped), "updates": d.gather(metrics["actor/updates"]),
            "unchanged": d.gather(max_diff(weights(policy), before) == 0.0)}


def collect_check(model, tok, cfg, d):
    """Dynamic sampling on two ranks where rank 1 is dealt only prompts nobody can solve (no kept group)."""
    from prorl.data.builtin import make_problems
    from prorl.rollout import HFEngine
    from prorl.train import collect_groups
    from prorl.verifiers.pool import ScoringPool

    good = make_problems("add", 64, seed=5)
    bad = [p.__class__(**{**vars(p), "id": f"bad{i}", "answer": "no such sum"}) for i, p in enumerate(good)]

    class Dealer:  # position i of every batch goes to rank i % 2: the solvable prompts to rank 0, in every round
        def __init__(self):
            self.drawn = 0

        def next_batch(self, k):
            out = [(good if i % 2 == 0 else bad)[self.drawn + i] for i in range(k)]
            self.drawn += k
            return out

    run = SimpleNamespace(stage=SimpleNamespace(cfg=cfg, first=1), dist=d, sampler=Dealer(),
                          engine=HFEngine(model, tok), tokenizer=tok, pool=ScoringPool(0))
    kept, generated, metrics = collect_groups(run, 1)
    local = 0 if kept is None else kept.num_groups
    varied = int(generated.varied().sum())
    return {"kept": d.gather(local), "varied": d.gather(varied), "groups_kept": metrics["batch/groups_kept"],
            "gen_batches": d.gather(metrics["batch/gen_batches"]), "drawn": d.gather(run.sampler.drawn)}


def optimizer_check(model, groups, cfg, d):
    """A one-process AdamW state (after one step), moved onto the sharded policy, comes back unchanged."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, \
        set_optimizer_state_dict

    from prorl import algo
    from prorl.batch import Batch
    from prorl.checkpoint import full_optimizer_state
    from prorl.dist import SINGLE, LogprobModule, shard
    from prorl.update import make_optimizer, update_policy

    plain = copy.deepcopy(model)
    optimizer, scheduler = make_optimizer(plain, cfg)
    batch = Batch.from_groups(groups)
    update_policy(plain, optimizer, scheduler, batch, algo.advantages(batch.rewards, batch.group_size, "grpo"), None,
                  torch.zeros_like(batch.response_mask), cfg, torch.Generator().manual_seed(0), 0.0, SINGLE)
    names = [n for n, p in plain.named_parameters() if p.requires_grad]
    saved = optimizer.state_dict()
    moved = copy.deepcopy(plain)
    full = full_optimizer_state(LogprobModule(moved), saved, lambda m: make_optimizer(m, cfg)[0])
    sharded = shard(moved)
    new_optimizer, _ = make_optimizer(sharded, cfg)
    set_optimizer_state_dict(sharded, new_optimizer, full, options=StateDictOptions(full_state_dict=True))
    back = get_optimizer_state_dict(sharded, new_optimizer, options=StateDictOptions(full_state_dict=True))
    worst = 0.0
    for i, name in enumerate(names):
        for key in ("exp_avg", "exp_avg_sq"):
            worst = max(worst, float((back["state"][f"model.{name}"][key] - saved["state"][i][key]).abs().max()))
    steps = {float(s["step"]) for s in back["state"].values()}
    return {"max_diff": worst, "steps": sorted(steps), "params": len(names)}


def checks(model_dir: str, out: str) -> None:
    from prorl import dist
    from prorl.data.builtin import make_problems
    from prorl.groups import sample_and_score
    from prorl.policy import load_policy
    from prorl.rollout import HFEngine, RandomStream, Sampling
    from prorl.verifiers.pool import ScoringPool
    from tiny_run import tiny_config

    d = dist.from_env("cpu")
    model, tok = load_policy(model_dir, dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = tiny_config(Path(model_dir), Path(tmp), "train.prompts_per_step=8", "train.mini_batch_prompts=8", "train.micro_batch_size=3",
                          "train.grad_clip=0", "train.epochs=1")
    # The same sampled groups on every rank (same seed, same model, CPU): 3 varied groups of 4.
    problems = make_problems("add", 200, seed=3)[:16]
    sampling = Sampling(n=4, temperature=1.2, top_p=1.0, max_new_tokens=12)
    with ScoringPool(0) as pool:
        groups = sample_and_score(HFEngine(model, tok), tok, problems, sampling, RandomStream(0), pool,
                                  chat_template=None)
    varied = torch.nonzero(groups.varied()).flatten().tolist()[:3]
    groups = groups.select(varied)
    result = {"varied_groups": len(varied)}
    result["grad_uneven"] = gradient_check(model, groups, cfg, d, 3)
    result["grad_one_group"] = gradient_check(model, groups, cfg, d, 1)  # rank 1 holds nothing
    result["reset"] = reset_check(model, groups, cfg, d)
    result["optimizer"] = optimizer_check(model, groups, cfg, d)
    no_kl = dataclasses.replace(cfg, algo=dataclasses.replace(cfg.algo, kl_beta=0.0))
    result["nan"] = nan_check(model, groups, no_kl, d)
    from prorl.config import resolve_config

    def collect(want, rounds):
        c = resolve_config({}, [f"model.path={model_dir}", "run_dir=unused", "data.builtin=add", "rollout.n=4",
                                "rollout.max_new_tokens=12", "rollout.temperature=1.2", "rollout.dtype=float32",
                                f"train.prompts_per_step={want}", f"train.mini_batch_prompts={want}",
                                f"algo.max_gen_batches={rounds}",
                                "reward.workers=0"])
        return collect_check(model, tok, c, d)

    result["collect_3"] = collect(3, 8)
    result["collect_spent"] = collect(6, 1)
    if d.main:
        Path(out).write_text(json.dumps(result))
    dist.close(d)


def fail_at_step(step: int, argv: list[str]) -> int:
    """``prorl train`` whose rank 1 raises a UserError after ``step``."""
    import os

    import prorl.train
    from prorl.cli import main
    from prorl.errors import UserError

    original = prorl.train.reset_and_validate

    def failing(run, s, metrics):
        if s == step and int(os.environ["RANK"]) == 1:
            raise UserError(f"rank 1 fails on purpose after step {s}")
        return original(run, s, metrics)

    prorl.train.reset_and_validate = failing
    return main(argv)


if __name__ == "__main__":
    if sys.argv[1] == "checks":
        checks(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "fail-at-step":
        sys.exit(fail_at_step(int(sys.argv[2]), sys.argv[4:]))

"""Data parallelism on two CPU ranks (gloo): ``torchrun --nproc_per_node=2`` runs of the real loop and of
``tests/dist_worker.py``'s checks, each under a timeout so that a hang fails instead of stalling the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_run import strip_times, tiny_config

from prorl.runlog import read_jsonl

TESTS = Path(__file__).parent
LAUNCH_TIMEOUT_S = 300  # a hang, not a slow machine: each launch takes seconds


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=nproc ARGS`` (standalone rendezvous), its output captured."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)


def train_args(model_dir, run_dir, *extra) -> list[str]:
    """``prorl train`` arguments of tests/tiny_run.py's tiny config."""
    return ["train", f"model.path={model_dir}", f"run_dir={run_dir}", "data.builtin=add", "data.val_size=8",
            "rollout.n=4", "rollout.max_new_tokens=12", "rollout.temperature=1.2", "rollout.dtype=float32",
            "train.steps=4", "train.prompts_per_step=4", "train.mini_batch_prompts=2", "train.micro_batch_size=8",
            "train.lr=2e-4", "train.autocast_bf16=false", "algo.kl_beta=1e-2", "algo.max_gen_batches=3",
            "reward.workers=0", "validation.every=2", "validation.n=2", "checkpoint.every=2", "log.progress=false",
            "log.rollouts_every=2", "model.device=cpu", *extra]


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout


@pytest.fixture(scope="module")
def checks(warm_model, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dist") / "checks.json"
    ok(torchrun(TESTS / "dist_worker.py", "checks", warm_model, out))
    return json.loads(out.read_text())


def test_gradients_equal_one_process_on_the_union(checks):
    g = checks["grad_uneven"]
    assert g["rows"] == [8, 4]  # uneven shares: rank 0 runs 3 micro-batches of 3, rank 1 two (one idle pass)
    assert g["global"] <= 1e-6 * max(g["grad_scale"], 1.0)
    assert g["per_rank"] > 1e-3  # each rank dividing by its own tokens gives another gradient: the check can fail
    for name, (ours, single) in g["metrics"].items():
        assert ours == pytest.approx(single, rel=1e-5, abs=1e-7), name


def test_a_rank_with_no_rows_takes_part_and_changes_nothing(checks):
    g = checks["grad_one_group"]
    assert g["rows"] == [4, 0]
    assert g["global"] <= 1e-6 * max(g["grad_scale"], 1.0)
    assert g["metrics"]["actor/updates"] == [1, 1]


def test_a_reset_copies_the_shards_exactly(checks):
    assert checks["reset"]["equal_before"] == [False, False]  # the update moved the policy away
    assert checks["reset"]["equal_after"] == [True, True]  # then KL is exactly 0 on every rank


def test_one_process_optimizer_state_moves_onto_the_shards(checks):
    o = checks["optimizer"]
    assert o["max_diff"] == 0.0 and o["steps"] == [1.0] and o["params"] > 0


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_all(checks):
    assert checks["nan"] == {"skipped": [1, 1], "updates": [0, 0], "unchanged": [True, True]}


def test_dynamic_sampling_keeps_the_global_count(checks):
    c = checks["collect_3"]  # 3 prompts a round: rank 0 gets two solvable ones, rank 1 one nobody can solve
    assert sum(c["kept"]) == c["groups_kept"] == 3 and c["kept"][1] == 0
    # at least the quota was usable on rank 0 (whether its last round had a surplus to cut depends on the samples)
    assert c["varied"][0] >= 3 and c["varied"][1] == 0
    assert c["gen_batches"][0] == c["gen_batches"][1] and c["drawn"][0] == c["drawn"][1]
    spent = checks["collect_spent"]  # one round allowed: trains on what it has
    assert spent["gen_batches"] == [1, 1] and spent["groups_kept"] == sum(spent["kept"]) < 6


def test_two_ranks_train_resume_exactly_and_export(warm_model, tmp_path):
    from prorl.policy import load_policy

    ok(torchrun("-m", "prorl", *train_args(warm_model, tmp_path / "straight", "reset.every=3")))
    ok(torchrun("-m", "prorl", *train_args(warm_model, tmp_path / "resumed", "reset.every=3", "train.steps=2")))
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as fh:  # a crashed run's lines after its checkpoint
        fh.write(json.dumps({"step": 3, "reward/mean": 123.0}) + "\n")
    ok(torchrun("-m", "prorl", "train", "--resume", tmp_path / "resumed", "train.steps=4"))

    straight = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    assert [r["step"] for r in straight] == [0, 1, 2, 3, 4]  # rank 0 alone writes
    assert all(r["batch/groups_kept"] == 4 for r in straight[1:])  # prompts_per_step is global
    assert strip_times(read_jsonl(tmp_path / "resumed" / "metrics.jsonl")) == strip_times(straight)
    events = [e["event"] for e in read_jsonl(tmp_path / "resumed" / "events.jsonl")]
    assert events.count("resume") == 1 and events.count("reset") == 1

    ckpt = tmp_path / "straight" / "checkpoints" / "step_000004"
    assert (ckpt / "sharded" / ".metadata").is_file()
    assert sorted(p.name for p in (ckpt / "rng").iterdir()) == ["rank_0.pt", "rank_1.pt"]
    a, _ = load_policy(ckpt / "policy", dtype="float32")  # the Hugging Face export
    b, _ = load_policy(tmp_path / "resumed" / "checkpoints" / "step_000004" / "policy", dtype="float32")
    base, _ = load_policy(warm_model, dtype="float32")
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(pa, p0) for pa, p0 in zip(a.parameters(), base.parameters()))


def test_resume_at_another_world_size(warm_model, tmp_path):
    from prorl.policy import load_policy

    # 2 -> 1: the sharded checkpoint of two ranks, continued by one process.
    ok(torchrun("-m", "prorl", *train_args(warm_model, tmp_path / "two", "train.steps=2")))
    one = subprocess.run([sys.executable, "-m", "prorl", "train", "--resume", str(tmp_path / "two"), "train.steps=4"],
                         capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert "samples will differ" in ok(one)
    resume = [e for e in read_jsonl(tmp_path / "two" / "events.jsonl") if e["event"] == "resume"]
    assert resume[0]["world_size"] == 1 and resume[0]["checkpoint_world_size"] == 2
    assert [r["step"] for r in read_jsonl(tmp_path / "two" / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    load_policy(tmp_path / "two" / "checkpoints" / "step_000004" / "policy", dtype="float32")

    # 1 -> 2: a one-process checkpoint (Hugging Face weights, optimizer by index) continued by two ranks.
    from prorl.train import train

    train(tiny_config(warm_model, tmp_path / "single", "train.steps=2"))
    from prorl.cli import main

    assert main(["reset", str(tmp_path / "single")]) == 0  # a manual reset request: rank 0 reads it for all
    assert "samples will differ" in ok(torchrun("-m", "prorl", "train", "--resume", tmp_path / "single",
                                                "train.steps=4"))
    assert [r["step"] for r in read_jsonl(tmp_path / "single" / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert (tmp_path / "single" / "checkpoints" / "step_000004" / "sharded").is_dir()
    resets = [e for e in read_jsonl(tmp_path / "single" / "events.jsonl") if e["event"] == "reset"]
    assert [(e["step"], e["reason"]) for e in resets] == [(2, "manual")]
    assert not (tmp_path / "single" / "reset.request").exists()  # the checkpoint after it recorded the reset


def test_a_failing_rank_ends_the_launch(warm_model, tmp_path):
    result = torchrun(TESTS / "dist_worker.py", "fail-at-step", 2, "--",
                      *train_args(warm_model, tmp_path / "run", "train.steps=4"))
    assert result.returncode != 0  # and no hang: torchrun stopped rank 0 in its collective
    assert "rank 1 fails on purpose after step 2" in result.stdout + result.stderr


def test_settings_a_multi_process_run_refuses(warm_model, tmp_path):
    from prorl.config import stage_configs
    from prorl.dist import Dist
    from prorl.errors import UserError
    from prorl.run import check_distributed

    four = Dist(rank=0, world=4)
    for extra, words in ((["model.lora_rank=4"], "model.lora_rank"), (["model.device=cuda:1"], "LOCAL_RANK"),
                         (["train.prompts_per_step=2", "train.mini_batch_prompts=2"], "train.prompts_per_step=2"),
                         (["rollout.engine=vllm"], "rollout.engine=vllm")):
        cfg = tiny_config(warm_model, tmp_path, *extra)
        with pytest.raises(UserError, match=words.replace(".", r"\.")):
            check_distributed(cfg, stage_configs(cfg), four)


def test_world_size_one_is_the_single_process_program(monkeypatch):
    from prorl import dist

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = dist.from_env("cpu")
    assert d is dist.SINGLE and not d.enabled and d.main
    assert d.sum([1, 2.5]) == [1.0, 2.5] and d.max([3]) == [3.0]
    assert d.gather({"a": 1}) == [{"a": 1}] and d.broadcast("x") == "x"
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1: no process group, nothing sharded
    assert dist.from_env("cpu") is dist.SINGLE

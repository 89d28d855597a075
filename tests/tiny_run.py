"""A tiny warm-started model and a tiny training config, shared by the trainer's tests."""

from __future__ import annotations

from pathlib import Path

import torch

from prorl.config import resolve_config


def make_warm_model(root: Path) -> Path:
    """A tiny model warm-started on one-digit addition, so groups have reward variance."""
    from prorl.data.builtin import make_problems
    from prorl.demo import warm_start
    from prorl.policy import load_policy
    from prorl.tiny import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer(root / "base")
    build_tiny_model(root / "base", tok, size="1m", seed=0)
    model, tok = load_policy(root / "base", dtype="float32")
    torch.manual_seed(0)
    warm_start(model, tok, make_problems("add", 500, seed=1), steps=300, lr=3e-3, batch_size=32, seed=0)
    model.save_pretrained(root / "warm")
    tok.save_pretrained(root / "warm")
    return root / "warm"


def tiny_config(model_dir: Path, run_dir: Path, *extra: str):
    return resolve_config({}, [
        f"model.path={model_dir}", f"run_dir={run_dir}", "data.builtin=add", "data.val_size=8",
        "rollout.n=4", "rollout.max_new_tokens=12", "rollout.temperature=1.2", "rollout.dtype=float32",
        "train.steps=4", "train.prompts_per_step=4", "train.mini_batch_prompts=2", "train.micro_batch_size=8",
        "train.lr=2e-4", "train.autocast_bf16=false", "algo.kl_beta=1e-2", "algo.max_gen_batches=3", "reward.workers=0",
        "validation.every=2", "validation.n=2", "checkpoint.every=2", "log.progress=false", "log.rollouts_every=2",
        *extra,
    ])


def strip_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/tokens_per_s")) and k != "time"} for r in rows]

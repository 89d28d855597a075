"""The problems of a run: training and validation sets from files or the built-in generator, and the sampler.

Plain Python: no torch.
"""

from __future__ import annotations

import random

from prorl.config import Config
from prorl.data.schema import Problem
from prorl.errors import UserError


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

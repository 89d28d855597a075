"""The problems of a run: training and validation sets from files or the built-in generator, and the sampler.

Plain Python: no torch.
"""

from __future__ import annotations

import random
import sys
from typing import Callable

from prorl.config import Config
from prorl.data.schema import Problem
from prorl.errors import DataError, UserError


def load_data(cfg: Config, grade: Callable[[Problem], str | None] | None = None) -> tuple[list[Problem], list[Problem]]:
    """Training and validation problems from files or the built-in generator.

    ``grade`` (the trainer passes :func:`prorl.verifiers.gradeable.why_ungradeable`) says why a problem
    from a file could not be graded: such problems stop the run with the first few named, or are left out
    with ``data.skip_bad_rows``. The built-in problems are gradeable by construction and not checked.
    """
    if cfg.data.builtin:
        from prorl.data.builtin import make_problems, parse_builtin

        weighted = parse_builtin(cfg.data.builtin)
        kinds = [k for k, _ in weighted]
        # Validation draws from the held-out split, which training never sees (see prorl.data.builtin). A kind of
        # weight W has W times the training problems (distinct draws), and validation stays one share per kind.
        train = [p for k, w in weighted for copy in range(w)
                 for p in make_problems(k, 5000, seed=cfg.train.seed + 100_000 * copy, split="train")]
        per_kind = max(1, cfg.data.val_size // len(kinds))
        val = [p for k in kinds
               for p in make_problems(k, per_kind, seed=cfg.train.seed + 10_000, split="heldout", distinct=True)]
        return train, val
    if not cfg.data.train_files:
        raise UserError("no training data: set data.train_files (JSONL/Parquet/HF dataset dir) or data.builtin")
    from prorl.data.loaders import load_problems

    train = [p for f in cfg.data.train_files for p in load_problems(f, adapter=cfg.data.adapter)]
    train = gradeable(train, grade, cfg, "data.train_files")
    if cfg.data.val_files:
        val = [p for f in cfg.data.val_files for p in load_problems(f, adapter=cfg.data.adapter)]
        val = gradeable(val, grade, cfg, "data.val_files")
    else:
        rng = random.Random(cfg.train.seed)
        shuffled = train[:]
        rng.shuffle(shuffled)
        n_val = int(len(shuffled) * cfg.data.val_fraction)
        val, train = shuffled[:n_val], shuffled[n_val:]
        if n_val == 0 and cfg.validation.every > 0:
            print(f"WARNING: no validation problems: data.val_fraction={cfg.data.val_fraction:g} of "
                  f"{len(shuffled)} training problems is none; set data.val_files, raise data.val_fraction, "
                  f"or set validation.every=0", file=sys.stderr)
    return train, val[: cfg.data.val_size]


def gradeable(problems: list[Problem], grade, cfg: Config, setting: str) -> list[Problem]:
    """``problems`` without those ``grade`` rejects: a :class:`DataError` naming the first few, or (with
    ``data.skip_bad_rows``) a line saying how many were left out."""
    if grade is None:
        return problems
    bad = [(p, why) for p in problems if (why := grade(p)) is not None]
    if not bad:
        return problems
    first = "; ".join(f"{p.source or p.id}: {why}" for p, why in bad[:3])
    if not cfg.data.skip_bad_rows:
        raise DataError(f"{setting}: {len(bad)} of {len(problems)} problems cannot be graded ({first}"
                        f"{'; ...' if len(bad) > 3 else ''}); `prorl data check FILE` lists them all, "
                        f"data.skip_bad_rows=true trains without them")
    print(f"{setting}: left out {len(bad)} of {len(problems)} problems that cannot be graded (first: {first})",
          file=sys.stderr)
    bad_ids = {id(p) for p, _ in bad}
    return [p for p in problems if id(p) not in bad_ids]


def make_sampler(problems: list[Problem], cfg: Config):
    from prorl.data.mixture import MixtureSampler

    return MixtureSampler(problems, cfg.data.weights or None, seed=cfg.train.seed)

"""A training run's state and set-up: :class:`Run` carries everything the loop works on, :func:`open_run`
builds it (checks, models, the latest checkpoint when resuming), :func:`save` checkpoints it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prorl.checkpoint import latest_checkpoint, load_trainer_state, load_weights_into, save_checkpoint
from prorl.config import Config, Stage, dump_yaml, stage_configs
from prorl.data.run_data import load_data
from prorl.data.schema import Problem
from prorl.errors import UserError
from prorl.policy import load_policy, resolve_device
from prorl.rollout import ENGINES, make_engine
from prorl.runlog import RunLog
from prorl.update import make_optimizer


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
class Run:
    """Everything the loop works on, passed explicitly: config, log, models, optimizer, data, stage, state."""

    cfg: Config
    dir: Path
    log: RunLog
    stages: list[Stage]
    stage: Stage
    """The stage being trained (its ``cfg`` is the effective config of every phase)."""
    policy: torch.nn.Module
    reference: torch.nn.Module | None
    engine: object
    tokenizer: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    pool: object
    state: TrainState
    train_problems: list[Problem]
    val_problems: list[Problem]
    sampler: object = None
    sandbox_metrics: dict = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return self.stages[-1].last


# ---------------------------------------------------------------- setting up


def open_run(cfg: Config, resume: bool) -> Run:
    """Check the run directory, load the models, restore the latest checkpoint when resuming."""
    from prorl.verifiers.pool import ScoringPool

    run_dir = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and not resume:
        raise UserError(f"run directory {run_dir} already has a checkpoint ({ckpt.name}); "
                        f"continue it with `prorl train --resume {run_dir}` or choose another run_dir")
    if not cfg.model.path:
        raise UserError("model.path is not set: give a Hugging Face model directory (or hub id)")
    if cfg.rollout.engine not in ENGINES:
        raise UserError(f"config key 'rollout.engine': expected one of {', '.join(ENGINES)}, got {cfg.rollout.engine!r}")
    torch.manual_seed(cfg.train.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    log = RunLog(run_dir)
    stages = stage_configs(cfg)
    saved = load_trainer_state(ckpt) if ckpt else None
    state = TrainState(**saved["train_state"]) if saved else TrainState()
    stage = stages[max(state.stage, 0)]

    policy, tokenizer = load_policy(ckpt / "policy" if ckpt else cfg.model.path, dtype=cfg.model.dtype,
                                    device=resolve_device(cfg.model.device))
    if cfg.model.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    reference = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.algo.kl_beta > 0 else None
    engine = make_engine(cfg.rollout, policy, tokenizer)
    optimizer, scheduler = make_optimizer(policy, stage.cfg)
    if saved is not None:
        if reference is not None:
            load_weights_into(reference, ckpt / "reference")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        engine.load_weights(policy.named_parameters())
        log.truncate_after(state.step)
        log.event(state.step, "resume", checkpoint=ckpt.name)
    train_problems, val_problems = load_data(stage.cfg)
    run = Run(cfg, run_dir, log, stages, stage, policy, reference, engine, tokenizer, optimizer, scheduler, None,
              state, train_problems, val_problems)
    run.sandbox_metrics = sandbox_status(train_problems, log, state.step)
    run.pool = ScoringPool(stage.cfg.reward.workers, timeout_s=stage.cfg.reward.timeout_s)
    return run


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


def save(run: Run, step: int) -> None:
    """Weights, optimizer, schedule, train state and data cursor of ``step``, written atomically."""
    state = vars(run.state) | {"sampler": run.sampler.state_dict()}
    path = save_checkpoint(run.dir, step, policy=run.policy, reference=run.reference, tokenizer=run.tokenizer,
                           keep_last=run.stage.cfg.checkpoint.keep_last,
                           trainer_state={"train_state": state, "optimizer": run.optimizer.state_dict(),
                                          "scheduler": run.scheduler.state_dict(), "config": dump_yaml(run.cfg)})
    run.log.event(step, "checkpoint", path=str(path.relative_to(run.dir)))

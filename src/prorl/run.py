"""A training run's state and set-up: :class:`Run` carries everything the loop works on, :func:`open_run`
builds it (checks, models, the latest checkpoint when resuming), :func:`save` checkpoints it.
"""

from __future__ import annotations

import copy
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prorl.checkpoint import SHARDED, full_optimizer_state, latest_checkpoint, load_sharded_checkpoint, \
    load_trainer_state, load_weights_into, save_checkpoint, save_sharded_checkpoint
from prorl.config import Config, Stage, dump_yaml, stage_configs, to_dict
from prorl.data.run_data import load_data
from prorl.dist import SINGLE, Dist, LogprobModule, shard, weights_of
from prorl.verifiers import use_custom
from prorl.verifiers.gradeable import why_ungradeable
from prorl.data.schema import Problem
from prorl.errors import UserError
from prorl.policy import load_policy, resolve_device
from prorl.rollout import engine_target, make_engine
from prorl.runlog import NullLog, RunLog
from prorl.trackers import check_available, make_trackers
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
    entropy_coef: float | None = None
    """The steered entropy-bonus coefficient (with algo.entropy_target; None: not steered yet)."""
    kl_share_steps: int = 0
    """Steps in a row whose actor/kl_share exceeded reset.kl_share_threshold (for the KL-dominance trigger)."""
    manual_reset_token: str | None = None
    """The ``prorl reset`` request already acted on (its file is removed by the checkpoint that records it)."""


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
    peft_model: object = None
    """The ``PeftModel`` around ``policy`` in a LoRA run (``model.lora_rank > 0``), else None."""
    dist: Dist = SINGLE
    """This process's rank among those ``torchrun`` started (world size 1 without it); with several, ``policy``
    and ``reference`` are :class:`prorl.dist.LogprobModule` sharded by FSDP2."""

    @property
    def total_steps(self) -> int:
        return self.stages[-1].last


# ---------------------------------------------------------------- setting up


def open_run(cfg: Config, resume: bool, d: Dist = SINGLE) -> Run:
    """Check everything, load the models and data, restore the latest checkpoint when resuming; only then write.

    Nothing in the run directory changes before every check has passed and the models and data have
    loaded: a refused start or resume leaves the run exactly as it was. With several ranks (``d``) each loads
    the models, shards them with FSDP2, and only rank 0 writes the run's files; a checkpoint written at another
    world size is resumed too (it says that the samples will differ from the uninterrupted run's).
    """
    from prorl.verifiers.pool import ScoringPool

    run_dir = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and not resume:
        raise UserError(f"run directory {run_dir} already has a checkpoint ({ckpt.name}); "
                        f"continue it with `prorl train --resume {run_dir}` or choose another run_dir")
    old_logs = [p for p in (run_dir / "metrics.jsonl", run_dir / "events.jsonl") if p.exists() and p.stat().st_size]
    if ckpt is None and old_logs and not resume:
        raise UserError(f"run directory {run_dir} holds the logs of an earlier run that wrote no checkpoint; "
                        f"`prorl train --resume {run_dir}` starts it again from step 0 (its logs are replaced), "
                        f"or choose another run_dir")
    if not cfg.model.path:
        raise UserError("model.path is not set: give a Hugging Face model directory (or hub id)")
    engine_target(cfg.rollout.engine)  # before the (slow) model load: a misspelt engine fails at once
    use_custom(cfg.reward.custom)  # the user's scorers (their domains are valid in the data loaded below)
    check_available(cfg)  # an experiment tracker asked for and not installed
    stages = stage_configs(cfg)
    if d.enabled:
        check_distributed(cfg, stages, d)
    saved = load_trainer_state(ckpt) if ckpt else None
    sharded = ckpt is not None and (ckpt / SHARDED).is_dir()  # written by several ranks
    state = TrainState(**saved["train_state"]) if saved else TrainState()
    if saved is not None:
        check_resumable(saved.get("config"), cfg, state, where=f"--resume {run_dir}")
    stage = stages[max(state.stage, 0)]

    torch.manual_seed(cfg.train.seed)
    lora = cfg.model.lora_rank > 0
    peft_model = None
    policy, tokenizer = load_policy(ckpt / "policy" if ckpt and not lora else cfg.model.path, dtype=cfg.model.dtype,
                                    attn_implementation=cfg.model.attn_implementation,
                                    device=resolve_device(cfg.model.device))
    if cfg.model.gradient_checkpointing:  # the method's newer name where transformers has it
        getattr(policy, "activation_checkpointing_enable", policy.gradient_checkpointing_enable)()
    if lora:  # adapters on the frozen base; the reference is a second adapter (prorl.lora)
        from prorl.lora import AdapterReference, add_lora, load_adapters

        peft_model = add_lora(policy, cfg.model, with_reference=cfg.algo.kl_beta > 0)
        if ckpt:
            load_adapters(peft_model, ckpt / "adapter")
        policy = peft_model.get_base_model()
        reference = AdapterReference(peft_model) if cfg.algo.kl_beta > 0 else None
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.algo.kl_beta > 0 else None
    if saved is not None and reference is not None and not lora and not sharded:
        load_weights_into(reference, ckpt / "reference")
    # Several ranks: the engine gets an unsharded copy of its own, then policy and reference are sharded.
    engine = make_engine(cfg.rollout, copy.deepcopy(policy) if d.enabled else policy, tokenizer)
    full_optimizer = None
    if d.enabled:
        if saved is not None and not sharded:  # written by one process: its optimizer state, by parameter name
            full_optimizer = full_optimizer_state(LogprobModule(policy), saved["optimizer"],
                                                  lambda m: make_optimizer(m, stage.cfg)[0])
        policy = shard(policy)
        reference = shard(reference, trainable=False) if reference is not None else None
    optimizer, scheduler = make_optimizer(policy, stage.cfg)
    if saved is not None:
        if sharded:  # DCP reshards to this world size (at world size 1, into the plain models)
            wrap = (lambda m: m) if d.enabled else (lambda m: LogprobModule(m) if m is not None else None)
            load_sharded_checkpoint(ckpt, policy=wrap(policy), reference=wrap(reference), optimizer=optimizer,
                                    dist=d)
        elif d.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(policy, optimizer, full_optimizer, options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        engine.load_weights(weights_of(policy))
    train_problems, val_problems = load_data(stage.cfg, grade=why_ungradeable)

    # Every check has passed: from here on the run directory is written (by rank 0 alone).
    d.barrier()  # every rank has loaded: none reads a file rank 0 is about to change
    saved_world = saved.get("world_size", 1) if saved is not None else d.world
    log = NullLog() if not d.main else None
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_yaml(cfg))
        log = RunLog(run_dir)
        if saved is not None:
            log.truncate_after(state.step)
        restarted = saved is None and resume and bool(old_logs)  # its tracker history goes too (purge from step 0)
        log.trackers = make_trackers(cfg, run_dir, state.step if saved is not None else (-1 if restarted else None))
        if saved is not None:
            log.event(state.step, "resume", checkpoint=ckpt.name,
                      **({"world_size": d.world, "checkpoint_world_size": saved_world} if d.enabled or saved_world > 1
                         else {}))
            if saved_world != d.world:
                print(f"resuming {ckpt.name}, written by {saved_world} process(es), on {d.world}: the data order is "
                      f"kept, but the samples will differ from those of an uninterrupted run (each rank draws its own)")
        elif resume and old_logs:
            log.clear()
            log.event(0, "restart", reason="no checkpoint to resume from: started again from step 0")
            print(f"{run_dir} has no checkpoint: starting it again from step 0 (the logs of the lost steps are "
                  f"removed)")
    d.barrier()
    run = Run(cfg, run_dir, log, stages, stage, policy, reference, engine, tokenizer, optimizer, scheduler, None,
              state, train_problems, val_problems, peft_model=peft_model, dist=d)
    run.sandbox_metrics = sandbox_status(train_problems, log, state.step)
    run.pool = ScoringPool(stage.cfg.reward.workers, timeout_s=stage.cfg.reward.timeout_s, custom=cfg.reward.custom)
    return run


def check_distributed(cfg: Config, stages: list[Stage], d: Dist) -> None:
    """What a run on several ranks cannot do (yet), each a :class:`UserError` naming the setting."""
    where = f"under torchrun with {d.world} processes"
    if cfg.model.lora_rank > 0:
        raise UserError(f"model.lora_rank={cfg.model.lora_rank}: LoRA runs in one process only, not {where}")
    if cfg.rollout.engine != "hf":
        raise UserError(f"rollout.engine={cfg.rollout.engine}: {where} only the built-in engine (hf) runs yet; a "
                        f"vLLM engine per rank is not wired up (see docs/distributed.md)")
    if cfg.model.device.startswith("cuda:"):
        raise UserError(f"model.device={cfg.model.device}: {where} each rank uses the GPU of its LOCAL_RANK; "
                        f"set model.device=auto (or cuda)")
    for s in stages:
        if s.cfg.train.prompts_per_step < d.world:
            raise UserError(f"train.prompts_per_step={s.cfg.train.prompts_per_step} (stage {s.name}): it is global, "
                            f"and each of the {d.world} ranks needs at least one prompt per round")


FIXED_ON_RESUME = ("model.dtype", "model.chat_template", "model.lora_rank", "model.lora_alpha", "model.lora_targets",
                   "train.seed", "rollout.dtype", "rollout.engine", "data.")
"""Settings a resumed run must keep: they decide the weights' precision, the draws and the data order."""


def check_resumable(saved_yaml: str | None, cfg: Config, state: TrainState, *, where: str) -> None:
    """Refuse a resume whose settings cannot continue the checkpointed run (a :class:`UserError` naming each)."""
    import yaml

    if not saved_yaml:
        return
    old, new = _flat(yaml.safe_load(saved_yaml)), _flat(to_dict(cfg))
    changed = sorted(k for k in set(old) | set(new) if k.startswith(FIXED_ON_RESUME) and old.get(k) != new.get(k))
    if (old.get("algo.kl_beta", 0) > 0) != (cfg.algo.kl_beta > 0):
        changed.append("algo.kl_beta (on/off: the reference policy exists only with a KL penalty)")
    done = max(state.stage, 0)  # stages before the current one are history
    if old.get("stages", [])[:done] != cfg.stages[:done]:
        changed.append(f"stages[0..{done - 1}] (stages already completed)")
    if changed:
        detail = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" if k in new or k in old else k for k in changed)
        raise UserError(f"{where}: these settings cannot change when a run is resumed ({detail}); "
                        f"resume with the run's own settings, or start a new run from the checkpoint's policy/")


def _flat(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and stage entries stay values)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("weights",):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


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


RESET_REQUEST = "reset.request"
"""File in the run directory that asks the running trainer for a reference reset (``prorl reset``); it holds
a token, and stays until a checkpoint records that the reset was done (so a crash cannot lose it)."""


def read_reset_request(run_dir: Path) -> str | None:
    """The token of the pending ``prorl reset`` request, or None."""
    try:
        return (run_dir / RESET_REQUEST).read_text().strip() or "requested"
    except FileNotFoundError:
        return None


def save(run: Run, step: int) -> None:
    """Weights, optimizer, schedule, train state and data cursor of ``step``, written atomically.

    A ``prorl reset`` request this checkpoint records as done is removed after it.
    """
    state = vars(run.state) | {"sampler": run.sampler.state_dict()}
    if run.dist.enabled:
        path = save_sharded_checkpoint(run.dir, step, dist=run.dist, policy=run.policy, reference=run.reference,
                                       optimizer=run.optimizer, tokenizer=run.tokenizer,
                                       keep_last=run.stage.cfg.checkpoint.keep_last,
                                       trainer_state={"train_state": state, "scheduler": run.scheduler.state_dict(),
                                                      "config": dump_yaml(run.cfg)})
        run.log.event(step, "checkpoint", path=str(path.relative_to(run.dir)))
        token = read_reset_request(run.dir) if run.dist.main else None
        if token is not None and token == run.state.manual_reset_token:
            (run.dir / RESET_REQUEST).unlink(missing_ok=True)
        return
    path = save_checkpoint(run.dir, step, policy=run.policy, reference=run.reference, tokenizer=run.tokenizer,
                           lora=run.peft_model, lora_merged=run.cfg.model.lora_export_merged,
                           keep_last=run.stage.cfg.checkpoint.keep_last,
                           trainer_state={"train_state": state, "optimizer": run.optimizer.state_dict(),
                                          "scheduler": run.scheduler.state_dict(), "config": dump_yaml(run.cfg)})
    run.log.event(step, "checkpoint", path=str(path.relative_to(run.dir)))
    token = read_reset_request(run.dir)
    if token is not None and token == run.state.manual_reset_token:
        (run.dir / RESET_REQUEST).unlink(missing_ok=True)


class StopOnSignal:
    """SIGTERM or SIGINT while training: the current step finishes, then the loop checkpoints and stops.

    ``signum`` is set by the first signal; the handlers in place before are put back at once, so a second
    signal acts immediately (SIGTERM kills the process, SIGINT raises KeyboardInterrupt). Handlers can be
    installed only from the main thread; elsewhere this does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        self._restore()
        print(f"\n{signal.Signals(signum).name} received: finishing this step, then checkpointing "
              f"(send it again to stop at once)", file=sys.stderr, flush=True)

    def _restore(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()

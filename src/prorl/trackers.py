"""Experiment trackers fed from the run log: TensorBoard (``log.tensorboard``) and Weights & Biases (``log.wandb``).

Each gets exactly what ``metrics.jsonl`` and ``events.jsonl`` get (:class:`prorl.runlog.RunLog` forwards
every line), so the numbers in a tracker are the numbers in the run directory. Numeric metrics become
scalars at their step; an event (reset, stage, skip, validation, resume, checkpoint, ...) becomes a text
entry and a scalar ``events/<name>`` of 1 at its step, the marker to line up with the curves. Both are
optional extras; a run that asks for one without it installed stops before anything is written.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path

from prorl.errors import UserError


def _scalars(values: dict) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardTracker:
    """Event files under ``RUN/tensorboard`` (``tensorboard --logdir RUN/tensorboard``). On resume, what was
    logged after the checkpoint's step is purged, as in ``metrics.jsonl``."""

    def __init__(self, run_dir: Path, resumed_step: int | None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("log.tensorboard=true needs the tensorboard package: pip install 'prorl[tensorboard]'") \
                from None
        self.dir = Path(run_dir) / "tensorboard"
        purge = resumed_step + 1 if resumed_step is not None else None
        self.writer = SummaryWriter(log_dir=str(self.dir), purge_step=purge)

    def metrics(self, step: int, values: dict) -> None:
        for key, value in _scalars(values).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def event(self, step: int, name: str, fields: dict) -> None:
        self.writer.add_scalar(f"events/{name}", 1.0, step)
        self.writer.add_text(f"events/{name}", json.dumps(fields, default=str), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run in project ``log.wandb``, its files under ``RUN/wandb``. The run's id is kept in ``RUN/wandb_id``,
    so a resumed prorl run continues the same W&B run. ``log.wandb_mode`` (or ``WANDB_MODE``): online or
    offline (then ``wandb sync RUN/wandb/offline-run-*`` uploads it later)."""

    def __init__(self, run_dir: Path, project: str, mode: str | None, config: dict):
        try:
            import wandb
        except ImportError:
            raise UserError("log.wandb needs the wandb package: pip install 'prorl[wandb]'") from None
        id_file = Path(run_dir) / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)  # 8 characters, W&B-safe
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=project, id=run_id, resume="allow", dir=str(run_dir), config=config,
                              name=Path(run_dir).name, **({"mode": mode} if mode else {}))

    def metrics(self, step: int, values: dict) -> None:
        self.run.log(_scalars(values), step=step)

    def event(self, step: int, name: str, fields: dict) -> None:
        self.run.log({f"events/{name}": 1.0}, step=step)

    def close(self) -> None:
        self.run.finish()


def check_available(cfg) -> None:
    """A :class:`UserError` now, before the run directory is written, when an asked-for tracker is not installed."""
    import importlib.util

    for wanted, package, extra in ((cfg.log.tensorboard, "tensorboard", "tensorboard"),
                                   (cfg.log.wandb, "wandb", "wandb")):
        if wanted and importlib.util.find_spec(package) is None:
            setting = "log.tensorboard=true" if package == "tensorboard" else "log.wandb"
            raise UserError(f"{setting} needs the {package} package: pip install 'prorl[{extra}]'")


def make_trackers(cfg, run_dir: Path, resumed_step: int | None) -> list:
    """The trackers ``cfg.log`` asks for (none by default)."""
    from prorl.config import to_dict

    trackers: list = []
    if cfg.log.tensorboard:
        trackers.append(TensorBoardTracker(run_dir, resumed_step))
    if cfg.log.wandb:
        trackers.append(WandbTracker(run_dir, cfg.log.wandb, cfg.log.wandb_mode, to_dict(cfg)))
    return trackers

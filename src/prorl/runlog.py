"""The run directory's logs: ``metrics.jsonl`` (one line per step), ``events.jsonl`` and ``rollouts/``.

Lines are appended and flushed as they are written, so ``prorl report`` can read a run that is
still going. On resume, lines from steps after the checkpoint are dropped first: the resumed run
writes them again, exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path


def _clean(value):
    """JSON-safe scalars: tensors to floats, NaN/inf kept as strings JSON can hold."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_jsonl(path: Path) -> list[dict]:
    """Every complete JSON line of ``path``; a partly written last line is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class RunLog:
    """Appends metric and event lines to a run directory."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.events_path = self.dir / "events.jsonl"
        self.trackers: list = []
        """Experiment trackers (:mod:`prorl.trackers`) given every metric and event line too."""

    def _append(self, path: Path, row: dict) -> None:
        with path.open("a") as fh:
            fh.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")

    def metrics(self, step: int, values: dict) -> None:
        self._append(self.metrics_path, {"step": step, **values})
        clean = {k: _clean(v) for k, v in values.items()} if self.trackers else {}
        for tracker in self.trackers:
            tracker.metrics(step, clean)

    def event(self, step: int, event: str, **fields) -> None:
        self._append(self.events_path, {"step": step, "time": round(time.time(), 3), "event": event, **fields})
        clean = {k: _clean(v) for k, v in fields.items()} if self.trackers else {}
        for tracker in self.trackers:
            tracker.event(step, event, clean)

    def close(self) -> None:
        """Close the trackers (the JSONL files need nothing)."""
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []

    def rollouts(self, step: int, groups, how_many: int) -> None:
        """The first ``how_many`` samples of ``groups`` (a :class:`prorl.groups.Groups`) to ``rollouts/step_N.jsonl``."""
        path = self.dir / "rollouts" / f"step_{step:06d}.jsonl"
        path.parent.mkdir(exist_ok=True)
        with path.open("w") as fh:
            for i in range(min(how_many, len(groups.problems))):
                p = groups.problems[i]
                fh.write(json.dumps({"id": p.id, "domain": p.domain, "prompt": p.prompt, "response": groups.texts[i],
                                     "reward": float(groups.rewards[i]), "reason": groups.verdicts[i].reason,
                                     "finish": groups.rollout.finish_reasons[i]}) + "\n")

    def clear(self) -> None:
        """Remove the metric, event and rollout logs (a run started again from step 0)."""
        import shutil

        for path in (self.metrics_path, self.events_path):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.dir / "rollouts", ignore_errors=True)

    def truncate_after(self, step: int) -> None:
        """Drop what was logged after the checkpoint of ``step`` (called on resume).

        Metric lines of later steps go. Events go from the checkpoint event of ``step`` on (a reset at the
        boundary after ``step`` is logged at ``step`` but happened after its checkpoint), except the
        ``stopped`` event that follows such a checkpoint; without a checkpoint event, events of later steps go.
        """
        metrics = [r for r in read_jsonl(self.metrics_path) if r.get("step", 0) <= step]
        events = read_jsonl(self.events_path)
        marks = [i for i, r in enumerate(events) if r.get("event") == "checkpoint" and r.get("step") == step]
        if marks:
            cut = marks[-1] + 1
            events = events[:cut] + [r for r in events[cut:] if r.get("event") == "stopped" and r.get("step") == step]
        else:
            events = [r for r in events if r.get("step", 0) <= step]
        for path, rows in ((self.metrics_path, metrics), (self.events_path, events)):
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            tmp.replace(path)


class NullLog:
    """The log of a rank other than 0 in a multi-process run: rank 0 writes the run's files, the others nothing."""

    trackers: list = []

    def metrics(self, step: int, values: dict) -> None:
        pass

    def event(self, step: int, event: str, **fields) -> None:
        pass

    def rollouts(self, step: int, groups, how_many: int) -> None:
        pass

    def close(self) -> None:
        pass

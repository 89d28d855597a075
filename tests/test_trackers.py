"""Experiment trackers: TensorBoard event files read back, W&B in offline mode; both fed from the run log."""

from __future__ import annotations

import json

import pytest

from prorl.runlog import read_jsonl
from prorl.train import train
from tiny_run import tiny_config


def tensorboard_scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_tensorboard_gets_the_metrics_and_events_and_a_resume_purges_the_lost_steps(warm_model, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(warm_model, run, "log.tensorboard=true", "reset.every=2", "checkpoint.keep_last=2")
    train(cfg)
    # Lose the last checkpoint (a crash after step 3's logs): the resumed run logs steps 3 and 4 again.
    import shutil

    shutil.rmtree(run / "checkpoints" / "step_000004")
    (run / "checkpoints" / "latest").write_text("step_000002\n")
    train(cfg, resume=True)
    metrics = read_jsonl(run / "metrics.jsonl")
    want = [(r["step"], r["reward/mean"]) for r in metrics if "reward/mean" in r]
    got = tensorboard_scalars(run, "reward/mean")
    assert [s for s, _ in got] == [s for s, _ in want] == [1, 2, 3, 4]  # each step once: the purge worked
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    assert [s for s, _ in tensorboard_scalars(run, "events/reset")] == [2]
    assert [s for s, _ in tensorboard_scalars(run, "events/resume")] == [2]
    assert [s for s, _ in tensorboard_scalars(run, "val/pass@1/mean")] == [0, 2, 4]


def wandb_history(path) -> list[dict]:
    """The history rows of an offline W&B run file: wandb's record log (a LevelDB-style log of 32 KiB blocks, each
    record a 7-byte header: CRC, length, type, after a 7-byte file header) of protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, pending, rows = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # the end of a block is padded
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.HasField("history"):
                rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_wandb_offline_run_is_continued_by_a_resume(warm_model, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    cfg = tiny_config(warm_model, run, "log.wandb=prorl-test", "log.wandb_mode=offline", "train.steps=2",
                      "validation.every=0")
    train(cfg)
    run_id = (run / "wandb_id").read_text().strip()
    longer = tiny_config(warm_model, run, "log.wandb=prorl-test", "log.wandb_mode=offline", "train.steps=3",
                         "validation.every=0")
    train(longer, resume=True)
    assert (run / "wandb_id").read_text().strip() == run_id
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(d.name.endswith(run_id) for d in offline)  # one W&B run, continued
    history = [row for d in offline for row in wandb_history(next(d.glob("run-*.wandb")))]
    metrics = read_jsonl(run / "metrics.jsonl")
    logged = {row["_step"]: row for row in history if "reward/mean" in row}
    assert sorted(logged) == [1, 2, 3]
    assert [r["step"] for r in metrics] == [1, 2, 3]
    for r in metrics:
        assert logged[r["step"]]["reward/mean"] == pytest.approx(r["reward/mean"])
    events = {k for row in history for k in row if k.startswith("events/")}
    assert {"events/resume", "events/checkpoint"} <= events


def test_a_tracker_that_is_not_installed_stops_before_anything_is_written(warm_model, tmp_path, monkeypatch):
    import importlib.util

    from prorl.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"log.wandb needs the wandb package: pip install 'prorl\[wandb\]'"):
        train(tiny_config(warm_model, tmp_path / "run", "log.wandb=p"))
    assert not (tmp_path / "run").exists()

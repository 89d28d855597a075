"""A run survives crashes, preemption, a full disk and bad settings (docs/runs.md): each case on a tiny model.

Crash cases run the real command in a subprocess and kill it with a real signal; every resume is compared
with the uninterrupted run, metric line by metric line and weight by weight.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tiny_run import strip_times, tiny_config

from prorl.cli import main
from prorl.config import dump_yaml
from prorl.errors import UserError
from prorl.policy import load_policy
from prorl.run import RESET_REQUEST, StopOnSignal
from prorl.runlog import read_jsonl
from prorl.train import train


def events(run: Path, kind: str | None = None) -> list[dict]:
    rows = read_jsonl(run / "events.jsonl")
    return [e for e in rows if kind is None or e["event"] == kind]


def same_run(a: Path, b: Path, step: int, *, except_reset_count_at: int | None = None) -> None:
    """Metrics (times aside) and the policy weights of checkpoint ``step`` are identical in both runs."""
    rows_a, rows_b = (strip_times(read_jsonl(r / "metrics.jsonl")) for r in (a, b))
    if except_reset_count_at is not None:  # a reset logged on the next step's boundary instead of this one's
        for rows in (rows_a, rows_b):
            rows[except_reset_count_at].pop("reset/count")
    assert rows_a == rows_b
    pa, _ = load_policy(a / "checkpoints" / f"step_{step:06d}" / "policy", dtype="float32")
    pb, _ = load_policy(b / "checkpoints" / f"step_{step:06d}" / "policy", dtype="float32")
    for x, y in zip(pa.parameters(), pb.parameters()):
        assert torch.equal(x, y)


def write_recipe(warm_model: Path, run: Path, *extra: str) -> Path:
    """The tiny config as a recipe file, for the command-line tests."""
    path = run.parent / f"{run.name}.yaml"
    path.write_text(dump_yaml(tiny_config(warm_model, run, *extra)))
    return path


# ---------------------------------------------------------------- resume: checks before any write


def test_a_refused_resume_changes_nothing_and_the_run_still_resumes(warm_model, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(warm_model, run, "train.steps=2"))
    before = {p: p.read_bytes() for p in (run / "config.yaml", run / "events.jsonl", run / "metrics.jsonl")}
    assert main(["train", "--resume", str(run), "train.seed=7"]) == 2
    err = capsys.readouterr().err
    assert "cannot change when a run is resumed" in err and "train.seed: 0 -> 7" in err
    assert {p: p.read_bytes() for p in before} == before
    assert main(["train", "--resume", str(run), "train.steps=3"]) == 0
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2, 3]


def test_resume_of_a_copy_trains_the_copy(warm_model, tmp_path):
    original = tmp_path / "run"
    train(tiny_config(warm_model, original, "train.steps=2"))
    untouched = (original / "metrics.jsonl").read_bytes()
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    assert main(["train", "--resume", str(copy), "train.steps=3"]) == 0
    assert (original / "metrics.jsonl").read_bytes() == untouched
    assert not (original / "checkpoints" / "step_000003").exists()
    assert (copy / "checkpoints" / "step_000003").is_dir()
    assert yaml.safe_load((copy / "config.yaml").read_text())["run_dir"] == str(copy)


def test_resume_without_a_checkpoint_starts_again_cleanly(warm_model, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(warm_model, run, "train.steps=2"))
    shutil.rmtree(run / "checkpoints")  # as if killed before its first checkpoint
    with pytest.raises(UserError, match="wrote no checkpoint.*--resume"):
        train(tiny_config(warm_model, run, "train.steps=2"))  # a fresh start would mix two runs' logs
    assert main(["train", "--resume", str(run)]) == 0
    assert "no checkpoint: starting it again from step 0" in capsys.readouterr().out
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2]
    assert [e["event"] for e in events(run)][0] == "restart"
    straight = tmp_path / "straight"
    train(tiny_config(warm_model, straight, "train.steps=2"))
    same_run(run, straight, 2)


# ---------------------------------------------------------------- resets


def test_a_manual_reset_happens_once_even_when_the_trainer_dies_before_its_checkpoint(warm_model, tmp_path,
                                                                                      monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(warm_model, run, "train.steps=2"))
    assert main(["reset", str(run)]) == 0
    import prorl.train as train_module

    real_save = train_module.save

    def crash_at_step_4(r, step):
        if step == 4:
            raise RuntimeError("simulated crash before the checkpoint")
        real_save(r, step)

    monkeypatch.setattr(train_module, "save", crash_at_step_4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_config(warm_model, run, "train.steps=4", "checkpoint.every=0"), resume=True)
    assert (run / RESET_REQUEST).exists()  # taken, not yet recorded by a checkpoint: still pending
    monkeypatch.setattr(train_module, "save", real_save)
    train(tiny_config(warm_model, run, "train.steps=4", "checkpoint.every=0"), resume=True)
    assert [(e["step"], e["reason"]) for e in events(run, "reset")] == [(2, "manual")]
    assert not (run / RESET_REQUEST).exists()


def test_a_manual_and_a_scheduled_reset_at_one_boundary_are_one_reset(warm_model, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(warm_model, run, "train.steps=2", "reset.every=3"))
    assert main(["reset", str(run)]) == 0
    train(tiny_config(warm_model, run, "train.steps=2", "reset.every=2"), resume=True)  # nothing left to train
    train(tiny_config(warm_model, run, "train.steps=4", "reset.every=2"), resume=True)
    resets = events(run, "reset")
    assert [(e["step"], e["reason"]) for e in resets] == [(2, "schedule")]
    assert [(e["step"], e["reason"]) for e in events(run, "reset_merged")] == [(2, "manual")]


def test_extending_a_finished_run_keeps_the_reset_schedule(warm_model, tmp_path):
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    train(tiny_config(warm_model, straight, "train.steps=6", "reset.every=2", "checkpoint.every=3"))
    assert [e["step"] for e in events(straight, "reset")] == [2, 4]  # the last step's reset waits for more steps
    train(tiny_config(warm_model, extended, "train.steps=4", "reset.every=2", "checkpoint.every=3"))
    assert [e["step"] for e in events(extended, "reset")] == [2]
    train(tiny_config(warm_model, extended, "train.steps=6", "reset.every=2", "checkpoint.every=3"), resume=True)
    assert [e["step"] for e in events(extended, "reset")] == [2, 4]
    # The state is the same; only the row of step 4 counts the reset that came after it (1, not 2).
    same_run(straight, extended, 6, except_reset_count_at=4)


# ---------------------------------------------------------------- signals (real processes)


def start(recipe: Path, *args: str) -> subprocess.Popen:
    code = "import sys; from prorl.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "train", str(recipe), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})


def wait_for_rows(run: Path, rows: int, proc: subprocess.Popen, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while len(read_jsonl(run / "metrics.jsonl")) < rows:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the trainer made no progress"
        time.sleep(0.05)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_checkpoints_the_step_and_resume_is_exact(warm_model, tmp_path, signum, code):
    extra = ("train.steps=8", "checkpoint.every=100", "validation.every=4")
    straight = tmp_path / "straight"
    train(tiny_config(warm_model, straight, *extra))
    run = tmp_path / "run"
    proc = start(write_recipe(warm_model, run, *extra))
    wait_for_rows(run, 3, proc)  # step 0 (validation) and two training steps logged
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    stopped = events(run, "stopped")
    assert len(stopped) == 1 and stopped[0]["signal"] == signal.Signals(signum).name
    step = stopped[0]["step"]
    assert step < 8 and (run / "checkpoints" / f"step_{step:06d}").is_dir()
    assert f"checkpoint step_{step:06d} written" in err
    assert main(["train", "--resume", str(run)]) == 0
    same_run(straight, run, 8)


def test_a_run_killed_at_once_resumes_exactly_from_its_last_checkpoint(warm_model, tmp_path):
    extra = ("train.steps=6", "checkpoint.every=2")
    straight = tmp_path / "straight"
    train(tiny_config(warm_model, straight, *extra))
    run = tmp_path / "run"
    proc = start(write_recipe(warm_model, run, *extra))
    wait_for_rows(run, 5, proc)  # past the checkpoint of step 2
    proc.kill()
    proc.communicate(timeout=60)
    assert main(["train", "--resume", str(run)]) == 0
    same_run(straight, run, 6)


def test_a_second_signal_is_not_caught():
    with StopOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT  # the first one only asks the loop to stop
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# ---------------------------------------------------------------- a full disk


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4416 vs 4310"),  # torch's zip writer
])
def test_a_full_disk_keeps_the_previous_checkpoint(warm_model, tmp_path, monkeypatch, failure):
    import prorl.checkpoint as checkpoint

    run = tmp_path / "run"
    real = checkpoint.torch.save
    calls = []

    def save_until_full(obj, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as fh:
                fh.write(b"partial")
            raise failure
        real(obj, path, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", save_until_full)
    with pytest.raises(UserError, match=r"no space left on device writing checkpoint .*step_000004\.tmp .*needs about "
                                        r"[\d,]+ bytes.*step_000002 is still the latest"):
        train(tiny_config(warm_model, run))
    root = run / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000002"]
    assert (root / "latest").read_text().strip() == "step_000002"
    monkeypatch.setattr(checkpoint.torch, "save", real)
    train(tiny_config(warm_model, run), resume=True)  # space freed: the run continues from step 2
    assert (root / "latest").read_text().strip() == "step_000004"


def test_a_write_error_that_is_not_a_full_disk_is_not_disguised(warm_model, tmp_path, monkeypatch):
    import prorl.checkpoint as checkpoint

    def broken(*a, **k):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint.torch, "save", broken)
    with pytest.raises(PermissionError):
        train(tiny_config(warm_model, tmp_path / "run", "train.steps=2"))
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


def test_a_full_disk_at_the_first_checkpoint_says_there_is_none_to_fall_back_on(warm_model, tmp_path, monkeypatch):
    import prorl.checkpoint as checkpoint

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(UserError, match="no space left on device.*there is no earlier checkpoint"):
        train(tiny_config(warm_model, tmp_path / "run", "train.steps=2"))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == []

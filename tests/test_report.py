"""prorl report on synthetic run directories written in the trainer's format (via prorl.runlog)."""

import argparse

import pytest

from prorl import report
from prorl.errors import UserError
from prorl.runlog import RunLog

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir, steps=12, *, truncated_tail=True):
    """A run with validation at steps 0, 5, 10, a reset at step 5, a stage change logged at step 7,
    a NaN loss at step 3 and (optionally) a half-written last metrics line."""
    log = RunLog(run_dir)
    (run_dir / "config.yaml").write_text("model:\n  path: tiny\nalgo:\n  kl_beta: 0.0001\n")
    log.metrics(0, {"val/pass@1/math": 0.1, "val/mean_score/math": 0.1, "val/pass@1/mean": 0.1})
    log.event(0, "validation", results={"domains": {"math": {"pass@1": 0.1}}})
    for step in range(1, steps + 1):
        row = {
            "stage": 0 if step <= 7 else 1,
            "reward/mean": step / 20, "reward/math": step / 20, "reward/logic": 0.3,
            "accuracy/mean": step / 25, "accuracy/math": step / 25,
            "actor/entropy": 1.5 - step / 20, "actor/kl": 0.0 if step == 6 else 0.001 * step,
            "actor/pg_loss": float("nan") if step == 3 else 0.01, "actor/kl_loss": 0.001,
            "actor/clip_frac_low": 0.0, "actor/clip_frac_high": 0.01,
            "response/length_mean": 20.0 + step, "response/length_max": 64,
            "response/truncated_frac": 0.05, "batch/zero_var_group_frac": 0.3,
            "time/step": 1.9, "time/generate": 1.1, "time/score": 0.1, "time/logprobs": 0.2, "time/update": 0.5,
        }
        if step in (5, 10):
            row |= {"val/pass@1/math": step / 20, "val/mean_score/math": step / 20, "val/pass@1/mean": step / 20}
        log.metrics(step, row)
        if step == 5:
            log.event(5, "reset", reason="schedule", resets=1, optimizer="reinitialised")
        if step == 7:
            log.event(7, "stage", stage=1, name="long")
        if step == 9:
            log.event(9, "skip", reason="non-finite loss or gradient")
    if truncated_tail:
        with (run_dir / "metrics.jsonl").open("a") as fh:
            fh.write('{"step": 13, "reward/mean": 0.')  # the trainer is in the middle of writing this line


EXPECTED_IMAGES = {"reward", "accuracy", "val_pass1", "val_score", "entropy", "kl", "clip", "length", "truncated",
                   "zero_var", "step_time", "losses"}


def test_report_of_a_running_run(tmp_path, monkeypatch):
    run = tmp_path / "run"
    write_run(run)
    calls = []
    real_plot = report._plot

    def spy(path, title, ylabel, curves, resets, stages, resumes):
        calls.append((path.stem, [c[0] for c in curves], resets, stages))
        assert ylabel  # every plot says what its y axis is
        real_plot(path, title, ylabel, curves, resets, stages, resumes)

    monkeypatch.setattr(report, "_plot", spy)
    page = report.build_report(run)
    assert page == run / "report" / "index.html"
    html = page.read_text()
    made = {p.stem for p in (run / "report").glob("*.png")}
    assert made == EXPECTED_IMAGES  # no lr / grad norm / throughput metrics in this run: no such plots
    for name in made:
        assert (run / "report" / f"{name}.png").read_bytes()[:8] == PNG
        assert f"src='{name}.png'" in html
    # Every plot carries the reset at step 5 and the stage change logged at step 7.
    assert all(c[2] == [5.0] and c[3] == [(7.0, "long")] for c in calls)
    curves = {c[0]: c[1] for c in calls}
    assert curves["reward"] == ["reward/logic", "reward/math = reward/mean"]  # identical curves drawn once
    assert curves["clip"] == ["actor/clip_frac_low", "actor/clip_frac_high"]
    # The half-written line is skipped with a note; everything before it is read.
    assert "last line (probably still being written)" in html
    assert "Steps logged: 13; last step: 12" in html
    # Validation table: steps 0, 5 and 10.
    cols, rows = report.validation_table(report.read_log(run / "metrics.jsonl")[0])
    assert cols == ["step", "val/mean_score/math", "val/pass@1/math", "val/pass@1/mean"]
    assert [r[0] for r in rows] == [0, 5, 10] and rows[1][2] == pytest.approx(0.25)
    assert "<td>0.25</td>" in html
    assert "reason=schedule" in html and "name=long" in html and "non-finite loss" in html
    assert "kl_beta: 0.0001" in html


def test_nan_values_are_read_as_gaps():
    rows = [{"step": 1, "actor/pg_loss": 0.5}, {"step": 2, "actor/pg_loss": "nan"}, {"step": 3, "actor/pg_loss": 0.2}]
    steps, values = report.series(rows, "actor/pg_loss")
    assert steps == [1.0, 2.0, 3.0] and values[0] == 0.5 and values[1] != values[1] and values[2] == 0.2


def test_bad_line_in_the_middle_is_skipped_and_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "reward/mean": 0.1}\nnot json\n[1, 2]\n{"step": 2, "reward/mean": 0.2}\n')
    rows, notes = report.read_log(path)
    assert [r["step"] for r in rows] == [1, 2]
    assert notes == ["metrics.jsonl: skipped line 2: not a JSON object", "metrics.jsonl: skipped line 3: not a JSON object"]


def test_empty_run_directory_gives_a_page_without_plots(tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    html = report.build_report(run).read_text()
    assert "no training step has been logged yet" in html and "(no metrics to plot yet)" in html
    assert not list((run / "report").glob("*.png"))


def test_command(tmp_path, capsys):
    run = tmp_path / "run"
    write_run(run, steps=3, truncated_tail=False)
    parser = argparse.ArgumentParser()
    report.add_report_arguments(parser)
    assert report.main_report(parser.parse_args([str(run), "--out", str(tmp_path / "r")])) == 0
    assert (tmp_path / "r" / "index.html").exists() and "wrote" in capsys.readouterr().out
    with pytest.raises(UserError, match="no such directory"):
        report.main_report(parser.parse_args([str(tmp_path / "missing")]))


def test_report_states_a_constant_lr_skips_the_first_stage_line_draws_resumes_and_says_validation_never_ran(
        tmp_path, monkeypatch):
    run = tmp_path / "run"
    log = RunLog(run)
    log.event(0, "stage", stage=0, name="first")
    for step in range(1, 6):
        log.metrics(step, {"reward/mean": step / 10, "actor/lr": 2e-6, "actor/entropy": 1.0 / step})
    log.event(3, "resume", checkpoint="step_000003")
    calls = []
    real_plot = report._plot
    monkeypatch.setattr(report, "_plot", lambda path, title, ylabel, curves, resets, stages, resumes: (
        calls.append((path.stem, stages, resumes)), real_plot(path, title, ylabel, curves, resets, stages, resumes)))
    html = report.build_report(run).read_text()
    assert "learning rate: 2e-06 at every step (constant, so not plotted)" in html
    assert "lr" not in {c[0] for c in calls} and {c[0] for c in calls} == {"reward", "entropy"}
    assert all(c[1] == [] and c[2] == [3.0] for c in calls)  # no line for the first stage's start; the resume drawn
    assert "Validation has not run in this run" in html

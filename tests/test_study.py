"""``prorl demo --study``: the verdict rules on hand-made numbers, and the whole pipeline on a few steps."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from prorl import study


def numbers(*, prorl_entropy=(0.2, 0.2), grpo_entropy=(0.1, 0.1), prorl_val=(0.6, 0.6), grpo_val=(0.5, 0.5),
            truncated=(0.3, 0.4, 0.1), expansion=("add3",), add3=(0.0, 0.3), r=-0.9, p=0.01) -> dict:
    ablation = {}
    for sd in (0, 1):
        ablation[f"prorl_s{sd}"] = {"entropy_end": prorl_entropy[sd], "val_end": prorl_val[sd]}
        ablation[f"grpo_s{sd}"] = {"entropy_end": grpo_entropy[sd], "val_end": grpo_val[sd]}
    peak, plain, penalty = truncated
    return {"ablation": ablation, "n": 256,
            "length": {"truncated_max_window": peak, "truncated_end_plain": plain, "truncated_end_penalty": penalty},
            "boundary": {"boundary_expansion": list(expansion), "correlation": {"pearson_r": r, "pearson_p": p}},
            "pass_at_n": {"add": {"base": 0.9, "prorl": 0.95}, "add3": {"base": add3[0], "prorl": add3[1]}}}


def verdict_list(**kw) -> list[str]:
    return [v["verdict"] for v in study.verdicts(numbers(**kw), [0, 1])]


def test_every_claim_reproduced_when_the_numbers_say_so():
    assert verdict_list() == ["reproduced"] * 4


def test_the_ablation_needs_every_seed():
    # seed 1: GRPO's entropy 0.17 is 0.85 x ProRL's 0.2, above the 0.8 collapse line
    assert verdict_list(grpo_entropy=(0.1, 0.17))[0] == "not reproduced"
    assert verdict_list(grpo_entropy=(0.1, 0.159))[0] == "reproduced"
    assert verdict_list(prorl_val=(0.6, 0.5))[0] == "not reproduced"  # a tie is not ahead


def test_boundary_expansion_must_be_clearly_above_zero():
    assert verdict_list(add3=(0.0, 0.04))[1] == "not reproduced"
    assert verdict_list(add3=(0.0, 0.05))[1] == "reproduced"
    assert verdict_list(expansion=())[1] == "not reproduced"


def test_correlation_must_be_negative_significant_and_defined():
    assert verdict_list(r=0.9)[2] == "not reproduced"
    assert verdict_list(r=-0.47, p=0.34)[2] == "not reproduced"  # negative, but six tasks cannot tell
    assert verdict_list(r=float("nan"), p=float("nan"))[2] == "not reproduced"


def test_length_control_needs_a_blowup_and_a_halving():
    assert verdict_list(truncated=(0.19, 0.19, 0.0))[3] == "not reproduced"  # no blow-up to control
    assert verdict_list(truncated=(0.3, 0.3, 0.15))[3] == "not reproduced"  # exactly half is not less than half
    assert verdict_list(truncated=(0.3, 0.3, 0.14))[3] == "reproduced"


def test_window_and_tail_means():
    rows = [{"step": s, "x": v} for s, v in enumerate([0.0, 1.0, 3.0, 2.0, 0.0], start=1)] + [{"step": 6}]
    assert study.max_window(rows, "x", 2) == 2.5
    assert study.max_window(rows, "x", 10) == 1.2  # wider than the log: the whole log
    assert study.tail_mean(rows, "x", 3, 6) == pytest.approx(5 / 3)
    assert math.isnan(study.tail_mean(rows, "x", 7, 9))
    assert math.isnan(study.max_window(rows, "missing", 2))


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return out, study.run_study(out, quick=True)


def test_quick_study_runs_every_experiment(quick_study):
    out, result = quick_study
    assert [v["claim"].split(":")[0] for v in result["verdicts"]] == [
        "ablation", "boundary expansion", "the gain at pass@K is largest where the base was weakest (negative correlation)",
        "length control"]
    assert {v["verdict"] for v in result["verdicts"]} <= {"reproduced", "not reproduced"}
    assert json.loads((out / "study.json").read_text())["verdicts"] == result["verdicts"]
    page = (out / "study.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # the training curves and the pass@k curves
    assert page.count("rule: ") == 4
    for run in ("prorl_s0", "grpo_s0", "prorl_length_s0"):
        assert (out / "runs" / run / "checkpoints" / "step_000004" / "policy" / "config.json").is_file()
    for name in ("base", "mid", "prorl", "grpo"):
        evaluation = json.loads((out / f"eval_{name}.json").read_text())
        assert sorted(evaluation["tasks"]) == sorted(study.LADDER)
        assert evaluation["settings"]["n"] == 8


def test_the_length_run_resumes_at_the_middle_with_its_stage(quick_study):
    out, _ = quick_study
    run = out / "runs" / "prorl_length_s0"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [(e["step"], e["checkpoint"]) for e in events if e["event"] == "resume"] == [(2, "step_000002")]
    assert [(e["step"], e["name"]) for e in events if e["event"] == "stage"] == [(0, "main"), (2, "length")]
    steps = [(json.loads(line)["step"], json.loads(line).get("stage")) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [(0, None), (1, 0), (2, 0), (3, 1), (4, 1)]  # the copied log cut at the checkpoint, then stage 1
    # the grpo run has neither a KL penalty nor resets
    grpo = [json.loads(line) for line in (out / "runs" / "grpo_s0" / "metrics.jsonl").read_text().splitlines()]
    assert all(r.get("reset/count", 0) == 0 for r in grpo)
    config = yaml.safe_load((out / "runs" / "grpo_s0" / "config.yaml").read_text())
    assert config["algo"]["kl_beta"] == 0 and config["algo"]["dynamic_sampling"] is False
    assert (config["algo"]["clip_low"], config["algo"]["clip_high"], config["reset"]["every"]) == (0.2, 0.2, 0)


def test_variants_run_their_overrides_from_one_warm_start_and_print_one_row_each(tmp_path, capsys):
    variants = {"prorl": [], "frontier": ["data.builtin=add,sub,add21,add3:3"], "kl_cov": ["algo.policy_loss=kl_cov"]}
    result = study.run_variants(tmp_path, quick=True, variants=variants)
    assert list(result["rows"]) == list(variants)
    assert json.loads((tmp_path / "variants.json").read_text())["rows"].keys() == result["rows"].keys()
    for name, extra in variants.items():
        run = tmp_path / "runs" / name
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["model"]["path"] == str(tmp_path / "warm")  # every variant starts from the same model
        row = result["rows"][name]
        assert row["overrides"] == extra
        evaluation = json.loads((run / "eval_ladder.json").read_text())
        assert row["pass_at_n"] == {t: v["pass@k"]["8"] for t, v in evaluation["tasks"].items()}
        assert sorted(row["pass_at_n"]) == sorted(study.LADDER)
    assert yaml.safe_load((tmp_path / "runs" / "frontier" / "config.yaml").read_text())["data"]["builtin"] == \
        "add,sub,add21,add3:3"
    assert yaml.safe_load((tmp_path / "runs" / "kl_cov" / "config.yaml").read_text())["algo"]["policy_loss"] == "kl_cov"
    printed = capsys.readouterr().out
    table = study.format_variants(result)
    assert table in printed
    assert [line.split()[0] for line in table.splitlines()[3:]] == list(variants)
    base_line = table.splitlines()[2]
    assert base_line.split()[-6:] == [f"{result['base_pass_at_n'][t]:.3f}" for t in result["base_pass_at_n"]]

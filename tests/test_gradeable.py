"""Rows their verifier cannot grade are found before a run: by ``prorl data check`` and at ``prorl train`` start-up."""

from __future__ import annotations

import json

import pytest

from prorl.cli import main
from prorl.data.schema import Problem
from prorl.verifiers.gradeable import why_ungradeable

IF_META = {"instruction_ids": ["punctuation:no_comma"], "kwargs": [{}]}
LOGIC_META = {"task": "basic_arithmetic", "entry": {"question": "1+1", "answer": "2", "metadata": {}}}


@pytest.mark.parametrize("problem, why", [
    (Problem("m", "math", "?", answer="\\frac{1}{2}"), None),
    (Problem("m", "math", "?", answer="}{"), "field 'answer': math-verify cannot parse"),
    (Problem("s", "stem", "?", answer="C"), None),
    (Problem("s", "stem", "?", answer="9.81 m/s"), None),
    (Problem("s", "stem", "?", answer="B or C"), "field 'answer': expected one option letter"),
    (Problem("s", "stem", "?", answer="the neutron"), "field 'answer': expected one option letter"),
    (Problem("c", "code", "?", tests={"inputs": ["1"], "outputs": ["1"]}), None),
    (Problem("c", "code", "?", tests={"inputs": ["1"], "outputs": ["1"], "fn_name": "not a name"}),
     "field 'tests': fn_name 'not a name' is not a Python identifier"),
    (Problem("c", "code", "?", tests={"inputs": ["1", "2"], "outputs": ["1"]}), "field 'tests': tests have 2 inputs"),
    (Problem("l", "logic", "?", metadata=LOGIC_META), None),
    (Problem("l", "logic", "?", metadata={**LOGIC_META, "task": "no_such_task"}),
     "field 'metadata.task': 'no_such_task' is not a Reasoning Gym task"),
    (Problem("i", "instruction", "?", metadata=IF_META), None),
    (Problem("i", "instruction", "?", metadata={"instruction_ids": ["punctuation:no_such"], "kwargs": [{}]}),
     "no_such"),
    (Problem("i", "instruction", "?", metadata={"instruction_ids": ["length_constraints:number_words"],
                                                 "kwargs": [{"relation": "at least", "num_words": "many"}]}),
     "num_words"),
])
def test_why_ungradeable(problem, why):
    found = why_ungradeable(problem)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found, found


def rows_file(tmp_path, rows) -> str:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GOOD = [{"id": f"g{i}", "domain": "math", "prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(40)]
BAD = [
    {"id": "b1", "domain": "math", "prompt": "?", "answer": "}{"},
    {"id": "b2", "domain": "stem", "prompt": "?", "answer": "B or C"},
    {"id": "b3", "domain": "logic", "prompt": "?", "metadata": {**LOGIC_META, "task": "no_such_task"}},
]


def test_data_check_lists_every_ungradeable_row_with_its_line(tmp_path, capsys):
    path = rows_file(tmp_path, GOOD[:2] + BAD)
    assert main(["data", "check", path]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:3: field 'answer': math-verify cannot parse")
    assert out[1].startswith(f"{path}:4: field 'answer': expected one option letter")
    assert out[2].startswith(f"{path}:5: field 'metadata.task'")
    assert out[3] == f"{path}: 5 rows, 3 bad (good: math 2)"
    assert main(["data", "check", rows_file(tmp_path, GOOD)]) == 0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from prorl.tiny import build_char_tokenizer, build_tiny_model

    path = tmp_path_factory.mktemp("model")
    build_tiny_model(path, build_char_tokenizer(path), size="1m")
    return path


def train_args(tiny_model, tmp_path, data, *extra):
    return ["train", f"model.path={tiny_model}", f"run_dir={tmp_path / 'run'}", f"data.train_files=[{data}]",
            "rollout.n=2", "rollout.max_new_tokens=4", "train.steps=1", "train.prompts_per_step=2",
            "train.mini_batch_prompts=2", "reward.workers=0", "log.progress=false", "validation.every=0", *extra]


def test_train_stops_on_ungradeable_rows_before_writing_anything(tiny_model, tmp_path, capsys):
    data = rows_file(tmp_path, GOOD + BAD)
    assert main(train_args(tiny_model, tmp_path, data)) == 2
    err = capsys.readouterr().err
    assert "data.train_files: 3 of 43 problems cannot be graded" in err and f"{data}:41" in err
    assert "data.skip_bad_rows=true" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_can_leave_ungradeable_rows_out(tiny_model, tmp_path, capsys):
    data = rows_file(tmp_path, GOOD + BAD)
    assert main(train_args(tiny_model, tmp_path, data, "data.skip_bad_rows=true")) == 0
    assert "left out 3 of 43 problems that cannot be graded" in capsys.readouterr().err


def test_a_data_set_too_small_for_a_validation_split_says_so(tiny_model, tmp_path, capsys):
    data = rows_file(tmp_path, GOOD[:10])  # 5% of 10 problems is none
    assert main(train_args(tiny_model, tmp_path, data, "validation.every=1")) == 0
    assert "WARNING: no validation problems: data.val_fraction=0.05 of 10 training problems is none" in \
        capsys.readouterr().err


def test_data_check_reports_the_adapter_and_the_rows_it_left_out(tmp_path, capsys):
    def scp(i, boxed):
        solution = f"so the result is \\boxed{{{i}}}" if boxed else "no final answer given"
        return {"domain": "physics", "problem": f"problem {i}", "matched_solution": solution,
                "o1_solution": solution, "qwq_solution": solution,
                "is_o1_solution_same_with_matched_solution": boxed,
                "is_qwq_solution_same_with_matched_solution": boxed}

    path = tmp_path / "scp.jsonl"
    path.write_text("".join(json.dumps(scp(i, i != 2)) + "\n" for i in range(4)))
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any("skipped (no derivable answer)" in line for line in out), out
    assert out[-2] == f"{path}: 3 rows, 0 bad (good: stem 3)"
    assert out[-1] == "  adapter scp: 3 loaded, 1 skipped (no derivable answer: 1)"

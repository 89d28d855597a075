"""The ProRL data sources in their published row shapes: load (detected and named), skip with reasons, score.

Rows are built exactly as the sources publish them: SCP-116K (Parquet; no short-answer column),
the Llama-Nemotron post-training instruction-following RL subset (JSONL; ``input`` chat list and
``args``), and verl-format Parquet, Eurus-2-RL-Data being one case. Each loads through
``load_problems`` with auto-detection and with the adapter named, and a known right response scores
1 and a wrong one 0 through ``prorl.verifiers.score``. System messages reach the chat template.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prorl.data.adapters import ADAPTERS, detect_adapter_rows
from prorl.data.loaders import LoadReport, iter_problems, load_problems
from prorl.data.schema import Problem
from prorl.errors import DataError
from prorl.verifiers import score


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    """A Parquet file whose columns are the union of the rows' keys, as the sources ship them."""
    pq.write_table(pa.Table.from_struct_array(pa.array(rows)), path)
    return path


def load_both_ways(path: Path, name: str) -> tuple[list[Problem], LoadReport]:
    """Load ``path`` detected and with ``name``: the same problems; returns them and the detected load's report."""
    detected, named = LoadReport(), LoadReport()
    problems = load_problems(path, report=detected)
    assert detected.adapter == name
    assert load_problems(path, adapter=name, report=named) == problems
    assert (named.loaded, named.skipped) == (detected.loaded, detected.skipped)
    return problems, detected


# ---------------------------------------------------------------------- SCP-116K

SCP_ROWS = [
    # matched_solution has a boxed answer: it is the reference, the agreeing models' answers are recorded.
    {"domain": "Physics", "problem": "A ball falls freely for 2 s from rest (g = 10 m/s^2). How far does it fall, in m?",
     "matched_solution": "d = g t^2 / 2 = 10 * 4 / 2, so \\boxed{20}.",
     "o1_solution": "Using d = gt^2/2 we get \\boxed{20 \\text{ m}}.", "qwq_solution": "The distance is \\boxed{19.6}.",
     "is_o1_solution_same_with_matched_solution": True, "is_qwq_solution_same_with_matched_solution": False},
    # No box in matched_solution: the agreeing o1 solution's boxed answer (qwq disagrees and is ignored).
    {"domain": "Chemistry", "problem": "How many moles are in 36 g of water (M = 18 g/mol)?",
     "matched_solution": "n = 36 / 18 = 2 mol.",
     "o1_solution": "n = m/M = \\boxed{2}", "qwq_solution": "\\boxed{3}",
     "is_o1_solution_same_with_matched_solution": True, "is_qwq_solution_same_with_matched_solution": False},
    # Only qwq agrees.
    {"domain": "Biology", "problem": "How many chromosomes does a human somatic cell have?",
     "matched_solution": "Humans have 46 chromosomes in somatic cells.",
     "o1_solution": "\\boxed{23}", "qwq_solution": "So the count is \\boxed{46}.",
     "is_o1_solution_same_with_matched_solution": False, "is_qwq_solution_same_with_matched_solution": True},
    # Nothing derivable: no box in matched_solution, no model solution agrees.
    {"domain": "Physics", "problem": "Explain why the sky is blue.",
     "matched_solution": "Rayleigh scattering is stronger for short wavelengths.",
     "o1_solution": "\\boxed{Rayleigh scattering}", "qwq_solution": "Because of scattering.",
     "is_o1_solution_same_with_matched_solution": False, "is_qwq_solution_same_with_matched_solution": False},
]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_scp116k_rows_load_skip_and_score(tmp_path, fmt):
    path = tmp_path / f"scp.{fmt}"
    (write_parquet if fmt == "parquet" else write_jsonl)(path, SCP_ROWS)
    problems, report = load_both_ways(path, "scp")
    assert [(p.domain, p.answer, p.metadata["answer_from"], p.metadata["field"]) for p in problems] == [
        ("stem", "20", "matched_solution", "Physics"), ("stem", "2", "o1_solution", "Chemistry"),
        ("stem", "46", "qwq_solution", "Biology")]
    assert problems[0].metadata["agreeing_answers"] == {"o1_solution": "20 \\text{ m}"}
    assert problems[0].prompt == SCP_ROWS[0]["problem"] + "\nPut the final answer within \\boxed{}."
    assert problems[0].id == "scp-0" if fmt == "parquet" else "scp-1"
    assert all(p.system is None for p in problems)
    assert (report.loaded, report.bad, report.skipped) == (3, 0, Counter({"no derivable answer": 1}))
    assert report.summary() == f"{path}: 3 rows loaded, 1 skipped (no derivable answer: 1)"
    assert report.first_skipped["no derivable answer"].startswith(f"{path}:{3 if fmt == 'parquet' else 4}: skipped")
    for problem, right, wrong in zip(problems, ["20", "2", "46"], ["21", "3", "23"]):
        assert score(problem, f"Working... the answer is \\boxed{{{right}}}").score == 1.0
        assert score(problem, f"\\boxed{{{wrong}}}").score == 0.0


def test_load_problems_prints_the_summary_once(tmp_path, capsys):
    path = write_parquet(tmp_path / "scp.parquet", SCP_ROWS)
    load_problems(path)
    assert capsys.readouterr().err == f"{path}: 3 rows loaded, 1 skipped (no derivable answer: 1)\n"
    load_problems(path, report=LoadReport())  # the caller collects the report: nothing printed
    assert capsys.readouterr().err == ""


def test_a_file_of_skipped_rows_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "scp.jsonl", [SCP_ROWS[3]])
    with pytest.raises(DataError) as info:
        load_problems(path)
    assert str(info.value) == f"{path}: 0 rows loaded, 1 skipped (no derivable answer: 1): no usable rows"


# ---------------------------------------------------------------------- Llama-Nemotron instruction following

NEMOTRON_COMMON = {"category": "instruction following", "license": "odc-by", "reasoning": "on",
                   "used_in_training": "yes", "version": "v1", "system_prompt": "detailed thinking on"}
NEMOTRON_ROWS = [
    {"input": [{"role": "user", "content": "Describe rain without using any commas."}],
     "args": {"instruction_id_list": ["punctuation:no_comma"], "instruction_kwargs": [None]}, **NEMOTRON_COMMON},
    {"input": [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "Describe the sea in at least 5 words and no commas."}],
     "args": {"instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
              "instruction_kwargs": [None, {"relation": "at least", "num_words": 5}]},
     **{**NEMOTRON_COMMON, "reasoning": "off", "system_prompt": "detailed thinking off"}},
]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_nemotron_instruction_rows_load_and_score(tmp_path, fmt):
    path = tmp_path / f"if.{fmt}"
    (write_parquet if fmt == "parquet" else write_jsonl)(path, NEMOTRON_ROWS)
    problems, report = load_both_ways(path, "ifeval")
    first, second = problems
    assert (first.domain, first.prompt, first.system) == (
        "instruction", "Describe rain without using any commas.", "detailed thinking on")
    assert first.metadata == {"instruction_ids": ["punctuation:no_comma"], "kwargs": [{}], **{
        k: v for k, v in NEMOTRON_COMMON.items() if k != "system_prompt"}}
    # The prompt is the last user turn; None kwargs become {}; columnar None-filled keys are dropped.
    assert (second.prompt, second.system) == ("Describe the sea in at least 5 words and no commas.",
                                              "detailed thinking off")
    assert second.metadata["kwargs"] == [{}, {"relation": "at least", "num_words": 5}]
    assert (report.loaded, report.skipped) == (2, Counter())
    assert score(first, "Rain falls softly on the quiet town").score == 1.0
    assert score(first, "Rain falls, softly").score == 0.0
    assert score(second, "The sea rolls on and on under grey skies").score == 1.0
    assert score(second, "Sea, waves").score == 0.0


def test_nemotron_without_args_is_a_bad_row_not_none_ids(tmp_path):
    row = {**NEMOTRON_ROWS[0], "args": {"instruction_kwargs": [None]}}
    path = write_jsonl(tmp_path / "if.jsonl", [NEMOTRON_ROWS[0], row])
    items = list(iter_problems(path, adapter="ifeval"))
    assert isinstance(items[0], Problem)
    assert str(items[1]) == f"{path}:2: field 'args.instruction_id_list': expected a list of instruction ids, got None"


# ---------------------------------------------------------------------- verl / Eurus-2-RL-Data

EURUS_SYSTEM = ("When tackling complex reasoning tasks, you have access to the following actions. "
                "Use them as needed to progress through your thought process.")
EURUS_ROWS = [
    {"data_source": "numina_olympiads", "ability": "math",
     "prompt": [{"role": "system", "content": EURUS_SYSTEM},
                {"role": "user", "content": "Compute $2^{10}$.\n\nPresent the answer in LaTex format: \\boxed{Your answer}"}],
     "reward_model": {"style": "rule", "ground_truth": "1024"}, "extra_info": {"split": "train", "index": 0}},
    {"data_source": "codecontests", "ability": "code",
     "prompt": [{"role": "system", "content": EURUS_SYSTEM},
                {"role": "user", "content": "Read two integers and print their sum.\n\nWrite Python code to solve the "
                                            "problem. Present the code in \n```python\nYour code\n```\nat the end."}],
     "reward_model": {"style": "rule", "ground_truth": json.dumps({"inputs": ["1 2\n", "5 7\n"],
                                                                    "outputs": ["3\n", "12\n"]})},
     "extra_info": {"split": "train", "index": 1}},
    {"data_source": "apps", "ability": "code",
     "prompt": [{"role": "system", "content": EURUS_SYSTEM},
                {"role": "user", "content": "Write a function double(x) that returns 2 * x."}],
     "reward_model": {"style": "rule", "ground_truth": json.dumps({"fn_name": "double", "inputs": [[1], [4]],
                                                                    "outputs": [2, 8]})},
     "extra_info": {"split": "train", "index": 2}},
    {"data_source": "sharegpt", "ability": "chat", "prompt": [{"role": "user", "content": "Tell me a joke."}],
     "reward_model": {"style": "model", "ground_truth": "n/a"}, "extra_info": {"split": "train", "index": 3}},
]
SUM_RIGHT = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
SUM_WRONG = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"


@pytest.mark.parametrize("name", ["verl", "eurus"])
def test_eurus_parquet_loads_routes_and_scores(tmp_path, name):
    path = write_parquet(tmp_path / "train.parquet", EURUS_ROWS)
    detected = LoadReport()
    problems = load_problems(path, report=detected)
    assert detected.adapter == "verl"
    assert load_problems(path, adapter=name) == problems
    math_p, stdin_p, call_p = problems
    assert [(p.id, p.domain, p.system) for p in problems] == [
        ("numina_olympiads-0", "math", EURUS_SYSTEM), ("codecontests-1", "code", EURUS_SYSTEM),
        ("apps-2", "code", EURUS_SYSTEM)]
    assert math_p.prompt == EURUS_ROWS[0]["prompt"][1]["content"] and math_p.answer == "1024"
    assert math_p.metadata == {"data_source": "numina_olympiads"}
    assert stdin_p.tests == {"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]}
    assert call_p.tests["fn_name"] == "double"
    assert detected.skipped == Counter({"ability 'chat' not routed": 1})
    assert detected.summary() == f"{path}: 3 rows loaded, 1 skipped (ability 'chat' not routed: 1)"
    assert score(math_p, "So $2^{10} = \\boxed{1024}$.").score == 1.0
    assert score(math_p, "\\boxed{1000}").score == 0.0
    assert score(stdin_p, SUM_RIGHT).score == 1.0
    assert score(stdin_p, SUM_WRONG).score == 0.0
    assert score(call_p, "```python\ndef double(x):\n    return 2 * x\n```").score == 1.0
    assert score(call_p, "```python\ndef double(x):\n    return x - 1\n```").score == 0.0


RG_ENTRY = {"question": "Calculate 5 - 3 - 6.", "answer": "-4",
            "metadata": {"source_dataset": "basic_arithmetic", "source_index": 0, "expression": "5 - 3 - 6"}}


def verl_row(ability, ground_truth, content="Q?", index=0):
    return {"data_source": "mine", "ability": ability, "prompt": [{"role": "user", "content": content}],
            "reward_model": {"style": "rule", "ground_truth": ground_truth}, "extra_info": {"index": index}}


VERL_ROWS = [
    verl_row("Math", ["0.5", "\\frac{1}{2}"], "Half of one, as a number?"),
    verl_row("coding", {"inputs": ["4\n"], "outputs": ["8\n"]}, "Read n, print 2n."),
    verl_row("science", "80", "120 km in 1.5 h: speed in km/h?"),
    verl_row("instruction_following", json.dumps({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [None]}),
             "Describe snow without commas."),
    verl_row("ifeval", {"instruction_ids": ["punctuation:no_comma"], "kwargs": [{}]}, "Say hi without commas."),
    verl_row("logic", json.dumps(RG_ENTRY), "Calculate 5 - 3 - 6."),
    verl_row("puzzle", "42", "A riddle."),
    verl_row("chat", "n/a"),
    verl_row("chat", "n/a"),
    verl_row("reward_model", "n/a"),
]


def test_verl_abilities_are_routed_and_unrouted_ones_counted(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [{**row, "extra_info": {"index": i}} for i, row in enumerate(VERL_ROWS)])
    problems, report = load_both_ways(path, "verl")
    assert [p.domain for p in problems] == ["math", "code", "stem", "instruction", "instruction", "logic"]
    half, code, stem, snow, hi, logic = problems
    assert hi.metadata["kwargs"] == [{}] and score(hi, "hi there").score == 1.0
    assert (half.answer, half.metadata["answers"]) == ("0.5", ["0.5", "\\frac{1}{2}"])
    assert snow.metadata["instruction_ids"] == ["punctuation:no_comma"] and snow.metadata["kwargs"] == [{}]
    assert (logic.metadata["task"], logic.answer) == ("basic_arithmetic", "-4")
    assert report.skipped == Counter({"ability 'chat' not routed": 2, "ability 'reward_model' not routed": 1,
                                      "logic ground truth is not a Reasoning Gym entry": 1})
    assert report.summary() == (f"{path}: 6 rows loaded, 4 skipped (ability 'chat' not routed: 2, "
                                f"ability 'reward_model' not routed: 1, logic ground truth is not a Reasoning Gym "
                                f"entry: 1)")
    assert score(half, "\\boxed{0.5}").score == 1.0 and score(half, "\\boxed{2}").score == 0.0
    assert score(code, "```python\nprint(2 * int(input()))\n```").score == 1.0
    assert score(code, "```python\nprint(int(input()))\n```").score == 0.0
    assert score(stem, "\\boxed{80}").score == 1.0 and score(stem, "\\boxed{60}").score == 0.0
    assert score(snow, "Snow falls soft and white").score == 1.0 and score(snow, "Snow, white").score == 0.0
    assert score(logic, "<answer>-4</answer>").score == 1.0 and score(logic, "<answer>4</answer>").score == 0.0


# ---------------------------------------------------------------------- detection from several rows


def test_detection_is_not_decided_by_one_bad_first_row(tmp_path):
    bad_first = {**SCP_ROWS[0], "problem": ""}  # malformed: an empty problem
    path = write_parquet(tmp_path / "scp.parquet", [bad_first, *SCP_ROWS])
    report = LoadReport()
    items = list(iter_problems(path, report=report))
    assert report.adapter == "scp"
    assert str(items[0]) == f"{path}:0: field 'problem': expected a non-empty string, got ''"
    assert [p.answer for p in items[1:]] == ["20", "2", "46"]
    assert (report.loaded, report.bad, report.num_skipped) == (3, 1, 1)
    assert report.summary() == f"{path}: 3 rows loaded, 1 bad, 1 skipped (no derivable answer: 1)"


def test_detect_adapter_rows_votes():
    assert detect_adapter_rows(NEMOTRON_ROWS) == "ifeval"
    assert detect_adapter_rows(EURUS_ROWS) == "verl"
    assert detect_adapter_rows([{"text": "a"}, {"text": "b"}]) is None
    assert set(ADAPTERS) >= {"verl", "eurus", "scp", "ifeval"}


# ---------------------------------------------------------------------- system messages


def test_problem_system_round_trips_and_defaults_to_none(tmp_path):
    with_system = Problem("a", "math", "1+1=", answer="2", system="Be brief.")
    plain = Problem("b", "math", "2+2=", answer="4")
    assert "system" not in plain.to_dict()
    path = write_jsonl(tmp_path / "ours.jsonl", [with_system.to_dict(), plain.to_dict()])
    loaded = load_problems(path)
    assert [(p.id, p.system) for p in loaded] == [("a", "Be brief."), ("b", None)]


class TemplateTokenizer:
    """A character tokenizer with a visible chat template: ``<role>content`` per message, then ``<assistant>``."""

    chat_template = "visible"

    def apply_chat_template(self, messages, *, add_generation_prompt, tokenize, return_dict):
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")
        return [ord(c) for c in text]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def decode(ids):
    return "".join(map(chr, ids))


def test_encode_prompts_puts_the_system_message_first():
    from prorl.policy import encode_prompts

    tok = TemplateTokenizer()
    ids = encode_prompts(tok, ["Q1", "Q2"], chat_template=None, systems=["Be brief.", None])
    assert [decode(x) for x in ids] == ["<system>Be brief.<user>Q1<assistant>", "<user>Q2<assistant>"]
    assert encode_prompts(tok, ["Q1"], systems=[None]) == encode_prompts(tok, ["Q1"])


def test_encode_prompts_without_template_prepends_nothing_and_warns_once(monkeypatch):
    import prorl.policy as policy

    monkeypatch.setattr(policy, "_warned_no_template", False)
    tok = TemplateTokenizer()
    plain = policy.encode_prompts(tok, ["Q1"], chat_template=False)
    with pytest.warns(UserWarning, match="system messages are not used"):
        assert policy.encode_prompts(tok, ["Q1"], chat_template=False, systems=["S"]) == plain == [[ord("Q"), ord("1")]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call does not warn again
        policy.encode_prompts(tok, ["Q1"], chat_template=False, systems=["S"])


class _Stop(Exception):
    pass


class RecordingEngine:
    """Records the encoded prompts, then stops the call (only the encoding is under test)."""

    def generate(self, prompts, sampling, rng):
        self.prompts = prompts
        raise _Stop


def test_sample_and_score_passes_problem_and_run_system_messages():
    from prorl.groups import sample_and_score
    from prorl.rollout import RandomStream, Sampling

    problems = [Problem("a", "math", "Q1", answer="1", system="Own."), Problem("b", "math", "Q2", answer="2")]
    engine = RecordingEngine()
    for run_system, expected in [(None, ["<system>Own.<user>Q1<assistant>", "<user>Q2<assistant>"]),
                                 ("Run.", ["<system>Own.<user>Q1<assistant>", "<system>Run.<user>Q2<assistant>"])]:
        with pytest.raises(_Stop):
            sample_and_score(engine, TemplateTokenizer(), problems, Sampling(2, 1.0, 1.0, 4, None), RandomStream(0),
                             None, chat_template=None, system_prompt=run_system)
        assert [decode(x) for x in engine.prompts] == expected


def test_every_source_scores_through_prorl_score(tmp_path, capsys):
    # The documented path end to end: load the published rows, save problems + responses, `prorl score`.
    import argparse

    from prorl.score_cmd import add_score_arguments, main_score

    scp = load_problems(write_jsonl(tmp_path / "scp.jsonl", SCP_ROWS))[0]
    nemotron = load_problems(write_jsonl(tmp_path / "if.jsonl", NEMOTRON_ROWS))[0]
    eurus_math, eurus_stdin, _ = load_problems(write_parquet(tmp_path / "eurus.parquet", EURUS_ROWS))
    cases = [
        (scp, "the answer is \\boxed{20}", "\\boxed{21}"),
        (nemotron, "Rain falls softly on the quiet town", "Rain falls, softly"),
        (eurus_math, "So $2^{10} = \\boxed{1024}$.", "\\boxed{1000}"),
        (eurus_stdin, SUM_RIGHT, SUM_WRONG),
    ]
    rows = tmp_path / "responses.jsonl"
    write_jsonl(rows, [{"problem": p.to_dict(), "responses": [right, wrong]} for p, right, wrong in cases])
    parser = argparse.ArgumentParser()
    add_score_arguments(parser)
    assert main_score(parser.parse_args([str(rows), "--workers", "0"])) == 0
    scored = [json.loads(line) for line in (tmp_path / "responses.scored.jsonl").read_text().splitlines()]
    assert [(r["id"], r["score"]) for r in scored] == [
        (p.id, s) for p, _, _ in cases for s in (1.0, 0.0)]
    assert all(r["status"] == "ok" for r in scored)

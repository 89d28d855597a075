"""Loaders (every format), adapters (each on its documented example row), row validation, data check."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prorl.data import adapters
from prorl.data.adapters import ADAPTERS, detect_adapter
from prorl.data.check import add_check_arguments, check_file, main_check
from prorl.data.loaders import iter_problems, load_problems
from prorl.data.schema import Problem
from prorl.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data"

# One valid row per domain, in our schema. Kept type-compatible across rows so that pyarrow can
# infer one schema for the Parquet and Arrow cases.
ROWS = [
    {"id": "m1", "domain": "math", "prompt": "1+1=", "answer": "2"},
    {"id": "c1", "domain": "code", "prompt": "print a+b", "tests": {"inputs": ["1 2\n"], "outputs": ["3\n"]}},
    {"id": "s1", "domain": "stem", "prompt": "Pick B", "answer": "B", "metadata": {"choices": ["x", "y"]}},
    {"id": "l1", "domain": "logic", "prompt": "Spell 'ab' backward", "answer": "ba",
     "metadata": {"task": "spell_backward", "entry": {"question": "Spell 'ab' backward", "answer": "ba"}}},
    # Not kwargs [{}]: pyarrow cannot write a struct with no fields to Parquet.
    {"id": "i1", "domain": "instruction", "prompt": "At least 5 words please",
     "metadata": {"instruction_ids": ["length_constraints:number_words"],
                  "kwargs": [{"relation": "at least", "num_words": 5}]}},
]


def expected_problems(label: str, positions: list[int]) -> list[Problem]:
    return [Problem(**row, source=f"{label}:{pos}") for row, pos in zip(ROWS, positions)]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def table_of(rows: list[dict]) -> pa.Table:
    """A table whose columns are the union of the rows' keys (``Table.from_pylist`` uses the first row's)."""
    return pa.Table.from_struct_array(pa.array(rows))


def write_arrow_stream(path: Path, table: pa.Table) -> None:
    """An .arrow file the way datasets' save_to_disk writes it: Arrow's streaming IPC format."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=2)


def make_saved_dataset(folder: Path, rows: list[dict], shards: int = 2) -> Path:
    """A folder laid out like ``Dataset.save_to_disk``: state.json, dataset_info.json, data-*.arrow."""
    folder.mkdir(parents=True)
    table = table_of(rows)
    names, size = [], -(-len(rows) // shards)
    for i in range(shards):
        name = f"data-{i:05d}-of-{shards:05d}.arrow"
        write_arrow_stream(folder / name, table.slice(i * size, size))
        names.append(name)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names],
                                                   "_fingerprint": "0", "_split": None}))
    (folder / "dataset_info.json").write_text(json.dumps({"features": {}}))
    return folder


# ---------------------------------------------------------------------- formats


def test_jsonl_with_blank_lines_counts_lines(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([json.dumps(ROWS[0]), ""] + [json.dumps(r) for r in ROWS[1:]]) + "\n")
    assert load_problems(path) == expected_problems(str(path), [1, 3, 4, 5, 6])


def test_jsonl_gz(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in ROWS)
    assert load_problems(path) == expected_problems(str(path), [1, 2, 3, 4, 5])


def test_parquet_drops_struct_nulls(tmp_path):
    # Parquet gives every row every struct key (None where absent); the loader drops them again.
    path = tmp_path / "train.parquet"
    pq.write_table(table_of(ROWS), path)
    assert load_problems(path) == expected_problems(str(path), [0, 1, 2, 3, 4])


def test_parquet_with_json_string_columns(tmp_path):
    rows = [{**r, **{k: json.dumps(r[k]) for k in ("tests", "metadata") if k in r}} for r in ROWS]
    path = tmp_path / "flat.parquet"
    pq.write_table(table_of(rows), path)
    assert load_problems(path) == expected_problems(str(path), [0, 1, 2, 3, 4])


def test_saved_dataset_dir_with_shards(tmp_path):
    folder = make_saved_dataset(tmp_path / "ds", ROWS, shards=2)
    assert load_problems(folder) == expected_problems(str(folder), [0, 1, 2, 3, 4])


def test_dataset_dict_dir(tmp_path):
    root = tmp_path / "dd"
    make_saved_dataset(root / "train", ROWS[:3], shards=1)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    assert [p.id for p in load_problems(root)] == ["m1", "c1", "s1"]
    make_saved_dataset(root / "test", ROWS[3:], shards=1)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(DataError, match=r"splits train, test: name one split's folder, e.g. .*dd/train"):
        load_problems(root)
    assert [p.id for p in load_problems(root / "test")] == ["l1", "i1"]


def test_dataset_dir_written_by_datasets(tmp_path):
    import datasets  # a test dependency (pyproject's "test" extra); imported here, it is slow to import
    rows = [ROWS[0], {"id": "m2", "domain": "math", "prompt": "2+2=", "answer": "4"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    for folder in (tmp_path / "ds", tmp_path / "dd"):
        assert [(p.id, p.answer, p.source) for p in load_problems(folder)] == [
            ("m1", "2", f"{folder}:0"), ("m2", "4", f"{folder}:1")]


@pytest.mark.parametrize("name, message", [
    ("missing.jsonl", "missing.jsonl: no such file or directory"),
    ("notes.txt", "notes.txt: unknown file format, expected .jsonl, .jsonl.gz, .parquet, or a directory"),
    ("empty.jsonl", "empty.jsonl: no rows"),
    ("plain_dir", "plain_dir: a directory without state.json or dataset_dict.json"),
])
def test_file_level_errors(tmp_path, name, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(DataError) as info:
        load_problems(tmp_path / name)
    assert str(info.value).startswith(f"{tmp_path}/{message}")


def test_bad_adapter_and_domain_names(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", ROWS[:1])
    with pytest.raises(ConfigError, match="unknown adapter 'gsm'; expected one of prorl, deepscaler"):
        load_problems(path, adapter="gsm")
    with pytest.raises(ConfigError, match="unknown domain 'maths'"):
        load_problems(path, domain="maths")


def test_undetectable_format(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "hi", "label": 1}])
    with pytest.raises(DataError) as info:
        load_problems(path)
    assert str(info.value) == (f"{path}: cannot tell the row format from the first 1 row(s) (fields of the first: "
                               f"label, text); pass an adapter, one of {', '.join(ADAPTERS)}")


def test_domain_argument_fills_and_checks(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "1+1=", "answer": "2"},
                                              {"id": "b", "domain": "stem", "prompt": "?", "answer": "A"}])
    items = list(iter_problems(path, domain="math"))
    assert items[0] == Problem(id="t-1", domain="math", prompt="1+1=", answer="2", source=f"{path}:1")
    assert str(items[1]) == (f"{path}:2: field 'domain': expected 'math' (the domain this file was loaded as), "
                             f"got 'stem'")


def test_row_source_is_kept_as_origin(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{**ROWS[0], "source": "deepscaler"}])
    (problem,) = load_problems(path)
    assert (problem.source, problem.metadata) == (f"{path}:1", {"origin": "deepscaler"})


# ---------------------------------------------------------------------- malformed rows

CODE = {"id": "c", "domain": "code", "prompt": "p"}
LOGIC = {"id": "l", "domain": "logic", "prompt": "p"}
INSTR = {"id": "i", "domain": "instruction", "prompt": "p"}

# (row as written on line 1, exact message after "<path>:1: ")
MALFORMED = [
    ('{"id": "a", "domain": "maths", "prompt": "p", "answer": "1"}',
     "field 'domain': expected one of math, code, stem, logic, instruction, got 'maths'"),
    ({"id": "a", "prompt": "p", "answer": "1"},
     "field 'domain': expected one of math, code, stem, logic, instruction, got None"),
    ({"id": "a", "domain": "math", "prompt": "", "answer": "1"}, "field 'prompt': expected a non-empty string, got ''"),
    ({"id": ["a"], "domain": "math", "prompt": "p", "answer": "1"},
     "field 'id': expected a non-empty string, got ['a']"),
    ({"id": "a", "domain": "math", "prompt": "p"},
     "field 'answer': required for math problems, expected a non-empty string, got None"),
    ({"id": "a", "domain": "stem", "prompt": "p", "answer": " "},
     "field 'answer': required for stem problems, expected a non-empty string, got ' '"),
    ({"id": "a", "domain": "math", "prompt": "p", "answer": "1", "metadata": [1]},
     "field 'metadata': expected an object, got [1]"),
    (CODE, "field 'tests': required for code problems, expected {'inputs': [...], 'outputs': [...]}, got None"),
    ({**CODE, "tests": {"inputs": ["1"]}}, "field 'tests.outputs': expected a list, got None"),
    ({**CODE, "tests": {"inputs": "1", "outputs": ["1"]}}, "field 'tests.inputs': expected a list, got '1'"),
    ({**CODE, "tests": {"inputs": ["1", "2"], "outputs": ["1"]}},
     "field 'tests': expected as many outputs as inputs, got 2 inputs and 1 outputs"),
    ({**CODE, "tests": {"inputs": [], "outputs": []}}, "field 'tests': expected at least one test case, got none"),
    ({**CODE, "tests": {"inputs": [1], "outputs": [1], "fn_name": 3}}, "field 'tests.fn_name': expected a string, got 3"),
    ({**CODE, "tests": "{not json"},
     "field 'tests': expected an object or a JSON string of one, got invalid JSON (Expecting property name "
     "enclosed in double quotes)"),
    (LOGIC, "field 'metadata.task': required for logic problems, expected a task name, got None"),
    ({**LOGIC, "metadata": {"task": "leg_counting"}},
     "field 'metadata.entry': required for logic problems, expected the Reasoning Gym entry object, got None"),
    ({**INSTR, "metadata": {"kwargs": [{}]}},
     "field 'metadata.instruction_ids': expected a non-empty list of strings, got None"),
    ({**INSTR, "metadata": {"instruction_ids": ["a:b"], "kwargs": {}}},
     "field 'metadata.kwargs': expected a list of objects, got {}"),
    ({**INSTR, "metadata": {"instruction_ids": ["a:b", "c:d"], "kwargs": [{}]}},
     "field 'metadata.kwargs': expected one object per instruction (2), got 1"),
    ('{"id": "a", "domain": "math",', "invalid JSON (Expecting property name enclosed in double quotes at column 30)"),
    ("[1, 2]", "expected a JSON object, got list"),
]


@pytest.mark.parametrize("row, message", MALFORMED, ids=[m[:40] for _, m in MALFORMED])
def test_malformed_row_message(tmp_path, row, message):
    path = write_jsonl(tmp_path / "train.jsonl", [row])
    with pytest.raises(DataError) as info:
        load_problems(path, adapter="prorl")
    assert str(info.value) == f"{path}:1: {message}"


def test_invalid_utf8_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b"\n\xff\xfe\n")
    assert [str(e) for e in iter_problems(path) if isinstance(e, DataError)] == [f"{path}:2: not valid UTF-8 (byte 0)"]


def test_duplicate_id_names_first_position(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [ROWS[0], ROWS[1], ROWS[0]])
    with pytest.raises(DataError) as info:
        load_problems(path)
    assert str(info.value) == f"{path}:3: field 'id': expected ids unique within the file, got 'm1' again (first at line 1)"
    parquet = tmp_path / "t.parquet"
    pq.write_table(table_of([ROWS[0], ROWS[0]]), parquet)
    with pytest.raises(DataError, match=r"t.parquet:1: .* got 'm1' again \(first at row 0\)$"):
        load_problems(parquet)


def test_parquet_bad_row_names_row_index(tmp_path):
    path = tmp_path / "t.parquet"
    rows = [ROWS[0], {"id": "m2", "domain": "maths", "prompt": "p", "answer": "1"}]
    pq.write_table(table_of(rows), path)
    with pytest.raises(DataError) as info:
        load_problems(path)
    assert str(info.value) == (f"{path}:1: field 'domain': expected one of math, code, stem, logic, instruction, "
                               f"got 'maths'")


# ---------------------------------------------------------------------- data check


def test_check_file_lists_every_bad_row(tmp_path):
    rows = [ROWS[0], MALFORMED[0][0], ROWS[1], MALFORMED[4][0], "{oops", ROWS[0]]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    assert check_file(path) == [
        f"{path}:2: {MALFORMED[0][1]}",
        f"{path}:4: {MALFORMED[4][1]}",
        f"{path}:5: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{path}:6: field 'id': expected ids unique within the file, got 'm1' again (first at line 1)",
    ]


def test_main_check_output_and_exit_codes(tmp_path, capsys):
    import argparse

    good = write_jsonl(tmp_path / "good.jsonl", ROWS)
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], MALFORMED[0][0]])
    parser = argparse.ArgumentParser()
    add_check_arguments(parser)
    assert main_check(parser.parse_args([str(good)])) == 0
    assert capsys.readouterr().out == (f"{good}: 5 rows, 0 bad (good: math 1, code 1, stem 1, logic 1, "
                                       f"instruction 1)\n")
    assert main_check(parser.parse_args([str(good), str(bad)])) == 1
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"{bad}:2: {MALFORMED[0][1]}", f"{bad}: 2 rows, 1 bad (good: math 1)"]
    assert main_check(parser.parse_args([str(tmp_path / "none.jsonl")])) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path}/none.jsonl: no such file or directory", f"{tmp_path}/none.jsonl: 0 rows, 1 bad"]


# ---------------------------------------------------------------------- adapters

GT = json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]})

# (adapter, example row as in its docstring and docs/data.md, expected Problem fields)
ADAPTER_CASES = [
    ("deepscaler", {"problem": "What is $1+2$?", "answer": "3", "solution": "$1+2=3$, so $\\boxed{3}$."},
     {"id": "f-1", "domain": "math", "answer": "3",
      "prompt": "What is $1+2$?\nLet's think step by step and output the final answer within \\boxed{}."}),
    ("verl", {"data_source": "codecontests", "ability": "code",
              "prompt": [{"role": "system", "content": "Think first."},
                         {"role": "user", "content": "Read a and b, print a+b."}],
              "reward_model": {"style": "rule", "ground_truth": GT}, "extra_info": {"split": "train", "index": 7}},
     {"id": "codecontests-7", "domain": "code", "prompt": "Read a and b, print a+b.",
      "tests": {"inputs": ["1 2\n"], "outputs": ["3\n"]}, "system": "Think first.",
      "metadata": {"data_source": "codecontests"}}),
    ("eurus", {"data_source": "numina_olympiads", "ability": "math", "prompt": [{"role": "user", "content": "2^10?"}],
               "reward_model": {"style": "rule", "ground_truth": "1024"}},
     {"id": "f-1", "domain": "math", "prompt": "2^10?", "answer": "1024", "system": None,
      "metadata": {"data_source": "numina_olympiads"}}),
    ("scp", {"domain": "Physics", "problem": "Which particle has no charge?",
             "options": ["electron", "neutron", "proton"], "answer": "neutron"},
     {"id": "f-1", "domain": "stem", "answer": "B",
      "prompt": "Which particle has no charge?\nA. electron\nB. neutron\nC. proton\n"
                "Answer with the letter of the correct option within \\boxed{}.",
      "metadata": {"field": "Physics", "choices": ["electron", "neutron", "proton"]}}),
    ("scp", {"domain": "Chemistry", "problem": "Pick one", "choices": {"b": "y", "a": "x"}, "extracted_answer": "b"},
     {"answer": "B", "metadata": {"field": "Chemistry", "choices": ["x", "y"]}}),
    ("scp", {"domain": "Physics", "problem": "g on Earth in m/s^2?", "matched_solution": "about \\boxed{9.8}"},
     {"domain": "stem", "answer": "9.8", "prompt": "g on Earth in m/s^2?\nPut the final answer within \\boxed{}."}),
    ("reasoning_gym", {"question": "Calculate 5 - 3 - 6.", "answer": "-4",
                       "metadata": {"source_dataset": "basic_arithmetic", "source_index": 0, "expression": "5 - 3 - 6"}},
     {"id": "basic_arithmetic-0", "domain": "logic", "answer": "-4",
      "prompt": "Calculate 5 - 3 - 6.\nGive your final answer inside <answer></answer> tags."}),
    ("ifeval", {"key": 1001, "prompt": "Describe rain without commas.",
                "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
                "kwargs": [{}, {"relation": "at least", "num_words": 20, "num_paragraphs": None}]},
     {"id": "1001", "domain": "instruction", "prompt": "Describe rain without commas.",
      "metadata": {"instruction_ids": ["punctuation:no_comma", "length_constraints:number_words"],
                   "kwargs": [{}, {"relation": "at least", "num_words": 20}]}}),
    ("ifeval", {"input": [{"role": "user", "content": "Say hi in lowercase."}],
                "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
     {"id": "f-1", "prompt": "Say hi in lowercase."}),
    ("ifeval", {"id": "n7", "prompt": "Say hi.", "instruction_ids": ["punctuation:no_comma"], "kwargs": "[{}]"},
     {"id": "n7", "metadata": {"instruction_ids": ["punctuation:no_comma"], "kwargs": [{}]}}),
]


@pytest.mark.parametrize("name, row, expected", ADAPTER_CASES, ids=[c[0] for c in ADAPTER_CASES])
def test_adapter_example_rows(name, row, expected):
    problem = adapters.validate_problem(ADAPTERS[name](row, default_id="f-1"))
    assert {k: getattr(problem, k) for k in expected} == expected
    if name == "reasoning_gym":
        assert problem.metadata == {"task": "basic_arithmetic", "entry": row}
    assert detect_adapter(row) == ("verl" if name == "eurus" else name)  # eurus is another name for verl


ADAPTER_ERRORS = [
    ("deepscaler", {"problem": "p"}, "field 'answer': expected a non-empty string, got None"),
    ("eurus", {"prompt": [{"role": "user", "content": "x"}], "ability": "code", "reward_model": {}},
     "field 'reward_model': expected {'ground_truth': ...}, got {}"),
    ("eurus", {"prompt": [{"role": "user"}], "ability": "math", "reward_model": {"ground_truth": "1"}},
     "field 'prompt[0]': expected {'role': ..., 'content': str}, got {'role': 'user'}"),
    ("eurus", {"prompt": [{"role": "user", "content": "x"}], "ability": "code", "reward_model": {"ground_truth": "[1]"}},
     "field 'reward_model.ground_truth': expected a JSON object of inputs/outputs, got [1]"),
    ("scp", {"problem": "p", "options": ["a", "b"], "answer": "E"},
     "field 'answer': expected a letter A-B or an option's text, got 'E'"),
    ("scp", {"problem": "p", "options": ["only one"], "answer": "A"},
     "field 'options': expected at least two option strings, got ['only one']"),
    ("reasoning_gym", {"question": "q", "answer": "a", "metadata": {}},
     "field 'metadata.source_dataset': expected a task name, got {}"),
    ("ifeval", {"prompt": "p", "instruction_id_list": "punctuation:no_comma", "kwargs": [{}]},
     "field 'metadata.instruction_ids': expected a non-empty list of strings, got 'punctuation:no_comma'"),
]


@pytest.mark.parametrize("name, row, message", ADAPTER_ERRORS, ids=[c[0] for c in ADAPTER_ERRORS])
def test_adapter_errors(tmp_path, name, row, message):
    path = write_jsonl(tmp_path / "src.jsonl", [row])
    with pytest.raises(DataError) as info:
        load_problems(path, adapter=name)
    assert str(info.value) == f"{path}:1: {message}"


def test_source_examples_are_detected_and_load():
    expected = {"deepscaler": ["deepscaler-1"], "eurus": ["codecontests-7", "numina_olympiads-8"],
                "scp": ["scp-1", "scp-2"], "reasoning_gym": ["basic_arithmetic-0"], "ifeval": ["1001"]}
    for name, ids in expected.items():
        assert [p.id for p in load_problems(EXAMPLES / "sources" / f"{name}.jsonl")] == ids, name


@pytest.mark.parametrize("domain", ["math", "code", "stem", "logic", "instruction"])
def test_domain_examples_are_clean(domain):
    path = EXAMPLES / f"{domain}.jsonl"
    assert check_file(path) == []
    assert {p.domain for p in load_problems(path)} == {domain}


def test_data_layer_never_imports_torch():
    code = ("import sys, prorl.data, prorl.data.loaders, prorl.data.adapters, prorl.data.mixture, "
            "prorl.data.check, prorl.data.builtin\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_datasets_by_name_through_load_dataset(tmp_path, monkeypatch):
    """hf:NAME[:SPLIT] goes through datasets.load_dataset (here a local folder of data files, offline), then the
    same adapters; a dataset it cannot reach is one clear error."""
    import datasets
    import huggingface_hub.constants

    from prorl.data.loaders import load_problems

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "mydata"
    folder.mkdir()
    for split, n in (("train", 3), ("test", 2)):
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"id": f"{split}{i}", "domain": "math", "prompt": f"{i}+1=", "answer": str(i + 1)}) + "\n"
            for i in range(n)))
    problems = load_problems(f"hf:{folder}:train")
    assert [p.id for p in problems] == ["train0", "train1", "train2"] and problems[0].answer == "1"
    assert problems[0].source == f"hf:{folder}:train:0"
    with pytest.raises(DataError, match=r"the dataset has splits (train, test|test, train); name one"):
        load_problems(f"hf:{folder}")
    with pytest.raises(DataError, match=r"hf:nobody/no-such-data:train: could not load it with datasets.load_dataset "
                                        r"\(.*\); without network only datasets already in the local cache load"):
        load_problems("hf:nobody/no-such-data:train")
    with pytest.raises(DataError, match="expected hf:NAME, hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT"):
        load_problems("hf:a:b:c:d")


def test_a_builtin_kind_of_weight_w_is_drawn_w_times_as_often_and_validated_once():
    from collections import Counter

    from prorl.config import resolve_config
    from prorl.data.builtin import is_heldout
    from prorl.data.run_data import load_data

    train, val = load_data(resolve_config({}, ["data.builtin=add,add3:3", "data.val_size=20"]))
    counts = Counter(p.metadata["task"] for p in train)
    assert counts == {"add": 5000, "add3": 15000}
    copies = [[p.prompt for p in train[5000 + 5000 * c:10000 + 5000 * c]] for c in range(3)]
    assert copies[0] != copies[1] != copies[2]  # three draws, not one list thrice
    assert Counter(p.metadata["task"] for p in val) == {"add": 10, "add3": 10}
    assert not any(is_heldout(p.prompt) for p in train) and all(is_heldout(p.prompt) for p in val)
    plain, plain_val = load_data(resolve_config({}, ["data.builtin=add,add3", "data.val_size=20"]))
    assert [p.prompt for p in plain] == [p.prompt for p in train[:5000]] + [p.prompt for p in train[5000:10000]]
    assert [p.prompt for p in plain_val] == [p.prompt for p in val]

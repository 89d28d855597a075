"""``prorl score``: input parsing, output rows, per-domain summary; end to end with the real verifier pool."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from prorl.errors import DataError
from prorl.score_cmd import add_score_arguments, main_score, read_scoring_input, summarize
from prorl.verifiers.verdict import Verdict

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "responses.jsonl"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_score_arguments(parser)
    return parser.parse_args(argv)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class FakePool:
    """Stands in for ScoringPool: score 1 when the response contains the answer, with fixed statuses."""

    instances: list = []

    def __init__(self, num_workers=2, *, timeout_s=30.0, per_domain_timeout_s=None):
        self.args = (num_workers, timeout_s)
        self.batches: list[int] = []
        self.closed = False
        FakePool.instances.append(self)

    def score_batch(self, problems, responses):
        self.batches.append(len(problems))
        out = []
        for p, r in zip(problems, responses):
            if r == "crash":
                out.append(Verdict(0.0, "verifier raised", "error"))
            elif r == "slow":
                out.append(Verdict(0.0, "timeout after 1.0s", "timeout"))
            else:
                out.append(Verdict(1.0 if p.answer in r else 0.0, "fake"))
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True


@pytest.fixture
def fake_pool(monkeypatch):
    module = types.ModuleType("prorl.verifiers.pool")
    module.ScoringPool = FakePool
    monkeypatch.setitem(sys.modules, "prorl.verifiers.pool", module)
    FakePool.instances = []
    return FakePool


def test_rows_summary_and_options_with_a_stand_in_pool(tmp_path, fake_pool, capsys):
    src = tmp_path / "eval.jsonl"
    rows = [
        {"problem": {"id": "a", "domain": "math", "prompt": "1+1=", "answer": "2"}, "responses": ["2", "3", "crash"]},
        {"domain": "stem", "prompt": "B?", "answer": "B", "response": "slow"},
        {"id": "c", "domain": "stem", "prompt": "B?", "answer": "B", "response": "B"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main_score(parse([str(src), "--workers", "3", "--timeout", "1.5"])) == 0
    (pool,) = fake_pool.instances
    assert pool.args == (3, 1.5) and pool.batches == [5] and pool.closed
    assert read_jsonl(tmp_path / "eval.scored.jsonl") == [
        {"id": "a", "domain": "math", "line": 1, "sample": 0, "score": 1.0, "reason": "fake", "status": "ok"},
        {"id": "a", "domain": "math", "line": 1, "sample": 1, "score": 0.0, "reason": "fake", "status": "ok"},
        {"id": "a", "domain": "math", "line": 1, "sample": 2, "score": 0.0, "reason": "verifier raised",
         "status": "error"},
        {"id": "eval-2", "domain": "stem", "line": 2, "sample": 0, "score": 0.0, "reason": "timeout after 1.0s",
         "status": "timeout"},
        {"id": "c", "domain": "stem", "line": 3, "sample": 0, "score": 1.0, "reason": "fake", "status": "ok"},
    ]
    assert capsys.readouterr().out.splitlines() == [
        "domain       count    mean  accuracy  errors  timeouts",
        "math             3  0.3333    0.3333       1         0",
        "stem             2  0.5000    0.5000       0         1",
        "all              5  0.4000    0.4000       1         1",
        f"wrote 5 scored responses to {tmp_path / 'eval.scored.jsonl'}",
    ]


def test_out_option_and_chunking(tmp_path, fake_pool, monkeypatch):
    import prorl.score_cmd

    monkeypatch.setattr(prorl.score_cmd, "CHUNK", 2)
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps({"domain": "math", "prompt": "?", "answer": "1", "response": str(i)}) + "\n"
                           for i in range(5)))
    out = tmp_path / "elsewhere.jsonl"
    assert main_score(parse([str(src), "--out", str(out)])) == 0
    assert fake_pool.instances[0].batches == [2, 2, 1]
    assert [r["score"] for r in read_jsonl(out)] == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_problems_saved_with_a_system_message_are_read(tmp_path, fake_pool):
    """``Problem.to_dict()`` writes ``system`` when a problem has one; prorl score reads such rows."""
    from prorl.data.schema import Problem

    problem = Problem("m1", "math", "1+1=", answer="2", system="detailed thinking on")
    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps({"problem": problem.to_dict(), "responses": ["2", "3"]}) + "\n")
    assert main_score(parse([str(src)])) == 0
    assert [(r["id"], r["score"]) for r in read_jsonl(tmp_path / "r.scored.jsonl")] == [("m1", 1.0), ("m1", 0.0)]


def test_bad_rows_are_all_listed_before_scoring(tmp_path):
    src = tmp_path / "r.jsonl"
    src.write_text("\n".join([
        json.dumps({"domain": "math", "prompt": "?", "answer": "1"}),
        json.dumps({"domain": "math", "prompt": "?", "answer": "1", "responses": "one"}),
        json.dumps({"problem": "x", "response": "1"}),
        json.dumps({"domain": "code", "prompt": "?", "response": "1"}),
        "{bad",
        json.dumps({"domain": "math", "prompt": "?", "answer": "1", "response": "ok"}),
    ]) + "\n")
    with pytest.raises(DataError) as info:
        read_scoring_input(src)
    assert str(info.value).splitlines() == [
        "5 bad row(s), nothing scored:",
        f"{src}:1: field 'response': expected a string (or 'responses': a list of strings), got nothing",
        f"{src}:2: field 'responses': expected a list of strings",
        f"{src}:3: field 'problem': expected an object, got str",
        f"{src}:4: field 'tests': required for code problems, expected {{'inputs': [...], 'outputs': [...]}}, got None",
        f"{src}:5: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
    ]


def test_summary_of_nothing_and_unknown_domains():
    assert summarize([]) == {"all": {"count": 0, "mean": 0.0, "accuracy": 0.0, "errors": 0, "timeouts": 0}}
    # Domains come out in DOMAINS order whatever the input order; a fractional score is not accurate.
    s = summarize([{"domain": "logic", "score": 0.5, "status": "ok"}, {"domain": "math", "score": 1.0, "status": "ok"}])
    assert list(s) == ["math", "logic", "all"] and s["logic"]["accuracy"] == 0.0 and s["logic"]["mean"] == 0.5


@pytest.mark.skipif(importlib.util.find_spec("prorl.verifiers.pool") is None,
                    reason="prorl.verifiers.pool is not written yet")
def test_end_to_end_with_real_verifiers(tmp_path, capsys):
    src = tmp_path / "responses.jsonl"
    src.write_text(EXAMPLE.read_text())
    assert main_score(parse([str(src), "--workers", "1", "--timeout", "60"])) == 0
    scored = read_jsonl(tmp_path / "responses.scored.jsonl")
    # examples/data/responses.jsonl: math-1 answered 55 (right) and 50 (wrong); the rest are right.
    assert [(r["id"], r["sample"], r["score"], r["status"]) for r in scored] == [
        ("math-1", 0, 1.0, "ok"), ("math-1", 1, 0.0, "ok"), ("math-2", 0, 1.0, "ok"),
        ("stem-2", 0, 1.0, "ok"), ("stem-1", 0, 1.0, "ok")]
    table = capsys.readouterr().out.splitlines()
    assert table[1:4] == [
        "math             3  0.6667    0.6667       0         0",
        "stem             2  1.0000    1.0000       0         0",
        "all              5  0.8000    0.8000       0         0",
    ]


# A right response for each example problem of examples/data/{code,logic,instruction}.jsonl: checks
# that what the loaders and adapters write is what the verifiers read.
RIGHT = {
    "code-1": "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
    "code-2": "```python\ndef double(x):\n    return 2 * x\n```",
    "basic_arithmetic-0": "<answer>-129</answer>",
    "letter_counting-0": "<answer>4</answer>",
    "spell_backward-0": "<answer>tuobnrut</answer>",
    "if-1": "rain falls softly on the quiet street and the gray sky hangs low over the town while people hurry "
            "home under dark umbrellas and the gutters fill with water that runs toward the river beyond the old "
            "stone bridge near the market",  # 42 words (at least 40), no commas
    "if-2": "waves roll in slow\nsalt wind hums beneath the moon\nthe tide keeps its time",
}


@pytest.mark.skipif(importlib.util.find_spec("prorl.verifiers.pool") is None,
                    reason="prorl.verifiers.pool is not written yet")
def test_example_problems_of_every_domain_score_with_real_verifiers(tmp_path, capsys):
    from prorl.data.loaders import load_problems

    examples = EXAMPLE.parent
    problems = [p for name in ("code", "logic", "instruction") for p in load_problems(examples / f"{name}.jsonl")]
    src = tmp_path / "all.jsonl"
    src.write_text("".join(json.dumps({"problem": p.to_dict(), "response": RIGHT[p.id]}) + "\n" for p in problems))
    assert main_score(parse([str(src), "--workers", "2", "--timeout", "60"])) == 0
    scored = read_jsonl(tmp_path / "all.scored.jsonl")
    assert [(r["id"], r["score"], r["status"]) for r in scored] == [(p.id, 1.0, "ok") for p in problems], scored

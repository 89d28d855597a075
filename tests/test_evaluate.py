"""evaluate / prorl eval on a tiny local model with a scripted verifier pool.

The pool double scores by a rule on the decoded text and records what it saw, so every count in
the results can be recomputed independently from the responses themselves.
"""

import argparse
import json
import math

import pytest

from prorl.data.schema import Problem
from prorl.errors import UserError
from prorl.eval import command as cmd
from prorl.eval import evaluate as ev
from prorl.eval.passk import pass_at_k
from prorl.verifiers.verdict import Verdict


def rule_score(problem: Problem, response: str) -> float:
    """math: 1 if the answer's last character occurs in the response; logic: fraction of answer characters found."""
    if problem.domain == "math":
        return 1.0 if problem.answer[-1] in response else 0.0
    found = sum(1 for ch in problem.answer if ch in response)
    return found / len(problem.answer)


class ScriptedPool:
    """Scores with :func:`rule_score`; raises KeyboardInterrupt on call number ``fail_on`` (1-based)."""

    def __init__(self, fail_on: int | None = None):
        self.fail_on = fail_on
        self.calls = 0
        self.seen: list[tuple[str, str, float]] = []

    def score_batch(self, problems, responses):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        verdicts = []
        for p, r in zip(problems, responses):
            s = rule_score(p, r)
            self.seen.append((p.id, r, s))
            verdicts.append(Verdict(s, "scripted"))
        return verdicts

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


PROBLEMS = [
    Problem("m0", "math", "1+1=", answer="2"),
    Problem("m1", "math", "2+3=", answer="5"),
    Problem("m2", "math", "9-9=", answer="0"),
    Problem("l0", "logic", "spell ab", answer="ab", metadata={"task": "spell", "entry": {"metadata": {}}}),
    Problem("l1", "logic", "spell xyz", answer="xyz", metadata={"task": "spell", "entry": {"metadata": {}}}),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from prorl.policy import load_policy
    from prorl.tiny import build_char_tokenizer, build_tiny_model

    path = tmp_path_factory.mktemp("tiny_model")
    tok = build_char_tokenizer(path)
    build_tiny_model(path, tok, size="1m", seed=0)
    model, tokenizer = load_policy(path, dtype="float32")
    return path, model, tokenizer


def run_eval(tiny, pool, **kw):
    from prorl.rollout import HFEngine, Sampling

    _, model, tokenizer = tiny
    sampling = Sampling(n=kw.pop("n", 8), temperature=1.0, top_p=1.0, max_new_tokens=6, batch_size=16)
    return ev.evaluate(HFEngine(model, tokenizer), tokenizer, PROBLEMS, sampling, **(dict(pool=pool, seed=3) | kw))


def test_counts_agree_with_the_scored_responses(tiny):
    pool = ScriptedPool()
    out = run_eval(tiny, pool)
    json.dumps(out)  # JSON-serialisable, no NaN objects or tensors
    assert len(pool.seen) == len(PROBLEMS) * 8
    by_id = {}
    for pid, _, s in pool.seen:
        by_id.setdefault(pid, []).append(s)
    for rec, problem in zip(out["problems"], PROBLEMS):
        scores = by_id[problem.id]
        assert (rec["id"], rec["domain"], rec["n"]) == (problem.id, problem.domain, 8)
        assert rec["task"] == problem.metadata.get("task", problem.domain)
        assert rec["correct"] == sum(s >= 1.0 for s in scores)
        assert rec["mean_score"] == pytest.approx(sum(scores) / 8, rel=1e-12)
        assert 0 <= rec["truncated"] <= 8 and rec["errors"] == 0
    # Per-task and per-domain numbers are means over the problems of the per-problem estimator.
    assert set(out["tasks"]) == {"math", "spell"} and set(out["domains"]) == {"math", "logic"}
    for name, group, key in [("math", "tasks", "task"), ("spell", "tasks", "task"), ("logic", "domains", "domain")]:
        recs = [r for r in out["problems"] if r[key] == name]
        summary = out[group][name]
        assert summary["count"] == len(recs)
        assert list(summary["pass@k"]) == ["1", "2", "4", "8"]
        for k in (1, 2, 4, 8):
            expected = sum(pass_at_k(8, r["correct"], k) for r in recs) / len(recs)
            assert summary["pass@k"][str(k)] == pytest.approx(expected, rel=1e-12)
        assert summary["pass@1"] == pytest.approx(sum(r["correct"] / 8 for r in recs) / len(recs), rel=1e-12)
        assert summary["mean@n"] == pytest.approx(sum(r["mean_score"] for r in recs) / len(recs), rel=1e-12)
    assert out["tasks"]["spell"]["domain"] == "logic" and out["tasks"]["spell"]["continuous"] is True
    assert out["domains"]["math"]["continuous"] is False
    assert out["settings"]["n"] == 8 and out["settings"]["ks"] == [1, 2, 4, 8]


def test_seeded_and_independent_of_other_chunks(tiny):
    a = run_eval(tiny, ScriptedPool())
    b = run_eval(tiny, ScriptedPool())
    assert a == b
    # The last chunk's samples do not depend on the chunks before it (what makes resuming exact).
    _, model, tokenizer = tiny
    pool = ScriptedPool()
    from prorl.rollout import HFEngine, Sampling

    sampling = Sampling(n=8, temperature=1.0, top_p=1.0, max_new_tokens=6, batch_size=16)
    chunks = dict(ev.iter_chunks(HFEngine(model, tokenizer), tokenizer, PROBLEMS, sampling, pool=pool, seed=3,
                                 chat_template=None, skip={0, 1}))
    assert list(chunks) == [2]
    assert chunks[2] == a["problems"][4:]


@pytest.mark.parametrize("ks,error", [([16], "outside 1..n=8"), ([0, 1], "outside 1..n=8")])
def test_bad_ks_raise(tiny, ks, error):
    with pytest.raises(ValueError, match=error):
        run_eval(tiny, ScriptedPool(), ks=ks)


# ---------------------------------------------------------------- prorl eval, resume


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in PROBLEMS))
    return path


def cli_args(tiny, data_file, out, *extra):
    parser = argparse.ArgumentParser()
    cmd.add_eval_arguments(parser)
    return parser.parse_args([
        "--model", str(tiny[0]), "--data", str(data_file), "--n", "4", "--max-tokens", "5", "--batch-size", "8",
        "--dtype", "float32", "--device", "cpu", "--seed", "1", "--no-progress", "--out", str(out), *extra,
    ])


def test_resume_after_interruption_writes_the_same_file(tiny, data_file, tmp_path, monkeypatch):
    # 5 problems, 2 per chunk (batch 8 // n 4): chunks {0,1}, {2,3}, {4}.
    pools = []

    def fake_pool(fail_on):
        def make(workers, timeout_s):
            pools.append(ScriptedPool(fail_on))
            return pools[-1]
        return make

    monkeypatch.setattr(cmd, "make_pool", fake_pool(None))
    whole = tmp_path / "whole.json"
    assert cmd.main_eval(cli_args(tiny, data_file, whole)) == 0
    assert not cmd.partial_path(whole).exists()

    resumed = tmp_path / "resumed.json"
    monkeypatch.setattr(cmd, "make_pool", fake_pool(2))  # dies while scoring the second chunk
    with pytest.raises(KeyboardInterrupt):
        cmd.main_eval(cli_args(tiny, data_file, resumed))
    partial = cmd.partial_path(resumed)
    lines = partial.read_text().splitlines()
    assert len(lines) == 2 and "settings" in json.loads(lines[0]) and json.loads(lines[1])["chunk"] == 0
    with partial.open("a") as fh:  # the process also died while writing a line
        fh.write('{"chunk": 1, "problems": [{"index": 2, "id"')
    assert not resumed.exists()

    monkeypatch.setattr(cmd, "make_pool", fake_pool(None))
    assert cmd.main_eval(cli_args(tiny, data_file, resumed)) == 0
    assert len(pools[-1].seen) == 3 * 4  # only problems 2, 3, 4 were generated and scored again
    assert resumed.read_text() == whole.read_text()
    assert not partial.exists()
    result = json.loads(whole.read_text())
    assert [r["id"] for r in result["problems"]] == [p.id for p in PROBLEMS]
    assert list(result["domains"]["math"]["pass@k"]) == ["1", "2", "4"]


@pytest.mark.parametrize("extra,key", [(("--temperature", "1.0"), "temperature"), (("--n", "2"), "n"),
                                       (("--limit", "3"), "num_problems")])
def test_resume_with_other_settings_is_a_clear_error(tiny, data_file, tmp_path, monkeypatch, extra, key):
    monkeypatch.setattr(cmd, "make_pool", lambda workers, timeout_s: ScriptedPool(fail_on=2))
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        cmd.main_eval(cli_args(tiny, data_file, out))
    with pytest.raises(UserError, match=f"different settings.*{key}: "):
        cmd.main_eval(cli_args(tiny, data_file, out, *extra))


def test_failed_start_does_not_block_other_settings(tiny, data_file, tmp_path, monkeypatch):
    # A first attempt dies in its first chunk (nothing finished): a rerun with other settings just starts over.
    monkeypatch.setattr(cmd, "make_pool", lambda workers, timeout_s: ScriptedPool(fail_on=1))
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        cmd.main_eval(cli_args(tiny, data_file, out))
    monkeypatch.setattr(cmd, "make_pool", lambda workers, timeout_s: ScriptedPool())
    assert cmd.main_eval(cli_args(tiny, data_file, out, "--temperature", "0.9")) == 0
    assert json.loads(out.read_text())["settings"]["temperature"] == 0.9


@pytest.mark.parametrize("extra,error", [(("--k", "1,8"), "larger than n=4"), (("--k", "a"), "not an integer"),
                                         (("--n", "0"), "--n 0")])
def test_bad_arguments(tiny, data_file, tmp_path, extra, error):
    with pytest.raises(UserError, match=error):
        cmd.main_eval(cli_args(tiny, data_file, tmp_path / "x.json", *extra))


def test_summary_means_are_exact():
    # Three problems of one task with n=4: correct 0, 2, 4 -> pass@2 = (0 + (1 - C(2,2)/C(4,2)) + 1) / 3
    recs = [dict(index=i, id=str(i), domain="math", task="math", n=4, correct=c, mean_score=c / 4, truncated=0, errors=0)
            for i, c in enumerate([0, 2, 4])]
    out = ev.summarize(recs, [1, 2, 4], {})
    assert out["tasks"]["math"]["pass@k"]["2"] == pytest.approx((0 + (1 - 1 / 6) + 1) / 3, rel=1e-12)
    assert out["tasks"]["math"]["pass@1"] == pytest.approx(0.5, rel=1e-12)
    assert out["tasks"]["math"]["pass@k"]["4"] == pytest.approx(2 / 3, rel=1e-12)
    assert not math.isnan(out["overall"]["mean@n"])


@pytest.mark.slow  # ~25 s: the pool's fork server preloads every verifier library
def test_real_verifier_pool_matches_in_process_scoring(tiny, tmp_path, monkeypatch):
    # The real worker pool (2 processes, instruction verifier) and in-process scoring of the same
    # seeded samples must give the same file. A random tiny model writes commas in some samples only,
    # so "no_comma" problems get a mix of scores.
    from prorl.verifiers.pool import ScoringPool

    data = tmp_path / "if.jsonl"
    rows = [{"id": f"if{i}", "domain": "instruction", "prompt": f"say {i}",
             "metadata": {"instruction_ids": ["punctuation:no_comma"], "kwargs": [{}]}} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    workers = tmp_path / "workers.json"
    assert cmd.main_eval(cli_args(tiny, data, workers, "--max-tokens", "24")) == 0
    monkeypatch.setattr(cmd, "make_pool", lambda workers, timeout_s: ScoringPool(0))
    inline = tmp_path / "inline.json"
    assert cmd.main_eval(cli_args(tiny, data, inline, "--max-tokens", "24")) == 0
    assert workers.read_text() == inline.read_text()
    result = json.loads(workers.read_text())
    assert result["domains"]["instruction"]["errors"] == 0
    assert 0 < result["domains"]["instruction"]["mean@n"] <= 1


def test_limit_takes_problems_across_tasks():
    from prorl.data.schema import Problem

    problems = ([Problem(f"maze{i}", "logic", "?", metadata={"task": "maze"}) for i in range(5)]
                + [Problem(f"sudoku{i}", "logic", "?", metadata={"task": "sudoku"}) for i in range(2)]
                + [Problem("m0", "math", "?")])
    assert [p.id for p in cmd.across_tasks(problems, 4)] == ["maze0", "maze1", "sudoku0", "m0"]
    assert [p.id for p in cmd.across_tasks(problems, 6)] == ["maze0", "maze1", "maze2", "sudoku0", "sudoku1", "m0"]
    assert len(cmd.across_tasks(problems, 100)) == 8
    with pytest.raises(UserError, match="--limit 0: expected at least 1"):
        cmd.across_tasks(problems, 0)

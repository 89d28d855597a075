"""The demo's plumbing, end to end (`prorl demo --quick`): every file it promises, readable by the tools
that consume it. The full demo's learning is measured by running it (docs/demo.md), not here."""

from __future__ import annotations

import json
import subprocess
import sys

from prorl.config import load_recipe, resolve_config
from prorl.data.builtin import is_heldout
from prorl.data.loaders import load_problems
from prorl.demo import HARDER_KINDS, TRAIN_KINDS
from prorl.eval.compare import compare_results, load_results
from prorl.data.run_data import load_data


def test_quick_demo_writes_what_it_promises(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "prorl.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reference resets: 1 at steps [2]" in done.stdout

    result = json.loads((out / "demo_results.json").read_text())
    assert result["steps"] == 4 and result["resets"] == 1
    assert set(result["pass@1"]) == set(TRAIN_KINDS + HARDER_KINDS) | {"trained"}
    for row in result["pass@1"].values():
        assert 0.0 <= row["warm_start"] <= 1.0 and 0.0 <= row["prorl"] <= 1.0

    # The model directories load the way a user's model does, and the run can be inspected.
    for name in ("base", "warm"):
        assert (out / name / "config.json").exists() and (out / name / "tokenizer.json").exists()
    latest = (out / "run" / "checkpoints" / "latest").read_text().strip()
    assert latest == "step_000004" and (out / "run" / "checkpoints" / latest / "policy" / "config.json").exists()
    events = [json.loads(line)["event"] for line in (out / "run" / "events.jsonl").read_text().splitlines()]
    assert events.count("reset") == 1

    # The held-out problems are the ones measured: same tasks, no training prompt among them.
    heldout = load_problems(out / "heldout.jsonl")
    assert {p.metadata["task"] for p in heldout} == set(TRAIN_KINDS + HARDER_KINDS)
    assert len({p.prompt for p in heldout}) == len(heldout) and all(is_heldout(p.prompt) for p in heldout)
    train, val = load_data(resolve_config(load_recipe(out / "run" / "config.yaml"), [], where="run config"))
    assert not any(is_heldout(p.prompt) for p in train)
    assert val and all(is_heldout(p.prompt) for p in val)
    warm, trained = load_results(out / "eval_warm.json"), load_results(out / "eval_trained.json")
    assert sum(t["count"] for t in warm["tasks"].values()) == len(warm["problems"]) == len(heldout)
    assert [r["id"] for r in warm["problems"]] == [p.id for p in heldout]
    analysis = compare_results(warm, trained, k=2)
    assert set(analysis["tasks"]) == set(TRAIN_KINDS + HARDER_KINDS)

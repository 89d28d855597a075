"""The vLLM engine's own behaviour, driven through ``fake_vllm`` (vLLM itself needs a CUDA GPU and is not
installed here): the arguments it builds vLLM with, the version check, the log-prob mode, the dtype of the
pushed weights, the sleep/push order of a training step, and a training run and an evaluation on it.

The contract every engine meets is in test_engines.py (run there on this engine too).
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

import fake_vllm
import prorl.rollout.vllm_engine as vllm_engine
from prorl.config import VLLMConfig, help_lines, resolve_config
from prorl.errors import UserError
from prorl.policy import load_policy
from prorl.rollout import RandomStream, Sampling, make_engine
from prorl.rollout.vllm_engine import VLLMEngine, engine_arguments
from prorl.tiny import build_char_tokenizer, build_tiny_model


@pytest.fixture(autouse=True)
def vllm_is_the_fake(monkeypatch):
    monkeypatch.setattr(vllm_engine, "load_vllm", lambda: fake_vllm)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tok = build_char_tokenizer(path)
    build_tiny_model(path, tok, size="1m", seed=0)
    return path


def engine_for(path, *overrides):
    cfg = resolve_config({}, [f"model.path={path}", "rollout.engine=vllm", *overrides])
    model, tok = load_policy(path, dtype="float32")
    return make_engine(cfg.rollout, model, tok), model, tok


def test_engine_arguments_ask_for_the_processed_logprobs_and_the_recipe_settings():
    kwargs = engine_arguments("/m", "bfloat16", VLLMConfig(max_model_len=4096), sleep=True)
    assert kwargs == {
        "model": "/m", "dtype": "bfloat16", "seed": 0, "skip_tokenizer_init": True, "generation_config": "vllm",
        "logprobs_mode": "processed_logprobs", "gpu_memory_utilization": 0.4, "enable_prefix_caching": True,
        "enforce_eager": False, "enable_sleep_mode": True, "max_model_len": 4096,
        "hf_overrides": {"head_dtype": "float32"},
    }
    plain = engine_arguments("/m", "float16", VLLMConfig(fp32_head=False, engine_kwargs={"max_num_seqs": 64,
                                                                                         "seed": 3}), sleep=False)
    assert "hf_overrides" not in plain and "max_model_len" not in plain and not plain["enable_sleep_mode"]
    assert plain["max_num_seqs"] == 64 and plain["seed"] == 3  # the user's extra arguments win


def test_a_misspelt_engine_argument_names_the_setting(tiny):
    with pytest.raises(UserError, match="rollout.vllm.engine_kwargs: vllm.LLM rejected the arguments"):
        engine_for(tiny, "rollout.vllm.engine_kwargs={gpu_mem: 0.3}")


def test_load_vllm_needs_the_pinned_release(monkeypatch):
    monkeypatch.undo()  # the real load_vllm
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed: import raises ImportError
    with pytest.raises(UserError, match=r"needs vLLM, which is not installed: pip install 'prorl\[vllm\]'"):
        vllm_engine.load_vllm()
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(__version__="0.32.1"))
    with pytest.raises(UserError, match="written for vllm==0.33.0, found 0.32.1"):
        vllm_engine.load_vllm()
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    assert vllm_engine.load_vllm() is fake_vllm


def test_the_pyproject_extra_pins_the_same_release():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^vllm = \["vllm==([0-9.]+)"\]', text, re.M).group(1) == vllm_engine.VLLM_VERSION


def test_raw_logprobs_would_not_be_the_trainers(tiny):
    """Why the engine asks for processed log-probs: vLLM's default reports untempered ones."""
    from test_engines import recomputed_logprobs

    results = {}
    for mode in ("processed_logprobs", "raw_logprobs"):
        engine, model, tok = engine_for(tiny, "rollout.dtype=float32",
                                        f"rollout.vllm.engine_kwargs={{logprobs_mode: {mode}}}")
        prompts = [tok("1+2=", add_special_tokens=False)["input_ids"]]
        out = engine.generate(prompts, Sampling(4, 1.5, 1.0, 6), RandomStream(0))
        diff = (out.logprobs * out.response_mask - recomputed_logprobs(model, out, 1.5)).abs().max()
        results[mode] = float(diff)
    assert results["processed_logprobs"] < 2e-4 and results["raw_logprobs"] > 1e-2


def test_pushed_weights_are_cast_to_the_engine_dtype_one_per_parameter(tiny):
    engine, model, _ = engine_for(tiny, "rollout.dtype=bfloat16")
    names = [n for n, _ in model.named_parameters()]
    assert [n for n, _ in engine.llm.received] == names  # the push at construction: the policy in memory
    assert {d for _, d in engine.llm.received} == {torch.bfloat16}
    assert engine.llm.kwargs["dtype"] == "bfloat16" and engine.pushes == 1


def test_a_sample_that_breaks_the_contract_is_an_error():
    """A 'stop' without the EOS at the end (vLLM dropping the stop token) or a log-prob short is never padded over."""
    lp = fake_vllm.Logprob(-0.5)
    engine = VLLMEngine(None, fake_vllm, eos_token_ids=[2], pad_token_id=0, dtype=torch.float32, sleep=True)
    good = fake_vllm.CompletionOutput(0, [5, 2], [{5: lp}, {2: lp}], "stop")
    assert engine._checked(good) == ([5, 2], [-0.5, -0.5], "stop")
    for bad, what in [(fake_vllm.CompletionOutput(0, [5], [{5: lp}], "stop"), "expected 'stop' on a kept EOS"),
                      (fake_vllm.CompletionOutput(0, [5, 2], [{5: lp}], "stop"), "1 log-probs for 2 tokens"),
                      (fake_vllm.CompletionOutput(0, [5, 6], [{5: lp}, {6: lp}], "abort"), "'abort'")]:
        with pytest.raises(RuntimeError, match=what):
            engine._checked(bad)


def test_a_prompt_longer_than_the_engine_allows_costs_its_samples_not_the_call(tiny):
    engine, _, tok = engine_for(tiny, "rollout.vllm.max_model_len=10")
    prompts = [tok(text, add_special_tokens=False)["input_ids"] for text in ("1+2=", "1234567890+1=")]
    with pytest.warns(UserWarning, match="1 prompt.*rollout.vllm.max_model_len=10: their samples are empty"):
        out = engine.generate(prompts, Sampling(3, 1.0, 1.0, 4), RandomStream(0))
    lengths = out.response_mask.sum(-1).tolist()
    assert len(out) == 6 and all(n > 0 for n in lengths[:3]) and lengths[3:] == [0, 0, 0]
    assert out.finish_reasons[3:] == ["length"] * 3
    assert all(n <= 10 - len(prompts[0]) for n in lengths[:3])  # vLLM's limit: prompt + response <= max_model_len


def test_without_sleep_the_push_wakes_nothing(tiny):
    engine, model, tok = engine_for(tiny, "rollout.vllm.sleep=false")
    engine.sleep()
    engine.load_weights(model.named_parameters())
    assert not engine.llm.kwargs["enable_sleep_mode"]
    assert [c for c in engine.llm.calls if c.startswith(("sleep", "wake"))] == []


def test_training_on_the_vllm_engine_pushes_after_every_update_and_corrects_by_default(tiny, tmp_path):
    from prorl.runlog import read_jsonl
    from prorl.train import train

    built = []
    real_build = VLLMEngine.build.__func__

    def keep(cls, *args, **kwargs):
        built.append(real_build(cls, *args, **kwargs))
        return built[-1]

    cfg = resolve_config({}, [
        f"model.path={tiny}", f"run_dir={tmp_path / 'run'}", "data.builtin=add", "data.val_size=4",
        "rollout.engine=vllm", "rollout.dtype=float32", "rollout.n=4", "rollout.max_new_tokens=6", "train.steps=3",
        "train.prompts_per_step=2", "train.mini_batch_prompts=2", "algo.dynamic_sampling=false", "reward.workers=0",
        "validation.every=3", "validation.n=2", "log.progress=false", "train.lr=1e-2", "train.autocast_bf16=false",
    ])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VLLMEngine, "build", classmethod(keep))
        train(cfg)
    (engine,) = built
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    step = ["generate", "sleep(2)", "wake_up(weights)", "reload_weights(iterator)", "wake_up(kv_cache)",
            "reset_prefix_cache"]
    calls = engine.llm.calls
    assert calls[:2] == ["reload_weights(iterator)", "reset_prefix_cache"]  # the policy pushed at construction
    validation = ["generate"] * (len(calls) - 2 - 3 * len(step))
    assert calls[2:] == validation[:1] + step * 3 + validation[1:]  # validation at 0 and after step 3
    assert engine.pushes == 4 and "reload_weights(disk)" not in calls
    for name, p in engine.llm.model.named_parameters():  # the engine holds the trained weights
        assert torch.equal(p, dict(load_policy(tmp_path / "run" / "checkpoints" / "step_000003" / "policy",
                                               dtype="float32")[0].named_parameters())[name])
    last = rows[-1]
    assert last["rollout/logprob_diff"] < 1e-4 and last["rollout/mismatch_kl"] < 1e-6  # fp32 on both sides
    assert last["rollout/is_weight_max"] == pytest.approx(1.0, abs=1e-3)  # token_tis, on by default with vllm
    assert "time/weight_push" in last


def test_prorl_eval_runs_on_the_vllm_engine(tiny, tmp_path, capsys):
    import json

    from prorl.cli import main
    from prorl.data.builtin import make_problems

    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in make_problems("add", 3, seed=0)))
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(tiny), "--data", str(data), "--n", "2", "--max-tokens", "4", "--engine",
                 "vllm", "--dtype", "float32", "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["engine"] == "vllm" and result["domains"]["math"]["count"] == 3


def test_the_engine_settings_are_in_the_help():
    text = "\n".join(help_lines())
    for key in ("gpu_memory_utilization", "max_model_len", "prefix_caching", "enforce_eager", "fp32_head", "sleep"):
        assert f"rollout.vllm.{key} = " in text
    assert "algo.rollout_correction = None" in text


def test_training_rollouts_below_top_p_1_are_warned_about(tiny):
    with pytest.warns(UserWarning, match="rollout.top_p=0.9 with the vllm engine: its log-probs are renormalised"):
        engine_for(tiny, "rollout.top_p=0.9")

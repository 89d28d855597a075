"""The rollout engine contract (prorl.rollout.base.Engine): checks every engine must pass.

Run on the built-in engine (``hf``), on the vLLM engine (``vllm``, driving ``fake_vllm``, a CPU stand-in for
the vllm module) and on ``fake_engine.NaiveEngine``, a second engine written the plain way (no cache,
per-request seeds). The naive engine is added the way any new engine is: one module and one line in
``prorl.rollout.ENGINES``; training and evaluation then run on it unchanged (last tests).
"""

from __future__ import annotations

import copy

import pytest
import torch

import fake_vllm
import prorl.rollout as rollout
import prorl.rollout.vllm_engine as vllm_engine
from prorl.config import resolve_config
from prorl.logprobs import token_logprobs
from prorl.policy import load_policy
from prorl.rollout import EngineAsleep, RandomStream, Sampling, make_engine
from prorl.tiny import build_char_tokenizer, build_tiny_model

ENGINE_NAMES = ["hf", "vllm", "fake"]
PROMPTS = ["1+2=", "hello world 12", "a", "The cat"]


@pytest.fixture(autouse=True)
def fake_engine_registered(monkeypatch):
    """The one line a new engine adds to the table."""
    monkeypatch.setitem(rollout.ENGINES, "fake", "fake_engine:NaiveEngine")
    monkeypatch.setattr(vllm_engine, "load_vllm", lambda: fake_vllm)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tok = build_char_tokenizer(path)
    build_tiny_model(path, tok, size="1m", seed=0)
    model, tok = load_policy(path, dtype="float32")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # peaked distributions, EOS likely: both finish reasons occur within a few tokens
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15, generator=gen)
        emb = model.get_input_embeddings().weight
        emb[tok.eos_token_id] = 1.1 * emb[tok.convert_tokens_to_ids("4")]
    prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    return path, model, tok, prompt_ids


def engine_for(name, model, tok):
    cfg = resolve_config({}, [f"rollout.engine={name}", "rollout.dtype=float32"])
    return make_engine(cfg.rollout, model, tok)


def recomputed_logprobs(model, out, temperature):
    """The trainer's log-probs of the engine's tokens: the quantity the engine's log-probs must equal."""
    ids = torch.cat([out.prompt_ids, out.response_ids], dim=1)
    mask = torch.cat([out.prompt_mask, out.response_mask.long()], dim=1)
    with torch.no_grad():
        lp, _ = token_logprobs(model, ids, mask, out.response_ids.shape[1], temperature=temperature)
    return lp * out.response_mask


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_layout_finish_reasons_and_eos(tiny, name):
    _, model, tok, prompt_ids = tiny
    engine = engine_for(name, model, tok)
    sampling = Sampling(n=3, temperature=1.0, top_p=1.0, max_new_tokens=10)
    out = engine.generate(prompt_ids, sampling, RandomStream(0))
    assert len(out) == 12 and out.prompt_ids.shape[0] == out.response_ids.shape[0] == 12
    lengths = out.response_mask.sum(-1).long()
    assert out.num_tokens == int(lengths.sum())
    eos = set(engine.eos_token_ids)
    for row in range(12):
        prompt = prompt_ids[row // 3]  # the n rows of a prompt are consecutive
        assert out.prompt_ids[row, out.prompt_mask[row].bool()].tolist() == prompt
        n = int(lengths[row])
        assert out.response_mask[row, :n].eq(1).all() and out.response_mask[row, n:].eq(0).all()
        assert out.response_ids[row, n:].eq(engine.pad_token_id).all()
        tokens = out.response_ids[row, :n].tolist()
        assert not eos & set(tokens[:-1])  # generation ends at the first EOS, which stays in the response
        if out.finish_reasons[row] == "stop":
            assert tokens[-1] in eos
        else:
            assert out.finish_reasons[row] == "length" and n == sampling.max_new_tokens and tokens[-1] not in eos
    assert set(out.finish_reasons) == {"stop", "length"}  # both cases were exercised


@pytest.mark.parametrize("name", ENGINE_NAMES)
@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.9), (1.3, 1.0)])
def test_logprobs_are_at_the_sampling_temperature(tiny, name, temperature, top_p):
    _, model, tok, prompt_ids = tiny
    out = engine_for(name, model, tok).generate(prompt_ids, Sampling(2, temperature, top_p, 8), RandomStream(1))
    engine_lp, trainer_lp = out.logprobs * out.response_mask, recomputed_logprobs(model, out, temperature)
    if name == "vllm" and top_p < 1:  # vLLM renormalises over the nucleus: log-probs raised by -log(kept mass)
        assert (engine_lp - trainer_lp).min() > -2e-4 and (engine_lp - trainer_lp).max() > 1e-3
    else:
        torch.testing.assert_close(engine_lp, trainer_lp, rtol=0, atol=2e-4)


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_seeds_reproduce_and_differ(tiny, name):
    _, model, tok, prompt_ids = tiny
    engine = engine_for(name, model, tok)
    sampling = Sampling(n=2, temperature=1.0, top_p=1.0, max_new_tokens=8)
    a, b = (engine.generate(prompt_ids, sampling, RandomStream(5)) for _ in range(2))
    c = engine.generate(prompt_ids, sampling, RandomStream(6))
    assert torch.equal(a.response_ids, b.response_ids) and a.finish_reasons == b.finish_reasons
    assert a.response_ids.shape != c.response_ids.shape or not torch.equal(a.response_ids, c.response_ids)
    # Two calls on one stream continue it: the second call draws new samples, reproducibly.
    stream, again = RandomStream(5), RandomStream(5)
    first, second = engine.generate(prompt_ids, sampling, stream), engine.generate(prompt_ids, sampling, stream)
    assert torch.equal(first.response_ids, a.response_ids)
    assert torch.equal(engine.generate(prompt_ids, sampling, again).response_ids, first.response_ids)
    assert torch.equal(engine.generate(prompt_ids, sampling, again).response_ids, second.response_ids)


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_weights_loaded_are_the_weights_used(tiny, name):
    _, model, tok, prompt_ids = tiny
    policy = copy.deepcopy(model)
    engine = engine_for(name, policy, tok)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.05)
    engine.load_weights(other.named_parameters())
    out = engine.generate(prompt_ids, Sampling(2, 1.0, 1.0, 8), RandomStream(2))
    used = out.logprobs * out.response_mask
    torch.testing.assert_close(used, recomputed_logprobs(other, out, 1.0), rtol=0, atol=2e-4)
    assert (used - recomputed_logprobs(model, out, 1.0)).abs().max() > 1e-2  # not the weights it was built from


def perturbed(model, seed: int):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.05)
    return other


def assert_samples_from(engine, weights, stale, prompt_ids):
    """The engine's samples have the log-probs of ``weights`` and not those of ``stale``."""
    out = engine.generate(prompt_ids, Sampling(2, 1.0, 1.0, 8), RandomStream(4))
    used = out.logprobs * out.response_mask
    torch.testing.assert_close(used, recomputed_logprobs(weights, out, 1.0), rtol=0, atol=2e-4)
    assert (used - recomputed_logprobs(stale, out, 1.0)).abs().max() > 1e-2


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_generate_after_sleep_needs_a_push_and_uses_it(tiny, name):
    """The trainer's cycle: sleep while it updates, push, generate. Without the push, generation fails; with it,
    the samples come from the pushed weights (not the weights before the sleep, not the checkpoint on disk)."""
    _, model, tok, prompt_ids = tiny
    engine = engine_for(name, copy.deepcopy(model), tok)
    before = engine.generate(prompt_ids, Sampling(2, 1.0, 1.0, 8), RandomStream(4))
    engine.sleep()
    with pytest.raises(EngineAsleep, match="generate\\(\\) after sleep\\(\\) without load_weights"):
        engine.generate(prompt_ids, Sampling(2, 1.0, 1.0, 8), RandomStream(4))
    engine.load_weights(model.named_parameters())  # the same weights again: the same samples as before the sleep
    again = engine.generate(prompt_ids, Sampling(2, 1.0, 1.0, 8), RandomStream(4))
    assert torch.equal(again.response_ids, before.response_ids) and torch.equal(again.logprobs, before.logprobs)
    updated = perturbed(model, 7)
    engine.sleep()
    engine.load_weights(updated.named_parameters())
    assert_samples_from(engine, updated, model, prompt_ids)


def test_the_push_check_catches_an_engine_that_reloads_the_checkpoint_after_a_push(tiny):
    """The class of bug where a push is followed by vLLM's reload from disk (sleep mode's known trap): the engine
    then samples the base checkpoint, and the check above fails."""
    path, model, tok, prompt_ids = tiny

    class ReloadsFromDisk(vllm_engine.VLLMEngine):
        def load_weights(self, named_tensors):
            super().load_weights(named_tensors)
            self.llm.collective_rpc("reload_weights")  # "restore the weights after waking": reads the checkpoint

    engine = ReloadsFromDisk.from_policy(copy.deepcopy(model), tok, resolve_config({}, ["rollout.dtype=float32"]).rollout)
    updated = perturbed(model, 7)
    engine.sleep()
    engine.load_weights(updated.named_parameters())
    with pytest.raises(AssertionError):
        assert_samples_from(engine, updated, model, prompt_ids)
    on_disk, _ = load_policy(path, dtype="float32")
    assert_samples_from(engine, on_disk, updated, prompt_ids)  # what it really samples


def test_an_unknown_engine_is_a_config_error(tiny):
    from prorl.errors import ConfigError

    _, model, tok, _ = tiny
    with pytest.raises(ConfigError, match="rollout.engine.*expected one of hf, vllm, fake"):
        engine_for("nope", model, tok)


def test_training_and_evaluation_run_on_a_new_engine_unchanged(tiny, tmp_path):
    from prorl.eval.evaluate import evaluate
    from prorl.runlog import read_jsonl
    from prorl.train import train
    from prorl.verifiers.pool import ScoringPool

    path, model, tok, _ = tiny
    cfg = resolve_config({}, [
        f"model.path={path}", f"run_dir={tmp_path / 'run'}", "data.builtin=add", "data.val_size=4",
        "rollout.engine=fake", "rollout.dtype=float32", "rollout.n=4", "rollout.max_new_tokens=6", "train.steps=2",
        "train.prompts_per_step=2", "train.mini_batch_prompts=2", "algo.dynamic_sampling=false", "reward.workers=0",
        "validation.every=2", "validation.n=2", "log.progress=false", "train.lr=1e-3",
    ])
    last = train(cfg)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2] and last["actor/updates"] == 1
    assert "val/pass@1/math" in rows[-1]
    from fake_engine import NaiveEngine

    from prorl.data.builtin import make_problems

    problems = make_problems("add", 3, seed=0)
    with ScoringPool(0) as pool:
        result = evaluate(NaiveEngine(model, tok), tok, problems, Sampling(2, 0.6, 0.95, 6), pool=pool, seed=0)
    assert result["domains"]["math"]["count"] == 3 and result["settings"]["n"] == 2

"""Tests of the built-in rollout engine against ``model.generate`` and ``policy.token_logprobs``.

One tiny "1m" Qwen2 model per module. A freshly initialised model predicts a near-uniform distribution
and, greedily, repeats one token forever, so the fixture re-draws the weights with a larger spread
(varied text) and makes the EOS embedding a scaled copy of the character "4": with tied embeddings the
EOS logit then beats "4" whenever "4" would have been likely, so some sequences stop after a few tokens
and others run to the limit. Each test that relies on this asserts that both cases happened.
"""

from __future__ import annotations

import pytest
import torch

from prorl.errors import UserError
from prorl.logprobs import token_logprobs
from prorl.rollout import Rollout, decode_attention, generate, left_pad, sample_next
from prorl.tiny import build_char_tokenizer, build_tiny_model

PROMPTS = ["1+2=", "hello world 12", "a", "xyz 9*9=", "The cat", "42", "zzzz zz", "Q: 7-3?"]
MAX_NEW = 24


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module's tests on one torch thread, then restore the setting.

    On a shared 2-core machine, two intra-op threads stalled a batch-of-8 forward for ~10 s whenever
    other processes held the cores; one thread takes milliseconds. Tiny models gain nothing from two.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_thread):
    """``(model, tokenizer, prompt_ids)`` with EOS made likely (see the module docstring)."""
    tmp = tmp_path_factory.mktemp("tiny")
    tok = build_char_tokenizer(tmp)
    model = build_tiny_model(tmp, tok, size="1m")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15, generator=gen)
        emb = model.get_input_embeddings().weight
        emb[tok.eos_token_id] = 1.1 * emb[tok.convert_tokens_to_ids("4")]
    model.eval()
    prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    return model, tok, prompt_ids


def run(setup, **kwargs) -> Rollout:
    model, tok, prompt_ids = setup
    args = dict(max_new_tokens=MAX_NEW, eos_token_ids=[tok.eos_token_id], pad_token_id=tok.pad_token_id)
    args.update(kwargs)
    return generate(model, args.pop("prompt_ids", prompt_ids), **args)


def hf_greedy(setup, max_new_tokens=MAX_NEW) -> torch.Tensor:
    """Reference: ``model.generate(do_sample=False)`` on the same left-padded batch; returns ``[B, T]``."""
    model, tok, prompt_ids = setup
    ids, mask = left_pad(prompt_ids, tok.pad_token_id)
    out = model.generate(
        input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )
    return out[:, ids.shape[1]:]


@pytest.mark.parametrize("cache", ["auto", "static", "dynamic"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_greedy_matches_hf_generate(setup, cache, attn):
    model = setup[0]
    model.set_attn_implementation(attn)
    try:
        ours = run(setup, temperature=0.0, cache=cache)
        ref = hf_greedy(setup)
    finally:
        model.set_attn_implementation("sdpa")
    assert "stop" in ours.finish_reasons and "length" in ours.finish_reasons  # EOS happened, and not everywhere
    assert ours.response_ids.shape == ref.shape
    assert torch.equal(ours.response_ids, ref)  # token for token, including pad after each EOS


def test_static_cache_path_for_sliding_window_models(setup, monkeypatch):
    """Models with sliding-window layers take the plain StaticCache path; a window wider than the
    sequence attends like full attention, so greedy output must not change."""
    import prorl.rollout.hf as rollout
    from transformers import AutoModelForCausalLM

    model, tok, prompt_ids = setup
    kinds = []
    real = rollout._make_cache
    monkeypatch.setattr(rollout, "_make_cache", lambda m, kind, n: kinds.append(kind) or real(m, kind, n))

    config = model.config.to_dict()
    config.update(use_sliding_window=True, sliding_window=4096, max_window_layers=0)
    config.pop("layer_types", None)
    sliding = AutoModelForCausalLM.from_config(type(model.config).from_dict(config))
    sliding.load_state_dict(model.state_dict())
    sliding.eval()
    assert "sliding_attention" in sliding.config.layer_types
    ours = generate(sliding, prompt_ids, max_new_tokens=MAX_NEW, eos_token_ids=[tok.eos_token_id],
                    pad_token_id=tok.pad_token_id, temperature=0.0, cache="static")
    assert kinds == ["static"]
    assert torch.equal(ours.response_ids, hf_greedy(setup))


def test_falls_back_to_dynamic_cache(setup, monkeypatch):
    """A model that rejects the preallocated cache still generates (``cache="auto"``), via DynamicCache."""
    import prorl.rollout.hf as rollout

    real = rollout._make_cache
    kinds = []

    def picky(model, kind, max_cache_len):
        kinds.append(kind)
        if kind != "dynamic":
            raise RuntimeError("this model does not support a static cache")
        return real(model, kind, max_cache_len)

    monkeypatch.setattr(rollout, "_make_cache", picky)
    ours = run(setup, temperature=0.0)
    assert kinds == ["prefix", "dynamic"]
    assert torch.equal(ours.response_ids, hf_greedy(setup))


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.9)])
def test_logprobs_match_token_logprobs(setup, temperature, top_p):
    model = setup[0]
    out = run(setup, temperature=temperature, top_p=top_p, generator=torch.Generator().manual_seed(3))
    assert "stop" in out.finish_reasons  # masks of different lengths are exercised
    T = out.response_ids.shape[1]
    input_ids = torch.cat([out.prompt_ids, out.response_ids], dim=1)  # [B, P+T]
    attention_mask = torch.cat([out.prompt_mask, out.response_mask.long()], dim=1)  # [B, P+T]
    with torch.no_grad():
        ref, _ = token_logprobs(model, input_ids, attention_mask, T, temperature=temperature)
    mask = out.response_mask.bool()
    assert out.logprobs.dtype == torch.float32
    torch.testing.assert_close(out.logprobs[mask], ref[mask], rtol=1e-4, atol=1e-5)
    assert torch.all(out.logprobs[~mask] == 0)


def test_an_eager_model_samples_what_the_sdpa_one_does_and_keeps_its_attention(setup):
    """Decode steps take the same two-matmul path under either kernel; the model's setting is restored after."""
    model = setup[0]
    sdpa = run(setup, temperature=1.0, generator=torch.Generator().manual_seed(4))
    model.set_attn_implementation("eager")
    try:
        eager = run(setup, temperature=1.0, generator=torch.Generator().manual_seed(4))
        assert model.config._attn_implementation == "eager"
    finally:
        model.set_attn_implementation("sdpa")
    assert torch.equal(eager.response_ids, sdpa.response_ids)
    torch.testing.assert_close(eager.logprobs, sdpa.logprobs, rtol=1e-5, atol=1e-6)


def test_bf16_runs_and_logprobs_are_close(setup):
    """bf16 rounding differs between incremental decoding and one full forward, so the match is loose."""
    model, tok, prompt_ids = setup
    model.to(torch.bfloat16)
    try:
        out = run(setup, temperature=1.0, generator=torch.Generator().manual_seed(5))
        T = out.response_ids.shape[1]
        input_ids = torch.cat([out.prompt_ids, out.response_ids], dim=1)
        attention_mask = torch.cat([out.prompt_mask, out.response_mask.long()], dim=1)
        with torch.no_grad():
            ref, _ = token_logprobs(model, input_ids, attention_mask, T)
    finally:
        model.to(torch.float32)
    mask = out.response_mask.bool()
    assert out.logprobs.dtype == torch.float32 and torch.isfinite(out.logprobs).all()
    assert (out.logprobs[mask] - ref[mask]).abs().mean() < 0.05


def test_finish_reasons_masks_and_padding(setup):
    model, tok, prompt_ids = setup
    out = run(setup, temperature=1.0, generator=torch.Generator().manual_seed(1))
    eos, pad = tok.eos_token_id, tok.pad_token_id
    lengths = out.response_mask.sum(-1).long().tolist()
    assert "stop" in out.finish_reasons and "length" in out.finish_reasons
    assert out.response_ids.shape[1] == max(lengths)  # T is the longest response
    assert out.num_tokens == sum(lengths)
    for row, reason, n in zip(range(len(prompt_ids)), out.finish_reasons, lengths):
        ids, mask, lp = out.response_ids[row], out.response_mask[row], out.logprobs[row]
        if reason == "length":
            assert n == MAX_NEW and torch.all(mask == 1) and eos not in ids.tolist()
        else:
            assert reason == "stop" and ids[n - 1] == eos and eos not in ids[: n - 1].tolist()
            assert torch.all(mask[:n] == 1) and torch.all(mask[n:] == 0)
            assert torch.all(ids[n:] == pad) and torch.all(lp[n:] == 0)
    # Prompts: left-padded with pad, mask 1 on the real tokens.
    for row, p in enumerate(prompt_ids):
        P = out.prompt_ids.shape[1]
        assert out.prompt_ids[row, P - len(p):].tolist() == p
        assert torch.all(out.prompt_ids[row, : P - len(p)] == pad)
        assert out.prompt_mask[row].tolist() == [0] * (P - len(p)) + [1] * len(p)


def test_seeds(setup):
    a = run(setup, temperature=1.0, generator=torch.Generator().manual_seed(7))
    b = run(setup, temperature=1.0, generator=torch.Generator().manual_seed(7))
    c = run(setup, temperature=1.0, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(a.logprobs, b.logprobs)
    assert a.response_ids.shape != c.response_ids.shape or not torch.equal(a.response_ids, c.response_ids)


def test_tiny_top_p_is_greedy(setup):
    greedy = run(setup, temperature=0.0)
    nucleus = run(setup, temperature=1.0, top_p=1e-6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(nucleus.response_ids, greedy.response_ids)
    # At temperature 1 the reported log-probs are the untempered ones greedy reports.
    torch.testing.assert_close(nucleus.logprobs, greedy.logprobs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 100])
def test_batch_size_chunks_equal_one_batch(setup, batch_size):
    whole = run(setup, temperature=0.0)
    chunked = run(setup, temperature=0.0, batch_size=batch_size)
    for field in ("prompt_ids", "prompt_mask", "response_ids", "response_mask"):
        assert torch.equal(getattr(chunked, field), getattr(whole, field)), field
    torch.testing.assert_close(chunked.logprobs, whole.logprobs, rtol=1e-5, atol=1e-6)
    assert chunked.finish_reasons == whole.finish_reasons and chunked.num_tokens == whole.num_tokens


@pytest.mark.parametrize("compact_below", [0.0, 1.0])
@pytest.mark.parametrize("cache", ["auto", "dynamic"])
def test_batch_compaction_keeps_greedy_output(setup, monkeypatch, compact_below, cache):
    """0.0 never drops finished rows from the live batch; 1.0 drops them as soon as any finishes."""
    import prorl.rollout.hf as rollout

    monkeypatch.setattr(rollout, "COMPACT_BELOW", compact_below)
    sizes = []  # live batch size after each compaction
    real = rollout._make_cache

    def spying(model, kind, n):
        kv = real(model, kind, n)
        select = kv.batch_select_indices
        kv.batch_select_indices = lambda idx: sizes.append(len(idx)) or select(idx)
        return kv

    monkeypatch.setattr(rollout, "_make_cache", spying)
    out = run(setup, temperature=0.0, cache=cache)
    assert torch.equal(out.response_ids, hf_greedy(setup))
    if compact_below == 0.0:
        assert sizes == []
    else:  # one compaction per step on which a sequence stopped (all but the last, which ends the loop)
        stopped = sorted(out.response_mask.sum(-1).long()[[r == "stop" for r in out.finish_reasons]].tolist())
        assert len(sizes) >= 2 and sizes[0] == len(PROMPTS) - stopped.count(stopped[0])


def test_outputs_are_ordinary_tensors_and_model_still_trains(setup):
    """Generation runs under inference_mode; what it returns and the model itself must still work in autograd."""
    model, tok, prompt_ids = setup
    out = run(setup, temperature=1.0, generator=torch.Generator().manual_seed(2))
    for field in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "logprobs"):
        assert not getattr(out, field).is_inference(), field
    input_ids = torch.cat([out.prompt_ids, out.response_ids], dim=1)
    attention_mask = torch.cat([out.prompt_mask, out.response_mask.long()], dim=1)
    logprobs, _ = token_logprobs(model, input_ids, attention_mask, out.response_ids.shape[1])
    (logprobs * out.response_mask).sum().backward()
    assert model.get_input_embeddings().weight.grad is not None
    model.zero_grad(set_to_none=True)
    model.load_state_dict(model.state_dict())  # in-place copies into every parameter and buffer


@pytest.mark.parametrize("heads, kv_heads, n", [(4, 2, 7), (6, 6, 1), (8, 1, 33)])
def test_decode_attention_matches_sdpa(heads, kv_heads, n):
    """The CPU decode-step attention against torch's sdpa on the same masked, grouped-query problem (fp32)."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(n)
    B, D = 3, 16
    q = torch.randn(B, heads, 1, D, generator=gen)
    k = torch.randn(B, kv_heads, n, D, generator=gen)
    v = torch.randn(B, kv_heads, n, D, generator=gen)
    keep = torch.rand(B, 1, 1, n, generator=gen) > 0.3
    keep[..., -1] = True  # the new token always sees itself
    additive = torch.zeros(B, 1, 1, n).masked_fill_(~keep, torch.finfo(torch.float32).min)

    class Module:  # what transformers passes as ``module``; only sdpa's fallback reads it
        num_key_value_groups = heads // kv_heads

    out, _ = decode_attention(Module(), q, k, v, additive, scaling=D ** -0.5)  # [B, 1, H, D]
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, enable_gqa=True)  # [B, H, 1, D]
    torch.testing.assert_close(out, ref.transpose(1, 2), rtol=1e-5, atol=1e-6)


def test_restores_attention_implementation(setup):
    model = setup[0]
    assert model.config._attn_implementation == "sdpa"
    run(setup, temperature=0.0, max_new_tokens=3)
    assert model.config._attn_implementation == "sdpa"


def test_restores_train_mode(setup):
    model = setup[0]
    model.train()
    try:
        run(setup, temperature=0.0, max_new_tokens=2)
        assert model.training
    finally:
        model.eval()
    run(setup, temperature=0.0, max_new_tokens=2)
    assert not model.training


def test_one_token_prompt_and_one_new_token(setup):
    out = run(setup, prompt_ids=[[5]], temperature=0.0, max_new_tokens=1)
    assert out.response_ids.shape == (1, 1) and out.num_tokens == 1
    assert out.finish_reasons in (["length"], ["stop"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt_ids=[]), "prompt_ids is empty"),
    (dict(prompt_ids=[[5], []]), "prompt_ids[1] is empty"),
    (dict(max_new_tokens=0), "max_new_tokens=0"),
    (dict(eos_token_ids=[]), "eos_token_ids is empty"),
    (dict(temperature=-0.5), "temperature=-0.5"),
    (dict(top_p=0.0), "top_p=0.0"),
    (dict(top_p=1.5), "top_p=1.5"),
    (dict(batch_size=0), "batch_size=0"),
    (dict(cache="paged"), "cache='paged'"),
])
def test_bad_arguments(setup, kwargs, message):
    with pytest.raises(UserError) as err:
        run(setup, **kwargs)
    assert message in str(err.value)


# probs [0.5, 0.3, 0.2]: top_p keeps a token while the mass ranked above it is below top_p.
#   top_p 0.45 -> {0}        (mass above token 1 is 0.5)
#   top_p 0.75 -> {0, 1}     (mass above token 2 is 0.8)
#   top_p 0.85 -> {0, 1, 2}
@pytest.mark.parametrize("top_p, allowed, freq0", [(0.45, {0}, 1.0), (0.75, {0, 1}, 0.5 / 0.8), (0.85, {0, 1, 2}, 0.5)])
def test_sample_next_top_p(top_p, allowed, freq0):
    n = 4000
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log().expand(n, 3).contiguous()
    tokens, logprobs = sample_next(logits.clone(), temperature=1.0, top_p=top_p,
                                   generator=torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == allowed
    # Binomial standard error at n=4000 is <= 0.008; 0.03 is ~4 of them.
    assert abs((tokens == 0).float().mean().item() - freq0) < 0.03
    # Log-probs come from the distribution before truncation.
    expected = torch.tensor([0.5, 0.3, 0.2]).log()[tokens]
    torch.testing.assert_close(logprobs, expected, rtol=1e-6, atol=1e-6)


def test_sample_next_temperature_logprobs():
    # logits [0, 1] at temperature 0.5 -> [0, 2]: p(1) = e^2 / (1 + e^2) = 0.880797
    logits = torch.tensor([[0.0, 1.0]])
    tokens, lp = sample_next(logits.clone(), temperature=0.5, top_p=1e-6, generator=torch.Generator().manual_seed(0))
    assert tokens.tolist() == [1]
    assert abs(lp.item() - torch.tensor(0.880797).log().item()) < 1e-6

"""The chunked log-probs of :mod:`prorl.logprobs` against the plain full-logits computation: values, entropy and
gradients in float64 on tiny models of several architectures, the custom autograd function on its own, the
precision of the head, the fallback for heads it does not handle, and peak memory that does not grow with the
vocabulary."""

from __future__ import annotations

import warnings

import pytest
import torch

from prorl.logprobs import (ChunkedHeadLogprobs, chunked_head_applies, full_logits_logprobs, output_head,
                            token_logprobs)

VOCAB = 61


def tiny(arch: str, **extra):
    """A randomly initialised float64 causal LM of ``arch``, a few thousand parameters."""
    import transformers as tf

    small = dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=64)
    configs = {
        "qwen2": lambda: tf.Qwen2Config(tie_word_embeddings=True, **small),
        "llama": lambda: tf.LlamaConfig(tie_word_embeddings=False, **small),
        "qwen3": lambda: tf.Qwen3Config(head_dim=8, **small),
        "gemma2": lambda: tf.Gemma2Config(head_dim=8, final_logit_softcapping=2.0, query_pre_attn_scalar=8, **small),
        "phi": lambda: tf.PhiConfig(**{k: v for k, v in small.items() if k != "num_key_value_heads"}),
        "gpt2": lambda: tf.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=64),
    }
    torch.manual_seed(0)
    config = configs[arch]()
    for key, value in extra.items():
        setattr(config, key, value)
    model = tf.AutoModelForCausalLM.from_config(config).double()
    with torch.no_grad():  # logits of a few units, so a soft-cap of 2 really bends them
        for p in model.parameters():
            p.mul_(4.0 if p.dim() == 2 else 1.0)
    return model.eval()


def ragged_batch(T=7, P=5, B=3, seed=1, left_padding=True):
    """``[left-padded prompt | right-padded response]`` with different prompt and response lengths per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (B, P + T), generator=g)
    prompt_len, response_len = ([5, 3, 2] if left_padding else [5, 5, 5]), [7, 4, 1]
    am = torch.zeros(B, P + T, dtype=torch.long)
    rm = torch.zeros(B, T)
    for i in range(B):
        am[i, P - prompt_len[i]:P + response_len[i]] = 1
        rm[i, :response_len[i]] = 1
    ids = ids.masked_fill(am == 0, 0)
    return ids, am, rm, T


ARCHS = ["qwen2", "llama", "qwen3", "gemma2", "phi", "gpt2"]


@pytest.mark.parametrize("arch", ARCHS)
def test_equal_to_full_logits_values_and_gradients(arch):
    model = tiny(arch)
    assert chunked_head_applies(model), f"{arch} took the fallback: this test would compare the fallback to itself"
    # Gemma2's eager attention turns a left-padded row into NaN (a fully masked query row), in transformers itself.
    ids, am, rm, T = ragged_batch(left_padding=arch != "gemma2")
    weights = torch.randn(rm.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def run(fn, **kw):
        model.zero_grad(set_to_none=True)
        lp, ent = fn(model, ids, am, T, temperature=0.7, with_entropy=True, **kw)
        ((lp * weights * rm).sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return lp, ent, grads

    want_lp, want_ent, want_grads = run(full_logits_logprobs)
    got_lp, got_ent, got_grads = run(token_logprobs, response_mask=rm, chunk_tokens=3)  # several chunks
    keep = rm.bool()
    assert torch.equal(got_lp[~keep], torch.zeros_like(got_lp[~keep]))
    assert got_lp.dtype == want_lp.dtype == torch.float64
    assert torch.allclose(got_lp[keep], want_lp[keep], rtol=0, atol=1e-12)
    assert torch.allclose(got_ent[keep], want_ent[keep], rtol=0, atol=1e-12)
    assert not got_ent.requires_grad
    assert set(got_grads) == set(want_grads)
    for name, g in want_grads.items():
        assert torch.allclose(got_grads[name], g, rtol=1e-9, atol=1e-10), name
    if arch == "qwen2":  # tied: the head's gradient lands on the one shared tensor
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def _head_inputs(dtype=torch.float64, bias=True, n=9, vocab=23, hidden=6):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(n, hidden, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(vocab, hidden, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(vocab, generator=g, dtype=dtype, requires_grad=True) if bias else None
    t = torch.randint(0, vocab, (n,), generator=g)
    return h, w, b, t


@pytest.mark.parametrize("softcap", [None, 1.5])
@pytest.mark.parametrize("bias", [False, True])
def test_autograd_function_passes_gradcheck(softcap, bias):
    h, w, b, t = _head_inputs(bias=bias)

    def f(h, w, *b):
        return ChunkedHeadLogprobs.apply(h, w, b[0] if b else None, t, 0.8, softcap, 4, False, torch.float64)[0]

    assert torch.autograd.gradcheck(f, (h, w, *([b] if bias else [])), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("softcap", [None, 1.5])
def test_entropy_gradient_passes_gradcheck(softcap):
    """With entropy_grad the entropy is differentiable too: a loss mixing log-probs and entropies checks both."""
    h, w, b, t = _head_inputs()
    mix = torch.randn(9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def f(h, w, b):
        lp, ent = ChunkedHeadLogprobs.apply(h, w, b, t, 0.8, softcap, 4, True, torch.float64, True)
        return lp + mix * ent

    assert torch.autograd.gradcheck(f, (h, w, b), eps=1e-6, atol=1e-8)
    only_entropy = lambda h, w, b: ChunkedHeadLogprobs.apply(h, w, b, t, 0.8, softcap, 4, True,  # noqa: E731
                                                             torch.float64, True)[1]
    assert torch.autograd.gradcheck(only_entropy, (h, w, b), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_entropy_gradient_equals_the_full_logits_one(arch):
    model = tiny(arch)
    ids, am, rm, T = ragged_batch()
    weights = torch.randn(rm.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def run(fn, **kw):
        model.zero_grad(set_to_none=True)
        lp, ent = fn(model, ids, am, T, temperature=0.7, with_entropy=True, entropy_grad=True, **kw)
        ((lp * weights * rm).sum() + (ent * rm).sum() * 0.3).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    want, got = run(full_logits_logprobs), run(token_logprobs, response_mask=rm, chunk_tokens=3)
    assert set(got) == set(want)
    for name, g in want.items():
        assert torch.allclose(got[name], g, rtol=1e-9, atol=1e-10), name
    model.zero_grad(set_to_none=True)
    lp, _ = token_logprobs(model, ids, am, T, temperature=0.7, response_mask=rm, chunk_tokens=3)
    (lp * weights * rm).sum().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert any((plain[n] - g).abs().max() > 1e-6 for n, g in want.items())  # the entropy term changed the gradient


def test_autograd_function_matches_the_formula():
    h, w, b, t = _head_inputs()
    lp, ent = ChunkedHeadLogprobs.apply(h, w, b, t, 0.8, 1.5, 4, True, torch.float64)
    z = 1.5 * torch.tanh((h @ w.t() + b) / 1.5) / 0.8  # [n, V]
    want = torch.log_softmax(z, -1).gather(-1, t[:, None]).squeeze(-1)
    p = torch.softmax(z, -1)
    assert torch.allclose(lp, want, rtol=0, atol=1e-12)
    assert torch.allclose(ent, -(p * p.log()).sum(-1), rtol=0, atol=1e-12)


def test_fp32_head_ignores_autocast_and_bf16_head_does_not():
    h, w, b, t = _head_inputs(dtype=torch.float32, n=64, vocab=5000, hidden=32)
    plain, _ = ChunkedHeadLogprobs.apply(h, w, b, t, 1.0, None, 16, False, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fp32, _ = ChunkedHeadLogprobs.apply(h, w, b, t, 1.0, None, 16, False, torch.float32)
        bf16, _ = ChunkedHeadLogprobs.apply(h, w, b, t, 1.0, None, 16, False, torch.bfloat16)
    assert torch.equal(fp32, plain)
    assert (bf16 - plain).abs().max() > 1e-3  # bf16 logits really are coarser: the setting matters


def test_fp32_head_under_autocast_in_token_logprobs():
    model = tiny("qwen2").float()
    ids, am, rm, T = ragged_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model.base_model(input_ids=ids, attention_mask=am, use_cache=False,
                                  position_ids=(am.cumsum(-1) - 1).clamp(min=0)).last_hidden_state
        got, _ = token_logprobs(model, ids, am, T, response_mask=rm, fp32_head=True)
    head = model.get_output_embeddings().weight
    logits = hidden[:, -(T + 1):-1].float() @ head.t()  # [B, T, V] in float32, from the same autocast backbone
    want = torch.log_softmax(logits, -1).gather(-1, ids[:, -T:, None]).squeeze(-1)
    assert torch.allclose(got[rm.bool()], want[rm.bool()], atol=1e-5)


def test_a_head_it_does_not_know_falls_back_to_full_logits_with_a_warning():
    class DoubledHead(torch.nn.Linear):  # a Linear whose logits are not h @ W.T: only the probe can tell
        def forward(self, x):
            return 2 * super().forward(x)

    model = tiny("llama")
    old = model.lm_head
    model.lm_head = DoubledHead(old.in_features, old.out_features, bias=False, dtype=torch.float64)
    model.lm_head.weight = old.weight
    assert output_head(model) is not None
    ids, am, rm, T = ragged_batch()
    with pytest.warns(UserWarning, match="full"):
        got, _ = token_logprobs(model, ids, am, T, response_mask=rm)
    want, _ = full_logits_logprobs(model, ids, am, T)
    assert torch.equal(got[rm.bool()], want[rm.bool()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # checked once per model
        token_logprobs(model, ids, am, T, response_mask=rm)


def test_a_logit_scale_takes_the_fallback():
    model = tiny("qwen2", logit_scale=0.5)
    assert output_head(model) is None
    with pytest.warns(UserWarning, match="full"):
        assert not chunked_head_applies(model)


def tensor_peak_bytes(fn) -> int:
    """Peak bytes of live CPU tensors while ``fn`` runs, from the torch profiler's memory timeline."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with warnings.catch_warnings(), profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                                            record_shapes=True, with_stack=True) as prof:
        warnings.simplefilter("ignore")
        fn()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    return max(sum(s) for s in sizes)


def test_peak_memory_does_not_grow_with_the_vocabulary():
    """Forward and backward of 512 tokens: with V = 150k the full logits alone are 307 MB; the chunked head's peak
    over V = 15k grows by the weight, its gradient and the chunks' buffers only."""
    n, hidden, chunk = 512, 8, 16

    def peak(vocab, fn):
        g = torch.Generator().manual_seed(0)
        h = torch.randn(n, hidden, generator=g, requires_grad=True)
        w = torch.randn(vocab, hidden, generator=g, requires_grad=True)
        t = torch.randint(0, vocab, (n,), generator=g)
        return tensor_peak_bytes(lambda: fn(h, w, t).sum().backward())

    def chunked(h, w, t):
        return ChunkedHeadLogprobs.apply(h, w, None, t, 1.0, None, chunk, True, torch.float32)[0]

    def full(h, w, t):
        z = h @ w.t()
        return z.gather(-1, t[:, None]).squeeze(-1) - z.logsumexp(-1)

    small, large = 15_000, 150_000
    growth = peak(large, chunked) - peak(small, chunked)
    per_vocab_entry = 4 * hidden * 2 + 4 * chunk * 4  # weight grad (+ its fp32 accumulator) and <= 4 chunk buffers
    assert growth <= (large - small) * per_vocab_entry, growth
    full_growth = peak(large, full) - peak(small, full)
    assert full_growth >= (large - small) * n * 4  # the full logits: what the chunked head avoids
    assert growth * 10 < full_growth

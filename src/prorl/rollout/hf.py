"""The built-in rollout engine: batched sampling from a Hugging Face causal LM with a KV cache allocated up front.

``generate(model, prompt_ids, ...)`` turns unpadded prompt token lists into a :class:`Rollout`: left-padded
prompts, right-padded responses, the response mask, the sampling log-probs and why each sequence stopped.
The trainer and the evaluator call only this.

How it differs from ``model.generate``:

- The loop is written here and calls the model's ``forward`` directly. ``generate`` re-derives masks,
  positions, logits processors and stopping criteria every step; on a small model those Python steps
  cost a good part of a step (``docs/rollout.md`` has the measured figures).
- The KV cache is allocated before the first forward, ``P + max_new_tokens`` slots per layer, and
  written in place: no tensor grows with ``torch.cat``. For full-attention models it is transformers'
  ``StaticLayer`` returning only its filled prefix (attention never reads the empty slots); models with
  sliding-window layers get transformers' plain ``StaticCache``.
- For full-attention models under ``sdpa`` or ``eager`` the 4D attention mask is built once and
  updated one column per step; the model uses it as is instead of rebuilding it every step. Other
  attention implementations get the 2D padding mask and build their own.
- Rows that finished are dropped from the live batch (and from the cache) each time a quarter of it
  has finished, so a batch with a few long stragglers stops paying for the short ones.
- On CPU, for Qwen2/Qwen3/Llama/Mistral under ``sdpa`` or ``eager``, decode steps use :func:`decode_attention`
  (two matmuls) instead of sdpa, which is slow for a single query on this CPU; prefill still uses sdpa.
  The model's attention implementation is switched for the call and restored after.
- When a model cannot run with the preallocated cache (its forward raises on the first call), the same
  loop runs with a ``DynamicCache`` (``cache="auto"``; ``cache="dynamic"`` forces it); that path grows
  the cache with ``torch.cat`` as ``generate`` does.

Sampling log-probs are ``log_softmax(logits / temperature)`` at the sampled token, taken BEFORE top-p
truncation: the same quantity :func:`prorl.logprobs.token_logprobs` recomputes from the tokens. The
trainer recomputes its ``old_logprobs`` anyway (the sampler may run in another dtype or engine); these
numbers serve the train/inference mismatch metric, which only makes sense if both sides measure the same
distribution. Top-p changes which tokens can be drawn but is not part of the policy being trained.
At ``temperature == 0`` (greedy) the log-probs are those of the untempered logits (temperature 1).

Limits: the ``generator`` must live on the model's device (``torch.multinomial`` requires it). Sampled
tokens depend on the batch composition (chunking, compaction): same seed and same request give the
same tokens, but a sequence's sample changes if the rest of its batch changes. Generation runs under
``torch.inference_mode``; a model that creates or replaces a buffer inside its forward (dynamic RoPE
scaling does) would keep an inference tensor there, which cannot be updated in place afterwards.
One host sync per decode step (the "all finished?" check) costs a little on a GPU.
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Iterable

import torch

from prorl.errors import UserError
from prorl.logprobs import real_token_positions
from prorl.rollout.base import EngineAsleep, RandomStream, Rollout, Sampling


# Compact the live batch once at most this fraction of it is still generating.
COMPACT_BELOW = 0.75


def left_pad(seqs: list[list[int]], pad_token_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(ids [B, P] long, mask [B, P] long)``.

    >>> ids, mask = left_pad([[5, 6, 7], [8]], pad_token_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.as_tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def sample_next(
    logits: torch.Tensor, *, temperature: float, top_p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row and return ``(tokens [B] long, logprobs [B] float32)``.

    ``logits``: ``[B, V]`` float32; it is modified in place (the caller passes a fresh tensor).
    Logits are divided by ``temperature``, the log-probs are read from that distribution, then top-p
    keeps the smallest set of tokens whose probability reaches ``top_p`` and one is drawn with
    ``torch.multinomial``. ``temperature == 0`` takes the argmax and reports untempered log-probs.

    >>> logits = torch.tensor([[0.0, 2.0, 1.0]])
    >>> tok, lp = sample_next(logits.clone(), temperature=0.0, top_p=1.0, generator=None)
    >>> tok.tolist(), round(float(lp), 4)  # log(e^2 / (1 + e^2 + e))
    ([1], -0.4076)
    """
    if temperature == 0:
        tokens = logits.argmax(dim=-1)  # [B]
        logprobs = logits.log_softmax(dim=-1)  # [B, V]
        return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)
    if temperature != 1.0:
        logits.div_(temperature)
    if top_p >= 1.0:
        logprobs = logits.log_softmax(dim=-1)  # [B, V]
        tokens = torch.multinomial(logprobs.exp(), 1, generator=generator)  # [B, 1]
        return tokens.squeeze(-1), logprobs.gather(-1, tokens).squeeze(-1)
    # Work in sorted order: the nucleus is a prefix there, and nothing needs scattering back.
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, V]
    sorted_logprobs = sorted_logits.log_softmax(dim=-1)  # [B, V] the full distribution, before truncation
    probs = sorted_logprobs.exp()  # [B, V]
    # Drop a token when the tokens ranked above it already reach top_p; the top token always stays.
    probs.masked_fill_(probs.cumsum(dim=-1) - probs >= top_p, 0.0)
    picked = torch.multinomial(probs, 1, generator=generator)  # [B, 1] rank of the drawn token
    return order.gather(-1, picked).squeeze(-1), sorted_logprobs.gather(-1, picked).squeeze(-1)


def _forward_kwarg_names(model) -> set[str]:
    """Names of the keyword arguments ``model.forward`` declares (the cache argument changed name in 5.x)."""
    return set(inspect.signature(model.forward).parameters)


# A decode-step attention for CPUs, used in place of sdpa while ``generate`` runs (see decode_attention).
DECODE_ATTENTION = "prorl_cpu_decode"
# Model types whose attention layers call the attention function with nothing beyond q, k, v, mask and
# scaling (no softcap, sinks or position bias, which decode_attention would silently ignore).
DECODE_ATTENTION_MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral")


def decode_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention for one new token per row as two batched matmuls; anything else goes to sdpa.

    On this 2-core CPU, ``scaled_dot_product_attention`` for a single query over a short cache costs
    more than the two matmuls it performs (its kernel is tuned for long queries); this path made a
    whole decode step of the 2M bf16 model ~19% faster and the 20M fp32 one ~2%. Shapes: ``query``
    ``[B, H, 1, D]``, ``key``/``value`` ``[B, KV, n, D]`` (grouped-query heads share a KV head),
    ``attention_mask`` additive ``[B, 1, 1, n]``. Returns ``([B, 1, H, D], None)`` like transformers'
    attention functions. Scores are computed in the model dtype and the softmax in float32, as in
    transformers' eager attention: in bf16 the scores carry bf16 rounding that sdpa avoids.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    B, H, q_len, D = query.shape
    if q_len != 1 or attention_mask is None or attention_mask.dtype == torch.bool or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    KV = key.shape[1]
    scale = scaling if scaling is not None else D ** -0.5
    q = query.reshape(B, KV, H // KV, D)  # [B, KV, g, D]: query heads grouped under their KV head
    scores = torch.matmul(q, key.transpose(-1, -2)).float().mul_(scale).add_(attention_mask)  # [B, KV, g, n]
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)  # [B, KV, g, D]
    return out.reshape(B, 1, H, D), None


@functools.cache
def _register_decode_attention() -> str:
    """Add :func:`decode_attention` to transformers' attention functions once; returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(DECODE_ATTENTION, decode_attention)
    return DECODE_ATTENTION


def _wants_decode_attention(model, cache: str) -> bool:
    """Use :func:`decode_attention` for this call: CPU, sdpa or eager, full attention, a known model type."""
    return (
        cache != "dynamic"
        and next(model.parameters()).device.type == "cpu"
        and getattr(model.config, "model_type", None) in DECODE_ATTENTION_MODEL_TYPES
        and getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager")
        and _all_full_attention(model)
    )


def _all_full_attention(model) -> bool:
    """True when every attention layer of ``model`` sees the whole past (no sliding window)."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        return False
    return not (getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", False))


def _prebuilt_mask_kind(model) -> str | None:
    """``"bool"`` or ``"additive"`` when a 4D mask built here is valid for ``model``, else ``None``.

    A prebuilt mask must match what the model's attention expects: sdpa takes a boolean mask
    (True = attend), eager adds the mask to the scores. Sliding-window layers need a different mask
    per layer type, so such models get the 2D mask and build their own.
    """
    if not _all_full_attention(model):
        return None
    impl = getattr(model.config, "_attn_implementation", None)
    return {"sdpa": "bool", "eager": "additive", DECODE_ATTENTION: "additive"}.get(impl)


@functools.cache
def _prefix_layer_class():
    """A ``StaticLayer`` that returns only the filled prefix of its preallocated buffers.

    ``StaticLayer.update`` writes in place and hands attention the whole ``max_cache_len`` buffer, so every
    decode step attends over (masked) empty slots too: up to twice the attention work over a long
    response. This subclass returns views of the first ``filled`` slots instead: still no reallocation,
    no ``torch.cat``. Valid for full-attention layers only (a sliding layer's buffer is a ring).
    """
    from transformers.cache_utils import StaticLayer

    class PrefixStaticLayer(StaticLayer):
        def __init__(self, max_cache_len: int, **kwargs):
            super().__init__(max_cache_len=max_cache_len, **kwargs)
            self.filled = 0

        def update(self, key_states, value_states, *args, **kwargs):
            keys, values = super().update(key_states, value_states, *args, **kwargs)
            self.filled += key_states.shape[-2]
            return keys[:, :, : self.filled], values[:, :, : self.filled]

        def batch_select_indices(self, indices):
            # A new, smaller buffer: later updates write into it in place as before.
            self.keys, self.values = self.keys[indices], self.values[indices]

        def get_mask_sizes(self, *args, **kwargs):
            # Called before update: the keys attention will see are the filled ones plus the new queries.
            query_length = kwargs.get("query_length", args[0] if args else None)
            if not isinstance(query_length, int):
                query_length = int(query_length.shape[0])  # older signature: cache_position
            return self.filled + query_length, 0

    return PrefixStaticLayer


def _make_cache(model, kind: str, max_cache_len: int):
    """The KV cache for one batch: ``"prefix"`` (preallocated, prefix views), ``"static"`` or ``"dynamic"``."""
    from transformers import DynamicCache, StaticCache
    from transformers.cache_utils import Cache

    if kind == "prefix":
        config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
        layer = _prefix_layer_class()
        return Cache(layers=[layer(max_cache_len) for _ in range(config.num_hidden_layers)])
    if kind == "static":
        return StaticCache(config=model.config, max_cache_len=max_cache_len)
    return DynamicCache()


@torch.inference_mode()
def _generate_batch(
    model,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    eos: torch.Tensor,
    pad_token_id: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    cache: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch, one forward per step. Returns ``(prompt_ids, prompt_mask, tokens, mask, logprobs, stopped)``.

    ``tokens``/``mask``/``logprobs`` are ``[B, steps]`` where ``steps`` is the number of decode steps run;
    ``stopped`` is ``[B]`` bool (an EOS token was sampled). Runs under ``torch.inference_mode`` (about 8%
    faster than ``no_grad`` on a 2M model here); the returned tensors are inference tensors, which
    :func:`generate` copies into ordinary ones (``torch.cat``) so the trainer can use them in autograd.
    """
    device = next(model.parameters()).device
    names = _forward_kwarg_names(model)
    cache_arg = "cache" if "cache" in names else "past_key_values"
    ids, pmask = left_pad(prompt_ids, pad_token_id, device)  # [B, P]
    B, P = ids.shape
    L = P + max_new_tokens  # cache slots: the prompt, then one per decode step

    kind = cache
    if cache == "static" and _all_full_attention(model):
        kind = "prefix"
    kv = _make_cache(model, kind, L)
    mask_kind = _prebuilt_mask_kind(model) if kind == "prefix" else None

    # Attention masks are written once here and updated one column per step, never re-created.
    mask2d = torch.zeros((B, L), dtype=torch.long, device=device)  # [B, L] 1 where a slot holds a real token
    mask2d[:, :P] = pmask
    if mask_kind is not None:
        keep = mask2d.bool()[:, None, None, :]  # [B, 1, 1, L]
        causal = torch.ones((P, P), dtype=torch.bool, device=device).tril()  # [P, P] query i sees slots <= i
        prefill_keep = keep[..., :P] & causal  # [B, 1, P, P]
        if mask_kind == "bool":
            prefill_mask, step_mask, attend = prefill_keep, keep.clone(), True  # step_mask: [B, 1, 1, L]
        else:
            neg = torch.finfo(model.dtype).min
            prefill_mask = torch.zeros(prefill_keep.shape, dtype=model.dtype, device=device).masked_fill_(~prefill_keep, neg)
            step_mask = torch.zeros(keep.shape, dtype=model.dtype, device=device).masked_fill_(~keep, neg)
            attend = 0.0
    positions = real_token_positions(pmask)  # [B, P]: a left-padded prompt starts at 0, as in the trainer
    next_pos = pmask.sum(-1, keepdim=True)  # [B, 1] position of the first generated token
    cache_positions = torch.arange(L, device=device)  # [L]
    pass_cache_position = "cache_position" in names
    keep_last = "logits_to_keep" in names

    def forward(step_ids, step_positions, start, width):
        """Logits ``[B, V]`` float32 for the last of ``width`` new tokens written at cache slot ``start``."""
        kwargs = {cache_arg: kv, "use_cache": True}
        if keep_last:
            kwargs["logits_to_keep"] = 1  # skip the [B, P, V] prefill logits where the model allows
        if pass_cache_position:
            kwargs["cache_position"] = cache_positions[start:start + width]
        if mask_kind is not None:
            attn = prefill_mask if start == 0 else step_mask[..., :start + width]
        elif kind == "static":
            attn = mask2d  # a StaticCache sizes the model's mask to all L slots (future slots are 0)
        else:
            attn = mask2d[:, :start + width]
        out = model(input_ids=step_ids, attention_mask=attn, position_ids=step_positions, **kwargs)
        return out.logits[:, -1, :].float()

    tokens = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)  # [B, max_new]
    logprobs = torch.zeros((B, max_new_tokens), dtype=torch.float32, device=device)  # [B, max_new]
    resp_mask = torch.zeros((B, max_new_tokens), dtype=torch.float32, device=device)  # [B, max_new]
    # The live batch shrinks as sequences finish (see below): ``rows`` maps its rows to output rows.
    rows = torch.arange(B, device=device)  # [b]
    finished = torch.zeros(B, dtype=torch.bool, device=device)  # [b]
    can_compact = kind in ("prefix", "dynamic")

    logits = forward(ids, positions, 0, P)
    steps = 0
    for t in range(max_new_tokens):
        tok, lp = sample_next(logits, temperature=temperature, top_p=top_p, generator=generator)  # [b], [b]
        alive = ~finished  # [b]
        tok.masked_fill_(finished, pad_token_id)
        tokens[rows, t] = tok
        logprobs[rows, t] = lp.masked_fill_(finished, 0.0)
        resp_mask[rows, t] = alive.float()
        # ``& alive``: a finished row is fed the pad token, which may itself be an EOS id.
        finished |= torch.isin(tok, eos) & alive
        steps = t + 1
        n_alive = int((~finished).sum())  # the one host sync per step
        if n_alive == 0 or steps == max_new_tokens:
            break
        slot = P + t
        if can_compact and n_alive <= COMPACT_BELOW * finished.shape[0]:
            # Drop finished rows from the cache and every per-row tensor: later steps cost ~n_alive rows.
            # One copy of the cache each time a quarter of the live batch has finished (log-many times).
            keep = (~finished).nonzero().squeeze(-1)  # [n_alive]
            kv.batch_select_indices(keep)
            rows, tok, next_pos, mask2d = rows[keep], tok[keep], next_pos[keep], mask2d[keep]
            finished = finished[keep]
            if mask_kind is not None:
                step_mask = step_mask[keep]
        mask2d[:, slot] = 1
        if mask_kind is not None:
            step_mask[:, :, :, slot] = attend
        logits = forward(tok[:, None], next_pos, slot, 1)
        next_pos += 1
    tokens, resp_mask, logprobs = tokens[:, :steps], resp_mask[:, :steps], logprobs[:, :steps]
    # A sequence stopped iff its last generated token is an EOS (generation ends at the first one).
    lengths = resp_mask.sum(-1).long()  # [B], >= 1
    stopped = torch.isin(tokens.gather(1, (lengths - 1)[:, None]).squeeze(1), eos)  # [B]
    return ids, pmask, tokens, resp_mask, logprobs, stopped


def _check_args(prompt_ids, max_new_tokens, eos_token_ids, temperature, top_p, batch_size, cache) -> None:
    """Raise :class:`~prorl.errors.UserError` naming the first bad argument."""
    if not prompt_ids:
        raise UserError("generate: prompt_ids is empty (expected at least one prompt)")
    for i, p in enumerate(prompt_ids):
        if len(p) == 0:
            raise UserError(f"generate: prompt_ids[{i}] is empty (a prompt needs at least one token)")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise UserError(f"generate: max_new_tokens={max_new_tokens!r}, expected an integer >= 1")
    if not eos_token_ids:
        raise UserError("generate: eos_token_ids is empty (expected the token ids that end a response)")
    if temperature < 0:
        raise UserError(f"generate: temperature={temperature!r}, expected a number >= 0")
    if not 0 < top_p <= 1:
        raise UserError(f"generate: top_p={top_p!r}, expected a number in (0, 1]")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise UserError(f"generate: batch_size={batch_size!r}, expected None or an integer >= 1")
    if cache not in ("auto", "static", "dynamic"):
        raise UserError(f"generate: cache={cache!r}, expected 'auto', 'static' or 'dynamic'")


@torch.no_grad()
def generate(
    model,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    eos_token_ids: list[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    cache: str = "auto",
) -> Rollout:
    """Sample one response per prompt; see the module docstring for the method and its limits.

    ``prompt_ids``: unpadded token lists (repeat a prompt ``n`` times for a group of ``n``).
    ``temperature == 0`` is greedy decoding. ``batch_size`` splits the request into chunks run one
    after another (memory); the chunks' tensors are padded to a common ``P`` and ``T``.
    ``cache``: ``"auto"`` (static cache, falling back to a dynamic cache if the model rejects it),
    ``"static"`` or ``"dynamic"``. The model runs in eval mode and gets its previous mode back after.
    """
    _check_args(prompt_ids, max_new_tokens, eos_token_ids, temperature, top_p, batch_size, cache)
    device = next(model.parameters()).device
    eos = torch.as_tensor(sorted(set(eos_token_ids)), dtype=torch.long, device=device)
    chunk = batch_size or len(prompt_ids)
    was_training = model.training
    model.eval()
    swapped, original = False, getattr(model.config, "_attn_implementation", None)
    if _wants_decode_attention(model, cache):
        try:
            model.set_attn_implementation(_register_decode_attention())
            swapped = True
        except Exception:  # noqa: BLE001 - an optimisation only; the model's attention stays in place
            pass
    try:
        parts = []
        for start in range(0, len(prompt_ids), chunk):
            args = dict(
                max_new_tokens=max_new_tokens, eos=eos, pad_token_id=pad_token_id,
                temperature=temperature, top_p=top_p, generator=generator,
            )
            batch = prompt_ids[start:start + chunk]
            if cache == "auto":
                try:
                    parts.append(_generate_batch(model, batch, cache="static", **args))
                except Exception:  # noqa: BLE001 - any model that rejects StaticCache takes the dynamic path
                    # Models that reject the cache fail in the first forward, before any draw; a later
                    # failure means the retry draws different (still valid) samples from the generator.
                    cache = "dynamic"
                    if swapped:  # decode_attention expects the prebuilt additive mask of the static path
                        model.set_attn_implementation(original)
                        swapped = False
                    parts.append(_generate_batch(model, batch, cache="dynamic", **args))
            else:
                parts.append(_generate_batch(model, batch, cache=cache, **args))
    finally:
        model.train(was_training)
        if swapped:
            model.set_attn_implementation(original)

    return Rollout.cat([
        Rollout(prompt_ids=ids, prompt_mask=pmask, response_ids=tokens, response_mask=mask, logprobs=lps,
                finish_reasons=["stop" if s else "length" for s in stopped.tolist()], num_tokens=int(mask.sum().item()),
                pad_token_id=pad_token_id)
        for ids, pmask, tokens, mask, lps, stopped in parts
    ])


class HFEngine:
    """The built-in engine behind the :class:`~prorl.rollout.base.Engine` contract: :func:`generate` on a
    Hugging Face model held in this process.

    ``HFEngine(model, tokenizer)`` samples from ``model`` itself (evaluation); :meth:`from_policy` makes
    the trainer's generation copy, in ``rollout.dtype`` (the policy itself when the dtypes agree).
    """

    def __init__(self, model, tokenizer):
        from prorl.policy import eos_token_ids

        self.model = model
        self.eos_token_ids = eos_token_ids(model, tokenizer)
        self.pad_token_id = tokenizer.pad_token_id
        self.asleep = False

    @classmethod
    def from_policy(cls, policy, tokenizer, rollout_cfg) -> HFEngine:
        """The generation copy of ``policy`` in ``rollout_cfg.dtype``, synced by :meth:`load_weights`."""
        from prorl.policy import DTYPES

        if policy.dtype == DTYPES[rollout_cfg.dtype]:
            return cls(policy, tokenizer)  # samples from the policy's own parameters
        return cls(copy.deepcopy(policy).to(DTYPES[rollout_cfg.dtype]).eval(), tokenizer)

    def generate(self, prompt_ids: list[list[int]], sampling: Sampling, rng: RandomStream) -> Rollout:
        """``sampling.n`` samples of each prompt (consecutive rows), drawn from ``rng``'s generator on the model's device."""
        if self.asleep:
            raise EngineAsleep("rollout engine hf")
        device = next(self.model.parameters()).device
        return generate(
            self.model, [ids for ids in prompt_ids for _ in range(sampling.n)], max_new_tokens=sampling.max_new_tokens,
            eos_token_ids=self.eos_token_ids, pad_token_id=self.pad_token_id, temperature=sampling.temperature,
            top_p=sampling.top_p, generator=rng.torch_generator(device), batch_size=sampling.batch_size,
        )

    @torch.no_grad()
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy the named tensors into the model, cast to its dtype; every parameter must be given once.

        A tensor that already is the model's parameter (the engine samples from the policy itself) is skipped.
        """
        params = dict(self.model.named_parameters())
        seen = set()
        for name, tensor in named_tensors:
            if name not in params:
                raise KeyError(f"load_weights: the generation model has no parameter {name!r}")
            if params[name].data_ptr() != tensor.data_ptr():
                params[name].copy_(tensor)
            seen.add(name)
        if seen != params.keys():
            raise KeyError(f"load_weights: parameters not given: {sorted(params.keys() - seen)[:5]}")
        self.asleep = False

    def sleep(self) -> None:
        """Nothing to release (the generation copy stays where it is); ``generate`` waits for the next push."""
        self.asleep = True

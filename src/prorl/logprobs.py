"""Per-token log-probabilities and entropy of responses, without ever holding the ``[B, T, V]`` logits.

:func:`token_logprobs` runs the model's backbone once, takes the hidden states that predict the
response tokens, keeps only the real (unpadded) ones, ``[N, H]``, and hands them with the output
embedding ``W [V, H]`` to :class:`ChunkedHeadLogprobs`. That autograd function walks over the tokens
``chunk_tokens`` at a time: it computes one chunk's logits ``[c, V]``, their log-sum-exp, the taken
token's log-prob and (for the metric) the entropy, and lets the chunk go. Its backward recomputes each
chunk's logits from the saved hidden states instead of keeping them. So besides the backbone's own
activations a pass holds ``[N, H]`` hidden states, ``N`` log-sum-exps and a few ``[c, V]`` fp32 buffers,
whatever the response length: at the paper's 16k tokens and 151,936-token vocabulary the full logits
would be 9.7 GB per sequence in fp32 (and as much again for their gradient); one 512-token chunk is 0.3 GB.

The head matmul runs in float32 by default (``model.fp32_head``): a softmax over a large vocabulary in
bfloat16 is a known source of mismatch between the trainer's and the sampler's probabilities. With it off,
the matmul runs in the autocast dtype (or the weights' dtype) and the softmax still in float32.

Heads handled: a linear output layer, tied to the input embedding or not, with or without a bias, and
Gemma-style final logit soft-capping. A model whose logits are anything else (a logit scale, a custom head)
is caught by a one-time check against the model's own logits and takes :func:`full_logits_logprobs`, the
plain computation, with a warning.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import torch

DEFAULT_CHUNK_TOKENS = 512
"""Tokens per head chunk: at V = 151,936 one fp32 chunk of logits is 311 MB (a pass holds two or three)."""


def real_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only, so a left-padded prompt starts at 0 (the trainer's passes and the
    built-in engine's prefill use this one rule)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over the last dimension: ``logsumexp(l) - sum(p * l)``.

    >>> float(entropy_from_logits(torch.zeros(4)))  # uniform over 4: log 4
    1.3862943649291992
    """
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def full_logits_logprobs(model, input_ids, attention_mask, num_response_tokens, *, temperature=1.0,
                         with_entropy=False, entropy_grad=False):
    """The plain computation from the model's full logits ``[B, T, V]`` (the reference for the chunked one).

    Used for models whose head :func:`token_logprobs` does not handle; memory grows with ``T * V``.
    Returns ``(logprobs [B, T], entropy [B, T] or None)`` in float32 (float64 for a float64 model); the entropy
    carries a gradient only with ``entropy_grad``.
    """
    T = num_response_tokens
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=real_token_positions(attention_mask),
                logits_to_keep=T + 1, use_cache=False)
    logits = out.logits[:, :-1, :]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # [B, T, V], >= float32
    targets = input_ids[:, -T:]  # [B, T]
    logprobs = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = entropy_from_logits(logits)  # [B, T]
    return logprobs, entropy


@dataclass(frozen=True)
class Head:
    """A model's output layer as :class:`ChunkedHeadLogprobs` needs it: ``logits = softcap(h @ weight.T + bias)``."""

    weight: torch.Tensor  # [V, H] (the input embedding's tensor when tied)
    bias: torch.Tensor | None  # [V]
    softcap: float | None  # Gemma's final_logit_softcapping: logits = c * tanh(logits / c)


def output_head(model) -> Head | None:
    """The model's head when its logits are ``softcap(h @ W.T + b)`` of its backbone's last hidden state, else None."""
    linear = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(linear, torch.nn.Linear) or getattr(model, "base_model", model) is model:
        return None
    config = model.config
    if getattr(config, "logit_scale", None) not in (None, 1, 1.0) or \
            getattr(config, "logits_scaling", None) not in (None, 1, 1.0):
        return None
    softcap = getattr(config, "final_logit_softcapping", None)
    return Head(linear.weight, linear.bias, float(softcap) if softcap else None)


_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""model -> whether the chunked head reproduces its logits (checked once per model object)."""


def chunked_head_applies(model) -> bool:
    """Whether :func:`token_logprobs` may use the chunked head for ``model``: its head is one :func:`output_head`
    describes, and on a short probe sequence that head applied to the backbone's last hidden state gives the model's
    own logits. Checked once per model object; a model that fails is announced with a warning and takes the
    full-logits computation."""
    if model in _checked:
        return _checked[model]
    head = output_head(model)
    ok = head is not None
    if ok:
        device = next(model.parameters()).device
        ids = (torch.arange(12, device=device) * 7919 % head.weight.shape[0]).unsqueeze(0)  # [1, 12]
        was_training = model.training
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            theirs = model(input_ids=ids, use_cache=False).logits[0]  # [12, V]
            hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state[0]  # [12, H]
            acc = torch.promote_types(head.weight.dtype, torch.float32)
            bias = head.bias.to(acc) if head.bias is not None else None
            ours, _ = _chunk_logits(hidden.to(acc), head.weight.to(acc), bias, head.softcap)
        model.train(was_training)
        # Rounding of the model's own logits in its dtype, relative to their scale; a wrong head is off by O(1).
        tol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(theirs.dtype, 3e-2)
        ok = bool((ours - theirs.to(acc)).abs().max() <= tol * theirs.abs().max().to(acc) + 1e-12)
    if not ok:
        warnings.warn(f"{type(model).__name__}: its logits are not a linear head over the backbone's last hidden "
                      "state as prorl's chunked log-probs compute them; using the full [B, T, V] logits (memory grows "
                      "with response length times vocabulary)", UserWarning, stacklevel=3)
    _checked[model] = ok
    return ok


def token_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_response_tokens: int,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    response_mask: torch.Tensor | None = None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    fp32_head: bool = True,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (and entropy) of the response tokens under ``model``, at sampling temperature.

    ``input_ids``/``attention_mask``: ``[B, P + T]``, the response in the last ``T`` columns. ``response_mask``
    ``[B, T]``: only its nonzero positions are computed (the rest are 0); None computes every position.
    Returns ``(logprobs [B, T], entropy [B, T] or None)``, in float32 (float64 for a float64 model); the entropy
    has a gradient only with ``entropy_grad`` (an entropy bonus). Logits are divided
    by ``temperature`` so the numbers describe the distribution the rollouts were sampled from.
    """
    if not chunked_head_applies(model):
        lp, ent = full_logits_logprobs(model, input_ids, attention_mask, num_response_tokens,
                                       temperature=temperature, with_entropy=with_entropy, entropy_grad=entropy_grad)
        if response_mask is not None:
            keep = response_mask.bool()
            lp, ent = lp.masked_fill(~keep, 0.0), (ent.masked_fill(~keep, 0.0) if ent is not None else None)
        return lp, ent
    return _chunked(model, output_head(model), input_ids, attention_mask, num_response_tokens, temperature=temperature,
                    with_entropy=with_entropy, response_mask=response_mask, chunk_tokens=chunk_tokens,
                    fp32_head=fp32_head, entropy_grad=entropy_grad)


def _chunked(model, head: Head, input_ids, attention_mask, T, *, temperature, with_entropy, response_mask,
             chunk_tokens, fp32_head, entropy_grad=False):
    out = model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                           position_ids=real_token_positions(attention_mask), use_cache=False)
    hidden = out.last_hidden_state[:, -(T + 1):-1]  # [B, T, H]: position i predicts response token i
    targets = input_ids[:, -T:]  # [B, T]
    keep = response_mask.bool() if response_mask is not None else torch.ones_like(targets, dtype=torch.bool)
    device = hidden.device.type
    if fp32_head:
        dtype = torch.promote_types(head.weight.dtype, torch.float32)
    elif torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    else:
        dtype = head.weight.dtype
    lp, ent = ChunkedHeadLogprobs.apply(hidden[keep], head.weight, head.bias, targets[keep], float(temperature),
                                        head.softcap, int(chunk_tokens), bool(with_entropy), dtype,
                                        bool(with_entropy and entropy_grad))  # [N]
    zeros = torch.zeros(targets.shape, dtype=lp.dtype, device=hidden.device)  # [B, T]
    logprobs = zeros.masked_scatter(keep, lp)
    entropy = zeros.masked_scatter(keep, ent) if with_entropy else None
    return logprobs, entropy


def _chunk_logits(h, weight, bias, softcap):
    """Logits of one chunk ``[c, V]`` in float32 (float64 for float64 inputs), soft-capped when ``softcap`` is set,
    and ``tanh(raw / softcap)`` (else None)."""
    raw = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())
    raw = raw.to(torch.promote_types(raw.dtype, torch.float32))
    if softcap is None:
        return raw, None
    t = torch.tanh(raw / softcap)
    return t * softcap, t


class ChunkedHeadLogprobs(torch.autograd.Function):
    """``(hidden [N, H], W [V, H], b [V] or None, targets [N]) -> (log-prob [N], entropy [N] or empty)``.

    ``log-prob = z[target] - logsumexp(z)`` and ``entropy = logsumexp(z) - sum(softmax(z) * z)`` with
    ``z = softcap(hidden @ W.T + b) / temperature``, computed ``chunk`` tokens at a time with the matmul in
    ``dtype`` and everything after it in float32 (float64 when ``dtype`` is). The backward recomputes each chunk's
    logits. Gradients flow through the log-probs to ``hidden``, ``W`` and ``b``; through the entropy too with
    ``entropy_grad`` (``dH/dz = -p * (log p + H)``; one more ``[c, V]`` buffer in the backward), otherwise the
    entropy is a metric and has none.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, softcap, chunk, with_entropy, dtype,
                entropy_grad=False):
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            n = hidden.shape[0]
            acc = torch.promote_types(dtype, torch.float32)
            logprobs = torch.empty(n, dtype=acc, device=hidden.device)
            log_z = torch.empty(n, dtype=acc, device=hidden.device)
            entropy = torch.empty(n if with_entropy else 0, dtype=acc, device=hidden.device)
            for s in range(0, n, chunk):
                z, _ = _chunk_logits(hidden[s:s + chunk].to(dtype), w, b, softcap)  # [c, V]
                z.div_(temperature)
                # Two [c, V] buffers at most: the logits and the exponentials (reused for p * z).
                top = z.amax(-1, keepdim=True)  # [c, 1]
                e = (z - top).exp_()  # [c, V]
                total = e.sum(-1, keepdim=True)  # [c, 1]
                lse = (top + total.log()).squeeze(-1)  # [c]
                log_z[s:s + chunk] = lse
                logprobs[s:s + chunk] = z.gather(-1, targets[s:s + chunk, None]).squeeze(-1) - lse
                if with_entropy:
                    entropy[s:s + chunk] = lse - e.div_(total).mul_(z).sum(-1)
                del z, e  # before the next chunk's logits exist
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, entropy)
        ctx.temperature, ctx.softcap, ctx.chunk, ctx.dtype = temperature, softcap, chunk, dtype
        ctx.entropy_grad = entropy_grad
        if not entropy_grad:
            ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):
        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        with_h_grad = ctx.entropy_grad and grad_entropy is not None
        temperature, softcap, chunk, dtype = ctx.temperature, ctx.softcap, ctx.chunk, ctx.dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        acc = torch.promote_types(dtype, torch.float32)
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=acc, device=bias.device) if need_b else None
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            for s in range(0, hidden.shape[0], chunk):
                h = hidden[s:s + chunk].to(dtype)  # [c, H]
                g = grad_logprobs[s:s + chunk, None].to(acc)  # [c, 1]
                z, t = _chunk_logits(h, w, b, softcap)  # [c, V]
                # d log-prob / d z = onehot(target) - softmax(z); then through / temperature and the soft-cap.
                if with_h_grad:  # plus dH/dz = -p * (log p + H), weighted by the entropy's gradient
                    log_p = z.div_(temperature).sub_(log_z[s:s + chunk, None])  # [c, V]
                    p = log_p.exp()  # [c, V]
                    gh = grad_entropy[s:s + chunk, None].to(acc)  # [c, 1]
                    dz = log_p.add_(entropy[s:s + chunk, None]).mul_(gh).add_(g).mul_(p).neg_()
                    del p
                else:
                    dz = z.div_(temperature).sub_(log_z[s:s + chunk, None]).exp_().mul_(-g)
                dz.scatter_add_(-1, targets[s:s + chunk, None], g)
                dz.div_(temperature)
                if t is not None:
                    dz.mul_(1 - t * t)
                if need_h:
                    grad_h[s:s + chunk] = (dz.to(dtype) @ w).to(hidden.dtype)
                if need_w and dtype == acc:
                    grad_w.addmm_(dz.t(), h)
                elif need_w:
                    grad_w += (dz.t().to(dtype) @ h).to(acc)
                if need_b:
                    grad_b += dz.sum(0)
                del z, dz, t
        grad_w = grad_w.to(weight.dtype) if need_w else None
        grad_b = grad_b.to(bias.dtype) if need_b else None
        return grad_h, grad_w, grad_b, None, None, None, None, None, None, None

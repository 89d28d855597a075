"""A stand-in for the ``vllm`` module (0.33.0) with the surface prorl's vLLM engine uses, on a CPU model.

What it imitates, and the behaviours that make vLLM hard to use correctly:

- ``LLM(**kwargs)`` loads the Hugging Face model from ``model`` (the directory, from disk) and accepts only
  argument names vLLM 0.33.0's ``EngineArgs`` has (a misspelt one is a ``TypeError``, as in vLLM).
- ``generate(prompts, params, use_tqdm=False)``: prompts as ``{"prompt_token_ids": [...]}`` (one that
  leaves no room for a token within ``max_model_len`` is a ``ValueError``, as in vLLM), one
  ``SamplingParams`` per prompt; ``n`` samples seeded ``seed, seed + 1, ...``; stops after a token of
  ``stop_token_ids`` (kept), at ``max_tokens`` or at ``max_model_len``. Log-probs follow
  ``logprobs_mode``: ``raw_logprobs`` (vLLM's default) is the untempered log-softmax, ``processed_logprobs``
  the distribution sampled from, after temperature and top-p renormalisation.
- ``sleep(level)``: level 1 keeps a copy of the weights; level 2 **discards** them (here: overwritten with
  noise, like memory handed back and mapped again). ``wake_up(tags)`` maps memory back and restores
  nothing at level 2. ``generate`` while any part sleeps raises.
- ``collective_rpc("reload_weights", kwargs={"weights_iterator": ...})`` copies the given tensors in
  place; **without** an iterator it reloads the original checkpoint from disk, as vLLM does.

Every call is appended to ``LLM.calls`` for the tests to read. The sampling is a plain loop (a full
forward per token), independent of prorl's engines.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch

__version__ = "0.33.0"

ENGINE_ARGS = {
    "model", "tokenizer", "skip_tokenizer_init", "trust_remote_code", "dtype", "seed", "max_model_len",
    "load_format", "tensor_parallel_size", "distributed_executor_backend", "gpu_memory_utilization",
    "kv_cache_memory_bytes", "max_num_batched_tokens", "max_num_seqs", "max_logprobs", "logprobs_mode",
    "enable_prefix_caching", "enforce_eager", "enable_sleep_mode", "hf_overrides", "generation_config",
    "quantization", "kv_cache_dtype", "enable_chunked_prefill", "disable_log_stats", "compilation_config",
}
"""A subset of vLLM 0.33.0's ``EngineArgs`` field names (``vllm/engine/arg_utils.py``)."""


@dataclass
class SamplingParams:
    """The fields of ``vllm.SamplingParams`` prorl sets (an unknown keyword is a ``TypeError``, as in vLLM)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int | None = 16
    logprobs: int | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    seed: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True


@dataclass
class Logprob:
    logprob: float


@dataclass
class CompletionOutput:
    index: int
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LLM:
    def __init__(self, **kwargs):
        from transformers import AutoModelForCausalLM

        unknown = set(kwargs) - ENGINE_ARGS
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got unexpected keyword arguments {sorted(unknown)}")
        self.kwargs = kwargs
        self.dtype = DTYPES[kwargs.get("dtype", "float32")]
        self.model = AutoModelForCausalLM.from_pretrained(kwargs["model"], dtype=self.dtype).eval()
        self.logprobs_mode = kwargs.get("logprobs_mode", "raw_logprobs")
        self.max_model_len = kwargs.get("max_model_len") or self.model.config.max_position_embeddings
        self.model_config = types.SimpleNamespace(max_model_len=self.max_model_len)
        self.sleeping: set[str] = set()
        self.offloaded: dict | None = None
        self.calls: list[str] = []
        self.received: list[tuple[str, torch.dtype]] = []
        """(name, dtype) of every tensor pushed, in order."""

    # ---------------------------------------------------------------- generation

    def generate(self, prompts, sampling_params, *, use_tqdm=True):
        self.calls.append("generate")
        if self.sleeping:
            raise RuntimeError(f"fake vllm: generate while {sorted(self.sleeping)} sleep")
        if not isinstance(sampling_params, list):
            sampling_params = [sampling_params] * len(prompts)
        for p in prompts:  # vLLM's input check: at least one token must fit
            if len(p["prompt_token_ids"]) >= self.max_model_len:
                raise ValueError(f"The decoder prompt (length {len(p['prompt_token_ids'])}) plus the number of "
                                 f"requested output tokens (at least 1) is longer than the maximum model length")
        return [RequestOutput(list(p["prompt_token_ids"]), [self._sample(list(p["prompt_token_ids"]), params, j)
                                                            for j in range(params.n)])
                for p, params in zip(prompts, sampling_params)]

    @torch.no_grad()
    def _sample(self, prompt: list[int], params: SamplingParams, index: int) -> CompletionOutput:
        gen = torch.Generator().manual_seed(params.seed + index)
        ids, tokens, logprobs, reason = list(prompt), [], [], "length"
        stops = set(params.stop_token_ids or ())
        while len(tokens) < params.max_tokens and len(ids) < self.max_model_len:
            logits = self.model(input_ids=torch.tensor([ids])).logits[0, -1].float()  # [V]
            processed = (logits / params.temperature).log_softmax(-1)
            if params.top_p < 1.0:  # keep the smallest set of most likely tokens reaching top_p, renormalise
                probs = processed.exp()
                order = probs.argsort(descending=True)
                before = probs[order].cumsum(-1) - probs[order]
                drop = torch.zeros_like(probs, dtype=torch.bool)
                drop[order] = before >= params.top_p
                processed = processed.masked_fill(drop, float("-inf")).log_softmax(-1)
            token = int(torch.multinomial(processed.exp(), 1, generator=gen))
            raw = logits.log_softmax(-1)
            lp = processed[token] if self.logprobs_mode == "processed_logprobs" else raw[token]
            ids.append(token)
            tokens.append(token)
            logprobs.append({token: Logprob(float(lp))})
            if token in stops:
                reason = "stop"
                break
        return CompletionOutput(index, tokens, logprobs if params.logprobs is not None else None, reason)

    # ---------------------------------------------------------------- memory and weights

    def sleep(self, level: int = 1, mode: str = "abort"):
        self.calls.append(f"sleep({level})")
        if level >= 1:
            if level == 1:
                self.offloaded = {k: v.clone() for k, v in self.model.state_dict().items()}
            else:
                noise = torch.Generator().manual_seed(1234)
                with torch.no_grad():
                    for p in self.model.parameters():
                        p.copy_(torch.randn(p.shape, generator=noise))
            self.sleeping = {"weights", "kv_cache"}

    def wake_up(self, tags: list[str] | None = None) -> bool:
        self.calls.append(f"wake_up({','.join(tags) if tags else 'all'})")
        woken = set(tags) if tags else {"weights", "kv_cache", "scheduling"}
        if "weights" in woken and "weights" in self.sleeping and self.offloaded is not None:
            self.model.load_state_dict(self.offloaded)
            self.offloaded = None
        self.sleeping -= woken
        return not self.sleeping

    @torch.no_grad()
    def collective_rpc(self, method: str, timeout=None, args=(), kwargs=None):
        kwargs = kwargs or {}
        if method != "reload_weights":
            raise NotImplementedError(f"fake vllm: collective_rpc({method!r})")
        weights = kwargs.get("weights_iterator")
        self.calls.append("reload_weights(iterator)" if weights is not None else "reload_weights(disk)")
        if "weights" in self.sleeping:
            raise RuntimeError("fake vllm: reload_weights while the weights sleep (wake_up(['weights']) first)")
        if weights is None:  # the original checkpoint, from disk
            from transformers import AutoModelForCausalLM

            fresh = AutoModelForCausalLM.from_pretrained(self.kwargs["model"], dtype=self.dtype)
            self.model.load_state_dict(fresh.state_dict())
            return [None]
        params = dict(self.model.named_parameters())
        for name, tensor in weights:
            if name not in params:
                raise KeyError(f"fake vllm: no parameter {name!r}")
            self.received.append((name, tensor.dtype))
            params[name].copy_(tensor)
        return [None]

    def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        self.calls.append("reset_prefix_cache")
        return True

"""The vLLM engine (``rollout.engine: vllm``): generation with vLLM on the training GPU, behind the same
:class:`~prorl.rollout.base.Engine` contract as the built-in engine.

Every vLLM call prorl makes is in this module, written against one pinned release
(:data:`VLLM_VERSION`, the ``prorl[vllm]`` extra); :func:`load_vllm` refuses any other. How it uses vLLM:

- **Built** from the policy's model directory (``vllm.LLM``) in the rollout dtype, in this process
  (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, so the weight push below passes tensors, not copies), with no
  tokenizer (prompts go in as token ids) and no generation-config defaults (``generation_config="vllm"``:
  the recipe's sampling settings are the only ones).
- **Log-probs** are vLLM's ``processed_logprobs``: after temperature and top-p, the distribution the
  token was drawn from. At ``top_p = 1`` that is ``log_softmax(logits / T)``, what the trainer computes.
  Below 1 vLLM renormalises over the nucleus and the built-in engine does not: the two differ by the log
  of the kept mass on every token (docs/rollout.md).
- **Stopping**: exactly at the first of the engine's EOS ids (``stop_token_ids``, the same set as the
  built-in engine), kept in the response with its log-prob; ``finish_reason`` is ``"stop"`` or
  ``"length"``.
- **Seeds** per request: ``rng.request_seeds`` gives one per prompt (vLLM seeds its ``n`` samples
  ``seed, seed + 1, ...``), so a sample depends on (run seed, step, call, prompt) and not on what else is
  in the batch or on vLLM's scheduling.
- **Weights pushed in place** after every update: ``collective_rpc("reload_weights",
  weights_iterator=...)`` with the policy's tensors cast one at a time to the engine's dtype; vLLM's
  layer-wise reload copies them into its own storage (no restart, no file). Never ``reload_weights``
  without an iterator: that reads the original checkpoint from disk, and training would continue on
  rollouts of the base model.
- **Sleep**: with ``rollout.vllm.sleep`` the engine sleeps at level 2 (weights and KV cache released)
  while the trainer works; the push wakes the weights, fills them, then wakes the KV cache. ``generate``
  before that push raises :class:`~prorl.rollout.base.EngineAsleep`.

Evaluation builds the same engine with :meth:`VLLMEngine.for_evaluation` (no sleep, no pushes).
"""

from __future__ import annotations

import os
import warnings
from typing import Iterable

import torch

from prorl.errors import UserError
from prorl.rollout.base import EngineAsleep, RandomStream, Rollout, Sampling

VLLM_VERSION = "0.33.0"
"""The vLLM release this module is written and checked against (``pip install 'prorl[vllm]'``)."""


def load_vllm():
    """The ``vllm`` module, checked to be :data:`VLLM_VERSION` (the one place prorl imports it)."""
    try:
        import vllm
    except ImportError:
        raise UserError("rollout.engine=vllm needs vLLM, which is not installed: pip install 'prorl[vllm]' on a "
                        "machine with a CUDA GPU (or use rollout.engine=hf)") from None
    if vllm.__version__ != VLLM_VERSION:
        raise UserError(f"rollout.engine=vllm is written for vllm=={VLLM_VERSION}, found {vllm.__version__}: "
                        f"pip install 'prorl[vllm]' installs the supported release")
    return vllm


def engine_arguments(model_dir: str, dtype: str, settings, *, sleep: bool) -> dict:
    """The ``vllm.LLM`` keyword arguments for ``settings`` (a :class:`prorl.config.VLLMConfig`)."""
    kwargs = dict(
        model=str(model_dir), dtype=dtype, seed=0, skip_tokenizer_init=True, generation_config="vllm",
        logprobs_mode="processed_logprobs", gpu_memory_utilization=settings.gpu_memory_utilization,
        enable_prefix_caching=settings.prefix_caching, enforce_eager=settings.enforce_eager,
        enable_sleep_mode=sleep,
    )
    if settings.max_model_len is not None:
        kwargs["max_model_len"] = settings.max_model_len
    if settings.fp32_head:
        kwargs["hf_overrides"] = {"head_dtype": "float32"}
    return kwargs | dict(settings.engine_kwargs)


class VLLMEngine:
    """``rollout.engine: vllm``. ``llm`` is a ``vllm.LLM`` built by :meth:`from_policy` or :meth:`for_evaluation`
    (or an object with its surface: the tests use a CPU stand-in), ``vllm`` the module it came from."""

    def __init__(self, llm, vllm, *, eos_token_ids: list[int], pad_token_id: int, dtype: torch.dtype,
                 sleep: bool):
        self.llm, self.vllm = llm, vllm
        self.eos_token_ids = list(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.dtype = dtype
        self.sleeps = sleep
        self.asleep = False
        self.pushes = 0
        """Weight pushes so far (the trainer pushes after every update)."""

    @classmethod
    def build(cls, model_dir, tokenizer, eos_token_ids: list[int], dtype: str, settings, *, sleep: bool) -> VLLMEngine:
        from prorl.policy import DTYPES

        vllm = load_vllm()
        # In this process: the weight push hands vLLM an iterator over the trainer's tensors.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        try:
            llm = vllm.LLM(**engine_arguments(model_dir, dtype, settings, sleep=sleep))
        except TypeError as exc:  # an argument this vLLM does not have: most likely from engine_kwargs
            raise UserError(f"rollout.vllm.engine_kwargs: vllm.LLM rejected the arguments ({exc})") from None
        return cls(llm, vllm, eos_token_ids=eos_token_ids, pad_token_id=tokenizer.pad_token_id,
                   dtype=DTYPES[dtype], sleep=sleep)

    @classmethod
    def from_policy(cls, policy, tokenizer, rollout_cfg) -> VLLMEngine:
        """The trainer's engine: built from the directory ``policy`` was loaded from, synced by :meth:`load_weights`."""
        from prorl.policy import eos_token_ids

        if rollout_cfg.top_p < 1:
            warnings.warn(f"rollout.top_p={rollout_cfg.top_p} with the vllm engine: its log-probs are renormalised over "
                          f"the nucleus, so they and the importance weights differ from the trainer's by the kept "
                          f"mass on every token (docs/rollout.md); rollout.top_p=1 keeps them comparable")
        engine = cls.build(policy.name_or_path, tokenizer, eos_token_ids(policy, tokenizer), rollout_cfg.dtype,
                           rollout_cfg.vllm, sleep=rollout_cfg.vllm.sleep)
        engine.load_weights(policy.named_parameters())  # the policy in memory, whatever the directory holds
        return engine

    @classmethod
    def for_evaluation(cls, model_dir, tokenizer, eos_token_ids: list[int], dtype: str, settings) -> VLLMEngine:
        """An engine that samples the checkpoint in ``model_dir`` as it is (``prorl eval --engine vllm``)."""
        return cls.build(model_dir, tokenizer, eos_token_ids, dtype, settings, sleep=False)

    def generate(self, prompt_ids: list[list[int]], sampling: Sampling, rng: RandomStream) -> Rollout:
        """``sampling.n`` samples of each prompt (consecutive rows); one seed per prompt from ``rng``."""
        if self.asleep:
            raise EngineAsleep("rollout engine vllm")
        seeds = rng.request_seeds(len(prompt_ids))
        # vLLM refuses a prompt that leaves no room for a token; such a prompt gets n empty responses (finish
        # "length", reward as scored) instead of ending the run.
        limit = self.llm.model_config.max_model_len
        fits = [len(p) < limit for p in prompt_ids]
        if not all(fits):
            shortest = min(len(p) for p, ok in zip(prompt_ids, fits) if not ok)
            warnings.warn(f"{fits.count(False)} prompt(s) of {shortest}+ tokens leave no room "
                          f"for a response within rollout.vllm.max_model_len={limit}: their samples are empty")
        params = [self.vllm.SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_new_tokens,
            logprobs=0, stop_token_ids=self.eos_token_ids, include_stop_str_in_output=True, seed=seed,
            detokenize=False, skip_special_tokens=False,
        ) for seed, ok in zip(seeds, fits) if ok]
        requests = [{"prompt_token_ids": list(p)} for p, ok in zip(prompt_ids, fits) if ok]
        outputs = iter(self.llm.generate(requests, params, use_tqdm=False) if requests else [])
        prompts, responses, logprobs, finish = [], [], [], []
        for prompt, ok in zip(prompt_ids, fits):
            samples = next(outputs).outputs if ok else [None] * sampling.n
            if len(samples) != sampling.n:
                raise RuntimeError(f"vllm returned {len(samples)} samples for a prompt, expected {sampling.n}")
            for sample in samples:
                tokens, lps, reason = self._checked(sample) if sample is not None else ([], [], "length")
                prompts.append(list(prompt))
                responses.append(tokens)
                logprobs.append(lps)
                finish.append(reason)
        return Rollout.from_lists(prompts, responses, logprobs, finish, self.pad_token_id)

    def _checked(self, sample) -> tuple[list[int], list[float], str]:
        """A vLLM sample's tokens, sampled-token log-probs and finish reason, checked against the contract."""
        tokens = list(sample.token_ids)
        if sample.logprobs is None or len(sample.logprobs) != len(tokens):
            raise RuntimeError(f"vllm returned {0 if sample.logprobs is None else len(sample.logprobs)} log-probs "
                               f"for {len(tokens)} tokens")
        lps = [float(position[token].logprob) for position, token in zip(sample.logprobs, tokens)]
        reason = sample.finish_reason
        ends_in_eos = bool(tokens) and tokens[-1] in self.eos_token_ids
        if reason not in ("stop", "length") or (reason == "stop") != ends_in_eos:
            raise RuntimeError(f"vllm finished a sample with {reason!r} (last token {tokens[-1:]}, EOS ids "
                               f"{self.eos_token_ids}): expected 'stop' on a kept EOS token or 'length'")
        return tokens, lps, reason

    def sleep(self) -> None:
        """Release the GPU memory (level 2: weights and KV cache) until the next :meth:`load_weights`."""
        if self.sleeps:
            self.llm.sleep(level=2)
        self.asleep = True

    @torch.no_grad()
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Push the policy's tensors into the running engine, each cast to the engine's dtype as it is sent."""
        was_sleeping = self.asleep and self.sleeps
        if was_sleeping:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # what the trainer freed, before vLLM takes its memory back
            self.llm.wake_up(tags=["weights"])
        weights = ((name, tensor.detach().to(self.dtype)) for name, tensor in named_tensors)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        if was_sleeping:
            self.llm.wake_up(tags=["kv_cache"])
        self.llm.reset_prefix_cache()  # cached prefixes hold keys and values of the old weights
        self.asleep = False
        self.pushes += 1

"""Rollout engines: sample ``n`` responses per prompt and report tokens, log-probs and finish reasons.

The contract is in :mod:`prorl.rollout.base`; :data:`ENGINES` names every engine and
:func:`make_engine` builds the one ``rollout.engine`` asks for. ``hf`` (:mod:`prorl.rollout.hf`) is the
built-in engine: a decode loop on the Hugging Face model, in this process; ``vllm``
(:mod:`prorl.rollout.vllm_engine`) generates with vLLM on the training GPU (the ``prorl[vllm]`` extra).
"""

from __future__ import annotations

import importlib

from prorl.errors import ConfigError
from prorl.rollout.base import Engine, EngineAsleep, RandomStream, Rollout, Sampling
from prorl.rollout.hf import HFEngine, decode_attention, generate, left_pad, sample_next

__all__ = ["ENGINES", "Engine", "EngineAsleep", "HFEngine", "RandomStream", "Rollout", "Sampling", "decode_attention", "generate",
           "engine_target", "left_pad", "make_engine", "sample_next"]

ENGINES = {
    "hf": "prorl.rollout.hf:HFEngine",
    "vllm": "prorl.rollout.vllm_engine:VLLMEngine",
}
"""``rollout.engine`` value -> ``"module:Class"``; the class has ``from_policy(policy, tokenizer, rollout_cfg)``."""


def engine_target(name: str) -> str:
    """``"module:Class"`` of the engine called ``name``; a :class:`ConfigError` naming the setting otherwise."""
    if name not in ENGINES:
        raise ConfigError(f"config key 'rollout.engine': expected one of {', '.join(ENGINES)}, got {name!r}")
    return ENGINES[name]


def make_engine(rollout_cfg, policy, tokenizer) -> Engine:
    """The engine ``rollout_cfg.engine`` names, built for ``policy`` (its generation copy or its server)."""
    module, name = engine_target(rollout_cfg.engine).split(":")
    return getattr(importlib.import_module(module), name).from_policy(policy, tokenizer, rollout_cfg)

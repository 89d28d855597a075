"""Run configuration: frozen dataclasses are the single source of truth.

A recipe is a YAML file of these values; ``key.sub=value`` arguments override it; the resolved
config is written into every run directory and checkpoint. Every field carries a one-line help
string (``prorl train --help`` prints them all). Unknown keys, values of the wrong type, numbers
that are not finite (YAML's ``.nan``/``.inf``) and values out of range are
:class:`~prorl.errors.ConfigError` naming the key, the source (and the stage, for a stage's
overrides) and what was expected: one message, before anything is written.

Plain Python: no torch.

>>> cfg = resolve_config({"rollout": {"n": 8}}, ["algo.clip_high=0.28"])
>>> cfg.rollout.n, cfg.algo.clip_high, cfg.algo.clip_low
(8, 0.28, 0.2)
>>> resolve_config({}, ["train.lr=0"])
Traceback (most recent call last):
...
prorl.errors.ConfigError: config key 'train.lr': expected a learning rate in (0, 1], got 0.0
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prorl.errors import ConfigError


def _f(default, help: str, *, false_means: str | None = None, one_or_many: bool = False, **kw):
    """A dataclass field with a one-line help string. ``false_means``: the string a YAML ``false`` stands for in
    this field (YAML 1.1 reads an unquoted ``off`` as false). ``one_or_many``: a list field that takes a single
    string as a one-element list (``data.train_files=a.jsonl``)."""
    metadata = {"help": help, "false_means": false_means, "one_or_many": one_or_many}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


@dataclass(frozen=True)
class ModelConfig:
    path: str = _f("", "Hugging Face model: a local directory, or a hub id where there is network.")
    dtype: str = _f("float32", "Dtype of the trained weights and the reference (float32 keeps small lr updates exact).")
    chat_template: bool | None = _f(None, "Apply the tokenizer's chat template to prompts (None: when it has one).")
    system_prompt: str | None = _f(None, "System message put before every prompt through the chat template (None: "
                                         "none); a problem's own system message wins. Needs a chat template.")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")
    attn_implementation: str | None = _f(None, "Attention kernel of the trained model and the reference, as "
                                               "transformers names it (eager, sdpa, flash_attention_2, ...); None: "
                                               "the model's default.")
    fp32_head: bool = _f(True, "Run the trainer's output-head matmul (log-probs, entropy) in float32 whatever the "
                               "weights' dtype or autocast.")
    device: str = _f("auto", "Where the policy, reference and generation copy live: auto (cuda when available), cpu, "
                             "cuda or cuda:N.")
    lora_rank: int = _f(0, "Train LoRA adapters of this rank (>= 0) through peft, the base weights frozen; the "
                           "reference is a second adapter on the same base (0: full fine-tuning).")
    lora_alpha: float = _f(16.0, "LoRA scaling alpha (> 0).")
    lora_targets: list = _f(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                            "Module names that get LoRA adapters (peft's target_modules).")
    lora_export_merged: bool = _f(False, "LoRA: also write each checkpoint's merged weights to policy/ (a plain "
                                         "transformers model); the adapters are in adapter/ either way.")


@dataclass(frozen=True)
class DataConfig:
    train_files: list = _f([], "Training problem files (JSONL, Parquet, a saved HF dataset directory, or "
                               "hf:NAME[:SPLIT] through datasets.load_dataset); one may be given without brackets.",
                           one_or_many=True)
    val_files: list = _f([], "Validation problem files; empty uses val_fraction of the training problems.",
                         one_or_many=True)
    adapter: str | None = _f(None, "Source-format adapter for the files (None: our schema or auto-detected).")
    weights: dict = _f({}, "Per-domain mixture weights >= 0, e.g. {math: 0.4, code: 0.2}; empty: proportional "
                           "to size.")
    val_size: int = _f(64, "Validation problems used (the first N >= 0 of the validation set).")
    val_fraction: float = _f(0.05, "Fraction in [0, 1) of training problems held out when val_files is empty.")
    builtin: str | None = _f(None, "Built-in arithmetic instead of files: comma-separated kinds among add, sub, "
                                   "add21, add3, add22, add12, each KIND or KIND:W (W >= 1: drawn W times as "
                                   "often) (validation: their held-out split).")
    skip_bad_rows: bool = _f(False, "Train without the problems their verifier cannot grade (default: such problems stop "
                                    "the run before it starts; `prorl data check` lists them).")


@dataclass(frozen=True)
class VLLMConfig:
    gpu_memory_utilization: float = _f(0.4, "vllm engine: fraction in (0, 1) of the GPU's memory it takes for its "
                                            "weights and KV cache (the trainer needs the rest).")
    max_model_len: int | None = _f(None, "vllm engine: longest prompt + response in tokens, >= 1 (None: the model's "
                                         "context length); a response that reaches it ends with finish 'length'.")
    prefix_caching: bool = _f(True, "vllm engine: reuse the KV cache of shared prompt prefixes (the n samples of a "
                                    "prompt); dropped after every weight push.")
    enforce_eager: bool = _f(False, "vllm engine: no CUDA graphs (starts faster, decodes slower).")
    fp32_head: bool = _f(True, "vllm engine: run its output head in float32 (hf_overrides head_dtype), as the "
                               "trainer's, so the two log-probs agree more closely.")
    sleep: bool = _f(True, "vllm engine: release its GPU memory (weights and KV cache, sleep level 2) while the "
                           "trainer computes log-probs and updates; the push after the update refills it.")
    engine_kwargs: dict = _f({}, "vllm engine: further vllm.LLM keyword arguments, passed as given (they win "
                                 "over prorl's).")


@dataclass(frozen=True)
class RolloutConfig:
    n: int = _f(16, "Samples per prompt (the group size), >= 2: the advantages compare the samples of a prompt.")
    temperature: float = _f(1.2, "Sampling temperature for training rollouts, > 0 (the trainer's log-probs use it).")
    top_p: float = _f(1.0, "Nucleus sampling threshold for training rollouts, in (0, 1].")
    max_new_tokens: int = _f(8192, "Maximum response length in tokens (>= 1); longer responses are cut "
                                   "(finish 'length').")
    batch_size: int | None = _f(None, "Sequences generated per engine call, >= 1 (None: all at once).")
    dtype: str = _f("bfloat16", "Dtype of the generation copy of the policy (synced after every update).")
    engine: str = _f("hf", "Rollout engine (prorl.rollout.ENGINES): hf, the built-in decode loop on the Hugging Face "
                           "model; vllm, vLLM on the training GPU (pip install 'prorl[vllm]').")
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass(frozen=True)
class RewardConfig:
    truncated_reward: float | None = _f(None, "Reward for responses cut at max_new_tokens (None: score them as usual).")
    binarize_logic: bool = _f(False, "Give logic puzzles reward 1 only for a perfect score.")
    length_penalty: str = _f("none", "Length shaping of training rewards: none, or cosine (ProRL v2: the reward "
                                     "falls along a half cosine from length 0 to rollout.max_new_tokens).",
                             false_means="none")
    cosine_correct: list = _f([1.0, 0.5], "cosine: [reward at length 0, reward at rollout.max_new_tokens] of a fully "
                                          "correct response (partial scores mix this with cosine_wrong).")
    cosine_wrong: list = _f([0.0, 0.0], "cosine: [at length 0, at rollout.max_new_tokens] for a score of 0.")
    length_penalty_schedule: list = _f([], "cosine: [on, off] steps, repeated from the start of each stage (the "
                                           "penalty on for `on` steps, then off for `off`); empty: always on.")
    custom: dict = _f({}, "A user's own scorers: {domain: 'module:function'}, each function(problem, response) -> "
                          "Verdict (prorl.verifiers.Verdict), run in the scoring pool with its deadline; a new "
                          "domain name becomes valid in data files.")
    workers: int = _f(2, "Verifier worker processes (0: score in-process, no deadlines).")
    timeout_s: float = _f(30.0, "Hard deadline in seconds (> 0) per scored sample; a verifier past it scores 0.")


@dataclass(frozen=True)
class AlgoConfig:
    clip_low: float = _f(0.2, "PPO lower clip, in [0, 1): ratio is clipped below 1 - clip_low (eps_low).")
    clip_high: float = _f(0.4, "Decoupled upper clip, >= 0: ratio is clipped above 1 + clip_high (eps_high).")
    kl_beta: float = _f(1e-4, "Weight (>= 0) of the KL penalty to the reference policy (0 disables it and the "
                              "reference).")
    kl_kind: str = _f("k3", "KL estimator: k1, k2 or k3.")
    policy_loss: str = _f("ppo", "Policy-gradient term: ppo (clipped surrogate, decoupled bounds), cispo (clipped "
                                 "stop-gradient weight on every token's log-prob; clip_high only), gspo "
                                 "(sequence-level length-normalised ratio, clipped per sequence), clip_cov or kl_cov "
                                 "(entropy control on the tokens of highest cov(log-prob, advantage)).")
    cov_fraction: float | None = _f(None, "clip_cov / kl_cov: fraction in (0, 1] of a micro-batch's tokens acted on "
                                          "(None: the paper's 2e-4 for clip_cov, 2e-3 for kl_cov).")
    cov_bounds: list = _f([1.0, 5.0], "clip_cov: the covariance range [low, high] (low < high) of its candidate tokens.")
    kl_cov_coef: float = _f(1.0, "kl_cov: weight (>= 0) of |log-ratio| on its tokens.")
    rollout_correction: str | None = _f(None, "Importance weights between the trainer's old log-probs and the "
                                              "sampler's, on the policy-gradient term: off, token_tis (truncated, "
                                              "per token), seq_tis (truncated, per sequence), seq_mask (sequence "
                                              "dropped outside the bounds) or icepop (token dropped outside them); "
                                              "None: token_tis with the vllm engine, off with hf.",
                                        false_means="off")
    rollout_correction_bounds: list | None = _f(None, "[low, high] (0 <= low < high) of the importance weights: "
                                                      "truncated to them (tis) or masked outside them (seq_mask, "
                                                      "icepop); None: [0, 2] for token_tis, seq_tis and seq_mask, "
                                                      "[0.5, 5] for icepop.")
    entropy_coef: float = _f(0.0, "Entropy bonus: loss -= coef * aggregate(entropy at the sampling temperature); the "
                                  "fixed coefficient, >= 0, or the starting one with entropy_target (0 and no target: "
                                  "off).")
    entropy_target: float | None = _f(None, "Steer the entropy bonus's coefficient toward keeping actor/entropy at "
                                            "this value, > 0: + entropy_coef_step after a step below it, - after one "
                                            "above (None: a fixed coefficient).")
    entropy_coef_step: float = _f(1e-3, "How much (> 0) the steered coefficient moves per step.")
    entropy_coef_max: float = _f(1e-2, "Upper bound (> 0) of the steered coefficient.")
    loss_agg: str = _f("token-mean", "Loss aggregation: token-mean, seq-mean-token-mean or seq-mean-token-sum-norm.")
    advantage: str = _f("grpo", "Advantages: grpo (group mean/std), drgrpo (group mean only) or rloo-batch-std "
                                 "(REINFORCE++-baseline: group mean, then batch std).")
    dynamic_sampling: bool = _f(True, "Drop groups whose scores are all equal and generate more to refill the batch.")
    max_gen_batches: int = _f(4, "Most generation batches per step (>= 1) when refilling dropped groups.")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = _f(1000, "Training steps (rollout batches, >= 1) when no stages are given.")
    prompts_per_step: int = _f(256, "Prompts (groups) per rollout batch (>= 1).")
    mini_batch_prompts: int = _f(64, "Prompts per optimizer step, a divisor of prompts_per_step: "
                                     "prompts_per_step / mini_batch_prompts updates a batch.")
    micro_batch_size: int = _f(16, "Sequences per forward/backward pass, >= 1 (memory; does not change the gradient).")
    max_tokens_per_micro_batch: int = _f(0, "Token budget per forward/backward pass, >= 0: sequences sorted by length "
                                            "and packed up to it (padded size), instead of micro_batch_size "
                                            "sequences (0: off).")
    head_chunk_tokens: int = _f(512, "Tokens per chunk (>= 1) of the output-head computation of log-probs: "
                                     "the most [tokens, vocab] logits held at once.")
    epochs: int = _f(1, "Passes over each rollout batch (>= 1).")
    lr: float = _f(2e-6, "AdamW learning rate, in (0, 1] (constant after warm-up).")
    warmup_steps: int = _f(0, "Optimizer steps (>= 0) of linear learning-rate warm-up (restarts after an "
                              "optimizer reset).")
    weight_decay: float = _f(0.01, "AdamW weight decay (>= 0).")
    betas: list = _f([0.9, 0.999], "AdamW betas: two numbers in [0, 1).")
    grad_clip: float = _f(1.0, "Clip the gradient's global norm to this value, >= 0 (0: no clipping).")
    autocast_bf16: bool | None = _f(None, "Run training forward/backward under bfloat16 autocast (weights stay in "
                                          "model.dtype); None: where the device has native bf16 (CUDA with bf16, a "
                                          "CPU with avx512_bf16 or AMX).")
    seed: int = _f(0, "Seed for data order, sampling and shuffling.")


@dataclass(frozen=True)
class ResetConfig:
    every: int = _f(0, "Hard reference reset every N >= 0 steps (0: never on schedule).")
    keep_optimizer: bool = _f(False, "Keep the optimizer state at a reset (ProRL v2); default re-initialises it.")
    val_patience: int = _f(0, "Reset when validation pass@1 has not improved for this many (>= 0) validations "
                              "(0: off).")
    kl_threshold: float = _f(0.0, "Reset when the mean KL to the reference exceeds this, >= 0 (0: off).")
    kl_share_threshold: float = _f(0.0, "Reset when the KL term's share of the loss (actor/kl_share) exceeds this, "
                                        "in [0, 1), for kl_share_patience steps in a row (0: off).")
    kl_share_patience: int = _f(3, "Steps in a row (>= 1) above kl_share_threshold that trigger a reset.")


@dataclass(frozen=True)
class ValidationConfig:
    every: int = _f(50, "Validate every N >= 0 steps (0: never during training).")
    n: int = _f(4, "Samples per validation problem, >= 1 (pass@1 is estimated from them).")
    temperature: float = _f(0.6, "Validation sampling temperature, >= 0 (0: greedy).")
    top_p: float = _f(0.95, "Validation nucleus threshold, in (0, 1].")
    max_new_tokens: int | None = _f(None, "Validation response limit, >= 1 (None: the rollout limit).")
    at_start: bool = _f(True, "Validate before the first step too.")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = _f(100, "Checkpoint every N >= 0 steps (0: only at the end).")
    keep_last: int = _f(2, "Checkpoints to keep, >= 1 (older ones are deleted; 0 would delete the one just "
                           "written).")


@dataclass(frozen=True)
class LogConfig:
    rollouts_every: int = _f(10, "Write sampled rollouts to rollouts/step_N.jsonl every N >= 0 steps (0: never).")
    rollouts_per_step: int = _f(16, "How many rollouts (>= 0) to write each time.")
    progress: bool = _f(True, "Show a progress bar.")
    tensorboard: bool = _f(False, "Also write TensorBoard event files to RUN/tensorboard (pip install "
                                  "'prorl[tensorboard]').")
    wandb: str | None = _f(None, "Also log to this Weights & Biases project (pip install 'prorl[wandb]'); a resumed "
                                 "run continues its W&B run.")
    wandb_mode: str | None = _f(None, "W&B mode: online or offline (None: wandb's default or WANDB_MODE).")


@dataclass(frozen=True)
class Config:
    run_dir: str = _f("runs/prorl", "Run directory: config, metrics, events, rollouts, checkpoints.")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    reset: ResetConfig = field(default_factory=ResetConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    stages: list = _f([], "Stages (the paper's Run 1..8): list of {name, steps, reset, overrides: {key.sub: value}}.")


# ---------------------------------------------------------------- merging and validation

def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits a field annotation (ints are accepted where floats are expected)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | {"Any": Any})  # annotations are strings (future import)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (list, dict, str, bool):
        return isinstance(value, annotation)
    return True


def _looks_float(text: str) -> bool:
    """Whether ``text`` spells a number, finite or not (``"1e-3"``, ``"nan"``, ``"inf"``).

    >>> _looks_float("1e-3"), _looks_float("nan"), _looks_float("fast")
    (True, True, False)
    """
    try:
        float(text)
    except ValueError:
        return False
    return True


def _describe(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _build(cls, values: dict, where: str, prefix: str = ""):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = [k for k in fields if k.startswith(str(key)[:3])]
            hint = f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""
            raise ConfigError(f"{where}: unknown config key '{prefix}{key}'{hint}; valid keys: "
                              f"{', '.join(prefix + k for k in fields)}")
        f = fields[key]
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            kwargs[key] = _build(f.default_factory, value, where, f"{prefix}{key}.")
            continue
        if isinstance(value, str) and f.metadata.get("one_or_many"):
            value = [value]  # `data.train_files=a.jsonl`
        if value is False and f.metadata.get("false_means"):
            value = f.metadata["false_means"]  # `key: off` in YAML
        if isinstance(value, str) and "float" in str(f.type) and _looks_float(value):
            value = float(value)  # YAML 1.1 reads "1e-3" as a string; accept it as the number it is
        if not _type_ok(value, f.type):
            raise ConfigError(f"{where}: config key '{prefix}{key}': expected {_describe(f.type)}, "
                              f"got {value!r} ({type(value).__name__})")
        if f.type in ("float", "float | None") and isinstance(value, int):
            value = float(value) if abs(value) < 2 ** 1000 else math.inf  # an int too large for a float
        if isinstance(value, float) and not math.isfinite(value):  # YAML's .nan / .inf, or "nan" / "inf"
            raise ConfigError(f"{where}: config key '{prefix}{key}': expected a finite number, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("weights",):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"algo.clip_high=0.28"`` -> ``(["algo", "clip_high"], 0.28)``; the value is parsed as YAML.

    >>> parse_override("data.train_files=[a.jsonl, b.jsonl]")
    (['data', 'train_files'], ['a.jsonl', 'b.jsonl'])
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def _nest(path: list[str], value: Any) -> dict:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return out


def resolve_config(recipe: dict | None = None, overrides: list[str] | None = None, *, where: str = "recipe") -> Config:
    """Merge a recipe mapping and ``key.sub=value`` overrides into a validated :class:`Config`."""
    merged = dict(recipe or {})
    for text in overrides or []:
        path, value = parse_override(text)
        merged = _deep_merge(merged, _nest(path, value))
    cfg = _build(Config, merged, where)
    validate(cfg)
    return cfg


def load_recipe(path: str | Path) -> dict:
    """Read a YAML recipe; a missing file or a YAML error names the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"recipe {path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping of config keys at the top level")
    return data


GROUP_ADVANTAGES = ("grpo", "drgrpo", "rloo-batch-std")
"""Advantage estimators that compare the samples of one prompt (with one sample every advantage is 0)."""
POLICY_LOSSES = ("ppo", "cispo", "gspo", "clip_cov", "kl_cov")
"""prorl.algo.POLICY_LOSSES (this layer does not import algo; tests/test_algo.py checks the two agree)."""
ROLLOUT_CORRECTIONS = ("off", "token_tis", "seq_tis", "seq_mask", "icepop")
"""prorl.algo.ROLLOUT_CORRECTIONS (checked against it like POLICY_LOSSES)."""

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def _number(x: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _needer(where: str):
    """``need(ok, key, what, value)`` raises ``ConfigError("<where>config key 'key': expected what, got value")``."""
    def need(ok: bool, key: str, what: str, value: Any):
        if not ok:
            raise ConfigError(f"{where}config key '{key}': expected {what}, got {value!r}")
    return need


def validate(cfg: Config) -> None:
    """Ranges and combinations of fields, for the config and for each stage's effective config.

    A stage's message begins with the stage: ``stages[1] (run2): config key 'train.lr': expected ...``.

    >>> validate(resolve_config({"stages": [{"name": "a", "steps": 2}]}))
    >>> resolve_config({"stages": [{"name": "a", "steps": 2}, {"name": "b", "steps": 2, "overrides": {"train.lr": 0}}]})
    Traceback (most recent call last):
    ...
    prorl.errors.ConfigError: stages[1] (b): config key 'train.lr': expected a learning rate in (0, 1], got 0.0
    """
    _check_settings(cfg, "", staged=bool(cfg.stages))
    _check_stage_list(cfg)
    if not cfg.stages:
        return
    need = _needer("")
    for stage in stage_configs(cfg):
        _check_settings(stage.cfg, f"stages[{stage.index}] ({stage.name}): ", staged=True)
        need(cfg.algo.kl_beta > 0 or stage.cfg.algo.kl_beta == 0, f"stages[{stage.index}].overrides.algo.kl_beta",
             "0, as the base algo.kl_beta (the reference policy is made once per run, only when algo.kl_beta > 0)",
             stage.cfg.algo.kl_beta)


def _check_settings(cfg: Config, where: str, *, staged: bool) -> None:
    """The range checks of one (base or stage-effective) config; ``staged``: stages give the step counts."""
    need = _needer(where)
    m, d, r, rw, a, t = cfg.model, cfg.data, cfg.rollout, cfg.reward, cfg.algo, cfg.train

    need(m.dtype in DTYPE_NAMES, "model.dtype", "float32, bfloat16 or float16", m.dtype)
    need(m.attn_implementation is None or m.attn_implementation.strip() != "", "model.attn_implementation",
         "a transformers attention implementation (eager, sdpa, flash_attention_2, ...) or null",
         m.attn_implementation)
    need(re.fullmatch(r"auto|(cpu|cuda)(:\d+)?", m.device) is not None, "model.device", "auto, cpu, cuda or cuda:N",
         m.device)
    need(_int(m.lora_rank) and m.lora_rank >= 0, "model.lora_rank", "an integer >= 0 (0: no LoRA)", m.lora_rank)
    need(_number(m.lora_alpha) and m.lora_alpha > 0, "model.lora_alpha", "a number > 0", m.lora_alpha)
    need(isinstance(m.lora_targets, list) and m.lora_targets and all(isinstance(t, str) for t in m.lora_targets),
         "model.lora_targets", "a non-empty list of module names", m.lora_targets)

    need(_int(d.val_size) and d.val_size >= 0, "data.val_size", "an integer >= 0", d.val_size)
    need(_number(d.val_fraction) and 0 <= d.val_fraction < 1, "data.val_fraction", "a fraction in [0, 1)",
         d.val_fraction)
    if d.builtin is not None:
        from prorl.data.builtin import parse_builtin  # plain Python, like this module

        try:
            parse_builtin(d.builtin)
        except ValueError as e:
            need(False, "data.builtin", f"KIND or KIND:W entries ({e})", d.builtin)
    if d.weights:
        from prorl.data.schema import DOMAINS  # plain Python, like this module

        for domain, weight in d.weights.items():
            need(domain in DOMAINS or domain in rw.custom, "data.weights",
                 f"domains among {', '.join(DOMAINS + tuple(rw.custom))}", domain)
            need(_number(weight) and weight >= 0, f"data.weights.{domain}", "a finite number >= 0", weight)
        need(sum(d.weights.values()) > 0, "data.weights", "at least one weight > 0 (or no weights: by size)",
             d.weights)

    need(a.kl_kind in ("k1", "k2", "k3"), "algo.kl_kind", "one of k1, k2, k3", a.kl_kind)
    need(a.loss_agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"),
         "algo.loss_agg", "token-mean, seq-mean-token-mean or seq-mean-token-sum-norm", a.loss_agg)
    need(a.advantage in GROUP_ADVANTAGES, "algo.advantage", "grpo, drgrpo or rloo-batch-std", a.advantage)
    need(a.policy_loss in POLICY_LOSSES, "algo.policy_loss", "ppo, cispo, gspo, clip_cov or kl_cov", a.policy_loss)
    need(a.cov_fraction is None or (_number(a.cov_fraction) and 0 < a.cov_fraction <= 1), "algo.cov_fraction",
         "a fraction in (0, 1] or null", a.cov_fraction)
    need(isinstance(a.cov_bounds, (list, tuple)) and len(a.cov_bounds) == 2 and all(_number(b) for b in a.cov_bounds)
         and a.cov_bounds[0] < a.cov_bounds[1], "algo.cov_bounds", "two numbers [low, high] with low < high",
         a.cov_bounds)
    need(a.rollout_correction is None or a.rollout_correction in ROLLOUT_CORRECTIONS, "algo.rollout_correction",
         f"one of {', '.join(ROLLOUT_CORRECTIONS)}, or null (by engine)", a.rollout_correction)
    bounds = a.rollout_correction_bounds
    need(bounds is None or (isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(_number(b) for b in bounds)
                            and 0 <= bounds[0] < bounds[1]), "algo.rollout_correction_bounds",
         "two numbers [low, high] with 0 <= low < high, or null", bounds)
    need(_number(a.entropy_coef) and a.entropy_coef >= 0, "algo.entropy_coef", "a number >= 0 (0: off)",
         a.entropy_coef)
    need(a.entropy_target is None or (_number(a.entropy_target) and a.entropy_target > 0), "algo.entropy_target",
         "a number > 0, or null (a fixed coefficient)", a.entropy_target)
    need(_number(a.entropy_coef_step) and a.entropy_coef_step > 0, "algo.entropy_coef_step", "a number > 0",
         a.entropy_coef_step)
    need(_number(a.entropy_coef_max) and a.entropy_coef_max > 0, "algo.entropy_coef_max", "a number > 0",
         a.entropy_coef_max)
    need(_number(a.kl_cov_coef) and a.kl_cov_coef >= 0, "algo.kl_cov_coef", "a number >= 0", a.kl_cov_coef)
    need(_number(a.clip_low) and 0 <= a.clip_low < 1, "algo.clip_low",
         "a number in [0, 1) (the ratio is clipped below 1 - clip_low)", a.clip_low)
    need(_number(a.clip_high) and a.clip_high >= 0, "algo.clip_high",
         "a number >= 0 (the ratio is clipped above 1 + clip_high)", a.clip_high)
    need(_number(a.kl_beta) and a.kl_beta >= 0, "algo.kl_beta", "a number >= 0 (0: no KL penalty)", a.kl_beta)
    need(_int(a.max_gen_batches) and a.max_gen_batches >= 1, "algo.max_gen_batches", "an integer >= 1",
         a.max_gen_batches)

    if a.advantage in GROUP_ADVANTAGES:
        need(_int(r.n) and r.n >= 2, "rollout.n",
             "an integer >= 2: group advantages need at least two samples per prompt "
             f"(with one, every algo.advantage={a.advantage} advantage is 0)", r.n)
    need(_int(r.n) and r.n >= 1, "rollout.n", "an integer >= 1", r.n)
    need(_number(r.temperature) and r.temperature > 0, "rollout.temperature",
         "a number > 0 (the trainer's log-probs divide the logits by it)", r.temperature)
    need(_number(r.top_p) and 0 < r.top_p <= 1, "rollout.top_p", "a number in (0, 1]", r.top_p)
    need(_int(r.max_new_tokens) and r.max_new_tokens >= 1, "rollout.max_new_tokens", "an integer >= 1",
         r.max_new_tokens)
    need(r.batch_size is None or (_int(r.batch_size) and r.batch_size >= 1), "rollout.batch_size",
         "an integer >= 1, or null (all at once)", r.batch_size)
    need(r.dtype in DTYPE_NAMES, "rollout.dtype", "float32, bfloat16 or float16", r.dtype)
    vl = r.vllm
    need(_number(vl.gpu_memory_utilization) and 0 < vl.gpu_memory_utilization < 1,
         "rollout.vllm.gpu_memory_utilization", "a fraction in (0, 1)", vl.gpu_memory_utilization)
    need(vl.max_model_len is None or (_int(vl.max_model_len) and vl.max_model_len >= 1), "rollout.vllm.max_model_len",
         "an integer >= 1, or null (the model's context length)", vl.max_model_len)
    need(all(isinstance(k, str) for k in vl.engine_kwargs), "rollout.vllm.engine_kwargs",
         "a mapping of vllm.LLM argument names to values", vl.engine_kwargs)

    for domain, target in rw.custom.items():
        need(isinstance(domain, str) and re.fullmatch(r"[A-Za-z_][\w-]*", domain) is not None, "reward.custom",
             "domain names (letters, digits, _ and -)", domain)
        need(isinstance(target, str) and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", target) is not None,
             f"reward.custom.{domain}", "'module:function'", target)
    need(rw.length_penalty in ("none", "cosine"), "reward.length_penalty", "none or cosine", rw.length_penalty)
    for name in ("cosine_correct", "cosine_wrong"):
        value = getattr(rw, name)
        need(isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value),
             f"reward.{name}", "two numbers [at length 0, at rollout.max_new_tokens]", value)
    sched = rw.length_penalty_schedule
    need(not sched or (isinstance(sched, (list, tuple)) and len(sched) == 2 and all(_int(v) and v >= 0 for v in sched)
                       and sched[0] >= 1), "reward.length_penalty_schedule",
         "[] or [on, off]: integers, on >= 1, off >= 0", sched)
    need(_number(rw.timeout_s) and rw.timeout_s > 0, "reward.timeout_s", "a number of seconds > 0", rw.timeout_s)
    need(_int(rw.workers) and rw.workers >= 0, "reward.workers", "an integer >= 0 (0: score in-process)", rw.workers)
    need(rw.truncated_reward is None or _number(rw.truncated_reward), "reward.truncated_reward",
         "a finite number, or null", rw.truncated_reward)

    if not staged:
        need(_int(t.steps) and t.steps >= 1, "train.steps", "an integer >= 1 (the training steps)", t.steps)
    need(_int(t.prompts_per_step) and t.prompts_per_step >= 1, "train.prompts_per_step", "an integer >= 1",
         t.prompts_per_step)
    need(_int(t.mini_batch_prompts) and t.mini_batch_prompts >= 1, "train.mini_batch_prompts", "an integer >= 1",
         t.mini_batch_prompts)
    need(t.prompts_per_step % t.mini_batch_prompts == 0, "train.mini_batch_prompts",
         f"a divisor of train.prompts_per_step={t.prompts_per_step}", t.mini_batch_prompts)
    need(_int(t.micro_batch_size) and t.micro_batch_size >= 1, "train.micro_batch_size", "an integer >= 1",
         t.micro_batch_size)
    need(_int(t.max_tokens_per_micro_batch) and t.max_tokens_per_micro_batch >= 0, "train.max_tokens_per_micro_batch",
         "an integer >= 0 (0: off)", t.max_tokens_per_micro_batch)
    need(_int(t.head_chunk_tokens) and t.head_chunk_tokens >= 1, "train.head_chunk_tokens", "an integer >= 1",
         t.head_chunk_tokens)
    need(_int(t.epochs) and t.epochs >= 1, "train.epochs", "an integer >= 1", t.epochs)
    need(_number(t.lr) and 0 < t.lr <= 1, "train.lr", "a learning rate in (0, 1]", t.lr)
    need(_int(t.warmup_steps) and t.warmup_steps >= 0, "train.warmup_steps", "an integer >= 0", t.warmup_steps)
    need(_number(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay", "a number >= 0", t.weight_decay)
    need(isinstance(t.betas, (list, tuple)) and len(t.betas) == 2 and all(_number(b) and 0 <= b < 1 for b in t.betas),
         "train.betas", "two numbers in [0, 1), e.g. [0.9, 0.999]", t.betas)
    need(_number(t.grad_clip) and t.grad_clip >= 0, "train.grad_clip", "a number >= 0 (0: no clipping)", t.grad_clip)

    need(_int(cfg.reset.every) and cfg.reset.every >= 0, "reset.every", "an integer >= 0 (0: never on schedule)",
         cfg.reset.every)
    need(_int(cfg.reset.val_patience) and cfg.reset.val_patience >= 0, "reset.val_patience",
         "an integer >= 0 (0: off)", cfg.reset.val_patience)
    need(_number(cfg.reset.kl_threshold) and cfg.reset.kl_threshold >= 0, "reset.kl_threshold",
         "a number >= 0 (0: off)", cfg.reset.kl_threshold)
    need(_number(cfg.reset.kl_share_threshold) and 0 <= cfg.reset.kl_share_threshold < 1, "reset.kl_share_threshold",
         "a fraction in [0, 1) (0: off)", cfg.reset.kl_share_threshold)
    need(_int(cfg.reset.kl_share_patience) and cfg.reset.kl_share_patience >= 1, "reset.kl_share_patience",
         "an integer >= 1", cfg.reset.kl_share_patience)

    v = cfg.validation
    need(_int(v.every) and v.every >= 0, "validation.every", "an integer >= 0 (0: never during training)", v.every)
    need(_int(v.n) and v.n >= 1, "validation.n", "an integer >= 1", v.n)
    need(_number(v.temperature) and v.temperature >= 0, "validation.temperature", "a number >= 0 (0: greedy)",
         v.temperature)
    need(_number(v.top_p) and 0 < v.top_p <= 1, "validation.top_p", "a number in (0, 1]", v.top_p)
    need(v.max_new_tokens is None or (_int(v.max_new_tokens) and v.max_new_tokens >= 1), "validation.max_new_tokens",
         "an integer >= 1, or null (the rollout limit)", v.max_new_tokens)

    c = cfg.checkpoint
    need(_int(c.every) and c.every >= 0, "checkpoint.every", "an integer >= 0 (0: only at the end)", c.every)
    need(_int(c.keep_last) and c.keep_last >= 1, "checkpoint.keep_last",
         "an integer >= 1 (the checkpoints kept; 0 would delete the one just written)", c.keep_last)

    need(_int(cfg.log.rollouts_every) and cfg.log.rollouts_every >= 0, "log.rollouts_every",
         "an integer >= 0 (0: never)", cfg.log.rollouts_every)
    need(_int(cfg.log.rollouts_per_step) and cfg.log.rollouts_per_step >= 0, "log.rollouts_per_step",
         "an integer >= 0", cfg.log.rollouts_per_step)
    need(cfg.log.wandb is None or (isinstance(cfg.log.wandb, str) and cfg.log.wandb.strip() != ""), "log.wandb",
         "a W&B project name, or null", cfg.log.wandb)
    need(cfg.log.wandb_mode in (None, "online", "offline"), "log.wandb_mode", "online, offline or null",
         cfg.log.wandb_mode)


def _check_stage_list(cfg: Config) -> None:
    """The shape of ``stages``: each a mapping of name, steps, reset and overrides of stage-changeable keys."""
    need = _needer("")
    for i, stage in enumerate(cfg.stages):
        need(isinstance(stage, dict) and _int(stage.get("steps")) and stage["steps"] > 0,
             f"stages[{i}].steps", "a positive integer", stage.get("steps") if isinstance(stage, dict) else stage)
        unknown = set(stage) - {"name", "steps", "reset", "overrides"}
        need(not unknown, f"stages[{i}]", "keys name, steps, reset, overrides", sorted(unknown))
        need(isinstance(stage.get("reset", False), bool), f"stages[{i}].reset", "true or false", stage.get("reset"))
        overrides = stage.get("overrides") or {}
        need(isinstance(overrides, dict), f"stages[{i}].overrides", "a mapping of key.sub: value", overrides)
        for key in overrides:
            need(isinstance(key, str), f"stages[{i}].overrides", "key.sub names", key)
            need(not key.startswith(FIXED_FOR_THE_RUN), f"stages[{i}].overrides.{key}",
                 f"a setting that may change between stages (not {', '.join(FIXED_FOR_THE_RUN)}: "
                 "they are fixed for the whole run)", key)


FIXED_FOR_THE_RUN = ("stages", "run_dir", "model.", "train.seed", "rollout.dtype", "rollout.engine", "rollout.vllm.",
                     "reward.custom")
"""Settings a stage may not override: the models, the generation engine and the seeds are made once per run."""


@dataclass(frozen=True)
class Stage:
    """One stage of a run (the paper's Run 1..8): steps ``first .. last`` under ``cfg``."""

    index: int
    name: str
    steps: int
    reset_at_start: bool
    """Begin with a hard reference reset (not for the first stage)."""
    first: int
    """The first (1-based) step of the stage."""
    cfg: Config
    """The effective config: the base config with this stage's overrides."""

    @property
    def last(self) -> int:
        return self.first + self.steps - 1


def stage_of(stages: list[Stage], step: int) -> Stage:
    """The stage that (1-based) ``step`` belongs to; steps past the end belong to the last stage.

    >>> cfg = resolve_config({"stages": [{"name": "a", "steps": 2}, {"name": "b", "steps": 3}]})
    >>> [stage_of(stage_configs(cfg), s).name for s in (1, 2, 3, 5, 6)]
    ['a', 'a', 'b', 'b', 'b']
    """
    for stage in stages:
        if step <= stage.last:
            return stage
    return stages[-1]


def to_dict(cfg) -> dict:
    """The config as plain data (for YAML)."""
    return dataclasses.asdict(cfg)


def stage_configs(cfg: Config) -> list[Stage]:
    """The run's stages in order; one stage ``main`` of ``train.steps`` when none are given.

    Each stage's overrides apply on top of the base config, not on top of the previous stage.
    """
    if not cfg.stages:
        return [Stage(0, "main", cfg.train.steps, False, 1, cfg)]
    base = to_dict(cfg)
    out, first = [], 1
    for i, stage in enumerate(cfg.stages):
        merged = base
        for key, value in (stage.get("overrides") or {}).items():
            merged = _deep_merge(merged, _nest(key.split("."), value))
        merged = dict(merged, stages=[])
        name = str(stage.get("name", f"stage{i + 1}"))
        effective = _build(Config, merged, f"stages[{i}] ({name})")
        out.append(Stage(i, name, int(stage["steps"]), bool(stage.get("reset", False)), first, effective))
        first += int(stage["steps"])
    return out


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def help_lines(cls=Config, prefix: str = "") -> list[str]:
    """One line per setting: ``key (type, default): help``."""
    lines = []
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            lines.extend(help_lines(f.default_factory, prefix + f.name + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  {prefix}{f.name} = {default!r}  ({_describe(f.type)})\n      {f.metadata.get('help', '')}")
    return lines

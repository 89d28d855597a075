"""Loading a causal LM and its tokenizer, and encoding prompts.

Sequence layout used everywhere in training: ``input_ids = [left-padded prompt | right-padded
response]``, shape ``[B, P + T]``. The response occupies the last ``T`` positions; their
log-probabilities are computed by :mod:`prorl.logprobs`.
"""

from __future__ import annotations

import functools
import logging
import types
from pathlib import Path

import torch

from prorl.errors import UserError

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def resolve_device(name: str, *, setting: str = "model.device") -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; a cuda device that is not there is a :class:`UserError`
    naming ``setting`` (the config key or command-line flag the value came from).

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"{setting} {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{setting} {name!r}: CUDA is not available on this machine (use cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"{setting} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matmuls natively: a CUDA device with bf16 support, or a CPU with the
    avx512_bf16 or AMX instructions (on such CPUs bf16 matmuls measured 2.25x float32's peak, docs/architecture.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return _cpu_has_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: no way to tell here, so float32
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def load_policy(path: str | Path, *, dtype: str = "bfloat16", device: str = "cpu", attn_implementation: str | None = None):
    """Load ``(model, tokenizer)`` from a local directory (or a hub id where there is network).

    What is wrong with a local directory is a :class:`~prorl.errors.UserError` naming the path and the
    problem, not a library traceback: a missing directory, no ``config.json`` (or one that is not a JSON
    object with a ``model_type``), a weights file that is truncated or not a safetensors file, weights
    missing from the checkpoint or of the wrong shape for the config, a tokenizer that is absent or
    cannot be loaded. ``attn_implementation`` (None: the model's default) is passed to ``from_pretrained``; one
    that transformers or this model does not support is a :class:`UserError` naming ``model.attn_implementation``.
    """
    import pickle

    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise UserError(f"model dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    tokenizer, source = load_tokenizer(path)
    # The library's multi-line load report is replaced by the one-line errors below. A filter, not a level:
    # transformers runs extra checks (and warns) when this logger's level is WARNING or above.
    report = logging.getLogger("transformers.modeling_utils")
    quiet = _BelowError()
    report.addFilter(quiet)
    try:
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model, info = AutoModelForCausalLM.from_pretrained(
            source, dtype=DTYPES[dtype], output_loading_info=True, ignore_mismatched_sizes=True, **extra
        )
    except SafetensorError as exc:
        raise UserError(f"model path {path}: a weights file is not a valid safetensors file "
                        f"({_first_line(exc)})") from exc
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) of a .bin that is not a plain checkpoint
        raise UserError(f"model path {path}: a weights file is not a valid PyTorch checkpoint (it does not unpickle "
                        "as plain tensors)") from exc
    except (OSError, ValueError, ImportError) as exc:  # not a model folder, no network for a hub id, a bad kernel
        if attn_implementation and ("attn" in str(exc).lower() or isinstance(exc, ImportError)):
            raise UserError(f"model.attn_implementation {attn_implementation!r}: {_first_line(exc)}") from exc
        raise UserError(f"model path {path}: could not load a causal LM ({_first_line(exc)})") from exc
    finally:
        report.removeFilter(quiet)
    _check_loading_info(info, path)
    return model.to(device), tokenizer


def load_tokenizer(path: str | Path):
    """``(tokenizer, source)`` of the model at ``path`` (``source``: the path as loaded), with the checks of
    :func:`load_policy` on a local directory; a tokenizer without a pad token pads with its EOS."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    looks_local = str(path).startswith((".", "/", "~")) or Path(path).exists()
    if looks_local and not Path(path).expanduser().is_dir():
        raise UserError(f"model path {path}: no such directory (expected a Hugging Face model folder)")
    source = str(Path(path).expanduser()) if looks_local else str(path)
    if looks_local:
        _check_model_dir(Path(source), path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:  # unreadable or broken tokenizer files; no network for a hub id
        raise UserError(f"model path {path}: could not load the tokenizer ({_first_line(exc)})") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, source


def checkpoint_eos_ids(source: str, tokenizer) -> list[int]:
    """:func:`eos_token_ids` of the model at ``source`` without loading its weights (its generation config, or
    the one transformers derives from its config when the directory has none)."""
    from transformers import AutoConfig, GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(source)
    except OSError:
        gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(source))
    return eos_token_ids(types.SimpleNamespace(generation_config=gen), tokenizer)


class _BelowError(logging.Filter):
    """Drops log records below ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "merges.txt")


def _check_model_dir(folder: Path, path) -> None:
    """The cheap checks of a local model folder: config.json, the weights files' headers, tokenizer files."""
    import json
    import zipfile

    from safetensors import SafetensorError, safe_open

    config = folder / "config.json"
    if not config.is_file():
        raise UserError(f"model path {path}: no config.json (expected a Hugging Face model folder: "
                        "config.json, weights, tokenizer files)")
    try:
        data = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"model path {path}: config.json is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"model path {path}: config.json is not a JSON object (got {type(data).__name__})")
    if "model_type" not in data and "auto_map" not in data:
        raise UserError(f"model path {path}: config.json has no model_type (expected a Hugging Face model config)")

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"model path {path}: {index.name} is not a valid weights index "
                            f"({type(exc).__name__}: {exc})") from exc
    else:
        shards = ["model.safetensors"] if (folder / "model.safetensors").exists() else []
    for name in shards:
        file = folder / name
        if not file.is_file():
            raise UserError(f"model path {path}: {name} is missing (named by {index.name})" if index.is_file()
                            else f"model path {path}: {name} is not a file")
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except SafetensorError as exc:  # a truncated file, or not a safetensors file at all
            detail = _first_line(exc).removeprefix("Error while deserializing header: ")
            raise UserError(f"model path {path}: {name} is not a valid safetensors file ({detail})") from exc
        except OSError as exc:
            raise UserError(f"model path {path}: {name} cannot be read ({exc})") from exc
    binary = folder / "pytorch_model.bin"
    if not shards and binary.is_file():
        with open(binary, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        if zipped and not zipfile.is_zipfile(binary):
            raise UserError(f"model path {path}: pytorch_model.bin is not a valid PyTorch checkpoint "
                            "(a zip archive cut short: truncated?)")

    if not any(folder.joinpath(name).is_file() for name in TOKENIZER_FILES) and not any(folder.glob("*.tiktoken")):
        raise UserError(f"model path {path}: no tokenizer files (expected tokenizer.json or tokenizer_config.json "
                        "and its vocabulary)")


def _check_loading_info(info: dict, path) -> None:
    """Weights the checkpoint lacks, or has in another shape, are an error (they would start random)."""
    mismatched = list(info.get("mismatched_keys") or [])
    if mismatched:
        shown = ", ".join(f"{key}: {tuple(ckpt)} in the file, {tuple(model)} by config.json"
                          for key, ckpt, model in sorted(mismatched)[:2])
        raise UserError(f"model path {path}: {len(mismatched)} weight(s) do not fit config.json ({shown}"
                        f"{', ...' if len(mismatched) > 2 else ''})")
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise UserError(f"model path {path}: the checkpoint lacks {len(missing)} of the model's weights "
                        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); they would start random")


_warned_no_template = False
"""Whether :func:`encode_prompts` has warned that system messages were dropped (it warns once per process)."""


def encode_prompts(tokenizer, prompts: list[str], *, chat_template: bool | None = None,
                   systems: list[str | None] | None = None) -> list[list[int]]:
    """Token ids of each prompt; the tokenizer's chat template is applied when it has one.

    ``chat_template=None`` uses the template if the tokenizer defines one; ``True``/``False`` forces it.
    ``systems`` gives each prompt's system message (None or ``""`` for none; ``systems=None``: none
    at all). With the template, a prompt with a system message is encoded as the conversation
    ``[{"role": "system", ...}, {"role": "user", ...}]``, one without as ``[{"role": "user", ...}]``,
    so with no system messages the ids are exactly those of the prompts alone. Without a template,
    nothing is prepended: a system message needs a chat template (which decides where it goes and
    how it is marked), and dropping one is announced once per process with a ``UserWarning``.
    """
    global _warned_no_template
    if systems is not None and len(systems) != len(prompts):
        raise ValueError(f"encode_prompts: {len(systems)} system messages for {len(prompts)} prompts")
    systems = systems if systems is not None else [None] * len(prompts)
    use_template = bool(tokenizer.chat_template) if chat_template is None else chat_template
    if use_template:
        return [
            list(tokenizer.apply_chat_template(
                ([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": p}],
                add_generation_prompt=True, tokenize=True, return_dict=False,
            ))
            for p, s in zip(prompts, systems)
        ]
    if any(systems) and not _warned_no_template:
        import warnings

        _warned_no_template = True
        warnings.warn("system messages are not used: the prompts are encoded without a chat template "
                      "(model.chat_template is false or the tokenizer has none)", UserWarning, stacklevel=2)
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the generation config's."""
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    return sorted(i for i in ids if i is not None)

"""Loading a causal LM and computing per-token log-probabilities and entropy.

Sequence layout used everywhere in training: ``input_ids = [left-padded prompt | right-padded
response]``, shape ``[B, P + T]``. The response occupies the last ``T`` positions, so the logits
that predict it are the last ``T + 1`` positions minus the final one; ``logits_to_keep`` asks the
model for just those, which keeps the ``[B, L, vocab]`` tensor off the prompt.
"""

from __future__ import annotations

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


def load_policy(path: str | Path, *, dtype: str = "bfloat16", device: str = "cpu"):
    """Load ``(model, tokenizer)`` from a local directory (or a hub id where there is network).

    A missing local path is a :class:`~prorl.errors.UserError` with the path in its message.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if dtype not in DTYPES:
        raise UserError(f"model dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    looks_local = str(path).startswith((".", "/", "~")) or Path(path).exists()
    if looks_local and not Path(path).expanduser().is_dir():
        raise UserError(f"model path {path}: no such directory (expected a Hugging Face model folder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(Path(path).expanduser()) if looks_local else path)
        model = AutoModelForCausalLM.from_pretrained(
            str(Path(path).expanduser()) if looks_local else path, dtype=DTYPES[dtype]
        )
    except OSError as exc:  # not a model folder, or no network for a hub id
        raise UserError(f"model path {path}: could not load a causal LM ({exc})") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def encode_prompts(tokenizer, prompts: list[str], *, chat_template: bool | None = None) -> list[list[int]]:
    """Token ids of each prompt; the tokenizer's chat template is applied when it has one.

    ``chat_template=None`` uses the template if the tokenizer defines one; ``True``/``False`` forces it.
    """
    use_template = bool(tokenizer.chat_template) if chat_template is None else chat_template
    if use_template:
        return [
            list(tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=False
            ))
            for p in prompts
        ]
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


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over the last dimension: ``logsumexp(l) - sum(p * l)``.

    >>> float(entropy_from_logits(torch.zeros(4)))  # uniform over 4: log 4
    1.3862943649291992
    """
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def sequence_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_response_tokens: int,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of the response tokens under ``model``, at sampling temperature.

    ``input_ids``/``attention_mask``: ``[B, P + T]`` with the response in the last ``T`` columns.
    Returns ``(logprobs [B, T] float32, entropy [B, T] float32 or None)``. Logits are divided by
    ``temperature`` so the numbers describe the distribution the rollouts were sampled from.
    """
    T = num_response_tokens
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # [B, P+T]
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=T + 1
    )
    logits = out.logits[:, :-1, :].float() / temperature  # [B, T, V]
    targets = input_ids[:, -T:]  # [B, T]
    log_z = torch.logsumexp(logits, dim=-1)  # [B, T]
    logprobs = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - log_z  # [B, T]
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_logits(logits)  # [B, T]
    return logprobs, entropy

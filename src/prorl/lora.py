"""LoRA training through ``peft`` (``model.lora_rank > 0``; the ``prorl[lora]`` extra).

The base weights are frozen and only the adapter ``default`` trains. The reference policy is a second
adapter, ``reference``, on the same base weights: the policy with its adapter as it was at the last reset.
Its log-probs come from switching the active adapter, so no second copy of the base model exists; a
reset copies ``default`` into ``reference`` (the KL is then exactly 0: the same base, the same adapter
weights, the same computation).

The trainer works on the Hugging Face model with the adapter layers injected (``peft_model.get_base_model()``),
so log-probs, the engine and the update see an ordinary ``transformers`` model. Checkpoints hold the adapters
in PEFT format (``adapter/``, the reference in ``adapter/reference/``), loadable with
``PeftModel.from_pretrained(base, ckpt / "adapter")``; with ``model.lora_export_merged`` also the merged
weights in ``policy/``, which ``from_pretrained`` loads as a plain model.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch

from prorl.errors import UserError


def add_lora(model, model_cfg, *, with_reference: bool):
    """Wrap ``model`` (a ``transformers`` causal LM) with a trainable LoRA adapter ``default`` (and a frozen copy
    ``reference``); returns the ``PeftModel``. The base weights are frozen."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("model.lora_rank > 0 needs the peft package: pip install 'prorl[lora]'") from None
    config = LoraConfig(r=model_cfg.lora_rank, lora_alpha=model_cfg.lora_alpha, lora_dropout=0.0, bias="none",
                        target_modules=list(model_cfg.lora_targets))
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:  # no module matches the targets
        raise UserError(f"model.lora_targets {list(model_cfg.lora_targets)}: {exc}") from None
    if with_reference:
        peft_model.add_adapter("reference", config)
        copy_adapter(peft_model, "default", "reference")
        peft_model.set_adapter("default")
    return peft_model


def copy_adapter(peft_model, source: str, target: str) -> None:
    """Copy adapter ``source``'s weights into adapter ``target``, tensor by tensor."""
    params = dict(peft_model.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            if f".{source}." in name:
                params[name.replace(f".{source}.", f".{target}.")].copy_(p)


@contextlib.contextmanager
def active_adapter(peft_model, name: str):
    """Run with adapter ``name`` active, then ``default`` again (which peft makes the trainable one)."""
    peft_model.set_adapter(name)
    try:
        yield
    finally:
        peft_model.set_adapter("default")


class AdapterReference:
    """The reference policy as the ``reference`` adapter of the policy's own ``PeftModel``."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def logprobs(self, batch, how) -> torch.Tensor:
        """The reference's log-probs of ``batch``: the policy's model with the reference adapter active."""
        from prorl.batch import batch_logprobs

        with active_adapter(self.peft_model, "reference"):
            return batch_logprobs(self.peft_model.get_base_model(), batch, how)

    def reset(self) -> None:
        copy_adapter(self.peft_model, "default", "reference")


def save_adapters(peft_model, folder: Path, *, merged_to: Path | None = None, tokenizer=None) -> None:
    """The adapters in PEFT format into ``folder`` (``default`` at its top, ``reference`` in ``reference/``); with
    ``merged_to`` the policy's merged weights there too, a plain ``transformers`` model."""
    peft_model.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    if merged_to is not None:
        merged = copy.deepcopy(peft_model)
        if "reference" in merged.peft_config:
            merged.delete_adapter("reference")
        merged = merged.merge_and_unload()
        merged.save_pretrained(str(merged_to))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(merged_to))
        del merged


def load_adapters(peft_model, folder: Path) -> None:
    """Load the adapter weights :func:`save_adapters` wrote into ``peft_model``'s adapters, in place."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    for name, sub in (("default", folder), ("reference", folder / "reference")):
        if name in peft_model.peft_config:
            result = set_peft_model_state_dict(peft_model, load_file(sub / "adapter_model.safetensors"),
                                               adapter_name=name)
            unexpected = getattr(result, "unexpected_keys", [])
            if unexpected:
                raise RuntimeError(f"checkpoint {sub} does not match the adapter: unexpected {unexpected[:5]}")
    peft_model.set_adapter("default")

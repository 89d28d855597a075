"""Checkpoints: everything a run needs to continue exactly, written atomically.

Layout of ``RUN_DIR/checkpoints/step_000040/``:

- ``policy/``: the trained model and tokenizer in Hugging Face format (``from_pretrained`` loads it).
- ``reference/``: the reference policy's weights, also in Hugging Face format.
- ``trainer_state.pt``: optimizer and scheduler state, the train state (step, stage, reset count,
  validation history), the data sampler's cursor, and the config it was written with.

A checkpoint is written to ``step_N.tmp`` and renamed into place, then ``checkpoints/latest`` is
replaced atomically: a crash mid-write leaves the previous checkpoint intact and ``latest`` valid.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch

from prorl.errors import UserError


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory, or None."""
    root = checkpoint_root(run_dir)
    pointer = root / "latest"
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if (path / "trainer_state.pt").is_file():
            return path
    return None


def save_checkpoint(run_dir: str | Path, step: int, *, policy, reference, tokenizer, trainer_state: dict,
                    keep_last: int = 2, lora=None, lora_merged: bool = False) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, delete all but the newest ``keep_last``.

    A full disk (or quota) while writing is a :class:`~prorl.errors.UserError` saying so, with the path and
    the bytes the checkpoint needs; the partial directory is removed and ``latest`` still names the previous
    checkpoint.
    """
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:06d}"
    final, tmp = root / name, root / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if lora is not None:  # the adapters (PEFT format), and the merged weights when asked
            from prorl.lora import save_adapters

            save_adapters(lora, tmp / "adapter", merged_to=tmp / "policy" if lora_merged else None, tokenizer=tokenizer)
        else:
            policy.save_pretrained(tmp / "policy")
            tokenizer.save_pretrained(tmp / "policy")
            if reference is not None:
                reference.save_pretrained(tmp / "reference")
        torch.save(trainer_state, tmp / "trainer_state.pt")
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _disk_full(exc):
            raise
        need = checkpoint_bytes(policy, reference, trainer_state)
        free = shutil.disk_usage(root).free
        previous = latest_name(root)
        kept = f"{previous} is still the latest" if previous else "there is no earlier checkpoint"
        raise UserError(f"no space left on device writing checkpoint {tmp} (it needs about {need:,} bytes, "
                        f"{free:,} are free); the partial checkpoint was removed and {kept}; "
                        f"free space and continue with `prorl train --resume {run_dir}`") from None
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer_tmp = root / "latest.tmp"
    pointer_tmp.write_text(name + "\n")
    os.replace(pointer_tmp, root / "latest")
    old = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for path in old[: max(len(old) - max(keep_last, 1), 0)]:  # never the one just written
        shutil.rmtree(path, ignore_errors=True)
    return final


def _disk_full(exc: BaseException) -> bool:
    """Whether a write failed for lack of space: ENOSPC/EDQUOT, or torch's zip writer reporting a short write."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    return "unexpected pos" in text or "file write failed" in text or "No space left" in text


def checkpoint_bytes(policy, reference, trainer_state: dict) -> int:
    """About how many bytes a checkpoint takes: the weights (twice with a reference) and the optimizer's tensors."""
    def tensor_bytes(tree) -> int:
        if isinstance(tree, torch.Tensor):
            return tree.numel() * tree.element_size()
        if isinstance(tree, dict):
            return sum(tensor_bytes(v) for v in tree.values())
        if isinstance(tree, (list, tuple)):
            return sum(tensor_bytes(v) for v in tree)
        return 0

    weights = sum(p.numel() * p.element_size() for p in policy.state_dict().values())
    return weights * (2 if reference is not None else 1) + tensor_bytes(trainer_state.get("optimizer", {}))


def latest_name(root: Path) -> str | None:
    """The checkpoint ``latest`` names, or None."""
    pointer = root / "latest"
    return pointer.read_text().strip() if pointer.is_file() else None


def load_trainer_state(path: Path) -> dict:
    return torch.load(path / "trainer_state.pt", weights_only=False)


def load_weights_into(model, model_dir: Path) -> None:
    """Copy the weights saved in ``model_dir`` (safetensors) into an existing model, in place."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings are saved once; anything else missing means the checkpoint does not fit.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {model_dir} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")

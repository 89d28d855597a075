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

import os
import shutil
from pathlib import Path

import torch


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
                    keep_last: int = 2) -> Path:
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:06d}"
    final, tmp = root / name, root / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp / "policy")
    tokenizer.save_pretrained(tmp / "policy")
    if reference is not None:
        reference.save_pretrained(tmp / "reference")
    torch.save(trainer_state, tmp / "trainer_state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer_tmp = root / "latest.tmp"
    pointer_tmp.write_text(name + "\n")
    os.replace(pointer_tmp, root / "latest")
    old = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for path in old[: max(len(old) - keep_last, 0)]:
        shutil.rmtree(path, ignore_errors=True)
    return final


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

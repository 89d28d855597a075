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
    publish(root, tmp, final, keep_last)
    return final


def publish(root: Path, tmp: Path, final: Path, keep_last: int) -> None:
    """Rename the complete checkpoint ``tmp`` to ``final``, point ``latest`` at it, keep the newest ``keep_last``."""
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer_tmp = root / "latest.tmp"
    pointer_tmp.write_text(final.name + "\n")
    os.replace(pointer_tmp, root / "latest")
    old = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for path in old[: max(len(old) - max(keep_last, 1), 0)]:  # never the one just written
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- several ranks (FSDP2)

SHARDED = "sharded"
"""The ``torch.distributed.checkpoint`` directory of a checkpoint written by several ranks."""


def save_sharded_checkpoint(run_dir: str | Path, step: int, *, dist, policy, reference, optimizer, tokenizer,
                            trainer_state: dict, keep_last: int = 2) -> Path:
    """Checkpoint ``step`` of a run on several ranks (``policy``/``reference``: :class:`prorl.dist.LogprobModule`
    sharded by FSDP2); every rank calls it.

    - ``sharded/``: policy, reference and optimizer state, each rank writing its shards (DCP, keyed by parameter
      name, so any world size can load it);
    - ``policy/``: the policy gathered into one Hugging Face model (``from_pretrained`` loads it) and the tokenizer;
    - ``rng/rank_N.pt``: each rank's torch random state; ``trainer_state.pt``: as for one process, with
      ``world_size`` and without the optimizer (it is in ``sharded/``).

    Written to ``step_N.tmp``; after every rank has finished, rank 0 renames it into place and moves ``latest``.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    root = checkpoint_root(run_dir)
    name = f"step_{step:06d}"
    final, tmp = root / name, root / f"{name}.tmp"
    if dist.main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "rng").mkdir(parents=True)
    dist.barrier()
    from prorl.dist import reshard

    for module in (policy, reference):
        if module is not None:
            reshard(module)
    model_state, optim_state = get_state_dict(policy, optimizer)
    state = {"model": model_state, "optim": optim_state}
    if reference is not None:
        state["reference"] = get_model_state_dict(reference)
    dcp.save(state, checkpoint_id=tmp / SHARDED)
    torch.save({"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available()
                else None}, tmp / "rng" / f"rank_{dist.rank}.pt")
    full = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.main:  # the gathered weights reach rank 0 only
        prefix = "model."  # LogprobModule's attribute: the Hugging Face names follow it
        policy.model.save_pretrained(tmp / "policy", state_dict={k[len(prefix):]: v for k, v in full.items()})
        tokenizer.save_pretrained(tmp / "policy")
        torch.save(trainer_state | {"world_size": dist.world}, tmp / "trainer_state.pt")
    del full
    dist.barrier()
    if dist.main:
        publish(root, tmp, final, keep_last)
    dist.barrier()
    return final


def load_sharded_checkpoint(path: Path, *, policy, reference, optimizer, dist) -> None:
    """Restore policy, reference and optimizer from ``path/sharded`` into ``policy``/``reference`` (sharded
    :class:`prorl.dist.LogprobModule`, or unsharded ones around plain models at world size 1): DCP reshards to
    this world size. The ranks' random states come back when the world size is the one it was written with."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict, set_model_state_dict, \
        set_state_dict

    model_state, optim_state = get_state_dict(policy, optimizer)
    state = {"model": model_state, "optim": optim_state}
    if reference is not None:
        state["reference"] = get_model_state_dict(reference)
    dcp.load(state, checkpoint_id=path / SHARDED)
    set_state_dict(policy, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    if reference is not None:
        set_model_state_dict(reference, state["reference"])
    rng = path / "rng" / f"rank_{dist.rank}.pt"
    if load_trainer_state(path).get("world_size", 1) == dist.world and rng.is_file():
        saved = torch.load(rng, weights_only=False)
        torch.set_rng_state(saved["torch"])
        if saved["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(saved["cuda"])


def full_optimizer_state(module, optimizer_state: dict, trainer) -> dict:
    """A one-process checkpoint's optimizer state (keyed by parameter index) keyed by parameter name, unsharded,
    for :func:`torch.distributed.checkpoint.state_dict.set_optimizer_state_dict` with ``full_state_dict`` once the
    module is sharded: a run written by one process resumed on several. ``trainer`` builds an optimizer for
    ``module`` (the unsharded :class:`prorl.dist.LogprobModule`)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    optimizer = trainer(module)
    optimizer.load_state_dict(optimizer_state)
    return get_optimizer_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True))


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

"""Data parallelism over the processes ``torchrun`` starts: the process group, FSDP2 sharding, collectives.

Every rank runs the same training loop (:mod:`prorl.train`) on its share of each step's prompts. World
size 1 (``prorl train`` without ``torchrun``) is the single-process program: :data:`SINGLE`'s collectives
return their input and nothing is sharded.

What every rank must agree on, and how it is kept so (see docs/distributed.md):

- **Collectives in the same order.** FSDP2's forward and backward passes are collectives, so every rank
  runs the same number of log-prob passes and micro-batches; a rank with fewer rows runs
  :func:`idle_pass` for the missing ones (no rows, no gradient, the same collectives).
- **Decisions from global values.** Loop conditions, skips and resets use numbers reduced across the
  ranks (:meth:`Dist.sum`, :meth:`Dist.max`) or rank 0's reading of a file (:meth:`Dist.broadcast`).
- **One denominator.** The token-level loss of an optimizer step divides by the step's global token
  count; FSDP2 averages gradients over the ranks, which :data:`Dist.grad_scale` undoes.

The model a rank trains is a :class:`LogprobModule` around the Hugging Face model: FSDP2 shards each
decoder layer as one unit and the rest (embeddings, final norm, output head, tied or not) as the root
unit, whose parameters are gathered for the whole of :func:`prorl.logprobs.token_logprobs` (it calls the
backbone and uses the head's weight directly, which a unit around the Hugging Face model alone would not
gather).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch

from prorl.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place among the ranks, and the collectives the loop uses (identities at world size 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run's logs and publishes checkpoints."""
        return self.rank == 0

    @property
    def grad_scale(self) -> float:
        """What a loss is multiplied by before ``backward``: FSDP2 divides the summed gradients by the world size."""
        return float(self.world)

    def _reduce(self, values, op: str) -> list[float]:
        if not self.enabled:
            return [float(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
        return t.tolist()

    def sum(self, values) -> list[float]:
        """Elementwise sums over the ranks (in float64)."""
        return self._reduce(values, "SUM")

    def max(self, values) -> list[float]:
        """Elementwise maxima over the ranks."""
        return self._reduce(values, "MAX")

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    @property
    def device(self) -> torch.device:
        """Where this rank's collectives run: its GPU with NCCL, the CPU with gloo."""
        import torch.distributed as dist

        if self.enabled and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


SINGLE = Dist()
"""World size 1: the single-process program."""


def from_env(device_setting: str = "auto", timeout_s: float = 1800.0) -> Dist:
    """The ranks ``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the process group is initialised
    here (NCCL on GPUs, gloo on CPUs) and each rank takes the GPU of its local rank. Without them (or with
    world size 1): :data:`SINGLE`."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_setting != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return Dist(rank=rank, world=world, local_rank=local_rank)


def close(d: Dist) -> None:
    """Leave the process group (after a run that ended normally; a failing rank just exits)."""
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# ---------------------------------------------------------------- sharded models


class LogprobModule(torch.nn.Module):
    """A causal LM whose forward pass is :func:`prorl.logprobs.token_logprobs` (the unit FSDP2 wraps as its root).

    ``module.model`` is the Hugging Face model itself: its ``named_parameters()`` keep their names.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, num_response_tokens, **kwargs):
        from prorl.logprobs import token_logprobs

        return token_logprobs(self.model, input_ids, attention_mask, num_response_tokens, **kwargs)


def block_classes(model) -> set[str]:
    """Class names of the model's repeated blocks (its ``_no_split_modules``), each one FSDP2 unit."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    if not names or not any(type(m).__name__ in names for m in model.modules()):
        raise ConfigError(f"{type(model).__name__}: the model names no decoder-layer class (_no_split_modules) "
                          f"that prorl could shard with FSDP2 one block at a time")
    return names


def shard(model: torch.nn.Module, *, trainable: bool = True) -> LogprobModule:
    """``model`` sharded by FSDP2 across the ranks (one unit per decoder layer, the rest in the root unit); every
    rank must call this in the same order for the same architecture. The reference is sharded the same way
    (``trainable=False``), so a reset copies local shards."""
    from torch.distributed.fsdp import fully_shard

    names = block_classes(model)
    module = LogprobModule(model)
    for block in [m for m in model.modules() if type(m).__name__ in names]:
        fully_shard(block)
    fully_shard(module)
    if not trainable:
        module.requires_grad_(False).eval()
    return module


def is_sharded(module) -> bool:
    return isinstance(module, LogprobModule) and hasattr(module, "reshard")


def reshard(module) -> None:
    """Put every FSDP2 unit of ``module`` back in its sharded state. A forward pass without gradients leaves the
    root unit's parameters gathered (FSDP2 keeps the root's for the backward that usually follows); what reads
    parameters as shards (a reset's copy, the weights' norm, a checkpoint) calls this first."""
    from torch.distributed.fsdp import FSDPModule

    for unit in module.modules():
        if isinstance(unit, FSDPModule):
            unit.reshard()


def local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (a plain tensor is its own)."""
    return t.to_local() if hasattr(t, "to_local") else t


def full_named_parameters(module: LogprobModule) -> Iterator[tuple[str, torch.Tensor]]:
    """The Hugging Face model's ``(name, full tensor)`` pairs, gathered one parameter at a time: a collective per
    parameter, so every rank must run the iterator to its end (the weight push does)."""
    reshard(module)
    for name, p in module.model.named_parameters():
        yield name, p.detach().full_tensor() if hasattr(p, "full_tensor") else p.detach()


def weights_of(policy):
    """The policy's ``(name, tensor)`` pairs for the rollout engine: its ``named_parameters()``, or when sharded the
    Hugging Face model's full tensors (:func:`full_named_parameters`)."""
    return full_named_parameters(policy) if is_sharded(policy) else policy.named_parameters()


@torch.no_grad()
def copy_shards(src: LogprobModule, dst: LogprobModule) -> None:
    """``dst``'s parameters and buffers become ``src``'s, shard by shard (same sharding, no communication)."""
    reshard(src)
    reshard(dst)
    for (name, a), (other, b) in zip(src.named_parameters(), dst.named_parameters(), strict=True):
        if name != other:
            raise RuntimeError(f"copy_shards: parameter {name!r} faces {other!r}")
        local(b).copy_(local(a))
    for (name, a), (other, b) in zip(src.named_buffers(), dst.named_buffers(), strict=True):
        b.copy_(a)


def squared_norm(tensors) -> float:
    """This rank's part of the squared L2 norm of ``tensors`` (DTensors count their local shard)."""
    parts = [local(t).detach().float().pow(2).sum() for t in tensors]
    return float(torch.stack(parts).sum()) if parts else 0.0

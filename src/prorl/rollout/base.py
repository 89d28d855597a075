"""What every rollout engine shares: the request (:class:`Sampling`), the answer (:class:`Rollout`), the
randomness of a unit of work (:class:`RandomStream`) and the contract (:class:`Engine`).

The trainer, validation and ``prorl eval`` see an engine only through :class:`Engine`; which engine runs
is chosen once, by :func:`prorl.rollout.make_engine`. A new engine is one module with a class that
meets the contract and one line in :data:`prorl.rollout.ENGINES`; ``tests/test_engines.py`` holds the
checks every engine must pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

import torch


@dataclass(frozen=True)
class Sampling:
    """How to sample: ``n`` responses per prompt at ``temperature`` with nucleus ``top_p``, at most
    ``max_new_tokens`` each. ``batch_size``: sequences per engine pass (memory only for engines that
    schedule their own batches; the built-in engine's samples depend on it, see its docs).

    >>> Sampling(n=4, temperature=0.6, top_p=0.95, max_new_tokens=16)
    Sampling(n=4, temperature=0.6, top_p=0.95, max_new_tokens=16, batch_size=None)
    """

    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int | None = None


@dataclass
class RandomStream:
    """The randomness of one unit of work (a training step, an evaluation chunk), made from one seed.

    Every ``generate`` call of that unit draws from the stream in turn, so the same seed replays the same
    samples: a resumed run draws what the uninterrupted run drew. Engines take what they need from it:
    the built-in engine one ``torch.Generator`` on its device (created on first use, then continued by
    later calls), an engine with per-request seeds :meth:`request_seeds`.

    >>> a, b = RandomStream(7), RandomStream(7)
    >>> first = a.request_seeds(3)
    >>> first == b.request_seeds(3), a.request_seeds(3) == first  # a second call gets other seeds
    (True, False)
    """

    seed: int
    calls: int = 0
    """``request_seeds`` calls made so far (each call gets seeds of its own)."""
    _generators: dict = field(default_factory=dict, repr=False)

    def torch_generator(self, device: torch.device | str) -> torch.Generator:
        """The stream's generator on ``device``: seeded with :attr:`seed` on first use, continued after."""
        key = str(torch.device(device))
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def request_seeds(self, count: int) -> list[int]:
        """``count`` 31-bit seeds, one per request, that depend only on (seed, call number, request index)."""
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.calls) % (2**63))
        self.calls += 1
        return torch.randint(0, 2**31 - 1, (count,), generator=gen).tolist()


def _pad_to(x: torch.Tensor, width: int, value, *, left: bool) -> torch.Tensor:
    """Pad the last dimension of ``x`` [B, w] to ``width`` with ``value`` on the left or the right."""
    extra = width - x.shape[1]
    if extra == 0:
        return x
    fill = torch.full((x.shape[0], extra), value, dtype=x.dtype, device=x.device)
    return torch.cat([fill, x] if left else [x, fill], dim=1)


@dataclass
class Rollout:
    """A batch of sampled responses, laid out as ``[left-padded prompt | right-padded response]``.

    With ``n`` samples per prompt the rows of one prompt are consecutive (a group).
    """

    prompt_ids: torch.LongTensor
    """``[B, P]`` prompt tokens, left-padded with ``pad_token_id``."""
    prompt_mask: torch.Tensor
    """``[B, P]`` long, 1 for real prompt tokens, 0 for padding."""
    response_ids: torch.LongTensor
    """``[B, T]`` generated tokens, right-padded with ``pad_token_id`` (T = longest response in the batch)."""
    response_mask: torch.Tensor
    """``[B, T]`` float32, 1 for generated tokens including the EOS token, 0 after it."""
    logprobs: torch.Tensor
    """``[B, T]`` float32 sampling log-probs (log-softmax of logits / temperature, before top-p); 0 where masked."""
    finish_reasons: list[str]
    """Per sequence: ``"stop"`` (an EOS token was sampled) or ``"length"`` (``max_new_tokens`` reached)."""
    num_tokens: int
    """Generated tokens in the batch: ``response_mask.sum()``."""
    pad_token_id: int = 0
    """The id padding is written with (:meth:`cat` pads with it too)."""

    def __len__(self) -> int:
        return len(self.finish_reasons)

    @classmethod
    def cat(cls, parts: list[Rollout]) -> Rollout:
        """Rows of ``parts`` one after another; prompts left-padded and responses right-padded to common widths.

        Always new tensors (``torch.cat`` copies), so inference-mode tensors come out as ordinary ones.

        >>> a = Rollout(torch.tensor([[5, 6]]), torch.tensor([[1, 1]]), torch.tensor([[7]]), torch.ones(1, 1),
        ...             torch.zeros(1, 1), ["length"], 1, pad_token_id=0)
        >>> b = Rollout(torch.tensor([[8]]), torch.tensor([[1]]), torch.tensor([[9, 2]]), torch.ones(1, 2),
        ...             torch.zeros(1, 2), ["stop"], 2, pad_token_id=0)
        >>> both = Rollout.cat([a, b])
        >>> both.prompt_ids.tolist(), both.response_ids.tolist(), both.response_mask.tolist(), both.num_tokens
        ([[5, 6], [0, 8]], [[7, 0], [9, 2]], [[1.0, 0.0], [1.0, 1.0]], 3)
        """
        pad = parts[0].pad_token_id
        P = max(p.prompt_ids.shape[1] for p in parts)
        T = max(p.response_ids.shape[1] for p in parts)
        response_mask = torch.cat([_pad_to(p.response_mask, T, 0.0, left=False) for p in parts])  # [B, T]
        return cls(
            prompt_ids=torch.cat([_pad_to(p.prompt_ids, P, pad, left=True) for p in parts]),
            prompt_mask=torch.cat([_pad_to(p.prompt_mask, P, 0, left=True) for p in parts]),
            response_ids=torch.cat([_pad_to(p.response_ids, T, pad, left=False) for p in parts]),
            response_mask=response_mask,
            logprobs=torch.cat([_pad_to(p.logprobs, T, 0.0, left=False) for p in parts]),
            finish_reasons=[f for p in parts for f in p.finish_reasons],
            num_tokens=sum(p.num_tokens for p in parts),
            pad_token_id=pad,
        )

    @classmethod
    def from_lists(cls, prompts: list[list[int]], responses: list[list[int]], logprobs: list[list[float]],
                   finish_reasons: list[str], pad_token_id: int) -> Rollout:
        """A batch from per-row token lists (what an engine with its own scheduler returns), padded as above.

        >>> r = Rollout.from_lists([[5, 6], [8]], [[7], [9, 2]], [[-0.5], [-1.0, -0.25]], ["length", "stop"], 0)
        >>> r.prompt_ids.tolist(), r.prompt_mask.tolist(), r.response_ids.tolist(), r.logprobs.tolist(), r.num_tokens
        ([[5, 6], [0, 8]], [[1, 1], [0, 1]], [[7, 0], [9, 2]], [[-0.5, 0.0], [-1.0, -0.25]], 3)
        """
        P = max(len(p) for p in prompts)
        T = max(max(len(r) for r in responses), 1)
        B = len(prompts)
        prompt_ids = torch.full((B, P), pad_token_id, dtype=torch.long)
        prompt_mask = torch.zeros(B, P, dtype=torch.long)
        response_ids = torch.full((B, T), pad_token_id, dtype=torch.long)
        response_mask = torch.zeros(B, T)
        lps = torch.zeros(B, T)
        for i, (prompt, response, lp) in enumerate(zip(prompts, responses, logprobs)):
            if len(prompt):
                prompt_ids[i, P - len(prompt):] = torch.as_tensor(prompt, dtype=torch.long)
                prompt_mask[i, P - len(prompt):] = 1
            if len(response):
                response_ids[i, :len(response)] = torch.as_tensor(response, dtype=torch.long)
                response_mask[i, :len(response)] = 1.0
                lps[i, :len(response)] = torch.as_tensor(lp, dtype=torch.float32)
        return cls(prompt_ids, prompt_mask, response_ids, response_mask, lps, list(finish_reasons),
                   int(response_mask.sum()), pad_token_id)

    def rows(self, index: slice | list[int]) -> Rollout:
        """A sub-batch: the rows in ``index`` (a slice or a list of row numbers), widths kept."""
        idx = index if isinstance(index, slice) else torch.as_tensor(index, dtype=torch.long)
        finish = self.finish_reasons[index] if isinstance(index, slice) else [self.finish_reasons[i] for i in index]
        mask = self.response_mask[idx]
        return Rollout(self.prompt_ids[idx], self.prompt_mask[idx], self.response_ids[idx], mask, self.logprobs[idx],
                       finish, int(mask.sum().item()), self.pad_token_id)


class Engine(Protocol):
    """What the trainer and the evaluator need from a rollout engine.

    - ``generate(prompt_ids, sampling, rng)``: ``sampling.n`` responses for each unpadded prompt token list,
      the ``n`` rows of a prompt consecutive, as a :class:`Rollout`. Log-probs are those of the sampled
      token under ``logits / temperature`` (before top-p); generation stops at the first of
      :attr:`eos_token_ids` (kept in the response and its mask) or at ``max_new_tokens``; the same
      ``rng`` seed gives the same samples.
    - ``load_weights(named_tensors)``: the policy's ``(name, tensor)`` pairs, as ``named_parameters()``
      gives them; the next ``generate`` samples from exactly these weights (cast to the engine's dtype).
    - ``sleep()``: the trainer is about to compute log-probs and update; an engine on the training GPU
      releases its memory. Its weights are then stale by definition: ``generate`` raises
      :class:`EngineAsleep` until ``load_weights`` has pushed the updated ones (which wakes it). Every
      engine keeps this rule, so a trainer that forgets the push fails on any engine, never silently
      samples from old weights.
    """

    eos_token_ids: list[int]
    pad_token_id: int

    def generate(self, prompt_ids: list[list[int]], sampling: Sampling, rng: RandomStream) -> Rollout: ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def sleep(self) -> None: ...


class EngineAsleep(RuntimeError):
    """``generate`` on an engine that slept and was given no weights since: it would sample from stale weights."""

    def __init__(self, engine: str):
        super().__init__(f"{engine}: generate() after sleep() without load_weights(): the engine's weights are "
                         f"stale (the trainer updated the policy); push the policy's weights first")

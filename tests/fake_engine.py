"""A second rollout engine, written the plain way, for the engine contract tests.

No KV cache and no batching: one full forward per token per sequence, each sequence drawn from a
``torch.Generator`` seeded by its own request seed (:meth:`RandomStream.request_seeds`), as an engine
with per-request seeds (vLLM) would. It shares nothing with the built-in engine but the contract, so
the same tests passing on both check the contract, not one implementation.
"""

from __future__ import annotations

import copy

import torch

from prorl.policy import eos_token_ids
from prorl.rollout.base import EngineAsleep, RandomStream, Rollout, Sampling


class NaiveEngine:
    def __init__(self, model, tokenizer):
        self.model = model
        self.eos_token_ids = eos_token_ids(model, tokenizer)
        self.pad_token_id = tokenizer.pad_token_id
        self.asleep = False

    @classmethod
    def from_policy(cls, policy, tokenizer, rollout_cfg) -> NaiveEngine:
        return cls(copy.deepcopy(policy).float().eval(), tokenizer)

    def _draw(self, logits: torch.Tensor, sampling: Sampling, gen: torch.Generator) -> tuple[int, float]:
        if sampling.temperature == 0:
            token = int(logits.argmax())
            return token, float(logits.log_softmax(-1)[token])
        logprobs = (logits / sampling.temperature).log_softmax(-1)  # [V]
        probs = logprobs.exp()
        order = probs.argsort(descending=True)
        ranked = probs[order]
        outside = ranked.cumsum(-1) - ranked >= sampling.top_p  # tokens past the nucleus
        ranked = ranked.masked_fill(outside, 0.0)
        token = int(order[torch.multinomial(ranked, 1, generator=gen)])
        return token, float(logprobs[token])

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], sampling: Sampling, rng: RandomStream) -> Rollout:
        if self.asleep:
            raise EngineAsleep("naive engine")
        seeds = rng.request_seeds(len(prompt_ids) * sampling.n)
        parts = []
        for i, prompt in enumerate(prompt_ids):
            for j in range(sampling.n):
                gen = torch.Generator().manual_seed(seeds[i * sampling.n + j])
                ids, tokens, logprobs, finish = list(prompt), [], [], "length"
                for _ in range(sampling.max_new_tokens):
                    logits = self.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
                    token, lp = self._draw(logits, sampling, gen)
                    ids.append(token)
                    tokens.append(token)
                    logprobs.append(lp)
                    if token in self.eos_token_ids:
                        finish = "stop"
                        break
                parts.append(Rollout(
                    prompt_ids=torch.tensor([prompt]), prompt_mask=torch.ones(1, len(prompt), dtype=torch.long),
                    response_ids=torch.tensor([tokens]), response_mask=torch.ones(1, len(tokens)),
                    logprobs=torch.tensor([logprobs]), finish_reasons=[finish], num_tokens=len(tokens),
                    pad_token_id=self.pad_token_id,
                ))
        return Rollout.cat(parts)

    @torch.no_grad()
    def load_weights(self, named_tensors) -> None:
        params = dict(self.model.named_parameters())
        for name, tensor in named_tensors:
            params[name].copy_(tensor)
        self.asleep = False

    def sleep(self) -> None:
        self.asleep = True

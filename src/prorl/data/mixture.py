"""The mixture sampler: batches of prompts drawn across domains by weight, with a resumable cursor.

How a batch is drawn:

- **Domain counts are deterministic** (no random draw): slot by slot, the next prompt goes to the
  domain furthest behind its share, i.e. the largest ``weight * prompts_drawn_so_far - drawn_from_domain``
  (ties to the domain listed first). Over the whole run each domain's count stays within one prompt
  of ``weight * total`` (tested), so even batches of one or two prompts follow the weights, and
  domains alternate inside a batch instead of coming in blocks. A random multinomial draw would let
  small domains go unsampled for many steps by chance.
- **Within a domain**, problems come in epochs: each epoch is a fresh permutation of the domain's
  list, used without replacement; domains run through their epochs independently (a small domain
  with a large weight repeats sooner). The permutation of epoch ``e`` of domain ``d`` is drawn from
  ``random.Random(f"{seed}:{d}:{e}")``, so it depends on nothing else and the cursor is a few numbers.

Weights are normalised; a domain missing from ``weights`` gets weight 0; ``weights=None`` uses the
domains' sizes. A resumed sampler (``load_state_dict`` of a ``state_dict`` taken between batches)
yields exactly the batches the uninterrupted one would.

Plain Python: this module never imports torch.

>>> from prorl.data.schema import Problem
>>> problems = [Problem(id=f"{d}{i}", domain=d, prompt="?", answer="1") for d in ("math", "stem") for i in range(3)]
>>> sampler = MixtureSampler(problems, {"math": 3, "stem": 1}, seed=0)
>>> [p.domain for p in sampler.next_batch(8)]
['math', 'math', 'stem', 'math', 'math', 'math', 'stem', 'math']
"""

from __future__ import annotations

import random
from typing import Any

from prorl.data.schema import Problem, known_domains
from prorl.errors import ConfigError


def _by_domain(problems: dict[str, list[Problem]] | list[Problem]) -> dict[str, list[Problem]]:
    if isinstance(problems, dict):
        return {d: list(ps) for d, ps in problems.items()}
    grouped: dict[str, list[Problem]] = {}
    for p in problems:
        grouped.setdefault(p.domain, []).append(p)
    return grouped


def _normalise(weights: dict[str, float] | None, sizes: dict[str, int]) -> dict[str, float]:
    """Weights summing to 1 over the domains in ``sizes`` (see module doc), or ConfigError."""
    if weights is None:
        weights = {d: float(n) for d, n in sizes.items()}
    for d, w in weights.items():
        if d not in known_domains():
            raise ConfigError(f"data.weights: unknown domain {d!r}; expected one of {', '.join(known_domains())}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0 or w == float("inf"):
            raise ConfigError(f"data.weights.{d}: expected a finite number >= 0, got {w!r}")
        if w > 0 and sizes.get(d, 0) == 0:
            raise ConfigError(f"data.weights.{d}: weight {w} but no {d} problems were loaded")
    total = sum(float(weights.get(d, 0.0)) for d in sizes)
    if total <= 0:
        raise ConfigError("data.weights: every loaded domain has weight 0 (or no problems were loaded)")
    return {d: float(weights.get(d, 0.0)) / total for d in sizes}


class MixtureSampler:
    """Draws batches of problems by per-domain weight, epoch by epoch; see the module doc for the rules.

    Args:
        problems_by_domain: problems grouped by domain, or a flat list (grouped by ``Problem.domain``).
        weights: per-domain weights (any positive scale), None for proportional to size.
        seed: fixes every permutation.
    """

    def __init__(self, problems_by_domain: dict[str, list[Problem]] | list[Problem],
                 weights: dict[str, float] | None = None, seed: int = 0):
        grouped = _by_domain(problems_by_domain)
        # Domains in known_domains() order (the five, then custom ones sorted), so tie-breaking does not depend on
        # how the caller built the dict.
        domains = known_domains()
        self.problems = {d: grouped[d] for d in domains if grouped.get(d)}
        """Non-empty domains and their problems, in known_domains() order."""
        unknown = sorted(set(grouped) - set(domains))
        if unknown:
            raise ConfigError(f"problems with unknown domain(s) {', '.join(unknown)}; expected {', '.join(domains)}")
        self.weights = _normalise(weights, {d: len(ps) for d, ps in self.problems.items()})
        """Normalised weight of each non-empty domain."""
        self.seed = seed
        """Seed of every permutation."""
        self._epoch = {d: 0 for d in self.problems}
        self._position = {d: 0 for d in self.problems}
        self._drawn = {d: 0 for d in self.problems}
        self._total = 0
        self._order: dict[str, list[int]] = {}

    def _permutation(self, domain: str) -> list[int]:
        epoch = self._epoch[domain]
        cached = self._order.get(domain)
        if cached is None or cached[0] != epoch:
            order = list(range(len(self.problems[domain])))
            random.Random(f"{self.seed}:{domain}:{epoch}").shuffle(order)
            self._order[domain] = cached = [epoch, order]
        return cached[1]

    def _take(self, domain: str) -> Problem:
        order = self._permutation(domain)
        problem = self.problems[domain][order[self._position[domain]]]
        self._position[domain] += 1
        if self._position[domain] == len(order):
            self._epoch[domain] += 1
            self._position[domain] = 0
        return problem

    def next_batch(self, num_prompts: int) -> list[Problem]:
        """The next ``num_prompts`` problems, domains interleaved by the deficit rule (module doc)."""
        if num_prompts < 0:
            raise ValueError(f"num_prompts must be >= 0, got {num_prompts}")
        batch = []
        for _ in range(num_prompts):
            self._total += 1
            domain = max(self.problems, key=lambda d: self.weights[d] * self._total - self._drawn[d])
            self._drawn[domain] += 1
            batch.append(self._take(domain))
        return batch

    def counts(self) -> dict[str, int]:
        """Problems drawn so far from each domain."""
        return dict(self._drawn)

    def state_dict(self) -> dict[str, Any]:
        """The cursor, JSON-serialisable: per-domain epoch, position and count, the total, seed and sizes."""
        return {
            "seed": self.seed,
            "sizes": {d: len(ps) for d, ps in self.problems.items()},
            "weights": dict(self.weights),
            "epoch": dict(self._epoch),
            "position": dict(self._position),
            "drawn": dict(self._drawn),
            "total": self._total,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; ConfigError if it was saved for another seed or other domain sizes.

        Changed weights are allowed (a new stage may re-weight domains): the cursors carry over and the
        per-domain counts restart, so the new weights are followed from here on rather than the
        sampler trying to make up for the old ones.
        """
        sizes = {d: len(ps) for d, ps in self.problems.items()}
        if state.get("seed") != self.seed:
            raise ConfigError(f"sampler state was saved with seed {state.get('seed')}, this run uses {self.seed}")
        if state.get("sizes") != sizes:
            raise ConfigError(f"sampler state was saved for domain sizes {state.get('sizes')}, the loaded data "
                              f"has {sizes}: the data files changed, so the saved cursor means nothing")
        self._epoch = {d: int(state["epoch"][d]) for d in sizes}
        self._position = {d: int(state["position"][d]) for d in sizes}
        same_weights = all(abs(state["weights"].get(d, 0.0) - w) < 1e-12 for d, w in self.weights.items())
        if same_weights:
            self._drawn = {d: int(state["drawn"][d]) for d in sizes}
            self._total = int(state["total"])
        else:
            self._drawn = {d: 0 for d in sizes}
            self._total = 0
        self._order = {}

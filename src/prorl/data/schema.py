"""The one problem schema every domain, loader and verifier shares.

Plain Python: this module never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DOMAINS = ("math", "code", "stem", "logic", "instruction")
"""The five reward domains. The domain stored on a problem picks its verifier."""

CUSTOM_DOMAINS: set[str] = set()
"""Domains a user's own scorer was registered for (``reward.custom``, :func:`prorl.verifiers.use_custom`)."""


def known_domains() -> tuple[str, ...]:
    """The five built-in domains, then the registered custom ones (sorted).

    >>> known_domains()[:2]
    ('math', 'code')
    """
    return DOMAINS + tuple(sorted(CUSTOM_DOMAINS - set(DOMAINS)))


@dataclass(frozen=True)
class Problem:
    """One training or evaluation problem.

    What each domain reads:

    - math: ``answer`` (ground truth, e.g. ``"42"`` or ``"\\frac{1}{2}"``).
    - code: ``tests`` = ``{"inputs": [...], "outputs": [...], "fn_name": optional}``.
    - stem: ``answer`` (an option letter such as ``"B"`` or a number); ``metadata["choices"]`` optional.
    - logic: ``metadata`` = the Reasoning Gym entry's task name and metadata
      (``{"task": "...", "entry": {...}}``); ``answer`` the reference answer.
    - instruction: ``metadata`` = ``{"instruction_ids": [...], "kwargs": [{...}, ...]}``.

    >>> Problem("a", "math", "1+1=", answer="2", system="Be brief.").to_dict()
    {'id': 'a', 'domain': 'math', 'prompt': '1+1=', 'answer': '2', 'system': 'Be brief.'}
    """

    id: str
    """Stable identifier, unique within a data set."""
    domain: str
    """One of DOMAINS."""
    prompt: str
    """The text given to the model (before any chat template)."""
    answer: str | None = None
    """Ground truth for math, stem and logic."""
    tests: dict[str, Any] | None = None
    """Code tests in the APPS/TACO/PRIME format."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Domain-specific data (task settings, instruction arguments, choices, difficulty)."""
    source: str = ""
    """Where the problem came from (file:line, data set name)."""
    system: str | None = None
    """The problem's own system message (a verl prompt's system turn, Llama-Nemotron's ``system_prompt``),
    or None. It goes before the prompt through the chat template and wins over the run's
    ``model.system_prompt`` (see :func:`prorl.policy.encode_prompts`); without a chat template it is
    not used. Absent from a JSONL row means None, so files written before the field load unchanged."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable row, as written to and read from JSONL."""
        row: dict[str, Any] = {"id": self.id, "domain": self.domain, "prompt": self.prompt}
        if self.answer is not None:
            row["answer"] = self.answer
        if self.tests is not None:
            row["tests"] = self.tests
        if self.metadata:
            row["metadata"] = self.metadata
        if self.source:
            row["source"] = self.source
        if self.system is not None:
            row["system"] = self.system
        return row

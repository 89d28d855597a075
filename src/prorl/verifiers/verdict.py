"""The verifier contract: ``score(problem, response) -> Verdict(score, reason)``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """The outcome of scoring one response.

    >>> Verdict(1.0, "correct").score
    1.0
    """

    score: float
    """Reward in [0, 1]."""
    reason: str
    """Why: "correct", "wrong answer: got 41", "no \\\\boxed{} found", "timeout after 5.0s"..."""
    status: str = "ok"
    """"ok" when the verifier ran to completion; "error" when it raised or crashed;
    "timeout" when it passed its deadline. Anything but "ok" scores 0 and is counted in metrics."""

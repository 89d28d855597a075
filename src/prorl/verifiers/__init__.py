"""Verifiers: ``score(problem, response) -> Verdict``, one module per domain, plus the sandbox for untrusted code.

The domain stored on each problem picks its verifier, through the one table :data:`VERIFIERS`
(domain -> module). Modules are imported on first use, so ``import prorl.verifiers`` stays light:
math_verify, reasoning_gym and the sandbox load only when a problem of their domain is scored.

One answer-region rule for every domain, applied here before the domain's verifier is called
(:func:`prorl.text.answer_region`): the verifier sees only the text after the last ``</think>``,
or the whole response when it has no think tag; a response whose ``<think>`` is never closed
scores ``Verdict(0.0, "unterminated think")`` and its verifier is not called. A domain module's
own ``score`` grades the text it is given as it is.

Plain Python: nothing here imports torch.

>>> from prorl.data.schema import Problem
>>> p = Problem(id="m", domain="math", prompt="1+1=", answer="2")
>>> score(p, "so \\\\boxed{2}")
Verdict(score=1.0, reason='correct', status='ok')
>>> score(p, "<think>\\\\boxed{2}</think> no idea").reason
'no \\\\boxed{} answer'
>>> score(p, "<think>so \\\\boxed{2}")
Verdict(score=0.0, reason='unterminated think', status='ok')
>>> safe_score(Problem(id="x", domain="poetry", prompt="?"), "ode").status
'error'
"""

from __future__ import annotations

import importlib

from prorl.data.schema import Problem
from prorl.errors import DataError
from prorl.text import answer_region
from prorl.verifiers.verdict import Verdict

__all__ = ["CUSTOM", "VERIFIERS", "Verdict", "error_verdict", "safe_score", "score", "use_custom"]

VERIFIERS = {
    "math": "prorl.verifiers.math",
    "code": "prorl.verifiers.code",
    "stem": "prorl.verifiers.stem",
    "logic": "prorl.verifiers.logic",
    "instruction": "prorl.verifiers.instructions",
}
"""Domain -> the module whose ``score(problem, response) -> Verdict`` scores it (imported lazily)."""


CUSTOM: dict[str, str] = {}
"""Domain -> ``"module:function"`` of a user's scorer (``reward.custom``), used instead of :data:`VERIFIERS`."""

_CUSTOM_FNS: dict = {}


def use_custom(mapping: dict[str, str]) -> None:
    """Register a user's scorers, ``{domain: "module:function"}``: each ``function(problem, response) -> Verdict``
    gets the answer region of a response, as the built-in verifiers do, and its problems' domain becomes valid in
    data files. Importing each function here makes a wrong path a :class:`prorl.errors.ConfigError` naming
    ``reward.custom.<domain>`` before anything runs. The trainer registers them in its process and the scoring
    pool in every worker."""
    from prorl.data.schema import CUSTOM_DOMAINS
    from prorl.errors import ConfigError

    fns = {}
    for domain, target in mapping.items():
        module, _, name = str(target).partition(":")
        try:
            fns[domain] = getattr(importlib.import_module(module), name) if module and name else None
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"config key 'reward.custom.{domain}': cannot load {target!r} "
                              f"({type(exc).__name__}: {exc})") from None
        if not callable(fns[domain]):
            raise ConfigError(f"config key 'reward.custom.{domain}': expected 'module:function', got {target!r}")
    CUSTOM.clear()
    CUSTOM.update(mapping)
    _CUSTOM_FNS.clear()
    _CUSTOM_FNS.update(fns)
    CUSTOM_DOMAINS.clear()
    CUSTOM_DOMAINS.update(mapping)


def score(problem: Problem, response: str) -> Verdict:
    """Score one response with the verifier of ``problem.domain``; score in [0, 1].

    The verifier is given :func:`prorl.text.answer_region` of ``response``; when that is None
    (a ``<think>`` never closed) the result is ``Verdict(0.0, "unterminated think")`` without
    calling the verifier, so nothing about the problem's data is checked then.

    Raises :class:`prorl.errors.DataError` for a domain not in :data:`VERIFIERS`, ``ValueError``
    when a verifier returns a score outside [0, 1] (or NaN), and whatever the verifier raises.
    Use :func:`safe_score` (or the pool) where a failure must cost one sample only.
    """
    custom = _CUSTOM_FNS.get(problem.domain)
    module_name = CUSTOM.get(problem.domain) or VERIFIERS.get(problem.domain)
    if module_name is None:
        raise DataError(f"problem {problem.id!r}: field 'domain': no verifier for {problem.domain!r}; "
                        f"expected one of {', '.join(VERIFIERS)}")
    region = answer_region(response)
    if region is None:
        return Verdict(0.0, "unterminated think", "ok")
    verdict = (custom or importlib.import_module(module_name).score)(problem, region)
    if not isinstance(verdict, Verdict):
        raise TypeError(f"{module_name}.score returned {type(verdict).__name__}, expected Verdict")
    if not (0.0 <= verdict.score <= 1.0):  # NaN fails this comparison too
        raise ValueError(f"{module_name}.score returned score {verdict.score!r} outside [0, 1]")
    return verdict


def error_verdict(exc: BaseException) -> Verdict:
    """The verdict for a verifier that raised: score 0, status "error", the exception's type and message.

    >>> error_verdict(ZeroDivisionError("division by zero"))
    Verdict(score=0.0, reason='verifier error: ZeroDivisionError: division by zero', status='error')
    """
    message = str(exc)
    if len(message) > 300:  # a reason is logged per sample: keep it a line, not a traceback dump
        message = message[:300] + "..."
    return Verdict(0.0, f"verifier error: {type(exc).__name__}: {message}", status="error")


def safe_score(problem: Problem, response: str) -> Verdict:
    """:func:`score`, with any exception turned into :func:`error_verdict` (one sample lost, never the run).

    In-process and without a deadline: a verifier that hangs hangs the caller. Use
    :class:`prorl.verifiers.pool.ScoringPool` for deadlines and crash isolation.
    """
    try:
        verdict = score(problem, response)
    except Exception as exc:  # noqa: BLE001 - any verifier failure costs this one sample
        return error_verdict(exc)
    return verdict

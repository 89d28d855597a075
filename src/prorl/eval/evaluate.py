"""pass@k evaluation: ``n`` samples per problem, scored by the verifiers, summarised per task and domain.

One code path serves ``prorl eval`` (:mod:`prorl.eval.command`) and validation during training
(:func:`evaluate`), so a number logged as ``val/pass@1/math`` means exactly what ``prorl eval`` reports.
Both sample through :func:`prorl.groups.sample_and_score` with a :class:`prorl.rollout.Sampling`.

Definitions (also in ``docs/evaluation.md``):

- A sample is *correct* when its verifier score is ``>= 1.0``. For the continuous domains (code:
  fraction of tests passed; logic: Reasoning Gym's score; instruction: fraction of instructions
  followed) that means fully right; ``mean@n`` (the mean score over all samples) is reported next to it.
- A problem's *task* is ``problem.metadata["task"]`` when present (e.g. a Reasoning Gym task), else
  its domain.
- pass@k of a task or domain is the mean over its problems of the unbiased estimator
  :func:`prorl.eval.passk.pass_at_k` (``k <= n`` only); ``pass@1`` is the mean of ``correct / n``.
- Responses are scored as generated: a response cut at ``max_new_tokens`` is scored like any other
  (training's ``reward.truncated_reward`` does not apply here); their number is reported per problem.

How the work is cut: the problems are split, in their given order, into chunks of
``problems_per_chunk = max(1, batch_size // n)`` problems (``sampling.batch_size``, 256 sequences when
unset); a chunk's ``n * problems`` samples come from one engine call drawing from a
:class:`prorl.rollout.RandomStream` seeded from ``(seed, chunk index)``. A chunk's samples therefore do not depend on which
other chunks ran, which is what lets an interrupted ``prorl eval`` resume and still write the file an
uninterrupted run would have written. Limit: the same holds only on the same hardware and library
versions; batched floating-point results may differ across devices.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from typing import Iterator

from prorl.data.schema import Problem
from prorl.errors import UserError
from prorl.eval.passk import default_ks, pass_at_k

CONTINUOUS_DOMAINS = ("code", "logic", "instruction")
"""Domains whose verifier gives partial credit; for them ``mean@n`` is the main number."""

DEFAULT_CHUNK_SEQUENCES = 256
"""Sequences per chunk when no ``batch_size`` is given."""


def task_of(problem: Problem) -> str:
    """The task a problem is reported under: ``metadata["task"]`` if set, else the domain.

    >>> task_of(Problem("a", "logic", "?", metadata={"task": "maze"})), task_of(Problem("b", "math", "?"))
    ('maze', 'math')
    """
    task = problem.metadata.get("task") if isinstance(problem.metadata, dict) else None
    return str(task) if task else problem.domain


def problems_per_chunk(n: int, batch_size: int | None) -> int:
    """Problems whose ``n`` samples go through one ``generate`` call.

    >>> problems_per_chunk(16, 256), problems_per_chunk(256, 64), problems_per_chunk(4, None)
    (16, 1, 64)
    """
    return max(1, (batch_size or DEFAULT_CHUNK_SEQUENCES) // n)


def problems_fingerprint(problems: list[Problem]) -> str:
    """A short hash of the problems' ids, domains and prompts, in order (detects a changed data set on resume)."""
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.id, p.domain, p.prompt]).encode())
    return h.hexdigest()[:16]


def _chunk_seed(seed: int, chunk: int) -> int:
    # Distinct for every (seed, chunk) pair with chunk < 1_000_003; torch seeds are 64-bit.
    return (seed * 1_000_003 + chunk) % (2**63)


def iter_chunks(
    engine,
    tokenizer,
    problems: list[Problem],
    sampling,
    *,
    pool,
    seed: int,
    chat_template: bool | None,
    skip: set[int] | frozenset[int] = frozenset(),
    system_prompt: str | None = None,
) -> Iterator[tuple[int, list[dict]]]:
    """Generate and score chunk by chunk; yields ``(chunk index, per-problem records)``.

    ``engine`` meets :class:`prorl.rollout.Engine`; ``sampling`` is a :class:`prorl.rollout.Sampling`.
    Chunks whose index is in ``skip`` are not run (already done by an earlier, interrupted run).
    A record is ``{"index", "id", "domain", "task", "n", "correct", "mean_score", "truncated", "errors"}``:
    ``correct`` = samples with score >= 1, ``truncated`` = samples cut at ``max_new_tokens``,
    ``errors`` = samples whose verifier did not finish (status other than "ok"; they score 0).
    """
    from prorl.groups import sample_and_score
    from prorl.rollout import RandomStream

    n = sampling.n
    size = problems_per_chunk(n, sampling.batch_size)
    for chunk, start in enumerate(range(0, len(problems), size)):
        if chunk in skip:
            continue
        part = problems[start:start + size]
        groups = sample_and_score(engine, tokenizer, part, sampling, RandomStream(_chunk_seed(seed, chunk)), pool,
                                  chat_template=chat_template, system_prompt=system_prompt)
        verdicts, finish = groups.verdicts, groups.rollout.finish_reasons
        records = []
        for j, problem in enumerate(part):
            rows = range(j * n, (j + 1) * n)
            scores = [float(verdicts[r].score) for r in rows]
            records.append({
                "index": start + j,
                "id": problem.id,
                "domain": problem.domain,
                "task": task_of(problem),
                "n": n,
                "correct": sum(1 for s in scores if s >= 1.0),
                "mean_score": math.fsum(scores) / n,
                "truncated": sum(1 for r in rows if finish[r] == "length"),
                "errors": sum(1 for r in rows if verdicts[r].status != "ok"),
            })
        yield chunk, records


def _group_summary(records: list[dict], ks: list[int]) -> dict:
    """pass@k (k <= the smallest n in the group), pass@1, mean@n and counts over ``records``."""
    n_min = min(r["n"] for r in records)
    count = len(records)
    passk = {str(k): math.fsum(pass_at_k(r["n"], r["correct"], k) for r in records) / count for k in ks if k <= n_min}
    return {
        "count": count,
        "n": n_min,
        "pass@k": passk,
        "pass@1": math.fsum(r["correct"] / r["n"] for r in records) / count,
        "mean@n": math.fsum(r["mean_score"] for r in records) / count,
        "truncated_frac": math.fsum(r["truncated"] for r in records) / math.fsum(r["n"] for r in records),
        "errors": sum(r["errors"] for r in records),
    }


def summarize(records: list[dict], ks: list[int], settings: dict) -> dict:
    """The results dict from per-problem records: ``problems``, ``tasks``, ``domains``, ``overall``, ``settings``.

    ``tasks[t]`` and ``domains[d]`` hold ``count`` (problems), ``n``, ``pass@k`` (``{"1": .., "2": ..}``),
    ``pass@1``, ``mean@n``, ``truncated_frac``, ``errors`` and ``continuous``; tasks also name their domain.

    >>> recs = [{"index": 0, "id": "a", "domain": "math", "task": "math", "n": 4, "correct": 1, "mean_score": 0.25,
    ...          "truncated": 0, "errors": 0},
    ...         {"index": 1, "id": "b", "domain": "math", "task": "math", "n": 4, "correct": 0, "mean_score": 0.0,
    ...          "truncated": 2, "errors": 0}]
    >>> out = summarize(recs, [1, 2, 4], {})
    >>> out["domains"]["math"]["pass@k"]  # problem a: 1/4, 1/2, 1; problem b: 0
    {'1': 0.125, '2': 0.25, '4': 0.5}
    >>> out["domains"]["math"]["truncated_frac"]
    0.25
    """
    records = sorted(records, key=lambda r: r["index"])
    tasks: dict[str, list[dict]] = {}
    domains: dict[str, list[dict]] = {}
    for r in records:
        tasks.setdefault(r["task"], []).append(r)
        domains.setdefault(r["domain"], []).append(r)
    out_tasks = {}
    for task, rs in sorted(tasks.items()):
        task_domains = sorted({r["domain"] for r in rs})
        out_tasks[task] = {"domain": "+".join(task_domains), **_group_summary(rs, ks),
                           "continuous": any(d in CONTINUOUS_DOMAINS for d in task_domains)}
    out_domains = {d: {**_group_summary(rs, ks), "continuous": d in CONTINUOUS_DOMAINS}
                   for d, rs in sorted(domains.items())}
    return {
        "settings": dict(settings, ks=list(ks)),
        "overall": _group_summary(records, ks) if records else {},
        "domains": out_domains,
        "tasks": out_tasks,
        "problems": records,
    }


def evaluate(
    engine,
    tokenizer,
    problems: list[Problem],
    sampling,
    *,
    pool,
    ks: list[int] | None = None,
    seed: int = 0,
    progress: bool = False,
    chat_template: bool | None = None,
    system_prompt: str | None = None,
    dist=None,
) -> dict:
    """Sample ``sampling.n`` responses per problem, score them with ``pool`` and summarise (see :func:`summarize`).

    ``dist`` (a :class:`prorl.dist.Dist` of several ranks, as training's validation passes): each rank evaluates
    every ``world``-th problem with its own seed, and every rank gets the summary of all of them.

    ``engine`` meets :class:`prorl.rollout.Engine` (``HFEngine(model, tokenizer)`` for a loaded model).
    ``ks`` defaults to the powers of two up to ``n``; ks larger than ``n`` raise ``ValueError``.
    ``pool`` is anything with ``score_batch(problems, responses) -> list[Verdict]``
    (:class:`prorl.verifiers.pool.ScoringPool`). Prompts are encoded with
    :func:`prorl.policy.encode_prompts`, as in training. The result is JSON-serialisable.
    """
    n = sampling.n
    if not problems:
        raise UserError("evaluate: no problems to evaluate")
    if n < 1:
        raise UserError(f"evaluate: n={n}, expected n >= 1")
    ks = default_ks(n) if ks is None else sorted(set(ks))
    bad = [k for k in ks if k < 1 or k > n]
    if bad:
        raise ValueError(f"evaluate: k values {bad} outside 1..n={n}")
    settings = run_settings(sampling, seed=seed, chat_template=chat_template, problems=problems,
                            system_prompt=system_prompt)
    records: list[dict] = []
    if dist is not None and dist.enabled:
        from prorl.batch import rank_seed

        mine = problems[dist.rank::dist.world]
        for _, chunk_records in iter_chunks(engine, tokenizer, mine, sampling, pool=pool,
                                            seed=rank_seed(seed, dist.rank), chat_template=chat_template,
                                            system_prompt=system_prompt) if mine else ():
            records.extend(r | {"index": dist.rank + r["index"] * dist.world} for r in chunk_records)
        return summarize([r for part in dist.gather(records) for r in part], ks, settings)
    with progress_bar(len(problems), progress) as bar:
        for _, chunk_records in iter_chunks(engine, tokenizer, problems, sampling, pool=pool, seed=seed,
                                            chat_template=chat_template, system_prompt=system_prompt):
            records.extend(chunk_records)
            bar.update(len(chunk_records))
    return summarize(records, ks, settings)


def validation_metrics(result: dict) -> dict:
    """The ``val/*`` metrics of an :func:`evaluate` result: pass@1 and mean score per domain, and their mean."""
    domains = result["domains"]
    metrics = {}
    for domain, d in domains.items():
        metrics[f"val/pass@1/{domain}"] = d["pass@1"]
        metrics[f"val/mean_score/{domain}"] = d["mean@n"]
    metrics["val/pass@1/mean"] = sum(d["pass@1"] for d in domains.values()) / max(len(domains), 1)
    return metrics


def run_settings(sampling, *, seed, chat_template, problems, system_prompt=None) -> dict:
    """Everything that decides the per-problem results; a resumed run must match it exactly.

    ``system_prompt`` is recorded only when set, so files written without one keep their settings.
    """
    settings = {
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_new_tokens": sampling.max_new_tokens,
        "seed": seed,
        "batch_size": sampling.batch_size,
        "problems_per_chunk": problems_per_chunk(sampling.n, sampling.batch_size),
        "chat_template": chat_template,
        "num_problems": len(problems),
        "problems_sha": problems_fingerprint(problems),
    }
    return settings | ({"system_prompt": system_prompt} if system_prompt else {})


def progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="problem", desc="eval", file=sys.stderr)

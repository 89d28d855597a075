"""pass@k evaluation: ``n`` samples per problem, scored by the verifiers, summarised per task and domain.

One code path serves ``prorl eval`` and validation during training (:func:`evaluate`), so a number
logged as ``val/pass@1/math`` means exactly what ``prorl eval`` reports.

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
``problems_per_chunk = max(1, batch_size // n)`` problems (``batch_size`` defaults to 256 sequences
here); a chunk's ``n * problems`` prompts go through one :func:`prorl.rollout.generate` call with a
generator seeded from ``(seed, chunk index)``. A chunk's samples therefore do not depend on which
other chunks ran, which is what lets an interrupted ``prorl eval`` resume and still write the file an
uninterrupted run would have written. Limit: the same holds only on the same hardware and library
versions; batched floating-point results may differ across devices.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Iterator

from prorl.data.schema import Problem
from prorl.errors import UserError
from prorl.eval.passk import default_ks, parse_ks, pass_at_k

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
    model,
    tokenizer,
    problems: list[Problem],
    *,
    n: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    pool,
    seed: int,
    batch_size: int | None,
    chat_template: bool | None,
    skip: set[int] | frozenset[int] = frozenset(),
) -> Iterator[tuple[int, list[dict]]]:
    """Generate and score chunk by chunk; yields ``(chunk index, per-problem records)``.

    Chunks whose index is in ``skip`` are not run (already done by an earlier, interrupted run).
    A record is ``{"index", "id", "domain", "task", "n", "correct", "mean_score", "truncated", "errors"}``:
    ``correct`` = samples with score >= 1, ``truncated`` = samples cut at ``max_new_tokens``,
    ``errors`` = samples whose verifier did not finish (status other than "ok"; they score 0).
    """
    import torch

    from prorl.policy import encode_prompts, eos_token_ids
    from prorl.rollout import generate

    size = problems_per_chunk(n, batch_size)
    device = next(model.parameters()).device
    eos = eos_token_ids(model, tokenizer)
    for chunk, start in enumerate(range(0, len(problems), size)):
        if chunk in skip:
            continue
        part = problems[start:start + size]
        prompts = encode_prompts(tokenizer, [p.prompt for p in part], chat_template=chat_template)
        generator = torch.Generator(device=device).manual_seed(_chunk_seed(seed, chunk))
        out = generate(
            model, [ids for ids in prompts for _ in range(n)], max_new_tokens=max_new_tokens, eos_token_ids=eos,
            pad_token_id=tokenizer.pad_token_id, temperature=temperature, top_p=top_p, generator=generator,
            batch_size=batch_size,
        )
        texts = tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
        verdicts = pool.score_batch([p for p in part for _ in range(n)], texts)
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
                "truncated": sum(1 for r in rows if out.finish_reasons[r] == "length"),
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
    model,
    tokenizer,
    problems: list[Problem],
    *,
    n: int,
    ks: list[int] | None = None,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int,
    pool,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
    chat_template: bool | None = None,
) -> dict:
    """Sample ``n`` responses per problem, score them with ``pool`` and summarise (see :func:`summarize`).

    ``ks`` defaults to the powers of two up to ``n``; ks larger than ``n`` raise ``ValueError``.
    ``pool`` is anything with ``score_batch(problems, responses) -> list[Verdict]``
    (:class:`prorl.verifiers.pool.ScoringPool`). Prompts are encoded with
    :func:`prorl.policy.encode_prompts`, as in training. The result is JSON-serialisable.
    """
    if not problems:
        raise UserError("evaluate: no problems to evaluate")
    if n < 1:
        raise UserError(f"evaluate: n={n}, expected n >= 1")
    ks = default_ks(n) if ks is None else sorted(set(ks))
    bad = [k for k in ks if k < 1 or k > n]
    if bad:
        raise ValueError(f"evaluate: k values {bad} outside 1..n={n}")
    settings = run_settings(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                            batch_size=batch_size, chat_template=chat_template, problems=problems)
    records: list[dict] = []
    with _progress_bar(len(problems), progress) as bar:
        for _, chunk_records in iter_chunks(
            model, tokenizer, problems, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
            pool=pool, seed=seed, batch_size=batch_size, chat_template=chat_template,
        ):
            records.extend(chunk_records)
            bar.update(len(chunk_records))
    return summarize(records, ks, settings)


def run_settings(*, n, temperature, top_p, max_new_tokens, seed, batch_size, chat_template, problems) -> dict:
    """Everything that decides the per-problem results; a resumed run must match it exactly."""
    return {
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "batch_size": batch_size,
        "problems_per_chunk": problems_per_chunk(n, batch_size),
        "chat_template": chat_template,
        "num_problems": len(problems),
        "problems_sha": problems_fingerprint(problems),
    }


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="problem", desc="eval", file=sys.stderr)


# ---------------------------------------------------------------- resumable runs (prorl eval)


def partial_path(out: Path) -> Path:
    """Where chunk results are appended while ``out`` is being computed: ``results.json.partial.jsonl``."""
    return out.with_name(out.name + ".partial.jsonl")


def read_partial(path: Path, settings: dict) -> dict[int, list[dict]]:
    """Chunks already finished by an earlier run, ``{chunk: records}``; empty if ``path`` does not exist.

    The first line holds the settings; when a chunk has finished, any difference from ``settings`` is a
    :class:`UserError` naming the keys (with no chunk finished there is nothing to lose, and the caller
    starts the file over). A partly written last line (the run died while writing it) is ignored: that
    chunk runs again.
    """
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise UserError(f"{path}:{number}: not valid JSON; delete the file to start the evaluation over") from None
    if not rows:
        return {}
    if "settings" not in rows[0]:
        raise UserError(f"{path}:1: expected a settings line; delete the file to start the evaluation over")
    if len(rows) == 1:
        return {}  # no chunk finished: nothing to resume, whatever the settings were
    old = rows[0]["settings"]
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff:
        detail = ", ".join(f"{k}: {old.get(k)!r} before, {settings.get(k)!r} now" for k in diff)
        raise UserError(f"{path}: an interrupted evaluation with different settings ({detail}); "
                        f"rerun with the same settings to resume it, or delete the file to start over")
    done = {}
    for number, row in enumerate(rows[1:], 2):
        if "chunk" not in row or "problems" not in row:
            raise UserError(f"{path}:{number}: expected fields 'chunk' and 'problems'")
        done[int(row["chunk"])] = row["problems"]
    return done


def _append_line(path: Path, row: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def make_pool(workers: int, timeout_s: float):
    """The verifier pool ``prorl eval`` scores with (a seam the tests replace)."""
    from prorl.verifiers.pool import ScoringPool

    return ScoringPool(num_workers=workers, timeout_s=timeout_s)


def add_eval_arguments(parser) -> None:
    """Arguments of ``prorl eval`` (defaults: the paper's evaluation settings)."""
    parser.add_argument("--model", required=True, help="Hugging Face model directory (or hub id)")
    parser.add_argument("--data", required=True, nargs="+", help="problem files (JSONL, Parquet, dataset dirs)")
    parser.add_argument("--adapter", default=None, help="row adapter for the data files (default: detect)")
    parser.add_argument("--n", type=int, default=256, help="samples per problem (default 256)")
    parser.add_argument("--k", default="", help="comma-separated k values (default: powers of 2 up to n)")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling threshold (default 0.95)")
    parser.add_argument("--max-tokens", type=int, default=8192, help="max new tokens per response (default 8192)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="sequences per generate batch; also sets problems per chunk = batch-size // n (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    parser.add_argument("--dtype", default="bfloat16", help="model dtype: bfloat16, float16 or float32")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default auto: cuda when available)")
    parser.add_argument("--chat-template", choices=["auto", "on", "off"], default="auto",
                        help="apply the tokenizer's chat template (auto: when it has one)")
    parser.add_argument("--workers", type=int, default=2, help="verifier worker processes (default 2)")
    parser.add_argument("--verifier-timeout", type=float, default=30.0, help="seconds per verification (default 30)")
    parser.add_argument("--out", default="results.json", help="output JSON (default results.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main_eval(args) -> int:
    """``prorl eval``: evaluate, resuming from ``OUT.partial.jsonl`` when an earlier run was interrupted."""
    from prorl.data.loaders import load_problems

    if args.n < 1:
        raise UserError(f"--n {args.n}: expected at least 1 sample per problem")
    if args.max_tokens < 1:
        raise UserError(f"--max-tokens {args.max_tokens}: expected at least 1")
    try:
        ks = parse_ks(args.k, args.n)
    except ValueError as exc:
        raise UserError(f"--k {args.k}: {exc}") from None
    problems = [p for f in args.data for p in load_problems(f, adapter=args.adapter)]
    if args.limit is not None:
        problems = problems[:args.limit]
    if not problems:
        raise UserError(f"--data {' '.join(args.data)}: no problems found")
    chat_template = {"auto": None, "on": True, "off": False}[args.chat_template]
    settings = run_settings(n=args.n, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_tokens,
                            seed=args.seed, batch_size=args.batch_size, chat_template=chat_template, problems=problems)
    settings |= {"model": str(args.model), "data": [str(f) for f in args.data], "dtype": args.dtype}

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(out)
    done = read_partial(partial, settings)
    if done:
        print(f"resuming: {sum(len(r) for r in done.values())} problems already evaluated in {partial}", file=sys.stderr)
    else:
        # Nothing finished yet (or no file): start the file afresh with the current settings.
        partial.write_text(json.dumps({"settings": settings}) + "\n")

    records = [r for rs in done.values() for r in rs]
    num_chunks = math.ceil(len(problems) / problems_per_chunk(args.n, args.batch_size))
    if len(done) < num_chunks:
        from prorl.policy import load_policy, resolve_device

        device = resolve_device(args.device or "auto", setting="--device")
        model, tokenizer = load_policy(args.model, dtype=args.dtype, device=device)
        with make_pool(args.workers, args.verifier_timeout) as pool, \
                _progress_bar(len(problems), not args.no_progress) as bar:
            bar.update(len(records))
            for chunk, chunk_records in iter_chunks(
                model, tokenizer, problems, n=args.n, temperature=args.temperature, top_p=args.top_p,
                max_new_tokens=args.max_tokens, pool=pool, seed=args.seed, batch_size=args.batch_size,
                chat_template=chat_template, skip=set(done),
            ):
                _append_line(partial, {"chunk": chunk, "problems": chunk_records})
                records.extend(chunk_records)
                bar.update(len(chunk_records))

    result = summarize(records, ks, settings)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    partial.unlink()
    print(format_summary(result))
    print(f"wrote {out}")
    return 0


def format_summary(result: dict) -> str:
    """A plain-text table: per domain, problems, pass@1, mean@n and pass@k at the largest k.

    >>> print(format_summary({"domains": {"math": {"count": 2, "pass@1": 0.5, "mean@n": 0.5,
    ...                                            "pass@k": {"1": 0.5, "8": 0.75}}}}))
    domain          problems   pass@1   mean@n  pass@8
    math                   2   0.5000   0.5000  0.7500
    """
    domains = result.get("domains", {})
    kmax = max((int(k) for d in domains.values() for k in d["pass@k"]), default=1)
    lines = [f"{'domain':<14} {'problems':>9} {'pass@1':>8} {'mean@n':>8}  pass@{kmax}"]
    for name, d in domains.items():
        at_kmax = d["pass@k"].get(str(kmax))
        lines.append(f"{name:<14} {d['count']:>9} {d['pass@1']:>8.4f} {d['mean@n']:>8.4f}  "
                     + ("-" if at_kmax is None else f"{at_kmax:.4f}"))
    return "\n".join(lines)

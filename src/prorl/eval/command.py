"""``prorl eval``: arguments, a resumable run (chunk results appended to ``OUT.partial.jsonl``), the summary.

The command parses its arguments into a :class:`prorl.rollout.Sampling` and calls the evaluation library
(:mod:`prorl.eval.evaluate`) that validation uses; temperature and top-p default to
:class:`prorl.config.ValidationConfig`'s (the paper's evaluation settings).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from prorl.config import ValidationConfig
from prorl.errors import UserError
from prorl.eval.evaluate import iter_chunks, problems_per_chunk, progress_bar, run_settings, summarize
from prorl.eval.passk import parse_ks

_VALIDATION = ValidationConfig()


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
    parser.add_argument("--temperature", type=float, default=_VALIDATION.temperature,
                        help=f"sampling temperature (default {_VALIDATION.temperature})")
    parser.add_argument("--top-p", type=float, default=_VALIDATION.top_p,
                        help=f"nucleus sampling threshold (default {_VALIDATION.top_p})")
    parser.add_argument("--max-tokens", type=int, default=8192, help="max new tokens per response (default 8192)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="sequences per generate batch; also sets problems per chunk = batch-size // n (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate N problems taken across the tasks in turn (file order within a task)")
    parser.add_argument("--dtype", default="bfloat16", help="model dtype: bfloat16, float16 or float32")
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf",
                        help="rollout engine: hf (built-in) or vllm (pip install 'prorl[vllm]', a CUDA GPU)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9,
                        help="--engine vllm: fraction of the GPU's memory it takes (default 0.9)")
    parser.add_argument("--max-model-len", type=int, default=None,
                        help="--engine vllm: longest prompt + response in tokens (default: the model's context)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default auto: cuda when available)")
    parser.add_argument("--chat-template", choices=["auto", "on", "off"], default="auto",
                        help="apply the tokenizer's chat template (auto: when it has one)")
    parser.add_argument("--system-prompt", default=None,
                        help="system message for problems without their own (needs a chat template)")
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
        problems = across_tasks(problems, args.limit)
    if not problems:
        raise UserError(f"--data {' '.join(args.data)}: no problems found")
    from prorl.rollout.base import Sampling

    chat_template = {"auto": None, "on": True, "off": False}[args.chat_template]
    sampling = Sampling(n=args.n, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_tokens,
                        batch_size=args.batch_size)
    settings = run_settings(sampling, seed=args.seed, chat_template=chat_template, problems=problems,
                            system_prompt=args.system_prompt)
    settings |= {"model": str(args.model), "data": [str(f) for f in args.data], "dtype": args.dtype}
    if args.engine != "hf":  # the built-in engine's results keep the settings they always had
        settings["engine"] = args.engine

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
        engine, tokenizer = make_eval_engine(args)
        with make_pool(args.workers, args.verifier_timeout) as pool, \
                progress_bar(len(problems), not args.no_progress) as bar:
            bar.update(len(records))
            for chunk, chunk_records in iter_chunks(engine, tokenizer, problems, sampling, pool=pool,
                                                    seed=args.seed, chat_template=chat_template, skip=set(done),
                                                    system_prompt=args.system_prompt):
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


def across_tasks(problems: list, limit: int) -> list:
    """``limit`` problems taken from each task in turn (a problem's task: :func:`prorl.eval.evaluate.task_of`), in
    file order within a task, then back in file order: a small ``--limit`` still covers every task.

    >>> from prorl.data.schema import Problem
    >>> ps = [Problem(f"m{i}", "math", "?") for i in range(4)] + [Problem("c0", "code", "?")]
    >>> [p.id for p in across_tasks(ps, 3)]
    ['m0', 'm1', 'c0']
    """
    from prorl.eval.evaluate import task_of

    if limit < 1:
        raise UserError(f"--limit {limit}: expected at least 1")
    by_task: dict[str, list[int]] = {}
    for i, p in enumerate(problems):
        by_task.setdefault(task_of(p), []).append(i)
    chosen: list[int] = []
    for depth in range(max((len(v) for v in by_task.values()), default=0)):
        for indices in by_task.values():
            if depth < len(indices) and len(chosen) < limit:
                chosen.append(indices[depth])
    return [problems[i] for i in sorted(chosen)]


def make_eval_engine(args):
    """``(engine, tokenizer)`` for ``prorl eval``: the built-in engine on the loaded model, or vLLM on the checkpoint."""
    from prorl.policy import load_policy, resolve_device

    if args.engine == "vllm":
        from prorl.config import VLLMConfig
        from prorl.policy import checkpoint_eos_ids, load_tokenizer
        from prorl.rollout.vllm_engine import VLLMEngine

        if not 0 < args.gpu_memory_utilization < 1:
            raise UserError(f"--gpu-memory-utilization {args.gpu_memory_utilization}: expected a fraction in (0, 1)")
        if args.max_model_len is not None and args.max_model_len < 1:
            raise UserError(f"--max-model-len {args.max_model_len}: expected at least 1")
        tokenizer, source = load_tokenizer(args.model)
        settings = VLLMConfig(gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len)
        return VLLMEngine.for_evaluation(source, tokenizer, checkpoint_eos_ids(source, tokenizer), args.dtype,
                                         settings), tokenizer
    from prorl.rollout import HFEngine

    device = resolve_device(args.device or "auto", setting="--device")
    warning = cpu_cost_warning(args.n, args.max_tokens, device)
    if warning:
        print(warning, file=sys.stderr)
    model, tokenizer = load_policy(args.model, dtype=args.dtype, device=device)
    return HFEngine(model, tokenizer), tokenizer


CPU_TOKENS_PER_PROBLEM = 65_536
"""Above this many sampled tokens per problem (``n x max-tokens``) on a CPU, ``prorl eval`` warns."""


def cpu_cost_warning(n: int, max_tokens: int, device) -> str | None:
    """A warning when the paper's evaluation settings (the defaults) would run for hours on a CPU, else None.

    >>> print(cpu_cost_warning(256, 8192, "cpu"))
    warning: --n 256 x --max-tokens 8192 = 2,097,152 tokens per problem on the CPU: hours even for a small model; for a quick look try --n 16 --max-tokens 512
    >>> cpu_cost_warning(16, 512, "cpu") is None, cpu_cost_warning(256, 8192, "cuda") is None
    (True, True)
    """
    if str(device).split(":")[0] != "cpu" or n * max_tokens <= CPU_TOKENS_PER_PROBLEM:
        return None
    return (f"warning: --n {n} x --max-tokens {max_tokens} = {n * max_tokens:,} tokens per problem on the CPU: hours "
            f"even for a small model; for a quick look try --n 16 --max-tokens 512")


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

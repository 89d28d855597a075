"""The training step's compute phases on CPU: matmul peak, log-prob pass and update, float32 against bf16 autocast.

Usage:

    .venv/bin/python benchmarks/bench_step.py [--sizes 2m 20m] [--attn sdpa eager] [--rounds 5] [--threads N]
        [--profile] [--out results.json]

What it measures, on a random tiny Qwen2 model (``prorl.tiny``) and a synthetic rollout batch of the
comparison with TRL (8 prompts x 16 samples, a 12-token prompt and 128 response tokens each):

- **matmul peak**: the best of ``--rounds`` timings of a 2048 x 2048 x 2048 matmul in float32 and in
  bfloat16, FLOP/s = 2 n^3 / seconds: what the cores can do, the yardstick for the rest.
- **log-prob pass**: :func:`prorl.batch.batch_logprobs` over the batch (no grad, as for the reference).
- **update**: :func:`prorl.update.update_policy`, one optimizer step over the batch (forward, backward,
  AdamW, the old log-probs taken from the pass itself), with float32 weights, plain and under bf16 autocast,
  for each attention implementation of ``--attn`` (transformers' ``sdpa`` and ``eager``).
- **FLOP/s of the update**: 6 x (matmul parameters: every linear layer, the output head included) x tokens,
  plus the causal attention's 6 x L x T^2 x H / 2 x 2 per sequence (QK^T and AV, forward and backward),
  divided by the median update time and given as a fraction of the matmul peak of the same dtype. It counts
  the forward of the loss and the backward, not the recompute of gradient checkpointing (off here).

Rounds alternate between the settings after one untimed warm-up each; medians are reported. ``--profile``
prints the top operators of one log-prob pass and one update (torch profiler, float32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import types

import torch

from prorl.batch import Batch, LogprobSettings, batch_logprobs
from prorl.config import resolve_config
from prorl.tiny import build_char_tokenizer, build_tiny_model
from prorl.update import make_optimizer, update_policy

PROMPTS, SAMPLES, PROMPT_LEN, RESPONSE_LEN = 8, 16, 12, 128


def matmul_peak(dtype, rounds: int, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(rounds))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def synthetic_batch(vocab: int) -> Batch:
    B = PROMPTS * SAMPLES
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (B, PROMPT_LEN + RESPONSE_LEN), generator=g)
    groups = types.SimpleNamespace(problems=[None] * B, group_size=SAMPLES, rewards=torch.zeros(B))
    return Batch(groups=groups, input_ids=ids, attention_mask=torch.ones_like(ids),
                 response_mask=torch.ones(B, RESPONSE_LEN), sample_logprobs=torch.zeros(B, RESPONSE_LEN))


def update_flops(model, batch: Batch) -> float:
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    c = model.config
    tokens = batch.input_ids.numel()
    seq = batch.input_ids.shape[1]
    attention = 6 * c.num_hidden_layers * seq**2 * c.hidden_size  # causal: 2 matmuls x 2 FLOP x T^2/2 x 3 passes
    return 6 * linear * tokens + attention * batch.input_ids.shape[0]


def measure(size: str, args) -> dict:
    root = tempfile.mkdtemp()
    tok = build_char_tokenizer(root)
    model = build_tiny_model(root, tok, size=size, max_positions=PROMPT_LEN + RESPONSE_LEN + 1)
    model.train()
    batch = synthetic_batch(len(tok))
    settings = {}
    for attn in args.attn:
        for precision, autocast in (("float32", False), ("bf16-autocast", True)):
            settings[f"{precision}/{attn}"] = resolve_config({}, [
                f"model.path={root}", f"rollout.n={SAMPLES}", f"train.prompts_per_step={PROMPTS}",
                f"train.mini_batch_prompts={PROMPTS}", "train.micro_batch_size=32", "algo.kl_beta=1e-3",
                f"rollout.max_new_tokens={RESPONSE_LEN}", "rollout.temperature=1.0", f"train.autocast_bf16={autocast}",
                f"model.attn_implementation={attn}",
            ])
    first = next(iter(settings.values()))
    ref = batch_logprobs(model, batch, LogprobSettings.of(first))
    adv = torch.randn(len(batch.problems), generator=torch.Generator().manual_seed(1))
    times = {f"{phase}/{name}": [] for phase in ("logprobs", "update") for name in settings}

    def logprob_pass(cfg):
        model.set_attn_implementation(cfg.model.attn_implementation)
        batch_logprobs(model, batch, LogprobSettings.of(cfg))

    def update(cfg):
        model.set_attn_implementation(cfg.model.attn_implementation)
        optimizer, scheduler = make_optimizer(model, cfg)
        update_policy(model, optimizer, scheduler, batch, adv, None, ref, cfg, torch.Generator().manual_seed(2))

    for name, cfg in settings.items():  # warm-up
        logprob_pass(cfg)
        update(cfg)
    for _ in range(args.rounds):
        for name, cfg in settings.items():
            times[f"logprobs/{name}"].append(_timed(lambda: logprob_pass(cfg)))
            times[f"update/{name}"].append(_timed(lambda: update(cfg)))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for label, fn in (("log-prob pass", logprob_pass), ("update", update)):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn(first)
            print(f"--- {size} {label} ({next(iter(settings))})")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    medians = {k: statistics.median(v) for k, v in times.items()}
    flops = update_flops(model, batch)
    return {"size": size, "params": sum(p.numel() for p in model.parameters()), "update_flop": flops,
            "median_s": medians, "runs_s": times,
            "update_flop_per_s": {n: flops / medians[f"update/{n}"] for n in settings}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["2m", "20m"])
    p.add_argument("--attn", nargs="+", default=["sdpa", "eager"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    peak = {"float32": matmul_peak(torch.float32, args.rounds), "bf16-autocast": matmul_peak(torch.bfloat16, args.rounds)}
    print(f"matmul peak: float32 {peak['float32'] / 1e9:.1f} GFLOP/s, bfloat16 {peak['bf16-autocast'] / 1e9:.1f} "
          f"GFLOP/s ({peak['bf16-autocast'] / peak['float32']:.2f}x)", flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    result = {"cpu": cpu, "threads": args.threads, "torch": torch.__version__, "matmul_peak_flop_per_s": peak,
              "sizes": []}
    for size in args.sizes:
        r = measure(size, args)
        r["update_fraction_of_peak"] = {n: f / peak[n.split("/")[0]] for n, f in r["update_flop_per_s"].items()}
        result["sizes"].append(r)
        m = r["median_s"]
        for n in r["update_flop_per_s"]:
            print(f"{size:>4} {n:<20} log-prob pass {m[f'logprobs/{n}']:6.2f} s   update {m[f'update/{n}']:6.2f} s   "
                  f"update {r['update_flop_per_s'][n] / 1e9:6.1f} GFLOP/s = {r['update_fraction_of_peak'][n]:.0%} "
                  "of peak", flush=True)
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

"""Tokens per second of ``prorl.rollout.generate`` against ``model.generate`` on the same model and batch.

Usage (defaults: 128 sequences x 128 new tokens, tiny "2m" and "20m" models, bf16 and fp32, 5 rounds):

    .venv/bin/python benchmarks/bench_rollout.py [--sizes 2m 20m 360m] [--dtypes bfloat16 float32]
        [--batch 128] [--new-tokens 128] [--rounds 5] [--threads N] [--device cpu|cuda]
        [--caches auto static dynamic] [--profile]

Both engines sample (temperature 1.0, top_p 0.95, the same prompts, pad and EOS ids). By default
(``--eos none``) the EOS id given to both is one outside the vocabulary, so no sequence stops early and
both generate exactly batch x new-tokens tokens: this compares the cost of a decode step. With
``--eos real`` the tokenizer's EOS ends sequences (a random model samples it about once per hundred
tokens); throughput then counts the tokens each engine generated through the first EOS, and our engine
gains from dropping finished rows from its batch, which ``generate`` does not do. Runs
alternate (ours, generate, ours, generate, ...) after one untimed warm-up of each, and the table reports
medians: timings on a small shared CPU swing by tens of percent from run to run. Tokens per CPU-second
(process time, all threads) is printed beside wall-clock throughput: it is less disturbed by other
processes competing for the cores, though not immune (waiting threads may spin).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import torch

from prorl.rollout import generate
from prorl.tiny import build_char_tokenizer, build_tiny_model

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def make_prompts(tokenizer, batch: int, seed: int) -> list[list[int]]:
    """``batch`` random printable-ASCII prompts of 8 to 32 characters (different lengths: left padding matters)."""
    rng = torch.Generator().manual_seed(seed)
    chars = [tokenizer.convert_tokens_to_ids(c) for c in "0123456789+-*= abcdefghijklmnopqrstuvwxyz"]
    prompts = []
    for _ in range(batch):
        n = int(torch.randint(8, 33, (1,), generator=rng))
        idx = torch.randint(0, len(chars), (n,), generator=rng)
        prompts.append([chars[i] for i in idx.tolist()])
    return prompts


def run_ours(model, prompts, args, eos, pad, seed, cache="auto") -> int:
    """One call of our engine; returns the number of generated tokens."""
    out = generate(
        model, prompts, max_new_tokens=args.new_tokens, eos_token_ids=[eos], pad_token_id=pad,
        temperature=args.temperature, top_p=args.top_p,
        generator=torch.Generator(device=model.device).manual_seed(seed), cache=cache,
    )
    return out.num_tokens


def profile(engines: dict, model, prompts, args, eos, pad, rows: int = 12) -> None:
    """Print each engine's top operators by self CPU time over one call (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if model.device.type == "cuda" else [])
    for name, fn in engines.items():
        with torch_profile(activities=activities) as prof:
            fn(model, prompts, args, eos, pad, seed=7)
        print(f"\n--- profile: {name}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48))


def run_hf(model, prompts, args, eos, pad, seed) -> int:
    """One call of ``model.generate``; returns the number of generated tokens (through the first EOS)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(model.device), mask.to(model.device)
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=ids, attention_mask=mask, do_sample=True, temperature=args.temperature, top_p=args.top_p,
        top_k=0, max_new_tokens=args.new_tokens, pad_token_id=pad, eos_token_id=eos,
    )
    resp = out[:, width:]  # [B, T]
    is_eos = resp == eos
    # Tokens through the first EOS (inclusive); rows without an EOS count every column.
    seen_before = is_eos.long().cumsum(-1) - is_eos.long()  # [B, T] EOS tokens strictly before each column
    return int((seen_before == 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["2m", "20m"])
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=sorted(DTYPES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--eos", choices=["none", "real"], default="none", help="see the module docstring")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (token counts are read back, which syncs)")
    parser.add_argument("--caches", nargs="+", default=["auto"], choices=["auto", "static", "dynamic"],
                        help="KV caches of our engine to time (each is a row); default: auto")
    parser.add_argument("--profile", action="store_true", help="after timing, profile one call of each engine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tmp = tempfile.mkdtemp()
    tokenizer = build_char_tokenizer(tmp)
    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id if args.eos == "real" else len(tokenizer)  # len(tokenizer): never sampled
    prompts = make_prompts(tokenizer, args.batch, seed=0)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch} x "
          f"{args.new_tokens} new tokens, temperature {args.temperature}, top_p {args.top_p}, eos {args.eos}, "
          f"{args.rounds} rounds")
    rows = []
    for size in args.sizes:
        base = build_tiny_model(f"{tmp}/{size}", tokenizer, size=size)
        for dtype_name in args.dtypes:
            model = base.to(device=args.device, dtype=DTYPES[dtype_name]).eval()
            engines = {("ours" if c == "auto" else f"ours[{c}]"): functools.partial(run_ours, cache=c)
                       for c in args.caches}
            engines["generate"] = run_hf
            for name, fn in engines.items():  # warm-up: first calls allocate and pick kernels
                fn(model, prompts, args, eos, pad, seed=123)
            rates = {name: [] for name in engines}  # tokens per wall-clock second
            cpu_rates = {name: [] for name in engines}  # tokens per CPU second of this process (all threads)
            for r in range(args.rounds):
                for name, fn in engines.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    n = fn(model, prompts, args, eos, pad, seed=r)
                    rates[name].append(n / (time.perf_counter() - t0))
                    cpu_rates[name].append(n / (time.process_time() - c0))
            hf, hf_cpu = statistics.median(rates["generate"]), statistics.median(cpu_rates["generate"])
            for name in engines:
                if name != "generate":
                    label = size if name == "ours" else f"{size} {name}"
                    rows.append((label, dtype_name, statistics.median(rates[name]), hf,
                                 statistics.median(cpu_rates[name]), hf_cpu))
            print(f"  {size} {dtype_name}: " + " ".join(f"{name} {[round(x) for x in rates[name]]}" for name in engines),
                  flush=True)
            if args.profile:
                profile(engines, model, prompts, args, eos, pad)
    print()
    print("| model | dtype | ours tok/s | generate tok/s | ratio | ours tok/CPU-s | generate tok/CPU-s | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size, dtype_name, ours, hf, ours_cpu, hf_cpu in rows:
        print(f"| {size} | {dtype_name} | {ours:,.0f} | {hf:,.0f} | {ours / hf:.2f}x "
              f"| {ours_cpu:,.0f} | {hf_cpu:,.0f} | {ours_cpu / hf_cpu:.2f}x |")


if __name__ == "__main__":
    main()

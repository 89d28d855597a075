"""Peak memory of one policy forward + backward over a long response: full logits against the chunked head.

Usage:

    .venv/bin/python benchmarks/bench_memory.py [--lengths 1024 4096 16384] [--vocab 151936] [--hidden 64]
        [--chunk 512] [--limit-gb 20] [--gpu] [--out results.json]

CPU part (always): a random Qwen2-architecture model with the paper's vocabulary (151,936 tokens) and a small
hidden size (64, 2 layers), one sequence of a 64-token prompt and ``T`` response tokens, the log-probs of the
response and ``sum(log-probs).backward()``. ``before`` is the computation from the model's full logits
(:func:`prorl.logprobs.full_logits_logprobs`, what the trainer did before the chunked head); ``after`` is
:func:`prorl.logprobs.token_logprobs` with ``--chunk`` tokens per chunk. Each measurement runs in a fresh
process, whose peak resident memory (``ru_maxrss``) minus its resident memory just before the pass is
reported, so allocator caching in one measurement cannot hide in another. The child's address space is
capped at ``--limit-gb`` so that a pass which does not fit fails with an allocation error instead of
pushing the machine into swap or the OOM killer; it is then reported as ``did not fit``.

GPU part (``--gpu``, needs CUDA): a random model of Qwen2.5-0.5B's shape (hidden 896, 24 layers, vocabulary
151,936, tied embeddings) with float32 master weights, bfloat16 autocast and gradient checkpointing, one
sequence of 8k and 16k response tokens, ``torch.cuda.max_memory_allocated`` for the pass with the chunked head
(and for the full logits where they fit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

PROMPT = 64


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build_model(vocab: int, hidden: int, layers: int, max_len: int, *, intermediate=None, heads=2, kv_heads=1):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=max_len, tie_word_embeddings=True)
    return AutoModelForCausalLM.from_config(config)


def one_pass(model, method: str, T: int, chunk: int, device="cpu", autocast=False):
    """Forward + backward of the response log-probs of one ``[prompt | T tokens]`` sequence."""
    import torch

    from prorl.logprobs import full_logits_logprobs, token_logprobs

    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (1, PROMPT + T), generator=g).to(device)
    mask = torch.ones_like(ids)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
        if method == "before":
            lp, _ = full_logits_logprobs(model, ids, mask, T, temperature=1.2, with_entropy=True)
        else:
            lp, _ = token_logprobs(model, ids, mask, T, temperature=1.2, with_entropy=True, chunk_tokens=chunk)
    lp.sum().backward()


def child(args) -> None:
    """One CPU measurement in this process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    model = build_model(args.vocab, args.hidden, 2, PROMPT + max(args.lengths) + 1)
    T = args.lengths[0]
    base = rss_bytes()
    t0 = time.perf_counter()
    try:
        one_pass(model, args.child, T, args.chunk)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        print(json.dumps({"method": args.child, "T": T, "peak_gb": peak / 1e9, "seconds": time.perf_counter() - t0}))
    except (RuntimeError, MemoryError) as exc:
        print(json.dumps({"method": args.child, "T": T, "peak_gb": None, "error": str(exc).splitlines()[0][:160]}))


def cpu_table(args) -> list[dict]:
    rows = []
    limit = int(args.limit_gb * 2**30)

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    for T in args.lengths:
        for method in ("before", "after"):
            cmd = [sys.executable, __file__, "--child", method, "--lengths", str(T), "--vocab", str(args.vocab),
                   "--hidden", str(args.hidden), "--chunk", str(args.chunk), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=cap)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"method": method, "T": T, "peak_gb": None,
                                                        "error": (proc.stderr.strip().splitlines() or ["killed"])[-1]}
            rows.append(row)
            shown = f"{row['peak_gb']:.2f} GB" if row["peak_gb"] is not None else f"did not fit ({row['error'][:60]})"
            print(f"cpu  T={T:>6}  {method:<6}  {shown}", flush=True)
    return rows


def gpu_table(args, device="cuda", shape=None) -> list[dict]:
    """The GPU measurements (``device``/``shape`` other than the defaults only to try the code on a CPU)."""
    import torch

    shape = shape or dict(vocab=151_936, hidden=896, layers=24, intermediate=4864, heads=14, kv_heads=2,
                          lengths=(8192, 16_384))
    cuda = device == "cuda"
    rows = []
    model = build_model(shape["vocab"], shape["hidden"], shape["layers"], PROMPT + max(shape["lengths"]) + 1,
                        intermediate=shape["intermediate"], heads=shape["heads"], kv_heads=shape["kv_heads"]).to(device)
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    model.train()
    weights = torch.cuda.memory_allocated() if cuda else 0
    for T in shape["lengths"]:
        for method in ("after", "before"):
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            try:
                one_pass(model, method, T, args.chunk, device=device, autocast=True)
                if cuda:
                    torch.cuda.synchronize()
                row = {"method": method, "T": T, "peak_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
                       "weights_gb": weights / 1e9, "seconds": time.perf_counter() - t0}
            except torch.cuda.OutOfMemoryError as exc:
                row = {"method": method, "T": T, "peak_gb": None, "error": str(exc).splitlines()[0][:160]}
            model.zero_grad(set_to_none=True)
            rows.append(row)
            print(f"{device} T={T:>6}  {method:<6}  {row['peak_gb']}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--limit-gb", type=float, default=20.0, help="address-space cap of each CPU measurement")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--child", choices=["before", "after"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    import torch
    import transformers

    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "transformers": transformers.__version__, "vocab": args.vocab, "hidden": args.hidden,
              "chunk": args.chunk, "prompt": PROMPT, "cpu": cpu_table(args)}
    if args.gpu:
        result["gpu_name"] = torch.cuda.get_device_name()
        result["gpu"] = gpu_table(args)
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

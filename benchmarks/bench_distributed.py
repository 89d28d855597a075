"""One training step's compute at world size 1 and at world size N (torchrun, FSDP2) on the same global batch.

    python benchmarks/bench_distributed.py --sizes 2m 20m --nproc 2 --out bench_distributed.json

For each model size it builds a randomly initialised tiny model, then launches this file under
``torchrun --nproc_per_node=1`` and ``--nproc_per_node=N``. Every rank builds the same synthetic global batch
(``--prompts`` groups of ``--group-size`` sequences, prompt and response lengths drawn from a fixed seed), takes its
share (every N-th group, as training deals prompts) and times what a step does after generation: the old and
reference log-prob passes and the update (``prorl.update.update_policy``). World size 1 is the single-process
path (no FSDP); it gets all the CPU threads, each of N ranks ``threads / N``. Time in collectives is the
profiler's self time of the communication ops (gloo or NCCL) on rank 0. Generation is not timed: each rank
generates its own share with its own engine, which scales without communication.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

COMM_WORDS = ("gloo", "nccl", "all_gather", "allgather", "reduce_scatter", "all_reduce", "allreduce", "c10d",
              "broadcast")


def synthetic_batch(prompts: int, n: int, prompt_len: int, response_len: int, vocab: int, seed: int = 0):
    import torch

    from prorl.batch import Batch

    g = torch.Generator().manual_seed(seed)
    B = prompts * n
    plen = torch.randint(prompt_len // 2, prompt_len + 1, (prompts,), generator=g).repeat_interleave(n)
    rlen = torch.randint(response_len // 4, response_len + 1, (B,), generator=g)
    ids = torch.randint(3, vocab, (B, prompt_len + response_len), generator=g)
    cols = torch.arange(prompt_len + response_len)
    attention = ((cols >= prompt_len - plen[:, None]) & (cols < prompt_len + rlen[:, None])).long()
    response = attention[:, prompt_len:].float()
    rewards = torch.randint(0, 2, (B,), generator=g).float()
    groups = SimpleNamespace(problems=[None] * B, rewards=rewards, group_size=n)
    return Batch(groups, ids * attention, attention, response, torch.zeros(B, response_len))


def share(batch, rank: int, world: int):
    import torch

    from prorl.batch import Batch

    n = batch.group_size
    groups = list(range(len(batch.problems) // n))[rank::world]
    rows = torch.tensor([g * n + j for g in groups for j in range(n)], dtype=torch.long)
    sub = SimpleNamespace(problems=[None] * len(rows), rewards=batch.rewards[rows], group_size=n)
    return Batch(sub, batch.input_ids[rows], batch.attention_mask[rows], batch.response_mask[rows],
                 batch.sample_logprobs[rows])


def worker(args) -> None:
    import copy

    import torch
    from torch.profiler import ProfilerActivity, profile

    from prorl import algo, dist
    from prorl.batch import LogprobSettings, batch_logprobs
    from prorl.config import resolve_config
    from prorl.policy import load_policy
    from prorl.update import make_optimizer, update_policy

    d = dist.from_env(args.device)
    torch.set_num_threads(max(args.threads // d.world, 1))
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    model, _ = load_policy(args.model, dtype="float32", device=device)
    cfg = resolve_config({}, [f"model.path={args.model}", "run_dir=unused", f"train.prompts_per_step={args.prompts}",
                              f"train.mini_batch_prompts={args.prompts}", f"rollout.n={args.group_size}",
                              f"train.micro_batch_size={args.micro}", f"rollout.max_new_tokens={args.response}",
                              "algo.kl_beta=1e-3", "train.autocast_bf16=false", "train.grad_clip=1.0"])
    reference = copy.deepcopy(model).requires_grad_(False)
    if d.enabled:
        model, reference = dist.shard(model), dist.shard(reference, trainable=False)
    optimizer, scheduler = make_optimizer(model, cfg)
    full = synthetic_batch(args.prompts, args.group_size, args.prompt, args.response, model_vocab(model))
    batch = share(full, d.rank, d.world)
    batch = type(batch)(batch.groups, *(t.to(device) for t in (batch.input_ids, batch.attention_mask,
                                                                  batch.response_mask, batch.sample_logprobs)))
    how = LogprobSettings.of(cfg)
    advantages = algo.advantages(batch.rewards, batch.group_size, "grpo").to(device)

    def step():
        old = batch_logprobs(model, batch, how, d)
        ref = batch_logprobs(reference, batch, how, d)
        update_policy(model, optimizer, scheduler, batch, advantages, old, ref, cfg, torch.Generator().manual_seed(0),
                      0.0, d)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(args.repeats):
        d.barrier()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    comm = 0.0
    if d.enabled:
        d.barrier()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            step()
        comm = sum(e.self_cpu_time_total for e in prof.key_averages()
                   if any(w in e.key.lower() for w in COMM_WORDS)) / 1e6
    slowest = [max(t) for t in zip(*d.gather(times))]
    memory = d.gather(torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None)
    if d.main:
        tokens = int(full.response_mask.sum())
        Path(args.result).write_text(json.dumps({
            "world_size": d.world, "threads_per_rank": torch.get_num_threads(), "step_s": min(slowest),
            "step_s_all": slowest, "collectives_s": comm, "peak_gib_per_rank": memory, "response_tokens": tokens,
            "sequences": len(full.problems)}))
    dist.close(d)


def model_vocab(model) -> int:
    inner = getattr(model, "model", model)
    return inner.config.vocab_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["2m", "20m"])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--response", type=int, default=96)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from prorl.tiny import build_char_tokenizer, build_tiny_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            model_dir = Path(tmp) / size
            build_tiny_model(model_dir, build_char_tokenizer(model_dir), size=size, seed=0)
            for nproc in sorted({1, args.nproc}):
                result = Path(tmp) / f"{size}_{nproc}.json"
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                       __file__, "--worker", "--model", str(model_dir), "--result", str(result)]
                cmd += [f"--{k.replace('_', '-')}={getattr(args, k)}"
                        for k in ("device", "threads", "prompts", "group_size", "prompt", "response", "micro", "repeats")]
                subprocess.run(cmd, check=True, env=os.environ | {"OMP_NUM_THREADS": str(max(args.threads // nproc, 1))})
                row = {"size": size, **json.loads(result.read_text())}
                rows.append(row)
                print(f"{size:>5} world {row['world_size']} ({row['threads_per_rank']} threads/rank): "
                      f"{row['step_s']:.3f} s/step, collectives {row['collectives_s']:.3f} s "
                      f"({row['sequences']} sequences, {row['response_tokens']} response tokens)", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

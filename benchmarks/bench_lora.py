"""Memory of full fine-tuning against LoRA (``model.lora_rank``) on the 20m tiny model, one process each.

Each configuration builds the model, the reference (a full copy, or the reference adapter) and AdamW the way
``prorl train`` does, then runs one forward/backward of the response log-probs and one optimizer step on a
random batch. Reported: the bytes of the weights, reference, gradients and optimizer state, and the
process's peak RSS. Usage: python benchmarks/bench_lora.py [--size 20m] [--rank 8] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(size: str, rank: int, batch: int, tokens: int) -> dict:
    import copy

    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from prorl.config import resolve_config
    from prorl.logprobs import token_logprobs
    from prorl.policy import load_policy
    from prorl.tiny import build_char_tokenizer, build_tiny_model
    from prorl.update import make_optimizer

    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp())
    tok = build_char_tokenizer(folder)
    build_tiny_model(folder, tok, size=size, seed=0, max_positions=tokens + 64)
    cfg = resolve_config({}, [f"model.path={folder}", f"model.lora_rank={rank}", "train.lr=1e-4"])
    model, _ = load_policy(folder, dtype="float32")
    if rank:
        from prorl.lora import add_lora

        peft_model = add_lora(model, cfg.model, with_reference=True)
        model = peft_model.get_base_model()
        reference_bytes = sum(p.numel() * 4 for n, p in model.named_parameters() if ".reference." in n)
    else:
        reference = copy.deepcopy(model).requires_grad_(False)
        reference_bytes = sum(p.numel() * 4 for p in reference.parameters())
    optimizer, _ = make_optimizer(model, cfg)
    ids = torch.randint(10, 60, (batch, tokens + 16))
    mask = torch.ones_like(ids)
    lp, _ = token_logprobs(model, ids, mask, tokens)
    lp.mean().backward()
    optimizer.step()
    bytes_of = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return {
        "size": size, "lora_rank": rank,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "weights_mb": round(bytes_of([p for n, p in model.named_parameters() if ".reference." not in n]) / 2**20, 2),
        "reference_mb": round(reference_bytes / 2**20, 2),
        "grads_mb": round(bytes_of([p.grad for p in model.parameters() if p.grad is not None]) / 2**20, 2),
        "optimizer_mb": round(bytes_of(state) / 2**20, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="20m")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--out", default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.size, args.one, args.batch, args.tokens)))
        return 0
    rows = []
    for rank in (0, args.rank):
        out = subprocess.run([sys.executable, __file__, "--one", str(rank), "--size", args.size, "--batch",
                              str(args.batch), "--tokens", str(args.tokens)], capture_output=True, text=True,
                             check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in rows:
        print(json.dumps(r))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

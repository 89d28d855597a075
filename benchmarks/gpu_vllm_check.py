"""What only a GPU with vLLM installed can check about the vLLM engine; results as one JSON file.

Phases (``--phase``; ``benchmarks/gpu_vllm_check.sh`` runs them in turn, each in its own process so each
gets a fresh engine):

- ``engine``: on a randomly initialised Qwen2.5-0.5B-shaped model built locally (nothing downloaded):
  contract checks on 64 prompts x 8 samples (EOS kept, finish reasons: the engine raises on a sample
  that breaks them); mean |vLLM - trainer| log-prob at T = 1.2, top_p = 1 (``--no-fp32-head`` for the
  bf16 head); perturb the trainer's weights, push, and check that vLLM's log-probs follow the new
  weights and leave the old ones; GPU memory in use before and after ``sleep()`` and after the push;
  tokens/s of vLLM against the built-in engine at 256 sequences x 1024 new tokens (EOS off).
- ``logprobs``: the log-prob agreement alone (for the other head dtype).
- ``train``: 20 training steps with ``rollout.engine=vllm`` on a tiny model (``--size``, or ``0.5b`` for the
  Qwen2.5-0.5B shape) and the built-in arithmetic, with the importance-sampling metrics of each step.

``--fake`` runs the same code on the CPU against ``tests/fake_vllm.py`` at a small shape: a check of this
script, not of vLLM.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def build_model_dir(path: Path, shape: str):
    """A model directory with the char tokenizer: ``0.5b`` (Qwen2.5-0.5B's shape, random weights) or a tiny size."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from prorl.tiny import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer(path)
    if shape != "0.5b":
        build_tiny_model(path, tok, size=shape, seed=0, max_positions=4096)
        return
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)


def rollout_config(*overrides):
    from prorl.config import resolve_config

    return resolve_config({}, ["rollout.engine=vllm", "rollout.dtype=bfloat16", *overrides]).rollout


def trainer_logprobs(model, out, temperature: float) -> torch.Tensor:
    from prorl.logprobs import token_logprobs

    device = next(model.parameters()).device
    ids = torch.cat([out.prompt_ids, out.response_ids], dim=1).to(device)
    mask = torch.cat([out.prompt_mask, out.response_mask.long()], dim=1).to(device)
    with torch.no_grad():
        lp, _ = token_logprobs(model, ids, mask, out.response_ids.shape[1], temperature=temperature)
    return lp.float().cpu() * out.response_mask


def mean_abs(a, b, mask) -> float:
    return float(((a - b).abs() * mask).sum() / mask.sum().clamp(min=1))


def gpu_used() -> float | None:
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return round((total - free) / 2**30, 3)


def prompts_of(count: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(10, min(vocab, 60), (count, length), generator=gen).tolist()


def phase_engine(args, model_dir: Path, device: str, result: dict, *, full: bool) -> None:
    from prorl.policy import load_policy
    from prorl.rollout import HFEngine, RandomStream, Sampling, make_engine

    policy, tok = load_policy(model_dir, dtype="float32", device=device)
    cfg = rollout_config(f"rollout.vllm.fp32_head={str(args.fp32_head).lower()}",
                         f"rollout.vllm.gpu_memory_utilization={args.gpu_memory_utilization}",
                         "rollout.vllm.max_model_len=2048")
    t0 = time.perf_counter()
    engine = make_engine(cfg, policy, tok)
    result["engine_start_s"] = round(time.perf_counter() - t0, 1)
    vocab = policy.config.vocab_size
    prompts = prompts_of(args.prompts, 16, vocab, 0)
    sampling = Sampling(n=8, temperature=1.2, top_p=1.0, max_new_tokens=args.check_tokens)

    out = engine.generate(prompts, sampling, RandomStream(0))  # raises on a sample that breaks the contract
    result["contract"] = {"rows": len(out), "finish_stop": out.finish_reasons.count("stop"),
                          "finish_length": out.finish_reasons.count("length"), "tokens": out.num_tokens}
    again = engine.generate(prompts, sampling, RandomStream(0))
    result["contract"]["same_seed_same_samples"] = bool(torch.equal(out.response_ids, again.response_ids))
    trained = trainer_logprobs(policy, out, 1.2)
    key = "fp32_head" if args.fp32_head else "bf16_head"
    result[f"logprob_abs_diff_T1.2_{key}"] = mean_abs(out.logprobs * out.response_mask, trained, out.response_mask)
    if not full:
        return

    # The real "pushed weights are used" check: perturb, push, and the engine's log-probs follow.
    perturbed = copy.deepcopy(policy)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(torch.randn_like(p) * 0.02 * float(p.float().std().clamp(min=1e-3)))
    before_sleep = gpu_used()
    engine.sleep()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    asleep = gpu_used()
    engine.load_weights(perturbed.named_parameters())
    awake = gpu_used()
    result["gpu_memory_gib"] = {"before_sleep": before_sleep, "asleep": asleep, "after_push": awake}
    out = engine.generate(prompts, sampling, RandomStream(1))
    mask = out.response_mask
    result["push"] = {
        "diff_to_pushed_weights": mean_abs(out.logprobs * mask, trainer_logprobs(perturbed, out, 1.2), mask),
        "diff_to_previous_weights": mean_abs(out.logprobs * mask, trainer_logprobs(policy, out, 1.2), mask),
    }
    result["push"]["follows_the_push"] = (result["push"]["diff_to_pushed_weights"]
                                          < 0.5 * result["push"]["diff_to_previous_weights"])

    # Throughput at 256 x 1024 new tokens, EOS off so every sequence runs to the end.
    long = Sampling(n=1, temperature=1.0, top_p=1.0, max_new_tokens=args.bench_tokens)
    bench_prompts = prompts_of(args.bench_sequences, 16, vocab, 2)
    throughput = {}
    never = [vocab + 1]  # an EOS id no sample can hit
    engine.eos_token_ids = never
    for name, eng in (("vllm", engine), ("hf", None)):
        if name == "hf":
            del engine
            eng = HFEngine(copy.deepcopy(policy).to(torch.bfloat16).eval(), tok)
            eng.eos_token_ids = never
        eng.generate(bench_prompts[:4], Sampling(1, 1.0, 1.0, 8), RandomStream(9))  # warm-up
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = eng.generate(bench_prompts, long, RandomStream(3))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        throughput[name] = {"tokens": out.num_tokens, "seconds": round(seconds, 2),
                            "tokens_per_s": round(out.num_tokens / seconds)}
    throughput["vllm_over_hf"] = round(throughput["vllm"]["tokens_per_s"] / throughput["hf"]["tokens_per_s"], 2)
    result["throughput"] = throughput


def phase_train(args, model_dir: Path, device: str, result: dict) -> None:
    from prorl.config import resolve_config
    from prorl.runlog import read_jsonl
    from prorl.train import train

    run = Path(tempfile.mkdtemp()) / "run"
    prompts, n, tokens = (2, 4, 8) if args.fake else (16, 8, 32)  # the fake samples with a full forward per token
    cfg = resolve_config({}, [
        f"model.path={model_dir}", f"run_dir={run}", f"model.device={device}", "data.builtin=add", "data.val_size=16",
        "rollout.engine=vllm", f"rollout.n={n}", f"rollout.max_new_tokens={tokens}", f"train.steps={args.steps}",
        f"train.prompts_per_step={prompts}", f"train.mini_batch_prompts={prompts}", "algo.dynamic_sampling=false",
        "validation.every=10", f"validation.n={min(n, 4)}", f"validation.max_new_tokens={tokens}", "log.progress=false", "train.lr=1e-5", "checkpoint.every=0",
        f"rollout.vllm.gpu_memory_utilization={args.gpu_memory_utilization}", "rollout.vllm.max_model_len=512",
        *(["rollout.dtype=float32", "train.autocast_bf16=false"] if args.fake else []),
    ])
    t0 = time.perf_counter()
    train(cfg)
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if r["step"] > 0]
    keep = ("step", "reward/mean", "rollout/logprob_diff", "rollout/mismatch_kl", "rollout/is_weight_p50",
            "rollout/is_weight_p99", "rollout/is_weight_max", "rollout/is_truncated_frac", "time/generate",
            "time/weight_push", "time/step", "val/pass@1/mean")
    result["train"] = {"shape": args.size, "steps": len(rows), "seconds": round(time.perf_counter() - t0, 1),
                       "per_step": [{k: r[k] for k in keep if k in r} for r in rows]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=["engine", "logprobs", "train"], required=True)
    parser.add_argument("--out", required=True, help="JSON file (the phase's results are merged into it)")
    parser.add_argument("--size", default="0.5b", help="0.5b (Qwen2.5-0.5B shape) or a tiny size (2m, 20m)")
    parser.add_argument("--no-fp32-head", dest="fp32_head", action="store_false")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--check-tokens", type=int, default=64)
    parser.add_argument("--bench-sequences", type=int, default=256)
    parser.add_argument("--bench-tokens", type=int, default=1024)
    parser.add_argument("--fake", action="store_true", help="CPU, tests/fake_vllm.py: checks this script only")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    device = "cpu" if args.fake else "cuda"
    if args.fake:
        sys.path.insert(0, str(ROOT / "tests"))
        import fake_vllm

        import prorl.rollout.vllm_engine as vllm_engine

        vllm_engine.load_vllm = lambda: fake_vllm
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    if "env" not in result:
        import transformers

        env = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "fake": args.fake}
        if not args.fake:
            import vllm

            env["vllm"] = vllm.__version__
        result["env"] = env
    model_dir = Path(tempfile.mkdtemp()) / "model"
    build_model_dir(model_dir, args.size)
    phase = {}
    try:
        if args.phase == "train":
            phase_train(args, model_dir, device, phase)
        else:
            phase_engine(args, model_dir, device, phase, full=args.phase == "engine")
    except Exception as exc:  # recorded, so one failing phase leaves the others' results readable
        phase["error"] = f"{type(exc).__name__}: {exc}"
    result[f"{args.phase}_{args.size}" + ("" if args.fp32_head else "_bf16_head")] = phase
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(phase, indent=1)[:4000])
    return 1 if "error" in phase else 0


if __name__ == "__main__":
    sys.exit(main())

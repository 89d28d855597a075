"""The embedded demo: ProRL end to end on a laptop CPU with nothing downloaded.

1. Create a tiny Qwen2-architecture model and a character tokenizer, save them, and load them back
   through ``from_pretrained`` (the path a user's model takes).
2. Warm-start it by supervised fine-tuning on built-in arithmetic so it emits ``\\boxed{N}``
   answers, as the paper's distilled base model emits its format. The warm-up is kept short on
   purpose: RL needs groups with reward variance, so the model should solve some but not all.
3. Measure it: pass@1 (from several samples per problem, the evaluation code's settings) on
   held-out problems of the trained kinds and on harder kinds it never saw.
4. Train it with ProRL (GRPO + decoupled clipping + dynamic sampling + KL to a reference, with
   scheduled hard reference resets) using ``prorl.train.train`` and the demo recipe.
5. Measure the trained model the same way and print a before/after table.

Everything lands in ``OUT`` (default ``runs/demo``): ``base/`` (the random model), ``warm/`` (the
warm-started model), ``run/`` (the ProRL run directory: config, metrics, events, checkpoints),
``heldout.jsonl`` (the held-out problems, for ``prorl eval``), ``eval_warm.json``, ``eval_trained.json``
and ``demo_results.json``.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from importlib import resources
from pathlib import Path

import torch

TRAIN_KINDS = ["add", "sub", "add21"]
"""Kinds trained on (warm-start and RL)."""
HARDER_KINDS = ["add3", "add22"]
"""Harder variants never trained on: measured to see whether gains transfer."""


def warm_start(model, tokenizer, problems, *, steps: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """Supervised fine-tuning on ``prompt -> \\boxed{answer}<eos>``; loss on the response only.

    Returns the loss of each step.
    """
    from prorl.data.builtin import solution_text

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    encoded = []
    for p in problems:
        prompt = tokenizer(p.prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(solution_text(p), add_special_tokens=False)["input_ids"] + [eos]
        encoded.append((prompt, target))
    losses = []
    model.train()
    for _ in range(steps):
        rows = rng.sample(encoded, batch_size)
        width = max(len(a) + len(b) for a, b in rows)
        ids = torch.full((batch_size, width), pad)  # [b, L] right-padded
        attn = torch.zeros(batch_size, width, dtype=torch.long)  # [b, L]
        target_mask = torch.zeros(batch_size, width)  # [b, L] 1 on response tokens
        for i, (a, b) in enumerate(rows):
            ids[i, : len(a) + len(b)] = torch.tensor(a + b)
            attn[i, : len(a) + len(b)] = 1
            target_mask[i, len(a) : len(a) + len(b)] = 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()  # [b, L-1, V]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # [b, L-1]
        loss = (nll * target_mask[:, 1:]).sum() / target_mask[:, 1:].sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def measure(model_dir: Path, problems, *, n: int, max_new_tokens: int, seed: int, pool) -> dict:
    """pass@1 (from ``n`` samples, temperature 0.6, top-p 0.95) per kind, via the evaluation code."""
    from prorl.eval.evaluate import evaluate
    from prorl.policy import load_policy
    from prorl.rollout import HFEngine, Sampling

    model, tokenizer = load_policy(model_dir, dtype="bfloat16")
    sampling = Sampling(n=n, temperature=0.6, top_p=0.95, max_new_tokens=max_new_tokens)
    return evaluate(HFEngine(model, tokenizer), tokenizer, problems, sampling, ks=[1, n], pool=pool, seed=seed)


def _table(rows: list[tuple[str, float, float]], counts: dict[str, int]) -> str:
    lines = [f"{'task':<10} {'problems':>8} {'warm-start':>10} {'ProRL':>10} {'change':>8}", "-" * 50]
    for name, before, after in rows:
        count = counts[name]
        lines.append(f"{name:<10} {count:>8} {before:>10.3f} {after:>10.3f} {after - before:>+8.3f}")
    return "\n".join(lines)


def run_demo(out_dir: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0) -> dict:
    """Run the whole demo; returns the before/after numbers (also written to demo_results.json)."""
    from prorl.config import load_recipe, resolve_config
    from prorl.data.builtin import make_problems
    from prorl.policy import load_policy
    from prorl.tiny import build_char_tokenizer, build_tiny_model
    from prorl.train import train
    from prorl.verifiers.pool import ScoringPool

    t_start = time.perf_counter()
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)  # the demo is reproducible from its seed: start clean
    out.mkdir(parents=True)
    torch.manual_seed(seed)

    recipe = load_recipe(resources.files("prorl") / "recipes" / "demo.yaml")
    demo = recipe.pop("demo")  # warm-start and measurement settings, not trainer config
    if quick:
        recipe = quick_recipe(recipe)
        demo = dict(demo, warm_steps=80, eval_problems=8, eval_n=2)

    print(f"[1/5] creating a tiny {demo['model_size']} Qwen2 model and a character tokenizer in {out / 'base'}")
    tokenizer = build_char_tokenizer(out / "base")
    build_tiny_model(out / "base", tokenizer, size=demo["model_size"], seed=seed)
    model, tokenizer = load_policy(out / "base", dtype="float32")

    print(f"[2/5] warm-start: {demo['warm_steps']} supervised steps on {', '.join(TRAIN_KINDS)}")
    t0 = time.perf_counter()
    sft_problems = [p for k in TRAIN_KINDS for p in make_problems(k, 2000, seed=seed + 1, split="train")]
    losses = warm_start(model, tokenizer, sft_problems, steps=demo["warm_steps"], lr=demo["warm_lr"],
                        batch_size=demo["warm_batch_size"], seed=seed)
    model.save_pretrained(out / "warm")
    tokenizer.save_pretrained(out / "warm")
    t_warm = time.perf_counter() - t0
    print(f"      loss {losses[0]:.3f} -> {sum(losses[-10:]) / len(losses[-10:]):.3f} in {t_warm:.0f}s")

    # Held-out problems: distinct prompts of the held-out split, which neither warm-start nor RL draws
    # from (the one-digit kinds have fewer than eval_problems of them; all are used).
    eval_problems = [p for k in TRAIN_KINDS + HARDER_KINDS
                     for p in make_problems(k, demo["eval_problems"], seed=seed + 20_000, split="heldout", distinct=True)]
    counts = {k: sum(p.metadata["task"] == k for p in eval_problems) for k in TRAIN_KINDS + HARDER_KINDS}
    with open(out / "heldout.jsonl", "w") as f:  # for `prorl eval --data`, the same problems as below
        f.writelines(json.dumps(p.to_dict()) + "\n" for p in eval_problems)
    eval_args = dict(n=demo["eval_n"], max_new_tokens=recipe["rollout"]["max_new_tokens"], seed=seed + 5)

    with ScoringPool(2, timeout_s=30.0) as pool:
        print(f"[3/5] measuring the warm-started model on {len(eval_problems)} held-out problems "
              f"({demo['eval_n']} samples each)")
        before = measure(out / "warm", eval_problems, pool=pool, **eval_args)
        (out / "eval_warm.json").write_text(json.dumps(before, indent=1))

        cfg = resolve_config(recipe, [f"model.path={out / 'warm'}", f"run_dir={out / 'run'}", f"train.seed={seed}"],
                             where="demo recipe")
        n_resets = cfg.train.steps // cfg.reset.every - (cfg.train.steps % cfg.reset.every == 0) if cfg.reset.every else 0
        print(f"[4/5] ProRL: {cfg.train.steps} steps x {cfg.train.prompts_per_step} prompts x {cfg.rollout.n} samples, "
              f"reference reset every {cfg.reset.every} steps ({n_resets} resets)")
        t0 = time.perf_counter()
        train(cfg)
        t_train = time.perf_counter() - t0
        final = out / "run" / "checkpoints" / (out / "run" / "checkpoints" / "latest").read_text().strip() / "policy"

        print("[5/5] measuring the trained model")
        after = measure(final, eval_problems, pool=pool, **eval_args)
        (out / "eval_trained.json").write_text(json.dumps(after, indent=1))

    rows = [(k, before["tasks"][k]["pass@1"], after["tasks"][k]["pass@1"]) for k in TRAIN_KINDS + HARDER_KINDS]
    trained = [r for r in rows if r[0] in TRAIN_KINDS]
    mean_before = sum(r[1] for r in trained) / len(trained)
    mean_after = sum(r[2] for r in trained) / len(trained)
    rows.append(("trained", mean_before, mean_after))
    events = [json.loads(line) for line in (out / "run" / "events.jsonl").read_text().splitlines()]
    resets = [e for e in events if e["event"] == "reset"]
    wall = time.perf_counter() - t_start
    result = {
        "wall_time_s": round(wall, 1), "warm_start_s": round(t_warm, 1), "train_s": round(t_train, 1),
        "steps": cfg.train.steps, "resets": len(resets),
        "pass@1": {name: {"warm_start": b, "prorl": a} for name, b, a in rows},
        "settings": {"eval_n": demo["eval_n"], "eval_problems": counts, "temperature": 0.6,
                     "top_p": 0.95},
    }
    (out / "demo_results.json").write_text(json.dumps(result, indent=1))
    print()
    print(f"pass@1 on held-out problems ({demo['eval_n']} samples each, temperature 0.6), never seen in training; "
          f"the harder kinds were never trained on at all:")
    print(_table(rows, counts | {"trained": sum(counts[k] for k in TRAIN_KINDS)}))
    print(f"(trained: the mean of {', '.join(TRAIN_KINDS)})")
    print(f"\nreference resets: {len(resets)} at steps {[e['step'] for e in resets]}")
    print(f"wall time {wall / 60:.1f} min (warm-start {t_warm:.0f}s, ProRL {t_train:.0f}s); run directory {out / 'run'}")
    print(f"report: prorl report {out / 'run'}")
    print(f"pass@k: prorl eval --model {out / 'warm'} --data {out / 'heldout.jsonl'} --n 128 --max-tokens "
          f"{recipe['rollout']['max_new_tokens']} --out base.json  (more in docs/demo.md)")
    return result


def quick_recipe(recipe: dict) -> dict:
    """A few tiny steps of the same recipe: checks the plumbing, shows no learning."""
    recipe = json.loads(json.dumps(recipe))
    recipe["train"].update(steps=4, prompts_per_step=4, mini_batch_prompts=2)
    recipe["reset"]["every"] = 2
    recipe["validation"].update(every=2, n=2)
    recipe["data"]["val_size"] = 6
    recipe["checkpoint"]["every"] = 2
    return recipe

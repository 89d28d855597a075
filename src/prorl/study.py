"""``prorl demo --study``: the paper's claims, tested at CPU scale from one warm-started tiny model.

1. **Ablation**: the ProRL recipe against plain GRPO (no KL, symmetric clip 0.2, no dynamic sampling, no
   resets), same model, data, steps and trained samples per step, for each seed. Claim: GRPO's entropy
   collapses and its validation stalls where ProRL's keeps rising.
2. **Boundary expansion**: pass@k (n samples per held-out problem, up to n=256) of the warm-started model,
   ProRL's model at the middle of the run and at its end, on a task ladder. The RL data holds one rung the
   warm start was never trained on (``add3``: three one-digit operands) next to the warm-started kinds.
   Claims: some task has pass@k = 0 at every measured k before RL and > 0 after; the gain at pass@128 is
   larger where the base was weaker (negative correlation across tasks).
3. **Length control**: ProRL's seed-0 run continued from its middle checkpoint with an added stage that
   penalises truncated responses (``reward.truncated_reward=0``) and shapes lengths with ProRL v2's cosine
   reward, against the same steps without them. Claim: a length blow-up (truncated fraction rising) appears
   without control and the penalty stage brings it back.

Each claim gets its numbers and a verdict computed from them by :func:`verdicts` (the rules are printed
with the verdicts). Everything lands in ``OUT`` (default ``runs/study``): ``warm/``, one run directory per
recipe and seed under ``runs/``, the evaluations, ``study.json`` and ``study.html``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import time
from importlib import resources
from pathlib import Path

import torch

STUDY_KINDS = ["add", "sub", "add21", "add3"]
"""Kinds the RL runs train on: the warm-started ones and one rung beyond them."""
LADDER = ["add", "sub", "add21", "add3", "add12", "add22"]
"""Held-out tasks of the boundary analysis (add12 and add22 are never trained on)."""
GRPO = ["algo.kl_beta=0", "algo.clip_low=0.2", "algo.clip_high=0.2", "algo.dynamic_sampling=false", "reset.every=0"]
"""Plain GRPO: the ProRL recipe without its KL penalty, clip-higher, dynamic sampling and resets."""
LENGTH_STAGE = {"reward.truncated_reward": 0.0, "reward.length_penalty": "cosine"}
"""The overrides of the length-control stage."""
VARIANTS = {
    "prorl": [],
    "frontier x3": ["data.builtin=add,sub,add21,add3:3"],
    "seq-mean-token-mean": ["algo.loss_agg=seq-mean-token-mean"],
    "kl 1e-2": ["algo.kl_beta=1e-2"],
    "kl 1e-1": ["algo.kl_beta=1e-1"],
    "entropy target 0.2": ["algo.entropy_target=0.2"],
    "clip_cov": ["algo.policy_loss=clip_cov"],
    "kl_cov": ["algo.policy_loss=kl_cov"],
    "cispo": ["algo.policy_loss=cispo"],
    "gspo": ["algo.policy_loss=gspo"],
}
"""``prorl demo --study --variants``: changes to the ProRL recipe, each run from the study's warm start."""
EVAL_TEMPERATURE = 0.6
TAIL = 10
"""Steps averaged for a run's final training metrics."""
BLOWUP = 0.2
"""A run's truncated fraction (mean over TAIL steps) at or above this counts as a length blow-up."""
ENTROPY_COLLAPSE = 0.8
"""GRPO's entropy collapsed relative to ProRL's when final GRPO < this x final ProRL."""
CLEARLY_ABOVE_ZERO = 0.05
"""A trained pass@n at or above this counts as clearly above zero."""
SIGNIFICANCE = 0.05
"""A correlation across the ladder counts only below this p-value (the ladder has a handful of tasks)."""


def _settings(quick: bool) -> dict:
    if quick:  # the plumbing on a few steps: shows nothing
        return dict(seeds=[0], steps=4, mid=2, prompts=4, val_size=6, val_every=2, eval_problems=3, eval_n=8, ks=[1, 4, 8],
                    k_ref=8, warm_steps=40)
    return dict(seeds=[0, 1], steps=150, mid=100, prompts=32, val_size=48, val_every=25, eval_problems=30, eval_n=256,
                ks=[1, 4, 16, 64, 128, 256], k_ref=128, warm_steps=None)


def run_study(out_dir: str | Path = "runs/study", *, quick: bool = False, seed: int = 0,
              seeds: list[int] | None = None) -> dict:
    """Run the three experiments; returns the numbers and verdicts (also in study.json and study.html)."""
    from prorl.config import resolve_config
    from prorl.demo import TRAIN_KINDS
    from prorl.train import train
    from prorl.verifiers.pool import ScoringPool

    s = _settings(quick)
    seeds = seeds if seeds is not None else [seed + i for i in s["seeds"]]
    t_start = time.perf_counter()
    out, recipe, demo = _fresh_start(out_dir, seed)
    warm_steps = s["warm_steps"] or demo["warm_steps"]

    print(f"[1/5] warm-start: a tiny {demo['model_size']} model, {warm_steps} supervised steps on {', '.join(TRAIN_KINDS)}")
    make_warm_start(out, demo, warm_steps=warm_steps, seed=seed)

    common = _common_overrides(s)
    recipes = {"prorl": [], "grpo": GRPO}
    runs: dict[str, Path] = {}
    total = len(recipes) * len(seeds)
    for i, (name, extra) in enumerate((n, e) for sd in seeds for n, e in recipes.items()):
        sd = seeds[i // len(recipes)]
        run_dir = out / "runs" / f"{name}_s{sd}"
        print(f"[2/5] run {i + 1}/{total}: {name}, seed {sd}, {s['steps']} steps x {s['prompts']} prompts")
        cfg = resolve_config(recipe, [f"model.path={out / 'warm'}", f"run_dir={run_dir}", f"train.seed={sd}", *common,
                                      *extra], where="study recipe")
        train(cfg)
        runs[f"{name}_s{sd}"] = run_dir

    first = seeds[0]
    print(f"[3/5] length control: prorl seed {first} continued from step {s['mid']} with a length-penalty stage")
    length_dir = out / "runs" / f"prorl_length_s{first}"
    continue_with_length_stage(runs[f"prorl_s{first}"], length_dir, s["mid"], s["steps"])
    runs[f"prorl_length_s{first}"] = length_dir

    print(f"[4/5] pass@k on the held-out ladder ({s['eval_n']} samples per problem, temperature {EVAL_TEMPERATURE})")
    problems = ladder_problems(out, s, seed)
    models = {"base": out / "warm", "mid": checkpoint_policy(runs[f"prorl_s{first}"], s["mid"]),
              "prorl": checkpoint_policy(runs[f"prorl_s{first}"], s["steps"]),
              "grpo": checkpoint_policy(runs[f"grpo_s{first}"], s["steps"])}
    evals = {}
    with ScoringPool(2, timeout_s=30.0) as pool:
        for name, path in models.items():
            evals[name] = evaluate_model(path, problems, n=s["eval_n"], ks=s["ks"], seed=seed + 5, pool=pool,
                                         max_new_tokens=recipe["rollout"]["max_new_tokens"])
            (out / f"eval_{name}.json").write_text(json.dumps(evals[name], indent=1))

    print("[5/5] verdicts")
    result = summarise(runs, evals, seeds, s)
    result["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    result["settings"] = {**s, "seeds": seeds, "study_kinds": STUDY_KINDS, "ladder": LADDER, "grpo": GRPO,
                          "length_stage": LENGTH_STAGE, "eval_temperature": EVAL_TEMPERATURE, "quick": quick}
    (out / "study.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "study.html").write_text(study_html(result, runs, evals))
    print()
    print(format_summary(result))
    print(f"\nwall time {result['wall_time_s'] / 60:.1f} min; page {out / 'study.html'}")
    return result


def run_variants(out_dir: str | Path = "runs/study_variants", *, quick: bool = False, seed: int = 0,
                 variants: dict[str, list[str]] | None = None) -> dict:
    """Each variant of the ProRL recipe (``VARIANTS``: overrides on top of it) for the study's steps, from the
    study's warm start and its first seed, then pass@k on the held-out ladder; returns (and writes to
    ``variants.json``) one row per variant, printed as a table by :func:`format_variants`."""
    from prorl.config import resolve_config
    from prorl.eval.compare import compare_results
    from prorl.train import train
    from prorl.verifiers.pool import ScoringPool

    s = _settings(quick)
    variants = VARIANTS if variants is None else variants
    t_start = time.perf_counter()
    out, recipe, demo = _fresh_start(out_dir, seed)
    print(f"warm start (seed {seed}), as in the study")
    warm = make_warm_start(out, demo, warm_steps=s["warm_steps"] or demo["warm_steps"], seed=seed)
    problems = ladder_problems(out, s, seed)
    max_new = recipe["rollout"]["max_new_tokens"]
    rows: dict[str, dict] = {}
    with ScoringPool(2, timeout_s=30.0) as pool:
        base = evaluate_model(warm, problems, n=s["eval_n"], ks=s["ks"], seed=seed + 5, pool=pool, max_new_tokens=max_new)
        (out / "eval_base.json").write_text(json.dumps(base, indent=1))
        for i, (name, extra) in enumerate(variants.items()):
            run_dir = out / "runs" / name.replace(" ", "_")
            print(f"variant {i + 1}/{len(variants)}: {name} ({' '.join(extra) or 'the ProRL recipe'})")
            cfg = resolve_config(recipe, [f"model.path={warm}", f"run_dir={run_dir}", f"train.seed={seed}",
                                          *_common_overrides(s), *extra], where=f"study variant {name!r}")
            train(cfg)
            ev = evaluate_model(checkpoint_policy(run_dir, s["steps"]), problems, n=s["eval_n"], ks=s["ks"],
                                seed=seed + 5, pool=pool, max_new_tokens=max_new)
            (run_dir / "eval_ladder.json").write_text(json.dumps(ev, indent=1))
            rows[name] = variant_row(_rows(run_dir), ev, s, extra)
            cmp = compare_results(base, ev, k=s["k_ref"])
            rows[name].update(expansion=cmp["boundary_expansion"], correlation=cmp["correlation"])
    n = s["eval_n"]
    result = {"rows": rows, "base_pass_at_n": {t: v["pass@k"][str(n)] for t, v in base["tasks"].items()}, "n": n,
              "wall_time_s": round(time.perf_counter() - t_start, 1),
              "settings": {**s, "seed": seed, "study_kinds": STUDY_KINDS, "ladder": LADDER, "quick": quick}}
    (out / "variants.json").write_text(json.dumps(result, indent=1, default=str))
    print()
    print(format_variants(result))
    print(f"\nwall time {result['wall_time_s'] / 60:.1f} min; {out / 'variants.json'}")
    return result


def training_numbers(rows: list[dict], steps: int) -> dict:
    """A run's entropy (first and last TAIL steps), validation pass@1 (first, best, last), and its truncated
    fraction and KL over the last TAIL steps."""
    lo = max(steps - TAIL + 1, 1)
    _, val = curve(rows, "val/pass@1/mean")
    return {"entropy_start": tail_mean(rows, "actor/entropy", 1, min(TAIL, steps)),
            "entropy_end": tail_mean(rows, "actor/entropy", lo, steps),
            "val_start": val[0] if val else float("nan"), "val_end": val[-1] if val else float("nan"),
            "val_best": max(val) if val else float("nan"),
            "truncated_end": tail_mean(rows, "response/truncated_frac", lo, steps),
            "kl_end": tail_mean(rows, "actor/kl", lo, steps)}


def variant_row(rows: list[dict], ev: dict, s: dict, extra: list[str]) -> dict:
    """The numbers of one variant: training metrics from its log, pass@n per ladder task from its evaluation."""
    n = str(s["eval_n"])
    return {"overrides": extra, **training_numbers(rows, s["steps"]),
            "truncated_max_window": max_window(rows, "response/truncated_frac", TAIL),
            "pass_at_n": {t: v["pass@k"][n] for t, v in ev["tasks"].items()},
            "pass_at_1": {t: v["pass@k"]["1"] for t, v in ev["tasks"].items()}}


def format_variants(result: dict) -> str:
    """One line per variant: final entropy, validation, worst truncation window, KL and pass@n per ladder task."""
    tasks = list(result["base_pass_at_n"])
    n = result["n"]
    head = (f"{'variant':<20} {'entropy':>7} {'val end':>7} {'val best':>8} {'trunc max':>9} {'KL':>6}  "
            + " ".join(f"{t:>6}" for t in tasks) + "  expansion")
    lines = [f"pass@{n} per task on the held-out ladder; entropy and KL: mean of the last {TAIL} steps; trunc max: "
             f"largest {TAIL}-step truncated fraction", head,
             f"{'warm start':<20} {'':>7} {'':>7} {'':>8} {'':>9} {'':>6}  "
             + " ".join(f"{result['base_pass_at_n'][t]:>6.3f}" for t in tasks)]
    for name, r in result["rows"].items():
        lines.append(f"{name:<20} {r['entropy_end']:>7.3f} {r['val_end']:>7.3f} {r['val_best']:>8.3f} "
                     f"{r['truncated_max_window']:>9.3f} {r['kl_end']:>6.3f}  "
                     + " ".join(f"{r['pass_at_n'][t]:>6.3f}" for t in tasks)
                     + f"  {', '.join(r['expansion']) or 'none'}")
    return "\n".join(lines)


def _fresh_start(out_dir: str | Path, seed: int) -> tuple[Path, dict, dict]:
    """An empty ``out_dir`` (reproducible from its seeds: start clean), torch seeded, and the demo recipe split
    into its training settings and its ``demo`` section."""
    from prorl.config import load_recipe

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(seed)
    recipe = load_recipe(resources.files("prorl") / "recipes" / "demo.yaml")
    return out, recipe, recipe.pop("demo")


def make_warm_start(out: Path, demo: dict, *, warm_steps: int, seed: int) -> Path:
    """The demo's warm start (tiny model, supervised steps on the demo's kinds), saved as ``out/warm``."""
    from prorl.data.builtin import make_problems
    from prorl.demo import TRAIN_KINDS, warm_start
    from prorl.policy import load_policy
    from prorl.tiny import build_char_tokenizer, build_tiny_model

    tokenizer = build_char_tokenizer(out / "base")
    build_tiny_model(out / "base", tokenizer, size=demo["model_size"], seed=seed)
    model, tokenizer = load_policy(out / "base", dtype="float32")
    sft = [p for k in TRAIN_KINDS for p in make_problems(k, 2000, seed=seed + 1, split="train")]
    warm_start(model, tokenizer, sft, steps=warm_steps, lr=demo["warm_lr"], batch_size=demo["warm_batch_size"], seed=seed)
    model.save_pretrained(out / "warm")
    tokenizer.save_pretrained(out / "warm")
    return out / "warm"


def _common_overrides(s: dict) -> list[str]:
    return [f"data.builtin={','.join(STUDY_KINDS)}", f"data.val_size={s['val_size']}",
            f"train.steps={s['steps']}", f"train.prompts_per_step={s['prompts']}",
            f"train.mini_batch_prompts={max(s['prompts'] // 2, 1)}", f"validation.every={s['val_every']}",
            f"checkpoint.every={s['mid']}", "checkpoint.keep_last=3", "log.progress=false"]


def ladder_problems(out: Path, s: dict, seed: int) -> list:
    """The held-out problems of the boundary analysis, also written to ``out/heldout.jsonl``."""
    from prorl.data.builtin import make_problems

    problems = [p for k in LADDER
                for p in make_problems(k, s["eval_problems"], seed=seed + 20_000, split="heldout", distinct=True)]
    with open(out / "heldout.jsonl", "w") as f:
        f.writelines(json.dumps(p.to_dict()) + "\n" for p in problems)
    return problems


def checkpoint_policy(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}" / "policy"


def continue_with_length_stage(run_dir: Path, new_dir: Path, at: int, steps: int) -> None:
    """Copy ``run_dir`` as it was at its step-``at`` checkpoint and resume it with a length-penalty stage."""
    import yaml

    from prorl.config import resolve_config
    from prorl.train import train

    shutil.copytree(run_dir, new_dir)
    ckpts = new_dir / "checkpoints"
    for later in ckpts.glob("step_*"):
        if int(later.name.split("_")[1]) > at:
            shutil.rmtree(later)
    (ckpts / "latest").write_text(f"step_{at:06d}\n")
    saved = yaml.safe_load((new_dir / "config.yaml").read_text())
    saved["run_dir"] = str(new_dir)
    saved["stages"] = [{"name": "main", "steps": at},
                       {"name": "length", "steps": steps - at, "overrides": dict(LENGTH_STAGE)}]
    cfg = resolve_config(saved, [], where=f"{new_dir / 'config.yaml'} + length stage")
    train(cfg, resume=True)


def evaluate_model(model_dir: Path, problems, *, n: int, ks: list[int], seed: int, pool, max_new_tokens: int) -> dict:
    from prorl.eval.evaluate import evaluate
    from prorl.policy import load_policy
    from prorl.rollout import HFEngine, Sampling

    model, tokenizer = load_policy(model_dir, dtype="bfloat16")
    sampling = Sampling(n=n, temperature=EVAL_TEMPERATURE, top_p=0.95, max_new_tokens=max_new_tokens)
    return evaluate(HFEngine(model, tokenizer), tokenizer, problems, sampling, ks=ks, pool=pool, seed=seed)


def _rows(run_dir: Path) -> list[dict]:
    from prorl.runlog import read_jsonl

    return list(read_jsonl(run_dir / "metrics.jsonl"))


def curve(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, over the rows that have it."""
    pts = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def tail_mean(rows: list[dict], key: str, first: int, last: int) -> float:
    """Mean of ``key`` over steps ``first..last``; NaN when none logged it."""
    vals = [float(r[key]) for r in rows if first <= r["step"] <= last and isinstance(r.get(key), (int, float))]
    return sum(vals) / len(vals) if vals else float("nan")


def summarise(runs: dict[str, Path], evals: dict[str, dict], seeds: list[int], s: dict) -> dict:
    """The measured numbers of the three claims (from the run logs and the evaluations) and their verdicts."""
    from prorl.eval.compare import compare_results

    steps, mid = s["steps"], s["mid"]
    lo = max(steps - TAIL + 1, 1)
    ablation = {}
    for name in ("prorl", "grpo"):
        for sd in seeds:
            ablation[f"{name}_s{sd}"] = training_numbers(_rows(runs[f"{name}_s{sd}"]), steps)
    plain, length = _rows(runs[f"prorl_s{seeds[0]}"]), _rows(runs[f"prorl_length_s{seeds[0]}"])
    length_numbers = {
        "truncated_max_window": max_window(plain, "response/truncated_frac", TAIL),
        "truncated_end_plain": tail_mean(plain, "response/truncated_frac", lo, steps),
        "truncated_end_penalty": tail_mean(length, "response/truncated_frac", lo, steps),
        "length_end_plain": tail_mean(plain, "response/length_mean", lo, steps),
        "length_end_penalty": tail_mean(length, "response/length_mean", lo, steps),
        "truncated_at_mid": tail_mean(plain, "response/truncated_frac", max(mid - TAIL + 1, 1), mid)}
    boundary = compare_results(evals["base"], evals["prorl"], evals["mid"], k=s["k_ref"])
    boundary_grpo = compare_results(evals["base"], evals["grpo"], k=s["k_ref"])
    n = s["eval_n"]
    top = {t: {"base": evals["base"]["tasks"][t]["pass@k"][str(n)], "prorl": evals["prorl"]["tasks"][t]["pass@k"][str(n)],
               "grpo": evals["grpo"]["tasks"][t]["pass@k"][str(n)]} for t in evals["base"]["tasks"]}
    numbers = {"ablation": ablation, "length": length_numbers, "boundary": boundary, "boundary_grpo": boundary_grpo,
               "pass_at_n": top, "n": n}
    return {"numbers": numbers, "verdicts": verdicts(numbers, seeds)}


def max_window(rows: list[dict], key: str, width: int) -> float:
    """The largest mean of ``key`` over ``width`` consecutive logged steps (NaN when never logged)."""
    _, vals = curve(rows, key)
    if not vals:
        return float("nan")
    width = min(width, len(vals))
    return max(sum(vals[i:i + width]) / width for i in range(len(vals) - width + 1))


def verdicts(numbers: dict, seeds: list[int]) -> list[dict]:
    """One verdict per claim: ``{"claim", "verdict", "why"}``; ``verdict`` is "reproduced" or "not reproduced".

    >>> ab = {"prorl_s0": {"entropy_end": 0.2, "val_end": 0.6, "val_start": 0.3},
    ...       "grpo_s0": {"entropy_end": 0.1, "val_end": 0.5, "val_start": 0.3}}
    >>> length = {"truncated_max_window": 0.05, "truncated_end_penalty": 0.0, "truncated_end_plain": 0.02}
    >>> boundary = {"boundary_expansion": [], "correlation": {"pearson_r": -0.9, "pearson_p": 0.01}}
    >>> pn = {"add3": {"base": 0.0, "prorl": 0.0}}
    >>> [v["verdict"] for v in verdicts({"ablation": ab, "length": length, "boundary": boundary, "pass_at_n": pn,
    ...                                  "n": 256}, [0])]
    ['reproduced', 'not reproduced', 'reproduced', 'not reproduced']
    """
    ab, out = numbers["ablation"], []
    collapsed = [sd for sd in seeds if ab[f"grpo_s{sd}"]["entropy_end"] < ENTROPY_COLLAPSE * ab[f"prorl_s{sd}"]["entropy_end"]]
    better = [sd for sd in seeds if ab[f"prorl_s{sd}"]["val_end"] > ab[f"grpo_s{sd}"]["val_end"]]
    ok = len(collapsed) == len(seeds) and len(better) == len(seeds)
    detail = "; ".join(f"seed {sd}: entropy ProRL {ab[f'prorl_s{sd}']['entropy_end']:.3f} vs GRPO "
                       f"{ab[f'grpo_s{sd}']['entropy_end']:.3f}, last validation pass@1 ProRL "
                       f"{ab[f'prorl_s{sd}']['val_end']:.3f} vs GRPO {ab[f'grpo_s{sd}']['val_end']:.3f}" for sd in seeds)
    out.append({"claim": "ablation: GRPO's entropy collapses and its validation falls behind ProRL's",
                "verdict": "reproduced" if ok else "not reproduced",
                "rule": f"in every seed, GRPO's final entropy < {ENTROPY_COLLAPSE} x ProRL's and ProRL's last validation "
                        f"pass@1 > GRPO's",
                "why": f"{detail}; entropy collapsed in {len(collapsed)}/{len(seeds)} seeds, ProRL ahead in "
                       f"{len(better)}/{len(seeds)}"})
    pn, n = numbers["pass_at_n"], numbers["n"]
    expanded = [t for t in numbers["boundary"]["boundary_expansion"] if pn[t]["prorl"] >= CLEARLY_ABOVE_ZERO]
    out.append({"claim": f"boundary expansion: a task with pass@k = 0 at every k <= {n} before RL is solved after",
                "verdict": "reproduced" if expanded else "not reproduced",
                "rule": f"base pass@k = 0 for all measured k and trained pass@{n} >= {CLEARLY_ABOVE_ZERO}",
                "why": ", ".join(f"{t}: pass@{n} {v['base']:.3f} -> {v['prorl']:.3f}" for t, v in pn.items())})
    c = numbers["boundary"]["correlation"]
    r, p = c["pearson_r"], c.get("pearson_p")
    defined = r is not None and r == r and p is not None and p == p
    out.append({"claim": "the gain at pass@K is largest where the base was weakest (negative correlation)",
                "verdict": "reproduced" if defined and r < 0 and p < SIGNIFICANCE else "not reproduced",
                "rule": f"Pearson r of (base pass@K, gain at pass@K) across the ladder < 0, with p < {SIGNIFICANCE}",
                "why": f"Pearson r = {r:.3f}, p = {p:.3f}" if defined else "correlation undefined"})
    ln = numbers["length"]
    blowup = ln["truncated_max_window"] >= BLOWUP
    fixed = ln["truncated_end_penalty"] < ln["truncated_end_plain"] / 2
    out.append({"claim": "length control: a truncation blow-up appears and a penalty stage brings it back",
                "verdict": "reproduced" if blowup and fixed else "not reproduced",
                "rule": f"the unpenalised run's truncated fraction reaches {BLOWUP} ({TAIL}-step mean), and over the last "
                        f"{TAIL} steps the penalised continuation has less than half of it",
                "why": (f"largest {TAIL}-step truncated fraction without control {ln['truncated_max_window']:.3f}"
                        + ("" if blowup else " (no blow-up at this scale)")
                        + f"; last {TAIL} steps: {ln['truncated_end_plain']:.3f} without, {ln['truncated_end_penalty']:.3f} "
                        "with the penalty stage")})
    return out


def format_summary(result: dict) -> str:
    """The printed summary: the ablation table, the boundary table and one verdict line per claim."""
    from prorl.eval.compare import format_table

    num = result["numbers"]
    lines = [f"{'run':<14} {'entropy start':>13} {'entropy end':>11} {'val start':>9} {'val best':>8} {'val end':>7} "
             f"{'truncated end':>13} {'KL end':>7}"]
    for name, a in num["ablation"].items():
        lines.append(f"{name:<14} {a['entropy_start']:>13.3f} {a['entropy_end']:>11.3f} {a['val_start']:>9.3f} "
                     f"{a['val_best']:>8.3f} {a['val_end']:>7.3f} {a['truncated_end']:>13.3f} {a['kl_end']:>7.3f}")
    lines += ["", "ProRL (first seed) against the warm start, held-out ladder:", format_table(num["boundary"]), "",
              "pass@n of the warm start, ProRL and GRPO (seed 0): "
              + ", ".join(f"{t} {v['base']:.3f}/{v['prorl']:.3f}/{v['grpo']:.3f}" for t, v in num["pass_at_n"].items()),
              ""]
    for v in result["verdicts"]:
        lines.append(f"[{v['verdict']}] {v['claim']}")
        lines.append(f"    {v['why']}")
        lines.append(f"    rule: {v['rule']}")
    return "\n".join(lines)


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def study_html(result: dict, runs: dict[str, Path], evals: dict[str, dict]) -> str:
    """One self-contained page: the curves of every run, the pass@k curves and the printed summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    panels = [("actor/entropy", "entropy"), ("val/pass@1/mean", "validation pass@1"), ("actor/kl", "KL to reference"),
              ("response/truncated_frac", "truncated fraction"), ("response/length_mean", "response length")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels):
        for name, run_dir in runs.items():
            x, y = curve(_rows(run_dir), key)
            ax.plot(x, y, label=name, linestyle="--" if name.startswith("grpo") else "-")
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    images.append(("training curves (dashed: GRPO)", _figure_png(fig)))
    plt.close(fig)
    tasks = sorted(evals["base"]["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for name, r in evals.items():
            ks = sorted(r["tasks"][task]["pass@k"], key=int)
            ax.plot([int(k) for k in ks], [r["tasks"][task]["pass@k"][k] for k in ks], marker="o", label=name)
        ax.set_title(task)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("pass@k")
    axes[0][0].legend(fontsize=7)
    images.append(("pass@k on the held-out ladder (seed 0; mid: ProRL at its middle checkpoint)", _figure_png(fig)))
    plt.close(fig)
    body = "".join(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{png}'>" for title, png in images if png)
    return ("<!doctype html><meta charset='utf-8'><title>prorl study</title><h1>prorl study</h1>" + body
            + f"<h2>summary</h2><pre>{html.escape(format_summary(result))}</pre>")

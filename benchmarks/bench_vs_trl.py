"""RL step time of ``prorl train`` against TRL's ``GRPOTrainer``: same tiny model, same prompts, same work, on CPU.

Usage (defaults: the "2m" model, 4 steps per run, 3 repeats of each framework, all cores):

    .venv/bin/python benchmarks/bench_vs_trl.py [--size 2m|20m] [--steps 4] [--repeats 3]
        [--max-new-tokens 128] [--micro-batch 32] [--threads N] [--out FILE]
        [--attn eager|sdpa] [--prorl-rollout-dtype bfloat16|float32] [--prorl-autocast-bf16 0|1]
        [--prorl-gradient-checkpointing 0|1]
        [--prorl-reward-workers 0] [--trl-bf16 0|1] [--trl-gradient-checkpointing 0|1]
        [--prorl-set KEY=VALUE ...] [--trl-set KEY=VALUE ...]
        [--trl-venv ~/.cache/prorl-bench/trl-venv] [--trl-version 1.16.0] [--only prorl|trl]

One step of either framework is one rollout batch and exactly one optimizer step: 8 prompts x 16 samples x
``--max-new-tokens`` new tokens (temperature 1.0, top_p 1.0), rewards, reference log-probs for a KL penalty
(prorl ``algo.kl_beta``, TRL ``beta``, both ``--kl-beta``), one forward/backward over the 128 sequences in
micro-batches of ``--micro-batch`` and one AdamW step at the same learning rate. The prompts are prorl's
built-in one-digit additions (``data.builtin=add``; TRL gets the same problems as a dataset with a
``prompt`` and an ``answer`` column and a small reward function that reads the last ``\\boxed{}``).

Every response is exactly ``--max-new-tokens`` long in both: the model directory's EOS (the tokenizer's
and ``generation_config.json``'s, which are the ids both frameworks stop on) is an added token whose id
equals the model's vocabulary size, one past its last logit, so it can never be sampled. The script
checks it from each run's logs (prorl ``response/length_mean`` and ``response/length_max``, TRL
``completions/min_length`` and ``completions/max_length``) and stops if any step generated less.

TRL lives in its own virtualenv (``--trl-venv``), created on first use with ``torch==2.13.0`` (the CPU
wheel this machine has) and ``trl==--trl-version`` with the transformers version of the project's
environment; TRL is never a project dependency. Its trainer runs in a subprocess from a generated driver
that times each optimizer step with a ``TrainerCallback`` (``on_step_begin`` -> ``on_step_end``) and
collects TRL's own profiling timings (``trl.extras.profiling``, normally only sent to wandb/mlflow) for
the split: generate (``transformers.generate``), score (``_calculate_rewards``), log-probs (the reference
log-probs in ``_prepare_inputs``) and update (the rest of the step: forward, backward, optimizer).
prorl's split is its own ``time/*`` metrics from ``metrics.jsonl``.

Runs alternate (prorl, TRL, prorl, TRL, ...); the first step of every run is a warm-up and not counted.
Reported: per-run step times, the medians of the timed steps over all repeats, the split, CPU seconds per
step (user + sys of the whole process tree, sampled from /proc when each step's log line appears, so
start-up and loading are not counted; whole-process totals from ``getrusage(RUSAGE_CHILDREN)`` are kept
beside them) and the ratio prorl / TRL (below 1: prorl is faster). Both get the same thread count
(``OMP_NUM_THREADS``, and ``torch.set_num_threads`` in the TRL driver). The JSON result is printed and
written to ``--out`` (default ``benchmarks/results/bench_vs_trl-<size>.json``).

Settings (recorded in the JSON): by default each framework runs at the best CPU settings found on a
2-core AMD EPYC with avx512_bf16 (docs/performance.md): float32 master weights, bf16 autocast (prorl
``train.autocast_bf16``, TRL ``bf16``), eager attention for both (``--attn``; sdpa's bf16 backward is slow
on such CPUs), no gradient checkpointing (TRL's default is on; it only saves memory, which these models
do not need, and costs a second forward), and prorl samples from a bf16 copy (``rollout.dtype``). Each
of these is an option, so other settings can be compared the same way.

Differences in the work that remain, by design of each framework: prorl samples from a ``rollout.dtype``
copy of the policy (synced after the update) while TRL generates with the trained model itself; with one
optimizer step per batch both take the old log-probs from the update's own forward pass and run one
no-grad pass for the reference. prorl scores with its math verifier (math-verify), TRL with the small
function here. Both are in the split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPTS, SAMPLES = 8, 16  # groups per step and samples per group: 128 sequences per rollout batch
TRL_VERSION = "1.16.0"  # the newest TRL 1.x; it requires transformers >= 4.56.2 and runs on the project's 5.x
TORCH_PIN = "torch==2.13.0"  # the CPU wheel on this machine's disk; an unpinned torch pulls a CUDA build
NEVER_EOS = "<never-eos>"

# ---------------------------------------------------------------- the model directory


def build_model_dir(path: Path, size: str) -> dict:
    """A tiny Qwen2 model whose EOS id is one past its last logit, saved to ``path`` for both frameworks."""
    from transformers.utils import logging as hf_logging

    from prorl.tiny import build_char_tokenizer, build_tiny_model

    hf_logging.set_verbosity_error()
    tokenizer = build_char_tokenizer(path / "tokenizer")
    model = build_tiny_model(path, tokenizer, size=size)
    vocab = model.config.vocab_size
    # The added token gets the next id, == vocab: the model's logits cover ids 0..vocab-1 only.
    tokenizer.add_special_tokens({"eos_token": NEVER_EOS})
    if tokenizer.eos_token_id != vocab:
        raise SystemExit(f"bench_vs_trl: the added EOS got id {tokenizer.eos_token_id}, expected {vocab}")
    # Both frameworks stop on the tokenizer's EOS and generation_config's; transformers warns at load that
    # config.json's eos_token_id is outside the vocabulary, which is the point.
    model.config.eos_token_id = vocab
    model.generation_config.eos_token_id = vocab
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    shutil.rmtree(path / "tokenizer")
    return {"path": str(path), "size": size, "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": vocab, "eos_token_id": vocab, "pad_token_id": tokenizer.pad_token_id}


def write_problems(path: Path, seed: int) -> int:
    """prorl's training problems for ``data.builtin=add`` (the same call its loader makes), as TRL's dataset."""
    from prorl.data.builtin import make_problems

    problems = make_problems("add", 5000, seed=seed, split="train")
    with path.open("w") as fh:
        for p in problems:
            fh.write(json.dumps({"prompt": p.prompt, "answer": p.answer}) + "\n")
    return len(problems)


# ---------------------------------------------------------------- CPU time of a process tree


def tree_cpu_seconds(pid: int) -> float:
    """User + sys seconds of ``pid`` and its live descendants (and the children each has reaped)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # the process ended between the listing and the read
    return total / tick


def run_and_sample(cmd: list[str], env: dict, log_file: Path, lines_file: Path, is_step_line) -> dict:
    """Run ``cmd``; each time ``lines_file`` gains a step line, note the wall time and the tree's CPU time.

    Returns the step lines' CPU/wall marks and the whole-process CPU (RUSAGE_CHILDREN delta) and wall time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    marks, seen, offset, buf = [], 0, 0, ""
    with log_file.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        while True:
            done = proc.poll() is not None
            if lines_file.exists() and lines_file.stat().st_size > offset:
                cpu = tree_cpu_seconds(proc.pid) if not done else None
                with lines_file.open() as fh:
                    fh.seek(offset)
                    buf += fh.read()
                    offset = fh.tell()
                *complete, buf = buf.split("\n")
                for line in complete:
                    if line.strip() and is_step_line(json.loads(line)):
                        seen += 1
                        marks.append({"line": seen, "wall": time.perf_counter() - t0, "cpu": cpu})
            if done:
                break
            time.sleep(0.1)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - t0
    cpu_total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"bench_vs_trl: {cmd[0]} exited {proc.returncode}; last lines of {log_file}:\n{tail}")
    return {"marks": marks, "cpu_total_s": cpu_total, "wall_total_s": wall}


def cpu_per_timed_step(marks: list[dict]) -> float | None:
    """CPU seconds per step after the warm-up step: from the first step line's mark to the last one's."""
    ok = [m for m in marks if m["cpu"] is not None]
    if len(ok) < 2:
        return None
    return (ok[-1]["cpu"] - ok[0]["cpu"]) / (ok[-1]["line"] - ok[0]["line"])


# ---------------------------------------------------------------- prorl


PRORL_RECIPE = """\
# Written by benchmarks/bench_vs_trl.py: one rollout batch and one optimizer step per training step.
model:
  dtype: float32
  device: cpu
data:
  builtin: add
  val_size: 0
rollout:
  n: {samples}
  temperature: 1.0
  top_p: 1.0
reward:
  workers: 0
algo:
  kl_kind: k3
  loss_agg: token-mean
  advantage: grpo
  dynamic_sampling: false
  max_gen_batches: 1
train:
  prompts_per_step: {prompts}
  mini_batch_prompts: {prompts}
  epochs: 1
  warmup_steps: 0
  grad_clip: 1.0
  weight_decay: 0.01
validation:
  every: 0
  at_start: false
checkpoint:
  every: 0
  keep_last: 1
log:
  rollouts_every: 0
  progress: false
"""


def prorl_overrides(args, model_dir: str, run_dir: Path) -> list[str]:
    return [
        f"model.path={model_dir}", f"run_dir={run_dir}", f"train.steps={args.steps}",
        f"rollout.max_new_tokens={args.max_new_tokens}", f"rollout.dtype={args.prorl_rollout_dtype}",
        f"train.lr={args.lr}", f"algo.kl_beta={args.kl_beta}", f"algo.clip_low={args.clip_low}",
        f"algo.clip_high={args.clip_high}", f"train.micro_batch_size={args.micro_batch}",
        f"train.autocast_bf16={str(bool(args.prorl_autocast_bf16)).lower()}",
        f"model.gradient_checkpointing={str(bool(args.prorl_gradient_checkpointing)).lower()}",
        f"reward.workers={args.prorl_reward_workers}", f"train.seed={args.seed}",
        f"model.attn_implementation={args.attn}",
        *args.prorl_set,
    ]


def run_prorl(args, model_dir: str, work: Path, env: dict, repeat: int) -> dict:
    recipe = work / "prorl_recipe.yaml"
    recipe.write_text(PRORL_RECIPE.format(samples=SAMPLES, prompts=PROMPTS))
    run_dir = work / f"prorl_run{repeat}"
    shutil.rmtree(run_dir, ignore_errors=True)
    prorl = Path(sys.executable).parent / "prorl"
    cmd = [str(prorl), "train", str(recipe), *prorl_overrides(args, model_dir, run_dir)]
    metrics_file = run_dir / "metrics.jsonl"
    sampled = run_and_sample(cmd, env, work / f"prorl_run{repeat}.log", metrics_file,
                             lambda row: row.get("step", 0) >= 1)
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("step", 0) >= 1]
    if len(rows) != args.steps:
        raise SystemExit(f"bench_vs_trl: prorl logged {len(rows)} steps, expected {args.steps} ({metrics_file})")
    for r in rows:  # every response must be full length, every step one optimizer step on a full batch, with KL
        full = (r["response/length_mean"] == args.max_new_tokens and r["response/length_max"] == args.max_new_tokens
                and r["response/truncated_frac"] == 1.0)
        if not full:
            raise SystemExit(f"bench_vs_trl: prorl step {r['step']} generated short responses "
                             f"(length_mean {r['response/length_mean']}, truncated_frac {r['response/truncated_frac']})")
        if r["perf/gen_tokens"] != PROMPTS * SAMPLES * args.max_new_tokens:
            raise SystemExit(f"bench_vs_trl: prorl step {r['step']} generated {r['perf/gen_tokens']} tokens")
        if r.get("actor/updates") != 1 or r.get("batch/groups_kept") != PROMPTS or "actor/kl" not in r:
            raise SystemExit(f"bench_vs_trl: prorl step {r['step']}: updates {r.get('actor/updates')}, groups "
                             f"{r.get('batch/groups_kept')}, kl {r.get('actor/kl')} (expected 1, {PROMPTS}, a KL)")
    steps = [{"step": r["step"], "time": r["time/step"],
              "split": {k: r.get(f"time/{k}", 0.0) for k in ("generate", "score", "logprobs", "update")},
              "response_length_mean": r["response/length_mean"], "kl": r["actor/kl"]} for r in rows]
    if not args.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)
    return finish_run("prorl", repeat, steps, sampled, cmd)


# ---------------------------------------------------------------- TRL


TRL_DRIVER = '''\
"""Generated by benchmarks/bench_vs_trl.py: one GRPOTrainer run, a JSON line per optimizer step."""
import json, re, resource, sys, time

cfg = json.load(open(sys.argv[1]))
import torch
torch.set_num_threads(cfg["threads"])
import transformers, trl, accelerate
from datasets import load_dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.extras import profiling

out = open(cfg["steps_file"], "w")
def emit(row):
    out.write(json.dumps(row) + "\\n")
    out.flush()

emit({"kind": "versions", "torch": torch.__version__, "transformers": transformers.__version__,
      "trl": trl.__version__, "accelerate": accelerate.__version__, "threads": torch.get_num_threads()})

# TRL's profiling timings, with the enclosing timed block of each (to tell reference log-probs in
# _prepare_inputs from the log-probs of the loss in compute_loss).
timings, stack = [], []
_enter, _exit = profiling.ProfilingContext.__enter__, profiling.ProfilingContext.__exit__
def enter(self):
    stack.append(self.name)
    return _enter(self)
def exit_(self, *exc):
    stack.pop()
    self._parent = stack[-1] if stack else None
    return _exit(self, *exc)
def log_metrics(self, duration):
    timings.append((self.name, getattr(self, "_parent", None), duration))
profiling.ProfilingContext.__enter__ = enter
profiling.ProfilingContext.__exit__ = exit_
profiling.ProfilingContext._log_metrics = log_metrics

BOXED = re.compile(r"\\\\boxed\\{([^{}]*)\\}")
def boxed_answer(completions, answer, **kwargs):
    """1.0 when the last \\\\boxed{...} of the completion is the answer, else 0.0."""
    rewards = []
    for text, want in zip(completions, answer):
        found = BOXED.findall(text)
        rewards.append(1.0 if found and found[-1].strip() == want else 0.0)
    return rewards

def cpu_now():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

class StepTimer(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        del timings[:]
        self.t0, self.c0 = time.perf_counter(), cpu_now()
    def on_step_end(self, args, state, control, **kwargs):
        emit({"kind": "step", "step": state.global_step, "time": time.perf_counter() - self.t0,
              "cpu_self": cpu_now() - self.c0, "timings": list(timings)})
    def on_log(self, args, state, control, logs=None, **kwargs):
        emit({"kind": "log", "step": state.global_step, "logs": logs or {}})

mb = cfg["micro_batch"]
accum = cfg["batch"] // mb
kwargs = dict(
    output_dir=cfg["output_dir"], report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
    use_cpu=True, seed=cfg["seed"], dataloader_num_workers=0,
    max_steps=cfg["steps"], per_device_train_batch_size=mb, gradient_accumulation_steps=accum,
    steps_per_generation=accum, num_iterations=1, num_generations=cfg["samples"],
    max_completion_length=cfg["max_new_tokens"], temperature=1.0, top_p=1.0, top_k=0,
    learning_rate=cfg["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.01, max_grad_norm=1.0,
    beta=cfg["kl_beta"], epsilon=cfg["clip_low"], epsilon_high=cfg["clip_high"], loss_type="dapo",
    scale_rewards="group", bf16=cfg["bf16"], gradient_checkpointing=cfg["gradient_checkpointing"],
    model_init_kwargs={"dtype": "float32", "attn_implementation": cfg["attn"]},
)
kwargs.update(cfg["extra"])  # --trl-set: more GRPOConfig arguments, or other values for the ones above
args = GRPOConfig(**kwargs)
dataset = load_dataset("json", data_files=cfg["problems"], split="train")
trainer = GRPOTrainer(model=cfg["model"], reward_funcs=boxed_answer, args=args, train_dataset=dataset,
                      callbacks=[StepTimer()])
emit({"kind": "config", "generation_batch_size": args.generation_batch_size,
      "steps_per_generation": args.steps_per_generation, "gradient_accumulation_steps": accum,
      "eos_token_ids": list(trainer.eos_token_ids), "has_ref_model": trainer.ref_model is not None,
      "bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing})
trainer.train()
out.close()
'''


def ensure_trl_venv(venv: Path, trl_version: str, transformers_version: str) -> Path:
    """Create (once) the TRL virtualenv; returns its python. A marker file records what was installed."""
    python = venv / "bin" / "python"
    marker = venv / ".bench-installed"
    want = {"torch": TORCH_PIN, "trl": trl_version, "transformers": transformers_version}
    try:
        if python.exists() and json.loads(marker.read_text()) == want:
            return python
    except (OSError, ValueError):
        pass
    print(f"bench_vs_trl: installing TRL {trl_version} into {venv} (once)", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH_PIN], check=True)  # first and alone, so nothing else picks the torch build
    subprocess.run([*pip, f"trl=={trl_version}", f"transformers=={transformers_version}", TORCH_PIN], check=True)
    marker.write_text(json.dumps(want))
    return python


def trl_extra(items: list[str]) -> dict:
    """``--trl-set key=value`` -> GRPOConfig keyword arguments; a value is read as JSON, else kept as a string."""
    extra = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"bench_vs_trl: --trl-set {item!r}: expected key=value")
        try:
            extra[key.strip()] = json.loads(raw)
        except ValueError:
            extra[key.strip()] = raw
    return extra


def run_trl(args, python: Path, model_dir: str, problems: Path, work: Path, env: dict, repeat: int) -> dict:
    driver = work / "trl_driver.py"
    driver.write_text(TRL_DRIVER)
    steps_file = work / f"trl_run{repeat}.jsonl"
    out_dir = work / f"trl_out{repeat}"
    cfg = {
        "model": model_dir, "problems": str(problems), "steps_file": str(steps_file), "output_dir": str(out_dir),
        "threads": args.threads, "seed": args.seed, "steps": args.steps, "batch": PROMPTS * SAMPLES,
        "samples": SAMPLES, "micro_batch": args.micro_batch, "max_new_tokens": args.max_new_tokens, "lr": args.lr,
        "kl_beta": args.kl_beta, "clip_low": args.clip_low, "clip_high": args.clip_high,
        "bf16": bool(args.trl_bf16), "gradient_checkpointing": bool(args.trl_gradient_checkpointing),
        "attn": args.attn, "extra": trl_extra(args.trl_set),
    }
    cfg_file = work / f"trl_run{repeat}.config.json"
    cfg_file.write_text(json.dumps(cfg, indent=1))
    cmd = [str(python), str(driver), str(cfg_file)]
    steps_file.unlink(missing_ok=True)
    sampled = run_and_sample(cmd, env, work / f"trl_run{repeat}.log", steps_file,
                             lambda row: row.get("kind") == "step")
    rows = [json.loads(line) for line in steps_file.read_text().splitlines() if line.strip()]
    info = {r["kind"]: r for r in rows if r["kind"] in ("versions", "config")}
    step_rows = [r for r in rows if r["kind"] == "step"]
    logs = {r["step"]: r["logs"] for r in rows if r["kind"] == "log" and "completions/min_length" in r["logs"]}
    if len(step_rows) != args.steps or len(logs) != args.steps:
        raise SystemExit(f"bench_vs_trl: TRL logged {len(step_rows)} steps and {len(logs)} step logs, expected "
                         f"{args.steps} ({steps_file})")
    if info["config"]["generation_batch_size"] != PROMPTS * SAMPLES or not info["config"]["has_ref_model"]:
        raise SystemExit(f"bench_vs_trl: TRL config is not one {PROMPTS * SAMPLES}-sequence generation batch with a "
                         f"reference model: {info['config']}")
    steps = []
    for r in step_rows:
        log = logs[r["step"]]
        if not (log["completions/min_length"] == log["completions/max_length"] == args.max_new_tokens):
            raise SystemExit(f"bench_vs_trl: TRL step {r['step']} generated short completions "
                             f"(min {log['completions/min_length']}, max {log['completions/max_length']})")
        if "kl" not in log:
            raise SystemExit(f"bench_vs_trl: TRL step {r['step']} logged no KL (beta {args.kl_beta})")
        timings = r["timings"]
        generates = [d for name, _, d in timings if name.endswith("transformers.generate")]
        if len(generates) != 1:
            raise SystemExit(f"bench_vs_trl: TRL step {r['step']} generated {len(generates)} times, expected once")
        prepare = sum(d for name, parent, d in timings if name.endswith("._prepare_inputs"))
        split = {
            "generate": generates[0],
            "score": sum(d for name, _, d in timings if name.endswith("._calculate_rewards")),
            "logprobs": sum(d for name, parent, d in timings if name.endswith("._get_per_token_logps_and_entropies")
                            and parent and parent.endswith("._prepare_inputs")),
            "update": r["time"] - prepare,  # compute_loss (forward), backward, clipping, optimizer step
            "prepare_inputs": prepare,
            "compute_loss": sum(d for name, _, d in timings if name.endswith(".compute_loss")),
        }
        steps.append({"step": r["step"], "time": r["time"], "split": split, "cpu_self": r["cpu_self"],
                      "completion_length": [log["completions/min_length"], log["completions/max_length"]],
                      "kl": log["kl"]})
    shutil.rmtree(out_dir, ignore_errors=True)
    result = finish_run("trl", repeat, steps, sampled, cmd)
    result["versions"] = {k: v for k, v in info["versions"].items() if k != "kind"}
    result["trl_config"] = {k: v for k, v in info["config"].items() if k != "kind"}
    return result


# ---------------------------------------------------------------- results


def finish_run(framework: str, repeat: int, steps: list[dict], sampled: dict, cmd: list[str]) -> dict:
    timed = steps[1:]  # the first step is a warm-up
    return {
        "framework": framework, "repeat": repeat, "command": cmd,
        "steps": steps, "timed_step_s": [s["time"] for s in timed],
        "median_step_s": statistics.median(s["time"] for s in timed),
        "cpu_s_per_step": cpu_per_timed_step(sampled["marks"]),
        "cpu_total_s": sampled["cpu_total_s"], "wall_total_s": sampled["wall_total_s"],
        "cpu_total_s_per_step": sampled["cpu_total_s"] / len(steps),
    }


def summarize(runs: list[dict], framework: str) -> dict:
    mine = [r for r in runs if r["framework"] == framework]
    timed = [s for r in mine for s in r["steps"][1:]]
    keys = sorted({k for s in timed for k in s["split"]})
    cpu = [r["cpu_s_per_step"] for r in mine if r["cpu_s_per_step"] is not None]
    return {
        "median_step_s": statistics.median(s["time"] for s in timed),
        "min_step_s": min(s["time"] for s in timed),
        "run_medians_s": [r["median_step_s"] for r in mine],
        "median_cpu_s_per_step": statistics.median(cpu) if cpu else None,
        "median_cpu_total_s_per_step": statistics.median(r["cpu_total_s_per_step"] for r in mine),
        "split_median_s": {k: statistics.median(s["split"].get(k, 0.0) for s in timed) for k in keys},
        "timed_steps": len(timed),
    }


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2m", choices=["1m", "2m", "20m"], help="prorl.tiny model size")
    parser.add_argument("--steps", type=int, default=4, help="training steps per run (the first is a warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each framework, alternating")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="response length (every response is full)")
    parser.add_argument("--micro-batch", type=int, default=32,
                        help="sequences per forward/backward (prorl train.micro_batch_size, TRL "
                             "per_device_train_batch_size; gradient accumulation makes up the 128)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--kl-beta", type=float, default=1e-3, help="KL weight, > 0 (a reference model in both)")
    parser.add_argument("--clip-low", type=float, default=0.2, help="prorl algo.clip_low, TRL epsilon")
    parser.add_argument("--clip-high", type=float, default=0.4, help="prorl algo.clip_high, TRL epsilon_high")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: the cores usable)")
    parser.add_argument("--attn", default="eager", choices=["eager", "sdpa"],
                        help="attention implementation of both (prorl model.attn_implementation, TRL model_init_kwargs)")
    parser.add_argument("--prorl-rollout-dtype", default="bfloat16", choices=["bfloat16", "float32"],
                        help="prorl rollout.dtype, the generation copy (prorl's default is bfloat16)")
    parser.add_argument("--prorl-autocast-bf16", type=int, default=1, choices=[0, 1], help="prorl train.autocast_bf16")
    parser.add_argument("--prorl-gradient-checkpointing", type=int, default=0, choices=[0, 1],
                        help="prorl model.gradient_checkpointing")
    parser.add_argument("--prorl-reward-workers", type=int, default=0,
                        help="prorl reward.workers (0: score in-process, as TRL does)")
    parser.add_argument("--trl-bf16", type=int, default=1, choices=[0, 1],
                        help="TRL bf16 (mixed precision; TRL's default is 1)")
    parser.add_argument("--trl-gradient-checkpointing", type=int, default=0, choices=[0, 1],
                        help="TRL gradient_checkpointing (TRL's default is 1)")
    parser.add_argument("--prorl-set", action="append", default=[], metavar="KEY=VALUE",
                        help="one more prorl train override (repeatable), e.g. train.micro_batch_size=64")
    parser.add_argument("--trl-set", action="append", default=[], metavar="KEY=VALUE",
                        help="one more GRPOConfig argument (repeatable; JSON value), e.g. torch_compile=true")
    parser.add_argument("--trl-venv", type=Path, default=Path("~/.cache/prorl-bench/trl-venv"))
    parser.add_argument("--trl-version", default=TRL_VERSION)
    parser.add_argument("--only", choices=["prorl", "trl"], default=None, help="run one framework (no ratio)")
    parser.add_argument("--work-dir", type=Path, default=None, help="model, logs and runs (default: a temp dir)")
    parser.add_argument("--keep-runs", action="store_true", help="keep prorl's run directories and the model directory")
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default benchmarks/results/bench_vs_trl-SIZE.json)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is a warm-up)")
    if (PROMPTS * SAMPLES) % args.micro_batch:
        parser.error(f"--micro-batch must divide {PROMPTS * SAMPLES}")
    if args.kl_beta <= 0:
        parser.error("--kl-beta must be > 0")
    args.threads = args.threads or len(os.sched_getaffinity(0))
    out = args.out or REPO / "benchmarks" / "results" / f"bench_vs_trl-{args.size}.json"

    work = Path(tempfile.mkdtemp(prefix="bench_vs_trl-", dir=args.work_dir))
    transformers_version = metadata.version("transformers")
    trl_python = None
    if args.only != "prorl":
        trl_python = ensure_trl_venv(args.trl_venv.expanduser(), args.trl_version, transformers_version)
    model = build_model_dir(work / f"model-{args.size}", args.size)
    problems = work / "problems.jsonl"
    write_problems(problems, args.seed)

    env = dict(os.environ)
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    env |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
            "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    print(f"bench_vs_trl: {args.size} model ({model['parameters']:,} parameters), {PROMPTS} prompts x {SAMPLES} "
          f"samples x {args.max_new_tokens} tokens, {args.steps} steps x {args.repeats} repeats, "
          f"{args.threads} threads; logs in {work}", file=sys.stderr, flush=True)

    runs = []
    frameworks = [f for f in ("prorl", "trl") if args.only in (None, f)]
    for repeat in range(args.repeats):
        for fw in frameworks:
            if fw == "prorl":
                run = run_prorl(args, model["path"], work, env, repeat)
            else:
                run = run_trl(args, trl_python, model["path"], problems, work, env, repeat)
            runs.append(run)
            print(f"  {fw} run {repeat}: steps {[round(s['time'], 2) for s in run['steps']]} s "
                  f"(first is warm-up), CPU {run['cpu_s_per_step'] or float('nan'):.2f} s/step",
                  file=sys.stderr, flush=True)

    import torch

    summary = {fw: summarize(runs, fw) for fw in frameworks}
    ratio = None
    if len(frameworks) == 2:
        p, t = summary["prorl"], summary["trl"]
        ratio = {"wall": p["median_step_s"] / t["median_step_s"],
                 "cpu": (p["median_cpu_s_per_step"] / t["median_cpu_s_per_step"]
                         if p["median_cpu_s_per_step"] and t["median_cpu_s_per_step"] else None)}
    trl_versions = next((r["versions"] for r in runs if r["framework"] == "trl"), None)
    result = {
        "benchmark": "bench_vs_trl",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpu_model": cpu_model(), "cores_usable": len(os.sched_getaffinity(0)), "threads": args.threads,
                    "python": platform.python_version()},
        "versions": {"prorl_env": {"torch": torch.__version__, "transformers": transformers_version,
                                   "prorl": metadata.version("prorl")},
                     "trl_env": trl_versions},
        "model": model,
        "workload": {"prompts_per_step": PROMPTS, "samples_per_prompt": SAMPLES,
                     "sequences_per_step": PROMPTS * SAMPLES, "max_new_tokens": args.max_new_tokens,
                     "optimizer_steps_per_rollout_batch": 1, "micro_batch": args.micro_batch, "lr": args.lr,
                     "kl_beta": args.kl_beta, "clip_low": args.clip_low, "clip_high": args.clip_high,
                     "temperature": 1.0, "top_p": 1.0, "prompts": "prorl data.builtin=add (one-digit additions)",
                     "steps_per_run": args.steps, "warmup_steps_dropped": 1, "repeats": args.repeats},
        "settings": {
            "prorl": {"rollout.dtype": args.prorl_rollout_dtype, "train.autocast_bf16": bool(args.prorl_autocast_bf16),
                      "model.gradient_checkpointing": bool(args.prorl_gradient_checkpointing),
                      "reward.workers": args.prorl_reward_workers, "model.dtype": "float32",
                      "model.attn_implementation": args.attn,
                      "extra_overrides": args.prorl_set},
            "trl": {"bf16": bool(args.trl_bf16), "gradient_checkpointing": bool(args.trl_gradient_checkpointing),
                    "model_init_kwargs": {"dtype": "float32", "attn_implementation": args.attn}, "loss_type": "dapo", "trl_venv": str(args.trl_venv.expanduser()),
                    "extra_config": trl_extra(args.trl_set)},
        },
        "summary": summary,
        "ratio_prorl_over_trl": ratio,
        "runs": runs,
        "work_dir": str(work),
    }
    if not args.keep_runs:
        shutil.rmtree(model["path"], ignore_errors=True)  # the logs stay in the work directory
    text = json.dumps(result, indent=1)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"bench_vs_trl: wrote {out}", file=sys.stderr)
    if ratio:
        print(f"bench_vs_trl: median step prorl {summary['prorl']['median_step_s']:.2f} s, TRL "
              f"{summary['trl']['median_step_s']:.2f} s: ratio {ratio['wall']:.2f} (wall)"
              + (f", {ratio['cpu']:.2f} (CPU)" if ratio["cpu"] else ""), file=sys.stderr)


if __name__ == "__main__":
    main()

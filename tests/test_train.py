"""The trainer end to end on a tiny local model: metrics, resets, checkpoints, exact resume, NaN safety."""

import dataclasses
import json
import math

import pytest
import torch

from prorl import algo
from tiny_run import strip_times, tiny_config

from prorl.batch import Batch, LogprobSettings, batch_logprobs, micro_batches
from prorl.config import resolve_config
from prorl.data.builtin import make_problems
from prorl.errors import UserError
from prorl.policy import load_policy, resolve_device
from prorl.runlog import read_jsonl
from prorl.train import train
from prorl.update import make_optimizer, reset_reference, update_policy


HOW = LogprobSettings(temperature=1.2, micro_batch_size=8)


def test_train_writes_metrics_events_and_a_loadable_checkpoint(warm_model, tmp_path):
    cfg = tiny_config(warm_model, tmp_path / "run", "reset.every=2")
    last = train(cfg)
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2, 3, 4]  # step 0 holds the validation before training
    for key in ["reward/mean", "reward/math", "accuracy/mean", "actor/entropy", "actor/kl", "actor/pg_loss",
                "actor/kl_loss", "actor/clip_frac_low", "actor/clip_frac_high", "actor/grad_norm", "actor/lr",
                "response/length_mean", "response/length_max", "response/truncated_frac", "batch/zero_var_group_frac",
                "batch/gen_batches", "time/generate", "time/score", "time/logprobs", "time/update", "time/step",
                "perf/tokens_per_s"]:
        assert key in last, key
    assert "val/pass@1/math" in metrics[2] and "val/pass@1/math" in metrics[0]
    events = read_jsonl(tmp_path / "run" / "events.jsonl")
    resets = [e for e in events if e["event"] == "reset"]
    assert [e["step"] for e in resets] == [2]  # every 2 steps, none after the last step
    assert resets[0]["optimizer"] == "reinitialised"
    # The policy checkpoint loads with plain transformers.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = tmp_path / "run" / "checkpoints" / "step_000004"
    model = AutoModelForCausalLM.from_pretrained(ckpt / "policy")
    AutoTokenizer.from_pretrained(ckpt / "policy")
    trained, _ = load_policy(ckpt / "policy", dtype="float32")
    base, _ = load_policy(warm_model, dtype="float32")
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))
    assert sum(p.numel() for p in model.parameters()) > 0
    trained_steps = {m["step"] for m in metrics if m.get("actor/updates", 0) > 0}
    assert trained_steps, "no step had a group with reward variance: the fixture model is too weak"
    written = {int(p.stem.split("_")[1]) for p in (tmp_path / "run" / "rollouts").glob("step_*.jsonl")}
    assert written == trained_steps & {2, 4}


def test_resumed_run_matches_the_uninterrupted_run(warm_model, tmp_path):
    train(tiny_config(warm_model, tmp_path / "straight", "reset.every=3"))
    # Interrupted after step 2 (the checkpoint), then resumed: same config, same data, same draws.
    train(tiny_config(warm_model, tmp_path / "resumed", "reset.every=3", "train.steps=2"))
    # A crashed run may have logged steps after its checkpoint: they must be replaced, not duplicated.
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 3, "reward/mean": 123.0}) + "\n")
    train(tiny_config(warm_model, tmp_path / "resumed", "reset.every=3"), resume=True)

    straight = strip_times(read_jsonl(tmp_path / "straight" / "metrics.jsonl"))
    resumed = strip_times(read_jsonl(tmp_path / "resumed" / "metrics.jsonl"))
    assert resumed == straight
    a, _ = load_policy(tmp_path / "straight" / "checkpoints" / "step_000004" / "policy", dtype="float32")
    b, _ = load_policy(tmp_path / "resumed" / "checkpoints" / "step_000004" / "policy", dtype="float32")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    events = [e["event"] for e in read_jsonl(tmp_path / "resumed" / "events.jsonl")]
    assert "resume" in events and events.count("reset") == 1


def test_training_into_a_run_with_a_checkpoint_needs_resume(warm_model, tmp_path):
    from prorl.errors import UserError

    train(tiny_config(warm_model, tmp_path / "run", "train.steps=2"))
    with pytest.raises(UserError, match="--resume"):
        train(tiny_config(warm_model, tmp_path / "run", "train.steps=2"))


def build_batch(warm_model, tmp_path, *extra):
    cfg = tiny_config(warm_model, tmp_path, "rollout.n=8", "train.prompts_per_step=4", *extra)
    model, tok = load_policy(warm_model, dtype="float32")
    from prorl.groups import sample_and_score
    from prorl.rollout import HFEngine, RandomStream, Sampling
    from prorl.verifiers.pool import ScoringPool

    problems = make_problems("add", 200, seed=3)[:8]
    sampling = Sampling(n=8, temperature=1.2, top_p=1.0, max_new_tokens=12)
    with ScoringPool(0) as pool:
        groups = sample_and_score(HFEngine(model, tok), tok, problems, sampling, RandomStream(0), pool, chat_template=None)
    varied = torch.nonzero(groups.varied()).flatten().tolist()[:4]
    assert varied
    return cfg, model, Batch.from_groups(groups.select(varied))


def test_kl_to_reference_is_zero_after_a_reset(warm_model, tmp_path):
    cfg, model, batch = build_batch(warm_model, tmp_path)
    reference, _ = load_policy(warm_model, dtype="float32")
    with torch.no_grad():  # make the policy differ from the reference first
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    before = algo.kl_penalty(batch_logprobs(model, batch, HOW), batch_logprobs(reference, batch, HOW))
    assert float((before * batch.response_mask).sum()) > 0
    reset_reference(model, reference)
    after = algo.kl_penalty(batch_logprobs(model, batch, HOW), batch_logprobs(reference, batch, HOW))
    assert float((after * batch.response_mask).abs().sum()) == 0.0


@pytest.mark.parametrize("split", ["micro_batch_size=1", "micro_batch_size=3", "max_tokens_per_micro_batch=40",
                                   "max_tokens_per_micro_batch=90+checkpointing"])
def test_update_does_not_depend_on_micro_batch_size(warm_model, tmp_path, split):
    """One optimizer step over 32 sequences in one pass, then split by count or by a token budget (with gradient
    checkpointing in the last case): the same weight change."""
    cfg, _, batch = build_batch(warm_model, tmp_path, "train.mini_batch_prompts=4")
    setting, _, checkpointing = split.partition("+")
    results = []
    for option in ("micro_batch_size=32", setting):
        model, _ = load_policy(warm_model, dtype="float32")
        reference, _ = load_policy(warm_model, dtype="float32")
        if checkpointing and option == setting:
            getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        run_cfg = resolve_config({}, [f"model.path={warm_model}", "rollout.n=8", "train.prompts_per_step=4",
                                      "train.mini_batch_prompts=4", "train.micro_batch_size=32", f"train.{option}",
                                      "train.lr=1e-3", "algo.kl_beta=0.1", "rollout.max_new_tokens=12",
                                      "train.autocast_bf16=false"])
        how = LogprobSettings.of(run_cfg)
        passes = how.split(batch, torch.arange(len(batch.problems)))
        assert len(passes) > 1 or option == "micro_batch_size=32"
        # Plain SGD with lr 1 makes the weight change equal the (clipped) gradient: Adam would divide
        # tiny float32 round-off by tiny second moments and hide what is compared.
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        start = [p.detach().clone() for p in model.parameters()]
        old = batch_logprobs(model, batch, HOW)
        ref = batch_logprobs(reference, batch, HOW) + 0.05  # a reference that differs
        adv = torch.randn(len(batch.problems), generator=torch.Generator().manual_seed(1))
        update_policy(model, optimizer, scheduler, batch, adv, old, ref, run_cfg, torch.Generator().manual_seed(2))
        results.append([p.detach() - s for p, s in zip(model.parameters(), start)])
    assert any(float(d.abs().max()) > 1e-4 for d in results[0])  # the step really moved the weights
    # Float32 sums taken in another order differ by round-off: a few ulps of the largest terms (seen: 1.2e-7 on an
    # element of 9e-5). A wrong denominator or a lost micro-batch would change elements by tens of percent.
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_token_budget_packs_sorted_sequences_within_the_budget(warm_model, tmp_path):
    _, _, batch = build_batch(warm_model, tmp_path)
    rows = torch.randperm(len(batch.problems), generator=torch.Generator().manual_seed(0))
    T = batch.num_response_tokens
    for budget in (1, 30, 60, 200, 10_000):
        packs = micro_batches(batch, rows, 4, budget)
        assert sorted(torch.cat(packs).tolist()) == sorted(rows.tolist())  # every row exactly once
        sizes = []
        for pack in packs:
            prompt = int(batch.attention_mask[pack, :-T].sum(-1).max())
            response = max(int(batch.response_mask[pack].sum(-1).max()), 1)
            sizes.append(len(pack) * (prompt + response))
            assert len(pack) == 1 or sizes[-1] <= budget  # only a row longer than the budget goes over it, alone
        totals = [int(batch.attention_mask[p].sum(-1).max()) for p in packs]
        assert totals == sorted(totals, reverse=True)  # longest first
    assert len(micro_batches(batch, rows, 4, 10_000)) == 1
    assert [p.tolist() for p in micro_batches(batch, rows, 4, 0)] == [p.tolist() for p in rows.split(4)]


def test_one_optimizer_step_per_batch_takes_old_logprobs_from_the_update_pass(warm_model, tmp_path):
    """With one mini-batch and one epoch no separate old-log-prob pass runs, and the update is the one the separate
    pass would have given (the ratio is 1 either way, up to round-off)."""
    cfg, _, batch = build_batch(warm_model, tmp_path, "train.mini_batch_prompts=4")
    from prorl.update import single_update

    assert single_update(cfg, batch)
    batch.sample_logprobs = batch.sample_logprobs - 0.1 * batch.response_mask  # a sampler that differs by 0.1
    reference, _ = load_policy(warm_model, dtype="float32")
    ref = batch_logprobs(reference, batch, HOW) + 0.05
    results = []
    for old_given in (True, False):
        model, _ = load_policy(warm_model, dtype="float32")
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        start = [p.detach().clone() for p in model.parameters()]
        old = batch_logprobs(model, batch, LogprobSettings.of(cfg)) if old_given else None
        adv = torch.randn(len(batch.problems), generator=torch.Generator().manual_seed(1))
        metrics, _ = update_policy(model, optimizer, scheduler, batch, adv, old, ref, cfg,
                                   torch.Generator().manual_seed(2))
        results.append(([p.detach() - s for p, s in zip(model.parameters(), start)], metrics))
    (given, m_given), (skipped, m_skipped) = results
    assert m_skipped["actor/ratio_mean"] == 1.0 and m_skipped["actor/clip_frac_low"] == 0.0
    assert m_skipped["rollout/logprob_diff"] == pytest.approx(m_given["rollout/logprob_diff"], rel=1e-4)
    assert m_skipped["rollout/logprob_diff"] == pytest.approx(0.1, abs=1e-3)  # the mismatch metric still measures
    for a, b in zip(given, skipped):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    two_steps = resolve_config({}, [f"model.path={warm_model}", "rollout.n=4", "train.prompts_per_step=4",
                                    "train.mini_batch_prompts=2"])
    assert not single_update(two_steps, batch)
    with pytest.raises(ValueError, match="one mini-batch"):
        update_policy(model, optimizer, scheduler, batch, adv, None, None, two_steps, torch.Generator())


@pytest.mark.parametrize("correction, scale", [("off", 1.0), ("token_tis", 2.0), ("seq_tis", 2.0), ("icepop", 0.0)])
def test_rollout_correction_weights_the_policy_gradient(warm_model, tmp_path, correction, scale):
    """A sampler whose log-probs are 1 below the trainer's on every token: every token ratio is e. token_tis and
    seq_tis (upper bound 2) weight every token by exactly 2, so the gradient doubles; icepop with the range
    [0.5, 2.5] drops every token, so the weights do not move (no KL term here)."""
    extra = ["algo.rollout_correction_bounds=[0.5, 2.5]"] if correction == "icepop" else []
    cfg, _, batch = build_batch(warm_model, tmp_path, "train.mini_batch_prompts=4", "algo.kl_beta=0",
                                "train.grad_clip=0", f"algo.rollout_correction={correction}", *extra)
    model, _ = load_policy(warm_model, dtype="float32")
    batch.sample_logprobs = (batch_logprobs(model, batch, LogprobSettings.of(cfg)) - 1.0) * batch.response_mask
    deltas = []
    for run_cfg in (dataclasses.replace(cfg, algo=dataclasses.replace(cfg.algo, rollout_correction="off")), cfg):
        model, _ = load_policy(warm_model, dtype="float32")
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        start = [p.detach().clone() for p in model.parameters()]
        adv = torch.randn(len(batch.problems), generator=torch.Generator().manual_seed(1))
        metrics, _ = update_policy(model, optimizer, scheduler, batch, adv, None, None, run_cfg,
                                   torch.Generator().manual_seed(2))
        deltas.append([p.detach() - s for p, s in zip(model.parameters(), start)])
    assert any(float(d.abs().max()) > 1e-4 for d in deltas[0])
    for plain, corrected in zip(*deltas):  # round-off of float32 sums in another order: ~1e-7 on 2e-4 elements
        torch.testing.assert_close(corrected, scale * plain, rtol=1e-4, atol=1e-6)
    assert metrics["rollout/mismatch_kl"] == pytest.approx(math.e - 2.0, rel=1e-3)  # k3 of log-ratio 1
    if correction == "off":
        assert "rollout/is_weight_max" not in metrics
    else:
        assert metrics["rollout/is_weight_max"] == pytest.approx(scale, rel=1e-4)
        assert metrics["rollout/is_masked_frac" if scale == 0 else "rollout/is_truncated_frac"] == 1.0


def test_nan_loss_skips_the_update_and_keeps_weights(warm_model, tmp_path, monkeypatch):
    cfg, model, batch = build_batch(warm_model, tmp_path)
    before = [p.detach().clone() for p in model.parameters()]
    real = algo.policy_loss

    def nan_loss(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        return loss * float("nan"), metrics

    monkeypatch.setattr(algo, "policy_loss", nan_loss)
    optimizer, scheduler = make_optimizer(model, cfg)
    old = batch_logprobs(model, batch, HOW)
    metrics, skipped = update_policy(model, optimizer, scheduler, batch, torch.ones(len(batch.problems)), old, old,
                                     cfg, torch.Generator().manual_seed(0))
    assert skipped == metrics["actor/skipped_updates"] == 2 and metrics["actor/updates"] == 0
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b)


def test_manual_reset_request_is_picked_up(warm_model, tmp_path):
    from prorl.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    assert main(["reset", str(run)]) == 0  # the request waits for the trainer's next step
    train(tiny_config(warm_model, run, "train.steps=1", "validation.every=0"))
    resets = [e for e in read_jsonl(run / "events.jsonl") if e["event"] == "reset"]
    assert [(e["step"], e["reason"]) for e in resets] == [(0, "manual")]
    assert not (run / "reset.request").exists()


@pytest.mark.parametrize("name, message", [
    ("tpu", "expected auto, cpu, cuda or cuda:N"),
    ("nonsense", "expected auto, cpu, cuda or cuda:N"),
])
def test_a_device_that_is_not_a_device_is_a_clear_error(name, message):
    with pytest.raises(UserError, match=message):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")


def test_steps_skipped_for_equal_rewards_keep_the_reset_and_validation_schedule(warm_model, tmp_path):
    # Every response is cut at one token and given reward 0: every group is equal, every step is skipped.
    cfg = tiny_config(warm_model, tmp_path / "run", "reset.every=2", "rollout.max_new_tokens=1",
                      "reward.truncated_reward=0")
    train(cfg)
    events = read_jsonl(tmp_path / "run" / "events.jsonl")
    assert [e["step"] for e in events if e["event"] == "skip"] == [1, 2, 3, 4]
    assert [e["step"] for e in events if e["event"] == "reset"] == [2]
    assert [e["step"] for e in events if e["event"] == "validation"] == [0, 2, 4]
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert "val/pass@1/math" in metrics[2] and metrics[3]["reset/count"] == 1
    # the skipped steps' samples are still written (log.rollouts_every=2): what the model produced is what to look at
    written = sorted(p.name for p in (tmp_path / "run" / "rollouts").iterdir())
    assert written == ["step_000002.jsonl", "step_000004.jsonl"]
    rows = read_jsonl(tmp_path / "run" / "rollouts" / "step_000002.jsonl")
    assert rows and all(r["finish"] == "length" and r["reward"] == 0.0 for r in rows)
    from prorl.train import run_summary

    lines = run_summary(tmp_path / "run")
    assert lines[:3] == ["steps: 4 logged (last 4)", "skipped: 4 x every group had equal scores",
                         "resets: 1 (step 2: schedule)"]
    assert lines[3].startswith("validation pass@1: best ") and lines[3].endswith("at step 4")
    assert lines[4].startswith("final checkpoint: ") and "step_000004" in lines[4]


def test_a_stage_may_not_change_what_is_made_once_per_run(warm_model, tmp_path):
    from prorl.errors import ConfigError

    for key, value in [("train.seed", 3), ("rollout.dtype", "float32"), ("rollout.engine", "hf")]:
        with pytest.raises(ConfigError, match=f"stages\\[1\\].overrides.{key}.*fixed for the whole run"):
            tiny_config(warm_model, tmp_path, "stages=[{steps: 1}, {steps: 1, overrides: {" + f"{key}: {value}" + "}}]")


def test_every_phase_reads_the_stage_config(warm_model, tmp_path):
    # A stage's scoring deadline and data reach the pool and the sampler (they used to keep the base config's).
    from prorl.run import open_run
    from prorl.train import begin_step

    cfg = tiny_config(warm_model, tmp_path / "run", "stages=[{name: a, steps: 2}, {name: b, steps: 2, "
                      "overrides: {reward.timeout_s: 7, data.builtin: sub, train.prompts_per_step: 2}}]")
    run = open_run(cfg, resume=False)
    try:
        begin_step(run, 1)
        assert run.stage.name == "a" and run.pool.timeout_s == 30.0
        assert {p.metadata["task"] for p in run.sampler.next_batch(4)} == {"add"}
        begin_step(run, 3)
        assert run.stage.name == "b" and run.pool.timeout_s == 7.0
        assert {p.metadata["task"] for p in run.sampler.next_batch(4)} == {"sub"}
    finally:
        run.pool.close()


@pytest.mark.parametrize("lr, what", [(1e6, "norm grew from .* at learning rate 1e\\+06"), (1e38, "non-finite weights")])
def test_an_update_that_blows_up_the_weights_stops_before_anything_is_written(warm_model, tmp_path, lr, what):
    # Config validation caps train.lr; an optimizer that still diverges is caught after its step.
    from prorl.update import UnstableUpdate

    cfg, model, batch = build_batch(warm_model, tmp_path, "train.mini_batch_prompts=4")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    old = batch_logprobs(model, batch, HOW)
    with pytest.raises(UnstableUpdate, match=what):
        update_policy(model, optimizer, scheduler, batch, torch.randn(len(batch.problems)), old, old, cfg,
                      torch.Generator().manual_seed(0))


def test_autocast_default_follows_the_device(monkeypatch):
    import prorl.policy

    for native in (True, False):
        monkeypatch.setattr(prorl.policy, "_cpu_has_bf16", lambda native=native: native)
        auto = resolve_config({}, ["model.device=cpu"])
        assert auto.train.autocast_bf16 is None and LogprobSettings.of(auto).autocast is native
        for setting in (True, False):
            chosen = resolve_config({}, ["model.device=cpu", f"train.autocast_bf16={str(setting).lower()}"])
            assert LogprobSettings.of(chosen).autocast is setting


def test_training_under_bf16_autocast_keeps_float32_weights(warm_model, tmp_path):
    cfg = tiny_config(warm_model, tmp_path / "run", "train.autocast_bf16=true", "train.steps=2", "validation.every=0",
                      "train.mini_batch_prompts=4")
    last = train(cfg)
    assert last["actor/updates"] == 1 and last["actor/ratio_mean"] == 1.0  # one step: old log-probs from the pass
    for key in ("actor/pg_loss", "actor/kl", "actor/entropy", "actor/grad_norm", "rollout/logprob_diff"):
        assert torch.isfinite(torch.tensor(last[key])), key
    trained, _ = load_policy(tmp_path / "run" / "checkpoints" / "step_000002" / "policy", dtype="float32")
    base, _ = load_policy(warm_model, dtype="float32")
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))


@pytest.mark.parametrize("kind", ["cispo", "gspo", "clip_cov", "kl_cov"])
def test_training_with_another_policy_loss(warm_model, tmp_path, kind):
    clip = ["algo.clip_low=3e-4", "algo.clip_high=4e-4", "algo.loss_agg=seq-mean-token-mean"] if kind == "gspo" else []
    if kind == "clip_cov":  # a band every token's covariance falls in, so that candidates exist on any machine
        clip = ["algo.cov_bounds=[-1000, 1000]"]
    last = train(tiny_config(warm_model, tmp_path / "run", f"algo.policy_loss={kind}", "train.steps=2",
                             "validation.every=0", *clip))
    assert last["actor/updates"] == 2
    for key in ("actor/pg_loss", "actor/kl", "actor/grad_norm", "actor/clip_frac_high"):
        assert torch.isfinite(torch.tensor(last[key])), key
    assert ("actor/cov_frac" in last) == (kind in ("clip_cov", "kl_cov"))
    if kind in ("clip_cov", "kl_cov"):
        assert 0 < last["actor/cov_frac"] < 0.1  # at least one token per micro-batch, a small fraction of them


def test_kl_dominance_resets_when_the_kl_share_stays_above_the_threshold(warm_model, tmp_path):
    """actor/kl_share is logged every step; the resets it triggers are exactly those the rule gives when replayed
    on the logged shares (patience 2, counter cleared by a reset)."""
    from prorl.runlog import read_jsonl
    from prorl.train import train

    cfg = tiny_config(warm_model, tmp_path / "run", "train.steps=8", "algo.kl_beta=1.0", "validation.every=0",
                      "reset.kl_share_threshold=0.002", "reset.kl_share_patience=2", "checkpoint.every=0")
    train(cfg)
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["step"] > 0]
    shares = {r["step"]: r["actor/kl_share"] for r in rows if "actor/kl_share" in r}
    assert all(0.0 <= v < 1.0 for v in shares.values()) and len(shares) >= 6
    expected, count = [], 0
    for step in range(1, 9):
        if step not in shares:
            continue
        count = count + 1 if shares[step] > 0.002 else 0
        if count >= 2 and step < 8:
            expected.append(step)
            count = 0
    events = read_jsonl(tmp_path / "run" / "events.jsonl")
    resets = [e for e in events if e["event"] == "reset"]
    assert [e["step"] for e in resets] == expected and expected  # the trigger fired, where the rule says
    assert all(e["reason"].startswith("kl share ") for e in resets)


def test_cosine_length_penalty_follows_its_schedule_from_the_start_of_its_stage(warm_model, tmp_path):
    """Stage a (2 steps) has no penalty; stage b turns on the cosine penalty for 1 step in 2, counted from its own first
    step; the rewards of that stage's on-steps are the cosine of the verifier's score and the length."""
    from prorl.groups import shaped_reward
    from prorl.runlog import read_jsonl
    from prorl.train import train
    from prorl.verifiers.verdict import Verdict

    cfg = tiny_config(warm_model, tmp_path / "run", "validation.every=0", "checkpoint.every=0",
                      "stages=[{name: a, steps: 2}, {name: b, steps: 4, overrides: {reward.length_penalty: cosine, "
                      "reward.length_penalty_schedule: [1, 1], reward.cosine_wrong: [-1.0, 0.0]}}]")
    train(cfg)
    rows = {r["step"]: r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")}
    assert "reward/length_penalty_on" not in rows[1] and "reward/length_penalty_on" not in rows[2]
    assert [rows[s]["reward/length_penalty_on"] for s in (3, 4, 5, 6)] == [1.0, 0.0, 1.0, 0.0]
    from prorl.config import stage_configs

    reward_cfg = stage_configs(cfg)[1].cfg.reward
    problem = make_problems("add", 1, seed=0)[0]
    right, wrong = Verdict(1.0, "ok"), Verdict(0.0, "wrong")
    assert shaped_reward(reward_cfg, problem, right, "stop", 6, max_length=12, length_penalty=True) == pytest.approx(0.75)
    assert shaped_reward(reward_cfg, problem, wrong, "stop", 6, max_length=12, length_penalty=True) == pytest.approx(-0.5)
    assert shaped_reward(reward_cfg, problem, right, "stop", 6, max_length=12, length_penalty=False) == 1.0


def test_entropy_bonus_ascends_the_entropy_linearly_in_its_coefficient(warm_model, tmp_path):
    """No policy-gradient signal (zero advantages) and no KL: the step is the entropy bonus alone, so twice the
    coefficient moves the weights exactly twice as far, and the entropy rises."""
    cfg, _, batch = build_batch(warm_model, tmp_path, "train.mini_batch_prompts=4", "algo.kl_beta=0",
                                "train.grad_clip=0")
    how = LogprobSettings.of(cfg)
    deltas, entropies = [], []
    for coef in (0.0, 0.5, 1.0):
        model, _ = load_policy(warm_model, dtype="float32")
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        start = [p.detach().clone() for p in model.parameters()]
        metrics, _ = update_policy(model, optimizer, scheduler, batch, torch.zeros(len(batch.problems)), None, None,
                                   cfg, torch.Generator().manual_seed(2), entropy_coef=coef)
        deltas.append([p.detach() - s for p, s in zip(model.parameters(), start)])
        with torch.no_grad():
            from prorl.batch import logprobs_of

            _, ent = logprobs_of(model, batch, torch.arange(len(batch.problems)), how, with_entropy=True)
        entropies.append(float((ent * batch.response_mask).sum() / batch.response_mask.sum()))
        if coef:
            assert metrics["actor/entropy_coef"] == coef and metrics["actor/entropy_bonus"] > 0
    assert all(float(d.abs().max()) == 0.0 for d in deltas[0])  # nothing to learn without the bonus
    assert any(float(d.abs().max()) > 1e-5 for d in deltas[1])
    full = torch.cat([d.flatten() for d in deltas[2]])
    half = torch.cat([d.flatten() for d in deltas[1]])
    assert float((full - 2 * half).norm() / full.norm()) < 2e-3  # float32 round-off (seen 5e-4); a wrong scale: 0.5
    assert entropies[0] < entropies[1] < entropies[2]


def test_steered_entropy_coefficient_follows_the_rule_on_the_logged_entropies(warm_model, tmp_path):
    from prorl import algo
    from prorl.runlog import read_jsonl
    from prorl.train import train

    cfg = tiny_config(warm_model, tmp_path / "run", "train.steps=5", "validation.every=0", "checkpoint.every=0",
                      "algo.entropy_coef=0.001", "algo.entropy_target=0.6", "algo.entropy_coef_step=0.001",
                      "algo.entropy_coef_max=0.0025")
    train(cfg)
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["step"] > 0 and "actor/entropy" in r]
    assert len(rows) >= 4
    coef = 0.001
    for row in rows:
        assert row["actor/entropy_coef"] == pytest.approx(coef, abs=1e-12)
        coef = algo.steer_entropy_coef(coef, row["actor/entropy"], 0.6, 0.001, 0.0025)
    assert len({round(r["actor/entropy_coef"], 6) for r in rows}) > 1  # the coefficient did move

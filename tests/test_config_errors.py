"""Bad settings are one ConfigError naming the key and what is expected; `prorl train` prints one line, exits 2."""

import re
from importlib import resources

import pytest

from prorl.cli import main
from prorl.config import load_recipe, resolve_config, stage_configs
from prorl.errors import ConfigError


def key(name: str, what: str = "") -> str:
    """A pattern for ``config key 'NAME': expected WHAT``."""
    return re.escape(f"config key '{name}': expected {what}")


# (overrides, pattern the message must match)
BAD = [
    # train
    (["train.lr=0"], key("train.lr", "a learning rate in (0, 1]") + ", got 0.0"),
    (["train.lr=-1e-6"], key("train.lr", "a learning rate in (0, 1]")),
    (["train.lr=2"], key("train.lr", "a learning rate in (0, 1]") + ", got 2.0"),
    (["train.lr=.nan"], key("train.lr", "a finite number") + ", got nan"),
    (["train.lr=nan"], key("train.lr", "a finite number") + ", got nan"),
    (["train.lr=.inf"], key("train.lr", "a finite number") + ", got inf"),
    (["train.lr=-.inf"], key("train.lr", "a finite number") + ", got -inf"),
    (["train.prompts_per_step=0"], key("train.prompts_per_step", "an integer >= 1")),
    (["train.mini_batch_prompts=0"], key("train.mini_batch_prompts", "an integer >= 1") + ", got 0"),
    (["train.mini_batch_prompts=-2"], key("train.mini_batch_prompts", "an integer >= 1")),
    (["train.mini_batch_prompts=3"], key("train.mini_batch_prompts", "a divisor of train.prompts_per_step=256")),
    (["train.micro_batch_size=0"], key("train.micro_batch_size", "an integer >= 1")),
    (["train.steps=0"], key("train.steps", "an integer >= 1")),
    (["train.epochs=0"], key("train.epochs", "an integer >= 1")),
    (["train.warmup_steps=-1"], key("train.warmup_steps", "an integer >= 0")),
    (["train.grad_clip=-1"], key("train.grad_clip", "a number >= 0")),
    (["train.weight_decay=-0.1"], key("train.weight_decay", "a number >= 0")),
    (["train.betas=[0.9]"], key("train.betas", "two numbers in [0, 1)")),
    (["train.betas=[0.9, 1.0]"], key("train.betas", "two numbers in [0, 1)")),
    (["train.betas=[-0.1, 0.999]"], key("train.betas", "two numbers in [0, 1)")),
    (["train.betas=[0.9, .nan]"], key("train.betas", "two numbers in [0, 1)")),
    (["train.betas=[a, b]"], key("train.betas", "two numbers in [0, 1)")),
    # rollout
    (["rollout.n=1"], key("rollout.n", "an integer >= 2: group advantages need at least two samples per prompt")),
    (["rollout.n=1", "algo.advantage=drgrpo"], key("rollout.n", "an integer >= 2") + ".*algo.advantage=drgrpo"),
    (["rollout.n=1", "algo.advantage=rloo-batch-std"], key("rollout.n", "an integer >= 2")),
    (["rollout.n=0"], key("rollout.n", "an integer >= 2")),
    (["rollout.max_new_tokens=0"], key("rollout.max_new_tokens", "an integer >= 1")),
    (["rollout.batch_size=0"], key("rollout.batch_size", "an integer >= 1")),
    (["rollout.temperature=0"], key("rollout.temperature", "a number > 0")),
    (["rollout.temperature=.inf"], key("rollout.temperature", "a finite number")),
    (["rollout.top_p=0"], key("rollout.top_p", "a number in (0, 1]")),
    (["rollout.top_p=1.5"], key("rollout.top_p", "a number in (0, 1]")),
    (["rollout.dtype=float8"], key("rollout.dtype", "float32, bfloat16 or float16")),
    # algo
    (["algo.clip_low=1"], key("algo.clip_low", "a number in [0, 1)")),
    (["algo.clip_low=-0.1"], key("algo.clip_low", "a number in [0, 1)")),
    (["algo.clip_high=-0.1"], key("algo.clip_high", "a number >= 0")),
    (["algo.kl_beta=-1e-4"], key("algo.kl_beta", "a number >= 0")),
    (["algo.kl_beta=.nan"], key("algo.kl_beta", "a finite number")),
    (["algo.max_gen_batches=0"], key("algo.max_gen_batches", "an integer >= 1")),
    (["algo.advantage=ppo"], key("algo.advantage", "grpo, drgrpo or rloo-batch-std")),
    # reward
    (["reward.timeout_s=0"], key("reward.timeout_s", "a number of seconds > 0")),
    (["reward.timeout_s=-5"], key("reward.timeout_s", "a number of seconds > 0")),
    (["reward.timeout_s=.inf"], key("reward.timeout_s", "a finite number")),
    (["reward.workers=-1"], key("reward.workers", "an integer >= 0")),
    (["reward.truncated_reward=.nan"], key("reward.truncated_reward", "a finite number")),
    # reset
    (["reset.every=-1"], key("reset.every", "an integer >= 0")),
    (["reset.val_patience=-1"], key("reset.val_patience", "an integer >= 0")),
    (["reset.kl_threshold=-0.5"], key("reset.kl_threshold", "a number >= 0")),
    (["reset.kl_share_threshold=1"], key("reset.kl_share_threshold", "a fraction in [0, 1)")),
    (["algo.entropy_coef=-1"], key("algo.entropy_coef", "a number >= 0")),
    (["algo.entropy_target=0"], key("algo.entropy_target", "a number > 0, or null")),
    (["algo.entropy_coef_step=0"], key("algo.entropy_coef_step", "a number > 0")),
    (["reward.length_penalty=linear"], key("reward.length_penalty", "none or cosine")),
    (["reward.cosine_correct=[1]"], key("reward.cosine_correct", "two numbers [at length 0, at rollout.max_new_tokens]")),
    (["reward.length_penalty_schedule=[0, 5]"], key("reward.length_penalty_schedule", "[] or [on, off]")),
    (["reset.kl_share_patience=0"], key("reset.kl_share_patience", "an integer >= 1")),
    # validation
    (["validation.every=-1"], key("validation.every", "an integer >= 0")),
    (["validation.n=0"], key("validation.n", "an integer >= 1")),
    (["validation.temperature=-0.1"], key("validation.temperature", "a number >= 0")),
    (["validation.top_p=0"], key("validation.top_p", "a number in (0, 1]")),
    (["validation.top_p=1.01"], key("validation.top_p", "a number in (0, 1]")),
    (["validation.max_new_tokens=0"], key("validation.max_new_tokens", "an integer >= 1")),
    # checkpoint
    (["checkpoint.every=-1"], key("checkpoint.every", "an integer >= 0")),
    (["checkpoint.keep_last=0"],
     key("checkpoint.keep_last", "an integer >= 1 (the checkpoints kept; 0 would delete the one just written)")),
    # data
    (["data.val_size=-1"], key("data.val_size", "an integer >= 0")),
    (["data.val_fraction=1"], key("data.val_fraction", "a fraction in [0, 1)")),
    (["data.val_fraction=-0.1"], key("data.val_fraction", "a fraction in [0, 1)")),
    (["data.weights={math: -1}"], key("data.weights.math", "a finite number >= 0")),
    (["data.weights={math: .nan}"], key("data.weights.math", "a finite number >= 0")),
    (["data.weights={math: 0, code: 0}"], key("data.weights", "at least one weight > 0")),
    (["data.weights={maths: 1}"], key("data.weights", "domains among math") + ".*got 'maths'"),
    (["data.builtin=add,mul"], key("data.builtin", "KIND or KIND:W entries") + ".*'mul'"),
    (["data.builtin=add3:0"], key("data.builtin", "KIND or KIND:W entries") + ".*integer >= 1"),
    (["data.builtin=add3:x"], key("data.builtin", "KIND or KIND:W entries")),
    (["data.builtin=' , '"], key("data.builtin", "KIND or KIND:W entries") + ".*no kinds"),
    # log, model
    (["log.rollouts_every=-1"], key("log.rollouts_every", "an integer >= 0")),
    (["log.rollouts_per_step=-1"], key("log.rollouts_per_step", "an integer >= 0")),
    (["model.device=gpu"], key("model.device", "auto, cpu, cuda or cuda:N")),
    (["model.attn_implementation=' '"], key("model.attn_implementation", "a transformers attention implementation")),
    (["train.max_tokens_per_micro_batch=-1"], key("train.max_tokens_per_micro_batch", "an integer >= 0")),
    (["train.head_chunk_tokens=0"], key("train.head_chunk_tokens", "an integer >= 1")),
    (["algo.policy_loss=grpo"], key("algo.policy_loss", "ppo, cispo, gspo, clip_cov or kl_cov")),
    (["algo.cov_fraction=0"], key("algo.cov_fraction", "a fraction in (0, 1] or null")),
    (["algo.cov_bounds=[5, 1]"], key("algo.cov_bounds", "two numbers [low, high] with low < high")),
    (["algo.rollout_correction=tis"], key("algo.rollout_correction", "one of off, token_tis, seq_tis, seq_mask, icepop")),
    (["algo.rollout_correction_bounds=[2, 1]"], key("algo.rollout_correction_bounds",
                                                    "two numbers [low, high] with 0 <= low < high")),
    (["algo.rollout_correction_bounds=[-1, 2]"], key("algo.rollout_correction_bounds", "two numbers [low, high]")),
    (["algo.kl_cov_coef=-1"], key("algo.kl_cov_coef", "a number >= 0")),
    (["model.dtype=int8"], key("model.dtype", "float32, bfloat16 or float16")),
]


@pytest.mark.parametrize("overrides, pattern", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_bad_setting_is_one_error_naming_the_key(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        resolve_config({}, overrides)


def test_non_finite_numbers_from_a_recipe_file_are_rejected(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo:\n  clip_high: .inf\n")
    expected = f"{recipe}: config key 'algo.clip_high': expected a finite number"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        resolve_config(load_recipe(recipe), [], where=str(recipe))


STAGED = "stages=[{name: run1, steps: 2}, {name: run2, steps: 2, overrides: {%s}}]"


@pytest.mark.parametrize("override, pattern", [
    ("train.lr: 0", r"stages\[1\] \(run2\): " + key("train.lr", "a learning rate in (0, 1]")),
    ("train.lr: .nan", r"stages\[1\] \(run2\): " + key("train.lr", "a finite number")),
    ("rollout.n: 1", r"stages\[1\] \(run2\): " + key("rollout.n", "an integer >= 2")),
    ("train.prompts_per_step: 6", r"stages\[1\] \(run2\): " + key("train.mini_batch_prompts", "a divisor")),
    ("reward.timeout_s: 0", r"stages\[1\] \(run2\): " + key("reward.timeout_s", "a number of seconds > 0")),
    ("checkpoint.keep_last: 0", r"stages\[1\] \(run2\): " + key("checkpoint.keep_last", "an integer >= 1")),
    ("validation.top_p: 2", r"stages\[1\] \(run2\): " + key("validation.top_p", "a number in (0, 1]")),
])
def test_each_stage_config_is_checked_too(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        resolve_config({}, ["train.prompts_per_step=4", "train.mini_batch_prompts=4", STAGED % override])


def test_a_stage_may_not_turn_on_the_kl_penalty_the_run_has_no_reference_for():
    with pytest.raises(ConfigError, match=r"stages\[1\]\.overrides\.algo\.kl_beta.*made once per run"):
        resolve_config({}, ["algo.kl_beta=0", STAGED % "algo.kl_beta: 0.1"])
    resolve_config({}, [STAGED % "algo.kl_beta: 0"])  # turning it off in a stage is fine


@pytest.mark.parametrize("stages, pattern", [
    ("[{steps: true}]", r"stages\[0\]\.steps': expected a positive integer"),
    ("[{steps: 1, reset: maybe}]", r"stages\[0\]\.reset': expected true or false"),
    ("[{steps: 1, overrides: [train.lr]}]", r"stages\[0\]\.overrides': expected a mapping"),
])
def test_stage_entries_are_checked(stages, pattern):
    with pytest.raises(ConfigError, match=pattern):
        resolve_config({}, [f"stages={stages}"])


def test_train_steps_is_not_checked_when_stages_give_the_steps():
    cfg = resolve_config({}, ["train.steps=0", "stages=[{steps: 3}]"])
    assert [s.steps for s in stage_configs(cfg)] == [3]


GOOD = [
    # what tests and recipes set: edges of every range
    ["rollout.n=2", "train.lr=1", "train.lr=1e-3"],
    ["train.prompts_per_step=1", "train.mini_batch_prompts=1", "train.micro_batch_size=1", "train.steps=1"],
    ["train.warmup_steps=0", "train.grad_clip=0", "train.weight_decay=0", "train.betas=[0, 0.999]"],
    ["algo.clip_low=0", "algo.clip_high=0", "algo.kl_beta=0", "algo.max_gen_batches=1"],
    ["reward.workers=0", "reward.timeout_s=0.5", "reward.truncated_reward=0"],
    ["reset.every=0", "reset.val_patience=0", "reset.kl_threshold=0"],
    ["validation.every=0", "validation.n=1", "validation.temperature=0", "validation.top_p=1",
     "validation.max_new_tokens=1"],
    ["checkpoint.every=0", "checkpoint.keep_last=1", "log.rollouts_every=0", "log.rollouts_per_step=0"],
    ["data.val_size=0", "data.val_fraction=0", "data.weights={math: 1, code: 0}"],
    ["rollout.batch_size=1", "rollout.max_new_tokens=1", "rollout.top_p=1", "model.device=cuda:1"],
    ["rollout.batch_size=null", "validation.max_new_tokens=null", "model.device=cpu"],
]


@pytest.mark.parametrize("overrides", GOOD, ids=[" ".join(o) for o in GOOD])
def test_settings_at_the_edges_of_their_ranges_are_accepted(overrides):
    resolve_config({}, overrides)


@pytest.mark.parametrize("name", ["demo.yaml", "prorl_1p5b.yaml", "prorl_v2.yaml"])
def test_every_shipped_recipe_resolves(name):
    recipe = load_recipe(resources.files("prorl") / "recipes" / name)
    recipe.pop("demo", None)  # the demo's own section, read by prorl.demo
    cfg = resolve_config(recipe, ["model.path=/models/some-model"], where=name)
    assert all(stage.cfg.rollout.n >= 2 for stage in stage_configs(cfg))


def test_the_quick_demo_recipe_resolves():
    from prorl.demo import quick_recipe

    recipe = load_recipe(resources.files("prorl") / "recipes" / "demo.yaml")
    recipe.pop("demo")
    resolve_config(quick_recipe(recipe), ["model.path=/models/some-model"])


@pytest.mark.parametrize("argv, named", [
    (["train.lr=0"], "train.lr"),
    (["train.mini_batch_prompts=0"], "train.mini_batch_prompts"),
    (["reward.timeout_s=0"], "reward.timeout_s"),
    (["checkpoint.keep_last=0"], "checkpoint.keep_last"),
    (["rollout.n=1"], "rollout.n"),
    (["algo.kl_beta=.nan"], "algo.kl_beta"),
    (["stages=[{name: a, steps: 1}, {name: b, steps: 1, overrides: {train.lr: 5}}]"],
     "stages[1] (b): config key 'train.lr'"),
])
def test_prorl_train_prints_one_line_and_writes_nothing(tmp_path, capsys, argv, named):
    run_dir = tmp_path / "run"
    code = main(["train", *argv, f"run_dir={run_dir}", f"model.path={tmp_path / 'no-model'}", "data.builtin=add"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prorl train: error: ") and named in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not run_dir.exists() and sorted(tmp_path.iterdir()) == []


def test_prorl_train_with_a_recipe_file_names_the_file_and_the_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: .nan\n")
    code = main(["train", str(recipe), f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and str(recipe) in err and "'train.lr': expected a finite number" in err
    assert not (tmp_path / "run").exists()


def test_one_file_is_a_one_element_list():
    cfg = resolve_config({"data": {"val_files": "v.jsonl"}}, ["data.train_files=a.jsonl"])
    assert cfg.data.train_files == ["a.jsonl"] and cfg.data.val_files == ["v.jsonl"]
    assert resolve_config({}, ["data.train_files=[a.jsonl, b.jsonl]"]).data.train_files == ["a.jsonl", "b.jsonl"]

"""Bad input reaches the user as one clear line and a non-zero exit, never a traceback."""

import dataclasses
import json

import pytest

from prorl.cli import main
from prorl.config import Config


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_unknown_config_key(tmp_path, capsys):
    code, out = run_cli(["train", "algo.clip_hgh=0.3"], capsys)
    assert code == 2
    assert "unknown config key 'algo.clip_hgh'" in out and "algo.clip_high" in out
    assert "Traceback" not in out


def test_value_of_the_wrong_type(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rollout:\n  n: sixteen\n")
    code, out = run_cli(["train", str(recipe)], capsys)
    assert code == 2
    assert f"{recipe}" in out and "'rollout.n': expected int, got 'sixteen'" in out


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rollout:\n  n: 4\n  temperature: [1.2\n")
    code, out = run_cli(["train", str(recipe)], capsys)
    assert code == 2 and f"{recipe}:" in out and "invalid YAML" in out


def test_missing_model_path(tmp_path, capsys):
    code, out = run_cli(["train", f"model.path={tmp_path / 'nope'}", f"run_dir={tmp_path / 'run'}",
                         "data.builtin=add"], capsys)
    assert code == 2 and "no such directory" in out and str(tmp_path / "nope") in out


def test_malformed_problem_line(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    good = {"id": "a", "domain": "math", "prompt": "1+1=", "answer": "2"}
    data.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "domain": "maths"}) + "\n")
    model = tmp_path / "model"
    from prorl.tiny import build_char_tokenizer, build_tiny_model

    build_tiny_model(model, build_char_tokenizer(model), size="1m")
    code, out = run_cli(["train", f"model.path={model}", f"run_dir={tmp_path / 'run'}",
                         f"data.train_files=[{data}]", "log.progress=false", "reward.workers=0"], capsys)
    assert code == 2
    assert f"{data}:2" in out and "domain" in out and "Traceback" not in out


def test_train_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out

    def keys(cls, prefix=""):
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
                yield from keys(f.default_factory, prefix + f.name + ".")
            else:
                yield prefix + f.name

    missing = [k for k in keys(Config) if f"  {k} = " not in out]
    assert not missing


def test_resume_needs_a_run_directory(tmp_path, capsys):
    code, out = run_cli(["train", "--resume", str(tmp_path)], capsys)
    assert code == 2 and "no config.yaml" in out


def test_variants_need_the_study(tmp_path, capsys):
    code, out = run_cli(["demo", "--variants", "--out", str(tmp_path / "v")], capsys)
    assert code == 2 and "--variants goes with --study" in out and "Traceback" not in out
    assert not (tmp_path / "v").exists()

"""A broken model directory is one UserError naming the path and what is wrong, not a library traceback."""

import json
import re
import shutil

import pytest
import torch

from prorl.errors import UserError
from prorl.policy import load_policy
from prorl.tiny import build_char_tokenizer, build_tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / "good", build_char_tokenizer(root / "good"), size="1m", seed=0)
    build_tiny_model(root / "bigger", build_char_tokenizer(root / "bigger"), size="2m", seed=0)
    return root


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


def truncate(file, keep):
    data = file.read_bytes()
    file.write_bytes(data[: keep(len(data))])


def as_bin(folder, cut=False):
    """The weights as pytorch_model.bin instead of safetensors (optionally cut in half)."""
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    if cut:
        truncate(folder / "pytorch_model.bin", lambda n: n // 2)


def remove_tokenizer(folder):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()


def save_empty_safetensors(folder):
    from safetensors.torch import save_file

    save_file({}, str(folder / "model.safetensors"))


def shard_index_to_missing_file(folder):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                  "lm_head.weight": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


# (case, how to break a copy of the good model, what the message must say after "model path DIR: ")
CASES = [
    ("truncated weights", lambda d, m: truncate(d / "model.safetensors", lambda n: n // 2),
     "model.safetensors is not a valid safetensors file (incomplete metadata"),
    ("weights missing their last byte", lambda d, m: truncate(d / "model.safetensors", lambda n: n - 1),
     "model.safetensors is not a valid safetensors file"),
    ("weights cut inside the header", lambda d, m: truncate(d / "model.safetensors", lambda n: 5),
     "model.safetensors is not a valid safetensors file (header too small)"),
    ("empty weights file", lambda d, m: (d / "model.safetensors").write_bytes(b""),
     "model.safetensors is not a valid safetensors file"),
    ("garbage weights", lambda d, m: (d / "model.safetensors").write_bytes(b"not a safetensors file " * 20),
     "model.safetensors is not a valid safetensors file (header too large)"),
    ("weights file is a directory",
     lambda d, m: ((d / "model.safetensors").unlink(), (d / "model.safetensors").mkdir()),
     "model.safetensors is not a file"),
    ("no weights", lambda d, m: (d / "model.safetensors").unlink(), "could not load a causal LM (.*no file named"),
    ("shard index naming a missing file", lambda d, m: shard_index_to_missing_file(d),
     "model-00002-of-00002.safetensors is missing (named by model.safetensors.index.json)"),
    ("shard index that is not JSON", lambda d, m: (d / "model.safetensors.index.json").write_text("{oops"),
     "model.safetensors.index.json is not a valid weights index"),
    ("weights without any tensor", lambda d, m: save_empty_safetensors(d),
     "the checkpoint lacks .* of the model's weights .*they would start random"),
    ("weights of another model size", lambda d, m: shutil.copy(m / "bigger" / "model.safetensors", d),
     "weight(s) do not fit config.json (model.embed_tokens.weight: (99, 192) in the file, (99, 128) by config.json"),
    ("garbage pytorch_model.bin", lambda d, m: ((d / "model.safetensors").unlink(),
                                                (d / "pytorch_model.bin").write_bytes(b"garbage" * 20)),
     "a weights file is not a valid PyTorch checkpoint"),
    ("truncated pytorch_model.bin", lambda d, m: as_bin(d, cut=True),
     "pytorch_model.bin is not a valid PyTorch checkpoint (a zip archive cut short"),
    ("no config.json", lambda d, m: (d / "config.json").unlink(),
     "no config.json (expected a Hugging Face model folder"),
    ("config.json that is not JSON", lambda d, m: (d / "config.json").write_text("{not json"),
     "config.json is not valid JSON (Expecting property name"),
    ("config.json that is a list", lambda d, m: (d / "config.json").write_text("[1, 2]"),
     "config.json is not a JSON object (got list)"),
    ("config.json without model_type", lambda d, m: edit_config(d, model_type=None),
     "config.json has no model_type"),
    ("unknown model_type", lambda d, m: edit_config(d, model_type="no-such-architecture"),
     "could not load a causal LM (.*model type `no-such-architecture`"),
    ("no tokenizer files", lambda d, m: remove_tokenizer(d), "no tokenizer files"),
    ("tokenizer.json that is not JSON", lambda d, m: (d / "tokenizer.json").write_text("{broken"),
     "could not load the tokenizer"),
    ("tokenizer_config.json that is not JSON", lambda d, m: (d / "tokenizer_config.json").write_text("{broken"),
     "could not load the tokenizer"),
    ("an empty directory", lambda d, m: [p.unlink() for p in list(d.iterdir())], "no config.json"),
]


@pytest.mark.parametrize("breakage, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_broken_model_directory_is_one_user_error(models, tmp_path, breakage, message):
    folder = tmp_path / "model"
    shutil.copytree(models / "good", folder)
    breakage(folder, models)
    with pytest.raises(UserError) as exc:
        load_policy(folder, dtype="float32")
    text = str(exc.value)
    assert text.startswith(f"model path {folder}: "), text
    assert re.search(re.escape(message).replace(re.escape(".*"), ".*"), text), text
    assert "\n" not in text


def test_a_path_that_is_a_file_or_missing_is_a_user_error(tmp_path):
    file = tmp_path / "weights.safetensors"
    file.write_bytes(b"")
    for path in (file, tmp_path / "nope"):
        with pytest.raises(UserError, match=re.escape(f"model path {path}: no such directory")):
            load_policy(path)


def test_good_directories_still_load(models, tmp_path):
    model, tok = load_policy(models / "good", dtype="float32")
    assert tok.pad_token_id is not None and model.dtype == torch.float32
    folder = tmp_path / "bin"
    shutil.copytree(models / "good", folder)
    as_bin(folder)  # a plain (uncut) pytorch_model.bin still loads
    again, _ = load_policy(folder, dtype="float32")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_an_error_of_our_own_is_not_turned_into_a_user_error(models, monkeypatch):
    # Only the library's loading errors (OSError, ValueError, safetensors errors) become UserError.
    from transformers import AutoModelForCausalLM

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", broken)
    with pytest.raises(TypeError, match="a bug"):
        load_policy(models / "good", dtype="float32")


def test_prorl_train_with_a_broken_model_prints_the_path(models, tmp_path, capsys):
    from prorl.cli import main

    folder = tmp_path / "model"
    shutil.copytree(models / "good", folder)
    truncate(folder / "model.safetensors", lambda n: n // 2)
    code = main(["train", f"model.path={folder}", f"run_dir={tmp_path / 'run'}", "data.builtin=add",
                 "reward.workers=0", "log.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"prorl train: error: model path {folder}: model.safetensors is not a valid safetensors file" in err


def test_attention_implementation_is_passed_and_a_bad_one_names_the_setting(models):
    model, _ = load_policy(models / "good", dtype="float32", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    with pytest.raises(UserError, match=r"^model.attn_implementation 'nonsense': .*not supported"):
        load_policy(models / "good", dtype="float32", attn_implementation="nonsense")

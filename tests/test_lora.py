"""LoRA through peft: adapters trained on a frozen base, the reference as a second adapter (a reset makes the KL
exactly 0), checkpoints in PEFT format (and merged on request), exact resume."""

from __future__ import annotations

import pytest
import torch

from prorl.batch import LogprobSettings, batch_logprobs
from prorl.policy import load_policy
from prorl.runlog import read_jsonl
from prorl.train import train
from tiny_run import strip_times, tiny_config

pytest.importorskip("peft")
LORA = ["model.lora_rank=4", "model.lora_targets=[q_proj, v_proj]"]


def test_lora_trains_the_adapter_only_and_a_reset_makes_the_reference_equal(warm_model, tmp_path):
    from prorl import algo
    from prorl.lora import AdapterReference, add_lora
    from test_train import build_batch

    cfg, _, batch = build_batch(warm_model, tmp_path, *LORA)
    model, _ = load_policy(warm_model, dtype="float32")
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = add_lora(model, cfg.model, with_reference=True)
    policy, reference = peft_model.get_base_model(), AdapterReference(peft_model)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".default." in n for n in trainable)
    how = LogprobSettings.of(cfg)
    with torch.no_grad():  # train the adapter a little: the policy moves away from the reference
        for n, p in policy.named_parameters():
            if n in trainable:
                p.add_(torch.randn_like(p) * 0.05)
    kl = algo.kl_penalty(batch_logprobs(policy, batch, how), reference.logprobs(batch, how))
    assert float((kl * batch.response_mask).sum()) > 0
    reference.reset()
    policy_lp, ref_lp = batch_logprobs(policy, batch, how), reference.logprobs(batch, how)
    assert torch.equal(policy_lp, ref_lp)  # the KL is exactly 0 after a reset
    # the base weights never moved, and no second copy of them exists: the reference shares the base tensors
    for n, p in policy.named_parameters():
        key = n.replace("base_layer.", "")
        if "lora_" not in n:
            assert torch.equal(p, base[key]), n


def test_lora_run_checkpoints_peft_adapters_resumes_exactly_and_exports_merged(warm_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    args = [*LORA, "reset.every=3", "model.lora_export_merged=true", "train.lr=1e-3"]
    whole = tiny_config(warm_model, tmp_path / "whole", *args)
    train(whole)
    ckpt = tmp_path / "whole" / "checkpoints" / "step_000004"
    assert (ckpt / "adapter" / "adapter_config.json").is_file() and (ckpt / "adapter" / "reference").is_dir()
    events = read_jsonl(tmp_path / "whole" / "events.jsonl")
    assert [e["step"] for e in events if e["event"] == "reset"] == [3]
    # resume: 2 steps, then 2 more, equal to the 4 in one go (the reset at 3 included)
    first = tiny_config(warm_model, tmp_path / "parts", *args, "train.steps=2")
    train(first)
    train(tiny_config(warm_model, tmp_path / "parts", *args), resume=True)
    rows = lambda d: [r for r in strip_times(read_jsonl(tmp_path / d / "metrics.jsonl"))]  # noqa: E731
    assert rows("parts") == rows("whole")
    from safetensors.torch import load_file

    for sub in ("adapter", "adapter/reference"):
        a = load_file(ckpt / sub / "adapter_model.safetensors")
        b = load_file(tmp_path / "parts" / "checkpoints" / "step_000004" / sub / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the adapter loads with peft on the base model, the merged export with plain transformers: the same model
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    base, _ = load_policy(warm_model, dtype="float32")
    adapted = PeftModel.from_pretrained(base, str(ckpt / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(ckpt / "policy").eval()
    plain, _ = load_policy(warm_model, dtype="float32")
    with torch.no_grad():
        a, m, p = adapted(input_ids=ids).logits, merged(input_ids=ids).logits, plain(input_ids=ids).logits
    torch.testing.assert_close(a, m, rtol=1e-4, atol=1e-5)
    assert (a - p).abs().max() > 1e-4  # training changed the adapter: not the base model


def test_lora_with_a_bfloat16_generation_copy(warm_model, tmp_path):
    """The generation copy in another dtype gets the adapted weights pushed like any model's."""
    cfg = tiny_config(warm_model, tmp_path / "run", *LORA, "rollout.dtype=bfloat16", "train.steps=2",
                      "validation.every=0", "train.lr=1e-3")
    last = train(cfg)
    assert last["actor/updates"] >= 1 and abs(last["rollout/logprob_diff"]) < 0.1

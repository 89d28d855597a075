"""A tiny Qwen2-architecture model and a character-level tokenizer, created locally.

The embedded demo and the tests need a causal LM without any download. Both pieces are
written to a directory and loaded back through ``from_pretrained``, exactly the path a
user's model takes, so nothing downstream knows the model is tiny.

The tokenizer is character-level over printable ASCII: short arithmetic answers cost few
tokens and the vocabulary stays small enough for a 1-2M parameter model.
"""

from __future__ import annotations

import string
from pathlib import Path

PAD, EOS, BOS = "<pad>", "<eos>", "<bos>"
CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"

# Sizes chosen on a 2-core CPU: "2m" learns 1-digit arithmetic in minutes; "20m" is for benchmarks.
SIZES = {
    "1m": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
    "2m": dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2),
    "20m": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4),
    # Qwen2.5-0.5B's layer shapes with a character vocabulary (about 360M parameters): GPU benchmarks.
    "360m": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2),
}


def build_char_tokenizer(save_dir: str | Path):
    """Create a character-level fast tokenizer, save it to ``save_dir`` and load it back.

    >>> import tempfile
    >>> tok = build_char_tokenizer(tempfile.mkdtemp())
    >>> ids = tok("1+2=3")["input_ids"]
    >>> len(ids), tok.decode(ids)
    (5, '1+2=3')
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, BOS, *CHARS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    # Every character is its own pre-token; the decoder concatenates with no spaces.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, eos_token=EOS, bos_token=BOS)
    tok.padding_side = "left"
    save_dir = Path(save_dir)
    tok.save_pretrained(save_dir)
    return AutoTokenizer.from_pretrained(save_dir)


def build_tiny_model(save_dir: str | Path, tokenizer, *, size: str = "2m", seed: int = 0, max_positions: int = 512):
    """Create a randomly initialised Qwen2 causal LM sized for ``tokenizer``, save it and load it back.

    Returns the model loaded with ``AutoModelForCausalLM.from_pretrained`` (float32 weights on disk).
    """
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if size not in SIZES:
        raise ValueError(f"unknown tiny model size {size!r}; expected one of {sorted(SIZES)}")
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **SIZES[size],
    )
    model = AutoModelForCausalLM.from_config(config)
    save_dir = Path(save_dir)
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    return AutoModelForCausalLM.from_pretrained(save_dir)

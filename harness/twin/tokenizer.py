"""A small byte-level BPE tokenizer for the twin models, trained on the project's own text."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from harness.twin.chat_format import (
    BOS_TOKEN,
    CHAT_TEMPLATE,
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
)

# Far above any prompt the twin serves; tokenizers warn about (and some clients truncate at)
# prompts longer than this.
MODEL_MAX_LENGTH = 40960


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE whose first ids are SPECIAL_TOKENS, in that order.

    Byte-level means any text encodes without an unknown token, so the served model accepts the
    load generator's arbitrary prompts. Prefix spaces are not added, because vLLM tokenizes the
    rendered chat template as is.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # A list, not a generator: the trainer then sees the same sequence whatever it batches.
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def token_id(tok: Tokenizer, token: str) -> int:
    """The id of a token that must exist as a single vocabulary entry."""
    tid = tok.token_to_id(token)
    if tid is None:
        raise KeyError(f"token {token!r} is not in the vocabulary")
    return tid


def tokenizer_config(tok: Tokenizer) -> dict[str, object]:
    """tokenizer_config.json for transformers' PreTrainedTokenizerFast, which vLLM loads."""
    added = {
        str(token_id(tok, t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "chat_template": CHAT_TEMPLATE,
    }


def save_tokenizer(tok: Tokenizer, out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(tok), indent=2) + "\n", encoding="utf-8"
    )
    special_map = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps(special_map, indent=2) + "\n", encoding="utf-8"
    )

"""Tiny models built offline, once per test session: a BLIP-2 on an OPT-like LM with a
byte-level BPE tokenizer, a LLaMA-like destination with a SentencePiece-style tokenizer,
a larger OPT-like destination, and a small image-caption set from the synthetic world."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from vpgtrans import tiny, world


@dataclass
class TinyZoo:
    src: Path  # BLIP-2 folder (OPT-like LM)
    dst_llama: Path  # LLaMA-like causal LM folder
    dst_opt: Path  # bigger OPT-like causal LM folder
    data: Path  # captions.jsonl
    root: Path


EXPRESSIVE_INIT = 0.3  # a random LM with the usual 0.02 init has near-uniform logits whatever its input


def _save_lm(config, tokenizer, folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    config.initializer_range = EXPRESSIVE_INIT
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> TinyZoo:
    root = tmp_path_factory.mktemp("zoo")
    corpus = world.pretraining_texts(400, seed=0)
    byte_tok = tiny.byte_level_bpe_tokenizer(corpus, vocab_size=400)
    sp_tok = tiny.sentencepiece_bpe_tokenizer(corpus, vocab_size=150)

    src_config = tiny.opt_config(byte_tok, tiny.LMSize(hidden_size=32, num_layers=1))
    src_config.init_std = EXPRESSIVE_INIT
    src_lm = AutoModelForCausalLM.from_config(src_config)
    size = tiny.VPGSize(vision_hidden=32, qformer_hidden=32, vision_layers=1, qformer_layers=1, num_query_tokens=4)
    blip2, processor = tiny.blip2_with_language_model(src_lm, byte_tok, size, seed=0)
    blip2.save_pretrained(root / "src")
    processor.save_pretrained(root / "src")

    _save_lm(tiny.llama_config(sp_tok, tiny.LMSize(hidden_size=48, num_layers=1)), sp_tok, root / "dst_llama", 1)
    opt_tok = tiny.byte_level_bpe_tokenizer(corpus, vocab_size=400)
    _save_lm(tiny.opt_config(opt_tok, tiny.LMSize(hidden_size=48, num_layers=2)), opt_tok, root / "dst_opt", 2)

    data = world.write_dataset(root / "data", n=48, seed=0)
    return TinyZoo(src=root / "src", dst_llama=root / "dst_llama", dst_opt=root / "dst_opt", data=data, root=root)

"""Every causal LM transformers builds is a destination: tiny random models of many architectures, each
transferred, exported and generating with plain transformers. Nothing in vpgtrans names them."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    Blip2ForConditionalGeneration,
    Blip2Processor,
)

from vpgtrans.cli.main import main
from vpgtrans.costs import llm_params
from vpgtrans.io.images import open_rgb

SMALL = {"num_hidden_layers": 1, "num_attention_heads": 4, "max_position_embeddings": 128}
# model_type -> (tokenizer family, config fields beyond the vocabulary and special ids)
ARCHITECTURES = {
    "opt": ("byte", {"hidden_size": 32, "ffn_dim": 64, "word_embed_proj_dim": 32, **SMALL}),
    "llama": ("sentencepiece", {"hidden_size": 32, "intermediate_size": 64, **SMALL}),
    "mistral": ("sentencepiece", {"hidden_size": 32, "intermediate_size": 64, "num_key_value_heads": 2, **SMALL}),
    "qwen2": ("byte", {"hidden_size": 32, "intermediate_size": 64, "num_key_value_heads": 2, **SMALL}),
    "qwen3": ("byte", {"hidden_size": 32, "intermediate_size": 64, "num_key_value_heads": 2, "head_dim": 8, **SMALL}),
    "gemma": (
        "sentencepiece",
        {"hidden_size": 32, "intermediate_size": 64, "num_key_value_heads": 1, "head_dim": 8, **SMALL},
    ),  # fmt: skip
    "phi": ("byte", {"hidden_size": 32, "intermediate_size": 64, **SMALL}),
    "gpt2": ("byte", {"n_embd": 32, "n_layer": 1, "n_head": 4, "n_positions": 128}),
    "falcon": ("byte", {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4}),
}


@pytest.fixture(scope="module")
def destinations(zoo, tmp_path_factory):
    """A tiny random LM folder per architecture, with an OPT-style or a LLaMA-style tokenizer."""
    root = tmp_path_factory.mktemp("any_llm")
    tokenizers = {"byte": AutoTokenizer.from_pretrained(zoo.dst_opt), "sentencepiece": AutoTokenizer.from_pretrained(
        zoo.dst_llama)}  # fmt: skip
    folders = {}
    for kind, (family, fields) in ARCHITECTURES.items():
        tokenizer = tokenizers[family]
        ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
        config = AutoConfig.for_model(kind, vocab_size=len(tokenizer), **ids, **fields)
        torch.manual_seed(0)
        folder = root / kind
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[kind] = folder
    return folders


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_transfer_export_and_plain_generate(kind, destinations, zoo, tmp_path):
    out = tmp_path / "run"
    args = ["--src", str(zoo.src), "--dst", str(destinations[kind]), "--data", str(zoo.data), "--out", str(out)]
    assert main(["transfer", *args, "--batch-size", "8", "--stage1-steps", "1", "--stage2-steps", "1"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done" and record["stages"]["finetune"]["cost"]["flops"]["llm"] > 0
    model = Blip2ForConditionalGeneration.from_pretrained(out / "model").eval()
    processor = Blip2Processor.from_pretrained(out / "model")
    assert model.config.text_config.model_type == kind
    inputs = processor(images=open_rgb(zoo.data.parent / "images" / "000000.png"), return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4, num_beams=1)
    assert output.shape[1] > model.config.num_query_tokens  # the image tokens, BOS and new tokens


def test_parameter_counts_come_from_the_built_model(destinations):
    for kind, folder in destinations.items():
        model = AutoModelForCausalLM.from_pretrained(folder)
        counted = llm_params(json.loads((folder / "config.json").read_text()))
        assert counted.total == sum(p.numel() for p in model.parameters()), kind
        assert counted.encoder == 0 and counted.decoder > 0

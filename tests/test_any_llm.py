"""Every causal LM transformers builds is a destination: tiny random models of many architectures, each
transferred, exported and generating with plain transformers. Nothing in vpgtrans names them."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
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


@pytest.fixture(scope="module")
def t5(zoo, tmp_path_factory):
    """A tiny Flan-T5-like destination (its own unigram tokenizer), and a BLIP-2 on it as a source."""
    from vpgtrans import world
    from vpgtrans.world import tiny

    root = tmp_path_factory.mktemp("t5")
    tokenizer = tiny.t5_tokenizer(world.pretraining_texts(400, seed=0), vocab_size=150)
    config = tiny.t5_config(tokenizer, tiny.LMSize(hidden_size=32, num_layers=1))
    torch.manual_seed(0)
    lm = AutoModelForSeq2SeqLM.from_config(config)
    lm.save_pretrained(root / "dst")
    tokenizer.save_pretrained(root / "dst")
    size = tiny.VPGSize(vision_hidden=32, qformer_hidden=32, vision_layers=1, qformer_layers=1, num_query_tokens=4)
    blip2, processor = tiny.blip2_with_language_model(lm, tokenizer, size, seed=0)
    blip2.save_pretrained(root / "src")
    processor.save_pretrained(root / "src")
    return root


def _transfer(src, dst, data, out) -> dict:
    args = ["--src", str(src), "--dst", str(dst), "--data", str(data), "--out", str(out)]
    assert main(["transfer", *args, "--batch-size", "8", "--stage1-steps", "1", "--stage2-steps", "2"]) == 0
    return json.loads((out / "run.json").read_text())


def test_t5_destination_reads_the_soft_prompt_in_its_encoder(t5, zoo, tmp_path):
    record = _transfer(zoo.src, t5 / "dst", zoo.data, tmp_path / "run")
    flops = record["stages"]["finetune"]["cost"]["flops"]
    assert flops["llm"] > 0 and record["status"] == "done"
    model = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "run" / "model").eval()
    assert not model.config.use_decoder_only_language_model
    assert model.language_projection.out_features == 32  # d_model: the encoder's input width
    processor = Blip2Processor.from_pretrained(tmp_path / "run" / "model")
    image = open_rgb(zoo.data.parent / "images" / "000000.png")
    prompt = [model.config.image_token_index] * 4 + processor.tokenizer("Question: what colour? Answer:")["input_ids"]
    pixels = processor.image_processor(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():  # the decoder starts from <pad>; the output holds no prompt
        output = model.generate(pixel_values=pixels, input_ids=torch.tensor([prompt]), max_new_tokens=3)
    assert output[0, 0] == model.config.text_config.decoder_start_token_id and output.shape[1] <= 4


def test_t5_captions_are_decoder_targets(t5, zoo):
    from vpgtrans.method.graft import load_blip2
    from vpgtrans.training.data import CaptionCollator

    model, processor = load_blip2(str(t5 / "src"))
    collate = CaptionCollator(processor.tokenizer, processor.image_processor, 4, model.config.image_token_index,
                              encoder_decoder=True)  # fmt: skip
    image = open_rgb(zoo.data.parent / "images" / "000000.png")
    batch = collate([(image, "a red square"), (image, "a large blue circle on the left")])
    eos = processor.tokenizer.eos_token_id
    assert batch["input_ids"][0].tolist() == [model.config.image_token_index] * 4 + [eos]  # encoder: image + </s>
    assert batch["labels"][0].tolist()[: len(processor.tokenizer("a red square")["input_ids"])] == processor.tokenizer(
        "a red square"
    )["input_ids"]  # fmt: skip
    assert float(model(**batch).loss) > 0


def test_t5_source_transfers_to_a_causal_lm(t5, zoo, tmp_path):
    """The paper's FlanT5 -> OPT direction: the converter reads T5's shared input embeddings."""
    record = _transfer(t5 / "src", zoo.dst_opt, zoo.data, tmp_path / "run")
    assert record["converter"]["aligned_pairs"] > 20 and record["status"] == "done"
    assert "shared.weight" in record["converter"]["src_table"]


def test_chat_on_a_t5_is_refused_before_out_exists(t5, zoo, tmp_path, capsys):
    args = ["--src", str(zoo.src), "--dst", str(t5 / "dst"), "--data", str(zoo.data), "--chat", str(zoo.data)]
    assert main(["transfer", *args, "--out", str(tmp_path / "run")]) == 2
    assert "instruction tuning needs a decoder-only LLM" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_flan_t5_presets_run_in_bf16_never_fp16():
    """The paper's FlanT5 fact lives in its preset: bf16 by default, fp16 refused, fp32 allowed."""
    from vpgtrans.cli.commands import TRAINING_FIELDS, _recipe_config
    from vpgtrans.cli.main import build_parser
    from vpgtrans.errors import VPGTransError
    from vpgtrans.transfer_config import TransferConfig

    def precision(*flags: str) -> str:
        args = build_parser().parse_args(["transfer", "--recipe", "opt-2.7b-to-flan-t5-xl", "--data", "d", *flags])
        return _recipe_config(TransferConfig, args, TRAINING_FIELDS).training.precision

    assert precision() == "bf16" and precision("--precision", "fp32") == "fp32"
    with pytest.raises(VPGTransError, match="runs in bf16 or fp32 .* T5 overflows in fp16"):
        precision("--precision", "fp16")

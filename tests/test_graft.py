"""Graft: key accounting, the <image> row, fused projector, export loads in plain transformers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from vpgtrans.errors import VPGTransError
from vpgtrans.method.converter import fit_converter
from vpgtrans.method.graft import load_blip2, load_language_model
from vpgtrans.pipeline import initialise, save_model


def test_graft_inherits_vpg_and_llm_and_adds_only_the_projection(zoo):
    source, _ = load_blip2(str(zoo.src))
    lm, _ = load_language_model(str(zoo.dst_llama))
    converter = fit_converter(str(zoo.src), str(zoo.dst_llama))
    model, processor, report = initialise(str(zoo.src), str(zoo.dst_llama), converter)
    assert report.new_keys == ["language_projection.bias", "language_projection.weight"]
    assert report.projector_init == "fused"
    # LLaMA-style vocabularies have no spare row: <image> gets one
    assert report.embedding_rows_after == report.embedding_rows_before + 1
    assert (
        processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_index == report.image_token_id
    )
    for key, value in source.state_dict().items():
        if key.startswith(("vision_model.", "qformer.", "query_tokens")):
            assert torch.equal(model.state_dict()[key], value), key
    lm_state = lm.state_dict()
    for key, value in model.language_model.state_dict().items():
        if "embed_tokens" in key or "lm_head" in key:
            assert torch.equal(value[: report.embedding_rows_before], lm_state[key]), key
        else:
            assert torch.equal(value, lm_state[key]), key
    assert model.language_projection.weight.shape == (lm.config.hidden_size, source.config.qformer_config.hidden_size)
    queries = torch.randn(3, source.config.qformer_config.hidden_size)
    expected = converter(source.language_projection(queries))
    assert torch.allclose(model.language_projection(queries), expected, atol=1e-5)


def test_random_projection_without_converter(zoo):
    model, _, report = initialise(str(zoo.src), str(zoo.dst_opt), None)
    assert report.projector_init == "random"
    assert report.embedding_rows_after >= report.embedding_rows_before


def test_wrong_model_kinds_are_named(zoo):
    with pytest.raises(VPGTransError, match="expected 'blip-2'"):
        load_blip2(str(zoo.dst_llama))
    with pytest.raises(VPGTransError, match="not a generative language model"):
        load_language_model(str(zoo.src))
    with pytest.raises(VPGTransError, match="no config.json"):
        load_blip2(str(zoo.root / "data"))


def test_export_loads_and_generates_with_transformers_alone(zoo, tmp_path):
    model, processor, _ = initialise(str(zoo.src), str(zoo.dst_llama), None)
    save_model(model, processor, tmp_path / "model")
    image = zoo.data.parent / "images" / "000000.png"
    script = textwrap.dedent(f"""
        import sys
        from PIL import Image
        from transformers import Blip2ForConditionalGeneration, Blip2Processor
        model = Blip2ForConditionalGeneration.from_pretrained({str(tmp_path / "model")!r}, local_files_only=True)
        processor = Blip2Processor.from_pretrained({str(tmp_path / "model")!r}, local_files_only=True)
        inputs = processor(images=Image.open({str(image)!r}), text="", return_tensors="pt")
        n = model.config.num_query_tokens
        assert (inputs["input_ids"] == model.config.image_token_index).sum() == n, inputs["input_ids"]
        out = model.generate(**inputs, max_new_tokens=5, num_beams=1)
        assert out.shape[1] > inputs["input_ids"].shape[1], out.shape
        assert not any(m.startswith("vpgtrans") for m in sys.modules)
        print("ok", out.shape)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_never_rounds_what_trains(zoo, precision):
    """Frozen ViT and LLM in half precision; the trainable VPG parts and the fused projector exactly
    as in fp32 (no round trip through half before they become fp32 masters)."""
    converter = fit_converter(str(zoo.src), str(zoo.dst_llama))
    full, _, _ = initialise(str(zoo.src), str(zoo.dst_llama), converter, "fp32")
    half, _, _ = initialise(str(zoo.src), str(zoo.dst_llama), converter, precision)
    reference = dict(full.named_parameters())
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    for name, param in half.named_parameters():
        if name.startswith(("qformer", "query_tokens", "vision_model.post_layernorm", "language_projection")):
            assert param.dtype == torch.float32 and torch.equal(param, reference[name]), name
        else:
            assert param.dtype == dtype, name

"""Soft-prompt scale matching: after it, the fused prompt stands to the destination's word
embeddings as the source's prompt stands to the source's; nothing but the projector moves."""

from __future__ import annotations

import torch
from PIL import Image

from vpgtrans.method.converter import ConverterFitConfig, fit_converter
from vpgtrans.method.graft import load_blip2
from vpgtrans.method.prompt_scale import mean_word_norm, vpg_outputs
from vpgtrans.pipeline import initialise
from vpgtrans.training.data import load_caption_data


def test_prompt_scale_matches_the_source_ratio(zoo):
    records = load_caption_data(zoo.data).records
    converter = fit_converter(str(zoo.src), str(zoo.dst_llama), [r.caption for r in records], ConverterFitConfig())
    plain, processor, _ = initialise(str(zoo.src), str(zoo.dst_llama), converter)
    scaled, _, report = initialise(str(zoo.src), str(zoo.dst_llama), converter, prompt_scale_records=records)
    source, source_processor = load_blip2(str(zoo.src))
    source.eval(), plain.eval(), scaled.eval()

    captions = [r.caption for r in records[:64]]
    pixels = processor.image_processor([Image.open(r.image).convert("RGB") for r in records[:64]], return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        queries = vpg_outputs(scaled, pixels)
        source_ratio = float(source.language_projection(queries).norm(dim=-1).mean()) / mean_word_norm(
            source.get_input_embeddings().weight, source_processor.tokenizer, captions
        )
        scaled_ratio = float(scaled.language_projection(queries).norm(dim=-1).mean()) / mean_word_norm(
            scaled.get_input_embeddings().weight, processor.tokenizer, captions
        )
    assert abs(scaled_ratio / source_ratio - 1) < 1e-4
    assert report.prompt_scale is not None and abs(report.prompt_scale - 1) > 1e-3  # it did something
    torch.testing.assert_close(
        scaled.language_projection.weight, plain.language_projection.weight * report.prompt_scale
    )
    torch.testing.assert_close(scaled.language_projection.bias, plain.language_projection.bias * report.prompt_scale)
    for (name, a), (_, b) in zip(plain.state_dict().items(), scaled.state_dict().items()):
        if not name.startswith("language_projection"):
            assert torch.equal(a, b), name

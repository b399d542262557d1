"""Size the fused soft prompt for the destination LLM (our addition to VPGTrans).

The word converter sets the direction of the fused projector's output in the destination's
embedding space, but a converter fitted on a small or poorly related overlap also changes
its size: in the miniature world the fused soft prompt for `toy-llama`, measured against
its caption-word embeddings, is about twice as large as the source's own prompt against the
source's (the rescaling factor is 0.48; 1.06 for `toy-opt-l`).
`match_prompt_scale` rescales the new projector so that this ratio is the source's, the
scale the source LLM was trained to read. It needs a few training images and captions
(one forward pass of the frozen VPG), no training.
"""

from __future__ import annotations

import torch
from transformers import Blip2ForConditionalGeneration, Blip2Processor, PreTrainedTokenizerBase

from ..io.images import open_rgb
from ..training.data import CaptionRecord

SAMPLES = 64


def vpg_outputs(model: Blip2ForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """The Q-Former's query outputs, the projector's input: [batch, queries, d_qformer]."""
    return model.get_image_features(pixel_values=pixel_values).qformer_outputs.last_hidden_state


def mean_word_norm(embeddings: torch.Tensor, tokenizer: PreTrainedTokenizerBase, captions: list[str]) -> float:
    """Mean L2 norm of the input embeddings of the captions' tokens, counted as often as they occur."""
    ids = [i for row in tokenizer(captions, add_special_tokens=False)["input_ids"] for i in row]
    return float(embeddings[torch.tensor(ids)].float().norm(dim=-1).mean())


@torch.no_grad()
def match_prompt_scale(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    source: Blip2ForConditionalGeneration,
    source_tokenizer: PreTrainedTokenizerBase,
    records: list[CaptionRecord],
) -> float:
    """Scale `model.language_projection` in place (weight and bias) so that its soft prompt's
    norm relative to the destination's word embeddings equals the source's; returns the factor."""
    records = records[:SAMPLES]
    images = [open_rgb(r.image, r.source) for r in records]
    pixel_values = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    pixel_values = pixel_values.to(model.vision_model.embeddings.patch_embedding.weight)
    queries = vpg_outputs(model, pixel_values)
    captions = [r.caption for r in records]
    source_ratio = float(
        source.language_projection(queries.to(source.language_projection.weight)).float().norm(dim=-1).mean()
    ) / mean_word_norm(source.get_input_embeddings().weight, source_tokenizer, captions)
    projection = model.language_projection
    target_ratio = float(projection(queries.to(projection.weight)).float().norm(dim=-1).mean()) / mean_word_norm(
        model.get_input_embeddings().weight, processor.tokenizer, captions
    )
    scale = source_ratio / target_ratio
    projection.weight.mul_(scale)
    projection.bias.mul_(scale)
    return scale

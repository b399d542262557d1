"""Text generation from images with a BLIP-2 folder, prompt and image tokens stripped."""

from __future__ import annotations

import torch
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from ..io.images import to_rgb
from ..training.data import check_image_tokens
from .config import GenerationSettings


def build_prompt_batch(
    processor: Blip2Processor, num_query_tokens: int, image_token_id: int, prompts: list[str]
) -> dict[str, torch.Tensor]:
    """[pad..., <image> x n, BOS, prompt]: left-padded so generation continues every row at its end."""
    tokenizer = processor.tokenizer
    rows = [[image_token_id] * num_query_tokens + tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        input_ids[i, length - len(row) :] = torch.tensor(row)
        attention[i, length - len(row) :] = 1
    check_image_tokens(input_ids, image_token_id, num_query_tokens)
    return {"input_ids": input_ids, "attention_mask": attention}


@torch.no_grad()
def generate(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    images: list[Image.Image],
    prompts: list[str] | None = None,
    settings: GenerationSettings = GenerationSettings(),
) -> list[str]:
    """One text per image: a caption (no prompt) or the continuation of each prompt."""
    prompts = prompts if prompts is not None else [""] * len(images)
    batch = build_prompt_batch(processor, model.config.num_query_tokens, model.config.image_token_index, prompts)
    device = next(model.language_model.parameters()).device
    pixels = processor.image_processor([to_rgb(im) for im in images], return_tensors="pt")["pixel_values"]
    pixels = pixels.to(device, model.vision_model.embeddings.patch_embedding.weight.dtype)
    output = model.generate(
        pixel_values=pixels,
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        num_beams=settings.num_beams,
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens,
        do_sample=settings.do_sample,
        temperature=settings.temperature if settings.do_sample else None,
        top_p=settings.top_p if settings.do_sample else None,
    )
    if model.config.use_decoder_only_language_model:  # the output repeats the prompt; encoder-decoders' does not
        output = output[:, batch["input_ids"].shape[1] :]
    texts = processor.tokenizer.batch_decode(output, skip_special_tokens=True)
    if settings.stop_at_newline:  # any line break ends the text: \r, \x0b, \x1c, \u2028 as well as \n
        texts = [first_line(t) for t in texts]
    return [t.strip() for t in texts]


def first_line(text: str) -> str:
    """The text up to its first line break of any kind (str.splitlines' definition)."""
    lines = text.splitlines()
    return lines[0] if lines else ""

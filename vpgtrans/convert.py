"""`vpgtrans convert`: LAVIS / VPGTrans checkpoints to transformers folders and back.

A LAVIS model is three files: the stage-2 checkpoint (Q-Former, queries, `ln_vision`, projector),
the EVA ViT and the LLM. `load_lavis` assembles them into a `Blip2ForConditionalGeneration` with its
processor (what `vpgtrans` and transformers use), `write_lavis` splits a model folder back into the
checkpoint and ViT files LAVIS' loaders read. The key mapping lives in `io/lavis.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

from .chat.template import attach_chat_template
from .convert_config import PREFIXES, LavisSource
from .errors import VPGTransError
from .io.atomic import atomic_path
from .io.lavis import hf_to_lavis, lavis_to_hf, read_pth, vpg_config_from_shapes
from .method.graft import add_image_token, caption_generation_config, load_blip2, load_language_model
from .world.tiny import image_processor

# What a LAVIS ViT file may hold that BLIP-2 does not use: the classifier and its norms.
VIT_EXTRAS = (r"norm\..+", r"fc_norm\..+", r"head\..+")


def is_lavis_file(ref: str) -> bool:
    return ref.endswith((".pth", ".pt"))


def _vit_state(source: LavisSource) -> dict[str, torch.Tensor]:
    """The ViT file's tensors under LAVIS' `visual_encoder.` prefix, unused extras left out."""
    if source.vit is None:
        return {}
    state = read_pth(source.vit, source.trust_pickle)
    kept = {}
    for key, tensor in state.items():
        block = re.match(r"blocks\.(\d+)\.", key)
        if any(re.fullmatch(p, key) for p in VIT_EXTRAS):
            continue
        if block and int(block.group(1)) >= source.vit_layers:
            continue
        kept[f"visual_encoder.{key}"] = tensor
    return kept


def load_lavis(
    source: LavisSource, dtype: torch.dtype = torch.float32
) -> tuple[Blip2ForConditionalGeneration, Blip2Processor]:
    """The LAVIS model as transformers' BLIP-2 with its processor; every tensor accounted for."""
    where = source.checkpoint
    lavis = {**_vit_state(source), **read_pth(source.checkpoint, source.trust_pickle)}
    conversion = lavis_to_hf(lavis, where)
    vpg = {k: v.float() for k, v in conversion.state.items() if not k.startswith("language_model.")}
    shapes = vpg_config_from_shapes(vpg, source.vit_heads, source.qformer_heads, where)
    lm, tokenizer = load_language_model(source.llm, dtype)
    lm_state = {k.removeprefix("language_model."): v for k, v in conversion.state.items() if k not in vpg}
    if lm_state:  # a checkpoint that saved its LLM too: its weights, not the LLM folder's
        _load_strict(lm, lm_state, f"{where} (its language model)")
    add_image_token(lm, tokenizer)
    config = Blip2Config(
        vision_config=shapes["vision_config"],
        qformer_config=shapes["qformer_config"],
        text_config=lm.config.to_dict(),
        num_query_tokens=shapes["num_query_tokens"],
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    model.language_model = lm
    _load_strict(model, vpg, where, skip="language_model.")
    model.generation_config = caption_generation_config(tokenizer)
    processor = Blip2Processor(
        image_processor=image_processor(config.vision_config.image_size),
        tokenizer=tokenizer,
        num_query_tokens=config.num_query_tokens,
    )
    attach_chat_template(processor, config.num_query_tokens)
    return model.eval(), processor


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str, skip: str = "") -> None:
    """Load `state` into `module` (keys under `skip` are the module's own); a missing, unexpected or
    misshapen key is an error naming it."""
    try:
        result = module.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise VPGTransError(f"{where}: tensors do not fit the model: {str(exc).splitlines()[-1].strip()}") from exc
    missing = [k for k in result.missing_keys if not (skip and k.startswith(skip))]
    if missing or result.unexpected_keys:
        raise VPGTransError(
            f"{where}: missing keys {sorted(missing)[:6]}, unexpected keys {result.unexpected_keys[:6]}"
        )
    if any(p.is_meta for p in module.parameters()):
        raise VPGTransError(f"{where}: parameters left without weights")


def default_prefix(model: Blip2ForConditionalGeneration) -> str:
    """LAVIS' module prefix for the LLM family: opt, llama (Vicuna too), t5, else InstructBLIP's llm."""
    kind = model.config.text_config.model_type
    return {"opt": "opt", "llama": "llama", "t5": "t5"}.get(kind, "llm")


def write_lavis(model_ref: str, out: str | Path, vit_out: str | Path | None, prefix: str | None = None) -> str:
    """The model's stage-2 checkpoint (`{"model": ...}`) at `out`, and its ViT at `vit_out`; returns the
    prefix used. The LLM is not written: LAVIS loads it from its own checkpoint."""
    model, _ = load_blip2(model_ref)
    prefix = prefix or default_prefix(model)
    if prefix not in PREFIXES:
        raise VPGTransError(f"--prefix {prefix!r} is not one of {', '.join(PREFIXES)}")
    stage2, vit = hf_to_lavis(model.state_dict(), prefix, model_ref)
    _save(out, {"model": stage2})
    if vit_out is not None:
        _save(vit_out, vit)
    return prefix


def _save(path: str | Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(data, tmp)

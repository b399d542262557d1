"""LAVIS / VPGTrans checkpoints in and out, without importing salesforce-lavis (it pins transformers < 4.27).

A LAVIS `.pth` is `{"model": state_dict, ...}` holding what trained (stage 2: `query_tokens`,
`ln_vision.*`, `Qformer.bert.*`, `<x>_proj.*` and buffers); the EVA ViT comes in a file of its own
(`eva_vit_g.pth`, keys without a prefix) and the LLM from its own checkpoint. `read_lavis` renames
every key to transformers' `Blip2ForConditionalGeneration` layout by anchored rules (a bare "proj"
would also match the ViT's `attn.proj`) and accounts for every key: each is renamed, or dropped by
the documented list, or the conversion fails naming it. `write_lavis` is the reverse.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..convert_config import PREFIXES
from ..errors import VPGTransError

_X = "(?:" + "|".join(PREFIXES) + ")"
_VIT = r"visual_encoder\.blocks\.(\d+)\."
_HF_VIT = r"vision_model.encoder.layers.\1."
RENAMES: tuple[tuple[str, str], ...] = (  # (LAVIS pattern, transformers key), first match wins
    (r"visual_encoder\.cls_token", "vision_model.embeddings.class_embedding"),
    (r"visual_encoder\.pos_embed", "vision_model.embeddings.position_embedding"),
    (r"visual_encoder\.patch_embed\.proj\.(weight|bias)", r"vision_model.embeddings.patch_embedding.\1"),
    (_VIT + r"norm1\.(weight|bias)", _HF_VIT + r"layer_norm1.\2"),
    (_VIT + r"norm2\.(weight|bias)", _HF_VIT + r"layer_norm2.\2"),
    (_VIT + r"attn\.qkv\.weight", _HF_VIT + "self_attn.qkv.weight"),
    (_VIT + r"attn\.proj\.(weight|bias)", _HF_VIT + r"self_attn.projection.\2"),
    (_VIT + r"mlp\.(fc1|fc2)\.(weight|bias)", _HF_VIT + r"mlp.\2.\3"),
    (r"ln_vision\.(weight|bias)", r"vision_model.post_layernorm.\1"),
    (r"Qformer\.bert\.embeddings\.LayerNorm\.(weight|bias)", r"qformer.layernorm.\1"),
    (
        r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(.+)",
        r"qformer.encoder.layer.\1.\2.attention.\3",
    ),  # noqa: E501
    (r"Qformer\.bert\.encoder\.(.+)", r"qformer.encoder.\1"),
    (r"query_tokens", "query_tokens"),
    (_X + r"_proj\.(weight|bias)", r"language_projection.\1"),
    (_X + r"_model\.(.+)", r"language_model.\1"),
)
# Read but not kept: buffers transformers rebuilds, and the stage-1 (representation learning) heads
# and the Q-Former's text side, which BLIP-2's generative models never use.
DROPPED: tuple[str, ...] = (
    r"Qformer\.bert\.embeddings\.position_ids",
    r".*rotary_emb\.inv_freq",
    r"Qformer\.cls\..+",
    r"Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings)\..+",
    r"Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\..+",
    r"(vision_proj|text_proj|itm_head)\..+",
    r"temp",
)
_Q_V_BIAS = re.compile(_VIT + r"attn\.(q_bias|v_bias)")


@dataclass
class Conversion:
    """A state dict in the other layout, and what was left out on purpose."""

    state: dict[str, torch.Tensor]
    dropped: list[str] = field(default_factory=list)


def read_pth(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict in a LAVIS `.pth` (`{"model": ...}`) or a plain one (a ViT file).

    Tensors only, unless `trust_pickle`: LAVIS also pickles its config and optimizer, and unpickling
    can run code, so a file holding more than tensors is refused until its source is trusted."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except FileNotFoundError as exc:
        raise VPGTransError(f"{path}: not found") from exc
    except pickle.UnpicklingError as exc:
        raise VPGTransError(
            f"{path}: holds Python objects besides tensors (LAVIS saves its config and optimizer too); "
            "pass --trust-pickle (transfer: --src-trust-pickle) if you trust where the file comes from"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise VPGTransError(f"{path}: not a PyTorch checkpoint ({exc})") from exc
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VPGTransError(f"{path}: expected {{'model': state_dict}} or a state dict of tensors")
    return state


def lavis_to_hf(lavis: dict[str, torch.Tensor], where: str) -> Conversion:
    """Every LAVIS key renamed to transformers', the ViT's q/v biases fused into its qkv bias."""
    out, dropped, unknown, biases = {}, [], [], {}
    for key, tensor in lavis.items():
        bias = _Q_V_BIAS.fullmatch(key)
        if bias:
            biases.setdefault(bias.group(1), {})[bias.group(2)] = tensor
        elif any(re.fullmatch(pattern, key) for pattern in DROPPED):
            dropped.append(key)
        elif (renamed := _rename(key, RENAMES)) is not None:
            out[renamed] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise VPGTransError(f"{where}: keys with no place in BLIP-2: {sorted(unknown)[:8]}")
    for block, pair in biases.items():
        if set(pair) != {"q_bias", "v_bias"}:
            raise VPGTransError(f"{where}: ViT block {block} has {sorted(pair)} but needs both q_bias and v_bias")
        q, v = pair["q_bias"], pair["v_bias"]
        out[f"vision_model.encoder.layers.{block}.self_attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return Conversion(out, dropped)


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(replacement)
    return None


HF_TO_LAVIS: tuple[tuple[str, str], ...] = (
    (r"vision_model\.embeddings\.class_embedding", "visual_encoder.cls_token"),
    (r"vision_model\.embeddings\.position_embedding", "visual_encoder.pos_embed"),
    (r"vision_model\.embeddings\.patch_embedding\.(weight|bias)", r"visual_encoder.patch_embed.proj.\1"),
    (r"vision_model\.encoder\.layers\.(\d+)\.layer_norm1\.(.+)", r"visual_encoder.blocks.\1.norm1.\2"),
    (r"vision_model\.encoder\.layers\.(\d+)\.layer_norm2\.(.+)", r"visual_encoder.blocks.\1.norm2.\2"),
    (r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.weight", r"visual_encoder.blocks.\1.attn.qkv.weight"),
    (r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.projection\.(.+)", r"visual_encoder.blocks.\1.attn.proj.\2"),
    (r"vision_model\.encoder\.layers\.(\d+)\.mlp\.(.+)", r"visual_encoder.blocks.\1.mlp.\2"),
    (r"vision_model\.post_layernorm\.(.+)", r"ln_vision.\1"),
    (r"qformer\.layernorm\.(.+)", r"Qformer.bert.embeddings.LayerNorm.\1"),
    (
        r"qformer\.encoder\.layer\.(\d+)\.(attention|crossattention)\.attention\.(.+)",
        r"Qformer.bert.encoder.layer.\1.\2.self.\3",
    ),  # noqa: E501
    (r"qformer\.encoder\.(.+)", r"Qformer.bert.encoder.\1"),
    (r"query_tokens", "query_tokens"),
)
_HF_QKV_BIAS = re.compile(r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.bias")
QFORMER_POSITIONS = 512  # BERT-base's position_ids buffer, which LAVIS saves


def hf_to_lavis(hf: dict[str, torch.Tensor], prefix: str, where: str) -> tuple[dict, dict]:
    """(the stage-2 checkpoint LAVIS' loaders read, the ViT file): transformers keys renamed back, the
    qkv bias split into q_bias and v_bias (its middle third, k's, must be zero), the language model
    left out (LAVIS loads it from its own checkpoint)."""
    if prefix not in PREFIXES:
        raise VPGTransError(f"--prefix {prefix!r} is not one of {', '.join(PREFIXES)}")
    stage2, vit = {}, {}
    for key, tensor in hf.items():
        if key.startswith("language_model."):
            continue
        if key.startswith("language_projection."):
            stage2[f"{prefix}_proj.{key.rsplit('.', 1)[1]}"] = tensor
            continue
        bias = _HF_QKV_BIAS.fullmatch(key)
        if bias:
            q, k, v = tensor.chunk(3)
            if k.abs().max() > 1e-6:
                warnings.warn(f"{where}: {key}'s key bias is not zero (LAVIS has none); it is left out")
            block = f"visual_encoder.blocks.{bias.group(1)}.attn."
            vit[block + "q_bias"], vit[block + "v_bias"] = q, v
            continue
        renamed = _rename(key, HF_TO_LAVIS)
        if renamed is None:
            raise VPGTransError(f"{where}: key {key} has no place in a LAVIS checkpoint")
        (vit if renamed.startswith("visual_encoder.") else stage2)[renamed] = tensor
    stage2["Qformer.bert.embeddings.position_ids"] = torch.arange(QFORMER_POSITIONS)[None]
    return stage2, {k.removeprefix("visual_encoder."): v for k, v in vit.items()}


# ----------------------------------------------------------------------------- configs from shapes


def vpg_config_from_shapes(hf: dict[str, torch.Tensor], vit_heads: int, qformer_heads: int, where: str) -> dict:
    """BLIP-2's vision and Q-Former configs (as keyword dicts) and query count, read off the tensors:
    LAVIS files carry no config. Head counts are not in any shape, so they are given."""
    try:
        width = hf["vision_model.embeddings.class_embedding"].shape[-1]
        patch = hf["vision_model.embeddings.patch_embedding.weight"].shape[-1]
        positions = hf["vision_model.embeddings.position_embedding"].shape[1]
        queries = hf["query_tokens"]
        cross = hf["qformer.encoder.layer.0.crossattention.attention.key.weight"]
    except KeyError as exc:
        raise VPGTransError(f"{where}: no {exc.args[0]} after conversion (is the ViT file given?)") from exc
    vit_layers = _count(hf, r"vision_model\.encoder\.layers\.(\d+)\.")
    q_layers = _count(hf, r"qformer\.encoder\.layer\.(\d+)\.")
    with_cross = sorted(
        {int(m.group(1)) for k in hf if (m := re.match(r"qformer\.encoder\.layer\.(\d+)\.crossattention", k))}
    )  # noqa: E501
    frequency = with_cross[1] - with_cross[0] if len(with_cross) > 1 else q_layers
    if with_cross != list(range(0, q_layers, frequency)):
        raise VPGTransError(f"{where}: cross-attention in Q-Former layers {with_cross}, not every n-th from 0")
    side = math.isqrt(positions - 1)
    return {
        "vision_config": {
            "hidden_size": width,
            "intermediate_size": hf["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            "num_hidden_layers": vit_layers,
            "num_attention_heads": vit_heads,
            "image_size": side * patch,
            "patch_size": patch,
            "qkv_bias": True,
        },
        "qformer_config": {
            "hidden_size": queries.shape[-1],
            "intermediate_size": hf["qformer.encoder.layer.0.intermediate_query.dense.weight"].shape[0],
            "num_hidden_layers": q_layers,
            "num_attention_heads": qformer_heads,
            "cross_attention_frequency": frequency,
            "encoder_hidden_size": cross.shape[1],
        },
        "num_query_tokens": queries.shape[1],
    }


def _count(hf: dict, pattern: str) -> int:
    return 1 + max(int(m.group(1)) for k in hf if (m := re.match(pattern, k)))

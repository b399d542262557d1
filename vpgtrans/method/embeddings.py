"""Read a language model's input-embedding table straight from its safetensors files.

Fitting the word converter needs two embedding tables, not two models: loading a 7B
model in fp32 to read one tensor costs ~27 GB of RAM. The model is instantiated on the
`meta` device (no memory) only to learn the table's parameter name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoConfig, PretrainedConfig

from ..errors import VPGTransError
from ..io.hub import model_file
from ..meta_model import meta_language_model
from ..presets import resolve_model_ref

BLIP2_LM_PREFIX = "language_model."


@dataclass
class EmbeddingTable:
    """An input-embedding table in fp32, with where it came from."""

    weight: torch.Tensor  # [rows, dim]
    origin: str


def text_config_of(ref: str) -> tuple[PretrainedConfig, str]:
    """The language model's config and its key prefix inside the checkpoint (BLIP-2 or plain LM)."""
    config = AutoConfig.from_pretrained(resolve_model_ref(ref))
    if config.model_type == "blip-2":
        return config.text_config, BLIP2_LM_PREFIX
    return config, ""


def _parameter_names(model: torch.nn.Module, param: torch.nn.Parameter) -> list[str]:
    """Every name under which `param` appears (tied weights have several)."""
    return [n for n, p in model.named_parameters(remove_duplicate=False) if p is param]


def checkpoint_key_index(ref: str) -> dict[str, Path]:
    """Map every tensor key of the model's safetensors checkpoint (sharded or not) to its file."""
    index = model_file(ref, "model.safetensors.index.json")
    if index is not None:
        weight_map = json.loads(index.read_text())["weight_map"]
        files = {f: model_file(ref, f) for f in sorted(set(weight_map.values()))}
        return {key: files[f] for key, f in weight_map.items()}
    single = model_file(ref, "model.safetensors")
    if single is None:
        raise VPGTransError(
            f"{ref}: no model.safetensors or model.safetensors.index.json (re-save it with save_pretrained)"
        )
    with safe_open(single, "pt") as f:
        return {key: single for key in f.keys()}


def _find_key(keys: dict[str, Path], names: list[str], prefix: str, ref: str) -> str:
    for name in names:
        if prefix + name in keys:
            return prefix + name
    for name in names:  # checkpoints saved by older code may lack or add a leading "model."
        hits = [k for k in keys if k.startswith(prefix) and k.endswith("." + name.split(".", 1)[-1])]
        if len(hits) == 1:
            return hits[0]
    raise VPGTransError(f"{ref}: cannot find the input-embedding tensor (looked for {prefix}{names[0]})")


def read_tensor(keys: dict[str, Path], key: str) -> torch.Tensor:
    with safe_open(keys[key], "pt") as f:
        return f.get_tensor(key)  # stored dtype: a 7B model's fp16 table is 0.26 GB, not 0.52


def read_input_embeddings(ref: str) -> EmbeddingTable:
    """The input-embedding table of a causal LM, seq2seq LM or BLIP-2 checkpoint, without loading it.

    OPT models whose embeddings are narrower than the hidden size (OPT-350M) are passed
    through `project_in`, so the table lives in the space the decoder actually reads.
    """
    config, prefix = text_config_of(ref)
    model = meta_language_model(config)
    embedding = model.get_input_embeddings()
    keys = checkpoint_key_index(ref)
    key = _find_key(keys, _parameter_names(model, embedding.weight), prefix, ref)
    weight = read_tensor(keys, key)
    project_in = getattr(getattr(getattr(model, "model", None), "decoder", None), "project_in", None)
    if project_in is not None:
        proj_key = _find_key(keys, _parameter_names(model, project_in.weight), prefix, ref)
        weight = weight.float() @ read_tensor(keys, proj_key).float().T
    return EmbeddingTable(weight=weight, origin=f"{keys[key]}:{key}")

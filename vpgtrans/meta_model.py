"""Any language model transformers knows, built on the `meta` device: its shapes without its memory.

The cost accounting counts parameters and the converter finds the input-embedding table through
the real module tree (`get_input_embeddings`, `nn.Linear` weights), so no architecture needs a
table of its own here: a 7B model costs no RAM and about a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, PretrainedConfig
from transformers.pytorch_utils import Conv1D


def language_config(config: Mapping[str, Any] | PretrainedConfig) -> PretrainedConfig:
    """A transformers config from a config.json dict (or a config object, returned as is)."""
    if isinstance(config, PretrainedConfig):
        return config
    values = dict(config)
    kind = values.pop("model_type", None)
    try:
        return AutoConfig.for_model(kind, **values)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"transformers knows no language model of model_type {kind!r}") from exc


def meta_language_model(config: PretrainedConfig) -> torch.nn.Module:
    """The model with its LM head (seq2seq for encoder-decoders), every tensor on `meta`."""
    with torch.device("meta"):
        if config.is_encoder_decoder:
            return AutoModelForSeq2SeqLM.from_config(config)
        return AutoModelForCausalLM.from_config(config)


@lru_cache(maxsize=64)
def _counts(config_json: str) -> tuple[int, int, int]:
    config = language_config(json.loads(config_json))
    model = meta_language_model(config)
    total = sum(p.numel() for p in model.parameters())  # tied weights once
    encoder = decoder = 0
    for name, module in model.named_modules():  # a tied LM head is a matmul all the same
        if isinstance(module, (torch.nn.Linear, Conv1D)):
            if config.is_encoder_decoder and "encoder" in name.split("."):
                encoder += module.weight.numel()
            else:
                decoder += module.weight.numel()
    return total, encoder, decoder


def parameter_counts(config: Mapping[str, Any] | PretrainedConfig) -> tuple[int, int, int]:
    """(all parameters, matmul weights an encoder token meets, matmul weights a decoder token meets,
    LM head included); the encoder's are 0 for a decoder-only model."""
    values = config.to_dict() if isinstance(config, PretrainedConfig) else dict(config)
    return _counts(json.dumps(values, sort_keys=True, default=str))

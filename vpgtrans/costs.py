"""Analytic compute and price estimates for a VPG training run, from model configs alone.

Per training sample (one image + its caption) the run costs, in FLOPs:

* ViT (frozen, forward only): ``2 x params x image tokens`` (257 for ViT-g/14 at 224 px);
* Q-Former + projector (trained, forward + backward): ``6 x params x tokens`` - the query
  path (self-attention, cross-attention Q/O, FFN) on the 32 queries, the cross-attention K/V
  projections on the image tokens, the projector on the 32 soft-prompt vectors;
* LLM (frozen, forward + gradients w.r.t. its inputs, no weight gradients):
  ``4 x params x tokens`` over the soft prompt + caption (encoder-decoder models: encoder on
  the soft prompt + half the caption, decoder on the other half, as in BLIP-2's prefix LM).

For the LLM "params" are the weights each token meets in matrix multiplies (embedding and
position lookups excluded, LM head included); for the ViT and Q-Former all their weights.
Attention-score FLOPs (a few % at these lengths) are left out. The LLM's counts come from the
model built on the meta device from its config (any architecture transformers has, no memory);
the ViT's and Q-Former's from BLIP-2's config dimensions.

Calibration (A100 at 312 TFLOP/s, 32 caption tokens, EVA ViT-g + BLIP-2 Q-Former, 2.25
TFLOPs per sample for OPT-6.7B) against the paper's A100-hours (``docs/method.md``)::

    run                                  samples  paper h  h at MFU 1  implied MFU
    OPT-2.7B -> OPT-6.7B (VPGTrans)        13.8M     59.0        27.6         0.47
    OPT-6.7B from scratch (BLIP-2)          129M    631.5       258.1         0.41
    FlanT5-XL -> FlanT5-XXL (VPGTrans)      5.3M     32.4         8.7         0.27
    FlanT5-XXL from scratch (BLIP-2)      121.6M    684.0       199.4         0.29

``DEFAULT_MFU = 0.44`` is the geometric mean of the two OPT runs, which it reproduces
within 7% (62.7 h and 587 h). The FlanT5 runs ran at a lower utilisation (bf16
encoder-decoder); for them the default under-estimates the hours by 1.5-1.6x - pass
``mfu=0.28`` there. Treat every estimate as a +-50% figure.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .training.trainer import StageResult

DEFAULT_MFU = 0.44
DEFAULT_TEXT_TOKENS = 32


@dataclass(frozen=True)
class GPU:
    """An accelerator: peak dense bf16/fp16 tensor throughput and an hourly price."""

    name: str
    peak_tflops: float
    price_per_hour: float


#: A100 at $4.10/h is the price the paper's dollar figures imply (= AWS p4d on-demand,
#: $32.77/h for 8 GPUs). H100 at $6.90/h: about AWS p5 on-demand after its 2025 price cut
#: (~$55/h for 8 GPUs; before it, ~$98/h, i.e. $12.3/GPU-h). Pass ``price_per_hour`` to
#: use your own price. Note that an H100 rarely reaches the MFU of an A100 on this workload.
GPUS: dict[str, GPU] = {
    "a100-40g": GPU("NVIDIA A100 40GB", 312.0, 4.10),
    "a100-80g": GPU("NVIDIA A100 80GB", 312.0, 4.10),
    "h100": GPU("NVIDIA H100 SXM", 989.0, 6.90),
}

Config = Mapping[str, Any] | Any  # a config.json dict or a transformers config object


@dataclass(frozen=True)
class CostBreakdown:
    """Training FLOPs of a run, per part."""

    vit: float
    qformer: float
    projector: float
    llm: float

    @property
    def total(self) -> float:
        return self.vit + self.qformer + self.projector + self.llm


@dataclass(frozen=True)
class Estimate:
    """GPU time and price of a training run."""

    gpu: GPU
    samples: int
    mfu: float
    flops: CostBreakdown
    gpu_hours: float
    dollars: float


# --------------------------------------------------------------------------- configs


def _as_dict(config: Config) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"expected a config dict or a transformers config, got {type(config)!r}")


def _llm_config(config: Config) -> dict[str, Any]:
    """The language-model part of a config (a BLIP-2 config's ``text_config``)."""
    cfg = _as_dict(config)
    return _as_dict(cfg["text_config"]) if "text_config" in cfg else cfg


def _vpg_configs(config: Config) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Vision config, Q-Former config and number of query tokens of a BLIP-2 config;
    BLIP-2's own defaults (EVA ViT-g/14 at 224 px, BERT-base Q-Former, 32 queries) for
    whatever it does not give (e.g. when ``config`` is a plain LLM config)."""
    cfg = _as_dict(config)
    vision = _as_dict(cfg.get("vision_config") or {})
    qformer = _as_dict(cfg.get("qformer_config") or {})
    return vision, qformer, int(cfg.get("num_query_tokens", 32))


# --------------------------------------------------------------------------- parameter counts


@dataclass(frozen=True)
class LLMParams:
    """Parameters of a language model: all of them, and the matmul weights each token meets
    (``encoder`` / ``decoder`` split for encoder-decoder models, else all in ``decoder``)."""

    total: int
    encoder: int
    decoder: int


def llm_params(config: Config) -> LLMParams:
    """Count any language model transformers can build (causal or encoder-decoder), from its config:
    the model is instantiated on the meta device (`meta_model.py`), so no architecture is special."""
    from .meta_model import parameter_counts

    total, encoder, decoder = parameter_counts(_llm_config(config))
    return LLMParams(total, encoder, decoder)


def vit_params(vision_config: Config) -> int:
    """Parameters of the BLIP-2 vision encoder (default: EVA ViT-g/14, 39 layers)."""
    cfg = _as_dict(vision_config)
    d, inter = cfg.get("hidden_size", 1408), cfg.get("intermediate_size", 6144)
    layers, patch = cfg.get("num_hidden_layers", 39), cfg.get("patch_size", 14)
    qkv_bias = 3 * d if cfg.get("qkv_bias", True) else 0
    layer = 4 * d * d + qkv_bias + d + 2 * d * inter + inter + d + 4 * d
    embeddings = d + (_image_tokens(cfg)) * d + 3 * patch * patch * d + d
    return layers * layer + embeddings + 2 * d


def _image_tokens(vision_config: dict[str, Any]) -> int:
    side = vision_config.get("image_size", 224) // vision_config.get("patch_size", 14)
    return side * side + 1  # patches + class token


@dataclass(frozen=True)
class QFormerParams:
    """Q-Former parameters: those applied to the query tokens, and the cross-attention
    key/value projections applied to the image tokens."""

    query_path: int
    image_kv: int

    @property
    def total(self) -> int:
        return self.query_path + self.image_kv


def qformer_params(qformer_config: Config) -> QFormerParams:
    """Parameters of the BLIP-2 Q-Former's query path (default: BERT-base, cross-attention
    every 2nd layer to 1408-d image features)."""
    cfg = _as_dict(qformer_config)
    d, inter = cfg.get("hidden_size", 768), cfg.get("intermediate_size", 3072)
    layers = cfg.get("num_hidden_layers", 12)
    every = cfg.get("cross_attention_frequency", 2)
    enc = cfg.get("encoder_hidden_size", 1408)
    self_attn = 4 * (d * d + d) + 2 * d
    ffn = 2 * d * inter + inter + d + 2 * d
    cross_layers = sum(1 for i in range(layers) if i % every == 0)
    cross_query = 2 * (d * d + d) + 2 * d  # query and output projections + layer norm
    cross_kv = 2 * (enc * d + d)
    return QFormerParams(
        layers * (self_attn + ffn) + cross_layers * cross_query + 2 * d,  # + input layer norm
        cross_layers * cross_kv,
    )


# --------------------------------------------------------------------------- FLOPs and price


def training_flops(
    src_config: Config,
    dst_config: Config,
    samples: int,
    text_tokens: float = DEFAULT_TEXT_TOKENS,
    *,
    qformer_trained: bool = True,
    decoder_tokens: float | None = None,
) -> CostBreakdown:
    """FLOPs to train the VPG of ``src_config`` (a BLIP-2 config; missing parts default to
    BLIP-2's) + a projector on the LLM of ``dst_config`` for ``samples`` image-text pairs.

    ``qformer_trained=False`` is the warm-up stage: the Q-Former runs forward only (2x). For an
    encoder-decoder LLM, ``decoder_tokens`` are the tokens its decoder learns (the encoder reads the
    soft prompt + ``text_tokens``); without them, BLIP-2's prefix LM: half the caption each."""
    vision, qformer, queries = _vpg_configs(src_config)
    image_tokens = _image_tokens(vision)
    from .meta_model import language_config

    llm = llm_params(dst_config)
    d_llm = language_config(_llm_config(dst_config)).hidden_size  # n_embd, d_model...: the config knows
    q = qformer_params(qformer)
    d_q = qformer.get("hidden_size", 768)
    if llm.encoder and decoder_tokens is not None:
        llm_token_params = llm.encoder * (queries + text_tokens) + llm.decoder * decoder_tokens
    elif llm.encoder:  # prefix LM: soft prompt + half the caption in, the other half out
        llm_token_params = llm.encoder * (queries + text_tokens / 2) + llm.decoder * text_tokens / 2
    else:
        llm_token_params = llm.decoder * (queries + text_tokens)
    return CostBreakdown(
        vit=2.0 * vit_params(vision) * image_tokens * samples,
        qformer=(6.0 if qformer_trained else 2.0) * (q.query_path * queries + q.image_kv * image_tokens) * samples,
        projector=6.0 * (d_q * d_llm + d_llm) * queries * samples,
        llm=4.0 * llm_token_params * samples,
    )


def estimate(
    src_config: Config,
    dst_config: Config,
    gpu: str,
    samples: int,
    mfu: float = DEFAULT_MFU,
    *,
    text_tokens: int = DEFAULT_TEXT_TOKENS,
    price_per_hour: float | None = None,
) -> Estimate:
    """GPU-hours and dollars to train a VPG on ``dst_config``'s LLM for ``samples`` pairs at
    model-FLOPs utilisation ``mfu`` (see the module docstring for the calibration)."""
    flops = training_flops(src_config, dst_config, samples, text_tokens)
    hours, dollars = gpu_hours(flops.total, gpu, mfu, price_per_hour)
    return Estimate(GPUS[gpu], samples, mfu, flops, hours, dollars)


def gpu_hours(
    flops: float, gpu: str, mfu: float = DEFAULT_MFU, price_per_hour: float | None = None
) -> tuple[float, float]:
    """(GPU-hours, dollars) to execute ``flops`` on ``gpu`` at utilisation ``mfu``: how a run
    measured anywhere (a CPU included) is projected onto the price table."""
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; choose from {', '.join(GPUS)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    spec = GPUS[gpu]
    hours = flops / (spec.peak_tflops * 1e12 * mfu) / 3600.0
    return hours, hours * (spec.price_per_hour if price_per_hour is None else price_per_hour)


def stage_flops(config: Config, result: StageResult, qformer_trained: bool) -> CostBreakdown:
    """Analytic FLOPs of a finished training stage of the BLIP-2 model ``config``, from the
    samples and LLM tokens (soft prompt + text, padding excluded) it actually processed: an
    encoder-decoder's encoder read ``lm_tokens``, its decoder learned ``text_tokens``."""
    _, _, queries = _vpg_configs(config)
    samples = max(result.samples, 1)
    text_tokens = result.lm_tokens / samples - queries
    decoder = result.text_tokens / samples if llm_params(config).encoder else None
    return training_flops(
        config, config, result.samples, text_tokens, qformer_trained=qformer_trained, decoder_tokens=decoder
    )


def cost_record(flops: CostBreakdown, device: str) -> dict[str, Any]:
    """What run.json keeps beside a stage's result: FLOPs per part and total, the hardware."""
    return {"flops": {**asdict(flops), "total": flops.total}, "device_name": device_name(device)}


def device_name(device: str) -> str:
    """A readable name for a torch device string: the GPU model, or the CPU and its cores."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return f"{device} ({platform.machine()}, {os.cpu_count()} cores)"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read ``config.json`` from a file path or a model folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json at {path}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def estimate_from_files(src: str | Path, dst: str | Path, **kwargs: Any) -> Estimate:
    """:func:`estimate` with both configs read from ``config.json`` files (or folders)."""
    return estimate(load_config(src), load_config(dst), **kwargs)

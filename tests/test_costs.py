"""Tests for vpgtrans.costs: parameter counts from config dims and the paper's GPU-hours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from real_configs import (
    BLIP2_OPT_2_7B,
    EVA_VIT_G,
    FLAN_T5_XL,
    FLAN_T5_XXL,
    LLAMA_7B,
    OPT_2_7B,
    OPT_6_7B,
    OPT_350M,
    QFORMER,
)

from vpgtrans.costs import (
    DEFAULT_MFU,
    GPUS,
    Estimate,
    estimate,
    estimate_from_files,
    llm_params,
    qformer_params,
    training_flops,
    vit_params,
)

PAPER_FACTOR = 1.5  # the estimates must land within this factor of the paper's hours


@pytest.mark.parametrize(
    "config, expected",  # totals as transformers builds these architectures (it always ties T5's LM head)
    [
        (OPT_6_7B, 6_658_473_984),
        (OPT_2_7B, 2_651_596_800),
        (OPT_350M, 331_196_416),
        (LLAMA_7B, 6_738_415_616),
        (FLAN_T5_XL, 2_783_959_040),
        (FLAN_T5_XXL, 11_003_736_064),
    ],
)
def test_llm_param_counts(config: dict, expected: int) -> None:
    assert llm_params(config).total == expected


def test_vpg_param_counts() -> None:
    assert vit_params(EVA_VIT_G) == vit_params({}) == 985_952_256
    q = qformer_params(QFORMER)
    assert q.total == qformer_params({}).total == 105_137_664
    assert q.image_kv == 6 * 2 * (1408 * 768 + 768)  # K/V of the 6 cross-attention layers


def test_blip2_config_text_config_and_transformers_objects() -> None:
    from transformers import Blip2QFormerConfig, Blip2VisionConfig

    assert llm_params(BLIP2_OPT_2_7B) == llm_params(OPT_2_7B)
    assert vit_params(Blip2VisionConfig()) == vit_params(EVA_VIT_G)
    assert qformer_params(Blip2QFormerConfig()).total == qformer_params(QFORMER).total
    with pytest.raises(ValueError, match="knows no language model of model_type 'not-a-model'"):
        llm_params({"model_type": "not-a-model"})


def test_flops_breakdown_per_sample() -> None:
    flops = training_flops(BLIP2_OPT_2_7B, OPT_6_7B, samples=1)
    assert flops.vit == pytest.approx(2 * 985_952_256 * 257)
    assert flops.llm == pytest.approx(4 * llm_params(OPT_6_7B).decoder * (32 + 32))
    assert flops.projector == pytest.approx(6 * (768 * 4096 + 4096) * 32)
    assert flops.total == pytest.approx(flops.vit + flops.qformer + flops.projector + flops.llm)
    assert 2.0e12 < flops.total < 2.5e12
    # encoder-decoder LLMs split the caption between encoder and decoder
    t5 = training_flops(BLIP2_OPT_2_7B, FLAN_T5_XXL, samples=1)
    params = llm_params(FLAN_T5_XXL)
    assert t5.llm == pytest.approx(4 * (params.encoder * 48 + params.decoder * 16))


@pytest.mark.parametrize(
    "samples, paper_hours",
    [
        (13_800_000, 59.0),  # OPT-2.7B -> OPT-6.7B by VPGTrans
        (129_000_000, 631.5),
    ],  # BLIP-2 OPT-6.7B from scratch
)
def test_estimate_reproduces_paper_a100_hours(samples: int, paper_hours: float) -> None:
    est = estimate(BLIP2_OPT_2_7B, OPT_6_7B, "a100-40g", samples)
    assert isinstance(est, Estimate) and est.mfu == DEFAULT_MFU
    assert paper_hours / PAPER_FACTOR < est.gpu_hours < paper_hours * PAPER_FACTOR
    assert est.dollars == pytest.approx(est.gpu_hours * 4.10)


def test_estimate_llama_and_gpu_options() -> None:
    a100 = estimate(BLIP2_OPT_2_7B, LLAMA_7B, "a100-80g", 13_800_000)
    assert a100.gpu_hours == pytest.approx(a100.flops.total / (312e12 * DEFAULT_MFU) / 3600)
    h100 = estimate(BLIP2_OPT_2_7B, LLAMA_7B, "h100", 13_800_000, mfu=0.3, price_per_hour=2.0)
    assert h100.gpu_hours == pytest.approx(a100.gpu_hours * 312 * DEFAULT_MFU / (989 * 0.3))
    assert h100.dollars == pytest.approx(2.0 * h100.gpu_hours)
    assert set(GPUS) == {"a100-40g", "a100-80g", "h100"}
    with pytest.raises(ValueError, match="unknown GPU"):
        estimate(BLIP2_OPT_2_7B, LLAMA_7B, "v100", 1)
    with pytest.raises(ValueError, match="mfu"):
        estimate(BLIP2_OPT_2_7B, LLAMA_7B, "h100", 1, mfu=1.5)


def test_estimate_from_files(tmp_path: Path) -> None:
    src = tmp_path / "blip2-opt-2.7b"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(BLIP2_OPT_2_7B))
    dst = tmp_path / "opt-6.7b.json"
    dst.write_text(json.dumps(OPT_6_7B))
    from_files = estimate_from_files(src, dst, gpu="a100-40g", samples=13_800_000)
    assert from_files == estimate(BLIP2_OPT_2_7B, OPT_6_7B, "a100-40g", 13_800_000)
    with pytest.raises(FileNotFoundError):
        estimate_from_files(tmp_path / "missing", dst, gpu="a100-40g", samples=1)

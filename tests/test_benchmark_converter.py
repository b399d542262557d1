"""The converter-fit benchmark's stand-in builder, at tiny sizes: the fit must read the
embedding tables (not the decoys) from the sharded checkpoints and align the vocabularies
as the builder laid them out. Keeps benchmarks/converter_fit.py from rotting."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from vpgtrans.method.converter import ConverterFitConfig, fit_converter
from vpgtrans.method.embeddings import read_input_embeddings
from vpgtrans.method.vocab import tokenizer_convention

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "converter_fit.py"

TINY = dict(
    src_hidden=32,
    src_layers=2,
    src_heads=4,
    src_ffn=64,
    src_rows=900,
    src_vocab=893,
    src_max_positions=64,
    dst_hidden=48,
    dst_layers=2,
    dst_heads=4,
    dst_ffn=96,
    dst_rows=600,
    dst_vocab=600,
    dst_max_positions=64,
    shared_words=150,
    captions=200,
)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("converter_fit_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def stand_ins(bench, tmp_path_factory):
    spec = bench.StandInSpec(**TINY)
    return spec, bench.build_stand_ins(tmp_path_factory.mktemp("standins"), spec)


def _stored(path: Path, key: str) -> torch.Tensor:
    with safe_open(str(path), "pt") as f:
        return f.get_tensor(key)


def test_stand_ins_are_sharded_like_real_checkpoints(bench, stand_ins):
    spec, built = stand_ins
    for folder, key, shard in (
        (built.src, bench.SRC_EMBED_KEY, built.src_embed_file),
        (built.dst, bench.DST_EMBED_KEY, built.dst_embed_file),
    ):
        weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
        assert len(set(weight_map.values())) == 2
        assert weight_map[key] == shard.name
        assert len(weight_map) > 2  # decoys of real names next to the table
    assert _stored(built.dst_embed_file, bench.DST_EMBED_KEY).shape == (spec.dst_rows, spec.dst_hidden)
    assert _stored(built.dst.joinpath("model-00002-of-00002.safetensors"), "lm_head.weight").shape == (
        spec.dst_rows,
        spec.dst_hidden,
    )

    src_tok, dst_tok = AutoTokenizer.from_pretrained(built.src), AutoTokenizer.from_pretrained(built.dst)
    assert (len(src_tok), len(dst_tok)) == (spec.src_vocab, spec.dst_vocab)
    assert tokenizer_convention(src_tok) == "byte-level"
    assert tokenizer_convention(dst_tok) == "sentencepiece"
    assert (src_tok.bos_token, src_tok.pad_token, dst_tok.bos_token, dst_tok.pad_token) == (
        "</s>",
        "<pad>",
        "<s>",
        None,
    )
    caption = json.loads(built.captions.read_text())[0]
    assert len(dst_tok(caption)["input_ids"]) == len(caption.split()) + 1  # shared words are single tokens, plus <s>

    table = read_input_embeddings(str(built.src)).weight
    assert torch.equal(table, _stored(built.src_embed_file, bench.SRC_EMBED_KEY).float())


def test_fit_reads_the_right_tables_and_aligns_the_shared_words(bench, stand_ins):
    spec, built = stand_ins
    captions = json.loads(built.captions.read_text())
    converter = fit_converter(str(built.src), str(built.dst), captions, ConverterFitConfig())
    report = converter.report
    assert report.src_table == f"{built.src_embed_file}:{bench.SRC_EMBED_KEY}"
    assert report.dst_table == f"{built.dst_embed_file}:{bench.DST_EMBED_KEY}"
    assert converter.weight.shape == (spec.dst_hidden, spec.src_hidden)
    assert report.aligned_pairs == built.expected_pairs
    assert report.pairs_single_byte == built.expected_single_bytes == 256
    assert report.pairs_by_role == built.expected_by_role == 2
    words = report.aligned_pairs - 256 - 2
    assert words == spec.shared_words + -(-spec.shared_words // spec.shared_bare_every)  # ' word' forms + bare forms
    # the destination is an affine image of the source on aligned rows: a decoy table would score ~0
    assert 0.8 * built.noise_ceiling < report.heldout_cosine <= 1.0

    fit = {"wall_s": report.seconds, "vmhwm_bytes": 2**30, "ru_maxrss_bytes": 2**30, "report": asdict(report)}
    table = bench.markdown_table(spec, built, fit)
    assert f"| aligned pairs | {report.aligned_pairs:,} (" in table
    assert "PASS" in table

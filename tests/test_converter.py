"""Word converter: vocabulary alignment across tokenizer conventions, embedding reading,
ridge and paper fits, fused projector algebra."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vpgtrans import world
from vpgtrans.errors import VPGTransError
from vpgtrans.method.converter import ConverterFitConfig, WordConverter, fit_converter, fit_ridge, fuse_projection
from vpgtrans.method.embeddings import read_input_embeddings
from vpgtrans.method.vocab import align_vocabularies, token_bytes, tokenizer_convention
from vpgtrans.world import tiny


def test_token_bytes_normalises_both_conventions():
    assert token_bytes("Ġred", "byte-level") == b" red"
    assert token_bytes("Ċ", "byte-level") == b"\n"
    assert token_bytes("â", "byte-level") == bytes([0xE2])  # one byte of a multi-byte char
    assert token_bytes("▁red", "sentencepiece") == b" red"
    assert token_bytes("<0x0A>", "sentencepiece") == b"\n"
    assert token_bytes("red", "sentencepiece") == b"red"


def test_alignment_pairs_spellings_and_roles(zoo):
    src = AutoTokenizer.from_pretrained(zoo.src)
    dst = AutoTokenizer.from_pretrained(zoo.dst_llama)
    assert tokenizer_convention(src) == "byte-level"
    assert tokenizer_convention(dst) == "sentencepiece"
    alignment = align_vocabularies(src, dst, 10**6, 10**6)
    pairs = set(zip(alignment.src_ids, alignment.dst_ids))
    tok = lambda t, s: t.convert_tokens_to_ids(s)  # noqa: E731
    assert (tok(src, "Ġred"), tok(dst, "▁red")) in pairs
    assert (tok(src, "Ċ"), tok(dst, "<0x0A>")) in pairs
    assert (src.eos_token_id, dst.eos_token_id) in pairs  # OPT's </s> (BOS and EOS) with LLaMA's </s>
    assert alignment.src_ids.count(src.eos_token_id) == 1  # OPT's </s> is its BOS and EOS: paired once
    image_id = src.convert_tokens_to_ids("<image>")
    assert image_id not in alignment.src_ids  # added tokens never pair by spelling
    # no pair joins a word with a leading space to one without
    src_tokens = src.convert_ids_to_tokens(alignment.src_ids)
    dst_tokens = dst.convert_ids_to_tokens(alignment.dst_ids)
    for s, d in zip(src_tokens[alignment.by_role :], dst_tokens[alignment.by_role :]):
        assert s.startswith("Ġ") == d.startswith("▁"), (s, d)


def test_alignment_drops_ids_beyond_the_tables(zoo):
    src = AutoTokenizer.from_pretrained(zoo.src)
    dst = AutoTokenizer.from_pretrained(zoo.dst_llama)
    alignment = align_vocabularies(src, dst, 50, 10**6)
    assert max(alignment.src_ids) < 50


def _write_related_llama(zoo, folder, affine):
    """A LLaMA-like LM whose embeddings of aligned tokens are an exact affine image of the source's."""
    src_tok, dst_tok = AutoTokenizer.from_pretrained(zoo.src), AutoTokenizer.from_pretrained(zoo.dst_llama)
    src_table = read_input_embeddings(str(zoo.src)).weight
    lm = AutoModelForCausalLM.from_pretrained(zoo.dst_llama)
    alignment = align_vocabularies(src_tok, dst_tok, src_table.shape[0], 10**6)
    weight, bias = affine
    with torch.no_grad():
        table = lm.get_input_embeddings().weight
        for s, d in zip(alignment.src_ids, alignment.dst_ids):
            table[d] = weight @ src_table[s] + bias
    lm.save_pretrained(folder, max_shard_size="20KB")  # sharded, as real 7B checkpoints are
    dst_tok.save_pretrained(folder)
    return alignment


def test_ridge_fit_recovers_a_known_map_from_sharded_checkpoints(zoo, tmp_path):
    torch.manual_seed(0)
    weight, bias = torch.randn(48, 32) * 0.2, torch.randn(48) * 0.1
    _write_related_llama(zoo, tmp_path / "llama", (weight, bias))
    assert (tmp_path / "llama" / "model.safetensors.index.json").exists()
    captions = [world.caption(world.generate_scene(__import__("numpy").random.default_rng(i))) for i in range(30)]
    converter = fit_converter(str(zoo.src), str(tmp_path / "llama"), captions, ConverterFitConfig(ridge=1e-6))
    report = converter.report
    assert report.heldout_cosine > 0.999
    assert report.aligned_pairs > 100 and report.pairs_by_role >= 2
    assert torch.allclose(converter.weight, weight, atol=2e-3)
    assert torch.allclose(converter.bias, bias, atol=2e-3)


def test_paper_recipe_learns_the_map_and_ridge_beats_it(zoo, tmp_path):
    torch.manual_seed(0)
    _write_related_llama(zoo, tmp_path / "llama", (torch.randn(48, 32) * 0.2, torch.randn(48) * 0.1))
    captions = [world.caption(world.generate_scene(__import__("numpy").random.default_rng(i))) for i in range(200)]
    paper = fit_converter(
        str(zoo.src), str(tmp_path / "llama"), captions, ConverterFitConfig(method="paper", paper_batch_captions=8)
    ).report
    ridge = fit_converter(str(zoo.src), str(tmp_path / "llama"), captions).report
    assert paper.method == "paper" and ridge.method == "ridge"
    assert 0 < paper.captions_used <= paper.captions_total == 200
    assert paper.heldout_cosine > 0.4  # on tokens its probe fit never saw (0.50 measured; 0.62 when it saw them)
    assert ridge.heldout_cosine > paper.heldout_cosine


def test_paper_heldout_cosine_comes_from_a_fit_without_the_heldout_tokens(zoo, monkeypatch):
    import vpgtrans.method.converter as converter_module

    captions = [world.caption(world.generate_scene(__import__("numpy").random.default_rng(i))) for i in range(100)]
    src_tok, dst_tok = AutoTokenizer.from_pretrained(zoo.src), AutoTokenizer.from_pretrained(zoo.dst_opt)
    table = read_input_embeddings(str(zoo.src)).weight.float()
    alignment = align_vocabularies(src_tok, dst_tok, table.shape[0], 10**6)
    in_captions = {t for ids in src_tok(captions)["input_ids"] for t in ids}
    ids = torch.tensor(alignment.src_ids)
    # a seed whose held-out tokens occur in the captions, so that the position pairs hold some
    seed = next(s for s in range(100) if set(ids[converter_module._heldout_mask(len(ids), s)].tolist()) & in_captions)
    fitted = []
    real = converter_module.fit_cosine_sgd
    monkeypatch.setattr(
        converter_module, "fit_cosine_sgd", lambda x, y, *a, **k: fitted.append(x) or real(x, y, *a, **k)
    )
    config = ConverterFitConfig(method="paper", paper_batch_captions=8, paper_epochs=1, seed=seed)
    fit_converter(str(zoo.src), str(zoo.dst_opt), captions, config)
    final, probe = fitted
    heldout = table[ids[converter_module._heldout_mask(len(ids), seed)]]
    seen = lambda rows: (torch.cdist(rows, heldout, compute_mode="donot_use_mm_for_euclid_dist") == 0).any(dim=1)  # noqa: E731
    assert seen(final).any() and not seen(probe).any() and len(probe) < len(final)


def test_paper_recipe_needs_captions(zoo):
    with pytest.raises(VPGTransError, match="needs captions"):
        fit_converter(str(zoo.src), str(zoo.dst_opt), [], ConverterFitConfig(method="paper"))


def test_too_small_overlap_is_refused(zoo, tmp_path):
    other = tiny.sentencepiece_bpe_tokenizer(["ωψχ φυτ σρπ"] * 20, vocab_size=10)
    lm = AutoModelForCausalLM.from_config(tiny.llama_config(other, tiny.LMSize(hidden_size=16, num_layers=1)))
    lm.save_pretrained(tmp_path / "greek")
    other.save_pretrained(tmp_path / "greek")
    with pytest.raises(VPGTransError, match="too little in common"):
        fit_converter(str(zoo.src), str(tmp_path / "greek"))


def test_fused_projection_equals_converter_after_source_projector():
    torch.manual_seed(0)
    source = torch.nn.Linear(16, 24)
    converter = WordConverter(weight=torch.randn(40, 24), bias=torch.randn(40))
    w, b = fuse_projection(converter, source.weight.detach(), source.bias.detach())
    queries = torch.randn(5, 7, 16)
    expected = converter(source(queries))
    assert torch.allclose(queries @ w.T + b, expected, atol=1e-4)


def test_fit_ridge_recovers_affine_map_and_leaves_inputs_alone():
    x = torch.randn(200, 8, dtype=torch.float64) + 3.0  # float64: the fit's own dtype, so no implicit copy
    weight, bias = torch.randn(12, 8, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    y = x @ weight.T + bias
    x_before, y_before = x.clone(), y.clone()
    converter = fit_ridge(x, y, torch.ones(200), ridge=1e-9)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert torch.allclose(converter.weight, weight.float(), atol=1e-3)
    assert torch.allclose(converter.bias, bias.float(), atol=1e-3)


def test_converter_save_load_round_trip(tmp_path):
    x = torch.randn(100, 8)
    converter = fit_ridge(x, x @ torch.randn(8, 12), torch.ones(100))
    converter.save(tmp_path / "c.safetensors")
    loaded = WordConverter.load(tmp_path / "c.safetensors")
    assert torch.equal(loaded.weight, converter.weight) and torch.equal(loaded.bias, converter.bias)
    with pytest.raises(VPGTransError, match="not found"):
        WordConverter.load(tmp_path / "missing.safetensors")


def test_embedding_reader_applies_opt_project_in(tmp_path):
    tok = tiny.byte_level_bpe_tokenizer(["a red square"] * 10, vocab_size=300)
    config = tiny.opt_config(tok, tiny.LMSize(hidden_size=32, num_layers=1))
    config.word_embed_proj_dim = 16  # OPT-350M style: narrow embeddings, project_in to hidden
    lm = AutoModelForCausalLM.from_config(config)
    lm.save_pretrained(tmp_path / "opt")
    table = read_input_embeddings(str(tmp_path / "opt")).weight
    expected = lm.get_input_embeddings().weight @ lm.model.decoder.project_in.weight.T
    assert table.shape == (len(tok), 32)
    assert torch.allclose(table, expected.detach(), atol=1e-6)


def test_paper_recipe_counts_a_blip2_tokenizer_as_its_lm_s(zoo, monkeypatch):
    """BLIP-2 adds <image> to its LM's tokenizer: still the same family (5 epochs), not another (8)."""
    import vpgtrans.method.converter as converter_module

    epochs = []
    real = converter_module.fit_cosine_sgd
    monkeypatch.setattr(converter_module, "fit_cosine_sgd", lambda *a, **k: epochs.append(k["epochs"]) or real(*a, **k))
    captions = [world.caption(world.generate_scene(__import__("numpy").random.default_rng(i))) for i in range(40)]
    config = ConverterFitConfig(method="paper", paper_batch_captions=8)
    fit_converter(str(zoo.src), str(zoo.src), captions, config)
    fit_converter(str(zoo.src), str(zoo.dst_llama), captions, config)
    assert epochs == [5, 5, 8, 8]  # final and probe fits of each

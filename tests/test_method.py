"""The method's facts, each pinned by a test that fails when the method is wired wrongly: what each
stage trains and leaves in train mode, the loss mask, the schedules, weight decay, the vocabulary
alignment and the fusion (mutation testing found each of these unguarded once)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from vpgtrans.method.converter import WordConverter, fuse_projection
from vpgtrans.method.vocab import align_vocabularies, same_tokenizer
from vpgtrans.pipeline import initialise
from vpgtrans.training.data import CaptionDataset, load_caption_data
from vpgtrans.training.optim import make_optimizer
from vpgtrans.training.run import collator_for
from vpgtrans.training.stages import FINETUNE, WARMUP, TrainingConfig, stage_config
from vpgtrans.training.trainer import lr_factor, make_accelerator, train_stage

ROOT = Path(__file__).resolve().parents[1]
TRAINED_IN_STAGE_2 = {"qformer", "query_tokens", "vision_model.post_layernorm", "language_projection"}


def test_each_stage_trains_what_the_paper_says():
    training = TrainingConfig(batch_size=8)
    assert set(stage_config(WARMUP, training, 48).trainable) == {"language_projection"}
    assert set(stage_config(FINETUNE, training, 48).trainable) == TRAINED_IN_STAGE_2
    assert stage_config(WARMUP, training, 48).dropout_in == ()  # the Q-Former is frozen: eval mode, no dropout
    assert stage_config(FINETUNE, training, 48).dropout_in == ("qformer",)


def test_schedules_of_the_built_stages():
    training = TrainingConfig(batch_size=8, lr=1e-4, warmup_lr_mult=5.0)
    warmup, finetune = stage_config(WARMUP, training, 48), stage_config(FINETUNE, training, 48)
    assert warmup.lr == 5e-4 and [lr_factor(warmup)(s) for s in (0, warmup.steps)] == [1.0, 1.0]
    assert finetune.lr == 1e-4 and lr_factor(finetune)(0) == 1.0
    assert abs(lr_factor(finetune)(finetune.steps) - 0.5) < 1e-12  # cosine to half the LR, not to 0
    assert finetune.seed == warmup.seed + 1 and finetune.weight_decay == warmup.weight_decay == 0.05


def test_train_modes_and_what_changes_in_each_stage(zoo, tmp_path):
    model, processor, _ = initialise(str(zoo.src), str(zoo.dst_llama), None)
    data = load_caption_data(zoo.data)
    dataset, collate = CaptionDataset(data.records), collator_for(processor, model, TrainingConfig())
    modes: dict[str, set[bool]] = {}
    for name in ("qformer", "vision_model", "language_model"):
        module = model.get_submodule(name)
        module.register_forward_pre_hook(lambda m, args, name=name: modes.setdefault(name, set()).add(m.training))
    training = TrainingConfig(batch_size=8, stage1_steps=2, stage2_steps=2, lr=1e-2)
    for spec, qformer_mode in ((WARMUP, False), (FINETUNE, True)):
        modes.clear()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train_stage(make_accelerator(), model, dataset, collate, stage_config(spec, training, 48), tmp_path / spec.name)
        assert modes == {"qformer": {qformer_mode}, "vision_model": {False}, "language_model": {False}}, spec.name
        changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
        assert {k for k in changed if not k.startswith(spec.trainable)} == set(), spec.name
        for prefix in spec.trainable:  # every trainable part moved, query tokens included
            assert any(k.startswith(prefix) for k in changed), (spec.name, prefix)


def test_the_loss_covers_only_the_caption(zoo):
    model, processor, _ = initialise(str(zoo.src), str(zoo.dst_llama), None)
    collate = collator_for(processor, model, TrainingConfig())
    data = load_caption_data(zoo.data)
    batch = collate([CaptionDataset(data.records)[i] for i in range(4)])
    image = batch["input_ids"] == model.config.image_token_index
    pad = batch["attention_mask"] == 0
    assert image.sum(1).tolist() == [model.config.num_query_tokens] * 4
    assert (batch["labels"][image | pad] == -100).all()
    text = ~image & ~pad
    assert torch.equal(batch["labels"][text], batch["input_ids"][text])  # BOS included: predicted from the queries
    assert (batch["input_ids"][:, model.config.num_query_tokens] == processor.tokenizer.bos_token_id).all()


def test_weight_decay_on_matrices_only(zoo):
    """LAVIS' rule: no decay on biases, norms and other 1-d parameters (query tokens, 3-d, decay)."""
    model, _, _ = initialise(str(zoo.src), str(zoo.dst_llama), None)
    model.requires_grad_(False)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(tuple(TRAINED_IN_STAGE_2)))
    optimizer = make_optimizer("adamw", model, 1e-4, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    matrices = {n for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2}
    assert decayed == matrices and "query_tokens" in decayed
    assert {"language_projection.bias", "vision_model.post_layernorm.weight"} <= plain
    assert all(n.endswith("bias") or "norm" in n.lower() for n in plain)


def _tokenizers():
    spec = importlib.util.spec_from_file_location("converter_fit_benchmark", ROOT / "benchmarks" / "converter_fit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    words = ["on", "red", "circle"]
    opt = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{w: 4 + i for i, w in enumerate(words)}}
    opt.update({"Ġ" + w: 10 + i for i, w in enumerate(words)})
    llama = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: 3 + i for i, w in enumerate(words)}}
    llama.update({"▁" + w: 10 + i for i, w in enumerate(words)})
    return module.byte_level_tokenizer(opt), module.sentencepiece_tokenizer(llama)


def test_alignment_keeps_the_leading_space_convention_and_pairs_each_row_once():
    opt, llama = _tokenizers()
    alignment = align_vocabularies(opt, llama, 100, 100)
    pairs = set(zip(alignment.src_ids, alignment.dst_ids))
    ids = lambda tok, *tokens: tuple(tok.convert_tokens_to_ids(t) for t in tokens)  # noqa: E731
    assert (ids(opt, "on")[0], ids(llama, "on")[0]) in pairs  # bare with bare
    assert (ids(opt, "Ġon")[0], ids(llama, "▁on")[0]) in pairs  # leading space with leading space
    assert (ids(opt, "Ġon")[0], ids(llama, "on")[0]) not in pairs
    assert len(alignment.src_ids) == len(set(alignment.src_ids))  # OPT's </s> (BOS and EOS) pairs once
    end = ids(opt, "</s>")[0]  # OPT's BOS and EOS: pairs with the token spelled alike, and only with it
    assert (end, ids(llama, "</s>")[0]) in pairs and (end, ids(llama, "<s>")[0]) not in pairs
    assert alignment.by_role == 2  # </s> and <unk>, spelled alike (OPT's <s> has no role: OPT never emits it)
    small = align_vocabularies(opt, llama, 3, 100)  # specials outside the tables are not counted
    assert small.by_role == 1 and max(small.src_ids) < 3


def test_same_tokenizer_ignores_added_tokens(zoo):
    from transformers import AutoTokenizer

    blip2_tokenizer = AutoTokenizer.from_pretrained(zoo.src)  # the source LM's tokenizer + <image>
    plain = AutoTokenizer.from_pretrained(zoo.src)
    assert same_tokenizer(blip2_tokenizer, plain)
    assert not same_tokenizer(blip2_tokenizer, AutoTokenizer.from_pretrained(zoo.dst_llama))


def test_fusion_is_the_converter_after_the_projector_at_square_sizes():
    """A transposed W_conv type-checks when the converter is square; only the values tell."""
    generator = torch.Generator().manual_seed(0)
    source = torch.nn.Linear(8, 8)
    converter = WordConverter(weight=torch.randn(8, 8, generator=generator), bias=torch.randn(8, generator=generator))
    weight, bias = fuse_projection(converter, source.weight.detach(), source.bias.detach())
    queries = torch.randn(3, 8, generator=generator)
    assert torch.allclose(queries @ weight.T + bias, converter(source(queries)), atol=1e-5)

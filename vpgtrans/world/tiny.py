"""Build small tokenizers and models from scratch, offline.

Real checkpoints cannot be downloaded everywhere; the tests and the miniature world
need tokenizers with the conventions of real LLMs (GPT-2 byte-level BPE as in OPT,
SentencePiece BPE with byte fallback as in LLaMA, SentencePiece unigram as in T5) and models
of the real architectures, only small. Everything here is ordinary `tokenizers` / `transformers` objects.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    BlipImageProcessor,
    LlamaConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
    T5Config,
)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def byte_level_bpe_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """An OPT-style tokenizer: GPT-2 byte-level BPE, `</s>` as both BOS and EOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def sentencepiece_bpe_tokenizer(corpus: Iterable[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A LLaMA-style tokenizer: `▁` marks a leading space, bytes fall back to `<0xNN>`, no pad token."""
    specials = ["<unk>", "<s>", "</s>"]
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.normalizer = _sentencepiece_normalizer()
    trained.pre_tokenizer = _sentencepiece_pre_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    trained.train_from_iterator(corpus, trainer)
    # Lay the vocabulary out as LLaMA does: specials, then the 256 byte tokens, then the merges.
    learned = json.loads(trained.to_str())["model"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for token, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if token != "\n":  # LLaMA has no newline piece: it falls back to <0x0A>
            vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tok.add_special_tokens(specials)
    tok.normalizer = _sentencepiece_normalizer()
    tok.pre_tokenizer = _sentencepiece_pre_tokenizer()
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def t5_tokenizer(corpus: Iterable[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A T5-style tokenizer: SentencePiece unigram with `▁` for a leading space, no BOS, `</s>` closing
    every text, `<pad>` as id 0 (T5's decoder start)."""
    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Replace("\n", " ")  # T5's vocabulary has no newline
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        unk_token="<unk>",
        initial_alphabet=list(string.ascii_letters + string.digits + string.punctuation),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def _sentencepiece_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Pieces start at `▁`; a newline stands alone, so no piece spans two lines."""
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.Split("▁", behavior="merged_with_next")]
    )


def _sentencepiece_normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])


@dataclass
class LMSize:
    """The dimensions that distinguish members of a toy LLM family."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    ffn_mult: int = 4
    max_positions: int = 128


def opt_config(tokenizer: PreTrainedTokenizerFast, size: LMSize) -> OPTConfig:
    """An OPT config sized by `size`, with the token ids of `tokenizer`."""
    return OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        word_embed_proj_dim=size.hidden_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        ffn_dim=size.ffn_mult * size.hidden_size,
        max_position_embeddings=size.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dropout=0.0,
        attention_dropout=0.0,
    )


def llama_config(tokenizer: PreTrainedTokenizerFast, size: LMSize) -> LlamaConfig:
    """A LLaMA config sized by `size`, with the token ids of `tokenizer`."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.ffn_mult * size.hidden_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_heads,
        max_position_embeddings=size.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )


def t5_config(tokenizer: PreTrainedTokenizerFast, size: LMSize) -> T5Config:
    """A (Flan-)T5 config sized by `size`: gated-GELU feed-forward, relative positions, `size.num_layers`
    encoder and decoder layers."""
    return T5Config(
        vocab_size=len(tokenizer),
        d_model=size.hidden_size,
        d_kv=size.hidden_size // size.num_heads,
        d_ff=size.ffn_mult * size.hidden_size,
        num_layers=size.num_layers,
        num_heads=size.num_heads,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


@dataclass
class VPGSize:
    """Dimensions of a small ViT + Q-Former, BLIP-2 shaped."""

    image_size: int = 32
    patch_size: int = 4
    vision_hidden: int = 64
    vision_layers: int = 2
    qformer_hidden: int = 64
    qformer_layers: int = 2
    num_heads: int = 4
    num_query_tokens: int = 8


def vision_config(size: VPGSize) -> Blip2VisionConfig:
    """A ViT config ready to be trained: `initializer_range` 0.02, not the 1e-10 default."""
    return Blip2VisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=4 * size.vision_hidden,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.num_heads,
        image_size=size.image_size,
        patch_size=size.patch_size,
        initializer_range=0.02,
    )


def blip2_config(text_config, size: VPGSize, image_token_index: int) -> Blip2Config:
    """A BLIP-2 config ready to be trained: `initializer_range` 0.02, not the 1e-10 default."""
    vision = vision_config(size)
    qformer = Blip2QFormerConfig(
        hidden_size=size.qformer_hidden,
        intermediate_size=4 * size.qformer_hidden,
        num_hidden_layers=size.qformer_layers,
        num_attention_heads=size.num_heads,
        encoder_hidden_size=size.vision_hidden,
        cross_attention_frequency=1,
        initializer_range=0.02,
    )
    return Blip2Config(
        vision_config=vision,
        qformer_config=qformer,
        text_config=text_config,
        num_query_tokens=size.num_query_tokens,
        image_token_index=image_token_index,
    )


def image_processor(image_size: int) -> BlipImageProcessor:
    """The BLIP-2 image processor (OpenAI CLIP mean/std, bicubic) at `image_size` pixels."""
    return BlipImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )


def blip2_model(config: Blip2Config, seed: int = 0) -> Blip2ForConditionalGeneration:
    """A randomly initialised BLIP-2 (seeded)."""
    import torch

    torch.manual_seed(seed)
    return Blip2ForConditionalGeneration(config)


def blip2_with_language_model(lm, tokenizer: PreTrainedTokenizerFast, size: VPGSize, seed: int = 0):
    """A fresh BLIP-2 (random ViT + Q-Former + projector) around an existing LM, with its processor.

    The tokenizer gains `<image>` and the LM an embedding row for it, as `Blip2Processor` expects.
    """
    import torch
    from transformers import Blip2Processor

    tokenizer.add_tokens(["<image>"], special_tokens=True)
    if len(tokenizer) > lm.get_input_embeddings().weight.shape[0]:
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    config = blip2_config(lm.config, size, tokenizer.convert_tokens_to_ids("<image>"))
    model = blip2_model(config, seed)
    model.language_model.load_state_dict(lm.state_dict())
    processor = Blip2Processor(
        image_processor=image_processor(size.image_size), tokenizer=tokenizer, num_query_tokens=size.num_query_tokens
    )
    torch.manual_seed(seed)
    return model, processor

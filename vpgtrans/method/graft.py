"""Graft a BLIP-2 visual prompt generator onto a new language model.

The result is a plain transformers `Blip2ForConditionalGeneration`: the source's
`vision_model`, `qformer` and `query_tokens` unchanged, the destination LLM unchanged but
for an `<image>` embedding row where it has none to spare, and a new
`language_projection` of shape [d_dst, d_qformer]. Every key is accounted for: only the
projection may be new, anything else missing or unexpected is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
)

from ..chat.template import IMAGE_TOKEN, attach_chat_template
from ..costs import llm_params
from ..errors import VPGTransError
from ..io.hub import check_weight_files, read_config
from ..presets import resolve_model_ref
from .converter import WordConverter, fuse_projection, load_tokenizer
from .embeddings import checkpoint_key_index, read_tensor

GENERATIVE_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
VPG_PREFIXES = ("vision_model.", "qformer.", "query_tokens")
# What the method trains (stage 2; stage 1 trains the projector alone): kept in fp32 whatever the
# precision of the frozen ViT and LLM.
TRAINABLE_VPG = ("qformer", "query_tokens", "vision_model.post_layernorm", "language_projection")
PROJECTION_KEYS = {"language_projection.weight", "language_projection.bias"}


def _check_loading_info(ref: str, info: dict, allowed_missing: set[str] = frozenset()) -> None:
    problems = []
    missing = sorted(set(info.get("missing_keys", [])) - allowed_missing)
    if missing:
        problems.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected keys {sorted(info['unexpected_keys'])[:5]}")
    if info.get("mismatched_keys"):
        problems.append(
            f"shape-mismatched keys {[k[0] if isinstance(k, tuple) else k for k in info['mismatched_keys']][:5]}"
        )
    if problems:
        raise VPGTransError(f"{ref}: checkpoint does not match its config: " + "; ".join(problems))


def check_blip2_ref(ref: str) -> None:
    """Fail early, naming the field, unless `ref` holds a BLIP-2 checkpoint."""
    config = read_config(ref)
    check_weight_files(ref)
    if config.get("model_type") != "blip-2":
        raise VPGTransError(
            f"{ref}: config.json model_type is {config.get('model_type')!r}, expected 'blip-2' "
            "(a Blip2ForConditionalGeneration checkpoint such as Salesforce/blip2-opt-2.7b)"
        )


def check_language_model_ref(ref: str) -> None:
    """Fail early, naming the field, unless `ref` holds a generative language model transformers can
    build: any causal LM, or an encoder-decoder (T5) whose encoder reads the soft prompt."""
    config = read_config(ref)
    check_weight_files(ref)
    kind = config.get("model_type")
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        raise VPGTransError(
            f"{ref}: config.json model_type is {kind!r}, which is not a generative language model "
            "(a causal LM, or an encoder-decoder such as T5)"
        )
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith(GENERATIVE_HEADS) for a in architectures):
        raise VPGTransError(
            f"{ref}: config.json architectures {architectures} hold no generative head "
            f"({', '.join(GENERATIVE_HEADS)}): an encoder-only model, even of a type with a causal-LM class (BERT), "
            "does not generate"
        )
    try:
        llm_params(config)  # the cost accounting must count it, or the run would fail after its warm-up
    except (KeyError, ValueError) as exc:
        raise VPGTransError(f"{ref}: the cost accounting cannot count this model's parameters ({exc})") from exc


def load_blip2(ref: str, dtype: torch.dtype = torch.float32) -> tuple[Blip2ForConditionalGeneration, Blip2Processor]:
    """A BLIP-2 checkpoint and its processor, every weight checked."""
    check_blip2_ref(ref)
    path = resolve_model_ref(ref)
    model, info = Blip2ForConditionalGeneration.from_pretrained(path, dtype=dtype, output_loading_info=True)
    _check_loading_info(ref, info)
    if dtype != torch.float32:
        _reload_trainable_in_fp32(model, ref)
    try:
        processor = Blip2Processor.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise VPGTransError(f"{ref}: cannot load its Blip2Processor (image processor + tokenizer): {exc}") from exc
    if processor.chat_template is None:  # transformers' Blip2Processor drops chat_template.jinja on loading;
        processor.chat_template = processor.tokenizer.chat_template  # its tokenizer reads the same file
    return model.eval(), processor


def _reload_trainable_in_fp32(model: Blip2ForConditionalGeneration, ref: str) -> None:
    """The trainable VPG parts read again from the checkpoint in fp32: loaded in half precision with
    the rest, they (the source projector above all, which the fusion multiplies) would be rounded."""
    keys = checkpoint_key_index(ref)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(TRAINABLE_VPG) and param.dtype != torch.float32 and name in keys:
                param.data = read_tensor(keys, name).to(torch.float32)


def is_causal_lm_ref(ref: str) -> bool:
    """Whether `ref`'s LLM is decoder-only (chat and instruction tuning need one)."""
    return read_config(ref).get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def load_language_model(
    ref: str, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal or encoder-decoder language model and its tokenizer, every weight checked."""
    check_language_model_ref(ref)
    loader = AutoModelForCausalLM if is_causal_lm_ref(ref) else AutoModelForSeq2SeqLM
    model, info = loader.from_pretrained(resolve_model_ref(ref), dtype=dtype, output_loading_info=True)
    _check_loading_info(ref, info)
    return model.eval(), load_tokenizer(ref)


@dataclass
class GraftReport:
    """What the graft inherited, added and initialised."""

    inherited_vpg_keys: int
    inherited_lm_keys: int
    new_keys: list[str]
    image_token_id: int
    embedding_rows_before: int
    embedding_rows_after: int
    projector_init: str
    notes: list[str] = field(default_factory=list)
    prompt_scale: float | None = None  # factor applied by prompt_scale.match_prompt_scale


def add_image_token(lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """Give the tokenizer `<image>` (and a pad token) and the embedding a row for it; returns (rows before, after)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    rows = lm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        # Deterministic new rows (the mean of the old ones) instead of a random draw.
        tables = {lm.get_input_embeddings().weight, lm.get_output_embeddings().weight}
        with torch.no_grad():
            for table in tables:
                table[rows:] = table[:rows].mean(dim=0)
    return rows, lm.get_input_embeddings().weight.shape[0]


def caption_generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """Stop at the end token or a newline, as BLIP-2 captions do; beam 5, at most 30 new tokens;
    never emit `<image>`."""
    eos = [tokenizer.eos_token_id]
    newline = tokenizer.encode("\n", add_special_tokens=False)
    if len(newline) == 1 and newline[0] not in eos:
        eos.append(newline[0])
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        num_beams=5,
        max_new_tokens=30,
        suppress_tokens=[tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)],
    )


def graft(
    source: Blip2ForConditionalGeneration,
    source_processor: Blip2Processor,
    lm: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    converter: WordConverter | None = None,
    seed: int = 0,
) -> tuple[Blip2ForConditionalGeneration, Blip2Processor, GraftReport]:
    """Compose source VPG + destination LLM into one BLIP-2; fused projector if a converter is given."""
    rows_before, rows_after = add_image_token(lm, tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    config = Blip2Config(
        vision_config=source.config.vision_config.to_dict(),
        qformer_config=source.config.qformer_config.to_dict(),
        text_config=lm.config.to_dict(),
        num_query_tokens=source.config.num_query_tokens,
        image_token_index=image_token_id,
    )
    with torch.device("meta"):
        target = Blip2ForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in target.state_dict().items()}

    projection = _new_projection(source, lm.config.hidden_size, converter, seed)
    target.vision_model, target.qformer, target.query_tokens = source.vision_model, source.qformer, source.query_tokens
    target.language_model, target.language_projection = lm, projection
    target.config.text_config = lm.config

    vpg_keys = {k: tuple(v.shape) for k, v in source.state_dict().items() if k.startswith(VPG_PREFIXES)}
    lm_keys = {f"language_model.{k}": tuple(v.shape) for k, v in lm.state_dict().items()}
    inherited = {**vpg_keys, **lm_keys}
    new = set(expected) - set(inherited)
    unexpected = set(inherited) - set(expected)
    mismatched = [k for k in set(inherited) & set(expected) if inherited[k] != expected[k]]
    if new - PROJECTION_KEYS or unexpected or mismatched:
        raise VPGTransError(
            "graft does not fit the BLIP-2 layout: "
            f"uninherited {sorted(new - PROJECTION_KEYS)[:5]}, unexpected {sorted(unexpected)[:5]}, "
            f"shape-mismatched {sorted(mismatched)[:5]}"
        )
    if any(p.is_meta for p in target.parameters()):
        raise VPGTransError("graft left parameters uninitialised (meta tensors)")
    target.generation_config = caption_generation_config(tokenizer)
    processor = Blip2Processor(
        image_processor=source_processor.image_processor, tokenizer=tokenizer, num_query_tokens=config.num_query_tokens
    )
    attach_chat_template(processor, config.num_query_tokens)
    report = GraftReport(
        inherited_vpg_keys=len(vpg_keys),
        inherited_lm_keys=len(lm_keys),
        new_keys=sorted(new),
        image_token_id=image_token_id,
        embedding_rows_before=rows_before,
        embedding_rows_after=rows_after,
        projector_init="fused" if converter is not None else "random",
    )
    return target.eval(), processor, report


def _new_projection(
    source: Blip2ForConditionalGeneration, dst_dim: int, converter: WordConverter | None, seed: int
) -> torch.nn.Linear:
    src_proj = source.language_projection
    projection = torch.nn.Linear(src_proj.in_features, dst_dim)
    if converter is None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            projection.weight.normal_(0.0, source.config.initializer_range, generator=generator)
            projection.bias.zero_()
        return projection
    if tuple(converter.weight.shape) != (dst_dim, src_proj.out_features):
        raise VPGTransError(
            f"converter maps {converter.weight.shape[1]}-d to {converter.weight.shape[0]}-d, but the source projector "
            f"outputs {src_proj.out_features}-d and the destination embeds in {dst_dim}-d: fit it for this pair"
        )
    weight, bias = fuse_projection(converter, src_proj.weight.detach(), src_proj.bias.detach())
    with torch.no_grad():
        projection.weight.copy_(weight)
        projection.bias.copy_(bias)
    return projection


def reinitialise_vpg(model: Blip2ForConditionalGeneration, seed: int, std: float = 0.02) -> None:
    """Fresh Q-Former, query tokens and projector (BERT-style init), ViT untouched: the
    training-from-scratch baseline. Explicit, because transformers' init helpers skip
    tensors already marked as loaded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in [*model.qformer.modules(), model.language_projection]:
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, torch.nn.Embedding):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
        model.query_tokens.copy_(torch.randn(model.query_tokens.shape, generator=generator) * std)

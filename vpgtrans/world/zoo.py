"""The zoo recipe's settings (`recipes/toy/zoo.toml`), parsed strictly into dataclasses.

`recipes/toy/build_zoo.py` reads its configuration through `load_zoo_config`, so a typo in the
recipe is an error naming the file, the table and the key, never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import check_value, from_mapping, option
from ..errors import VPGTransError
from .scene import WorldConfig

LM_FAMILIES = ("opt", "llama", "t5")  # each with its tokenizer: byte-level BPE, SentencePiece BPE, unigram


@dataclass(frozen=True)
class Tokenizers:
    texts: int  # world texts the tokenizers are trained on
    byte_level_vocab: int  # OPT family (GPT-2 byte-level BPE)
    sentencepiece_vocab: int  # LLaMA family (SentencePiece-style, + 256 byte-fallback tokens)
    unigram_vocab: int  # T5 family (SentencePiece unigram)


@dataclass(frozen=True)
class LMPretraining:
    texts: int
    heldout_texts: int
    max_tokens: int
    batch_size: int
    lr: float


@dataclass(frozen=True)
class LanguageModel:
    family: str  # "opt", "llama" or "t5" (LM_FAMILIES)
    tie_embeddings: bool
    hidden_size: int
    num_layers: int
    num_heads: int
    steps: int


@dataclass(frozen=True)
class ChatLanguageModel:
    """A chat LM fine-tuned from one of the zoo's LMs on world dialogues (the scene given as text)."""

    base: str = option(help="an [lms.*] entry of family llama: RoPE lets max_positions grow")
    steps: int = option(help="optimizer steps", minimum=1)
    batch_size: int = option(help="conversations (or plain texts) a step", minimum=1)
    lr: float = option(help="peak learning rate of the zoo's warm-up + cosine", minimum=0)
    dialogues: int = option(help="training dialogues", minimum=1)
    heldout_dialogues: int = option(help="dialogues whose answers are decoded and scored", minimum=1)
    max_tokens: int = option(help="tokens of a rendered dialogue kept (longer ones are cut at the end)", minimum=8)
    max_positions: int = option(help="max_position_embeddings of the saved config", minimum=8)
    mix: float = option(help="share of steps on plain pretraining texts (loss on every token), in [0, 1)", minimum=0)


@dataclass(frozen=True)
class Vision:
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    steps: int
    batch_size: int
    lr: float
    train_images: int


@dataclass(frozen=True)
class QFormerPretraining:
    steps: int
    batch_size: int
    lr: float
    train_images: int


@dataclass(frozen=True)
class SourceBlip2:
    lm: str
    qformer_hidden: int
    qformer_layers: int
    num_heads: int
    num_query_tokens: int
    train_images: int
    steps: int
    batch_size: int
    lr: float


@dataclass(frozen=True)
class Evaluation:
    heldout_images: int
    seed: int


@dataclass(frozen=True)
class ZooConfig:
    seed: int
    image_size: int
    world: dict[str, Any]  # WorldConfig fields
    tokenizers: Tokenizers
    lm_pretraining: LMPretraining
    lms: dict[str, LanguageModel]
    chat_lms: dict[str, ChatLanguageModel]
    vision: Vision
    qformer_pretraining: QFormerPretraining
    source_blip2: SourceBlip2
    evaluation: Evaluation


def _table(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise VPGTransError(f"{where}: expected a table, got {values!r}")
    checked = from_mapping(cls, values, where)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in checked]
    if missing:
        raise VPGTransError(f"{where}: missing key(s) {', '.join(missing)}")
    return cls(**checked)


def _check_chat_lm(chat: ChatLanguageModel, lms: dict[str, LanguageModel], where: str) -> None:
    """The base must be a LLaMA-family LM of the zoo, the mix a share below one."""
    if chat.base not in lms:
        raise VPGTransError(f"{where}: base {chat.base!r} is not one of [lms.*]")
    if lms[chat.base].family != "llama":
        raise VPGTransError(
            f"{where}: base {chat.base!r} is family {lms[chat.base].family!r}; max_positions needs llama"
        )
    if chat.mix >= 1:
        raise VPGTransError(f"{where}: mix must be below 1 (some steps train on dialogues), not {chat.mix!r}")


def load_zoo_config(path: str | Path) -> dict[str, Any]:
    """The zoo recipe at `path`, checked, as the plain dict the build script and zoo.json use."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise VPGTransError(f"{path}: {exc}") from exc
    nested = {
        "tokenizers": Tokenizers,
        "lm_pretraining": LMPretraining,
        "vision": Vision,
        "qformer_pretraining": QFormerPretraining,
        "source_blip2": SourceBlip2,
        "evaluation": Evaluation,
    }
    names = {f.name for f in dataclasses.fields(ZooConfig)}
    unknown = sorted(set(data) - names)
    missing = sorted(names - set(data))
    if unknown or missing:
        raise VPGTransError(f"{path}: unknown key(s) {unknown}, missing key(s) {missing}")
    world = {f.name for f in dataclasses.fields(WorldConfig)} - {"image_size"}
    if set(data["world"]) - world:
        raise VPGTransError(f"{path} [world]: unknown key(s) {sorted(set(data['world']) - world)}")
    config = ZooConfig(
        seed=check_value(ZooConfig, "seed", data["seed"], str(path)),
        image_size=check_value(ZooConfig, "image_size", data["image_size"], str(path)),
        world=from_mapping(WorldConfig, data["world"], f"{path} [world]"),
        lms={name: _table(LanguageModel, body, f"{path} [lms.{name}]") for name, body in data["lms"].items()},
        chat_lms={
            name: _table(ChatLanguageModel, body, f"{path} [chat_lms.{name}]")
            for name, body in data["chat_lms"].items()
        },
        **{key: _table(cls, data[key], f"{path} [{key}]") for key, cls in nested.items()},
    )
    for name, lm in config.lms.items():
        if lm.family not in LM_FAMILIES:
            raise VPGTransError(f"{path} [lms.{name}]: family {lm.family!r} is not one of {', '.join(LM_FAMILIES)}")
    for name, chat in config.chat_lms.items():
        _check_chat_lm(chat, config.lms, f"{path} [chat_lms.{name}]")
        if name in config.lms:
            raise VPGTransError(f"{path} [chat_lms.{name}]: {name!r} is also an [lms.*] entry; one folder each")
    if config.source_blip2.lm not in config.lms:
        raise VPGTransError(f"{path} [source_blip2]: lm {config.source_blip2.lm!r} is not one of [lms.*]")
    return dataclasses.asdict(config)

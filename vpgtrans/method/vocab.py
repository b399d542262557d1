"""Align two vocabularies by what their tokens spell.

The paper pairs tokens by position inside captions that happen to tokenise to the same
length, which silently drops most captions across tokenizers and pairs OPT `</s>` with
LLaMA `<s>`. Here every token is reduced to the bytes it stands for, whatever the
convention (GPT-2 byte-level `Ġ`, SentencePiece `▁`, `<0xNN>` byte fallback), and tokens
that spell the same bytes are paired; special tokens pair by role.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from transformers import PreTrainedTokenizerBase
from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIAL_ROLES = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id")
SENTENCEPIECE_SPACE = "▁"


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-character alphabet for the 256 bytes, inverted."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


def tokenizer_convention(tokenizer: PreTrainedTokenizerBase) -> str:
    """'byte-level', 'sentencepiece' or 'plain', read from the tokenizer's own pipeline."""
    spec = json.dumps(json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder"), ensure_ascii=False)
    if "ByteLevel" in spec:
        return "byte-level"
    if SENTENCEPIECE_SPACE in spec or "Metaspace" in spec:
        return "sentencepiece"
    return "plain"


def _is_byte_token(token: str) -> bool:
    return len(token) == 6 and token.startswith("<0x") and token.endswith(">")


def token_bytes(token: str, convention: str) -> bytes | None:
    """The bytes a vocabulary entry stands for; None if it cannot be decoded."""
    if convention == "byte-level":
        decoder = _byte_decoder()
        if not all(ch in decoder for ch in token):
            return None
        return bytes(decoder[ch] for ch in token)
    if convention == "sentencepiece" and _is_byte_token(token):
        return bytes([int(token[3:5], 16)])
    return token.replace(SENTENCEPIECE_SPACE, " ").encode("utf-8")


def surface_forms(tokenizer: PreTrainedTokenizerBase) -> dict[bytes, int]:
    """Bytes -> token id for every ordinary (non-special, non-added) token.

    When two tokens spell the same bytes (LLaMA's `▁` and `<0x20>`), the one the tokenizer
    actually emits wins: ordinary pieces before byte-fallback tokens, then the lowest id.
    """
    convention = tokenizer_convention(tokenizer)
    skip = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    forms: dict[bytes, int] = {}
    byte_fallback = lambda token: convention == "sentencepiece" and _is_byte_token(token)  # noqa: E731
    for token, idx in sorted(tokenizer.get_vocab().items(), key=lambda kv: (byte_fallback(kv[0]), kv[1])):
        if idx in skip:
            continue
        form = token_bytes(token, convention)
        if form is not None:
            forms.setdefault(form, idx)
    return forms


@dataclass
class VocabularyAlignment:
    """Pairs (source id, destination id) and how each was found."""

    src_ids: list[int]
    dst_ids: list[int]
    by_role: int  # how many pairs are special tokens matched by role
    single_bytes: int  # how many pairs spell a single byte (byte tokens, fallback tokens)

    def __len__(self) -> int:
        return len(self.src_ids)


def align_vocabularies(
    src: PreTrainedTokenizerBase, dst: PreTrainedTokenizerBase, src_rows: int, dst_rows: int
) -> VocabularyAlignment:
    """Pair special tokens spelled alike (`</s>` with `</s>`), then bos/eos/pad/unk left over by
    role, then ordinary tokens that spell the same bytes. Each source row pairs at most once (OPT's
    `</s>` is its BOS and its EOS: it pairs with LLaMA's `</s>`, not also with `<s>`), and only ids
    inside both tables count."""
    pairs: dict[int, int] = {}  # source id -> destination id
    roles, single = set(), set()

    def add(s: int | None, d: int | None) -> bool:
        if s is None or d is None or s in pairs or s >= src_rows or d >= dst_rows:
            return False
        pairs[s] = d
        return True

    dst_vocab = dst.get_vocab()
    for token, s in zip(src.all_special_tokens, src.all_special_ids):
        if token in dst_vocab and dst_vocab[token] in dst.all_special_ids and add(s, dst_vocab[token]):
            roles.add(s)
    for role in SPECIAL_ROLES:
        if add(getattr(src, role), getattr(dst, role)):
            roles.add(getattr(src, role))
    dst_forms = surface_forms(dst)
    for form, s in surface_forms(src).items():
        if add(s, dst_forms.get(form)) and len(form) == 1:
            single.add(s)
    return VocabularyAlignment(
        src_ids=list(pairs), dst_ids=list(pairs.values()), by_role=len(roles), single_bytes=len(single)
    )


def same_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """Whether two tokenizers share their vocabulary, tokens added later (BLIP-2's <image>) aside."""

    def base(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
        added = tokenizer.get_added_vocab()
        return {token: i for token, i in tokenizer.get_vocab().items() if token not in added}

    return base(a) == base(b)


def token_counts(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> Counter:
    """How often each token id occurs when `texts` are tokenised (specials included)."""
    counts: Counter = Counter()
    texts = list(texts)
    for ids in tokenizer(texts)["input_ids"] if texts else []:
        counts.update(ids)
    return counts

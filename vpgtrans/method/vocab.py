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
    """Pair tokens that spell the same bytes, plus bos/eos/pad/unk by role; ids must index the tables."""
    pairs: dict[tuple[int, int], None] = {}
    single: set[tuple[int, int]] = set()
    for role in SPECIAL_ROLES:
        s, d = getattr(src, role), getattr(dst, role)
        if s is not None and d is not None:
            pairs[(s, d)] = None
    by_role = len(pairs)
    dst_forms = surface_forms(dst)
    for form, s in surface_forms(src).items():
        d = dst_forms.get(form)
        if d is not None:
            pairs[(s, d)] = None
            if len(form) == 1:
                single.add((s, d))
    kept = [(s, d) for s, d in pairs if s < src_rows and d < dst_rows]
    return VocabularyAlignment(
        src_ids=[s for s, _ in kept],
        dst_ids=[d for _, d in kept],
        by_role=by_role,
        single_bytes=sum(p in single for p in kept),
    )


def token_counts(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> Counter:
    """How often each token id occurs when `texts` are tokenised (specials included)."""
    counts: Counter = Counter()
    texts = list(texts)
    for ids in tokenizer(texts)["input_ids"] if texts else []:
        counts.update(ids)
    return counts

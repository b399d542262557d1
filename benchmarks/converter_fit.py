"""Benchmark: fit the word converter between real-size stand-ins of OPT-2.7B and LLaMA-7B.

Target (from the issue): fitting a 50,272 x 2,560 -> 32,000 x 4,096 pair stored as
safetensors takes < 2 min and < 4 GB peak RSS on a 2-core CPU machine (the reference
loads both models in fp32, ~27 GB, ~15 min on an A100).

No real checkpoint can be downloaded, so the benchmark first builds stand-ins in a
temporary folder (timed separately, then deleted):

* a source folder shaped like OPT-2.7B: `OPTConfig` with the real dimensions, a GPT-2
  style byte-level BPE tokenizer with 50,265 entries and a 2-shard safetensors checkpoint
  holding `model.decoder.embed_tokens.weight` [50272, 2560] fp16 next to decoys of real
  names and shapes;
* a destination folder shaped like LLaMA-7B: `LlamaConfig` with the real dimensions, a
  SentencePiece-style BPE tokenizer (byte fallback) with 32,000 entries and a 2-shard
  checkpoint holding `model.embed_tokens.weight` and `lm_head.weight` [32000, 4096] fp16;
* 10,000 synthetic captions.

Both vocabularies share a pool of English-like words (with and without a leading
space), as GPT-2 and LLaMA do; on the tokens that spell the same bytes the destination
embeddings are an affine image of the source ones plus noise, so the held-out cosine of
the fit is meaningful (the "noise ceiling" is what the true map itself scores).

Vocabularies are laid out directly (no training). Merges are empty and the BPE models
use `ignore_merges=True`, so a word in the vocabulary is one token, as a real BPE's
merges make it for frequent words; other text falls back to bytes.

`fit_converter` then runs in a fresh Python process, so its peak RSS (VmHWM of that
process) is the fit's own.

Usage: python benchmarks/converter_fit.py [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from transformers.convert_slow_tokenizer import bytes_to_unicode

TARGET_SECONDS = 120.0
TARGET_RSS_BYTES = 4e9  # "4 GB", read strictly: 4e9 bytes = 3.73 GiB
GIB = 2**30

SRC_EMBED_KEY = "model.decoder.embed_tokens.weight"
DST_EMBED_KEY = "model.embed_tokens.weight"

# Words that real captions are made of; the rest of the shared pool is generated.
CAPTION_WORDS = """
the of on in with and is are two three four an at near next to by from its their his her
man woman men women person people boy girl child children baby player group crowd couple
dog dogs cat cats horse horses cow cows sheep bird birds elephant elephants giraffe zebra bear
car cars bus truck train plane boat bike bicycle motorcycle street road field grass water beach
table plate food pizza sandwich cake bowl cup glass bottle kitchen room bed couch chair window
sitting standing walking riding holding eating looking playing flying lying parked running
red blue green white black yellow brown large small big little young old tall open front top
""".split()

ONSETS = [
    "",
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "br",
    "cr",
    "dr",
    "fr",
    "gr",
    "pl",
    "st",
    "sh",
    "ch",
    "th",
    "tr",
    "sl",
    "sp",
]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "ee", "oo"]
CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt"]


@dataclass(frozen=True)
class StandInSpec:
    """Sizes of the two stand-in models; the defaults are OPT-2.7B -> LLaMA-7B."""

    src_hidden: int = 2560
    src_layers: int = 32
    src_heads: int = 32
    src_ffn: int = 10240
    src_rows: int = 50272  # config vocab_size = embedding rows
    src_vocab: int = 50265  # tokenizer entries
    src_max_positions: int = 2048
    dst_hidden: int = 4096
    dst_layers: int = 32
    dst_heads: int = 32
    dst_ffn: int = 11008
    dst_rows: int = 32000
    dst_vocab: int = 32000
    dst_max_positions: int = 2048
    shared_words: int = 10000  # words spelled alike in both vocabularies (with a leading space)
    shared_bare_every: int = 2  # every n-th shared word is also in both without the leading space
    captions: int = 10000
    noise: float = 0.5  # aligned destination rows = affine(source) + noise * signal scale
    init_std: float = 0.02
    seed: int = 0


@dataclass
class StandIns:
    """What the builder wrote and what a correct fit must find."""

    src: Path
    dst: Path
    captions: Path
    src_embed_file: Path  # the shard holding SRC_EMBED_KEY
    dst_embed_file: Path
    expected_pairs: int  # tokens spelling the same bytes + bos/eos/unk by role
    expected_single_bytes: int
    expected_by_role: int
    noise_ceiling: float  # mean cosine(true affine image, stored row) on aligned rows
    disk_bytes: int


# ---------------------------------------------------------------- vocabularies


def word_stream(seed: int):
    """Distinct lowercase words (>= 2 letters): the caption words, then syllable-built ones."""
    rng = random.Random(seed)
    seen: set[str] = set()
    for word in CAPTION_WORDS:
        if word not in seen:
            seen.add(word)
            yield word
    while True:
        word = "".join(
            rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.choice((1, 2, 2, 3)))
        )
        if len(word) >= 2 and word not in seen:
            seen.add(word)
            yield word


def _fill(vocab: dict[str, int], size: int, forms) -> None:
    for form in forms:
        if len(vocab) >= size:
            return
        vocab.setdefault(form, len(vocab))


def build_vocabularies(spec: StandInSpec) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """(byte-level source vocab, SentencePiece-style destination vocab, shared words)."""
    words = word_stream(spec.seed)
    shared = [next(words) for _ in range(spec.shared_words)]
    space = bytes_to_unicode()[ord(" ")]  # "Ġ"

    src = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"])}
    _fill(src, spec.src_vocab, bytes_to_unicode().values())
    dst = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)])}
    singles = "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,'-"
    _fill(dst, spec.dst_vocab, singles)  # LLaMA has single-character pieces besides <0xNN>

    for i, word in enumerate(shared):
        _fill(src, spec.src_vocab, [space + word] + ([word] if i % spec.shared_bare_every == 0 else []))
        _fill(dst, spec.dst_vocab, ["▁" + word] + ([word] if i % spec.shared_bare_every == 0 else []))

    def own_forms(prefix: str):
        while True:
            word = next(words)  # every vocabulary-only word is unique to its vocabulary
            yield prefix + word
            yield word

    _fill(src, spec.src_vocab, own_forms(space))
    _fill(dst, spec.dst_vocab, own_forms("▁"))
    if len(src) != spec.src_vocab or len(dst) != spec.dst_vocab:
        raise ValueError(f"vocabularies of {len(src)} / {len(dst)} entries, wanted {spec.src_vocab} / {spec.dst_vocab}")
    return src, dst, shared


def expected_alignment(src: dict[str, int], dst: dict[str, int]) -> tuple[list[tuple[int, int]], int]:
    """Pairs spelling the same bytes (computed here from the layouts, not by vpgtrans) and how many are single bytes.

    The destination prefers an ordinary piece over its `<0xNN>` twin, as the tokenizer does.
    """
    decode = {c: b for b, c in bytes_to_unicode().items()}
    src_forms = {bytes(decode[c] for c in t): i for t, i in src.items() if i >= 4}
    dst_forms: dict[bytes, int] = {}
    for token, idx in sorted(dst.items(), key=lambda kv: (kv[0].startswith("<0x"), kv[1])):
        if idx < 3:
            continue
        form = (
            bytes([int(token[3:5], 16)])
            if token.startswith("<0x") and len(token) == 6
            else token.replace("▁", " ").encode()
        )
        dst_forms.setdefault(form, idx)
    pairs = [(s, dst_forms[f]) for f, s in src_forms.items() if f in dst_forms]
    return pairs, sum(len(f) == 1 for f in src_forms if f in dst_forms)


def byte_level_tokenizer(vocab: dict[str, int]):
    """OPT's convention: GPT-2 byte-level BPE, `</s>` as BOS and EOS, `<pad>`, `<unk>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], ignore_merges=True))
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def sentencepiece_tokenizer(vocab: dict[str, int]):
    """LLaMA's convention: `▁` for a leading space, `<0xNN>` byte fallback, no pad token."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True, ignore_merges=True))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def synthetic_captions(shared: list[str], n: int, seed: int) -> list[str]:
    """Captions of 6-14 shared words, Zipf-distributed (the real caption words come first)."""
    rng = random.Random(seed + 1)
    cum, total = [], 0.0
    for rank in range(len(shared)):
        total += 1.0 / (rank + 1)
        cum.append(total)
    return [" ".join(rng.choices(shared, cum_weights=cum, k=rng.randint(6, 14))) for _ in range(n)]


# ---------------------------------------------------------------- checkpoints


def _random_fp16(rows: int, cols: int, std: float, generator, chunk: int = 4096):
    import torch

    out = torch.empty(rows, cols, dtype=torch.float16)
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        out[start:stop] = torch.randn(stop - start, cols, generator=generator) * std
    return out


def write_sharded(folder: Path, shards: list[dict]) -> list[Path]:
    """Write `shards` as model-0000i-of-0000n.safetensors plus model.safetensors.index.json."""
    from safetensors.torch import save_file

    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map, total = {}, 0
    for name, tensors in zip(names, shards):
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        for key, tensor in tensors.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return [folder / n for n in names]


def build_stand_ins(root: str | Path, spec: StandInSpec = StandInSpec()) -> StandIns:
    """Write the source folder, destination folder and captions under `root`."""
    import torch
    from transformers import LlamaConfig, OPTConfig

    root = Path(root)
    src_dir, dst_dir = root / "opt-2.7b-standin", root / "llama-7b-standin"
    src_dir.mkdir(parents=True, exist_ok=True)
    dst_dir.mkdir(parents=True, exist_ok=True)

    src_vocab, dst_vocab, shared = build_vocabularies(spec)
    src_tok, dst_tok = byte_level_tokenizer(src_vocab), sentencepiece_tokenizer(dst_vocab)
    src_tok.save_pretrained(src_dir)
    dst_tok.save_pretrained(dst_dir)
    OPTConfig(
        vocab_size=spec.src_rows,
        hidden_size=spec.src_hidden,
        word_embed_proj_dim=spec.src_hidden,
        num_hidden_layers=spec.src_layers,
        num_attention_heads=spec.src_heads,
        ffn_dim=spec.src_ffn,
        max_position_embeddings=spec.src_max_positions,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=1,
        dtype="float16",
    ).save_pretrained(src_dir)
    LlamaConfig(
        vocab_size=spec.dst_rows,
        hidden_size=spec.dst_hidden,
        intermediate_size=spec.dst_ffn,
        num_hidden_layers=spec.dst_layers,
        num_attention_heads=spec.dst_heads,
        num_key_value_heads=spec.dst_heads,
        max_position_embeddings=spec.dst_max_positions,
        bos_token_id=1,
        eos_token_id=2,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        dtype="float16",
    ).save_pretrained(dst_dir)

    generator = torch.Generator().manual_seed(spec.seed)
    std = spec.init_std
    src_embed = _random_fp16(spec.src_rows, spec.src_hidden, std, generator)
    dst_embed = _random_fp16(spec.dst_rows, spec.dst_hidden, std, generator)
    pairs, single_bytes = expected_alignment(src_vocab, dst_vocab)
    s_ids = torch.tensor([s for s, _ in pairs])
    d_ids = torch.tensor([d for _, d in pairs])
    affine = torch.randn(spec.dst_hidden, spec.src_hidden, generator=generator) / math.sqrt(spec.src_hidden)
    shift = torch.randn(spec.dst_hidden, generator=generator) * std * 0.5
    signal = src_embed[s_ids].float() @ affine.T + shift
    stored = (signal + torch.randn(signal.shape, generator=generator) * std * spec.noise).half()
    dst_embed[d_ids] = stored
    ceiling = float(torch.nn.functional.cosine_similarity(signal, stored.float(), dim=-1).mean())
    del signal, stored, affine

    d, pos = spec.src_hidden, spec.src_max_positions + 2  # OPT's learned positions have an offset of 2
    src_files = write_sharded(
        src_dir,
        [
            {
                "model.decoder.embed_positions.weight": _random_fp16(pos, d, std, generator),
                "model.decoder.layers.0.self_attn.q_proj.weight": _random_fp16(d, d, std, generator),
                "model.decoder.layers.0.self_attn.q_proj.bias": torch.zeros(d, dtype=torch.float16),
            },
            {  # the embedding table in the second shard: the reader must follow the index
                SRC_EMBED_KEY: src_embed,
                "model.decoder.final_layer_norm.weight": torch.ones(d, dtype=torch.float16),
            },
        ],
    )
    del src_embed
    h = spec.dst_hidden
    dst_files = write_sharded(
        dst_dir,
        [
            {
                DST_EMBED_KEY: dst_embed,
                "model.layers.0.self_attn.q_proj.weight": _random_fp16(h, h, std, generator),
            },
            {  # same shape as the input table: a reader that matched by shape would take it
                "lm_head.weight": _random_fp16(spec.dst_rows, h, std, generator),
                "model.norm.weight": torch.ones(h, dtype=torch.float16),
            },
        ],
    )
    del dst_embed

    captions = root / "captions.json"
    captions.write_text(json.dumps(synthetic_captions(shared, spec.captions, spec.seed)))
    by_role = 2  # specials spelled alike: </s> (OPT's BOS and EOS, paired once) and <unk>; LLaMA has no pad
    return StandIns(
        src=src_dir,
        dst=dst_dir,
        captions=captions,
        src_embed_file=src_files[1],
        dst_embed_file=dst_files[0],
        expected_pairs=len(pairs) + by_role,
        expected_single_bytes=single_bytes,
        expected_by_role=by_role,
        noise_ceiling=ceiling,
        disk_bytes=sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
    )


# ---------------------------------------------------------------- the timed fit

FIT_SCRIPT = r"""
import dataclasses, json, resource, sys, time
from vpgtrans.method.converter import ConverterFitConfig, fit_converter
src, dst, captions = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
started = time.perf_counter()
converter = fit_converter(src, dst, captions, ConverterFitConfig())
wall = time.perf_counter() - started
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({
    "wall_s": wall,
    "vmhwm_bytes": int(status["VmHWM"].split()[0]) * 1024,
    "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "weight_shape": list(converter.weight.shape),
    "report": dataclasses.asdict(converter.report),
}))
"""


def time_fit(stand_ins: StandIns) -> dict:
    """Run fit_converter in a fresh interpreter; wall time of the call and that process's peak RSS.

    Peak RSS is VmHWM: a child's ru_maxrss can inherit the parent's high-water mark
    across fork/exec, VmHWM belongs to the new process image only.
    """
    proc = subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT, str(stand_ins.src), str(stand_ins.dst), str(stand_ins.captions)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"fit_converter failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown_table(spec: StandInSpec, stand_ins: StandIns, fit: dict) -> str:
    rep = fit["report"]
    words = rep["aligned_pairs"] - rep["pairs_by_role"] - rep["pairs_single_byte"]
    peak = fit["vmhwm_bytes"]
    ok_time, ok_rss = fit["wall_s"] < TARGET_SECONDS, peak < TARGET_RSS_BYTES
    rows = [
        (
            "source table (OPT-2.7B stand-in)",
            f"{spec.src_rows:,} x {spec.src_hidden:,} fp16, `{SRC_EMBED_KEY}` in shard 2 of 2",
        ),
        (
            "destination table (LLaMA-7B stand-in)",
            f"{spec.dst_rows:,} x {spec.dst_hidden:,} fp16, `{DST_EMBED_KEY}` in shard 1 of 2",
        ),
        (
            "tokenizers",
            f"byte-level BPE {spec.src_vocab:,} entries / SentencePiece-style BPE {spec.dst_vocab:,} entries",
        ),
        (
            "aligned pairs",
            f"{rep['aligned_pairs']:,} ({words:,} words, {rep['pairs_single_byte']} single bytes, "
            f"{rep['pairs_by_role']} by role); builder expected {stand_ins.expected_pairs:,}",
        ),
        ("captions", f"{rep['captions_total']:,}"),
        (
            "held-out cosine",
            f"{rep['heldout_cosine']:.3f} on {rep['heldout_pairs']:,} pairs "
            f"(train {rep['train_cosine']:.3f}; noise ceiling {stand_ins.noise_ceiling:.3f})",
        ),
        ("fit wall time", f"{fit['wall_s']:.1f} s"),
        ("peak RSS of the fit process", f"{peak / GIB:.2f} GiB ({peak / 1e9:.2f} GB)"),
        (
            "target: < 120 s and < 4 GB",
            f"{'PASS' if ok_time and ok_rss else 'FAIL'} "
            f"(time {'ok' if ok_time else 'over'}, memory {'ok' if ok_rss else 'over'})",
        ),
    ]
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where to build the stand-ins (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the stand-ins instead of deleting them")
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="converter-fit-", dir=args.workdir))
    spec = StandInSpec()
    try:
        started = time.perf_counter()
        stand_ins = build_stand_ins(root, spec)
        built = time.perf_counter() - started
        print(
            f"built stand-ins in {built:.1f} s under {root} ({stand_ins.disk_bytes / 1e9:.2f} GB on disk)", flush=True
        )
        fit = time_fit(stand_ins)
        print(
            f"fit process ru_maxrss {fit['ru_maxrss_bytes'] / GIB:.2f} GiB (VmHWM {fit['vmhwm_bytes'] / GIB:.2f} GiB); "
            f"converter weight {fit['weight_shape']}; report seconds {fit['report']['seconds']:.1f}"
        )
        print(f"source table read from {fit['report']['src_table']}")
        print(f"destination table read from {fit['report']['dst_table']}")
        print()
        print(markdown_table(spec, stand_ins, fit))
        good = fit["wall_s"] < TARGET_SECONDS and fit["vmhwm_bytes"] < TARGET_RSS_BYTES
        return 0 if good else 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

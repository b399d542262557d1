"""The word-embedding converter g(x) = W x + b and the fused projector initialisation.

VPGTrans initialises the destination projector as "converter after source projector":
the source soft prompt lives in the source LLM's input-embedding space, and g maps that
space onto the destination's. Two fits are offered: closed-form ridge on pairs aligned by
spelling (the default: exact, seconds, no lost captions) and the paper's recipe (cosine
loss, SGD lr 5.0 on position-paired caption tokens) so the two can be compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..errors import VPGTransError
from ..io.atomic import atomic_path
from ..presets import resolve_model_ref
from .config import CONVERTER_METHODS, ConverterFitConfig
from .embeddings import EmbeddingTable, read_input_embeddings
from .vocab import align_vocabularies, same_tokenizer, token_counts

MIN_PAIRS = 32
HELDOUT_FRACTION = 0.1


@dataclass
class ConverterReport:
    """What the fit saw and how well it generalises to held-out token pairs."""

    method: str
    src_dim: int
    dst_dim: int
    aligned_pairs: int
    pairs_by_role: int
    pairs_single_byte: int
    fit_pairs: int
    heldout_pairs: int
    heldout_cosine: float
    train_cosine: float
    captions_used: int = 0
    captions_total: int = 0
    seconds: float = 0.0
    src_table: str = ""
    dst_table: str = ""


@dataclass
class WordConverter:
    """An affine map from the source LLM's input-embedding space to the destination's."""

    weight: torch.Tensor  # [d_dst, d_src]
    bias: torch.Tensor  # [d_dst]
    report: ConverterReport | None = field(default=None, compare=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias

    def save(self, path: str | Path) -> None:
        metadata = {"report": json.dumps(asdict(self.report))} if self.report else {}
        with atomic_path(path) as tmp:
            save_file({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> WordConverter:
        path = Path(path)
        if not path.is_file():
            raise VPGTransError(f"{path}: converter file not found")
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        if set(tensors) != {"weight", "bias"}:
            raise VPGTransError(f"{path}: not a converter file (tensors {sorted(tensors)}, expected bias and weight)")
        report = ConverterReport(**json.loads(meta["report"])) if "report" in meta else None
        return cls(weight=tensors["weight"], bias=tensors["bias"], report=report)


def fuse_projection(
    converter: WordConverter, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projector equal to the converter applied after the source projector: W_c W_s, W_c b_s + b_c."""
    w_conv = converter.weight.to(torch.float64)
    fused_w = w_conv @ weight.to(torch.float64)
    fused_b = w_conv @ bias.to(torch.float64) + converter.bias.to(torch.float64)
    return fused_w.float(), fused_b.float()


def weighted_cosine(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> float:
    cos = torch.nn.functional.cosine_similarity(pred, target, dim=-1)
    return float((cos * weights).sum() / weights.sum())


def fit_ridge(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, ridge: float = 1e-3) -> WordConverter:
    """Weighted least squares with an intercept, ridge scaled to the data (float64 normal equations)."""
    w = (weights / weights.sum()).to(torch.float64)[:, None]
    # own float64 copies, centred in place: at 7B sizes each float64 copy of y is 0.5 GB
    xc, yc = x.to(torch.float64, copy=True), y.to(torch.float64, copy=True)
    mean_x, mean_y = (w.T @ xc)[0], (w.T @ yc)[0]
    xc -= mean_x
    yc -= mean_y
    xw = xc * w
    gram = xw.T @ xc
    lam = ridge * gram.diagonal().mean().clamp_min(1e-12)
    coef = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=torch.float64), xw.T @ yc)
    weight = coef.T
    return WordConverter(weight=weight.float(), bias=(mean_y - weight @ mean_x).float())


def fit_cosine_sgd(
    x: torch.Tensor, y: torch.Tensor, batches: Sequence[torch.Tensor], epochs: int, lr: float = 5.0, seed: int = 0
) -> WordConverter:
    """The paper's fit: minimise 1 - cos(g(x), y) with plain SGD; `batches` index rows of x/y."""
    generator = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(x.shape[1], y.shape[1])
    bound = 1 / math.sqrt(x.shape[1])
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
    for _ in range(epochs):
        for rows in batches:
            loss = 1 - torch.nn.functional.cosine_similarity(layer(x[rows]), y[rows], dim=-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return WordConverter(weight=layer.weight.detach().clone(), bias=layer.bias.detach().clone())


def _heldout_mask(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=generator)[: max(1, int(n * HELDOUT_FRACTION))]] = True
    return mask


def position_pairs(
    src_tok: PreTrainedTokenizerBase,
    dst_tok: PreTrainedTokenizerBase,
    captions: Sequence[str],
    batch_captions: int,
    rows: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], int]:
    """The paper's pairing: tokens at equal positions of captions that tokenise to equal lengths.

    Captions holding a token beyond either embedding table (`rows`) are skipped too.
    """
    src_all, dst_all, batches, used = [], [], [], 0
    src_ids, dst_ids = src_tok(list(captions))["input_ids"], dst_tok(list(captions))["input_ids"]
    start = 0
    for i in range(0, len(captions), batch_captions):
        count = 0
        for a, b in zip(src_ids[i : i + batch_captions], dst_ids[i : i + batch_captions]):
            if len(a) == len(b) and max(a) < rows[0] and max(b) < rows[1]:
                src_all.extend(a)
                dst_all.extend(b)
                count += len(a)
                used += 1
        if count:
            batches.append(torch.arange(start, start + count))
            start += count
    return torch.tensor(src_all, dtype=torch.long), torch.tensor(dst_all, dtype=torch.long), batches, used


def load_tokenizer(ref: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a plain LLM or BLIP-2 folder."""
    try:
        return AutoTokenizer.from_pretrained(resolve_model_ref(ref))
    except (OSError, ValueError) as exc:
        raise VPGTransError(f"{ref}: cannot load a tokenizer ({exc})") from exc


def fit_converter(
    src: str,
    dst: str,
    captions: Sequence[str] = (),
    config: ConverterFitConfig = ConverterFitConfig(),
    src_table: EmbeddingTable | None = None,
    dst_table: EmbeddingTable | None = None,
) -> WordConverter:
    """Fit g from the input embeddings of `src` to those of `dst` (each a BLIP-2 or LLM reference)."""
    import time

    started = time.perf_counter()
    src_tok, dst_tok = load_tokenizer(src), load_tokenizer(dst)
    src_table = src_table or read_input_embeddings(src)
    dst_table = dst_table or read_input_embeddings(dst)
    xs, ys = src_table.weight, dst_table.weight
    alignment = align_vocabularies(src_tok, dst_tok, xs.shape[0], ys.shape[0])
    words = len(alignment) - alignment.single_bytes - alignment.by_role
    if words < MIN_PAIRS:
        raise VPGTransError(
            f"{src} -> {dst}: only {words} multi-byte tokens spell the same in both vocabularies "
            f"(need at least {MIN_PAIRS}); the tokenizers have too little in common to fit a converter"
        )
    src_ids, dst_ids = torch.tensor(alignment.src_ids), torch.tensor(alignment.dst_ids)
    src_counts, dst_counts = token_counts(src_tok, captions), token_counts(dst_tok, captions)
    weights = torch.tensor(
        [
            config.frequency_floor + 0.5 * (src_counts[s] + dst_counts[d])
            for s, d in zip(alignment.src_ids, alignment.dst_ids)
        ],
        dtype=torch.float64,
    )
    heldout = _heldout_mask(len(alignment), config.seed)
    x, y = xs[src_ids].float(), ys[dst_ids].float()
    report_fields = dict(
        src_dim=xs.shape[1],
        dst_dim=ys.shape[1],
        aligned_pairs=len(alignment),
        pairs_by_role=alignment.by_role,
        pairs_single_byte=alignment.single_bytes,
        heldout_pairs=int(heldout.sum()),
        src_table=src_table.origin,
        dst_table=dst_table.origin,
        captions_total=len(captions),
    )
    if config.method == "ridge":
        probe = fit_ridge(x[~heldout], y[~heldout], weights[~heldout], config.ridge)
        final = fit_ridge(x, y, weights, config.ridge)
        fit_pairs, used = len(alignment), len(captions)
    elif config.method == "paper":
        if not captions:
            raise VPGTransError("--converter paper needs captions (--data) to pair tokens by position")
        epochs = config.paper_epochs or (5 if same_tokenizer(src_tok, dst_tok) else 8)
        rows = (xs.shape[0], ys.shape[0])
        ps, pd, batches, used = position_pairs(src_tok, dst_tok, captions, config.paper_batch_captions, rows)
        if not batches:
            raise VPGTransError(f"{src} -> {dst}: no caption tokenises to the same length with both tokenizers")
        fit = partial(fit_cosine_sgd, epochs=epochs, lr=config.paper_lr, seed=config.seed)
        final = fit(xs[ps].float(), ys[pd].float(), batches)
        # the held-out cosine, as for ridge: from a fit that never saw the held-out source tokens
        seen = ~torch.isin(ps, src_ids[heldout])
        kept = torch.cumsum(seen, 0) - 1  # new row index of each kept pair
        probe_batches = [kept[rows_[seen[rows_]]] for rows_ in batches if seen[rows_].any()]
        probe, fit_pairs = fit(xs[ps[seen]].float(), ys[pd[seen]].float(), probe_batches), len(ps)
    else:
        raise VPGTransError(f"converter method {config.method!r} is not one of: {', '.join(CONVERTER_METHODS)}")
    final.report = ConverterReport(
        method=config.method,
        fit_pairs=fit_pairs,
        heldout_cosine=weighted_cosine(probe(x[heldout]), y[heldout], weights[heldout].float()),
        train_cosine=weighted_cosine(final(x), y, weights.float()),
        captions_used=used,
        seconds=time.perf_counter() - started,
        **report_fields,
    )
    return final

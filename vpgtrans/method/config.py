"""How the word-embedding converter is fitted (no torch: the CLI builds its flags from it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option, validate

CONVERTER_METHODS = ("ridge", "paper")  # closed-form ridge (ours); the paper's cosine-loss SGD


@dataclass
class ConverterFitConfig:
    """How to fit the converter."""

    method: str = option(
        "ridge",
        "closed-form ridge on aligned vocabularies, or the paper's cosine-loss SGD",
        choices=CONVERTER_METHODS,
        flag="converter",
    )
    ridge: float = option(1e-3, "ridge penalty", minimum=0)
    frequency_floor: float = option(1.0, "weight of a token that never occurs in the captions", minimum=0)
    paper_lr: float = option(5.0, "SGD learning rate of the paper's fit", minimum=1e-12)
    paper_epochs: int | None = option(
        None, "epochs of the paper's fit (default: 5 within a tokenizer family, 8 across)", minimum=1
    )
    paper_batch_captions: int = option(4096, "captions per batch of the paper's fit", minimum=1)
    seed: int = option(0, "seed of the held-out split and the paper's fit", minimum=0)

    def __post_init__(self):
        validate(self, "converter settings")

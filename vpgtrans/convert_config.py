"""What `vpgtrans convert` and a LAVIS `--src` take (no torch: the CLI builds its flags from these)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .config import option

PREFIXES = ("opt", "llama", "llm", "t5")  # <x>_proj / <x>_model of LAVIS, VPGTrans and InstructBLIP-style files


@dataclass
class LavisSource:
    """The three files of a LAVIS / VPGTrans BLIP-2, and what their shapes do not say."""

    checkpoint: str = option(help="LAVIS / VPGTrans checkpoint (.pth): {'model': state_dict}")
    llm: str = option(help="the language model it was trained on: folder, hub id or preset")
    vit: str | None = option(None, "EVA ViT file (eva_vit_g.pth: keys without a prefix), unless the checkpoint has it")
    vit_heads: int = option(16, "attention heads of the ViT (EVA ViT-g: 16)", minimum=1)
    vit_layers: int = option(
        39, "ViT blocks kept; later ones are dropped (BLIP-2 keeps 39 of EVA ViT-g's 40)", minimum=1
    )
    qformer_heads: int = option(12, "attention heads of the Q-Former (BERT-base: 12)", minimum=1)
    trust_pickle: bool = option(False, "unpickle more than tensors (LAVIS saves its config): only for a trusted file")


LAVIS_FIELDS = [f.name for f in fields(LavisSource)]

"""How a chat decodes (no torch: `vpgtrans chat` and `vpgtrans serve` build their flags from it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option, validate
from ..errors import VPGTransError
from ..training.config import PRECISIONS


@dataclass
class ChatSettings:
    """Decoding of one answer. Temperature 0 decodes greedily (or by beam search); above 0 it samples,
    so the temperature and top-p always act."""

    max_new_tokens: int = option(300, "most tokens an answer may have (VL-Vicuna: 300)", minimum=1)
    num_beams: int = option(1, "beam width (answers stream only with 1)", minimum=1)
    temperature: float = option(0.0, "0 decodes greedily; above 0 samples at this temperature", minimum=0)
    top_p: float = option(1.0, "nucleus sampling mass when sampling", minimum=1e-6)
    max_context: int = option(
        2000, "prompt tokens kept; older turns are dropped, with a notice, to fit (VL-Vicuna: 2000)", minimum=16
    )
    seed: int | None = option(None, "seed of the sampler, for reproducible samples", minimum=0)

    def __post_init__(self):
        validate(self, "chat settings")
        if self.top_p > 1:
            raise VPGTransError(f"chat settings: top_p must be at most 1, not {self.top_p}")


@dataclass
class ChatModelArgs:
    """Which model `vpgtrans chat` and `vpgtrans serve` load, and how."""

    model: str = option(help="BLIP-2 folder with a chat template (from `vpgtrans transfer` or `instruct`)")
    precision: str = option("fp32", "model dtype (bf16 halves the memory; fp16 needs a GPU)", choices=PRECISIONS)


@dataclass
class ServeArgs:
    """Where `vpgtrans serve` listens and what it accepts."""

    host: str = option("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = option(7860, "port of the web page and of /v1/chat/completions", minimum=1)
    max_image_mb: float = option(10.0, "largest image accepted, in MB (an upload or a data URL)", minimum=0.01)
    max_request_mb: float = option(
        50.0, "largest /v1/chat/completions request body, in MB (its images come base64-encoded in it)", minimum=0.01
    )

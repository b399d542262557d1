"""vpgtrans: transfer a BLIP-2 visual prompt generator (VPG) to a new LLM (VPGTrans, NeurIPS 2023).

The public API, peft-style: a handful of functions and their configs.

    from vpgtrans import TransferConfig, TrainingConfig, transfer
    transfer(TransferConfig(src="blip2-opt-2.7b", dst="llama-7b", data="pairs.jsonl", out="runs/x",
                            training=TrainingConfig(precision="fp16", batch_size=16)))

Names load on first use, so `import vpgtrans` (and the CLI's argument parsing) stays cheap.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Bound every hub call (transformers' downloads included) unless the user chose otherwise: a hub
# that accepts connections and never answers would otherwise hang a run for minutes.
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")

__version__ = "0.2.0"

_EXPORTS = {
    "transfer": ("vpgtrans.pipeline", "run_transfer"),
    "TransferConfig": ("vpgtrans.pipeline", "TransferConfig"),
    "TrainingConfig": ("vpgtrans.training.stages", "TrainingConfig"),
    "fit_converter": ("vpgtrans.method.converter", "fit_converter"),
    "ConverterFitConfig": ("vpgtrans.method.converter", "ConverterFitConfig"),
    "WordConverter": ("vpgtrans.method.converter", "WordConverter"),
    "graft": ("vpgtrans.method.graft", "graft"),
    "evaluate": ("vpgtrans.evaluation.evaluate", "run_eval"),
    "EvalConfig": ("vpgtrans.evaluation.evaluate", "EvalConfig"),
    "Benchmark": ("vpgtrans.evaluation.evaluate", "Benchmark"),
    "compare": ("vpgtrans.efficiency.runner", "run_compare"),
    "CompareConfig": ("vpgtrans.efficiency.runner", "CompareConfig"),
    "VPGTransError": ("vpgtrans.errors", "VPGTransError"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vpgtrans' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

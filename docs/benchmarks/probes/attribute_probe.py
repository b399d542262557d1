"""Exploratory probe (not part of the library): which of a grid cell's attributes (colour,
shape, size) a linear head can read from a BLIP-2's Q-Former outputs and from its soft
prompt, on held-out scenes. Tells whether a VPG that captions only sizes and places has lost
what objects are, or carries it in a form its LLM does not read.

    python docs/benchmarks/probes/attribute_probe.py [BLIP2_FOLDER ...]   # default: the zoo's source

Per folder and feature (query outputs, soft prompt = projector outputs): a linear head on the
flattened features, trained on 4,000 scenes (AdamW 2e-3, 1,500 steps, batch 64), scored on
500 held-out scenes, over occupied cells only (chance: colour 1/6, shape 1/5, size 1/2).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "recipes" / "toy"))
import build_zoo  # noqa: E402  (the zoo recipe's per-cell targets and head trainer)

from vpgtrans import tiny, world  # noqa: E402
from vpgtrans.graft import load_blip2  # noqa: E402
from vpgtrans.prompt_scale import vpg_outputs  # noqa: E402

SETTINGS = {"lr": 2e-3, "steps": 1500, "batch_size": 64}


def per_attribute_accuracy(features: torch.Tensor, targets: torch.Tensor, classes: list[int], seed: int) -> list[float]:
    """Fit a linear head with the zoo recipe's trainer; held-out accuracy of colour, shape, size."""
    torch.manual_seed(seed)
    cells = targets.shape[1]
    head = torch.nn.Linear(features.shape[1], cells * sum(classes))

    def logits(x):
        return head(x).view(len(x), cells, sum(classes)).split(classes, dim=-1)

    build_zoo.fit_cell_attributes(logits, [head], [], features, targets, SETTINGS, seed)
    with torch.no_grad():
        predictions = torch.stack([o.argmax(-1) for o in logits(features[-500:])], dim=-1)
    test, occupied = targets[-500:], targets[-500:, :, 0] > 0
    return [round(float((predictions[..., i] == test[..., i])[occupied].float().mean()), 3) for i in range(3)]


def main() -> None:
    folders = sys.argv[1:] or ["checkpoints/toy-blip2-opt-s"]
    wcfg = world.WorldConfig(image_size=32)
    pixels, targets = build_zoo.cell_attribute_data(4000, wcfg, tiny.image_processor(32), seed=99)
    classes = build_zoo.attribute_classes(wcfg)
    for folder in folders:
        model, _ = load_blip2(folder)
        model.eval()
        with torch.no_grad():
            queries = torch.cat([vpg_outputs(model, px) for px in pixels.split(500)])
            prompts = model.language_projection(queries)
        for name, features in (("query outputs", queries), ("soft prompt", prompts)):
            colour, shape, size = per_attribute_accuracy(features.flatten(1), targets, classes, seed=0)
            print(f"RESULT {folder} {name}: colour {colour}, shape {shape}, size {size}", flush=True)


if __name__ == "__main__":
    main()

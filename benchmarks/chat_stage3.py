"""Benchmark: what stage 3 (instruction tuning) adds to a VL-Vicuna in miniature.

Runs the `vl-vicuna-toy` recipe as its two halves: the transfer (stages 1-2) onto the zoo's chat LM
`toy-vicuna`, then `instruct` (stage 3) on the training scenes' conversations; together they are
exactly `vpgtrans transfer --recipe vl-vicuna-toy`. Both models, and the text-only chat LM shown a blank
image, answer held-out multi-turn world conversations (every answer from the image and the gold
history before it) and are scored: answer accuracy on questions, attribute accuracy on descriptions.

Usage: python benchmarks/chat_stage3.py [--out runs/chat-stage3] [--limit 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vpgtrans import world
from vpgtrans.chat.evaluate import conversation_scores
from vpgtrans.chat.session import ChatModel
from vpgtrans.pipeline import run_single_stage, run_transfer
from vpgtrans.recipes import get_recipe
from vpgtrans.training.stages import INSTRUCT
from vpgtrans.transfer_config import StageRunConfig, TransferConfig
from vpgtrans.world.datasets import world_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/chat-stage3")
    parser.add_argument("--limit", type=int, default=100, help="held-out conversations scored")
    args = parser.parse_args()
    out = Path(args.out)
    recipe = get_recipe("vl-vicuna-toy")
    train = out / f"world-n{recipe.world_images}-seed{recipe.world_seed}"
    heldout = out / f"world-n{recipe.eval_images}-seed{recipe.eval_seed}"
    world_folder(train, recipe.world_images, recipe.world_seed)
    world_folder(heldout, recipe.eval_images, recipe.eval_seed)
    training = recipe.training_config()
    results: dict = {"recipe": recipe.name, "heldout": str(heldout), "limit": args.limit, "seconds": {}}

    started = time.perf_counter()
    transfer = TransferConfig(
        src=recipe.src, dst=recipe.dst, data=str(train / "captions.jsonl"), out=str(out / "transfer"), training=training
    )
    stage2 = run_transfer(transfer, resume=(out / "transfer" / "run.json").exists())
    results["seconds"]["stages 1-2"] = time.perf_counter() - started
    started = time.perf_counter()
    instruct = StageRunConfig(
        model=str(stage2), data=str(train / "conversations.jsonl"), out=str(out / "instruct"), training=training
    )
    stage3 = run_single_stage(INSTRUCT, instruct, resume=(out / "instruct" / "run.json").exists())
    results["seconds"]["stage 3"] = time.perf_counter() - started

    blank = out / "blank"  # the held-out conversations with every image blanked: what the LLM guesses unseeing
    if not (blank / "conversations.jsonl").exists():
        (blank / "images").mkdir(parents=True, exist_ok=True)
        lines = (heldout / "conversations.jsonl").read_text().splitlines()[: args.limit]
        for line in lines:
            name = json.loads(line)["image"]
            world.render(world.Scene(()), world.WorldConfig()).save(blank / name)
        (blank / "conversations.jsonl").write_text("\n".join(lines) + "\n")
    for name, model, folder in (
        ("after stages 1-2", stage2, heldout),
        ("after stage 3", stage3, heldout),
        ("after stage 3, blank image", stage3, blank),
    ):
        started = time.perf_counter()
        results[name] = conversation_scores(ChatModel.load(str(model)), folder, args.limit)
        results["seconds"][f"score {name}"] = time.perf_counter() - started
        print(name, json.dumps(results[name]), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "seconds"} | {"seconds": results["seconds"]}, indent=2))


if __name__ == "__main__":
    main()

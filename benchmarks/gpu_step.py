"""Benchmark: training steps and chat decoding of a real-size BLIP-2 (random weights), vpgtrans' trainer
against a plain transformers loop.

Shapes (`--size 7b`): EVA ViT-g/14 at 224 px (1408-d, 39 layers), BLIP-2's BERT-base Q-Former with 32
queries, and a LLaMA-7B destination (VL-LLaMA / VL-Vicuna): random weights measure speed and memory
honestly. `--size tiny` is a small shape for a CPU. Per stage (warm-up: projector only; fine-tuning:
Q-Former, queries, ln_vision, projector; instruction tuning: the same on 224-token conversations) it
runs `train_stage` (vpgtrans' trainer) and a plain loop (`loss.backward(); optimizer.step()` under
autocast, the same trainable set, batch and precision), each for `--steps` steps after `--warm` untimed
ones, and reports samples/s, MFU (the cost model's analytic FLOPs over time and the GPU's dense bf16 peak)
and peak memory. Chat decoding: `generate` at batch 1 from a 256-token prompt, time to the first token
and tokens/s over 128 new tokens.

Usage: python benchmarks/gpu_step.py [--size 7b|tiny] [--steps 10] [--warm 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Blip2Config, Blip2ForConditionalGeneration, LlamaConfig

from vpgtrans.costs import GPUS, training_flops
from vpgtrans.training.stages import FINETUNE, FP32_MASTERS, set_precision
from vpgtrans.training.trainer import StageConfig, make_accelerator, select_trainable, train_stage

SIZES = {
    "7b": {
        "vision": {
            "hidden_size": 1408,
            "intermediate_size": 6144,
            "num_hidden_layers": 39,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
        },  # fmt: skip
        "qformer": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "cross_attention_frequency": 2,
            "encoder_hidden_size": 1408,
        },  # fmt: skip
        "llm": {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "vocab_size": 32001,
        },  # fmt: skip
        "queries": 32,
    },
    "tiny": {
        "vision": {
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 4,
        },  # fmt: skip
        "qformer": {
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "cross_attention_frequency": 2,
            "encoder_hidden_size": 64,
        },  # fmt: skip
        "llm": {
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "vocab_size": 1001,
        },  # fmt: skip
        "queries": 8,
    },
}


@dataclass(frozen=True)
class Stage:
    name: str
    trainable: tuple[str, ...]
    batch: int
    text_tokens: int


def build(size: str, precision: str, device: str) -> Blip2ForConditionalGeneration:
    shape = SIZES[size]
    config = Blip2Config(
        vision_config=shape["vision"],
        qformer_config=shape["qformer"],
        text_config=LlamaConfig(**shape["llm"], max_position_embeddings=2048).to_dict(),
        num_query_tokens=shape["queries"],
        image_token_index=shape["llm"]["vocab_size"] - 1,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Blip2ForConditionalGeneration(config)
    return set_precision(model, precision)


def batch_of(model, batch: int, text_tokens: int) -> dict[str, torch.Tensor]:
    """Random pixels and text, `<image>` tokens first, the loss on the text."""
    config = model.config
    n, size = config.num_query_tokens, config.vision_config.image_size
    text = torch.randint(0, config.image_token_index, (batch, text_tokens))
    input_ids = torch.cat([torch.full((batch, n), config.image_token_index), text], dim=1)
    labels = input_ids.clone()
    labels[:, :n] = -100
    return {
        "pixel_values": torch.randn(batch, 3, size, size),
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
    }


class Repeat(torch.utils.data.Dataset):
    """One sample, again and again: the trainer's data path without disk or tokenizer costs."""

    def __init__(self, sample: dict[str, torch.Tensor], size: int):
        self.sample, self.size = sample, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.sample


def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(steps: int, warm: int, step) -> float:
    """Seconds of `steps` calls of `step` after `warm` untimed ones."""
    for _ in range(warm):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - started


def vpgtrans_trainer(model, stage: Stage, precision: str, steps: int, warm: int) -> float:
    """Seconds per timed step of `train_stage`, its own data loader, accelerate and checkpoint included."""
    sample = {k: v[0] for k, v in batch_of(model, 1, stage.text_tokens).items()}
    marks: dict[int, float] = {}

    def mark(result) -> None:
        sync()
        marks[result.steps] = time.perf_counter()

    config = StageConfig(stage.name, stage.trainable, warm + steps, lr=1e-5, batch_size=stage.batch,
                         checkpoint_every=10**6)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Repeat(sample, stage.batch * (warm + steps))
        train_stage(make_accelerator(precision), model, dataset, collate, config, Path(tmp), on_step=mark)
    return (marks[warm + steps] - marks[warm]) / steps


def plain_loop(model, stage: Stage, precision: str, steps: int, warm: int, device: str) -> float:
    """Seconds per timed step of the loop a transformers user writes."""
    select_trainable(model, stage.trainable)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.05)
    batch = {k: v.to(device) for k, v in batch_of(model, stage.batch, stage.text_tokens).items()}
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=precision != "fp32"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timed(steps, warm, step) / steps


def chat_decode(model, device: str, prompt: int = 256, new: int = 128) -> dict[str, float]:
    model.eval()
    config = model.config
    ids = batch_of(model, 1, prompt - config.num_query_tokens)
    dtype = model.vision_model.embeddings.patch_embedding.weight.dtype
    inputs = {k: v.to(device, dtype) if k == "pixel_values" else v.to(device) for k, v in ids.items() if k != "labels"}
    with torch.no_grad():
        first = timed(3, 1, lambda: model.generate(**inputs, max_new_tokens=1, do_sample=False)) / 3
        whole = timed(1, 0, lambda: model.generate(**inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False))
    return {"time_to_first_token_s": first, "tokens_per_s": (new - 1) / (whole - first)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="7b")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device, precision = ("cuda", "bf16") if cuda else ("cpu", "fp32")
    big = args.size == "7b"
    stages = (
        Stage("warmup", ("language_projection",), 32 if big else 8, 32),
        Stage("finetune", FINETUNE.trainable, 32 if big else 8, 32),
        Stage("instruct", FP32_MASTERS, 8 if big else 4, 192),
    )
    model = build(args.size, precision, device)
    peak = GPUS["h100"].peak_tflops * 1e12  # H100 and H200 share the dense bf16 peak (989 TFLOP/s)
    report = {"device": torch.cuda.get_device_name() if cuda else "cpu", "size": args.size, "precision": precision,
              "torch": torch.__version__, "stages": {}}  # fmt: skip
    for stage in stages:
        flops = training_flops(model.config, model.config, stage.batch, stage.text_tokens,
                               qformer_trained=stage.name != "warmup").total  # fmt: skip
        row = {"batch": stage.batch, "text_tokens": stage.text_tokens}
        for name, run in (
            ("vpgtrans", lambda: vpgtrans_trainer(model, stage, precision, args.steps, args.warm)),
            ("plain", lambda: plain_loop(model, stage, precision, args.steps, args.warm, device)),
        ):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            seconds = run()
            row[name] = {
                "samples_per_s": stage.batch / seconds,
                "mfu": flops / seconds / peak if cuda else None,
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            }
        row["speed_ratio"] = row["vpgtrans"]["samples_per_s"] / row["plain"]["samples_per_s"]
        report["stages"][stage.name] = row
        print(stage.name, json.dumps(row), flush=True)
    report["chat"] = chat_decode(model, device)
    print("chat", json.dumps(report["chat"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

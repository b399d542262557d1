#!/usr/bin/env python
"""Rebuild the miniature world's model zoo from nothing, deterministically.

    python recipes/toy/build_zoo.py [--config recipes/toy/zoo.toml] [--out checkpoints]

1. tokenizers of two families trained on world text (byte-level BPE; SentencePiece-style);
2. toy LLMs (toy-opt-s, toy-opt-l, toy-llama) pretrained on text that rewards reading the
   context (a description then its copy, or questions answered from it);
3. a ViT pretrained on attribute classification, then frozen, as BLIP-2's is;
4. toy-blip2-opt-s: BLIP-2's two stages in miniature on the frozen ViT: the Q-Former learns
   to read every grid cell (representation learning), then Q-Former + projector learn to
   caption through the frozen toy-opt-s with the same stage trainer `vpgtrans transfer` uses;
5. quality report (held-out perplexity; caption and VQA accuracy) in OUT/zoo.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

# MKL picks kernels by memory alignment and thread counts by load unless told not to, so two
# runs of the same recipe can differ in the last bits; strict conditional reproducibility and
# a fixed thread count pin them (set before torch loads MKL).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Blip2VisionModel

from vpgtrans import world
from vpgtrans.errors import VPGTransError
from vpgtrans.evaluation.evaluate import load_world, world_scores
from vpgtrans.pipeline import save_model
from vpgtrans.training.data import CaptionDataset, load_caption_data
from vpgtrans.training.run import collator_for
from vpgtrans.training.stages import FINETUNE, TrainingConfig
from vpgtrans.training.trainer import StageConfig, make_accelerator, train_stage
from vpgtrans.world import tiny
from vpgtrans.world.zoo import load_zoo_config

HERE = Path(__file__).resolve().parent


def lm_batches(tokenizer, texts: list[str], max_tokens: int) -> torch.Tensor:
    """BOS + text + EOS, right-padded with -100 labels past the end."""
    rows = [tokenizer(t)["input_ids"][: max_tokens - 1] + [tokenizer.eos_token_id] for t in texts]
    ids = torch.full((len(rows), max(map(len, rows))), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The zoo's one schedule: a 100-step linear ramp times a cosine decay over all steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )


def lm_loss(model, ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    mask = ids != -100
    return model(input_ids=torch.where(mask, ids, pad_id), attention_mask=mask.long(), labels=ids).loss


def pretrain_lm(model, tokenizer, texts: list[str], steps: int, cfg: dict, seed: int) -> list[float]:
    """Plain causal-LM pretraining, AdamW with cosine decay."""
    torch.manual_seed(seed)
    ids = lm_batches(tokenizer, texts, cfg["max_tokens"])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01)
    schedule = warmup_cosine(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        batch = ids[torch.randint(len(ids), (cfg["batch_size"],), generator=generator)]
        batch = batch[:, : int((batch != -100).sum(1).max())]
        loss = lm_loss(model, batch, pad)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], max_tokens: int) -> float:
    model.eval()
    ids = lm_batches(tokenizer, texts, max_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    total, count = 0.0, 0
    for start in range(0, len(ids), 100):
        batch = ids[start : start + 100]
        n = int((batch[:, 1:] != -100).sum())
        total += lm_loss(model, batch, pad).item() * n
        count += n
    return math.exp(total / count)


def attribute_targets(scene: world.Scene, config: world.WorldConfig) -> list[int]:
    """Per grid cell: colour, shape and size class (0 = empty cell)."""
    cells = {obj.position: obj for obj in scene.objects}
    targets = []
    for position in world.POSITIONS:
        obj = cells.get(position)
        targets += [
            0 if obj is None else 1 + list(config.colours).index(obj.colour),
            0 if obj is None else 1 + list(config.shapes).index(obj.shape),
            0 if obj is None else 1 + list(world.SIZES).index(obj.size),
        ]
    return targets


def cell_of_patches(image_size: int, patch_size: int) -> torch.Tensor:
    """Grid cell (0-8, reading order) of each patch, by the patch centre."""
    side = image_size // patch_size
    centres = (torch.arange(side) + 0.5) * patch_size
    band = (centres * 3 / image_size).long().clamp(max=2)
    return (band[:, None] * 3 + band[None, :]).flatten()


def cell_attribute_data(n: int, wcfg: world.WorldConfig, processor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n + 500 rendered scenes (the last 500 held out): pixels and per-cell targets [N, 9, 3]."""
    rng = np.random.default_rng(seed)
    scenes = [world.generate_scene(rng, wcfg) for _ in range(n + 500)]
    pixels = processor([world.render(s, wcfg) for s in scenes], return_tensors="pt")["pixel_values"]
    targets = torch.tensor([attribute_targets(s, wcfg) for s in scenes]).view(len(scenes), len(world.POSITIONS), 3)
    return pixels, targets


def fit_cell_attributes(
    logits,
    modules: list[torch.nn.Module],
    extra: list[torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cfg: dict,
    seed: int,
) -> float:
    """Train `modules` (+ `extra` tensors) so that `logits(inputs)` names every grid cell's colour,
    shape and size (AdamW, linear warm-up, cosine decay); returns held-out accuracy over the
    attributes of real objects (the last 500 rows)."""
    train_x, train_t, test_x, test_t = inputs[:-500], targets[:-500], inputs[-500:], targets[-500:]
    params = [p for m in modules for p in m.parameters()] + extra
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.05)
    schedule = warmup_cosine(optimizer, cfg["steps"])
    generator = torch.Generator().manual_seed(seed)
    for m in modules:
        m.train()
    for _ in range(cfg["steps"]):
        rows = torch.randint(len(train_x), (cfg["batch_size"],), generator=generator)
        outputs = logits(train_x[rows])
        loss = sum(
            torch.nn.functional.cross_entropy(o.flatten(0, 1), train_t[rows, :, i].flatten())
            for i, o in enumerate(outputs)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    for m in modules:
        m.eval()
    with torch.no_grad():
        predictions = torch.stack([o.argmax(-1) for o in logits(test_x)], dim=-1)  # [N, 9, 3]
    occupied = test_t[:, :, 0] > 0
    return float((predictions == test_t)[occupied].float().mean())


def attribute_classes(wcfg: world.WorldConfig) -> list[int]:
    """Classes per attribute (colour, shape, size), 0 meaning an empty cell."""
    return [len(wcfg.colours) + 1, len(wcfg.shapes) + 1, len(world.SIZES) + 1]


def pretrain_vit(
    cfg: dict, image_size: int, wcfg: world.WorldConfig, processor, seed: int
) -> tuple[Blip2VisionModel, float]:
    """Attribute classification per grid cell from the patch tokens inside it, by fixed
    pooling: features that describe each patch but need not say where it is. Then frozen."""
    size = tiny.VPGSize(
        image_size=image_size,
        patch_size=cfg["patch_size"],
        vision_hidden=cfg["hidden_size"],
        vision_layers=cfg["num_layers"],
        num_heads=cfg["num_heads"],
    )
    vision_config = tiny.vision_config(size)
    torch.manual_seed(seed)
    vit = Blip2VisionModel(vision_config)
    classes = attribute_classes(wcfg)
    head = torch.nn.Linear(vision_config.hidden_size, sum(classes))
    cells = cell_of_patches(image_size, cfg["patch_size"])
    pool = torch.stack([(cells == c).float() / (cells == c).sum() for c in range(len(world.POSITIONS))])  # [9, patches]
    pixels, targets = cell_attribute_data(cfg["train_images"], wcfg, processor, seed)

    def logits(px):
        patches = vit.post_layernorm(vit(pixel_values=px).last_hidden_state[:, 1:])
        return head(pool @ patches).split(classes, dim=-1)  # per cell: colour, shape, size

    return vit, fit_cell_attributes(logits, [vit, head], [], pixels, targets, cfg, seed)


def pretrain_qformer(blip2, cfg: dict, wcfg: world.WorldConfig, processor, seed: int) -> float:
    """BLIP-2's first stage in miniature: on the frozen ViT, the Q-Former and its queries learn
    to name every grid cell's attributes from the query outputs alone. Thousands of steps
    (the part of a VPG that is expensive to learn, and what a transfer inherits); the
    generative stage then starts from it. Returns held-out attribute accuracy."""
    pixels, targets = cell_attribute_data(cfg["train_images"], wcfg, processor, seed)
    blip2.vision_model.eval()
    with torch.no_grad():  # the ViT is frozen: its features are computed once
        features = torch.cat([blip2.vision_model(pixel_values=px).last_hidden_state for px in pixels.split(500)])
    classes = attribute_classes(wcfg)
    cells = len(world.POSITIONS)
    torch.manual_seed(seed)
    head = torch.nn.Linear(
        blip2.config.num_query_tokens * blip2.config.qformer_config.hidden_size, cells * sum(classes)
    )

    def logits(feats):
        queries = blip2.query_tokens.expand(len(feats), -1, -1)
        out = blip2.qformer(query_embeds=queries, encoder_hidden_states=feats).last_hidden_state
        return head(out.flatten(1)).view(len(feats), cells, sum(classes)).split(classes, dim=-1)

    return fit_cell_attributes(logits, [blip2.qformer, head], [blip2.query_tokens], features, targets, cfg, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "zoo.toml"))
    parser.add_argument("--out", default=str(HERE.parents[1] / "checkpoints"))
    parser.add_argument(
        "--reuse-lms",
        action="store_true",
        help="keep the toy LLMs already in OUT (and their zoo.json entries) instead of pretraining "
        "them again: for recipe changes that touch only the VPG",
    )
    args = parser.parse_args()
    try:
        cfg = load_zoo_config(args.config)
    except VPGTransError as exc:
        parser.error(str(exc))
    out = Path(args.out)
    if args.reuse_lms and not (out / "zoo.json").exists():
        parser.error(f"--reuse-lms: {out / 'zoo.json'} not found; build the whole zoo there first")
    out.mkdir(parents=True, exist_ok=True)
    seed, image_size = cfg["seed"], cfg["image_size"]
    wcfg = world.WorldConfig(image_size=image_size, **cfg["world"])
    torch.use_deterministic_algorithms(True)
    report: dict = {"config": cfg, "models": {}}
    clock = time.perf_counter()

    # 1. tokenizers
    tok_texts = world.pretraining_texts(cfg["tokenizers"]["texts"], seed, wcfg)
    tokenizers = {
        "opt": tiny.byte_level_bpe_tokenizer(tok_texts, cfg["tokenizers"]["byte_level_vocab"]),
        "llama": tiny.sentencepiece_bpe_tokenizer(tok_texts, cfg["tokenizers"]["sentencepiece_vocab"]),
    }

    # 2. language models
    pre = cfg["lm_pretraining"]
    texts = world.pretraining_texts(pre["texts"] + pre["heldout_texts"], seed + 1, wcfg)
    train_texts, heldout_texts = texts[: pre["texts"]], texts[pre["texts"] :]
    previous = json.loads((out / "zoo.json").read_text())["models"] if args.reuse_lms else {}
    for name, spec in cfg["lms"].items():
        if name in previous and (out / name / "config.json").exists():
            report["models"][name] = previous[name]
            print(f"{name}: reused from {out / name}", flush=True)
            continue
        started = time.perf_counter()
        tokenizer = tokenizers[spec["family"]]
        size = tiny.LMSize(hidden_size=spec["hidden_size"], num_layers=spec["num_layers"], num_heads=spec["num_heads"])
        config = (tiny.opt_config if spec["family"] == "opt" else tiny.llama_config)(tokenizer, size)
        config.tie_word_embeddings = spec["tie_embeddings"]
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        losses = pretrain_lm(model, tokenizer, train_texts, spec["steps"], pre, seed)
        ppl = perplexity(model, tokenizer, heldout_texts, pre["max_tokens"])
        model.eval().save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
        report["models"][name] = {
            "kind": "causal-lm",
            "heldout_perplexity": ppl,
            "final_train_loss": losses[-1],
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": time.perf_counter() - started,
        }
        print(f"{name}: held-out perplexity {ppl:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)

    # 3. vision encoder
    started = time.perf_counter()
    processor = tiny.image_processor(image_size)
    vit, vit_accuracy = pretrain_vit(cfg["vision"], image_size, wcfg, processor, seed)
    report["models"]["vision"] = {"attribute_accuracy": vit_accuracy, "seconds": time.perf_counter() - started}
    print(f"ViT attribute accuracy {vit_accuracy:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)

    # 4. source BLIP-2 on the frozen small LM
    started = time.perf_counter()
    spec = cfg["source_blip2"]
    lm = AutoModelForCausalLM.from_pretrained(out / spec["lm"])
    lm.config._name_or_path = spec["lm"]  # the zoo name, not this build's folder
    tokenizer = AutoTokenizer.from_pretrained(out / spec["lm"])
    vsize = tiny.VPGSize(
        image_size=image_size,
        patch_size=cfg["vision"]["patch_size"],
        vision_hidden=cfg["vision"]["hidden_size"],
        vision_layers=cfg["vision"]["num_layers"],
        qformer_hidden=spec["qformer_hidden"],
        qformer_layers=spec["qformer_layers"],
        num_heads=spec["num_heads"],
        num_query_tokens=spec["num_query_tokens"],
    )
    blip2, blip2_processor = tiny.blip2_with_language_model(lm, tokenizer, vsize, seed)
    blip2.vision_model.load_state_dict(vit.state_dict())
    qformer_accuracy = pretrain_qformer(
        blip2, cfg["qformer_pretraining"], wcfg, blip2_processor.image_processor, seed + 3
    )
    report["models"]["qformer"] = {"attribute_accuracy": qformer_accuracy, "seconds": time.perf_counter() - started}
    print(f"Q-Former attribute accuracy {qformer_accuracy:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_file = world.write_dataset(Path(tmp) / "train", spec["train_images"], seed + 2, wcfg)
        heldout = Path(tmp) / "heldout"
        world.write_dataset(heldout, cfg["evaluation"]["heldout_images"], cfg["evaluation"]["seed"], wcfg)
        data = load_caption_data(train_file)
        stage = StageConfig(
            name="source",
            trainable=FINETUNE.trainable,
            steps=spec["steps"],
            lr=spec["lr"],
            schedule="cosine",
            min_lr_ratio=0.1,
            batch_size=spec["batch_size"],
            seed=seed,
            checkpoint_every=spec["steps"],
            dropout_in=("qformer",),
        )
        result = train_stage(
            make_accelerator(),
            blip2,
            CaptionDataset(data.records),
            collator_for(blip2_processor, blip2, TrainingConfig()),
            stage,
            Path(tmp) / "ckpt",
        )
        blip2.eval()
        scores = world_scores(blip2, blip2_processor, load_world(str(heldout)))
    save_model(blip2, blip2_processor, out / "toy-blip2-opt-s")
    report["models"]["toy-blip2-opt-s"] = {
        "kind": "blip2",
        "caption_attribute_accuracy": scores["caption"],
        "caption_cider": scores["cider"],
        "vqa_accuracy": scores["vqa"],
        "final_train_loss": result.losses[-1],
        "seconds": time.perf_counter() - started,
    }
    print(
        f"toy-blip2-opt-s: caption accuracy {scores['caption']:.1f}%, VQA {scores['vqa']:.1f}% "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    report["total_seconds"] = time.perf_counter() - clock
    (out / "zoo.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

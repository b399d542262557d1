#!/usr/bin/env python
"""Rebuild the miniature world's model zoo from nothing, deterministically.

    python recipes/toy/build_zoo.py [--config recipes/toy/zoo.toml] [--out checkpoints] [--only NAME ...]

1. tokenizers of three families trained on world text (byte-level BPE; SentencePiece BPE; unigram);
2. toy LLMs (toy-opt-s, toy-opt-l, toy-llama; the encoder-decoder toy-t5) pretrained on text that
   rewards reading the context (a description then its copy, or questions answered from it);
3. a ViT pretrained on attribute classification, then frozen, as BLIP-2's is;
4. toy-blip2-opt-s: BLIP-2's two stages in miniature on the frozen ViT: the Q-Former learns
   to read every grid cell (representation learning), then Q-Former + projector learn to
   caption through the frozen toy-opt-s with the same stage trainer `vpgtrans transfer` uses;
5. chat LMs (toy-vicuna): a toy LLM fine-tuned on world dialogues whose scene is given as text,
   rendered with the Vicuna-like template its tokenizer then carries, the loss on the answers only;
6. quality report (held-out perplexity; caption and VQA accuracy; chat answer accuracy) in OUT/zoo.json.

`--only NAME ...` builds just those LMs or chat LMs, reusing everything else in OUT, and merges their
entries into OUT/zoo.json.
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
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, Blip2VisionModel

from vpgtrans import world
from vpgtrans.chat.evaluate import TurnPrediction, summarise
from vpgtrans.chat.template import answer_spans, render
from vpgtrans.errors import VPGTransError
from vpgtrans.evaluation.evaluate import load_world, world_scores
from vpgtrans.pipeline import save_model
from vpgtrans.training.conversations import answer_labels
from vpgtrans.training.data import CaptionDataset, load_caption_data
from vpgtrans.training.run import collator_for
from vpgtrans.training.stages import FINETUNE, TrainingConfig
from vpgtrans.training.trainer import StageConfig, make_accelerator, train_stage
from vpgtrans.world import tiny
from vpgtrans.world.zoo import load_zoo_config

HERE = Path(__file__).resolve().parent
# The chat LMs' template (Vicuna-like, in words the toy tokenizers know); its end marker is the EOS token.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}Question: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}Answer: {{ m['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('roles are user and assistant; got ' + m['role']) }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)


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


def lm_loss(model, ids: torch.Tensor, pad_id: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Causal-LM loss on `labels` (default: every token of `ids`); -100 in `ids` marks padding."""
    mask = ids != -100
    return model(
        input_ids=torch.where(mask, ids, pad_id), attention_mask=mask.long(), labels=ids if labels is None else labels
    ).loss


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def update(model, optimizer: torch.optim.Optimizer, schedule, loss: torch.Tensor) -> None:
    """One optimizer step, gradients clipped to norm 1."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()


def pretrain_lm(model, tokenizer, texts: list[str], steps: int, cfg: dict, seed: int) -> list[float]:
    """Plain causal-LM pretraining, AdamW with cosine decay."""
    torch.manual_seed(seed)
    ids = lm_batches(tokenizer, texts, cfg["max_tokens"])
    pad = pad_id_of(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01)
    schedule = warmup_cosine(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        batch = ids[torch.randint(len(ids), (cfg["batch_size"],), generator=generator)]
        batch = batch[:, : int((batch != -100).sum(1).max())]
        loss = lm_loss(model, batch, pad)
        update(model, optimizer, schedule, loss)
        losses.append(loss.item())
    return losses


def perplexity(model, tokenizer, texts: list[str], max_tokens: int) -> float:
    return target_perplexity(model, lm_batches(tokenizer, texts, max_tokens), None, pad_id_of(tokenizer))


@torch.no_grad()
def target_perplexity(model, ids: torch.Tensor, labels: torch.Tensor | None, pad: int) -> float:
    """Perplexity over the target tokens (`labels`, default: every token of `ids`), 100 rows a batch."""
    model.eval()
    labels = ids if labels is None else labels
    total, count = 0.0, 0
    for start in range(0, len(ids), 100):
        batch, targets = ids[start : start + 100], labels[start : start + 100]
        n = int((targets[:, 1:] != -100).sum())
        total += lm_loss(model, batch, pad, targets).item() * n
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


# ---------------------------------------------------------------- chat LMs


def chat_batches(tokenizer, dialogues: list[list[dict]], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dialogues rendered with the tokenizer's chat template (at most `max_tokens`, -100 past the end) and
    their labels: a token is a target when its characters overlap an answer or the EOS after it."""
    rows = [answer_labels(tokenizer, *answer_spans(tokenizer, messages)) for messages in dialogues]
    rows = [(ids[:max_tokens], labels[:max_tokens]) for ids, labels in rows]
    ids = torch.full((len(rows), max(len(r) for r, _ in rows)), -100, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    for i, (row, targets) in enumerate(rows):
        ids[i, : len(row)], labels[i, : len(row)] = torch.tensor(row), torch.tensor(targets)
    return ids, labels


def finetune_chat(
    model, dialogues: tuple[torch.Tensor, torch.Tensor], plain: torch.Tensor, spec: dict, pad: int, seed: int
) -> list[float]:
    """AdamW with the zoo's schedule; a step trains on a batch of dialogues (loss on the answers) or, on a
    `mix` share of the steps spread evenly (never the first), on plain pretraining texts (loss on every
    token), so captions keep working. Returns the losses of the dialogue steps."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01)
    schedule = warmup_cosine(optimizer, spec["steps"])
    generator = torch.Generator().manual_seed(seed)
    dialogue_ids, dialogue_labels = dialogues
    losses = []
    model.train()
    for step in range(spec["steps"]):
        on_plain = math.floor((step + 1) * spec["mix"]) > math.floor(step * spec["mix"])  # `mix` of the steps
        source = plain if on_plain else dialogue_ids
        rows = torch.randint(len(source), (spec["batch_size"],), generator=generator)
        ids = source[rows]
        labels = ids if on_plain else dialogue_labels[rows]
        length = int((ids != -100).sum(1).max())
        loss = lm_loss(model, ids[:, :length], pad, labels[:, :length])
        update(model, optimizer, schedule, loss)
        if not on_plain:
            losses.append(loss.item())
    return losses


@torch.no_grad()
def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """Greedy continuations of rendered prompts up to the EOS, in prompt order; batched by length, left-padded."""
    model.eval()
    encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    pad = pad_id_of(tokenizer)
    answers = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, i in enumerate(rows):
            ids[j, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[j, width - len(encoded[i]) :] = 1
        output = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad,
        )
        for j, i in enumerate(rows):
            answers[i] = tokenizer.decode(output[j, width:], skip_special_tokens=True).strip()
    return answers


def dialogue_predictions(
    model, tokenizer, dialogues: list[tuple[str, list[world.Turn]]], max_new_tokens: int
) -> list[TurnPrediction]:
    """Each answer decoded greedily from the gold history before it (the scene given as text), and scored."""
    asked = [
        (number, index, turn, render(tokenizer, world.to_messages(turns, context)[: 2 * index + 1], True))
        for number, (context, turns) in enumerate(dialogues)
        for index, turn in enumerate(turns)
    ]
    answers = greedy_answers(model, tokenizer, [prompt for *_, prompt in asked], max_new_tokens)
    return [
        TurnPrediction(
            number,
            index,
            "",
            turn.kind,
            turn.question,
            turn.answer,
            text,
            world.score_answer(text, turn.answer, turn.kind),
        )
        for (number, index, turn, _), text in zip(asked, answers, strict=True)
    ]


def build_chat_lm(name: str, cfg: dict, wcfg: world.WorldConfig, plain: list[str], out: Path) -> dict:
    """Fine-tune the base LM in OUT into chat LM `name`; save it with its chat template; its zoo.json entry.
    `plain` are the LMs' pretraining texts, the last `heldout_texts` of them held out."""
    started = time.perf_counter()
    spec, pre, seed = cfg["chat_lms"][name], cfg["lm_pretraining"], cfg["seed"]
    tokenizer = AutoTokenizer.from_pretrained(out / spec["base"])
    tokenizer.chat_template = CHAT_TEMPLATE
    # RoPE has no learned positions: the same weights read a longer context.
    model = AutoModelForCausalLM.from_pretrained(out / spec["base"], max_position_embeddings=spec["max_positions"])
    pad = pad_id_of(tokenizer)
    train_plain, heldout_plain = plain[: pre["texts"]], plain[pre["texts"] :]
    dialogues = chat_batches(tokenizer, world.dialogue_texts(spec["dialogues"], seed + 4, wcfg), spec["max_tokens"])
    heldout = world.dialogue_turns(spec["heldout_dialogues"], cfg["evaluation"]["seed"], wcfg)
    heldout_batches = chat_batches(
        tokenizer, [world.to_messages(turns, context) for context, turns in heldout], spec["max_tokens"]
    )
    plain_ids = lm_batches(tokenizer, train_plain, pre["max_tokens"])
    losses = finetune_chat(model, dialogues, plain_ids, spec, pad, seed)
    scores = summarise(dialogue_predictions(model, tokenizer, heldout, max_new_tokens=48))
    answer_ppl = target_perplexity(model, *heldout_batches, pad)
    ppl = perplexity(model, tokenizer, heldout_plain, pre["max_tokens"])
    model.eval().save_pretrained(out / name)
    tokenizer.save_pretrained(out / name)
    print(
        f"{name}: held-out answer accuracy {scores['answer_accuracy']:.1f}%, description accuracy "
        f"{scores['description_accuracy']:.1f}% ({scores['turns']} turns), answer perplexity {answer_ppl:.3f}, "
        f"text perplexity {ppl:.3f} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    return {
        "kind": "causal-lm",
        "base": spec["base"],
        "heldout_answer_accuracy": scores["answer_accuracy"],
        "heldout_description_accuracy": scores["description_accuracy"],
        "heldout_accuracy_by_kind": scores["accuracy_by_kind"],
        "heldout_turns": scores["turns"],
        "heldout_answer_perplexity": answer_ppl,
        "heldout_perplexity": ppl,
        "final_train_answer_loss": losses[-1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------- the zoo, whole or in part


def build_tokenizers(cfg: dict, wcfg: world.WorldConfig) -> dict:
    """The three families' tokenizers, trained on world text (each family's drawn independently)."""
    texts = world.pretraining_texts(cfg["tokenizers"]["texts"], cfg["seed"], wcfg)
    return {
        "opt": tiny.byte_level_bpe_tokenizer(texts, cfg["tokenizers"]["byte_level_vocab"]),
        "llama": tiny.sentencepiece_bpe_tokenizer(texts, cfg["tokenizers"]["sentencepiece_vocab"]),
        "t5": tiny.t5_tokenizer(texts, cfg["tokenizers"]["unigram_vocab"]),
    }


def lm_texts(cfg: dict, wcfg: world.WorldConfig) -> list[str]:
    """The LMs' pretraining texts, the last `heldout_texts` held out."""
    pre = cfg["lm_pretraining"]
    return world.pretraining_texts(pre["texts"] + pre["heldout_texts"], cfg["seed"] + 1, wcfg)


def build_lm(name: str, cfg: dict, tokenizer, texts: list[str], out: Path) -> dict:
    """Pretrain LM `name` from scratch and save it with its tokenizer; its zoo.json entry."""
    if cfg["lms"][name]["family"] == "t5":
        return build_seq2seq_lm(name, cfg, tokenizer, texts, out)
    started = time.perf_counter()
    spec, pre, seed = cfg["lms"][name], cfg["lm_pretraining"], cfg["seed"]
    train_texts, heldout_texts = texts[: pre["texts"]], texts[pre["texts"] :]
    size = tiny.LMSize(hidden_size=spec["hidden_size"], num_layers=spec["num_layers"], num_heads=spec["num_heads"])
    config = (tiny.opt_config if spec["family"] == "opt" else tiny.llama_config)(tokenizer, size)
    config.tie_word_embeddings = spec["tie_embeddings"]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    losses = pretrain_lm(model, tokenizer, train_texts, spec["steps"], pre, seed)
    ppl = perplexity(model, tokenizer, heldout_texts, pre["max_tokens"])
    return save_lm(model, tokenizer, out / name, "causal-lm", "perplexity", ppl, losses, started)


def save_lm(model, tokenizer, folder: Path, kind: str, measure: str, ppl: float, losses: list[float], started: float):
    """Save a pretrained LM with its tokenizer, print its held-out `measure`, and return its zoo.json entry."""
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"{folder.name}: held-out {measure} {ppl:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return {
        "kind": kind,
        "heldout_perplexity": ppl,
        "final_train_loss": losses[-1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - started,
    }


def seq2seq_pairs(texts: list[str]) -> list[tuple[str, str]]:
    """(encoder text, decoder text) from the pretraining texts: the caption copied, and every question
    answered from it in BLIP-2 FlanT5's VQA format ("Question: ... Short answer:")."""
    pairs = []
    for text in texts:
        caption, *questions = text.split("\n")
        caption = caption.split(" . ")[0].removesuffix(" .")
        pairs.append((caption, caption))
        for line in questions:
            question, _, answer = line.removeprefix("Question: ").partition(" Answer: ")
            pairs.append((f"{caption} . Question: {question} Short answer:", answer))
    return pairs


def seq2seq_batches(tokenizer, pairs: list[tuple[str, str]], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder ids (pad-filled) and decoder labels (-100-filled), each text closed by the tokenizer's EOS."""
    inputs = [tokenizer(a)["input_ids"][:max_tokens] for a, _ in pairs]
    targets = [tokenizer(b)["input_ids"][:max_tokens] for _, b in pairs]
    ids = torch.full((len(pairs), max(map(len, inputs))), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(pairs), max(map(len, targets))), -100, dtype=torch.long)
    for i, (a, b) in enumerate(zip(inputs, targets)):
        ids[i, : len(a)], labels[i, : len(b)] = torch.tensor(a), torch.tensor(b)
    return ids, labels


def seq2seq_loss(model, ids: torch.Tensor, labels: torch.Tensor, pad: int) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=(ids != pad).long(), labels=labels).loss


def build_seq2seq_lm(name: str, cfg: dict, tokenizer, texts: list[str], out: Path) -> dict:
    """Pretrain the encoder-decoder LM `name` on `seq2seq_pairs`, AdamW with the zoo's schedule."""
    started = time.perf_counter()
    spec, pre, seed = cfg["lms"][name], cfg["lm_pretraining"], cfg["seed"]
    size = tiny.LMSize(hidden_size=spec["hidden_size"], num_layers=spec["num_layers"], num_heads=spec["num_heads"])
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(tiny.t5_config(tokenizer, size))
    ids, labels = seq2seq_batches(tokenizer, seq2seq_pairs(texts[: pre["texts"]]), pre["max_tokens"])
    test_ids, test_labels = seq2seq_batches(tokenizer, seq2seq_pairs(texts[pre["texts"] :]), pre["max_tokens"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=pre["lr"], weight_decay=0.01)
    schedule = warmup_cosine(optimizer, spec["steps"])
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(spec["steps"]):
        rows = torch.randint(len(ids), (pre["batch_size"],), generator=generator)
        batch, targets = ids[rows], labels[rows]
        batch = batch[:, : int((batch != tokenizer.pad_token_id).sum(1).max())].contiguous()
        targets = targets[:, : int((targets != -100).sum(1).max())].contiguous()
        loss = seq2seq_loss(model, batch, targets, tokenizer.pad_token_id)
        update(model, optimizer, schedule, loss)
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        total = count = 0.0
        for start in range(0, len(test_ids), 100):
            targets = test_labels[start : start + 100]
            n = int((targets != -100).sum())
            total += seq2seq_loss(model, test_ids[start : start + 100], targets, tokenizer.pad_token_id).item() * n
            count += n
    ppl = math.exp(total / count)
    return save_lm(model, tokenizer, out / name, "seq2seq-lm", "target perplexity", ppl, losses, started)


def build_source(cfg: dict, wcfg: world.WorldConfig, out: Path, report: dict) -> None:
    """The frozen ViT, the Q-Former's first stage and the source BLIP-2 on its frozen LM; their entries."""
    seed, image_size = cfg["seed"], cfg["image_size"]
    # the vision encoder
    started = time.perf_counter()
    processor = tiny.image_processor(image_size)
    vit, vit_accuracy = pretrain_vit(cfg["vision"], image_size, wcfg, processor, seed)
    report["models"]["vision"] = {"attribute_accuracy": vit_accuracy, "seconds": time.perf_counter() - started}
    print(f"ViT attribute accuracy {vit_accuracy:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)

    # the source BLIP-2 on the frozen small LM
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


def build_only(names: list[str], cfg: dict, wcfg: world.WorldConfig, out: Path) -> None:
    """Build just these LMs and chat LMs (LMs first), keep everything else in OUT, and merge their entries
    (and recipe sections) into OUT/zoo.json."""
    report = json.loads((out / "zoo.json").read_text())
    texts = lm_texts(cfg, wcfg)
    lms = [name for name in cfg["lms"] if name in names]
    tokenizers = build_tokenizers(cfg, wcfg) if lms else {}
    for name in lms:
        report["models"][name] = build_lm(name, cfg, tokenizers[cfg["lms"][name]["family"]], texts, out)
        report["config"]["lms"][name] = cfg["lms"][name]
    for name in [name for name in cfg["chat_lms"] if name in names]:
        report["models"][name] = build_chat_lm(name, cfg, wcfg, texts, out)
        report["config"].setdefault("chat_lms", {})[name] = cfg["chat_lms"][name]
    (out / "zoo.json").write_text(json.dumps(report, indent=2))


def check_only(parser: argparse.ArgumentParser, names: list[str], cfg: dict, out: Path) -> None:
    """--only names LMs or chat LMs of the recipe, in a built zoo that holds every chat LM's base."""
    known = [*cfg["lms"], *cfg["chat_lms"]]
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"--only: {', '.join(unknown)} not in the recipe's LMs or chat LMs ({', '.join(known)})")
    if not (out / "zoo.json").exists():
        parser.error(f"--only: {out / 'zoo.json'} not found; build the whole zoo there first")
    for name in names:
        base = cfg["chat_lms"].get(name, {}).get("base")
        if base and base not in names and not (out / base / "config.json").exists():
            parser.error(f"--only: {name} is fine-tuned from {base}, which {out} lacks; add it to --only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "zoo.toml"))
    parser.add_argument("--out", default=str(HERE.parents[1] / "checkpoints"))
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument(
        "--reuse-lms",
        action="store_true",
        help="keep the toy LLMs and chat LLMs already in OUT (and their zoo.json entries) instead of "
        "training them again: for recipe changes that touch only the VPG",
    )
    reuse.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="build just these LMs or chat LMs (e.g. toy-vicuna), keep everything else in OUT, and merge "
        "their entries into OUT/zoo.json",
    )
    args = parser.parse_args()
    try:
        cfg = load_zoo_config(args.config)
    except VPGTransError as exc:
        parser.error(str(exc))
    out = Path(args.out)
    if args.reuse_lms and not (out / "zoo.json").exists():
        parser.error(f"--reuse-lms: {out / 'zoo.json'} not found; build the whole zoo there first")
    if args.only:
        check_only(parser, args.only, cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    wcfg = world.WorldConfig(image_size=cfg["image_size"], **cfg["world"])
    torch.use_deterministic_algorithms(True)
    if args.only:
        build_only(args.only, cfg, wcfg, out)
        return
    report: dict = {"config": cfg, "models": {}}
    clock = time.perf_counter()
    previous = json.loads((out / "zoo.json").read_text())["models"] if args.reuse_lms else {}

    def reused(name: str) -> bool:
        if name in previous and (out / name / "config.json").exists():
            report["models"][name] = previous[name]
            print(f"{name}: reused from {out / name}", flush=True)
            return True
        return False

    # 1. tokenizers; 2. language models
    tokenizers = build_tokenizers(cfg, wcfg)
    texts = lm_texts(cfg, wcfg)
    for name, spec in cfg["lms"].items():
        if not reused(name):
            report["models"][name] = build_lm(name, cfg, tokenizers[spec["family"]], texts, out)
    # 3. vision encoder; 4. source BLIP-2
    build_source(cfg, wcfg, out, report)
    # 5. chat LMs, last: nothing before them changes with their recipe
    for name in cfg["chat_lms"]:
        if not reused(name):
            report["models"][name] = build_chat_lm(name, cfg, wcfg, texts, out)
    report["total_seconds"] = time.perf_counter() - clock
    (out / "zoo.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Tiny models built offline, once per test session: a BLIP-2 on an OPT-like LM with a
byte-level BPE tokenizer, a LLaMA-like destination with a SentencePiece-style tokenizer,
a larger OPT-like destination, and a small image-caption set from the synthetic world."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM

from vpgtrans import world
from vpgtrans.world import tiny


@dataclass
class TinyZoo:
    src: Path  # BLIP-2 folder (OPT-like LM)
    dst_llama: Path  # LLaMA-like causal LM folder
    dst_opt: Path  # bigger OPT-like causal LM folder
    data: Path  # captions.jsonl
    root: Path


EXPRESSIVE_INIT = 0.3  # a random LM with the usual 0.02 init has near-uniform logits whatever its input


def _save_lm(config, tokenizer, folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    config.initializer_range = EXPRESSIVE_INIT
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> TinyZoo:
    root = tmp_path_factory.mktemp("zoo")
    corpus = world.pretraining_texts(400, seed=0)
    byte_tok = tiny.byte_level_bpe_tokenizer(corpus, vocab_size=400)
    sp_tok = tiny.sentencepiece_bpe_tokenizer(corpus, vocab_size=150)

    src_config = tiny.opt_config(byte_tok, tiny.LMSize(hidden_size=32, num_layers=1))
    src_config.init_std = EXPRESSIVE_INIT
    src_lm = AutoModelForCausalLM.from_config(src_config)
    size = tiny.VPGSize(vision_hidden=32, qformer_hidden=32, vision_layers=1, qformer_layers=1, num_query_tokens=4)
    blip2, processor = tiny.blip2_with_language_model(src_lm, byte_tok, size, seed=0)
    with torch.no_grad():  # non-zero and distinct, as trained queries are: all-zero queries hide wrong wiring
        blip2.query_tokens.copy_(torch.randn(blip2.query_tokens.shape, generator=torch.Generator().manual_seed(5)))
    blip2.save_pretrained(root / "src")
    processor.save_pretrained(root / "src")

    _save_lm(tiny.llama_config(sp_tok, tiny.LMSize(hidden_size=48, num_layers=1)), sp_tok, root / "dst_llama", 1)
    opt_tok = tiny.byte_level_bpe_tokenizer(corpus, vocab_size=400)
    _save_lm(tiny.opt_config(opt_tok, tiny.LMSize(hidden_size=48, num_layers=2)), opt_tok, root / "dst_opt", 2)

    data = world.write_dataset(root / "data", n=48, seed=0)
    return TinyZoo(src=root / "src", dst_llama=root / "dst_llama", dst_opt=root / "dst_opt", data=data, root=root)


COCO_IDS = (391895, 522418, 184613)


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def coco(zoo, tmp_path) -> Path:
    """COCO val2014 images (world scenes saved as JPEG), Karpathy dataset_coco.json, VQAv2 questions + annotations."""
    root = tmp_path / "coco"
    (root / "val2014").mkdir(parents=True)
    images = []
    for i, cocoid in enumerate(COCO_IDS):
        name = f"COCO_val2014_{cocoid:012d}.jpg"
        Image.open(zoo.data.parent / "images" / f"{i:06d}.png").convert("RGB").save(root / "val2014" / name)
        images.append(
            {
                "filepath": "val2014",
                "filename": name,
                "imgid": i,
                "split": "test",
                "cocoid": cocoid,
                "sentids": [i],
                "sentences": [{"tokens": ["a", "shape"], "raw": "A red square on the left.", "imgid": i, "sentid": i}],
            }
        )
    _write_json(root / "dataset_coco.json", {"images": images, "dataset": "coco"})
    _write_json(
        root / "v2_OpenEnded_mscoco_val2014_questions.json",
        {
            "task_type": "Open-Ended",
            "data_subtype": "val2014",
            "questions": [
                {"question_id": cocoid * 10, "image_id": cocoid, "question": "What colour is the square?"}
                for cocoid in COCO_IDS
            ],
        },
    )
    _write_json(
        root / "v2_mscoco_val2014_annotations.json",
        {
            "data_subtype": "val2014",
            "annotations": [
                {
                    "question_id": cocoid * 10,
                    "image_id": cocoid,
                    "multiple_choice_answer": "red",
                    "answers": [{"answer": "red", "answer_id": j + 1} for j in range(10)],
                }
                for cocoid in COCO_IDS
            ],
        },
    )
    return root


# A Vicuna-like template in the words the tiny tokenizers know: the destination's own chat template.
TOY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}Question: {{ m['content'] }}\n"
    "{% else %}Answer: {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)


@pytest.fixture(scope="session")
def chat_model(zoo) -> Path:
    """A grafted BLIP-2 folder whose destination tokenizer has its own chat template (random weights:
    its answers are noise, its mechanics are real)."""
    from transformers import AutoTokenizer

    from vpgtrans.pipeline import initialise, save_model

    dst = zoo.root / "dst_chat"
    if not dst.exists():
        tokenizer = AutoTokenizer.from_pretrained(zoo.dst_llama)
        tokenizer.chat_template = TOY_CHAT_TEMPLATE
        AutoModelForCausalLM.from_pretrained(zoo.dst_llama).save_pretrained(dst)
        tokenizer.save_pretrained(dst)
    folder = zoo.root / "chat_model"
    if not folder.exists():
        model, processor, _ = initialise(str(zoo.src), str(dst), None)
        save_model(model, processor, folder)
    return folder

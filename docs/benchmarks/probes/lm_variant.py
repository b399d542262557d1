"""Exploratory probe (not part of the zoo): pretrain a toy LM like `toy-llama` with one thing
changed, to ask which difference between the zoo's LMs makes a destination slow to read a
soft prompt.

    python docs/benchmarks/probes/lm_variant.py OUT {opt,llama} TOKENIZER_FOLDER [--like NAME] [--steps N] [--set KEY=JSON ...]

Same texts, steps and size (the `toy-llama` entry of recipes/toy/zoo.toml, or --like's) and seed as the zoo;
ARCH picks the OPT or LLaMA config, TOKENIZER_FOLDER the tokenizer (checkpoints/toy-opt-l:
byte-level BPE, checkpoints/toy-llama: SentencePiece-style), --set overrides a config field
(e.g. --set tie_word_embeddings=true).
"""

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vpgtrans import tiny, world

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "recipes" / "toy"))
import build_zoo  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out")
parser.add_argument("arch", choices=["opt", "llama"])
parser.add_argument("tokenizer")
parser.add_argument("--like", default="toy-llama", help="the zoo.toml LM entry whose size and steps to use")
parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
parser.add_argument("--steps", type=int, help="pretraining steps (default: the --like entry's)")
args = parser.parse_args()
cfg = tomllib.loads(Path("recipes/toy/zoo.toml").read_text())
seed, pre, spec = cfg["seed"], cfg["lm_pretraining"], cfg["lms"][args.like]
torch.use_deterministic_algorithms(True)
texts = world.pretraining_texts(pre["texts"] + pre["heldout_texts"],
                                seed + 1, world.WorldConfig(image_size=cfg["image_size"], **cfg["world"]))
tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
size = tiny.LMSize(hidden_size=spec["hidden_size"], num_layers=spec["num_layers"], num_heads=spec["num_heads"])
config = (tiny.opt_config if args.arch == "opt" else tiny.llama_config)(tokenizer, size)
for item in args.set:
    key, value = item.split("=", 1)
    setattr(config, key, json.loads(value))
torch.manual_seed(seed)
model = AutoModelForCausalLM.from_config(config)
started = time.time()
build_zoo.pretrain_lm(model, tokenizer, texts[: pre["texts"]], args.steps or spec["steps"], pre, seed)
perplexity = build_zoo.perplexity(model, tokenizer, texts[pre["texts"] :], pre["max_tokens"])
model.eval().save_pretrained(args.out)
tokenizer.save_pretrained(args.out)
norm = float(model.get_input_embeddings().weight.detach().norm(dim=-1).mean())
print(f"RESULT {args.out}: held-out perplexity {perplexity:.3f}, mean input-embedding norm {norm:.3f}, "
      f"{time.time() - started:.0f} s", flush=True)

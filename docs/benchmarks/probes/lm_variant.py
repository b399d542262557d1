"""Exploratory probe (not part of the zoo): pretrain a toy LM like `toy-llama` with one thing
changed, to ask which difference between the zoo's LMs makes a destination slow to read a
soft prompt.

    python docs/benchmarks/probes/lm_variant.py OUT {opt,llama} TOKENIZER_FOLDER [--tie]

Same texts, steps (the `toy-llama` entry of recipes/toy/zoo.toml), size and seed as the zoo;
ARCH picks the OPT or LLaMA config, TOKENIZER_FOLDER the tokenizer (checkpoints/toy-opt-l:
byte-level BPE, checkpoints/toy-llama: SentencePiece-style), --tie ties the embeddings.
"""

import argparse
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
parser.add_argument("--tie", action="store_true")
args = parser.parse_args()
cfg = tomllib.loads(Path("recipes/toy/zoo.toml").read_text())
seed, pre, spec = cfg["seed"], cfg["lm_pretraining"], cfg["lms"]["toy-llama"]
torch.use_deterministic_algorithms(True)
texts = world.pretraining_texts(pre["texts"] + pre["heldout_texts"],
                                seed + 1, world.WorldConfig(image_size=cfg["image_size"], **cfg["world"]))
tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
size = tiny.LMSize(hidden_size=spec["hidden_size"], num_layers=spec["num_layers"], num_heads=spec["num_heads"])
config = (tiny.opt_config if args.arch == "opt" else tiny.llama_config)(tokenizer, size)
if args.tie:
    config.tie_word_embeddings = True
torch.manual_seed(seed)
model = AutoModelForCausalLM.from_config(config)
started = time.time()
build_zoo.pretrain_lm(model, tokenizer, texts[: pre["texts"]], spec["steps"], pre, seed)
perplexity = build_zoo.perplexity(model, tokenizer, texts[pre["texts"] :], pre["max_tokens"])
model.eval().save_pretrained(args.out)
tokenizer.save_pretrained(args.out)
norm = float(model.get_input_embeddings().weight.detach().norm(dim=-1).mean())
print(f"RESULT {args.out}: held-out perplexity {perplexity:.3f}, mean input-embedding norm {norm:.3f}, "
      f"{time.time() - started:.0f} s", flush=True)

"""The zoo recipe rebuilds deterministically: same config and seed, same weights; a
VPG-only rebuild keeps the LMs; --only rebuilds one chat LM and nothing else."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from vpgtrans.presets import resources_root

MICRO = """
seed = 0
image_size = 32
[world]
min_objects = 1
max_objects = 3
[tokenizers]
texts = 300
byte_level_vocab = 300
sentencepiece_vocab = 120
unigram_vocab = 120
[lm_pretraining]
texts = 200
heldout_texts = 20
max_tokens = 64
batch_size = 8
lr = 2e-3
[lms.toy-opt-s]
family = "opt"
tie_embeddings = true
hidden_size = 16
num_layers = 1
num_heads = 2
steps = 3
[lms.toy-llama]
family = "llama"
tie_embeddings = false
hidden_size = 16
num_layers = 1
num_heads = 2
steps = 3
[chat_lms.toy-vicuna]
base = "toy-llama"
steps = 3
batch_size = 4
lr = 1e-3
dialogues = 20
heldout_dialogues = 2
max_tokens = 128
max_positions = 256
mix = 0.5
[vision]
patch_size = 8
hidden_size = 16
num_layers = 1
num_heads = 2
steps = 3
batch_size = 8
lr = 1e-3
train_images = 40
[qformer_pretraining]
steps = 3
batch_size = 8
lr = 1e-3
train_images = 40
[source_blip2]
lm = "toy-opt-s"
qformer_hidden = 16
qformer_layers = 1
num_heads = 2
num_query_tokens = 2
train_images = 40
steps = 3
batch_size = 8
lr = 1e-3
[evaluation]
heldout_images = 4
seed = 1
"""


SCRIPT = resources_root() / "recipes" / "toy" / "build_zoo.py"


def build(config: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--config", str(config), "--out", str(out), *flags],
        capture_output=True,
        text=True,
    )


def test_micro_zoo_rebuilds_bit_identically(tmp_path):
    (tmp_path / "micro.toml").write_text(MICRO)
    for out in ("a", "b"):
        done = build(tmp_path / "micro.toml", tmp_path / out)
        assert done.returncode == 0, done.stderr[-2000:]
    for name in ("toy-opt-s", "toy-llama", "toy-blip2-opt-s", "toy-vicuna"):
        a = load_file(tmp_path / "a" / name / "model.safetensors")
        b = load_file(tmp_path / "b" / name / "model.safetensors")
        assert a.keys() == b.keys()
        assert all((a[k] == b[k]).all() for k in a), name
        assert (tmp_path / "a" / name / "tokenizer.json").read_text() == (
            tmp_path / "b" / name / "tokenizer.json"
        ).read_text()
    for name, tied in (("toy-opt-s", True), ("toy-llama", False)):  # as each LM's `tie_embeddings` says
        assert json.loads((tmp_path / "a" / name / "config.json").read_text())["tie_word_embeddings"] is tied, name
    report = json.loads((tmp_path / "a" / "zoo.json").read_text())["models"]
    assert 0.0 <= report["qformer"]["attribute_accuracy"] <= 1.0  # the Q-Former's first stage ran and was scored
    chat = tmp_path / "a" / "toy-vicuna"
    assert json.loads((chat / "config.json").read_text())["max_position_embeddings"] == 256  # RoPE: a longer context
    assert "Question: {{ m['content'] }}" in (chat / "chat_template.jinja").read_text()
    assert report["toy-vicuna"]["base"] == "toy-llama" and report["toy-vicuna"]["heldout_turns"] > 0
    assert 0.0 <= report["toy-vicuna"]["heldout_answer_accuracy"] <= 100.0


def test_reuse_lms_keeps_the_language_models_and_rebuilds_the_vpg(tmp_path):
    (tmp_path / "micro.toml").write_text(MICRO)
    assert build(tmp_path / "micro.toml", tmp_path / "zoo").returncode == 0
    lm_before = (tmp_path / "zoo" / "toy-opt-s" / "model.safetensors").stat().st_mtime_ns
    report = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    report["models"]["toy-opt-s"]["marker"] = "from the first build"
    (tmp_path / "zoo" / "zoo.json").write_text(json.dumps(report))
    (tmp_path / "zoo" / "toy-blip2-opt-s" / "model.safetensors").unlink()

    done = build(tmp_path / "micro.toml", tmp_path / "zoo", "--reuse-lms")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "toy-opt-s: reused" in done.stdout
    assert (tmp_path / "zoo" / "toy-opt-s" / "model.safetensors").stat().st_mtime_ns == lm_before
    assert (
        json.loads((tmp_path / "zoo" / "zoo.json").read_text())["models"]["toy-opt-s"]["marker"]
        == "from the first build"
    )
    assert (tmp_path / "zoo" / "toy-blip2-opt-s" / "model.safetensors").exists()


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    files = [path for path in folder.rglob("*") if path.is_file()]
    return {str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.read_bytes()) for path in files}


def test_only_rebuilds_the_chat_lm_alone_and_merges_its_entry(tmp_path):
    (tmp_path / "micro.toml").write_text(MICRO)
    zoo = tmp_path / "zoo"
    assert build(tmp_path / "micro.toml", zoo).returncode == 0
    full_build = (zoo / "toy-vicuna" / "model.safetensors").read_bytes()
    report = json.loads((zoo / "zoo.json").read_text())
    report["models"]["toy-llama"]["marker"] = "from the first build"
    del report["models"]["toy-vicuna"], report["config"]["chat_lms"]  # a zoo.json from before chat LMs
    (zoo / "zoo.json").write_text(json.dumps(report))
    for path in (zoo / "toy-vicuna").iterdir():
        path.unlink()
    others = {name: _files(zoo / name) for name in ("toy-opt-s", "toy-llama", "toy-blip2-opt-s")}

    done = build(tmp_path / "micro.toml", zoo, "--only", "toy-vicuna")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "toy-vicuna: held-out answer accuracy" in done.stdout and "toy-llama" not in done.stdout
    assert {name: _files(zoo / name) for name in others} == others  # not rewritten, not even touched
    assert (zoo / "toy-vicuna" / "model.safetensors").read_bytes() == full_build  # same as the whole build's
    merged = json.loads((zoo / "zoo.json").read_text())
    assert merged["models"]["toy-llama"]["marker"] == "from the first build"
    assert merged["models"]["toy-vicuna"]["kind"] == "causal-lm"
    assert merged["config"]["chat_lms"]["toy-vicuna"]["base"] == "toy-llama"


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--only", "toy-vicuna", "toy-mistral"), "--only: toy-mistral not in the recipe's LMs or chat LMs"),
        (("--only", "toy-vicuna"), "zoo.json not found; build the whole zoo there first"),
        (("--only", "toy-vicuna", "--reuse-lms"), "not allowed with argument"),
    ],
)
def test_only_refuses_what_it_cannot_do(tmp_path, flags, message):
    (tmp_path / "micro.toml").write_text(MICRO)
    done = build(tmp_path / "micro.toml", tmp_path / "empty", *flags)
    assert done.returncode != 0 and message in done.stderr, done.stderr[-500:]
    assert not (tmp_path / "empty").exists()


def test_reuse_lms_without_a_built_zoo_says_so(tmp_path):
    (tmp_path / "micro.toml").write_text(MICRO)
    done = build(tmp_path / "micro.toml", tmp_path / "empty", "--reuse-lms")
    assert done.returncode != 0
    assert "zoo.json not found" in done.stderr and "build the whole zoo" in done.stderr


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text.replace("[vision]", "[vision]\nstep = 3"), "[vision]: unknown key(s) 'step'"),
        (lambda text: text.replace('family = "opt"', 'family = "gpt"', 1), "family 'gpt' is not one of opt, llama"),
        (lambda text: text.replace("[evaluation]", "[evaluation]\nheldout = 1"), "[evaluation]: unknown key(s)"),
        (
            lambda text: text.replace("[chat_lms.toy-vicuna]", "[chat_lms.toy-vicuna]\nstep = 3"),
            "[chat_lms.toy-vicuna]: unknown key(s) 'step'",
        ),
        (
            lambda text: text.replace('base = "toy-llama"', 'base = "toy-opt-l"'),
            "[chat_lms.toy-vicuna]: base 'toy-opt-l' is family 'opt'; max_positions needs llama",
        ),
        (lambda text: re.sub(r"\nmix = \S+", "\nmix = 1.0", text), "[chat_lms.toy-vicuna]: mix must be below 1"),
        (lambda text: re.sub(r"\nmax_positions = \d+", "\nmax_positions = 2", text), "max_positions must be at least"),
    ],
)
def test_a_typo_in_the_zoo_recipe_is_named(tmp_path, edit, message):
    config = tmp_path / "zoo.toml"
    config.write_text(edit((Path(__file__).resolve().parents[1] / "recipes" / "toy" / "zoo.toml").read_text()))
    done = build(config, tmp_path / "out")
    assert done.returncode != 0 and f"{config}" in done.stderr and message in done.stderr, done.stderr[-500:]
    assert not (tmp_path / "out").exists()


def test_the_committed_toy_vicuna_is_what_its_recipe_says():
    """Its template, its context length, its zoo.json figures, and answers read from a caption in the context."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vpgtrans import world
    from vpgtrans.chat.template import render
    from vpgtrans.world.zoo import load_zoo_config

    zoo = resources_root() / "checkpoints"
    if not (zoo / "toy-vicuna" / "config.json").exists():
        pytest.skip("toy-vicuna not built")
    recipe = load_zoo_config(resources_root() / "recipes" / "toy" / "zoo.toml")["chat_lms"]["toy-vicuna"]
    tokenizer = AutoTokenizer.from_pretrained(zoo / "toy-vicuna")
    model = AutoModelForCausalLM.from_pretrained(zoo / "toy-vicuna").eval()
    assert model.config.max_position_embeddings == recipe["max_positions"]
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    assert render(tokenizer, turns) == "<s>Question: hi\nAnswer: yes</s>"
    entry = json.loads((zoo / "zoo.json").read_text())["models"]["toy-vicuna"]
    assert entry["base"] == recipe["base"] and entry["heldout_description_accuracy"] > 90  # measured: 95.4
    scores = []
    for context, _ in world.dialogue_turns(6, seed=999):
        asked = [{"role": "user", "content": f"{context}\ndescribe the image in detail."}]
        prompt = render(tokenizer, asked, add_generation_prompt=True)
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        output = model.generate(**ids, max_new_tokens=48, do_sample=False, eos_token_id=tokenizer.eos_token_id)
        answer = tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        scores.append(world.score_answer(answer, context, "description"))  # the context is the description
    assert sum(scores) / len(scores) > 0.8, scores

"""The zoo recipe rebuilds deterministically: same config and seed, same weights; a
VPG-only rebuild keeps the LMs."""

from __future__ import annotations

import json
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
    for name in ("toy-opt-s", "toy-llama", "toy-blip2-opt-s"):
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
    ],
)
def test_a_typo_in_the_zoo_recipe_is_named(tmp_path, edit, message):
    config = tmp_path / "zoo.toml"
    config.write_text(edit((Path(__file__).resolve().parents[1] / "recipes" / "toy" / "zoo.toml").read_text()))
    done = build(config, tmp_path / "out")
    assert done.returncode != 0 and f"{config}" in done.stderr and message in done.stderr, done.stderr[-500:]
    assert not (tmp_path / "out").exists()

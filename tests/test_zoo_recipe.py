"""The zoo recipe rebuilds deterministically: same config and seed, same weights."""

from __future__ import annotations

import subprocess
import sys

from safetensors.torch import load_file

from vpgtrans.presets import project_root

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
hidden_size = 16
num_layers = 1
num_heads = 2
steps = 3
[lms.toy-llama]
family = "llama"
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


def test_micro_zoo_rebuilds_bit_identically(tmp_path):
    (tmp_path / "micro.toml").write_text(MICRO)
    script = project_root() / "recipes" / "toy" / "build_zoo.py"
    for out in ("a", "b"):
        done = subprocess.run([sys.executable, str(script), "--config", str(tmp_path / "micro.toml"), "--out", str(tmp_path / out)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    for name in ("toy-opt-s", "toy-llama", "toy-blip2-opt-s"):
        a = load_file(tmp_path / "a" / name / "model.safetensors")
        b = load_file(tmp_path / "b" / name / "model.safetensors")
        assert a.keys() == b.keys()
        assert all((a[k] == b[k]).all() for k in a), name
        assert (tmp_path / "a" / name / "tokenizer.json").read_text() == (tmp_path / "b" / name / "tokenizer.json").read_text()

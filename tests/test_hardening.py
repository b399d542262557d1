"""Bad input and crashes never end in a traceback, a silent wrong result or lost data: each case
stops with one line naming what is wrong, before OUT is touched (docs/commands.md)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from vpgtrans.cli.main import main
from vpgtrans.errors import VPGTransError
from vpgtrans.io.images import open_rgb
from vpgtrans.io.outdir import LOCK_NAME
from vpgtrans.pipeline import TransferConfig, run_transfer
from vpgtrans.training.data import CaptionDataset
from vpgtrans.training.stages import TrainingConfig
from vpgtrans.training.trainer import Diverged, check_finite


def _transfer(zoo, out, *extra, data=None, dst=None):
    args = ["--src", str(zoo.src), "--dst", str(dst or zoo.dst_llama), "--data", str(data or zoo.data)]
    common = ["--batch-size", "8", "--stage1-steps", "2", "--stage2-steps", "2"]
    return main(["transfer", *args, "--out", str(out), *common, *extra])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("vpgtrans: error: "), err
    return err[-1]


def _copy_data(zoo, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(zoo.data.parent, folder)
    return folder / "captions.jsonl"


def test_a_diverged_run_stops_naming_stage_and_step_and_exports_nothing(zoo, tmp_path, capsys):
    assert _transfer(zoo, tmp_path / "run", "--lr", "1e30") == 2
    assert "stage warmup, optimizer step 2: parameter language_projection.weight holds NaN or Inf" in _error(capsys)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "running" and not (tmp_path / "run" / "model").exists()


def test_non_finite_weights_are_caught_at_a_checkpoint():
    layer = torch.nn.Linear(2, 2)
    check_finite(layer, ["weight", "bias"], "finetune", 7)
    with torch.no_grad():
        layer.bias[1] = float("inf")
    with pytest.raises(Diverged, match="stage finetune, optimizer step 7: parameter bias holds NaN or Inf"):
        check_finite(layer, ["weight", "bias"], "finetune", 7)


def test_overwrite_never_deletes_an_input_or_what_a_run_did_not_write(zoo, tmp_path, capsys):
    data = _copy_data(zoo, tmp_path)
    for out in (data.parent, tmp_path):  # OUT is DATA's folder, or contains it
        assert _transfer(zoo, out, "--overwrite", data=data) == 2
        assert f"OUT contains the input {data}" in _error(capsys)
    assert len(data.read_text().splitlines()) == 48
    assert _transfer(zoo, tmp_path / "run") == 0
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert _transfer(zoo, tmp_path / "run", "--overwrite", "--seed", "4") == 0
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert _transfer(zoo, tmp_path / "run", "--overwrite", "--resume") == 2
    assert "--resume and --overwrite contradict each other" in _error(capsys)


def test_a_json_array_or_non_utf8_line_is_named(zoo, tmp_path, capsys):
    data = _copy_data(zoo, tmp_path)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    data.write_text(json.dumps(rows))  # one JSON array of 48 records: refused, never read as one record
    assert _transfer(zoo, tmp_path / "out", data=data) == 2
    assert f"{data}:1: a JSON array; JSON Lines holds one object a line" in _error(capsys)
    lines = [json.dumps(r).encode() for r in rows]
    lines[2] = b'{"image": "images/000002.png", "caption": "caf\xe9"}'  # Latin-1, not UTF-8
    data.write_bytes(b"\n".join(lines) + b"\n")
    assert _transfer(zoo, tmp_path / "out", data=data) == 2
    assert f"{data}:3: not UTF-8 text" in _error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_16_bit_image_keeps_its_picture(tmp_path):
    values = np.array([[0, 30000], [65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = np.asarray(open_rgb(tmp_path / "deep.png"))
    assert rgb[..., 0].tolist() == [[0, 30000 >> 8], [255, 1000 >> 8]]  # PIL's own convert gives all 255


def test_a_truncated_image_fails_validation_or_is_skipped(zoo, tmp_path, capsys):
    data = _copy_data(zoo, tmp_path)
    image = data.parent / "images" / "000004.png"
    image.write_bytes(image.read_bytes()[:-60])  # the header still reads; the pixels do not
    assert _transfer(zoo, tmp_path / "out", data=data) == 2
    assert f"{data}:5: image {image} cannot be decoded" in _error(capsys)
    assert not (tmp_path / "out").exists()
    assert _transfer(zoo, tmp_path / "out", "--skip-bad-samples", data=data) == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["data"]["skipped"] == 1


def test_an_image_over_the_decompression_bomb_limit_is_named(zoo, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # the world's 32 x 32 images are over twice that
    assert _transfer(zoo, tmp_path / "out") == 2
    assert "has more pixels than PIL's decompression-bomb limit (200)" in _error(capsys)
    image = str(zoo.data.parent / "images" / "000001.png")
    assert main(["caption", "--model", str(zoo.src), image]) == 2
    assert f"image {image} has more pixels" in _error(capsys)


def test_a_truncated_weights_file_is_named_before_out(zoo, tmp_path, capsys):
    dst = tmp_path / "dst"
    shutil.copytree(zoo.dst_llama, dst)
    weights = dst / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    assert _transfer(zoo, tmp_path / "out", dst=dst) == 2
    assert f"{weights}: truncated" in _error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_dst_that_cannot_generate_is_refused_up_front(zoo, tmp_path, capsys):
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    encoder_only = tmp_path / "distilbert"
    config = DistilBertConfig(vocab_size=99, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    DistilBertForMaskedLM(config).save_pretrained(encoder_only)
    assert _transfer(zoo, tmp_path / "out", dst=encoder_only) == 2
    assert "model_type is 'distilbert', which is not a generative language model" in _error(capsys)
    assert not (tmp_path / "out").exists()
    from transformers import BertConfig, BertForMaskedLM  # a type with a causal-LM class, saved as an encoder

    bert = tmp_path / "bert"
    BertForMaskedLM(BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32)).save_pretrained(bert)  # fmt: skip
    assert _transfer(zoo, tmp_path / "out", dst=bert) == 2
    assert "hold no generative head" in _error(capsys) and not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only without a GPU")
def test_fp16_on_a_cpu_and_an_out_that_is_a_file_are_refused(zoo, tmp_path, capsys):
    assert _transfer(zoo, tmp_path / "out", "--precision", "fp16") == 2
    assert "--precision fp16 needs a CUDA GPU" in _error(capsys)
    (tmp_path / "file").write_text("x")
    assert _transfer(zoo, tmp_path / "file") == 2
    assert "OUT is a file" in _error(capsys)
    assert not (tmp_path / "out").exists()


def test_caption_resolves_presets_and_names_a_missing_model(tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.new("RGB", (32, 32), "red").save(image)
    assert main(["caption", "--model", "toy-blip2-opt-s", str(image), "--num-beams", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{image}\t")
    assert main(["caption", "--model", str(tmp_path / "nope" / "model"), str(image)]) == 2
    assert "nope/model" in _error(capsys)


def test_a_second_process_on_one_out_is_refused_and_a_stale_lock_taken_over(zoo, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(str(os.getppid()))  # a live process holds it
    assert _transfer(zoo, out) == 2
    assert f"OUT is in use by process {os.getppid()}" in _error(capsys)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / LOCK_NAME).write_text(str(gone.pid))  # its process has ended: a stale lock
    assert _transfer(zoo, out) == 0
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_crash_leftovers_are_cleaned_and_the_log_never_repeats_a_step(zoo, tmp_path, monkeypatch):
    config = TransferConfig(src=str(zoo.src), dst=str(zoo.dst_llama), data=str(zoo.data), out=str(tmp_path / "run"),
                            training=TrainingConfig(batch_size=8, stage1_steps=4, stage2_steps=2))  # fmt: skip
    original, calls = CaptionDataset.__getitem__, {"n": 0}

    def crashing(self, index):  # dies in the warm-up, before its first checkpoint (every 200 steps)
        calls["n"] += 1
        if calls["n"] > 8 * 3:
            raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(CaptionDataset, "__getitem__", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_transfer(config)
    monkeypatch.setattr(CaptionDataset, "__getitem__", original)
    (tmp_path / "run" / ".model.abc123.tmp").mkdir()  # what a kill during the export leaves
    (tmp_path / "run" / ".model.abc123.tmp" / "model.safetensors").write_text("half a model")
    run_transfer(config, resume=True)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [(e["stage"], e["step"]) for e in log] == [("warmup", s) for s in (1, 2, 3, 4)] + [
        ("finetune", 1),
        ("finetune", 2),
    ]
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_a_hub_that_never_answers_fails_in_bounded_time(zoo, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()  # accepts, never answers
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.getsockname()[1]}", "HF_HUB_ETAG_TIMEOUT": "2",
           "HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "cache")}  # fmt: skip
    cmd = [sys.executable, "-m", "vpgtrans.cli.main", "transfer", "--src", "some-org/some-blip2", "--dst",
           str(zoo.dst_llama), "--data", str(zoo.data), "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    server.close()
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        "some-org/some-blip2: not a local folder, and config.json could not be read from the hub (no answer "
        "within 2 s" in done.stderr
    )
    assert not (tmp_path / "out").exists()


def test_run_json_refuses_fields_outside_its_schema(tmp_path):
    from vpgtrans.training.run import RunFolder

    run = RunFolder(tmp_path / "run", "transfer", {"x": 1}, resume=False, overwrite=False)
    with pytest.raises(TypeError, match="no field"):
        run.save(evaluations={})
    run.close()
    with pytest.raises(VPGTransError, match="OUT already holds this run"):
        RunFolder(tmp_path / "run", "transfer", {"x": 1}, resume=False, overwrite=False)


def test_an_out_that_cannot_be_written_is_named(zoo, tmp_path, capsys, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):  # as root a read-only folder is still writable: refuse the probe instead
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert _transfer(zoo, tmp_path / "ro" / "out") == 2
    assert f"{tmp_path / 'ro' / 'out'}: cannot write OUT ({tmp_path} is not writable: Permission denied)" in _error(
        capsys
    )


def test_a_non_finite_loss_stops_before_the_update(zoo, tmp_path):
    from vpgtrans.pipeline import initialise
    from vpgtrans.training.data import load_caption_data
    from vpgtrans.training.run import collator_for
    from vpgtrans.training.stages import WARMUP, stage_config
    from vpgtrans.training.trainer import make_accelerator, train_stage

    model, processor, _ = initialise(str(zoo.src), str(zoo.dst_llama), None)
    model.language_model.register_forward_hook(
        lambda module, args, out: out.__class__(logits=out.logits * float("nan"))
    )
    before = model.language_projection.weight.detach().clone()
    data = load_caption_data(zoo.data)
    stage = stage_config(WARMUP, TrainingConfig(batch_size=8, stage1_steps=2), len(data.records))
    collate = collator_for(processor, model, TrainingConfig())
    with pytest.raises(Diverged, match="stage warmup, optimizer step 1: the loss is nan"):
        train_stage(make_accelerator(), model, CaptionDataset(data.records), collate, stage, tmp_path / "ckpt")
    assert torch.equal(model.language_projection.weight, before)  # checked before the update

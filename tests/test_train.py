"""Stage trainer: what trains in each stage, loss goes down, resume equals uninterrupted."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vpgtrans.errors import VPGTransError
from vpgtrans.pipeline import TransferConfig, initialise, run_transfer
from vpgtrans.training.data import CaptionDataset, load_caption_data
from vpgtrans.training.run import collator_for
from vpgtrans.training.stages import FINETUNE, WARMUP, TrainingConfig, stage_config
from vpgtrans.training.trainer import StageConfig, lr_factor, make_accelerator, train_stage

WARMUP_TRAINABLE, FINETUNE_TRAINABLE = WARMUP.trainable, FINETUNE.trainable


def _train(zoo, tmp_path, stage: StageConfig):
    model, processor, _ = initialise(str(zoo.src), str(zoo.dst_llama), None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = load_caption_data(zoo.data)
    collate = collator_for(processor, model, TrainingConfig())
    result = train_stage(make_accelerator(), model, CaptionDataset(data.records), collate, stage, tmp_path / "ckpt")
    return before, model.state_dict(), result


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
@pytest.mark.parametrize("trainable", [WARMUP_TRAINABLE, FINETUNE_TRAINABLE])
def test_only_the_stage_parameters_change(zoo, tmp_path, trainable, optimizer):
    stage = StageConfig(
        name="s", trainable=trainable, steps=3, lr=1e-2, batch_size=8, dropout_in=("qformer",), optimizer=optimizer
    )
    before, after, result = _train(zoo, tmp_path, stage)
    assert result.steps == 3 and result.samples == 24
    for key in before:
        if key.startswith(trainable):
            assert not torch.equal(before[key], after[key]) or "bias" in key, key
        else:
            assert torch.equal(before[key], after[key]), f"frozen {key} changed"
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(trainable))


def test_loss_decreases_on_a_tiny_set(zoo, tmp_path):
    stage = StageConfig(name="s", trainable=FINETUNE_TRAINABLE, steps=30, lr=2e-2, batch_size=16)
    _, _, result = _train(zoo, tmp_path, stage)
    assert sum(result.losses[-5:]) / 5 < 0.8 * sum(result.losses[:5]) / 5


def test_schedules():
    cosine = lr_factor(StageConfig(name="s", trainable=(), steps=100, lr=1.0, schedule="cosine", min_lr_ratio=0.5))
    assert cosine(0) == pytest.approx(1.0) and cosine(50) == pytest.approx(0.75) and cosine(100) == pytest.approx(0.5)
    constant = lr_factor(StageConfig(name="s", trainable=(), steps=100, lr=1.0))
    assert constant(0) == constant(99) == 1.0


@pytest.mark.parametrize(
    "settings, steps",
    [
        ({}, 3),  # the paper's one epoch: 48 samples at batch 16
        ({"stage1_epochs": 2.0}, 6),
        ({"stage1_epochs": 1.5}, 5),  # a partial epoch rounds up
        ({"stage1_epochs": 2.0, "stage1_steps": 4}, 4),  # an explicit step count wins
    ],
)
def test_warmup_length(settings, steps):
    assert stage_config(WARMUP, TrainingConfig(batch_size=16, **settings), 48).steps == steps


class Crash(Exception):
    pass


def _plain_config(zoo, out, optimizer: str = "adamw"):
    return TransferConfig(
        src=str(zoo.src),
        dst=str(zoo.dst_llama),
        data=str(zoo.data),
        out=str(out),
        training=TrainingConfig(
            batch_size=8,
            stage1_steps=3,
            stage2_steps=5,
            checkpoint_every=2,
            lr=1e-3,
            stage1_optimizer=optimizer,
            stage2_optimizer=optimizer,
        ),
    )


@pytest.mark.parametrize("optimizer, augment", [("adamw", False), ("muon", False), ("adamw", True)])
def test_resume_reaches_the_same_weights(zoo, tmp_path, monkeypatch, optimizer, augment):
    def _config(zoo, out, optimizer):  # with the paper's augmentation when asked: crops replay exactly too
        config = _plain_config(zoo, out, optimizer)
        config.training.random_crop = config.training.horizontal_flip = augment
        return config

    run_transfer(_config(zoo, tmp_path / "straight", optimizer))

    calls = {"n": 0}
    original = CaptionDataset.__getitem__

    def crashing(self, index):
        calls["n"] += 1
        # accelerate fetches one batch ahead: item 65 is fetched during fine-tuning step 4,
        # after the step-2 checkpoint (warm-up fetched 4 batches, fine-tuning 4 by then)
        if calls["n"] > 8 * (4 + 4):
            raise Crash
        return original(self, index)

    monkeypatch.setattr(CaptionDataset, "__getitem__", crashing)
    with pytest.raises(Crash):
        run_transfer(_config(zoo, tmp_path / "resumed", optimizer))
    assert not (tmp_path / "resumed" / "model").exists()
    assert (tmp_path / "resumed" / "checkpoints" / "finetune" / "step-00000002").is_dir()
    monkeypatch.setattr(CaptionDataset, "__getitem__", original)
    run_transfer(_config(zoo, tmp_path / "resumed", optimizer), resume=True)

    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    record = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert record["status"] == "done"
    assert record["stages"]["finetune"]["result"]["resumed_from_step"] == 2
    log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if e["stage"] == "finetune"] == [1, 2, 3, 4, 5]


def test_a_checkpoint_resumes_only_with_its_optimizer(zoo, tmp_path):
    stage = StageConfig(name="s", trainable=WARMUP_TRAINABLE, steps=2, lr=1e-3, batch_size=8, checkpoint_every=1)
    _train(zoo, tmp_path, stage)
    longer = StageConfig(name="s", trainable=WARMUP_TRAINABLE, steps=4, lr=1e-3, batch_size=8, optimizer="muon")
    with pytest.raises(
        VPGTransError, match="step-00000002: checkpoint was trained with optimizer 'adamw', this stage uses 'muon'"
    ):
        _train(zoo, tmp_path, longer)


def test_augmentation_draws_per_epoch_and_sample_reproducibly(zoo):
    from PIL import Image

    from vpgtrans.training.augment import Augmentation

    data = load_caption_data(zoo.data)
    plain = CaptionDataset(data.records)
    both = CaptionDataset(data.records, Augmentation(random_crop=True, horizontal_flip=True, seed=3))
    image, caption = plain[5]
    assert both[5][1] == caption and both[5 + len(both)][1] == caption  # epoch 1 reads the same record
    drawn = [both[5 + epoch * len(both)][0] for epoch in range(8)]
    assert all(d.size == image.size for d in drawn)
    assert len({d.tobytes() for d in drawn}) > 4  # a fresh draw each epoch
    assert both[5][0].tobytes() == drawn[0].tobytes()  # the same draw again: a resumed run sees it too
    flips = CaptionDataset(data.records, Augmentation(horizontal_flip=True))
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()
    outcomes = {flips[5 + e * len(flips)][0].tobytes() for e in range(16)}
    assert outcomes == {image.tobytes(), mirrored}
    assert plain[5 + 3 * len(plain)][0].tobytes() == image.tobytes()  # off: the image as it is

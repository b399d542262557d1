"""The command line end to end, and every bad input: one clear line, exit != 0, OUT untouched."""

from __future__ import annotations

import json
import shutil

import pytest

from vpgtrans.cli.main import build_parser, main
from vpgtrans.cli.options import given
from vpgtrans.recipes import get_recipe
from vpgtrans.training.stages import TrainingConfig


def _transfer(zoo, out, *extra, data=None):
    return main(
        [
            "transfer",
            "--src",
            str(zoo.src),
            "--dst",
            str(zoo.dst_llama),
            "--data",
            str(data or zoo.data),
            "--out",
            str(out),
            "--batch-size",
            "8",
            "--stage1-steps",
            "2",
            "--stage2-steps",
            "2",
            *extra,
        ]
    )


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("vpgtrans: error: ")
    return err[-1]


def _copy_data(zoo, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(zoo.data.parent, folder)
    return folder / "captions.jsonl"


def test_transfer_with_prompt_scale_records_the_factor(zoo, tmp_path):
    assert _transfer(zoo, tmp_path / "run", "--prompt-scale") == 0
    graft = json.loads((tmp_path / "run" / "run.json").read_text())["graft"]
    assert graft["projector_init"] == "fused" and graft["prompt_scale"] > 0 and graft["prompt_scale"] != 1.0


@pytest.mark.parametrize("flags, epochs", [([], 2.0), (["--stage1-epochs", "1"], 1.0)])
def test_recipe_warmup_length_unless_a_flag_says(flags, epochs):
    args = build_parser().parse_args(["compare", "--recipe", "toy-tat", *flags])
    assert get_recipe("toy-tat").training_config(given(TrainingConfig, args)).stage1_epochs == epochs


def test_optimizer_flags_reach_each_stage():
    args = build_parser().parse_args(["transfer", "--stage1-optimizer", "muon"])
    training = get_recipe("toy-tas").training_config(given(TrainingConfig, args))
    assert (training.stage1_optimizer, training.stage2_optimizer) == ("muon", "adamw")


def test_transfer_then_caption(zoo, tmp_path, capsys):
    assert _transfer(zoo, tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert f"model: {tmp_path / 'run' / 'model'}" in out
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "done"
    assert record["stages"]["warmup"]["result"]["steps"] == 2
    assert record["stages"]["warmup"]["config"]["lr"] == pytest.approx(5e-4)
    assert record["stages"]["finetune"]["result"]["samples"] == 16
    assert record["converter"]["method"] == "ridge"
    assert {"torch", "transformers", "accelerate"} <= set(record["versions"])
    assert (tmp_path / "run" / "converter.safetensors").exists()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 4
    for name, stage in record["stages"].items():  # cost fields: measured and analytic
        result, cost = stage["result"], stage["cost"]
        assert result["seconds"] > 0 and result["device"] == "cpu" and result["lm_tokens"] > result["text_tokens"] > 0
        assert "peak_memory_bytes" in result and cost["device_name"].startswith("cpu (")
        assert cost["flops"]["total"] == pytest.approx(
            sum(cost["flops"][k] for k in ("vit", "qformer", "projector", "llm"))
        )
        assert all(cost["flops"][k] > 0 for k in ("vit", "qformer", "projector", "llm")), name
    warmup, finetune = (record["stages"][k]["cost"]["flops"] for k in ("warmup", "finetune"))
    assert finetune["vit"] == pytest.approx(warmup["vit"])  # same samples, ViT forward only in both
    assert finetune["qformer"] == pytest.approx(3 * warmup["qformer"])  # trained (6x) vs forward only (2x)
    assert f"cost report: {tmp_path / 'run' / 'report' / 'report.html'}" in out
    assert "| total |" in (tmp_path / "run" / "report" / "report.md").read_text()
    image = zoo.data.parent / "images" / "000001.png"
    assert main(["caption", "--model", str(tmp_path / "run" / "model"), str(image), "--num-beams", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()  # one line per image, whatever bytes the model emits
    assert len(lines) == 1 and lines[0].startswith(f"{image}\t")
    assert "<image>" not in lines[0]


@pytest.mark.parametrize(
    "text, first",
    [
        ("a red square\nsecond", "a red square"),
        ("a\rb", "a"),
        ("a\x1cb\x0bc", "a"),
        ("a\u2028b", "a"),
        ("", ""),
        ("\nlater", ""),
    ],
)
def test_generated_text_stops_at_any_line_break(text, first):
    from vpgtrans.evaluation.generation import first_line

    assert first_line(text) == first


def test_separate_commands_chain(zoo, tmp_path, capsys):
    assert (
        main(
            [
                "fit-converter",
                "--src",
                str(zoo.src),
                "--dst",
                str(zoo.dst_opt),
                "--data",
                str(zoo.data),
                "--out",
                str(tmp_path / "conv.safetensors"),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["aligned_pairs"] > 100
    assert (
        main(
            [
                "init",
                "--src",
                str(zoo.src),
                "--dst",
                str(zoo.dst_opt),
                "--converter",
                str(tmp_path / "conv.safetensors"),
                "--out",
                str(tmp_path / "init"),
            ]
        )
        == 0
    )
    common = ["--data", str(zoo.data), "--batch-size", "8"]
    assert (
        main(
            ["warmup", "--model", str(tmp_path / "init"), "--out", str(tmp_path / "s1"), "--stage1-steps", "2", *common]
        )
        == 0
    )
    assert (
        main(
            [
                "finetune",
                "--model",
                str(tmp_path / "s1" / "model"),
                "--out",
                str(tmp_path / "s2"),
                "--stage2-steps",
                "2",
                *common,
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "s2" / "run.json").read_text())
    assert record["stages"]["finetune"]["result"]["steps"] == 2
    assert (tmp_path / "s2" / "model" / "model.safetensors").exists()


def test_malformed_json_names_the_line(zoo, tmp_path, capsys):
    data = _copy_data(zoo, tmp_path)
    lines = data.read_text().splitlines()
    lines[2] = '{"image": "images/000002.png", "caption": '
    data.write_text("\n".join(lines) + "\n")
    assert _transfer(zoo, tmp_path / "out", data=data) != 0
    assert f"{data}:3: malformed JSON" in _error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "row, message",
    [
        ({"image": "images/000000.png", "caption": ""}, "field 'caption' must be a non-empty string"),
        ({"image": "images/000000.png", "caption": 7}, "field 'caption' must be a non-empty string"),
        ({"image": "images/nope.png", "caption": "a red square"}, "not found"),
        ({"caption": "a red square"}, "field 'image' must be an image path"),
    ],
)
def test_bad_records_name_the_line(zoo, tmp_path, capsys, row, message):
    data = _copy_data(zoo, tmp_path)
    lines = data.read_text().splitlines()
    lines[4] = json.dumps(row)
    data.write_text("\n".join(lines) + "\n")
    assert _transfer(zoo, tmp_path / "out", data=data) != 0
    error = _error(capsys)
    assert f"{data}:5" in error and message in error
    assert not (tmp_path / "out").exists()


def test_unreadable_image_and_skip_bad_samples(zoo, tmp_path, capsys):
    data = _copy_data(zoo, tmp_path)
    (data.parent / "images" / "000003.png").write_bytes(b"not a png")
    assert _transfer(zoo, tmp_path / "out", data=data) != 0
    error = _error(capsys)
    assert f"{data}:4: image" in error and "unreadable" in error
    assert _transfer(zoo, tmp_path / "out", "--skip-bad-samples", data=data) == 0
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["data"]["skipped"] == 1 and record["data"]["samples"] == 47


def test_wrong_src_and_dst(zoo, tmp_path, capsys):
    assert (
        main(
            [
                "transfer",
                "--src",
                str(zoo.dst_llama),
                "--dst",
                str(zoo.dst_opt),
                "--data",
                str(zoo.data),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        != 0
    )
    assert "expected 'blip-2'" in _error(capsys)
    assert (
        main(
            [
                "transfer",
                "--src",
                str(zoo.src),
                "--dst",
                str(zoo.src),
                "--data",
                str(zoo.data),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        != 0
    )
    assert "not a generative language model" in _error(capsys)
    assert not (tmp_path / "o").exists()


def test_out_holding_another_run_is_refused(zoo, tmp_path, capsys):
    assert _transfer(zoo, tmp_path / "run") == 0
    assert _transfer(zoo, tmp_path / "run", "--seed", "3") != 0
    assert "holds a different run (differs in training)" in _error(capsys)
    assert _transfer(zoo, tmp_path / "run") != 0
    assert "--resume" in _error(capsys)
    assert _transfer(zoo, tmp_path / "run", "--resume") == 0  # finished run: nothing left to do
    assert _transfer(zoo, tmp_path / "run", "--seed", "3", "--overwrite") == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["training"]["seed"] == 3
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert _transfer(zoo, tmp_path / "other") != 0
    assert "not empty" in _error(capsys)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_unknown_preset_lists_known_ones(zoo, tmp_path, capsys):
    assert (
        main(
            [
                "transfer",
                "--src",
                "blip2-opt-9b",
                "--dst",
                "llama-7b",
                "--data",
                str(zoo.data),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        != 0
    )
    error = _error(capsys)
    assert "unknown model preset 'blip2-opt-9b'" in error and "blip2-opt-2.7b" in error and "llama-7b" in error


def test_imagefolder_data(zoo, tmp_path):
    from vpgtrans import world

    folder = tmp_path / "imagefolder"
    world.write_dataset(folder, 16, seed=3, layout="imagefolder")
    assert (folder / "metadata.jsonl").exists()
    assert _transfer(zoo, tmp_path / "out", data=folder) == 0
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["data"]["samples"] == 16


def test_unreachable_hub_id_is_named(zoo, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: patch the constant
    assert (
        main(
            [
                "transfer",
                "--src",
                "no-such-org/no-such-blip2",
                "--dst",
                str(zoo.dst_llama),
                "--data",
                str(zoo.data),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        != 0
    )
    assert "no-such-org/no-such-blip2: not a local folder, and config.json could not be read from the hub" in _error(
        capsys
    )
    assert not (tmp_path / "o").exists()

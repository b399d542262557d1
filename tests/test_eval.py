"""`vpgtrans eval` and `vpgtrans score` on the tiny zoo, with fixtures in the benchmarks' own formats."""

from __future__ import annotations

import json

import pytest
from conftest import COCO_IDS

from vpgtrans.cli.main import main
from vpgtrans.errors import VPGTransError
from vpgtrans.evaluation.evaluate import Benchmark, EvalConfig, load_samples, task_config

FAST = ["--num-beams", "1", "--batch-size", "2"]


def test_protocol_per_task():
    caption = task_config("coco-caption", encoder_decoder=False)
    assert caption.prompt == "" and (
        caption.generation.num_beams,
        caption.generation.min_new_tokens,
        caption.generation.max_new_tokens,
    ) == (5, 8, 30)
    vqa = task_config("vqav2", encoder_decoder=False)
    assert vqa.prompt == "Question: {} Answer:" and vqa.generation.max_new_tokens == 10
    assert vqa.generation.stop_at_newline
    assert task_config("gqa", encoder_decoder=True).prompt == "Question: {} Short answer:"
    custom = task_config("okvqa", True, EvalConfig("m", Benchmark("okvqa", "d"), "o", prompt="Q: {} A:", num_beams=2))
    assert custom.prompt == "Q: {} A:" and custom.generation.num_beams == 2


def test_missing_images_or_answers_file_named(tmp_path):
    with pytest.raises(VPGTransError, match="--images is required for coco-caption"):
        load_samples(Benchmark("coco-caption", str(tmp_path / "dataset_coco.json")))
    with pytest.raises(VPGTransError, match="--annotations is required for okvqa"):
        load_samples(Benchmark("okvqa", "questions.json", images=str(tmp_path)))
    with pytest.raises(VPGTransError, match="task 'vizwiz' is not one of coco-caption"):
        load_samples(Benchmark("vizwiz", "d"))


def _coco_caption(coco) -> list[str]:
    return ["--task", "coco-caption", "--data", str(coco / "dataset_coco.json"), "--images", str(coco)]


def _eval(zoo, args: list[str]) -> int:
    return main(["eval", "--model", str(zoo.src), *args])


def test_eval_coco_caption(zoo, coco, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        _eval(
            zoo,
            [
                *_coco_caption(coco),
                "--limit",
                "2",
                "--max-new-tokens",
                "9",
                "--out",
                str(out),
                *FAST,
            ],
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["image_id"] for r in rows] == list(COCO_IDS[:2]) and all(isinstance(r["caption"], str) for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "coco-caption" and metrics["metric"] == "CIDEr" and metrics["n"] == 2
    assert metrics["generation"]["min_new_tokens"] == 8 and metrics["prompt"] == ""
    assert json.loads(capsys.readouterr().out.splitlines()[0])["score"] == pytest.approx(metrics["score"])


def test_eval_vqav2_then_score_agrees(zoo, coco, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        _eval(
            zoo,
            [
                "--task",
                "vqav2",
                "--images",
                str(coco / "val2014"),
                "--data",
                str(coco / "v2_OpenEnded_mscoco_val2014_questions.json"),
                "--annotations",
                str(coco / "v2_mscoco_val2014_annotations.json"),
                "--out",
                str(out),
                *FAST,
            ],
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and metrics["n"] == 3 and metrics["prompt"] == "Question: {} Answer:"
    capsys.readouterr()
    assert (
        main(
            [
                "score",
                "--task",
                "vqav2",
                "--predictions",
                str(out / "predictions.jsonl"),
                "--annotations",
                str(coco / "v2_mscoco_val2014_annotations.json"),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(metrics["score"])


def test_eval_toy_vqa(zoo, tmp_path):
    out = tmp_path / "eval"
    assert (
        _eval(
            zoo,
            [
                "--task",
                "toy-vqa",
                "--data",
                str(zoo.data.parent),
                "--limit",
                "3",
                "--out",
                str(out),
                *FAST,
            ],
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [0, 1, 2]
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["score"] <= 100.0


def test_missing_image_names_file_and_id(zoo, coco, tmp_path, capsys):
    (coco / "val2014" / f"COCO_val2014_{COCO_IDS[1]:012d}.jpg").unlink()
    assert (
        _eval(
            zoo,
            [
                *_coco_caption(coco),
                "--out",
                str(tmp_path / "eval"),
            ],
        )
        != 0
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"COCO_val2014_{COCO_IDS[1]:012d}.jpg: image not found for image_id {COCO_IDS[1]}" in err
    assert not (tmp_path / "eval").exists()
    assert (
        _eval(
            zoo,
            [
                "--task",
                "vqav2",
                "--data",
                str(coco / "dataset_coco.json"),
                "--images",
                str(coco),
                "--out",
                str(tmp_path / "eval"),
            ],
        )
        != 0
    )
    assert "--annotations is required" in capsys.readouterr().err


def test_score_prints_json(coco, tmp_path, capsys):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(
        "".join(
            json.dumps({"question_id": c * 10, "answer": a}) + "\n" for c, a in zip(COCO_IDS, ["red", "Red.", "blue"])
        )
    )
    annotations = coco / "v2_mscoco_val2014_annotations.json"
    assert main(["score", "--task", "vqav2", "--predictions", str(predictions), "--annotations", str(annotations)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"task": "vqav2", "n": 3, "n_annotated": 3, "metric": "accuracy", "score": pytest.approx(200 / 3)}
    assert (
        main(
            [
                "score",
                "--task",
                "vqav2",
                "--predictions",
                str(predictions),
                "--annotations",
                str(coco / "dataset_coco.json"),
            ]
        )
        != 0
    )
    assert "expected a VQA annotations file" in capsys.readouterr().err


def test_score_toy_caption(zoo, tmp_path, capsys):
    folder = zoo.data.parent
    truth = [json.loads(line) for line in zoo.data.read_text().splitlines()][:3]
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"image_id": r["image"], "caption": r["caption"]}) + "\n" for r in truth))
    assert (
        main(["score", "--task", "toy-caption", "--predictions", str(predictions), "--annotations", str(folder)]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["attribute_accuracy"] == pytest.approx(100.0) and result["metric"] == "CIDEr" and result["n"] == 3
    assert [result[f"{k}_accuracy"] for k in ("colour", "shape", "size", "position")] == pytest.approx([100.0] * 4)
    assert (
        main(["score", "--task", "toy-caption", "--predictions", str(predictions), "--annotations", str(tmp_path)]) != 0
    )
    assert "not a miniature-world folder" in capsys.readouterr().err


def test_in_memory_scores_equal_vpgtrans_eval(zoo, coco, tmp_path):
    """What `compare --benchmark` records at an evaluation point is what `vpgtrans eval` reports."""
    from vpgtrans.evaluation.evaluate import benchmark_scores, load_benchmark, run_eval
    from vpgtrans.method.graft import load_blip2

    model, processor = load_blip2(str(zoo.src))
    for benchmark in (
        Benchmark("coco-caption", str(coco / "dataset_coco.json"), images=str(coco)),
        Benchmark(
            "vqav2",
            str(coco / "v2_OpenEnded_mscoco_val2014_questions.json"),
            images=str(coco / "val2014"),
            annotations=str(coco / "v2_mscoco_val2014_annotations.json"),
            limit=2,
        ),
        Benchmark("toy-caption", str(zoo.data.parent), limit=3),
    ):
        scores = benchmark_scores(model, processor, load_benchmark(benchmark))
        metrics = run_eval(EvalConfig(str(zoo.src), benchmark, str(tmp_path / benchmark.task)))
        assert scores[benchmark.task] == pytest.approx(metrics["score"]), benchmark.task
        assert metrics["n"] == (2 if benchmark.task == "vqav2" else 3)
        if benchmark.task == "toy-caption":  # the task's other numbers ride along under its name
            assert scores["toy-caption_attribute_accuracy"] == pytest.approx(metrics["attribute_accuracy"])
            assert scores["toy-caption_colour_accuracy"] == pytest.approx(metrics["colour_accuracy"])
        else:
            assert set(scores) == {benchmark.task}

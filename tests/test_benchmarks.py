"""Tests for vpgtrans.benchmarks on small fixtures in the benchmarks' own file formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vpgtrans.errors import VPGTransError
from vpgtrans.evaluation.formats import (
    BenchmarkFormatError,
    CaptionSample,
    VQASample,
    load_coco_karpathy,
    load_gqa,
    load_nocaps,
    load_vqa,
)
from vpgtrans.evaluation.metrics import cider_d
from vpgtrans.evaluation.ptb import ptb_tokenize
from vpgtrans.evaluation.tasks import read_predictions, score


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


_CAPTIONS = {
    391895: [
        "A man with a red helmet on a small moped on a dirt road.",
        "Man riding a motor bike on a dirt road on the countryside.",
        "A man riding on the back of a motorcycle.",
        "A dirt path with a young person on a motor bike rests to the foreground.",
        "A man in a red shirt and a red hat is on a motorcycle on a hill side.",
    ],
    522418: [
        "A woman wearing a net on her head cutting a cake.",
        "A woman cutting a large white sheet cake.",
        "A woman wearing a hair net cutting a large sheet cake.",
        "there is a woman that is cutting a white cake",
        "A woman marking a cake with the back of a chef's knife.",
    ],
    184613: [
        "A child holding a flowered umbrella and petting a yak.",
        "A young man holding an umbrella next to a herd of cattle.",
        "a young boy barefoot holding an umbrella touching the horn of a cow",
        "A young boy with an umbrella who is touching the horn of a cow.",
        "A boy holding an umbrella while standing next to livestock.",
    ],
}


@pytest.fixture
def karpathy(tmp_path: Path) -> Path:
    images = []
    for i, (cocoid, caps) in enumerate(_CAPTIONS.items()):
        images.append(
            {
                "filepath": "val2014",
                "filename": f"COCO_val2014_{cocoid:012d}.jpg",
                "imgid": i,
                "split": "test" if i < 2 else "train",
                "cocoid": cocoid,
                "sentids": list(range(5)),
                "sentences": [
                    {"tokens": c.lower().split(), "raw": c, "imgid": i, "sentid": j} for j, c in enumerate(caps)
                ],
            }
        )
    return _write_json(tmp_path / "dataset_coco.json", {"images": images, "dataset": "coco"})


@pytest.fixture
def nocaps(tmp_path: Path) -> Path:
    domains = ["in-domain", "near-domain", "out-domain"]
    images = [
        {
            "id": i,
            "file_name": f"{i:04x}abcd.jpg",
            "open_images_id": f"{i:04x}abcd",
            "height": 480,
            "width": 640,
            "domain": domains[i],
        }
        for i in range(3)
    ]
    anns = [
        {"image_id": i, "id": 10 * i + j, "caption": c}
        for i, caps in enumerate(_CAPTIONS.values())
        for j, c in enumerate(caps)
    ]
    return _write_json(
        tmp_path / "nocaps_val_4500_captions.json", {"licenses": [], "info": {}, "images": images, "annotations": anns}
    )


_VQA = [  # (question_id, image_id, question, 10 answers)
    (1, 391895, "How many wheels?", ["2"] * 10),
    (2, 522418, "What is she cutting?", ["cake"] * 6 + ["sheet cake"] * 4),
    (3, 184613, "What is he holding?", ["umbrella"] * 2 + ["umbrellas"] * 8),
]


@pytest.fixture
def vqa_files(tmp_path: Path) -> tuple[Path, Path]:
    questions = {
        "info": {},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "data_subtype": "val2014",
        "license": {},
        "questions": [{"question_id": q, "image_id": im, "question": text} for q, im, text, _ in _VQA],
    }
    annotations = {
        "info": {},
        "data_type": "mscoco",
        "data_subtype": "val2014",
        "license": {},
        "annotations": [
            {
                "question_id": q,
                "image_id": im,
                "question_type": "what",
                "answer_type": "other",
                "multiple_choice_answer": answers[0],
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j, a in enumerate(answers)
                ],
            }
            for q, im, _, answers in _VQA
        ],
    }
    return (
        _write_json(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", questions),
        _write_json(tmp_path / "v2_mscoco_val2014_annotations.json", annotations),
    )


@pytest.fixture
def gqa(tmp_path: Path) -> Path:
    data = {
        "20968379": {
            "imageId": "n288870",
            "question": "Is the sky blue?",
            "answer": "yes",
            "fullAnswer": "Yes, the sky is blue.",
            "isBalanced": True,
        },
        "20968380": {
            "imageId": "n288870",
            "question": "What is on the table?",
            "answer": "laptop",
            "fullAnswer": "The laptop is on the table.",
        },
    }
    return _write_json(tmp_path / "testdev_balanced_questions.json", data)


# --------------------------------------------------------------------------- readers


def test_load_coco_karpathy(karpathy: Path, tmp_path: Path) -> None:
    samples = load_coco_karpathy(karpathy, tmp_path / "coco")
    assert [s.image_id for s in samples] == [391895, 522418]  # train image dropped
    assert samples[0] == CaptionSample(
        391895, tmp_path / "coco" / "val2014" / "COCO_val2014_000000391895.jpg", tuple(_CAPTIONS[391895])
    )
    assert len(load_coco_karpathy(karpathy, tmp_path, split="train")) == 1


def test_load_nocaps(nocaps: Path, tmp_path: Path) -> None:
    samples = load_nocaps(nocaps, tmp_path)
    assert [s.domain for s in samples] == ["in-domain", "near-domain", "out-domain"]
    assert samples[1].image_path == tmp_path / "0001abcd.jpg"
    assert samples[1].references == tuple(_CAPTIONS[522418])


def test_load_vqa(vqa_files: tuple[Path, Path], tmp_path: Path) -> None:
    samples = load_vqa(*vqa_files, tmp_path)
    assert samples[0] == VQASample(
        1, 391895, tmp_path / "COCO_val2014_000000391895.jpg", "How many wheels?", ("2",) * 10
    )
    assert len(samples) == 3 and len(samples[2].answers) == 10


def test_load_gqa(gqa: Path, tmp_path: Path) -> None:
    samples = load_gqa(gqa, tmp_path)
    assert samples[1] == VQASample(
        "20968380", "n288870", tmp_path / "n288870.jpg", "What is on the table?", ("laptop",)
    )


# --------------------------------------------------------------------------- scoring


def test_score_coco_caption(karpathy: Path, tmp_path: Path) -> None:
    preds = _write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"image_id": 391895, "caption": "A man riding a motorcycle on a dirt road."},
            {"image_id": "522418", "caption": "a woman cutting a cake"},
        ],
    )
    result = score("coco-caption", preds, karpathy, per_sample=True)
    refs = ptb_tokenize({k: _CAPTIONS[k] for k in (391895, 522418)})
    expected, _ = cider_d(
        refs, ptb_tokenize({391895: ["A man riding a motorcycle on a dirt road."], 522418: ["a woman cutting a cake"]})
    )
    assert result["metric"] == "CIDEr" and result["n"] == result["n_annotated"] == 2
    assert result["score"] == pytest.approx(100 * expected)
    assert set(result["per_sample"]) == {"391895", "522418"}


def test_score_nocaps_reports_domains(nocaps: Path, tmp_path: Path) -> None:
    preds = _write_jsonl(
        tmp_path / "p.jsonl", [{"image_id": i, "caption": caps[0]} for i, caps in enumerate(_CAPTIONS.values())]
    )
    result = score("nocaps", preds, nocaps)
    assert result["n"] == 3 and result["score"] > 0
    assert set(result["domains"]) == {"in-domain", "near-domain", "out-domain"}


def test_score_vqa_tasks(vqa_files: tuple[Path, Path], gqa: Path, tmp_path: Path) -> None:
    _, annotations = vqa_files
    preds = _write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"question_id": 1, "answer": "Two"},  # 1.0 after normalisation
            {"question_id": 2, "answer": "sheet cake"},  # 4 humans: 1.0
            {"question_id": 3, "answer": "umbrellas"},  # 8 humans: 1.0; "umbrella": 2 -> 0.6
        ],
    )
    assert score("vqav2", preds, annotations)["score"] == pytest.approx(100.0)
    preds = _write_jsonl(tmp_path / "p2.jsonl", [{"question_id": 3, "answer": "umbrella"}])
    result = score("vqav2", preds, annotations)
    assert result["score"] == pytest.approx(60.0) and result["n_annotated"] == 3
    assert score("okvqa", preds, annotations)["score"] == pytest.approx(100.0)  # lemmatised
    preds = _write_jsonl(
        tmp_path / "p3.jsonl",
        [{"question_id": "20968379", "answer": "Yes."}, {"question_id": 20968380, "answer": "a laptop"}],
    )
    assert score("gqa", preds, gqa)["score"] == pytest.approx(100.0)


# --------------------------------------------------------------------------- errors


def test_wrong_benchmark_file_is_named(
    vqa_files: tuple[Path, Path], karpathy: Path, nocaps: Path, tmp_path: Path
) -> None:
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"image_id": 391895, "caption": "a man"}])
    _, annotations = vqa_files
    with pytest.raises(
        BenchmarkFormatError,
        match=r"v2_mscoco_val2014_annotations\.json.*"
        r"Karpathy.*VQA annotations",
    ):
        score("coco-caption", preds, annotations)
    with pytest.raises(BenchmarkFormatError, match="NoCaps"):
        score("coco-caption", preds, nocaps)
    vqa_preds = _write_jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "answer": "2"}])
    with pytest.raises(BenchmarkFormatError, match="dataset_coco.json.*VQA annotations"):
        score("vqav2", vqa_preds, karpathy)
    with pytest.raises(BenchmarkFormatError, match="GQA questions"):
        score("gqa", vqa_preds, annotations)


def test_prediction_without_annotation(karpathy: Path, vqa_files: tuple[Path, Path], tmp_path: Path) -> None:
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"image_id": 184613, "caption": "a boy"}])
    with pytest.raises(
        BenchmarkFormatError,
        match=r"p\.jsonl: image_id 184613 has no "
        r"annotation.*split 'test'",
    ):
        score("coco-caption", preds, karpathy)  # 184613 is a train image
    preds = _write_jsonl(tmp_path / "q.jsonl", [{"question_id": 99, "answer": "2"}])
    with pytest.raises(BenchmarkFormatError, match="question_id 99 has no annotation"):
        score("vqav2", preds, vqa_files[1])


def test_malformed_predictions(vqa_files: tuple[Path, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1, "answer": "2"}\n\n{"question_id": 2, "answer": \n')
    with pytest.raises(BenchmarkFormatError, match=r"bad\.jsonl:3: malformed JSON"):
        score("vqav2", bad, vqa_files[1])
    bad.write_text('{"question_id": 1, "caption": "2"}\n')
    with pytest.raises(BenchmarkFormatError, match=":1: expected an object with"):
        read_predictions(bad, "vqav2")
    bad.write_text('{"question_id": 1, "answer": "2"}\n{"question_id": "1", "answer": "3"}\n')
    with pytest.raises(BenchmarkFormatError, match=":2: duplicate question_id 1"):
        read_predictions(bad, "okvqa")
    bad.write_text("")
    with pytest.raises(BenchmarkFormatError, match="no predictions"):
        read_predictions(bad, "gqa")


def test_require_complete_and_unknown_task(vqa_files: tuple[Path, Path], tmp_path: Path) -> None:
    preds = _write_jsonl(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "2"}])
    with pytest.raises(BenchmarkFormatError, match="2 of 3 annotated ids have no prediction"):
        score("vqav2", preds, vqa_files[1], require_complete=True)
    with pytest.raises(VPGTransError, match="unknown task"):
        score("vizwiz", preds, vqa_files[1])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(BenchmarkFormatError, match="broken.json: not valid JSON"):
        score("vqav2", preds, broken)

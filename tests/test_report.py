"""`vpgtrans report` on hand-made run and compare folders, and `vpgtrans estimate` against the paper."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from real_configs import BLIP2_OPT_2_7B, OPT_6_7B

from vpgtrans.cli.main import main
from vpgtrans.costs import DEFAULT_MFU

A100_FLOPS_PER_HOUR = 312e12 * DEFAULT_MFU * 3600


def _stage(name: str, samples: int, seconds: float, flops: float) -> dict:
    parts = {"vit": 0.3 * flops, "qformer": 0.1 * flops, "projector": 0.1 * flops, "llm": 0.5 * flops}
    return {
        "config": {"name": name},
        "result": {
            "name": name,
            "steps": samples // 8,
            "samples": samples,
            "text_tokens": 10 * samples,
            "lm_tokens": 14 * samples,
            "seconds": seconds,
            "losses": [3.0, 2.0],
            "resumed_from_step": 0,
            "peak_memory_bytes": 0,
            "device": "cpu",
        },
        "cost": {"flops": {**parts, "total": flops}, "device_name": "cpu (x86_64, 2 cores)"},
    }


@pytest.fixture
def run_dir(tmp_path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(
        json.dumps(
            {
                "config": {"src": "toy-blip2-opt-s", "dst": "toy-llama"},
                "status": "done",
                "stages": {"warmup": _stage("warmup", 16, 3.0, 2e15), "finetune": _stage("finetune", 80, 20.0, 1e16)},
            }
        )
    )
    return folder


def _point(epoch: int, score: float, samples_per_epoch: int = 100, flops_per_epoch: float = 1e15) -> dict:
    return {
        "epoch": epoch,
        "step": epoch * 10,
        "samples": epoch * samples_per_epoch,
        "seconds": 5.0 * epoch,
        "scores": {"caption": score},
        "lm_tokens": 0,
        "flops": epoch * flops_per_epoch,
        "peak_memory_bytes": 0,
        "device": "cpu",
    }


@pytest.fixture
def compare_dir(tmp_path) -> Path:
    folder = tmp_path / "compare"
    folder.mkdir()
    summary = {"mean": 2.0, "std": 0.0, "per_seed": [2.0], "never_reached": 0}
    (folder / "results.json").write_text(
        json.dumps(
            {
                "config": {"src": "toy-blip2-opt-s", "dst": "toy-opt-l"},
                "speedup": {"caption": {"epoch": summary, "samples": summary, "seconds": summary}},
                "curves": {
                    "tfs": {"0": [_point(e, s) for e, s in enumerate([0.0, 0.1, 0.3, 0.5, 0.8, 0.8])]},
                    "vpgtrans": {"0": [_point(e, s) for e, s in enumerate([0.0, 0.5, 0.85, 0.9, 0.9, 0.9])]},
                },
            }
        )
    )
    return folder


def _cells(markdown: str, first: str) -> list[str]:
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_report_on_a_run_and_a_comparison(run_dir, compare_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(run_dir), str(compare_dir), "--out", str(out), "--price-per-hour", "2"]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    md = (out / "report.md").read_text()
    total = _cells(md, "total")  # stage table: warm-up + fine-tuning
    hours = 1.2e16 / A100_FLOPS_PER_HOUR
    assert total[2] == "96" and total[4] == "23.0 s"
    assert total[-3:] == ["1.2e+16", f"{hours:.3g}", f"${2 * hours:.3g}"]
    assert _cells(md, "warmup")[5] == "cpu (x86_64, 2 cores)"
    tfs = _cells(md, "caption attribute accuracy (%) | TFS (at its best)")
    vt = _cells(md, "caption attribute accuracy (%) | VPGTrans (beating it)")
    assert tfs[2:6] == ["1/1", "0.8", "4", "400"] and tfs[6] == "4e+15" and tfs[-1] == "20 s"
    assert vt[2:6] == ["1/1", "0.8", "2", "200"] and vt[6] == "2e+15"
    assert _cells(md, "caption attribute accuracy (%)")[1] == "2.0x ± 0.0"  # speed-up (epochs)
    assert "Note: TFS reached its best caption score in the last 20% of its 5-epoch budget on 1 of 1 seed(s)" in md
    assert _cells(md, "tfs")[1:3] == ["500", "5e+15"]  # whole budget
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(images) == 4 and all((out / name).stat().st_size > 1000 for name in images)
    page = (out / "report.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)  # self-contained
    assert "<table>" in page and f"${2 * hours:.3g}" in page


def test_report_refuses_other_folders(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) != 0
    assert "neither a transfer run (run.json) nor a compare folder (results.json)" in capsys.readouterr().err


def _estimate(capsys, *argv: str) -> dict:
    assert main(["estimate", *argv]) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{") :])


def test_estimate_cli_matches_the_paper(tmp_path, capsys):
    src = tmp_path / "blip2-opt-2.7b"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(BLIP2_OPT_2_7B))  # a model folder
    dst = tmp_path / "opt-6.7b.json"
    dst.write_text(json.dumps(OPT_6_7B))  # a bare config file
    result = _estimate(capsys, "--src", str(src), "--dst", str(dst), "--gpu", "a100-40g")
    assert result["vpgtrans"]["samples"] == 13_800_000 and result["scratch"]["samples"] == 129_000_000
    assert result["vpgtrans"]["gpu_hours"] == pytest.approx(59.0, rel=0.10)  # paper: 59 A100-hours
    assert result["scratch"]["gpu_hours"] == pytest.approx(631.5, rel=0.10)  # paper: 631.5 A100-hours
    assert result["vpgtrans"]["dollars"] == pytest.approx(4.10 * result["vpgtrans"]["gpu_hours"])
    h100 = _estimate(capsys, "--src", str(src), "--dst", str(dst), "--gpu", "h100", "--samples", "1e6", "--mfu", "0.3")
    assert h100["vpgtrans"]["samples"] == 1_000_000
    assert h100["vpgtrans"]["gpu_hours"] == pytest.approx(
        result["vpgtrans"]["gpu_hours"] / 13.8 * 312 * DEFAULT_MFU / (989 * 0.3)
    )


def test_estimate_cli_reads_model_folders(zoo, capsys):
    result = _estimate(capsys, "--src", str(zoo.src), "--dst", str(zoo.dst_llama), "--samples", "1000")
    assert 0 < result["vpgtrans"]["flops"]["total"] < 1e13
    assert main(["estimate", "--src", str(zoo.data), "--dst", str(zoo.dst_llama)]) != 0
    assert "vpgtrans: error:" in capsys.readouterr().err

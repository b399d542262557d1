"""compare: the paper's speed-up on hand-made curves, each arm's starting point, a tiny run end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import vpgtrans.compare
import vpgtrans.compare_report
import vpgtrans.evaluate
import vpgtrans.zeroshot
from vpgtrans.benchmarks import corpus_cider
from conftest import COCO_IDS
from vpgtrans.compare import (ARMS, CompareConfig, CurvePoint, arm_model, evaluation_steps, late_peak_note, orderings,
                              run_compare, speedup, summarise, sweep_edge_note, warmup_end_epoch)
from vpgtrans.converter import fit_converter
from vpgtrans.errors import VPGTransError
from vpgtrans.evaluate import EvalResult
from vpgtrans.graft import load_blip2
from vpgtrans.transfer import TrainingConfig
from vpgtrans.zeroshot import Benchmark, benchmark_scores, load_benchmark


def _curve(scores: list[float], samples_per_epoch: int = 100, seconds_per_epoch: float = 2.0) -> list[CurvePoint]:
    return [CurvePoint(e, e * 10, e * samples_per_epoch, e * seconds_per_epoch, {"caption": s}) for e, s in enumerate(scores)]


def test_speedup_as_the_paper_defines_it():
    tfs = _curve([0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.7, 0.8, 0.8, 0.75])  # best 0.8 first at epoch 7
    transfer = _curve([0.0, 0.5, 0.81, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])  # reaches 0.8 at epoch 2
    assert speedup(tfs, transfer, "caption") == pytest.approx(3.5)
    assert speedup(tfs, transfer, "caption", "samples") == pytest.approx(3.5)
    slow = _curve([0.0, 0.5, 0.81, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9], seconds_per_epoch=7.0)
    assert speedup(tfs, slow, "caption", "seconds") == pytest.approx(1.0)


def test_speedup_never_reached_and_ties():
    tfs = _curve([0.0, 0.2, 0.9, 0.9])
    assert speedup(tfs, _curve([0.0, 0.5, 0.8, 0.85]), "caption") is None
    assert speedup(tfs, _curve([0.0, 0.9, 0.5, 0.5]), "caption") is None  # a tie does not beat TFS's best
    assert speedup(tfs, _curve([0.0, 0.9, 0.91, 0.5]), "caption") == pytest.approx(1.0)
    summary = summarise([2.0, None, 4.0])
    assert summary["mean"] == pytest.approx(3.0) and summary["never_reached"] == 1 and summary["per_seed"] == [2.0, None, 4.0]
    assert summarise([None])["mean"] is None


def test_sweep_winner_at_the_grid_edge_is_flagged():
    assert sweep_edge_note({"0.0005": 0.4, "0.001": 0.5, "0.003": 0.45}) is None
    assert sweep_edge_note({"0.001": 0.5}) is None  # a single learning rate is no sweep
    assert sweep_edge_note({}) is None
    high = sweep_edge_note({"0.0005": 0.4, "0.001": 0.45, "0.003": 0.47})
    assert high.startswith("TFS's chosen learning rate 0.003 is the largest of its sweep (0.0005, 0.001, 0.003)")
    assert "above it" in high
    low = sweep_edge_note({"0.003": 0.3, "0.0005": 0.5, "0.001": 0.45})
    assert "0.0005 is the smallest" in low and "below it" in low


def test_late_tfs_peak_is_flagged_and_each_seed_shown(tmp_path):
    early = _curve([0.0, 0.5, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7])  # best at epoch 2 of 10
    late = _curve([0.0, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.75, 0.7, 0.7])  # best at epoch 8: the last fifth
    assert late_peak_note([early, early], "caption") is None
    note = late_peak_note([early, late], "caption")
    assert note.startswith("TFS reached its best caption score in the last 20% of its 10-epoch budget on 1 of 2 seed(s)")
    transfer = _curve([0.0, 0.6, 0.76, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    tying = _curve([0.0, 0.6, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8])  # never beats seed 0's 0.8
    results = {"speedup": {"caption": {u: summarise([None, 4.0]) for u in ("epoch", "samples", "seconds")}},
               "curves": {arm: {str(s): [vars(p) for p in c] for s, c in enumerate(curves)}
                          for arm, curves in (("tfs", [early, late]), ("vpgtrans", [tying, transfer]))}}
    vpgtrans.compare_report.write_table(results, tmp_path / "results.md")
    table = (tmp_path / "results.md").read_text()
    assert "- caption attribute accuracy: e_TFS / e_VT per seed (epochs): 2 / never, 8 / 2\n" in table
    assert "  - TFS reached its best caption score in the last 20%" in table


def test_orderings_per_metric_and_seed():
    def arm(*per_seed):  # per seed: (caption, vqa) after epoch 1
        return {s: [CurvePoint(0, 0, 0, 0.0, {"caption": 0.0, "cider": 0.0, "vqa": 0.0}),
                    CurvePoint(1, 10, 100, 1.0, {"caption": c, "cider": 100 * c, "vqa": v})] for s, (c, v) in enumerate(per_seed)}

    curves = {"vpgtrans": arm((0.5, 0.40), (0.5, 0.40), (0.3, 0.40)),
              "random-warmup": arm((0.4, 0.45), (0.4, 0.45), (0.35, 0.35)),
              "tfs": arm((0.2, 0.2), (0.2, 0.2), (0.2, 0.2))}
    checks = orderings(curves)
    assert set(checks) == {"fused init beats random init after warm-up"}  # the other arms were not run
    check = checks["fused init beats random init after warm-up"]
    assert check["arms"] == ["vpgtrans", "random-warmup"] and check["epoch"] == 1 and check["seeds"] == 3
    assert check["caption"]["holds"] and check["caption"]["seeds_holding"] == 2
    assert check["caption"]["means"] == pytest.approx([1.3 / 3, 1.15 / 3])
    assert not check["vqa"]["holds"] and check["vqa"]["seeds_holding"] == 1


def test_orderings_after_a_longer_warmup_are_read_at_its_end():
    def arm(after_1, after_2, seeds=2):
        return {s: [CurvePoint(e, 10 * e, 100 * e, float(e), {"caption": c, "cider": 100 * c, "vqa": 0.3})
                    for e, c in enumerate((0.0, after_1, after_2))] for s in range(seeds)}

    # the fused start is behind at epoch 1, mid-warm-up, and ahead when the two-epoch warm-up ends;
    # inheriting without warm-up is read after epoch 1 whatever the warm-up's length
    curves = {"vpgtrans": arm(0.2, 0.5), "random-warmup": arm(0.3, 0.4),
              "tfs": arm(0.25, 0.3), "inherit-no-warmup": arm(0.2, 0.6)}
    after_two = orderings(curves, warmup_end=2)
    assert after_two["fused init beats random init after warm-up"]["epoch"] == 2
    assert after_two["fused init beats random init after warm-up"]["caption"]["seeds_holding"] == 2
    assert after_two["TFS starts better than inheriting without warm-up"]["epoch"] == 1
    assert after_two["TFS starts better than inheriting without warm-up"]["caption"]["holds"]
    assert not orderings(curves)["fused init beats random init after warm-up"]["caption"]["holds"]
    assert "fused init beats random init after warm-up" not in orderings(curves, warmup_end=3)  # not reached


def test_warmup_end_epoch_follows_the_recipe():
    training = TrainingConfig(batch_size=16)  # 2,000 samples: 125 steps per epoch
    assert warmup_end_epoch(training, 2000, 1) == 1
    assert warmup_end_epoch(replace(training, stage1_epochs=2.0), 2000, 1) == 2
    assert warmup_end_epoch(replace(training, stage1_epochs=1.5), 2000, 1) == 2  # read at the next epoch end
    assert warmup_end_epoch(replace(training, stage1_steps=130), 2000, 1) == 2


def test_evaluation_point_scores_the_captions_cider(monkeypatch):
    references = ["a red circle at the top", "a small blue square on the left", "a large green cross in the center"]

    def scored(captions):
        predictions = [{"image": f"images/{i}.png", "caption": c, "reference": r}
                       for i, (c, r) in enumerate(zip(captions, references))]
        monkeypatch.setattr(vpgtrans.compare, "world_caption_accuracy",
                            lambda *args: EvalResult("toy-caption", 0.5, 3, predictions, {"colour": 0.5}))
        monkeypatch.setattr(vpgtrans.compare, "world_vqa_accuracy", lambda *args: EvalResult("toy-vqa", 0.25, 3))
        return vpgtrans.compare.evaluate_point(torch.nn.Identity(), None, "world", 3)

    perfect = scored(references)
    assert perfect == {"caption": 0.5, "cider": pytest.approx(1000.0), "vqa": 0.25, "caption_colour": 0.5}
    wrong = ["a red circle at the bottom", "a small blue square on the left", "a green green cross"]
    expected, _ = corpus_cider(dict(enumerate(wrong)), {i: (r,) for i, r in enumerate(references)})
    assert scored(wrong)["cider"] == pytest.approx(expected) and 0 < expected < 1000.0


def test_each_arm_starts_where_it_should(zoo, tmp_path):
    config = CompareConfig(src=str(zoo.src), dst=str(zoo.dst_llama), data=str(zoo.data), eval="", out=str(tmp_path))
    source, _ = load_blip2(str(zoo.src))
    converter = fit_converter(str(zoo.src), str(zoo.dst_llama))
    for name, arm in ARMS.items():
        model, _ = arm_model(config, arm, 0, converter)
        inherited = torch.equal(model.qformer.encoder.layer[0].attention.attention.query.weight,
                                source.qformer.encoder.layer[0].attention.attention.query.weight)
        assert inherited == (arm.vpg == "inherit"), name
        assert torch.equal(model.query_tokens, source.query_tokens) == (arm.vpg == "inherit"), name
        assert torch.equal(model.vision_model.embeddings.patch_embedding.weight,
                           source.vision_model.embeddings.patch_embedding.weight), name  # ViT always the source's
        queries = torch.randn(2, source.config.qformer_config.hidden_size)
        out, fused = model.language_projection(queries), converter(source.language_projection(queries))
        if arm.prompt_scale:  # the fused projector, rescaled as a whole
            scale = (out.norm() / fused.norm()).detach()
            assert abs(float(scale) - 1) > 1e-3 and torch.allclose(out, fused * scale, atol=1e-5), name
        else:
            assert torch.allclose(out, fused, atol=1e-5) == (arm.projector == "fused"), name


def test_tiny_compare_end_to_end(zoo, tmp_path):
    config = CompareConfig(
        src=str(zoo.src), dst=str(zoo.dst_llama), data=str(zoo.data), eval=str(zoo.data.parent), out=str(tmp_path),
        arms=("tfs", "vpgtrans", "inherit-no-warmup", "random-warmup", "warmup-1x", "warmup-2-epochs"), seeds=2,
        budget_epochs=3,
        training=TrainingConfig(batch_size=16, lr=1e-3), tfs_lrs=(1e-3, 3e-3), eval_limit=4,
    )
    results = run_compare(config)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["speedup"] == json.loads(json.dumps(results["speedup"]))
    assert set(saved["speedup"]) == {"caption", "cider", "vqa"}
    for metric in ("caption", "cider", "vqa"):
        for unit in ("epoch", "samples", "seconds"):
            entry = saved["speedup"][metric][unit]
            assert set(entry) == {"mean", "std", "per_seed", "never_reached"} and len(entry["per_seed"]) == 2
    assert saved["tfs_lr"] in (1e-3, 3e-3) and set(saved["tfs_lr_sweep"]) == {"0.001", "0.003"}
    edge = "largest" if saved["tfs_lr"] == 3e-3 else "smallest"  # a two-point sweep always picks an edge
    assert f"- TFS's chosen learning rate {saved['tfs_lr']:g} is the {edge} of its sweep" in (tmp_path / "results.md").read_text()
    curve = saved["curves"]["vpgtrans"]["0"]
    assert [p["epoch"] for p in curve] == [0, 1, 2, 3]
    assert curve[1]["samples"] == 48 and curve[3]["samples"] == 144  # 3 steps of 16 per epoch
    assert 0 < curve[1]["flops"] < curve[2]["flops"] < curve[3]["flops"] and curve[3]["device"].startswith("cpu")
    assert curve[3]["lm_tokens"] > curve[1]["lm_tokens"] > 0
    assert {"caption_colour", "caption_shape", "caption_size", "caption_position"} <= set(curve[1]["scores"])
    assert [p["epoch"] for p in saved["curves"]["tfs"]["1"]] == [0, 1, 2, 3]
    assert set(saved["orderings"]) == {"fused init beats random init after warm-up", "5x warm-up beats 1x",
                                       "TFS starts better than inheriting without warm-up"}
    assert saved["orderings"]["5x warm-up beats 1x"]["caption"]["seeds_holding"] in (0, 1, 2)
    assert set(saved["speedup_by_arm"]) == {"vpgtrans", "inherit-no-warmup", "random-warmup", "warmup-1x", "warmup-2-epochs"}
    # a warm-up epoch runs the Q-Former forward only, a fine-tuning epoch also backward: the
    # per-epoch FLOPs say which epochs each arm spent warming up (same data every epoch)
    for arm, warmup_epochs in (("vpgtrans", 1), ("warmup-2-epochs", 2)):
        points = saved["curves"][arm]["0"]
        assert [p["lm_tokens"] - q["lm_tokens"] for q, p in zip(points, points[1:])] == [points[1]["lm_tokens"]] * 3
        flops = [p["flops"] - q["flops"] for q, p in zip(points, points[1:])]
        assert flops[:warmup_epochs] == pytest.approx([flops[0]] * warmup_epochs), (arm, flops)
        assert all(f > 1.01 * flops[0] for f in flops[warmup_epochs:]), (arm, flops)
    assert saved["speedup_by_arm"]["vpgtrans"]["caption"] == saved["speedup"]["caption"]["epoch"]
    assert "| warmup-1x |" in (tmp_path / "results.md").read_text()
    assert "- 5x warm-up beats 1x (vpgtrans vs warmup-1x, epoch 1): caption attribute accuracy" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "curve-caption.png").stat().st_size > 1000
    assert "speed-up (epochs)" in (tmp_path / "results.md").read_text()
    # a rerun resumes from the saved curves instead of training again, when asked to
    before = {p.name: p.stat().st_mtime for p in (tmp_path / "curves").iterdir()}
    with pytest.raises(VPGTransError, match="pass --resume"):
        run_compare(config)
    run_compare(config, resume=True)
    assert before == {p.name: p.stat().st_mtime for p in (tmp_path / "curves").iterdir()}
    # an arm whose curve is gone trains again from the start, not from its stage checkpoints
    lost = tmp_path / "curves" / "vpgtrans-seed1-lr0.001.json"
    lost.unlink()
    assert (tmp_path / "work" / "vpgtrans-1-0.001" / "finetune").is_dir()
    run_compare(config, resume=True)

    def untimed(points):  # everything but the measured seconds
        return [{k: v for k, v in p.items() if k != "seconds"} for p in points]

    assert untimed(json.loads(lost.read_text())["points"]) == untimed(saved["curves"]["vpgtrans"]["1"])
    # a curve saved before a training setting existed ran with its default, and still resumes
    tfs = tmp_path / "curves" / "tfs-seed0-lr0.001.json"
    saved_tfs = json.loads(tfs.read_text())
    del saved_tfs["settings"]["training"]["stage1_epochs"]
    del saved_tfs["settings"]["benchmarks"]
    tfs.write_text(json.dumps(saved_tfs))
    run_compare(config, resume=True)
    with pytest.raises(VPGTransError, match=r"curves/tfs-seed0-lr0.001.json: .*differs in training"):
        run_compare(replace(config, training=replace(config.training, stage1_epochs=2.0)), resume=True)
    # curves made another way are never mixed in, nor curves saved before a metric was recorded
    old = json.loads(lost.read_text())
    for point in old["points"]:
        del point["scores"]["cider"]
    lost.write_text(json.dumps(old))
    with pytest.raises(VPGTransError, match=r"vpgtrans-seed1-lr0.001.json: saved before metric\(s\) cider were recorded"):
        run_compare(config, resume=True)
    with pytest.raises(VPGTransError, match=r"curves/tfs-seed0-lr0.001.json: .*differs in eval_limit"):
        run_compare(replace(config, arms=("tfs", "vpgtrans"), eval_limit=5), resume=True)


def test_compare_on_benchmarks(zoo, coco, tmp_path, monkeypatch):
    """Real-benchmark scoring, as a user with real models runs it: COCO captions and VQAv2 in their
    own files, no miniature-world folder; each benchmark is a metric with its own speed-up."""
    caption = Benchmark("coco-caption", str(coco / "dataset_coco.json"), images=str(coco))
    vqa = Benchmark("vqav2", str(coco / "v2_OpenEnded_mscoco_val2014_questions.json"), images=str(coco / "val2014"),
                    annotations=str(coco / "v2_mscoco_val2014_annotations.json"), limit=2)
    config = CompareConfig(src=str(zoo.src), dst=str(zoo.dst_opt), data=str(zoo.data), eval=None, out=str(tmp_path / "run"),
                           seeds=1, budget_epochs=2, training=TrainingConfig(batch_size=16, lr=1e-3),
                           tfs_lrs=(1e-3, 3e-3), benchmarks=(caption, vqa))
    reads = []  # annotation files are read once per compare, not at each of its 9 evaluation points
    monkeypatch.setattr(vpgtrans.zeroshot, "load_references", lambda *args, read=vpgtrans.zeroshot.load_references:
                        reads.append(args[0]) or read(*args))
    results = run_compare(config)
    assert reads == ["coco-caption", "vqav2"]
    assert set(results["speedup"]) == set(results["speedup_by_arm"]["vpgtrans"]) == {"coco-caption", "vqav2"}
    for lr, swept in results["tfs_lr_sweep"].items():  # ranked by both benchmarks' best scores
        points = json.loads((tmp_path / "run" / "curves" / f"tfs-seed0-lr{lr}.json").read_text())["points"]
        assert swept == pytest.approx((max(p["scores"]["coco-caption"] for p in points)
                                       + max(p["scores"]["vqav2"] for p in points)) / 2)
    tfs = vpgtrans.compare.results_curves(results)["tfs"]["0"]
    assert [p.epoch for p in tfs] == [0, 1, 2] and all(set(p.scores) == {"coco-caption", "vqav2"} for p in tfs)
    model, processor = arm_model(config, ARMS["tfs"], 0, None)  # the scores are `vpgtrans eval`'s (test_eval.py)
    expected = {**benchmark_scores(model, processor, load_benchmark(caption)),
                **benchmark_scores(model, processor, load_benchmark(vqa))}
    assert tfs[0].scores == pytest.approx(expected)
    table = (tmp_path / "run" / "results.md").read_text()
    assert "| coco-caption CIDEr-D x100 |" in table and "| vqav2 accuracy (%) |" in table
    assert (tmp_path / "run" / "curve-coco-caption.png").stat().st_size > 1000
    from vpgtrans.cli import main

    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    assert "| vqav2 accuracy (%) |" in (tmp_path / "report" / "report.md").read_text()
    run_compare(config, resume=True)  # the saved curves carry the benchmarks they were scored on
    with pytest.raises(VPGTransError, match="differs in benchmarks"):
        run_compare(replace(config, benchmarks=(caption, replace(vqa, limit=3))), resume=True)
    # bad input fails before any training, naming what is wrong
    fresh = replace(config, out=str(tmp_path / "fresh"))
    (coco / "val2014" / f"COCO_val2014_{COCO_IDS[2]:012d}.jpg").unlink()
    with pytest.raises(VPGTransError, match=f"COCO_val2014_{COCO_IDS[2]:012d}.jpg: image not found for image_id {COCO_IDS[2]}"):
        run_compare(fresh)
    with pytest.raises(VPGTransError, match="coco-caption given twice"):
        run_compare(replace(fresh, benchmarks=(caption, caption)))
    with pytest.raises(VPGTransError, match="nothing to score the arms on"):
        run_compare(replace(fresh, benchmarks=()))
    assert not (tmp_path / "fresh").exists()


def test_world_metrics_equal_the_toy_benchmarks(zoo, monkeypatch):
    """The world folder's metrics and `--benchmark toy-caption / toy-vqa` on the same folder are
    one measurement by two routes (on the real zoo's source: 0.6844 / 68.44, CIDEr-D 543.94 both
    ways). The tiny model names nothing, so it answers from a script: half right, half wrong."""
    folder = zoo.data.parent
    truth = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()][:6]
    answers = [json.loads(line)["answer"] for line in (folder / "qa.jsonl").read_text().splitlines()][:6]
    swapped = [r["caption"].replace("large", "?").replace("small", "large").replace("?", "small") for r in truth]
    scripted = {"": [r["caption"] if i % 2 else wrong for i, (r, wrong) in enumerate(zip(truth, swapped))]}

    def generate(model, processor, images, prompts, settings):
        texts = scripted.get(prompts[0], [a if i % 2 else "no" for i, a in enumerate(answers)])
        return texts[: len(images)]

    monkeypatch.setattr(vpgtrans.evaluate, "generate", generate)
    monkeypatch.setattr(vpgtrans.zeroshot, "generate", generate)
    model, processor = load_blip2(str(zoo.src))
    benchmarks = [load_benchmark(b) for b in (Benchmark("toy-caption", str(folder), limit=6),
                                              Benchmark("toy-vqa", str(folder), limit=6))]
    both = vpgtrans.compare.score_point(model, processor, CompareConfig("s", "d", "x", str(folder), "o", eval_limit=6), benchmarks)
    assert 0 < both["caption"] < 1 and 0 < both["cider"] and 0 < both["vqa"] < 1
    assert both["cider"] == pytest.approx(both["toy-caption"])
    assert 100 * both["caption"] == pytest.approx(both["toy-caption_attribute_accuracy"])
    assert 100 * both["caption_colour"] == pytest.approx(both["toy-caption_colour_accuracy"])
    assert 100 * both["vqa"] == pytest.approx(both["toy-vqa"]) == pytest.approx(50.0)


def test_evaluation_steps_are_regular_and_end_at_the_budget():
    assert evaluation_steps(125, 375, 1) == [125, 250, 375]
    assert evaluation_steps(125, 300, 2) == [62, 125, 188, 250, 300]  # half epochs, then the budget's end
    assert evaluation_steps(3, 7, 3) == [1, 2, 3, 4, 5, 6, 7]


def test_budget_in_steps_scored_within_epochs(zoo, tmp_path):
    config = CompareConfig(
        src=str(zoo.src), dst=str(zoo.dst_llama), data=str(zoo.data), eval=str(zoo.data.parent), out=str(tmp_path),
        seeds=1, budget_steps=5, evals_per_epoch=2, training=TrainingConfig(batch_size=16, lr=1e-3), eval_limit=2,
    )
    saved = run_compare(config)
    for arm in ("tfs", "vpgtrans"):  # 3 steps per epoch: scored at half epochs (steps 1.5, 3, 4.5 rounded) and step 5
        points = saved["curves"][arm]["0"]
        assert [p["step"] for p in points] == [0, 2, 3, 4, 5]
        assert [p["epoch"] for p in points] == pytest.approx([0, 2 / 3, 1, 4 / 3, 5 / 3])
        assert [p["samples"] for p in points] == [0, 32, 48, 64, 80]
    with pytest.raises(VPGTransError, match="leaves nothing after the warm-up of 3"):
        run_compare(replace(config, budget_steps=3), overwrite=True)
    # the reference arm warms up for the recipe's stage1_epochs; warmup-2-epochs for two, whatever it says
    longer = replace(config, budget_steps=6, training=replace(config.training, stage1_epochs=2.0))
    with pytest.raises(VPGTransError, match="leaves nothing after the warm-up of 6"):
        run_compare(longer, overwrite=True)
    with pytest.raises(VPGTransError, match="leaves nothing after the warm-up of 6"):
        run_compare(replace(config, budget_steps=6, arms=("tfs", "vpgtrans", "warmup-2-epochs")), overwrite=True)
    # warmup-1-epoch warms up for one epoch whatever the recipe says: a warm-up step costs less than a fine-tuning one
    run_compare(replace(longer, budget_steps=9, arms=("tfs", "vpgtrans", "warmup-1-epoch")), overwrite=True)
    points = json.loads((tmp_path / "results.json").read_text())["curves"]["warmup-1-epoch"]["0"]
    flops = {p["step"]: p["flops"] for p in points}
    assert flops[6] - flops[3] > 1.01 * flops[3] > 0, flops


def test_compare_converter_choice_reaches_the_fused_arms(tmp_path, monkeypatch):
    fitted, used = [], {}
    monkeypatch.setattr(vpgtrans.compare, "fit_converter", lambda src, dst, captions, fit: fitted.append(fit.method) or fit.method)
    monkeypatch.setattr(vpgtrans.compare, "load_caption_data", lambda path: type("Data", (), {"captions": lambda self: [], "records": [None] * 32})())

    def fake_run_arm(config, arm, seed, lr, converter, workdir, benchmarks):
        used[workdir.name.rsplit("-", 2)[0]] = converter
        return [CurvePoint(e, e, e, float(e), {"caption": 0.1 * e, "cider": 10.0 * e, "vqa": 0.1}) for e in range(3)]

    monkeypatch.setattr(vpgtrans.compare, "run_arm", fake_run_arm)
    monkeypatch.setattr(vpgtrans.compare_report, "write_plots", lambda results, out: None)
    config = CompareConfig(src="s", dst="d", data="x", eval="e", out=str(tmp_path / "a"), seeds=1,
                           arms=("tfs", "vpgtrans", "paper-converter", "random-warmup"))
    run_compare(config)
    assert used == {"tfs": None, "vpgtrans": "ridge", "paper-converter": "paper", "random-warmup": None}
    fitted.clear(), used.clear()
    run_compare(replace(config, converter="paper", out=str(tmp_path / "b")))
    assert fitted == ["paper"] and used["vpgtrans"] == used["paper-converter"] == "paper"


def test_cli_help_names_every_arm(capsys):
    # The CLI lists the arms and converter methods by hand so that parsing arguments does not import torch; keep them whole.
    from vpgtrans.cli import main

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    listed = help_text.split("--arms ARMS comma list from: ")[1].split(" --")[0]
    assert set(listed.split(", ")) == set(ARMS)
    from vpgtrans.cli import CONVERTER_CHOICES
    from vpgtrans.converter import CONVERTER_METHODS

    assert CONVERTER_CHOICES == CONVERTER_METHODS


def test_cli_compare_flags_reach_the_config(tmp_path, monkeypatch, capsys):
    from vpgtrans.cli import main

    calls = []

    def fake_run_compare(config, resume=False, overwrite=False):
        calls.append((config, resume, overwrite))
        sweep = {"0.001": 0.5, "0.003": 0.6} if config.tfs_lrs else {}
        return {"speedup": {"caption": {"epoch": summarise([2.0]), "seconds": summarise([1.5])}},
                "tfs_lr_sweep": sweep, "tfs_lr": 3e-3 if sweep else config.training.lr}

    monkeypatch.setattr(vpgtrans.compare, "run_compare", fake_run_compare)
    common = ["compare", "--src", "s", "--dst", "d", "--data", "x.jsonl", "--eval", "e", "--out", str(tmp_path)]
    assert main([*common, "--budget-steps", "300", "--evals-per-epoch", "2", "--converter", "paper", "--resume"]) == 0
    config, resume, overwrite = calls[-1]
    assert (config.budget_steps, config.evals_per_epoch, config.converter, resume, overwrite) == (300, 2, "paper", True, False)
    assert main(common) == 0
    assert (calls[-1][0].budget_epochs, calls[-1][0].budget_steps, calls[-1][0].converter) == (10, None, "ridge")
    assert "warning" not in capsys.readouterr().out
    assert main([*common, "--tfs-lrs", "1e-3,3e-3"]) == 0
    assert calls[-1][0].tfs_lrs == (1e-3, 3e-3)
    assert "warning: TFS's chosen learning rate 0.003 is the largest of its sweep" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*common, "--budget-epochs", "3", "--budget-steps", "300"])
    assert "not allowed with argument" in capsys.readouterr().err
    # real benchmarks instead of (or besides) a world folder, in the files `vpgtrans eval` reads
    bare = ["compare", "--src", "s", "--dst", "d", "--data", "x.jsonl", "--out", str(tmp_path)]
    assert main([*bare, "--benchmark", "coco-caption", "dataset_coco.json", "images=coco", "limit=500",
                 "--benchmark", "vqav2", "q.json", "images=coco/val2014", "annotations=a.json", "split=val"]) == 0
    assert calls[-1][0].eval is None and calls[-1][0].benchmarks == (
        Benchmark("coco-caption", "dataset_coco.json", images="coco", limit=500),
        Benchmark("vqav2", "q.json", images="coco/val2014", annotations="a.json", split="val"))
    capsys.readouterr()
    for args, message in ((["--benchmark", "coco-caption"], "--benchmark coco-caption: expected TASK DATA"),
                          (["--benchmark", "vizwiz", "q.json"], "unknown task 'vizwiz'"),
                          (["--benchmark", "coco-caption", "d.json", "imgs=x"], "'imgs=x' is not KEY=VALUE"),
                          (["--benchmark", "coco-caption", "d.json", "limit=1", "limit=2"], "'limit=2' given twice"),
                          (["--benchmark", "coco-caption", "d.json", "limit=0"], "limit=0 is not a positive whole number"),
                          ([], "compare needs --src, --dst, --data and --eval or --benchmark")):
        assert main([*bare, *args]) == 2
        assert message in capsys.readouterr().err, args

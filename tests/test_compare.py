"""compare: the paper's speed-up on hand-made curves, each arm's starting point, a tiny run end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import COCO_IDS

import vpgtrans.efficiency.runner
import vpgtrans.efficiency.tables
import vpgtrans.evaluation.evaluate
from vpgtrans.efficiency.runner import (
    ARMS,
    CompareConfig,
    CompareInputs,
    arm_model,
    evaluation_steps,
    run_compare,
    score_point,
    warmup_end_epoch,
)
from vpgtrans.efficiency.speedup import CurvePoint, results_curves, summarise
from vpgtrans.errors import VPGTransError
from vpgtrans.evaluation.evaluate import Benchmark, benchmark_scores, load_benchmark, load_world
from vpgtrans.evaluation.tasks import corpus_cider
from vpgtrans.method.converter import fit_converter
from vpgtrans.method.graft import load_blip2
from vpgtrans.training.data import load_caption_data
from vpgtrans.training.stages import TrainingConfig


def test_warmup_end_epoch_follows_the_recipe():
    training = TrainingConfig(batch_size=16)  # 2,000 samples: 125 steps per epoch
    assert warmup_end_epoch(training, 2000, 1) == 1
    assert warmup_end_epoch(replace(training, stage1_epochs=2.0), 2000, 1) == 2
    assert warmup_end_epoch(replace(training, stage1_epochs=1.5), 2000, 1) == 2  # read at the next epoch end
    assert warmup_end_epoch(replace(training, stage1_steps=130), 2000, 1) == 2


def test_each_arm_starts_where_it_should(zoo, tmp_path):
    config = CompareConfig(src=str(zoo.src), dst=str(zoo.dst_llama), data=str(zoo.data), eval="x", out=str(tmp_path))
    source, _ = load_blip2(str(zoo.src))
    converter = fit_converter(str(zoo.src), str(zoo.dst_llama))
    data = load_caption_data(zoo.data)
    for name, arm in ARMS.items():
        model, _ = arm_model(config, arm, 0, converter, data)
        inherited = torch.equal(
            model.qformer.encoder.layer[0].attention.attention.query.weight,
            source.qformer.encoder.layer[0].attention.attention.query.weight,
        )
        assert inherited == (arm.vpg == "inherit"), name
        assert torch.equal(model.query_tokens, source.query_tokens) == (arm.vpg == "inherit"), name
        assert torch.equal(
            model.vision_model.embeddings.patch_embedding.weight, source.vision_model.embeddings.patch_embedding.weight
        ), name  # ViT always the source's
        queries = torch.randn(2, source.config.qformer_config.hidden_size)
        out, fused = model.language_projection(queries), converter(source.language_projection(queries))
        if arm.prompt_scale:  # the fused projector, rescaled as a whole
            scale = (out.norm() / fused.norm()).detach()
            assert abs(float(scale) - 1) > 1e-3 and torch.allclose(out, fused * scale, atol=1e-5), name
        else:
            assert torch.allclose(out, fused, atol=1e-5) == (arm.projector == "fused"), name


def test_tiny_compare_end_to_end(zoo, tmp_path):
    config = CompareConfig(
        src=str(zoo.src),
        dst=str(zoo.dst_llama),
        data=str(zoo.data),
        eval=str(zoo.data.parent),
        out=str(tmp_path),
        arms=("tfs", "vpgtrans", "inherit-no-warmup", "random-warmup", "warmup-1x", "warmup-2-epochs"),
        seeds=2,
        budget_epochs=3,
        training=TrainingConfig(batch_size=16, lr=1e-3),
        tfs_lrs=(1e-3, 3e-3),
        eval_limit=4,
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
    assert (
        f"- TFS's chosen learning rate {saved['tfs_lr']:g} is the {edge} of its sweep"
        in (tmp_path / "results.md").read_text()
    )
    curve = saved["curves"]["vpgtrans"]["0"]
    assert [p["epoch"] for p in curve] == [0, 1, 2, 3]
    assert curve[1]["samples"] == 48 and curve[3]["samples"] == 144  # 3 steps of 16 per epoch
    assert 0 < curve[1]["flops"] < curve[2]["flops"] < curve[3]["flops"] and curve[3]["device"].startswith("cpu")
    assert curve[3]["lm_tokens"] > curve[1]["lm_tokens"] > 0
    assert {"caption_colour", "caption_shape", "caption_size", "caption_position"} <= set(curve[1]["scores"])
    assert [p["epoch"] for p in saved["curves"]["tfs"]["1"]] == [0, 1, 2, 3]
    assert set(saved["orderings"]) == {
        "fused init beats random init after warm-up",
        "5x warm-up beats 1x",
        "TFS starts better than inheriting without warm-up",
    }
    assert saved["orderings"]["5x warm-up beats 1x"]["caption"]["seeds_holding"] in (0, 1, 2)
    assert set(saved["speedup_by_arm"]) == {
        "vpgtrans",
        "inherit-no-warmup",
        "random-warmup",
        "warmup-1x",
        "warmup-2-epochs",
    }
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
    assert (
        "- 5x warm-up beats 1x (vpgtrans vs warmup-1x, epoch 1): caption attribute accuracy"
        in (tmp_path / "results.md").read_text()
    )
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
    # curves made another way, or by another version of vpgtrans, are never mixed in
    with pytest.raises(VPGTransError, match=r"curves/tfs-seed0-lr0.001.json: .*differs in training"):
        run_compare(replace(config, training=replace(config.training, stage1_epochs=2.0)), resume=True)
    old = json.loads(lost.read_text())
    old["settings"]["vpgtrans"] = "0.1.0"
    lost.write_text(json.dumps(old))
    with pytest.raises(VPGTransError, match=r"vpgtrans-seed1-lr0.001.json: .*differs in vpgtrans"):
        run_compare(config, resume=True)
    with pytest.raises(VPGTransError, match=r"curves/tfs-seed0-lr0.001.json: .*differs in eval_limit"):
        run_compare(replace(config, arms=("tfs", "vpgtrans"), eval_limit=5), resume=True)


def test_compare_on_benchmarks(zoo, coco, tmp_path, monkeypatch):
    """Real-benchmark scoring, as a user with real models runs it: COCO captions and VQAv2 in their
    own files, no miniature-world folder; each benchmark is a metric with its own speed-up."""
    caption = Benchmark("coco-caption", str(coco / "dataset_coco.json"), images=str(coco))
    vqa = Benchmark(
        "vqav2",
        str(coco / "v2_OpenEnded_mscoco_val2014_questions.json"),
        images=str(coco / "val2014"),
        annotations=str(coco / "v2_mscoco_val2014_annotations.json"),
        limit=2,
    )
    config = CompareConfig(
        src=str(zoo.src),
        dst=str(zoo.dst_opt),
        data=str(zoo.data),
        eval=None,
        out=str(tmp_path / "run"),
        seeds=1,
        budget_epochs=2,
        training=TrainingConfig(batch_size=16, lr=1e-3),
        tfs_lrs=(1e-3, 3e-3),
        benchmarks=(caption, vqa),
    )
    reads = []  # annotation files are read once per compare, not at each of its 9 evaluation points
    monkeypatch.setattr(
        vpgtrans.evaluation.evaluate,
        "load_references",
        lambda *args, read=vpgtrans.evaluation.evaluate.load_references: reads.append(args[0]) or read(*args),
    )
    results = run_compare(config)
    assert reads == ["coco-caption", "vqav2"]
    assert set(results["speedup"]) == set(results["speedup_by_arm"]["vpgtrans"]) == {"coco-caption", "vqav2"}
    for lr, swept in results["tfs_lr_sweep"].items():  # ranked by both benchmarks' best scores
        points = json.loads((tmp_path / "run" / "curves" / f"tfs-seed0-lr{lr}.json").read_text())["points"]
        assert swept == pytest.approx(
            (max(p["scores"]["coco-caption"] for p in points) + max(p["scores"]["vqav2"] for p in points)) / 2
        )
    tfs = results_curves(results)["tfs"]["0"]
    assert [p.epoch for p in tfs] == [0, 1, 2] and all(set(p.scores) == {"coco-caption", "vqav2"} for p in tfs)
    model, processor = arm_model(
        config, ARMS["tfs"], 0, None, load_caption_data(zoo.data)
    )  # the scores are `vpgtrans eval`'s (test_eval.py)
    expected = {
        **benchmark_scores(model, processor, load_benchmark(caption)),
        **benchmark_scores(model, processor, load_benchmark(vqa)),
    }
    assert tfs[0].scores == pytest.approx(expected)
    table = (tmp_path / "run" / "results.md").read_text()
    assert "| coco-caption CIDEr-D x100 |" in table and "| vqav2 accuracy (%) |" in table
    assert (tmp_path / "run" / "curve-coco-caption.png").stat().st_size > 1000
    from vpgtrans.cli.main import main

    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    assert "| vqav2 accuracy (%) |" in (tmp_path / "report" / "report.md").read_text()
    run_compare(config, resume=True)  # the saved curves carry the benchmarks they were scored on
    with pytest.raises(VPGTransError, match="differs in benchmarks"):
        run_compare(replace(config, benchmarks=(caption, replace(vqa, limit=3))), resume=True)
    # bad input fails before any training, naming what is wrong
    fresh = replace(config, out=str(tmp_path / "fresh"))
    (coco / "val2014" / f"COCO_val2014_{COCO_IDS[2]:012d}.jpg").unlink()
    with pytest.raises(
        VPGTransError, match=f"COCO_val2014_{COCO_IDS[2]:012d}.jpg: image not found for image_id {COCO_IDS[2]}"
    ):
        run_compare(fresh)
    with pytest.raises(VPGTransError, match="coco-caption given twice"):
        run_compare(replace(fresh, benchmarks=(caption, caption)))
    with pytest.raises(VPGTransError, match="nothing to score the arms on"):
        run_compare(replace(fresh, benchmarks=()))
    assert not (tmp_path / "fresh").exists()


def test_world_metrics_are_the_toy_tasks_scores(zoo, tmp_path, monkeypatch):
    """`compare`'s world metrics, `transfer --eval` and `vpgtrans eval --task toy-caption / toy-vqa`
    are one measurement: one generation path, one scorer per task, one scale (percent). The tiny
    model names nothing, so it answers from a script: half right, half wrong."""
    from vpgtrans.evaluation.evaluate import EvalConfig, run_eval
    from vpgtrans.pipeline import evaluate_against_source

    folder = zoo.data.parent
    truth = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()][:6]
    answers = [json.loads(line)["answer"] for line in (folder / "qa.jsonl").read_text().splitlines()][:6]
    swapped = [r["caption"].replace("large", "?").replace("small", "large").replace("?", "small") for r in truth]
    scripted = {"": [r["caption"] if i % 2 else wrong for i, (r, wrong) in enumerate(zip(truth, swapped))]}

    def generate(model, processor, images, prompts, settings):
        texts = scripted.get(prompts[0], [a if i % 2 else "No." for i, a in enumerate(answers)])
        return texts[: len(images)]

    monkeypatch.setattr(vpgtrans.evaluation.evaluate, "generate", generate)
    model, processor = load_blip2(str(zoo.src))
    inputs = CompareInputs(load_caption_data(zoo.data), load_world(str(folder), 6), [])
    scores = score_point(model, processor, inputs)
    assert 0 < scores["caption"] < 100 and 0 < scores["cider"] and scores["vqa"] == pytest.approx(50.0)
    evaluated = {
        task: run_eval(EvalConfig(str(zoo.src), Benchmark(task, str(folder), limit=6), str(tmp_path / task)))
        for task in ("toy-caption", "toy-vqa")
    }
    assert scores["cider"] == pytest.approx(evaluated["toy-caption"]["score"])
    assert scores["caption"] == pytest.approx(evaluated["toy-caption"]["attribute_accuracy"])
    assert scores["caption_colour"] == pytest.approx(evaluated["toy-caption"]["colour_accuracy"])
    assert scores["vqa"] == pytest.approx(evaluated["toy-vqa"]["score"])
    transfer = evaluate_against_source(model, processor, str(zoo.src), inputs.world, "fp32")
    assert transfer["transferred"] == {k: scores[k] for k in ("caption", "cider", "vqa")}
    wrong = ["a red circle at the bottom", "a small blue square on the left", "a green green cross"]
    references = [r["caption"] for r in truth[:3]]
    expected, _ = corpus_cider(dict(enumerate(wrong)), {i: (r,) for i, r in enumerate(references)})
    scripted[""] = wrong
    assert score_point(model, processor, CompareInputs(inputs.data, load_world(str(folder), 3), []))[
        "cider"
    ] == pytest.approx(expected)


def test_evaluation_steps_are_regular_and_end_at_the_budget():
    assert evaluation_steps(125, 375, 1) == [125, 250, 375]
    assert evaluation_steps(125, 300, 2) == [62, 125, 188, 250, 300]  # half epochs, then the budget's end
    assert evaluation_steps(3, 7, 3) == [1, 2, 3, 4, 5, 6, 7]


def test_budget_in_steps_scored_within_epochs(zoo, tmp_path):
    config = CompareConfig(
        src=str(zoo.src),
        dst=str(zoo.dst_llama),
        data=str(zoo.data),
        eval=str(zoo.data.parent),
        out=str(tmp_path),
        seeds=1,
        budget_steps=5,
        evals_per_epoch=2,
        training=TrainingConfig(batch_size=16, lr=1e-3),
        eval_limit=2,
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
    runner = vpgtrans.efficiency.runner
    monkeypatch.setattr(
        runner, "fit_converter", lambda src, dst, captions, fit: fitted.append(fit.method) or fit.method
    )
    monkeypatch.setattr(
        runner,
        "load_caption_data",
        lambda path: type("Data", (), {"captions": lambda self: [], "records": [None] * 32})(),
    )
    monkeypatch.setattr(runner, "load_world", lambda folder, limit: [])

    def fake_run_arm(config, arm, seed, lr, converter, workdir, inputs):
        used[workdir.name.rsplit("-", 2)[0]] = converter
        return [CurvePoint(e, e, e, float(e), {"caption": 0.1 * e, "cider": 10.0 * e, "vqa": 0.1}) for e in range(3)]

    monkeypatch.setattr(runner, "run_arm", fake_run_arm)
    monkeypatch.setattr(runner, "write_plots", lambda results, out: None)
    config = CompareConfig(
        src="s",
        dst="d",
        data="x",
        eval="e",
        out=str(tmp_path / "a"),
        seeds=1,
        arms=("tfs", "vpgtrans", "paper-converter", "random-warmup"),
    )
    run_compare(config)
    assert used == {"tfs": None, "vpgtrans": "ridge", "paper-converter": "paper", "random-warmup": None}
    fitted.clear(), used.clear()
    run_compare(replace(config, converter="paper", out=str(tmp_path / "b")))
    assert fitted == ["paper"] and used["vpgtrans"] == used["paper-converter"] == "paper"


def test_cli_help_names_every_arm(capsys):
    from vpgtrans.cli.main import main

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    listed = help_text.split("--arms A,B,... comma list of arms (from: ")[1].split(")")[0]
    assert set(listed.replace("- ", "-").split(", ")) == set(ARMS)  # argparse may wrap at a hyphen


def test_cli_compare_flags_reach_the_config(tmp_path, monkeypatch, capsys):
    from vpgtrans.cli.main import main

    calls = []

    def fake_run_compare(config, resume=False, overwrite=False):
        calls.append((config, resume, overwrite))
        sweep = {"0.001": 0.5, "0.003": 0.6} if config.tfs_lrs else {}
        return {
            "speedup": {"caption": {"epoch": summarise([2.0]), "seconds": summarise([1.5])}},
            "tfs_lr_sweep": sweep,
            "tfs_lr": 3e-3 if sweep else config.training.lr,
        }

    monkeypatch.setattr(vpgtrans.efficiency.runner, "run_compare", fake_run_compare)
    common = ["compare", "--src", "s", "--dst", "d", "--data", "x.jsonl", "--eval", "e", "--out", str(tmp_path)]
    assert main([*common, "--budget-steps", "300", "--evals-per-epoch", "2", "--converter", "paper", "--resume"]) == 0
    config, resume, overwrite = calls[-1]
    assert (config.budget_steps, config.evals_per_epoch, config.converter, resume, overwrite) == (
        300,
        2,
        "paper",
        True,
        False,
    )
    assert main(common) == 0
    assert (calls[-1][0].budget_epochs, calls[-1][0].budget_steps, calls[-1][0].converter) == (10, None, "ridge")
    assert "warning" not in capsys.readouterr().out
    assert main([*common, "--tfs-lrs", "1e-3,3e-3"]) == 0
    assert calls[-1][0].tfs_lrs == (1e-3, 3e-3)
    assert "warning: TFS's chosen learning rate 0.003 is the largest of its sweep" in capsys.readouterr().out
    assert main([*common, "--budget-epochs", "3", "--budget-steps", "300"]) == 2
    assert "give --budget-epochs or --budget-steps, not both" in capsys.readouterr().err
    # real benchmarks instead of (or besides) a world folder, in the files `vpgtrans eval` reads
    bare = ["compare", "--src", "s", "--dst", "d", "--data", "x.jsonl", "--out", str(tmp_path)]
    assert (
        main(
            [
                *bare,
                "--benchmark",
                "coco-caption",
                "dataset_coco.json",
                "images=coco",
                "limit=500",
                "--benchmark",
                "vqav2",
                "q.json",
                "images=coco/val2014",
                "annotations=a.json",
                "split=val",
            ]
        )
        == 0
    )
    assert calls[-1][0].eval is None and calls[-1][0].benchmarks == (
        Benchmark("coco-caption", "dataset_coco.json", images="coco", limit=500),
        Benchmark("vqav2", "q.json", images="coco/val2014", annotations="a.json", split="val"),
    )
    capsys.readouterr()
    for args, message in (
        (["--benchmark", "coco-caption"], "--benchmark coco-caption: expected TASK DATA"),
        (["--benchmark", "vizwiz", "q.json"], "unknown task 'vizwiz'"),
        (["--benchmark", "coco-caption", "d.json", "imgs=x"], "'imgs=x' is not KEY=VALUE"),
        (["--benchmark", "coco-caption", "d.json", "limit=1", "limit=2"], "'limit=2' given twice"),
        (["--benchmark", "coco-caption", "d.json", "limit=0"], "limit=0 is not a positive whole number"),
        ([], "nothing to score the arms on"),
        (["--arms", "tfs,vpgtrans,nope"], "arms 'nope' is not one of"),
    ):
        assert main([*bare, *args]) == 2
        assert message in capsys.readouterr().err, args

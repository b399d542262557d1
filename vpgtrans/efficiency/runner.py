"""`vpgtrans compare`: VPGTrans against training from scratch (TFS), as the paper measures it.

Every arm trains on the same data for the same budget (in epochs of DATA or optimizer steps;
the warm-up counts) and is evaluated on held-out data at regular points: before training,
`evals_per_epoch` times per epoch and at the end of the budget; `speedup.py` turns the curves
into the paper's speed-up. Arms are scored on a miniature-world folder (`eval`), on real
benchmarks (`benchmarks`: COCO captions, NoCaps, VQAv2, OK-VQA, GQA), or both, always as
`vpgtrans eval` scores them; every score is a metric with a speed-up of its own.
TFS gets its best learning rate from a small sweep, or the comparison means nothing.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from accelerate import PartialState

from .. import __version__
from ..costs import device_name, stage_flops
from ..errors import VPGTransError
from ..evaluation.evaluate import (
    WORLD_METRICS,
    LoadedBenchmark,
    benchmark_scores,
    load_benchmark,
    load_world,
    world_scores,
)
from ..io.atomic import differing_keys, write_text_atomic
from ..io.outdir import OutLock, check_out, check_run_control, remove_outputs
from ..method.converter import ConverterFitConfig, WordConverter, fit_converter
from ..method.graft import reinitialise_vpg
from ..pipeline import initialise
from ..training.data import CaptionData, CaptionDataset, load_caption_data
from ..training.run import augmentation_for, collator_for
from ..training.stages import FINETUNE, WARMUP, TrainingConfig, stage_config, steps_per_epoch
from ..training.trainer import make_accelerator, train_stage
from .config import ARMS, IGNORED_TRAINING, Arm, CompareConfig
from .speedup import CurvePoint, orderings, speedup, summarise
from .tables import write_plots, write_table

# The TFS learning-rate sweep ranks by the mean best score of these (both percentages; CIDEr's
# scale would swamp them). On benchmarks alone it ranks by every benchmark's score.
SWEEP_METRICS = ("caption", "vqa")


@dataclass
class CompareInputs:
    """What every arm and seed reads, loaded once per compare: DATA and the evaluation sets."""

    data: CaptionData
    world: list[LoadedBenchmark]
    benchmarks: list[LoadedBenchmark]

    @classmethod
    def load(cls, config: CompareConfig) -> CompareInputs:
        """Read and check everything up front: a wrong path fails now, not after hours of TFS."""
        world = load_world(config.eval, config.eval_limit) if config.eval else []
        return cls(load_caption_data(config.data), world, [load_benchmark(b) for b in config.benchmarks])


def metric_names(config: CompareConfig) -> tuple[str, ...]:
    """The metrics a speed-up is computed on: the world folder's, then one per benchmark."""
    return (tuple(WORLD_METRICS) if config.eval else ()) + tuple(b.task for b in config.benchmarks)


def sweep_metrics(config: CompareConfig) -> tuple[str, ...]:
    return SWEEP_METRICS if config.eval else tuple(b.task for b in config.benchmarks)


def score_point(model, processor, inputs: CompareInputs) -> dict[str, float]:
    """Every metric of one evaluation point: the world folder's and each benchmark's."""
    model.eval()
    scores = world_scores(model, processor, inputs.world) if inputs.world else {}
    for loaded in inputs.benchmarks:
        scores.update(benchmark_scores(model, processor, loaded))
    return scores


def arm_model(config: CompareConfig, arm: Arm, seed: int, converter: WordConverter | None, data: CaptionData):
    """The starting point of an arm: grafted model with fused or random projector, VPG inherited or fresh."""
    model, processor, _ = initialise(
        config.src,
        config.dst,
        converter if arm.projector == "fused" else None,
        config.training.precision,
        seed,
        data.records if arm.prompt_scale else None,
    )
    if arm.vpg == "scratch":
        reinitialise_vpg(model, seed)
    return model, processor


def evaluation_steps(per_epoch: int, budget: int, evals_per_epoch: int) -> list[int]:
    """The optimizer steps after which an arm is scored: `evals_per_epoch` evenly spaced points
    per epoch (the last at the epoch's end) and the end of the budget."""
    points = {round(k * per_epoch / evals_per_epoch) for k in range(1, budget * evals_per_epoch // per_epoch + 1)}
    return sorted(points | {budget})  # k * per_epoch / evals_per_epoch <= budget, so no point passes it


def run_arm(
    config: CompareConfig,
    arm: Arm,
    seed: int,
    lr: float,
    converter: WordConverter | None,
    workdir: Path,
    inputs: CompareInputs,
) -> list[CurvePoint]:
    """Train one arm for the budget, evaluating at `evaluation_steps` (and before training).

    Always from the start: an arm is resumed by its saved curve, never from a stage checkpoint
    left in `workdir` (by an arm interrupted before its curve was saved, or whose curve was
    deleted), since the evaluation points passed before that checkpoint cannot be recovered."""
    shutil.rmtree(workdir, ignore_errors=True)
    training = replace(
        config.training, seed=seed, lr=lr, warmup_lr_mult=arm.warmup_lr_mult or 1.0, checkpoint_every=10**9
    )
    if arm.warmup_epochs is not None:
        training = replace(training, stage1_steps=None, stage1_epochs=arm.warmup_epochs)
    model, processor = arm_model(config, arm, seed, converter, inputs.data)
    dataset = CaptionDataset(inputs.data.records, augmentation_for(training, seed))
    collate = collator_for(processor, model, training)
    accelerator = make_accelerator(training.precision, training.grad_accum)
    per_epoch = steps_per_epoch(len(dataset), training, accelerator.num_processes)
    budget = config.budget_steps or config.budget_epochs * per_epoch
    warmup = stage_config(WARMUP, training, len(dataset), accelerator.num_processes)
    warmup_steps = warmup.steps if arm.warmup_lr_mult is not None else 0
    if budget <= warmup_steps:
        raise VPGTransError(
            f"a budget of {budget} optimizer steps leaves nothing after the warm-up of {warmup_steps} "
            f"(one epoch is {per_epoch} steps on {config.data}); raise the budget"
        )
    scored = set(evaluation_steps(per_epoch, budget, config.evals_per_epoch))
    curve = [CurvePoint(0.0, 0, 0, 0.0, score_point(model, processor, inputs))]

    def record(result, stage, before: CurvePoint) -> None:
        steps = before.step + result.steps
        if steps in scored:
            flops = stage_flops(model.config, result, qformer_trained="qformer" in stage.trainable).total
            curve.append(
                CurvePoint(
                    steps / per_epoch,
                    steps,
                    before.samples + result.samples,
                    before.seconds + result.seconds,
                    score_point(model, processor, inputs),
                    before.lm_tokens + result.lm_tokens,
                    before.flops + flops,
                    max(before.peak_memory_bytes, result.peak_memory_bytes),
                    device_name(result.device),
                )
            )

    if warmup_steps:
        train_stage(
            accelerator,
            model,
            dataset,
            collate,
            warmup,
            workdir / "warmup",
            on_step=lambda r, b=curve[-1]: record(r, warmup, b),
        )
    stage = replace(stage_config(FINETUNE, training, len(dataset)), steps=budget - warmup_steps)
    train_stage(
        accelerator,
        model,
        dataset,
        collate,
        stage,
        workdir / "finetune",
        on_step=lambda r, s=stage, b=curve[-1]: record(r, s, b),
    )
    return curve


def _curve_path(out: Path, arm: str, seed: int, lr: float) -> Path:
    return out / "curves" / f"{arm}-seed{seed}-lr{lr:g}.json"


COMPARE_OUTPUTS = ("curves", "work", "results.json", "results.md", "curve-*.png")  # what --overwrite deletes
NOT_CURVE_SETTINGS = ("out", "arms", "seeds", "tfs_lrs")  # which curves a compare asks for, not how they are made


def curve_settings(config: CompareConfig) -> dict:
    """What shapes a curve besides its arm, seed and learning rate, and the vpgtrans version that
    scored it: saved with every curve, so a resumed compare never mixes curves trained or scored
    differently (and is not refused for a setting that a compare does not use)."""
    settings = json.loads(json.dumps(asdict(config)))
    for key in NOT_CURVE_SETTINGS:
        settings.pop(key)
    for key in IGNORED_TRAINING:
        settings["training"].pop(key)
    return {**settings, "vpgtrans": __version__}


def _load_or_run(
    config: CompareConfig, name: str, seed: int, lr: float, converters: dict, inputs: CompareInputs
) -> list[CurvePoint]:
    """Each finished arm is saved at once, so an interrupted compare resumes arm by arm."""
    out = Path(config.out)
    path = _curve_path(out, name, seed, lr)
    settings = curve_settings(config)
    if path.exists():
        saved = json.loads(path.read_text())
        previous = saved.get("settings", {}) if isinstance(saved, dict) else {}
        if previous != settings:
            changed = differing_keys(previous, settings)
            raise VPGTransError(
                f"{path}: saved by a compare with other settings (differs in {', '.join(changed)}); "
                "pass --overwrite to start afresh or choose another --out"
            )
        return [CurvePoint(**p) for p in saved["points"]]
    arm = ARMS[name]
    method = arm.converter or config.converter
    if arm.projector == "fused" and method not in converters:
        converters[method] = fit_converter(
            config.src, config.dst, inputs.data.captions(), ConverterFitConfig(method=method)
        )
    converter = converters[method] if arm.projector == "fused" else None
    curve = run_arm(config, arm, seed, lr, converter, out / "work" / f"{name}-{seed}-{lr:g}", inputs)
    write_text_atomic(path, json.dumps({"settings": settings, "points": [asdict(p) for p in curve]}))
    return curve


def run_compare(config: CompareConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train every arm for every seed, compute speed-ups, write results.json, table and plots.

    An OUT that already holds curves is continued only with `resume` (curves saved with other
    settings are refused) and emptied first with `overwrite`."""
    check_run_control(resume, overwrite)
    metrics = metric_names(config)
    inputs = CompareInputs.load(config)
    out = Path(config.out)
    files = [config.data, config.src, config.dst, config.eval]
    check_out(out, [*files, *(f for b in config.benchmarks for f in (b.data, b.images, b.annotations))])
    if (out / "curves").is_dir() and any((out / "curves").iterdir()) and not (resume or overwrite):
        raise VPGTransError(
            f"{out / 'curves'}: OUT already holds a compare; pass --resume to continue it "
            "(arms already finished are reused) or --overwrite to start afresh"
        )
    state, lock = PartialState(), OutLock(out)
    if state.is_main_process:  # under several processes the main one locks and cleans; the others wait
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        if overwrite:
            remove_outputs(out, COMPARE_OUTPUTS)
    state.wait_for_everyone()
    try:
        return _compare(config, inputs, metrics, out)
    finally:
        lock.release()


def _compare(config: CompareConfig, inputs: CompareInputs, metrics: tuple[str, ...], out: Path) -> dict:
    converters: dict = {}
    sweep = {}
    tfs_lr = config.training.lr
    if config.tfs_lrs:
        for lr in config.tfs_lrs:
            curve = _load_or_run(config, "tfs", 0, lr, converters, inputs)
            sweep[lr] = statistics.fmean(max(p.scores[m] for p in curve) for m in sweep_metrics(config))
        tfs_lr = max(sweep, key=sweep.get)
    curves: dict[str, dict[int, list[CurvePoint]]] = {}
    for name in config.arms:
        lr = tfs_lr if name == "tfs" else config.training.lr
        curves[name] = {seed: _load_or_run(config, name, seed, lr, converters, inputs) for seed in range(config.seeds)}
    warmup_end = warmup_end_epoch(config.training, len(inputs.data.records), PartialState().num_processes)
    results = {
        "config": json.loads(json.dumps(asdict(config))),
        "tfs_lr_sweep": {f"{k:g}": v for k, v in sweep.items()},
        "tfs_lr": tfs_lr,
        "speedup": {
            metric: {
                unit: summarise(
                    [speedup(curves["tfs"][s], curves["vpgtrans"][s], metric, unit) for s in range(config.seeds)]
                )
                for unit in ("epoch", "samples", "seconds")
            }
            for metric in metrics
        },
        "speedup_by_arm": {  # every other arm against TFS, the same way (ablations, our own ideas)
            name: {
                metric: summarise([speedup(curves["tfs"][s], curves[name][s], metric) for s in range(config.seeds)])
                for metric in metrics
            }
            for name in config.arms
            if name != "tfs"
        },
        "curves": {
            name: {str(s): [asdict(p) for p in c] for s, c in per_seed.items()} for name, per_seed in curves.items()
        },
        "orderings": orderings(curves, warmup_end, metrics),
    }
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    write_table(results, out / "results.md")
    write_plots(results, out)
    return results


def warmup_end_epoch(training: TrainingConfig, samples: int, processes: int) -> int:
    """The first epoch end at or after the recipe's warm-up: where the orderings "after
    warm-up" are read (epoch 1 for the paper's one-epoch warm-up, 2 for a two-epoch one)."""
    per_epoch = steps_per_epoch(samples, training, processes)
    return math.ceil(stage_config(WARMUP, training, samples, processes).steps / per_epoch)

"""`vpgtrans` command line: one subcommand per step, `transfer` for all of them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from .errors import VPGTransError

# converter.CONVERTER_METHODS, repeated so that parsing arguments does not import torch (a test keeps them equal)
CONVERTER_CHOICES = ("ridge", "paper")
# optim.OPTIMIZERS, likewise
OPTIMIZER_CHOICES = ("adamw", "muon")


def _training_args(parser: argparse.ArgumentParser, stage_steps: tuple[str, ...]) -> None:
    """Training flags; every default is None so a recipe's value shows through unless a flag is given."""
    group = parser.add_argument_group("training (defaults: the recipe's, else these)")
    for flag in stage_steps:
        group.add_argument(flag, type=int, help="optimizer steps (default: --stage1-epochs for warm-up, --stage2-epochs for fine-tuning)")
    group.add_argument("--stage1-epochs", type=float, help="warm-up length when no step count is given (paper: 1)")
    group.add_argument("--stage2-epochs", type=float, help="fine-tuning length when no step count is given (5)")
    group.add_argument("--stage1-optimizer", choices=OPTIMIZER_CHOICES,
                       help="warm-up optimizer (adamw, the paper's; muon: Muon on the projector matrix)")
    group.add_argument("--stage2-optimizer", choices=OPTIMIZER_CHOICES,
                       help="fine-tuning optimizer (adamw; muon: Muon on weight matrices, AdamW on the rest)")
    group.add_argument("--batch-size", type=int, help="per-device micro-batch (64)")
    group.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step (1)")
    group.add_argument("--lr", type=float, help="base learning rate of fine-tuning (1e-4); warm-up uses lr x mult")
    group.add_argument("--warmup-lr-mult", type=float, help="warm-up LR multiplier (paper: 5)")
    group.add_argument("--seed", type=int, help="(0)")
    group.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="frozen ViT/LLM dtype and autocast (fp32)")
    group.add_argument("--max-text-tokens", type=int, help="caption tokens incl. BOS/EOS (32)")
    group.add_argument("--checkpoint-every", type=int, help="optimizer steps between checkpoints (200)")
    group.add_argument("--num-workers", type=int, help="data-loader worker processes (0)")
    group.add_argument("--skip-bad-samples", action="store_true", help="skip and count unreadable records instead of failing")
    group.add_argument("--resume", action="store_true", help="continue the run already in OUT")
    group.add_argument("--overwrite", action="store_true", help="delete what OUT holds and start afresh")


def _training_config(args: argparse.Namespace, recipe: dict | None = None):
    """TrainingConfig from (highest first) explicit flags, the recipe, the dataclass defaults."""
    from dataclasses import fields

    from .transfer import TrainingConfig

    names = {f.name for f in fields(TrainingConfig)}
    values = {k: v for k, v in (recipe or {}).items() if k in names}
    if getattr(args, "steps", None) is not None:
        values["stage1_steps" if args.command == "warmup" else "stage2_steps"] = args.steps
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return TrainingConfig(**values)


def _world_folder(parent: Path, images: int, seed: int) -> Path:
    """A miniature-world data folder, generated once (atomically) and reused."""
    from . import world
    from .checkpointing import atomic_dir

    folder = parent / f"world-n{images}-seed{seed}"
    if not (folder / "captions.jsonl").exists():
        with atomic_dir(folder) as tmp:
            world.write_dataset(tmp, images, seed)
    return folder


def _recipe(name: str | None) -> dict:
    """A named transfer from recipes/transfers.toml ('default' when none is named)."""
    from .presets import transfer_presets

    name = name or "default"
    presets = transfer_presets()
    if name not in presets:
        raise VPGTransError(f"unknown transfer recipe {name!r}; known recipes: {', '.join(sorted(presets))}")
    return presets[name]


def _recipe_data(data: str | None, eval_dir: str | None, recipe: dict, out: Path) -> tuple[str | None, str | None]:
    """DATA and the evaluation folder: flags first, then the recipe's paths or generated world sets."""
    data = data or recipe.get("data")
    if data is None and "world_images" in recipe:
        data = str(_world_folder(out.parent, recipe["world_images"], recipe.get("world_seed", 0)) / "captions.jsonl")
    if eval_dir is None and "eval_images" in recipe:
        eval_dir = str(_world_folder(out.parent, recipe["eval_images"], recipe.get("eval_seed", 12345)))
    return data, eval_dir


def cmd_transfer(args: argparse.Namespace) -> None:
    from .transfer import TransferConfig, run_transfer

    recipe = _recipe(args.recipe) if args.recipe or not (args.src and args.dst and args.data) else {}
    src, dst = args.src or recipe.get("src"), args.dst or recipe.get("dst")
    if not (src and dst):
        raise VPGTransError("--src and --dst are required (or a recipe that names them)")
    out = Path(args.out or Path("runs") / f"{src}-to-{dst}".replace("/", "_"))
    data, eval_dir = _recipe_data(args.data, args.eval, recipe, out)
    if data is None:
        raise VPGTransError("--data is required (or a recipe that declares data)")
    config = TransferConfig(
        src=src, dst=dst, data=data, out=str(out), training=_training_config(args, recipe),
        converter=args.converter or recipe.get("converter", "ridge"), skip_bad_samples=args.skip_bad_samples,
        prompt_scale=args.prompt_scale or recipe.get("prompt_scale", False),
        eval=eval_dir, eval_limit=args.eval_limit or recipe.get("eval_limit"),
    )
    model_dir = run_transfer(config, resume=args.resume, overwrite=args.overwrite)
    print(f"model: {model_dir}")
    print(f"run record: {out / 'run.json'}")
    print(f"cost report: {out / 'report' / 'report.html'} (+ report.md)")


BENCHMARK_OPTIONS = ("images", "annotations", "split", "limit")
BENCHMARK_USAGE = "TASK DATA [images=DIR] [annotations=FILE] [split=NAME] [limit=N]"


def _benchmark(tokens: list[str]):
    """One `--benchmark TASK DATA [KEY=VALUE ...]`: the files `vpgtrans eval` takes as flags."""
    from .benchmarks import TASKS
    from .zeroshot import Benchmark

    given = f"--benchmark {' '.join(tokens)}"
    if len(tokens) < 2:
        raise VPGTransError(f"{given}: expected {BENCHMARK_USAGE}")
    task, data, *options = tokens
    if task not in TASKS:
        raise VPGTransError(f"{given}: unknown task {task!r}; choose from {', '.join(TASKS)}")
    values: dict[str, str | int] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in BENCHMARK_OPTIONS or key in values:
            problem = "given twice" if key in values else "is not KEY=VALUE with KEY one of " + ", ".join(BENCHMARK_OPTIONS)
            raise VPGTransError(f"{given}: {option!r} {problem} (expected {BENCHMARK_USAGE})")
        values[key] = value
    if "limit" in values:
        if not str(values["limit"]).isdigit() or int(values["limit"]) < 1:
            raise VPGTransError(f"{given}: limit={values['limit']} is not a positive whole number")
        values["limit"] = int(values["limit"])
    return Benchmark(task, data, **values)


def cmd_compare(args: argparse.Namespace) -> None:
    from .compare import CompareConfig, run_compare, sweep_edge_note
    from .compare_report import _fmt

    recipe = _recipe(args.recipe) if args.recipe or not (args.src and args.dst and args.data) else {}
    out = Path(args.out or Path("runs") / "compare")
    src, dst = args.src or recipe.get("src"), args.dst or recipe.get("dst")
    data, eval_dir = _recipe_data(args.data, args.eval, recipe, out)
    benchmarks = tuple(_benchmark(tokens) for tokens in args.benchmark or ())
    if not (src and dst and data and (eval_dir or benchmarks)):
        raise VPGTransError("compare needs --src, --dst, --data and --eval or --benchmark (or a recipe that declares them)")
    config = CompareConfig(
        src=src, dst=dst, data=data, eval=eval_dir, out=str(out), arms=tuple(args.arms.split(",")), seeds=args.seeds,
        budget_epochs=args.budget_epochs or CompareConfig.budget_epochs, budget_steps=args.budget_steps, evals_per_epoch=args.evals_per_epoch,
        converter=args.converter or recipe.get("converter", "ridge"), training=_training_config(args, recipe),
        tfs_lrs=tuple(float(x) for x in args.tfs_lrs.split(",")) if args.tfs_lrs else (),
        eval_limit=args.eval_limit, benchmarks=benchmarks,
    )
    results = run_compare(config, resume=args.resume, overwrite=args.overwrite)
    for metric, units in results["speedup"].items():
        print(f"speed-up on {metric}: {_fmt(units['epoch'])} (epochs), {_fmt(units['seconds'])} (seconds)")
    note = sweep_edge_note(results["tfs_lr_sweep"])
    if note:
        print(f"warning: {note}")
    print(f"results: {out / 'results.json'}, table: {out / 'results.md'}")


def cmd_world(args: argparse.Namespace) -> None:
    from . import world

    path = world.write_dataset(args.out, args.n, args.seed, world.WorldConfig(image_size=args.image_size), args.layout)
    print(f"{args.n} scenes: {path} (+ qa.jsonl, scenes.jsonl)")


def cmd_fit_converter(args: argparse.Namespace) -> None:
    from .converter import ConverterFitConfig, fit_converter
    from .data import load_caption_data

    captions = load_caption_data(args.data, args.skip_bad_samples).captions() if args.data else []
    converter = fit_converter(args.src, args.dst, captions, ConverterFitConfig(method=args.converter, seed=args.seed))
    converter.save(args.out)
    print(json.dumps(asdict(converter.report), indent=2))


def cmd_init(args: argparse.Namespace) -> None:
    from .converter import WordConverter
    from .transfer import initialise, save_model

    converter = WordConverter.load(args.converter) if args.converter else None
    model, processor, report = initialise(args.src, args.dst, converter, seed=args.seed)
    save_model(model, processor, Path(args.out))
    print(json.dumps(asdict(report), indent=2))


def cmd_stage(args: argparse.Namespace) -> None:
    """`warmup` and `finetune`: one stage on a grafted model folder."""
    from .data import load_caption_data
    from .graft import load_blip2
    from .train import HALF_DTYPES, make_accelerator
    from .transfer import RunFolder, finetune_stage, run_stage, save_model, set_precision, warmup_stage

    training = _training_config(args)
    data = load_caption_data(args.data, args.skip_bad_samples)
    model, processor = load_blip2(args.model, HALF_DTYPES[training.precision])
    set_precision(model, training.precision)
    accelerator = make_accelerator(training.precision, training.grad_accum)
    settings = {"command": args.command, "model": args.model, "data": args.data, "training": asdict(training)}
    run = RunFolder(args.out, settings, args.resume, args.overwrite)
    make = warmup_stage if args.command == "warmup" else finetune_stage
    run_stage(model, processor, data, make(training, len(data.records), accelerator.num_processes), training, run, accelerator)
    if accelerator.is_main_process:
        save_model(model, processor, run.path / "model")
    run.save(status="done", model=str(run.path / "model"))
    print(f"model: {run.path / 'model'}")


def cmd_caption(args: argparse.Namespace) -> None:
    from PIL import Image
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    from .generation import GenerationSettings, generate

    model = Blip2ForConditionalGeneration.from_pretrained(args.model).eval()
    processor = Blip2Processor.from_pretrained(args.model)
    images = []
    for path in args.images:
        try:
            images.append(Image.open(path).convert("RGB"))
        except OSError as exc:
            raise VPGTransError(f"{path}: cannot read image ({exc.__class__.__name__})") from exc
    settings = GenerationSettings(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
    for path, text in zip(args.images, generate(model, processor, images, None, settings)):
        print(f"{path}\t{text}")


def cmd_eval(args: argparse.Namespace) -> None:
    from .zeroshot import Benchmark, EvalConfig, run_eval

    benchmark = Benchmark(args.task, args.data, args.images, args.annotations, args.split, args.limit)
    names = ("model", "out", "batch_size", "precision", "prompt", "num_beams", "min_new_tokens", "max_new_tokens")
    metrics = run_eval(EvalConfig(benchmark=benchmark, **{k: getattr(args, k) for k in names}))
    print(json.dumps({k: metrics[k] for k in ("task", "metric", "score", "n")}))
    print(f"predictions: {Path(args.out) / 'predictions.jsonl'}, metrics: {Path(args.out) / 'metrics.json'}")


def cmd_score(args: argparse.Namespace) -> None:
    from .benchmarks import score

    print(json.dumps(score(args.task, args.predictions, args.annotations, split=args.split), indent=2))


def cmd_report(args: argparse.Namespace) -> None:
    from .report import Pricing, write_report

    path = write_report(args.folders, args.out, Pricing(args.gpu, args.mfu, args.price_per_hour))
    print(f"report: {path} (+ {path.with_suffix('.md')})")


def _model_config(ref: str) -> dict:
    """A config.json file, a model folder, a preset or a hub id (read from the offline cache)."""
    from .costs import load_config
    from .hub import read_config

    if not Path(ref).is_file():
        return read_config(ref)
    try:
        return load_config(ref)
    except json.JSONDecodeError as exc:
        raise VPGTransError(f"{ref}: not a JSON config file (line {exc.lineno}: {exc.msg})") from exc


def cmd_estimate(args: argparse.Namespace) -> None:
    from .costs import estimate

    src, dst = _model_config(args.src), _model_config(args.dst)
    runs = {}
    for name, samples in (("vpgtrans", args.samples), ("scratch", args.scratch_samples)):
        try:
            est = estimate(src, dst, args.gpu, samples, args.mfu, text_tokens=args.text_tokens,
                           price_per_hour=args.price_per_hour)
        except (KeyError, ValueError) as exc:
            raise VPGTransError(f"cannot estimate {args.src} -> {args.dst}: {exc}") from exc
        runs[name] = {"samples": samples, "flops": {**asdict(est.flops), "total": est.flops.total},
                      "gpu_hours": est.gpu_hours, "dollars": est.dollars}
    print(f"{est.gpu.name}, MFU {args.mfu:g}, ${est.dollars / est.gpu_hours:.2f}/GPU-hour")
    print(f"{'run':<10} {'samples':>12} {'PFLOPs':>12} {'GPU-hours':>10} {'dollars':>10}")
    for name, run in runs.items():
        print(f"{name:<10} {run['samples']:>12,} {run['flops']['total'] / 1e15:>12,.0f} {run['gpu_hours']:>10.1f} "
              f"{run['dollars']:>10,.0f}")
    print(json.dumps({"src": args.src, "dst": args.dst, "gpu": args.gpu, "mfu": args.mfu, **runs,
                      "speedup": runs["scratch"]["gpu_hours"] / runs["vpgtrans"]["gpu_hours"]}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    from .benchmarks import TASKS

    parser = argparse.ArgumentParser(prog="vpgtrans", description="Transfer a BLIP-2 visual prompt generator to a new LLM.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transfer", help="fit converter, graft, warm up, fine-tune: the whole VPGTrans transfer",
                       description="With no arguments: the 'default' recipe (miniature world, toy-blip2-opt-s -> toy-llama).")
    p.add_argument("--recipe", help="named transfer from recipes/transfers.toml (default: 'default' when --src/--dst/--data are not all given)")
    p.add_argument("--src", help="BLIP-2 folder, hub id or preset (e.g. blip2-opt-2.7b)")
    p.add_argument("--dst", help="causal LM folder, hub id or preset (e.g. llama-7b)")
    p.add_argument("--data", help="image-caption JSONL or imagefolder")
    p.add_argument("--eval", help="held-out miniature-world folder to score the result on (caption and VQA accuracy)")
    p.add_argument("--eval-limit", type=int, help="score at most this many captions and questions")
    p.add_argument("--out", help="run folder (default: runs/SRC-to-DST)")
    p.add_argument("--converter", choices=CONVERTER_CHOICES, help="converter fit (default: closed-form ridge)")
    p.add_argument("--prompt-scale", action="store_true",
                   help="rescale the fused projector to the source's soft-prompt / word-embedding ratio (docs/benchmarks.md)")
    _training_args(p, ("--stage1-steps", "--stage2-steps"))
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("compare", help="VPGTrans vs training from scratch (and ablations): speed-up as in the paper")
    p.add_argument("--recipe", help="named transfer giving src/dst/data/eval defaults")
    p.add_argument("--src")
    p.add_argument("--dst")
    p.add_argument("--data", help="training image-caption pairs")
    p.add_argument("--eval", help="held-out miniature-world folder every arm is scored on")
    p.add_argument("--benchmark", nargs="+", action="append", metavar="ARG",
                   help=f"{BENCHMARK_USAGE}: score every arm on this benchmark too, or instead of --eval (the files "
                   f"`vpgtrans eval` reads; TASK: {', '.join(TASKS)}); repeatable")
    p.add_argument("--out", help="output folder (default: runs/compare)")
    p.add_argument("--arms", default="tfs,vpgtrans", help="comma list from: tfs, vpgtrans, inherit-no-warmup, "
                   "fused-no-warmup, warmup-1x, warmup-10x, random-warmup, paper-converter, prompt-scale, "
                   "warmup-1-epoch, warmup-2-epochs, warmup-3-epochs")
    p.add_argument("--seeds", type=int, default=3)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-epochs", type=int, help="epochs of DATA per arm, warm-up included (default 10)")
    budget.add_argument("--budget-steps", type=int, help="optimizer steps per arm, warm-up included (instead of epochs)")
    p.add_argument("--evals-per-epoch", type=int, default=1,
                   help="evenly spaced evaluations per epoch (the end of the budget is always scored)")
    p.add_argument("--converter", choices=CONVERTER_CHOICES,
                   help="converter of the fused arms (default: closed-form ridge; the paper-converter arm always uses paper)")
    p.add_argument("--tfs-lrs", help="comma list of learning rates swept for TFS on seed 0 (best is used)")
    p.add_argument("--eval-limit", type=int, default=100, help="captions and questions of --eval scored per evaluation")
    _training_args(p, ())
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("fit-converter", help="fit the word-embedding converter between two LLMs")
    p.add_argument("--src", required=True, help="BLIP-2 or LLM folder, hub id or preset")
    p.add_argument("--dst", required=True, help="BLIP-2 or LLM folder, hub id or preset")
    p.add_argument("--data", help="captions to weight tokens by frequency (needed for --converter paper)")
    p.add_argument("--out", required=True, help="converter file (.safetensors)")
    p.add_argument("--converter", choices=CONVERTER_CHOICES, default="ridge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-bad-samples", action="store_true")
    p.set_defaults(func=cmd_fit_converter)

    p = sub.add_parser("init", help="graft the source VPG onto the destination LLM with the fused projector")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--converter", help="converter file from fit-converter (omit for a random projector)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_init)

    for name, help_text in (("warmup", "stage 1: train the projector alone at warmup-lr-mult x LR"),
                            ("finetune", "stage 2: train Q-Former, queries, ln_vision and projector")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--model", required=True, help="grafted BLIP-2 folder (from init or warmup)")
        p.add_argument("--data", required=True)
        p.add_argument("--out", required=True, help="run folder; the model goes to OUT/model")
        _training_args(p, ("--steps",))
        p.set_defaults(func=cmd_stage)

    p = sub.add_parser("world", help="write a miniature-world image-caption set (JSONL or imagefolder) with QA and scenes")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=1000, help="number of scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--layout", choices=["jsonl", "imagefolder"], default="jsonl")
    p.set_defaults(func=cmd_world)

    p = sub.add_parser("caption", help="caption images with a BLIP-2 folder")
    p.add_argument("--model", required=True)
    p.add_argument("images", nargs="+")
    p.add_argument("--num-beams", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=30)
    p.set_defaults(func=cmd_caption)

    from .costs import DEFAULT_MFU, GPUS

    p = sub.add_parser("eval", help="zero-shot evaluation on a benchmark: predictions.jsonl + metrics.json",
                       description="Files per task: docs/evaluation.md.")
    p.add_argument("--model", required=True, help="BLIP-2 folder, hub id or preset")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--data", required=True, help="dataset_coco.json (coco-caption), the NoCaps JSON, the questions "
                   "JSON (vqav2, okvqa, gqa) or a miniature-world folder (toy-caption, toy-vqa)")
    p.add_argument("--images", help="the benchmark's image folder (COCO root holding val2014/, NoCaps or GQA images)")
    p.add_argument("--annotations", help="VQA annotations JSON (vqav2, okvqa)")
    p.add_argument("--split", default="test", help="Karpathy split for coco-caption (test)")
    p.add_argument("--limit", type=int, help="evaluate the first N images or questions only")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--prompt", help="override the task's prompt ('{}' takes the question)")
    p.add_argument("--num-beams", type=int)
    p.add_argument("--min-new-tokens", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--out", required=True, help="folder for predictions.jsonl and metrics.json")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("score", help="score saved predictions against a benchmark's annotations; JSON on stdout")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--predictions", required=True, help='JSONL: {"image_id", "caption"} or {"question_id", "answer"}')
    p.add_argument("--annotations", required=True, help="dataset_coco.json, NoCaps JSON, VQA annotations, GQA "
                   "questions or a miniature-world folder")
    p.add_argument("--split", default="test", help="Karpathy split for coco-caption (test)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("report", help="cost report of transfer runs and comparisons: report.md + self-contained report.html")
    p.add_argument("folders", nargs="+", help="transfer run folders (run.json) and/or compare folders (results.json)")
    p.add_argument("--out", required=True)
    p.add_argument("--gpu", choices=list(GPUS), default="a100-40g", help="GPU the FLOPs are priced on")
    p.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="model-FLOPs utilisation (%(default)s)")
    p.add_argument("--price-per-hour", type=float, help="dollars per GPU-hour (default: the price table's)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("estimate", help="project a real transfer's (and training from scratch's) GPU cost from configs")
    p.add_argument("--src", required=True, help="source BLIP-2: config.json, model folder, preset or hub id")
    p.add_argument("--dst", required=True, help="destination LLM: config.json, model folder, preset or hub id")
    p.add_argument("--gpu", choices=list(GPUS), default="a100-40g")
    samples = lambda text: int(float(text))  # noqa: E731  (accepts 13.8e6)
    p.add_argument("--samples", type=samples, default=13_800_000,
                   help="transfer samples (default: the paper's OPT-2.7B -> OPT-6.7B transfer, 13.8M)")
    p.add_argument("--scratch-samples", type=samples, default=129_000_000,
                   help="from-scratch samples (default: BLIP-2's pre-training, 129M)")
    p.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="model-FLOPs utilisation (%(default)s)")
    p.add_argument("--text-tokens", type=int, default=32, help="caption tokens per sample (32)")
    p.add_argument("--price-per-hour", type=float, help="dollars per GPU-hour (default: the price table's)")
    p.set_defaults(func=cmd_estimate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except VPGTransError as exc:
        print(f"vpgtrans: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

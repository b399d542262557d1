"""The commands behind `vpgtrans`: each builds its config from the flags (and a recipe) and runs it.

Each command's flags are the fields of its config dataclass (`options.add_flags`), so every
default and help line has one source. Values come from, highest first: explicit flags, the
named recipe (`recipes/transfers.toml`), the dataclass defaults.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..config import DST_HELP, SRC_HELP, option
from ..convert_config import PREFIXES
from ..efficiency.config import IGNORED_TRAINING, CompareConfig
from ..errors import VPGTransError
from ..evaluation.config import Benchmark, EvalConfig, GenerationSettings
from ..evaluation.tasks import TASK_NAMES
from ..method.config import ConverterFitConfig
from ..reports.report import Pricing
from ..training.config import INSTRUCTION_FIELDS, TrainingConfig
from ..transfer_config import StageRunConfig, TransferConfig
from .options import given, layered

# Training fields each command uses: compare leaves out what it does not use (IGNORED_TRAINING);
# a single stage takes only its own stage's fields.
TRAINING_FIELDS = [f.name for f in fields(TrainingConfig)]
COMPARE_TRAINING = [n for n in TRAINING_FIELDS if n not in IGNORED_TRAINING]
CAPTION_ONLY = ("lr", "warmup_lr_mult", "random_crop", "horizontal_flip", "max_text_tokens")
STAGE_TRAINING = {
    "warmup": [n for n in TRAINING_FIELDS if not n.startswith("stage2_") and n not in INSTRUCTION_FIELDS],
    "finetune": [
        n for n in TRAINING_FIELDS if not n.startswith("stage1_") and n not in ("warmup_lr_mult", *INSTRUCTION_FIELDS)
    ],
    "instruct": [n for n in TRAINING_FIELDS if not n.startswith(("stage1_", "stage2_")) and n not in CAPTION_ONLY],
}


@dataclass
class RunControl:
    """How a command treats an OUT that already holds a run."""

    resume: bool = option(False, "continue the run already in OUT")
    overwrite: bool = option(False, "delete what a run made in OUT and start afresh (never anything else)")


@dataclass
class FitConverterArgs:
    src: str = option(help="source BLIP-2 or LLM: folder, hub id or preset")
    dst: str = option(help="destination BLIP-2 or LLM: folder, hub id or preset")
    out: str = option(help="converter file (.safetensors)")
    data: str | None = option(None, "captions to weight tokens by frequency (needed for --converter paper)")


@dataclass
class InitArgs:
    src: str = option(help=SRC_HELP)
    dst: str = option(help=DST_HELP)
    out: str = option(help="model folder to write")
    converter: str | None = option(None, "converter file from fit-converter (omit for a random projector)")
    seed: int = option(0, "seed of a random projector", minimum=0)


@dataclass
class WorldArgs:
    out: str = option(help="folder to write")
    n: int = option(1000, "number of scenes", minimum=1)
    seed: int = option(0, "scene seed", minimum=0)
    image_size: int = option(32, "image side in pixels", minimum=8)
    layout: str = option(
        "jsonl", "captions.jsonl, or a datasets imagefolder (metadata.jsonl)", choices=("jsonl", "imagefolder")
    )


@dataclass
class CaptionArgs:
    model: str = option(help="BLIP-2 folder, hub id or preset")
    images: tuple[str, ...] = option(help="image files", positional=True)


@dataclass
class ChatArgs:
    image: str | None = option(None, "image to talk about (more with /image PATH during the chat)")


@dataclass
class ConvertArgs:
    """`vpgtrans convert`: which way, from what, to where (LAVIS' own settings: `LavisSource`)."""

    source: str = option(help="with --from lavis: the LAVIS checkpoint (.pth); with --to lavis: a BLIP-2 folder",
                         positional=True)  # fmt: skip
    out: str = option(help="--from: the model folder to write; --to: the checkpoint file (.pth) to write")
    from_format: str | None = option(None, "convert from this format to a transformers folder", choices=("lavis",),
                                     flag="from")  # fmt: skip
    to_format: str | None = option(None, "convert a transformers folder to this format", choices=("lavis",),
                                   flag="to")  # fmt: skip
    vit_out: str | None = option(None, "--to lavis: also write the ViT here (eva_vit_g.pth layout)")
    prefix: str | None = option(None, "--to lavis: module prefix of projector and LLM (default: by LLM family)",
                                choices=PREFIXES)  # fmt: skip


@dataclass
class ScoreArgs:
    task: str = option(help="benchmark task", choices=TASK_NAMES)
    predictions: str = option(help='JSONL: {"image_id", "caption"} or {"question_id", "answer"}')
    annotations: str = option(
        help="dataset_coco.json, NoCaps JSON, VQA annotations, GQA questions or a miniature-world folder"
    )
    split: str = option("test", "Karpathy split for coco-caption")


@dataclass
class ReportArgs:
    folders: tuple[str, ...] = option(
        help="transfer run folders (run.json) and/or compare folders (results.json)", positional=True
    )
    out: str = option(help="report folder")


@dataclass
class EstimateArgs:
    src: str = option(help="source BLIP-2: config.json, model folder, preset or hub id")
    dst: str = option(help="destination LLM: config.json, model folder, preset or hub id")
    samples: float = option(13.8e6, "transfer samples (the paper's OPT-2.7B -> OPT-6.7B transfer)", minimum=1)
    scratch_samples: float = option(129e6, "from-scratch samples (BLIP-2's pre-training)", minimum=1)
    text_tokens: int = option(32, "caption tokens per sample", minimum=1)


# --------------------------------------------------------------------------- recipes


def _recipe(args: argparse.Namespace):
    """The named recipe, or 'default' when --src/--dst/--data are not all given; else none."""
    from ..recipes import Recipe, get_recipe

    if args.recipe or not (args.src and args.dst and args.data):
        return get_recipe(args.recipe or "default")
    return Recipe(name="")


def _recipe_data(recipe, out: Path, flags: dict) -> tuple[dict[str, str], list[tuple[Path, int, int]]]:
    """DATA and the held-out folder a recipe declares, unless flags give them: its paths, or the
    paths of world sets to generate beside OUT (folder, scenes, seed)."""
    values, worlds = {"data": recipe.data, "chat": recipe.chat}, []
    if "data" not in flags and recipe.data is None and recipe.world_images:
        folder = out.parent / f"world-n{recipe.world_images}-seed{recipe.world_seed}"
        values["data"], worlds = str(folder / "captions.jsonl"), [(folder, recipe.world_images, recipe.world_seed)]
        if "chat" not in flags and recipe.world_chat:
            values["chat"] = str(folder / "conversations.jsonl")
    if "eval" not in flags and recipe.eval_images:
        folder = out.parent / f"world-n{recipe.eval_images}-seed{recipe.eval_seed}"
        values["eval"] = str(folder)
        worlds.append((folder, recipe.eval_images, recipe.eval_seed))
    return values, worlds


def _preset_precision(training: TrainingConfig, src: str, dst: str, chosen: bool) -> TrainingConfig:
    """A preset's half precision (FlanT5's bf16) as the default; the other half precision refused."""
    from ..presets import preset_precision

    needed = preset_precision(src, dst)
    if not needed or chosen and training.precision in ("fp32", needed):
        return training
    if chosen:
        raise VPGTransError(
            f"--precision {training.precision}: {src} -> {dst} runs in {needed} or fp32 (its preset says so: "
            "T5 overflows in fp16)"
        )
    return replace(training, precision=needed)


def _recipe_config(cls: type, args: argparse.Namespace, training_fields: list[str], **extra):
    """`cls` (TransferConfig or CompareConfig) from the flags over the recipe over the defaults.
    The whole config is checked before a recipe's world data is generated."""
    from ..pipeline import check_precision
    from ..world.datasets import world_folder

    recipe = _recipe(args)
    flags = given(cls, args)
    training = recipe.training_config({k: v for k, v in given(TrainingConfig, args).items() if k in training_fields})
    src, dst = flags.get("src", recipe.src), flags.get("dst", recipe.dst)
    if not (src and dst):
        raise VPGTransError("--src and --dst are required (or a recipe that names them)")
    out = Path(flags.get("out") or cls.default_out(src, dst))
    recipe_values = {f.name: getattr(recipe, f.name, None) for f in fields(cls) if f.name != "training"}
    paths, worlds = _recipe_data(recipe, out, flags)
    values = layered(cls, recipe_values, paths, flags, {"src": src, "dst": dst, "out": str(out)})
    if "data" not in values:
        raise VPGTransError("--data is required (or a recipe that declares data)")
    training = _preset_precision(training, values["src"], values["dst"], "precision" in given(TrainingConfig, args)
                                 or "precision" in recipe.training)  # fmt: skip
    config = cls(**values, training=training, **extra)
    check_precision(training.precision)
    for folder, images, seed in worlds:
        world_folder(folder, images, seed)
    return config


# --------------------------------------------------------------------------- commands


def cmd_transfer(args: argparse.Namespace) -> None:
    from accelerate import PartialState

    from ..pipeline import run_transfer
    from ..reports.report import write_report

    config = _recipe_config(TransferConfig, args, TRAINING_FIELDS)
    control = RunControl(**given(RunControl, args))
    model_dir = run_transfer(config, resume=control.resume, overwrite=control.overwrite)
    out = Path(config.out)
    if PartialState().is_main_process:
        record = json.loads((out / "run.json").read_text())
        if record.get("evaluation"):
            print(json.dumps(record["evaluation"], indent=2))
        write_report([out], out / "report")
    print(f"model: {model_dir}")
    print(f"run record: {out / 'run.json'}")
    print(f"cost report: {out / 'report' / 'report.html'} (+ report.md)")


BENCHMARK_OPTIONS = ("images", "annotations", "split", "limit")
BENCHMARK_USAGE = "TASK DATA [images=DIR] [annotations=FILE] [split=NAME] [limit=N]"


def _benchmark(tokens: list[str]) -> Benchmark:
    """One `--benchmark TASK DATA [KEY=VALUE ...]`: the files `vpgtrans eval` takes as flags."""
    given_text = f"--benchmark {' '.join(tokens)}"
    if len(tokens) < 2:
        raise VPGTransError(f"{given_text}: expected {BENCHMARK_USAGE}")
    task, data, *options = tokens
    if task not in TASK_NAMES:
        raise VPGTransError(f"{given_text}: unknown task {task!r}; choose from {', '.join(TASK_NAMES)}")
    values: dict[str, str | int] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or key not in BENCHMARK_OPTIONS or key in values:
            problem = (
                "given twice" if key in values else "is not KEY=VALUE with KEY one of " + ", ".join(BENCHMARK_OPTIONS)
            )
            raise VPGTransError(f"{given_text}: {item!r} {problem} (expected {BENCHMARK_USAGE})")
        values[key] = value
    if "limit" in values:
        if not str(values["limit"]).isdigit() or int(values["limit"]) < 1:
            raise VPGTransError(f"{given_text}: limit={values['limit']} is not a positive whole number")
        values["limit"] = int(values["limit"])
    return Benchmark(task, data, **values)


def cmd_compare(args: argparse.Namespace) -> None:
    from ..efficiency.runner import run_compare
    from ..efficiency.speedup import sweep_edge_note
    from ..efficiency.tables import format_speedup

    benchmarks = tuple(_benchmark(tokens) for tokens in args.benchmark or ())
    config = _recipe_config(CompareConfig, args, COMPARE_TRAINING, benchmarks=benchmarks)
    control = RunControl(**given(RunControl, args))
    results = run_compare(config, resume=control.resume, overwrite=control.overwrite)
    for metric, units in results["speedup"].items():
        print(
            f"speed-up on {metric}: {format_speedup(units['epoch'])} (epochs), "
            f"{format_speedup(units['seconds'])} (seconds)"
        )
    note = sweep_edge_note(results["tfs_lr_sweep"])
    if note:
        print(f"warning: {note}")
    print(f"results: {Path(config.out) / 'results.json'}, table: {Path(config.out) / 'results.md'}")


def cmd_world(args: argparse.Namespace) -> None:
    from .. import world

    a = WorldArgs(**given(WorldArgs, args))
    path = world.write_dataset(a.out, a.n, a.seed, world.WorldConfig(image_size=a.image_size), a.layout)
    print(f"{a.n} scenes: {path} (+ qa.jsonl, conversations.jsonl, scenes.jsonl)")


def cmd_fit_converter(args: argparse.Namespace) -> None:
    from ..method.converter import fit_converter
    from ..training.data import load_captions

    a = FitConverterArgs(**given(FitConverterArgs, args))
    captions = load_captions(a.data) if a.data else []
    converter = fit_converter(a.src, a.dst, captions, ConverterFitConfig(**given(ConverterFitConfig, args)))
    converter.save(a.out)
    print(json.dumps(asdict(converter.report), indent=2))


def cmd_init(args: argparse.Namespace) -> None:
    from ..method.converter import WordConverter
    from ..pipeline import initialise, save_model

    a = InitArgs(**given(InitArgs, args))
    converter = WordConverter.load(a.converter) if a.converter else None
    model, processor, report = initialise(a.src, a.dst, converter, seed=a.seed)
    save_model(model, processor, Path(a.out))
    print(json.dumps(asdict(report), indent=2))


def cmd_stage(args: argparse.Namespace) -> None:
    """`warmup` and `finetune`: one stage on a grafted model folder."""
    from ..pipeline import run_single_stage
    from ..training.stages import STAGES

    training = TrainingConfig(**given(TrainingConfig, args))
    config = StageRunConfig(**given(StageRunConfig, args), training=training)
    control = RunControl(**given(RunControl, args))
    print(f"model: {run_single_stage(STAGES[args.command], config, control.resume, control.overwrite)}")


def cmd_caption(args: argparse.Namespace) -> None:
    from ..evaluation.generation import generate
    from ..io.images import open_rgb
    from ..method.graft import load_blip2

    a = CaptionArgs(**given(CaptionArgs, args))
    images = [open_rgb(path) for path in a.images]  # every image is read before the model loads
    model, processor = load_blip2(a.model)
    settings = GenerationSettings(**given(GenerationSettings, args))
    for path, text in zip(a.images, generate(model.eval(), processor, images, None, settings)):
        print(f"{path}\t{text}")


def cmd_eval(args: argparse.Namespace) -> None:
    from ..evaluation.evaluate import run_eval

    config = EvalConfig(**given(EvalConfig, args), benchmark=Benchmark(**given(Benchmark, args)))
    metrics = run_eval(config)
    print(json.dumps({k: metrics[k] for k in ("task", "metric", "score", "n")}))
    print(f"predictions: {Path(config.out) / 'predictions.jsonl'}, metrics: {Path(config.out) / 'metrics.json'}")


def cmd_score(args: argparse.Namespace) -> None:
    from ..evaluation.tasks import score

    a = ScoreArgs(**given(ScoreArgs, args))
    print(json.dumps(score(a.task, a.predictions, a.annotations, split=a.split), indent=2))


def cmd_report(args: argparse.Namespace) -> None:
    from ..reports.report import write_report

    a = ReportArgs(**given(ReportArgs, args))
    path = write_report(list(a.folders), a.out, Pricing(**given(Pricing, args)))
    print(f"report: {path} (+ {path.with_suffix('.md')})")


def _model_config(ref: str) -> dict:
    """A config.json file, a model folder, a preset or a hub id (read from the offline cache)."""
    from ..costs import load_config
    from ..io.hub import read_config

    if not Path(ref).is_file():
        return read_config(ref)
    try:
        return load_config(ref)
    except json.JSONDecodeError as exc:
        raise VPGTransError(f"{ref}: not a JSON config file (line {exc.lineno}: {exc.msg})") from exc


def cmd_estimate(args: argparse.Namespace) -> None:
    from ..costs import estimate

    a, pricing = EstimateArgs(**given(EstimateArgs, args)), Pricing(**given(Pricing, args))
    src, dst = _model_config(a.src), _model_config(a.dst)
    runs = {}
    for name, samples in (("vpgtrans", int(a.samples)), ("scratch", int(a.scratch_samples))):
        try:
            est = estimate(
                src,
                dst,
                pricing.gpu,
                samples,
                pricing.mfu,
                text_tokens=a.text_tokens,
                price_per_hour=pricing.price_per_hour,
            )
        except (KeyError, ValueError) as exc:
            raise VPGTransError(f"cannot estimate {a.src} -> {a.dst}: {exc}") from exc
        runs[name] = {
            "samples": samples,
            "flops": {**asdict(est.flops), "total": est.flops.total},
            "gpu_hours": est.gpu_hours,
            "dollars": est.dollars,
        }
    print(f"{est.gpu.name}, MFU {pricing.mfu:g}, ${est.dollars / est.gpu_hours:.2f}/GPU-hour")
    print(f"{'run':<10} {'samples':>12} {'PFLOPs':>12} {'GPU-hours':>10} {'dollars':>10}")
    for name, run in runs.items():
        print(
            f"{name:<10} {run['samples']:>12,} {run['flops']['total'] / 1e15:>12,.0f} {run['gpu_hours']:>10.1f} "
            f"{run['dollars']:>10,.0f}"
        )
    print(
        json.dumps(
            {
                "src": a.src,
                "dst": a.dst,
                "gpu": pricing.gpu,
                "mfu": pricing.mfu,
                **runs,
                "speedup": runs["scratch"]["gpu_hours"] / runs["vpgtrans"]["gpu_hours"],
            },
            indent=2,
        )
    )


CHAT_HELP = "/image PATH shows an image, /reset starts afresh, /save FILE writes the transcript (JSON), /quit ends"


def cmd_chat(args: argparse.Namespace) -> None:
    from ..chat.config import ChatModelArgs, ChatSettings
    from ..chat.session import ChatModel, ChatSession
    from ..io.images import open_rgb

    a, chat_args = ChatModelArgs(**given(ChatModelArgs, args)), ChatArgs(**given(ChatArgs, args))
    settings = ChatSettings(**given(ChatSettings, args))
    image = open_rgb(chat_args.image) if chat_args.image else None  # a bad image fails before the model loads
    session = ChatSession(ChatModel.load(a.model, a.precision), settings)
    if image is not None:
        session.show(image, chat_args.image)
    print(f"vpgtrans chat with {a.model}: {CHAT_HELP}", flush=True)
    chat_loop(session)


def chat_loop(session) -> None:
    """Read lines until /quit or end of input: commands, or questions answered as they stream."""
    from ..io.images import open_rgb

    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        command, _, rest = line.partition(" ")
        try:
            if not line:
                continue
            if command in ("/quit", "/exit"):
                return
            if command == "/reset":
                session.reset()
                print("(conversation reset)")
            elif command == "/image":
                session.show(open_rgb(rest.strip(), "/image"), rest.strip())
                print(f"(image {rest.strip()} will go with your next message)")
            elif command == "/save":
                _save_transcript(session, rest.strip())
            elif command.startswith("/"):
                print(f"unknown command {command}; {CHAT_HELP}")
            else:
                _answer(session, line)
        except VPGTransError as exc:
            print(f"error: {exc}")


def _save_transcript(session, path: str) -> None:
    from ..io.atomic import write_text_atomic

    if not path:
        raise VPGTransError("/save needs a file: /save FILE.json")
    try:
        write_text_atomic(Path(path), json.dumps(session.transcript(), indent=2))
    except OSError as exc:
        raise VPGTransError(f"/save {path}: cannot write it ({exc.strerror or exc})") from exc
    print(f"(transcript saved to {path})")


def _answer(session, question: str) -> None:
    """Ask, printing the answer as it grows; Ctrl-C stops it (what came so far is kept)."""
    shown = 0

    def show(text: str) -> None:
        nonlocal shown
        print(text[shown:], end="", flush=True)
        shown = len(text)

    print("assistant> ", end="", flush=True)
    try:
        reply = session.ask(question, on_text=show)
    except KeyboardInterrupt:  # outside the streaming loop (beam search, preprocessing): the question is dropped
        print(" [interrupted: the question was dropped]", flush=True)
        return
    print(" [stopped]" if reply.stopped else "", flush=True)
    if reply.dropped_turns:
        print(f"(the {reply.dropped_turns} oldest turn(s) were left out to fit the context)")


def cmd_serve(args: argparse.Namespace) -> None:
    from ..chat.config import ChatModelArgs, ChatSettings, ServeArgs
    from ..chat.serve import serve
    from ..chat.session import ChatModel

    a = ChatModelArgs(**given(ChatModelArgs, args))
    settings, serve_args = ChatSettings(**given(ChatSettings, args)), ServeArgs(**given(ServeArgs, args))
    serve(ChatModel.load(a.model, a.precision), settings, serve_args)


def cmd_convert(args: argparse.Namespace) -> None:
    from ..convert import load_lavis, write_lavis
    from ..convert_config import LavisSource
    from ..pipeline import save_model

    a = ConvertArgs(**given(ConvertArgs, args))
    if (a.from_format is None) == (a.to_format is None):
        raise VPGTransError("give one of --from lavis (LAVIS checkpoint -> folder) and --to lavis (folder -> LAVIS)")
    if a.to_format:
        prefix = write_lavis(a.source, a.out, a.vit_out, a.prefix)
        print(f"LAVIS checkpoint ({prefix}_proj): {a.out}" + (f", ViT: {a.vit_out}" if a.vit_out else ""))
        return
    lavis = {k: v for k, v in given(LavisSource, args).items() if k != "checkpoint"}
    if "llm" not in lavis:
        raise VPGTransError("--from lavis needs --llm: the language model the checkpoint was trained on")
    model, processor = load_lavis(LavisSource(checkpoint=a.source, **lavis))
    save_model(model, processor, Path(a.out))
    print(f"model: {a.out}")

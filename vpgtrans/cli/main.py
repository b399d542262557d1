"""`vpgtrans` command line: one subcommand per step, `transfer` for all of them.

The parser is built from the config dataclasses (`options.add_flags`); the commands live in
`commands.py`.
"""

from __future__ import annotations

import argparse
import sys

from ..chat.config import ChatModelArgs, ChatSettings, ServeArgs
from ..convert_config import LAVIS_FIELDS, LavisSource
from ..efficiency.config import CompareConfig
from ..errors import VPGTransError
from ..evaluation.config import Benchmark, EvalConfig, GenerationSettings
from ..evaluation.tasks import TASK_NAMES
from ..method.config import ConverterFitConfig
from ..reports.report import Pricing
from ..training.config import TrainingConfig
from ..transfer_config import StageRunConfig, TransferConfig
from .commands import (
    BENCHMARK_USAGE,
    COMPARE_TRAINING,
    STAGE_TRAINING,
    CaptionArgs,
    ChatArgs,
    ConvertArgs,
    EstimateArgs,
    FitConverterArgs,
    InitArgs,
    ReportArgs,
    RunControl,
    ScoreArgs,
    WorldArgs,
    cmd_caption,
    cmd_chat,
    cmd_compare,
    cmd_convert,
    cmd_estimate,
    cmd_eval,
    cmd_fit_converter,
    cmd_init,
    cmd_report,
    cmd_score,
    cmd_serve,
    cmd_stage,
    cmd_transfer,
    cmd_world,
)
from .options import add_flags

# --------------------------------------------------------------------------- parser


def _recipe_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        help="named transfer from recipes/transfers.toml (default: 'default' when "
        "--src/--dst/--data are not all given)",
    )


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="vpgtrans", description="Transfer a BLIP-2 visual prompt generator to a new LLM."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "transfer",
        help="fit converter, graft, warm up, fine-tune: the whole VPGTrans transfer",
        description="With no arguments: the 'default' recipe (miniature world, toy-blip2-opt-s -> toy-llama).",
    )
    _recipe_flag(p)
    add_flags(p, TransferConfig)
    add_flags(p.add_argument_group("training (defaults: the recipe's, else these)"), TrainingConfig)
    add_flags(p, RunControl)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("compare", help="VPGTrans vs training from scratch (and ablations): speed-up as in the paper")
    _recipe_flag(p)
    add_flags(p, CompareConfig)
    p.add_argument(
        "--benchmark",
        nargs="+",
        action="append",
        metavar="ARG",
        help=f"{BENCHMARK_USAGE}: score every arm on this benchmark too, or instead of --eval (the files "
        f"`vpgtrans eval` reads; TASK: {', '.join(TASK_NAMES)}); repeatable",
    )
    add_flags(
        p.add_argument_group("training (defaults: the recipe's, else these)"), TrainingConfig, only=COMPARE_TRAINING
    )
    add_flags(p, RunControl)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("fit-converter", help="fit the word-embedding converter between two LLMs")
    add_flags(p, FitConverterArgs, required=True)
    add_flags(p, ConverterFitConfig)
    p.set_defaults(func=cmd_fit_converter)

    p = sub.add_parser("init", help="graft the source VPG onto the destination LLM with the fused projector")
    add_flags(p, InitArgs, required=True)
    p.set_defaults(func=cmd_init)

    for name, help_text in (
        ("warmup", "stage 1: train the projector alone at warmup-lr-mult x LR"),
        ("finetune", "stage 2: train Q-Former, queries, ln_vision and projector"),
        ("instruct", "stage 3: instruction-tune on image conversations, loss on the answers (VL-Vicuna)"),
    ):
        p = sub.add_parser(name, help=help_text)
        add_flags(p, StageRunConfig, required=True)
        add_flags(p.add_argument_group("training"), TrainingConfig, only=STAGE_TRAINING[name])
        add_flags(p, RunControl)
        p.set_defaults(func=cmd_stage)

    p = sub.add_parser("chat", help="talk to a chat model about images in the terminal; answers stream")
    add_flags(p, ChatModelArgs, required=True)
    add_flags(p, ChatArgs)
    add_flags(p, ChatSettings)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser(
        "serve", help="a web chat page and an OpenAI-compatible /v1/chat/completions endpoint for a chat model"
    )
    add_flags(p, ChatModelArgs, required=True)
    add_flags(p, ServeArgs)
    add_flags(p, ChatSettings)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "convert",
        help="LAVIS / VPGTrans checkpoints to a transformers folder (--from lavis) and back (--to lavis)",
        description="docs/formats.md#lavis--vpgtrans-checkpoints",
    )
    add_flags(p, ConvertArgs, required=True)
    add_flags(p.add_argument_group("--from lavis"), LavisSource, only=[f for f in LAVIS_FIELDS if f != "checkpoint"])
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "world", help="write a miniature-world image-caption set (JSONL or imagefolder) with QA and scenes"
    )
    add_flags(p, WorldArgs, required=True)
    p.set_defaults(func=cmd_world)

    p = sub.add_parser("caption", help="caption images with a BLIP-2 folder, hub id or preset")
    add_flags(p, CaptionArgs, required=True)
    add_flags(
        p,
        GenerationSettings,
        only=("num_beams", "max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_p"),
    )
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser(
        "eval",
        help="zero-shot evaluation on a benchmark: predictions.jsonl + metrics.json",
        description="Files per task: docs/evaluation.md.",
    )
    add_flags(p, EvalConfig, required=True)
    add_flags(p, Benchmark, required=True)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("score", help="score saved predictions against a benchmark's annotations; JSON on stdout")
    add_flags(p, ScoreArgs, required=True)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "report", help="cost report of transfer runs and comparisons: report.md + self-contained report.html"
    )
    add_flags(p, ReportArgs, required=True)
    add_flags(p, Pricing)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("estimate", help="project a real transfer's (and training from scratch's) GPU cost from configs")
    add_flags(p, EstimateArgs, required=True)
    add_flags(p, Pricing)
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

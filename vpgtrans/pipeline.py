"""The VPGTrans pipeline: fit converter -> graft with fused projector -> warm-up -> fine-tune
[-> instruction tuning] -> export.

`run_transfer` is exactly the separate commands in order (`fit-converter`, `init`, `warmup`,
`finetune`, `instruct`), which share these functions. Everything is validated before OUT is touched, and
OUT/model appears only when complete. The pipeline ends at its export; reports are the CLI's.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from .chat.template import chat_generation_config, check_chat_model
from .convert import load_lavis
from .convert_config import LavisSource
from .errors import VPGTransError
from .evaluation.evaluate import WORLD_METRICS, load_world, world_scores
from .io.atomic import atomic_dir
from .io.lavis import read_pth
from .method.converter import ConverterFitConfig, WordConverter, fit_converter
from .method.graft import (
    GraftReport,
    check_blip2_ref,
    check_language_model_ref,
    graft,
    is_causal_lm_ref,
    load_blip2,
    load_language_model,
)
from .method.prompt_scale import match_prompt_scale
from .training.data import CaptionRecord, load_caption_data
from .training.run import RunFolder, load_stage_data, run_stage
from .training.stages import DTYPES, FINETUNE, INSTRUCT, WARMUP, StageSpec, set_precision
from .training.trainer import make_accelerator
from .transfer_config import StageRunConfig, TransferConfig


def save_model(
    model: Blip2ForConditionalGeneration, processor: Blip2Processor, folder: Path, chat: bool = False
) -> None:
    """A `save_pretrained` folder that loads with transformers alone, written atomically. A `chat` model
    (instruction-tuned) gets the chat decoding defaults, and a processor that leaves the image tokens
    to the chat template; the others keep BLIP-2's captioning defaults and processor."""
    captioning = model.generation_config
    if chat:
        model.generation_config = chat_generation_config(processor)
        processor = copy.copy(processor)
        processor.num_query_tokens = None
    try:
        with atomic_dir(folder) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
    finally:
        model.generation_config = captioning  # the live model keeps decoding as it did


def load_source(src: str | LavisSource, dtype: torch.dtype) -> tuple[Blip2ForConditionalGeneration, Blip2Processor]:
    """The source BLIP-2: a transformers folder, hub id or preset, or LAVIS files (`LavisSource`)."""
    return load_lavis(src, dtype) if isinstance(src, LavisSource) else load_blip2(src, dtype)


def check_source(src: str | LavisSource) -> None:
    """Fail early on a source that cannot load: its files, its kind, its LLM."""
    if not isinstance(src, LavisSource):
        return check_blip2_ref(src)
    for path in (src.checkpoint, src.vit):  # read now: a pickle needing trust fails before OUT exists
        if path is not None:
            read_pth(path, src.trust_pickle)
    check_language_model_ref(src.llm)


def source_language_model(src: str | LavisSource) -> str:
    """Where the source's LLM (its input embeddings, its tokenizer) is read from."""
    return src.llm if isinstance(src, LavisSource) else src


def initialise(
    src: str | LavisSource,
    dst: str,
    converter: WordConverter | None,
    precision: str = "fp32",
    seed: int = 0,
    prompt_scale_records: list[CaptionRecord] | None = None,
) -> tuple[Blip2ForConditionalGeneration, Blip2Processor, GraftReport]:
    """Load source BLIP-2 and destination LLM, graft them with the fused projector (sized to
    the source's soft-prompt scale on `prompt_scale_records` when given)."""
    dtype = DTYPES[precision]
    source, source_processor = load_source(src, dtype)
    lm, tokenizer = load_language_model(dst, dtype)
    model, processor, report = graft(source, source_processor, lm, tokenizer, converter, seed)
    if prompt_scale_records:
        report.prompt_scale = match_prompt_scale(
            model, processor, source, source_processor.tokenizer, prompt_scale_records
        )
    return set_precision(model, precision), processor, report


def check_precision(precision: str) -> None:
    """fp16 autocast needs a GPU; refuse it on a CPU-only machine before anything runs."""
    if precision == "fp16" and not torch.cuda.is_available():
        raise VPGTransError("--precision fp16 needs a CUDA GPU and none is visible; use bf16 or fp32 on a CPU")


def run_transfer(config: TransferConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """`vpgtrans transfer`: the four steps in order; returns OUT/model."""
    started = time.perf_counter()
    training = config.training
    check_precision(training.precision)
    source = config.lavis_source() or config.src
    check_source(source)  # fail on bad references and data before OUT is created
    check_language_model_ref(config.dst)
    if config.chat and not is_causal_lm_ref(config.dst):
        raise VPGTransError(f"--chat: instruction tuning needs a decoder-only LLM; {config.dst} is an encoder-decoder")
    data = load_caption_data(config.data, config.skip_bad_samples)
    chat_data = load_stage_data(INSTRUCT, config.chat, config.skip_bad_samples) if config.chat else None
    world = load_world(config.eval, config.eval_limit) if config.eval else None
    accelerator = make_accelerator(training.precision, training.grad_accum)
    inputs = (config.data, config.src, config.dst, config.eval, config.chat, config.src_llm, config.src_vit)
    with RunFolder(config.out, "transfer", json.loads(json.dumps(asdict(config))), resume, overwrite, inputs) as run:
        converter_path = run.path / "converter.safetensors"
        if converter_path.exists():
            converter = WordConverter.load(converter_path)
        else:
            fit = ConverterFitConfig(method=config.converter, seed=training.seed)
            converter = fit_converter(source_language_model(source), config.dst, data.captions(), fit)
            converter.save(converter_path)
        records = data.records if config.prompt_scale else None
        model, processor, graft_report = initialise(
            source, config.dst, converter, training.precision, training.seed, records
        )
        run.save(
            converter=asdict(converter.report) if converter.report else None,
            graft=asdict(graft_report),
            data=data_record(data),
            chat_data=data_record(chat_data) if chat_data else None,
        )
        for spec in (WARMUP, FINETUNE):
            run_stage(model, processor, data, spec, training, run, accelerator)
        if chat_data:
            check_chat_model(model, processor)
            run_stage(model, processor, chat_data, INSTRUCT, training, run, accelerator)
        model_dir = run.path / "model"
        if accelerator.is_main_process:
            save_model(model, processor, model_dir, chat=chat_data is not None)
        run.save(model=str(model_dir), wall_seconds=time.perf_counter() - started)
        if world and accelerator.is_main_process:
            run.save(evaluation=evaluate_against_source(model, processor, source, world, training.precision))
        run.save(status="done")
    return model_dir


def run_single_stage(spec: StageSpec, config: StageRunConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """One stage of the method on a grafted model folder; returns OUT/model."""
    training = config.training
    check_precision(training.precision)
    data = load_stage_data(spec, config.data, config.skip_bad_samples)
    model, processor = load_blip2(config.model, DTYPES[training.precision])
    if spec is INSTRUCT:
        check_chat_model(model, processor)
    set_precision(model, training.precision)
    accelerator = make_accelerator(training.precision, training.grad_accum)
    config_record = json.loads(json.dumps(asdict(config)))
    with RunFolder(config.out, spec.name, config_record, resume, overwrite, inputs=(config.model, config.data)) as run:
        run.save(**{"chat_data" if spec is INSTRUCT else "data": data_record(data)})
        run_stage(model, processor, data, spec, training, run, accelerator)
        model_dir = run.path / "model"
        if accelerator.is_main_process:
            save_model(model, processor, model_dir, chat=spec is INSTRUCT)
        run.save(status="done", model=str(model_dir))
    return model_dir


def data_record(data) -> dict:
    """What run.json keeps of a stage's data."""
    return {"path": str(data.path), "samples": len(data.records), "skipped": data.skipped}


def evaluate_against_source(model, processor, src: str | LavisSource, world, precision: str) -> dict:
    """The world's caption, CIDEr-D and VQA scores of the transferred model and of the source, side by side."""
    source, source_processor = load_source(src, DTYPES[precision])
    scores = {}
    for name, (m, p) in {"transferred": (model, processor), "source": (source, source_processor)}.items():
        m.eval()
        scores[name] = {k: v for k, v in world_scores(m, p, world).items() if k in WORLD_METRICS}
    scores["caption_ratio"] = scores["transferred"]["caption"] / max(scores["source"]["caption"], 1e-9)
    return scores

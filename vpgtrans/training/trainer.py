"""The stage trainer: one `StageConfig` (what `stages.py` declares) run to its end.

Everything not trainable stays frozen in eval mode; each stage trains with AdamW, as in the
paper, or Muon (optim.py).
Steps are optimizer steps and samples are counted, so a schedule means the same on one
GPU as on eight. Checkpoints hold only the trainable tensors (never a 7B LLM copy) and
are written atomically; a resumed run replays the same data order and RNG and reaches
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..errors import VPGTransError
from ..io.atomic import atomic_dir
from .optim import make_optimizer

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # our precision names -> accelerate's


@dataclass
class StageConfig:
    """One training stage: what trains, for how long, how fast."""

    name: str
    trainable: tuple[str, ...]
    steps: int
    lr: float
    schedule: str = "constant"  # "constant" or "cosine" (to lr * min_lr_ratio)
    min_lr_ratio: float = 0.5
    warmup_steps: int = 0  # linear LR ramp before the schedule
    weight_decay: float = 0.05
    optimizer: str = "adamw"  # "adamw" or "muon" (optim.py)
    batch_size: int = 64
    grad_accum: int = 1
    seed: int = 0
    checkpoint_every: int = 200
    dropout_in: tuple[str, ...] = ()  # trainable modules run in train mode (dropout on)
    num_workers: int = 0


@dataclass
class StageResult:
    """What a stage did, for run.json and the cost report."""

    name: str
    steps: int
    samples: int
    text_tokens: int
    lm_tokens: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    resumed_from_step: int = 0
    peak_memory_bytes: int = 0
    device: str = "cpu"


def make_accelerator(precision: str = "fp32", grad_accum: int = 1) -> Accelerator:
    """The accelerate front end: device placement, mixed precision, accumulation, multi-GPU."""
    if precision not in MIXED_PRECISION:
        raise VPGTransError(f"--precision {precision!r} is not one of {', '.join(MIXED_PRECISION)}")
    return Accelerator(mixed_precision=MIXED_PRECISION[precision], gradient_accumulation_steps=grad_accum)


def select_trainable(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Freeze everything, then unfreeze parameters under `prefixes`; returns their names."""
    model.requires_grad_(False)
    names = []
    for name, param in model.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(True)
            names.append(name)
    if not names:
        raise VPGTransError(f"no parameter matches the trainable prefixes {prefixes}")
    return names


def set_train_modes(model: torch.nn.Module, dropout_in: tuple[str, ...]) -> None:
    """Everything in eval mode (frozen ViT and LLM: no dropout) except the modules named."""
    model.eval()
    for name, module in model.named_modules():
        if name in dropout_in:
            module.train()


def lr_factor(config: StageConfig) -> Callable[[int], float]:
    """A linear ramp over `warmup_steps`, then constant (warm-up stage) or cosine from 1 down to
    `min_lr_ratio` over the remaining steps (fine-tuning, instruction tuning)."""
    if config.schedule not in ("constant", "cosine"):
        raise VPGTransError(f"schedule {config.schedule!r} is not one of constant, cosine")
    ramp = min(config.warmup_steps, config.steps - 1)
    floor, span = config.min_lr_ratio, max(config.steps - ramp, 1)

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / (ramp + 1)
        if config.schedule == "constant":
            return 1.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step - ramp, span) / span))

    return factor


class EpochSampler(torch.utils.data.Sampler[int]):
    """A fresh permutation each epoch, seeded by (seed, epoch): any step can be replayed. It yields
    epoch x size + index, so the dataset can draw each epoch's augmentation afresh."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        offset = self.epoch * self.size
        return iter((offset + torch.randperm(self.size, generator=generator)).tolist())


class JsonlLog:
    """Append-only metrics log; a resumed stage drops the lines past its checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, stage: str, step: int) -> None:
        if not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if not ((entry := json.loads(line))["stage"] == stage and entry["step"] > step)
        ]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, entry: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def _latest_checkpoint(folder: Path) -> Path | None:
    steps = sorted(folder.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if folder.exists() else []
    return steps[-1] if steps else None


class Diverged(VPGTransError):
    """Training produced a non-finite loss or weights: the run stops, its last good checkpoint kept."""

    def __init__(self, stage: str, step: int, what: str):
        super().__init__(
            f"stage {stage}, optimizer step {step}: {what}; training diverged (learning rate too high, or an fp16 "
            "overflow: try a lower --lr or --precision bf16). No model was written; the last good checkpoint is "
            "kept, so a run with other settings can start afresh with --overwrite"
        )


def check_finite(model: torch.nn.Module, names: list[str], stage: str, step: int) -> None:
    """Every trainable tensor finite, or `Diverged` naming the first that is not."""
    params = dict(model.named_parameters())
    bad = next((n for n in names if not torch.isfinite(params[n]).all()), None)
    if bad is not None:
        raise Diverged(stage, step, f"parameter {bad} holds NaN or Inf")


def _save_checkpoint(
    folder: Path,
    model,
    names: list[str],
    optimizer,
    scheduler,
    result: StageResult,
    epoch_micro: tuple[int, int],
    optimizer_name: str,
) -> None:
    params = dict(model.named_parameters())
    with atomic_dir(folder / f"step-{result.steps:08d}") as tmp:
        save_file({n: params[n].detach().float().cpu().contiguous() for n in names}, str(tmp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer_name": optimizer_name,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            tmp / "state.pt",
        )
        (tmp / "progress.json").write_text(json.dumps({"result": asdict(result), "epoch_micro": epoch_micro}))
    for old in folder.glob("step-*"):
        if old.name != f"step-{result.steps:08d}":
            shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(
    path: Path, model, names: list[str], optimizer, scheduler, optimizer_name: str
) -> tuple[StageResult, tuple[int, int]]:
    tensors = load_file(str(path / "trainable.safetensors"))
    if set(tensors) != set(names):
        raise VPGTransError(f"{path}: checkpoint holds other parameters than this stage trains")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].copy_(tensors[n])
    state = torch.load(path / "state.pt", weights_only=False)
    saved = state["optimizer_name"]
    if saved != optimizer_name:
        raise VPGTransError(
            f"{path}: checkpoint was trained with optimizer {saved!r}, this stage uses {optimizer_name!r}"
        )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    progress = json.loads((path / "progress.json").read_text())
    return StageResult(**progress["result"]), tuple(progress["epoch_micro"])


def train_stage(
    accelerator: Accelerator,
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    collate: Callable,
    config: StageConfig,
    checkpoint_dir: Path,
    log: JsonlLog | None = None,
    on_step: Callable[[StageResult], None] | None = None,
) -> StageResult:
    """Run (or resume, or skip if finished) one stage; the model is updated in place.

    `on_step` (main process) sees the result after every optimizer step, e.g. to evaluate;
    time it spends is not counted as training time.
    """
    if len(dataset) < config.batch_size * accelerator.num_processes:
        raise VPGTransError(f"DATA has {len(dataset)} samples, fewer than one batch of {config.batch_size}")
    set_seed(config.seed)  # dropout masks depend on the stage's seed, not on what ran before it
    names = select_trainable(model, config.trainable)
    set_train_modes(model, config.dropout_in)
    if config.optimizer == "muon" and accelerator.distributed_type == DistributedType.FSDP:
        raise VPGTransError("optimizer 'muon' needs whole weight matrices; FSDP shards them (use DDP or AdamW)")
    optimizer = make_optimizer(config.optimizer, model, config.lr, config.weight_decay)
    # Not prepared by accelerate on purpose: a prepared scheduler steps once per process.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))
    sampler = EpochSampler(len(dataset), config.seed)
    # The loader's own generator keeps iterator start-up off the global RNG that dropout uses,
    # so a resumed run draws exactly the same dropout masks.
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate,
        drop_last=True,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    prepared_model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    result = StageResult(config.name, 0, 0, 0, 0, 0.0, device=str(accelerator.device))
    epoch, micro = 0, 0
    latest = _latest_checkpoint(checkpoint_dir)
    if latest is not None:
        result, (epoch, micro) = _load_checkpoint(
            latest, accelerator.unwrap_model(prepared_model), names, optimizer, scheduler, config.optimizer
        )
        result.resumed_from_step = result.steps
    if log:  # steps logged past the checkpoint (or before the first one) are replayed
        log.truncate_after(config.name, result.steps)
    if result.steps >= config.steps:
        return result

    bar = tqdm(total=config.steps, initial=result.steps, desc=config.name, disable=not accelerator.is_main_process)
    started, step_losses = time.perf_counter() - result.seconds, []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        while result.steps < config.steps:
            loader.set_epoch(epoch)
            batches = accelerator.skip_first_batches(loader, micro) if micro else loader
            for batch in batches:
                micro += 1
                with accelerator.accumulate(prepared_model):
                    loss = prepared_model(**batch).loss
                    reduced = accelerator.reduce(loss.detach(), "mean")  # the same value on every process
                    if not torch.isfinite(reduced):  # checked before the update: the weights stay good
                        raise Diverged(config.name, result.steps + 1, f"the loss is {reduced.item()}")
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()
                step_losses.append(reduced.item())
                result.text_tokens += int(accelerator.reduce((batch["labels"] != -100).sum(), "sum").item())
                result.lm_tokens += int(accelerator.reduce(batch["attention_mask"].sum(), "sum").item())
                result.samples += config.batch_size * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                result.steps += 1
                result.losses.append(sum(step_losses) / len(step_losses))
                step_losses = []
                result.seconds = time.perf_counter() - started
                bar.update(1)
                bar.set_postfix(
                    loss=f"{result.losses[-1]:.4f}", samples_per_s=f"{result.samples / max(result.seconds, 1e-9):.1f}"
                )
                if log and accelerator.is_main_process:
                    log.write(
                        {
                            "stage": config.name,
                            "step": result.steps,
                            "loss": result.losses[-1],
                            "lr": scheduler.get_last_lr()[0],
                            "samples": result.samples,
                            "seconds": round(result.seconds, 3),
                        }
                    )
                done = result.steps >= config.steps
                if done or result.steps % config.checkpoint_every == 0:
                    check_finite(accelerator.unwrap_model(prepared_model), names, config.name, result.steps)
                    if torch.cuda.is_available():
                        result.peak_memory_bytes = max(result.peak_memory_bytes, torch.cuda.max_memory_allocated())
                    if accelerator.is_main_process:
                        _save_checkpoint(
                            checkpoint_dir,
                            accelerator.unwrap_model(prepared_model),
                            names,
                            optimizer,
                            scheduler,
                            result,
                            (epoch, micro),
                            config.optimizer,
                        )
                    accelerator.wait_for_everyone()
                if on_step is not None and accelerator.is_main_process:
                    paused = time.perf_counter()
                    on_step(result)
                    set_train_modes(model, config.dropout_in)
                    started += time.perf_counter() - paused
                if done:
                    break
            else:
                epoch, micro = epoch + 1, 0
    finally:
        bar.close()  # also on an error, so the error stays the last line printed
    return result

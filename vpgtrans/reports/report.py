"""`vpgtrans report`: what runs cost, measured and projected onto a GPU price, as Markdown
plus a self-contained HTML page (plots embedded as data URIs, so it can be mailed as is).

A transfer run folder (run.json) gives its stages' measured cost and loss curve; a compare
folder (results.json) gives TFS against VPGTrans: learning curves, the paper's speed-up,
and the cost of TFS to reach its best score against that of VPGTrans to reach it. FLOPs are
the analytic counts recorded during training (costs.stage_flops); GPU-hours are those FLOPs
at the GPU's peak x MFU, so a CPU run is priced as the same work on the chosen GPU. Wall
time is what was measured, on the device named beside it. Nothing is extrapolated.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..config import option, validate
from ..costs import DEFAULT_MFU, GPUS, gpu_hours
from ..efficiency.speedup import CurvePoint, late_peak_note, results_curves, speedup_points, sweep_edge_note
from ..efficiency.tables import format_speedup, metric_label
from ..errors import VPGTransError
from ..io.atomic import write_text_atomic


@dataclass(frozen=True)
class Pricing:
    """The GPU, utilisation and price that FLOPs are projected onto."""

    gpu: str = option("a100-40g", "GPU the FLOPs are priced on", choices=tuple(GPUS))
    mfu: float = option(DEFAULT_MFU, "model-FLOPs utilisation", minimum=1e-6)
    price_per_hour: float | None = option(None, "dollars per GPU-hour (default: the price table's)", minimum=0)

    def __post_init__(self):
        validate(self, "pricing")
        if self.mfu > 1:
            raise VPGTransError(f"pricing: mfu must be at most 1, not {self.mfu}")

    def project(self, flops: float | None) -> tuple[float, float] | None:
        return None if not flops else gpu_hours(flops, self.gpu, self.mfu, self.price_per_hour)

    def describe(self) -> str:
        price = GPUS[self.gpu].price_per_hour if self.price_per_hour is None else self.price_per_hour
        return (
            f"GPU-hours: analytic FLOPs at the peak of one {GPUS[self.gpu].name} "
            f"({GPUS[self.gpu].peak_tflops:g} TFLOP/s) x MFU {self.mfu:g}; money at ${price:.2f} per GPU-hour."
        )


@dataclass
class Figure:
    name: str
    png: bytes


Block = str | tuple[list[str], list[list[str]]] | Figure  # a paragraph (Markdown), a table, a plot


def _num(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:.3g}{unit}"


def _gib(size: int) -> str:
    """Peak GPU memory; a dash for CPU runs, which do not measure it."""
    return _num(size / 2**30 if size else None, " GiB")


def _cost_cells(flops: float | None, pricing: Pricing) -> list[str]:
    """FLOPs, projected GPU-hours, projected money; dashes where FLOPs were not recorded."""
    projected = pricing.project(flops)
    if projected is None:
        return ["—", "—", "—"]
    return [_num(flops), _num(projected[0]), f"${projected[1]:.3g}"]


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cost_header(pricing: Pricing) -> list[str]:
    return ["FLOPs", f"{pricing.gpu} hours (projected)", "money (projected)"]


# --------------------------------------------------------------------------- a transfer run


def run_section(folder: Path, prefix: str, pricing: Pricing) -> list[Block]:
    """A run.json folder: per-stage measured cost, loss curve, FLOPs per part."""
    record = json.loads((folder / "run.json").read_text())
    config = record.get("config", {})
    what = f"{config['src']} → {config['dst']}" if "src" in config else config.get("model", "")
    blocks: list[Block] = [f"## Transfer run `{folder}`", f"{what}; status: {record.get('status', '?')}."]
    rows, totals = [], {"samples": 0, "seconds": 0.0, "flops": 0.0}
    for name, stage in record.get("stages", {}).items():
        result, cost = stage["result"], stage.get("cost", {})
        flops = cost.get("flops", {}).get("total")
        rows.append(
            [
                name,
                str(result["steps"]),
                str(result["samples"]),
                str(result["lm_tokens"]),
                f"{result['seconds']:.1f} s",
                cost.get("device_name", result.get("device", "")),
                _gib(result.get("peak_memory_bytes", 0)),
                *_cost_cells(flops, pricing),
            ]
        )
        totals = {
            "samples": totals["samples"] + result["samples"],
            "seconds": totals["seconds"] + result["seconds"],
            "flops": totals["flops"] + (flops or 0.0),
        }
    rows.append(
        [
            "total",
            "",
            str(totals["samples"]),
            "",
            f"{totals['seconds']:.1f} s",
            "",
            "",
            *_cost_cells(totals["flops"], pricing),
        ]
    )
    blocks.append(
        (
            [
                "stage",
                "optimizer steps",
                "samples",
                "LLM tokens",
                "wall time (measured)",
                "device",
                "peak GPU memory",
                *_cost_header(pricing),
            ],
            rows,
        )
    )
    if record.get("evaluation"):
        evaluation = record["evaluation"]
        blocks.append(
            (
                ["model", *evaluation["source"]],
                [[who, *(f"{v:.3f}" for v in evaluation[who].values())] for who in ("transferred", "source")],
            )
        )
    blocks += [Figure(f"{prefix}loss.png", _loss_plot(record)), Figure(f"{prefix}flops.png", _flops_plot(record))]
    return blocks


def _loss_plot(record: dict) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    start = 0
    for name, stage in record.get("stages", {}).items():
        losses = stage["result"]["losses"]
        ax.plot(range(start + 1, start + len(losses) + 1), losses, label=name)
        start += len(losses)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _flops_plot(record: dict) -> bytes:
    """Stacked bars: each stage's FLOPs per part (ViT, Q-Former, projector, LLM)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    stages = {n: s.get("cost", {}).get("flops", {}) for n, s in record.get("stages", {}).items()}
    bottom = [0.0] * len(stages)
    for part in ("vit", "qformer", "projector", "llm"):
        values = [f.get(part, 0.0) for f in stages.values()]
        ax.bar(list(stages), values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("training FLOPs (analytic)")
    ax.legend()
    return _png(fig)


# --------------------------------------------------------------------------- a comparison


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def compare_section(folder: Path, prefix: str, pricing: Pricing) -> list[Block]:
    """A results.json folder: speed-up, cost to reach TFS's best, whole budgets, curves, bars."""
    results = json.loads((folder / "results.json").read_text())
    config = results.get("config", {})
    curves = results_curves(results)
    blocks: list[Block] = [
        f"## Comparison `{folder}`",
        f"{config.get('src', '')} → {config.get('dst', '')}, "
        f"{len(curves['tfs'])} seed(s). Speed-up as the paper defines it (e_TFS / e_VT):",
    ]
    blocks.append(
        (
            ["metric", "speed-up (epochs)", "speed-up (samples)", "speed-up (seconds)"],
            [
                [metric_label(m), *(format_speedup(u[k]) for k in ("epoch", "samples", "seconds"))]
                for m, u in results["speedup"].items()
            ],
        )
    )
    rows, reach = [], {}
    for metric in results["speedup"]:
        pairs = [speedup_points(curves["tfs"][s], curves["vpgtrans"][s], metric) for s in curves["tfs"]]
        for arm, points in (
            ("TFS (at its best)", [b for b, _ in pairs]),
            ("VPGTrans (beating it)", [r for _, r in pairs if r is not None]),
        ):
            flops = _mean([p.flops for p in points]) if points and all(p.flops for p in points) else None
            reach[(metric, arm)] = (flops, _mean([p.samples for p in points]))
            rows.append(
                [
                    metric_label(metric),
                    arm,
                    f"{len(points)}/{len(pairs)}",
                    _num(_mean([b.scores[metric] for b, _ in pairs])),
                    _num(_mean([p.epoch for p in points])),
                    _num(_mean([p.samples for p in points])),
                    *_cost_cells(flops, pricing),
                    _num(_mean([p.seconds for p in points]), " s"),
                ]
            )
    blocks += [
        "TFS against VPGTrans, mean over the seeds where the point exists:",
        (
            [
                "metric",
                "arm",
                "seeds",
                "target score",
                "epochs",
                "samples",
                *_cost_header(pricing),
                "wall time (measured)",
            ],
            rows,
        ),
    ]
    notes = [late_peak_note(list(curves["tfs"].values()), metric) for metric in results["speedup"]]
    notes.append(sweep_edge_note(results.get("tfs_lr_sweep", {})))
    blocks += [f"Note: {note}." for note in notes if note]
    budget = []
    for arm, per_seed in curves.items():
        last = [c[-1] for c in per_seed.values()]
        flops = _mean([p.flops for p in last]) if all(p.flops for p in last) else None
        budget.append(
            [
                arm,
                _num(_mean([p.samples for p in last])),
                *_cost_cells(flops, pricing),
                _num(_mean([p.seconds for p in last]), " s"),
                last[0].device or "—",
                _gib(max(p.peak_memory_bytes for p in last)),
            ]
        )
    blocks += [
        "Whole training budget per arm:",
        (["arm", "samples", *_cost_header(pricing), "wall time (measured)", "device", "peak GPU memory"], budget),
        Figure(f"{prefix}curves.png", _curves_plot(curves, list(results["speedup"]))),
        Figure(f"{prefix}cost.png", _reach_plot(reach, pricing)),
    ]
    return blocks


def _curves_plot(curves: dict[str, dict[str, list[CurvePoint]]], metrics: list[str]) -> bytes:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for arm, per_seed in curves.items():
            columns = list(zip(*([(p.samples, p.scores[metric]) for p in c] for c in per_seed.values())))
            ax.plot(
                [statistics.fmean(x for x, _ in col) for col in columns],
                [statistics.fmean(y for _, y in col) for col in columns],
                marker="o",
                label=arm,
            )
        ax.set_xlabel("training samples seen")
        ax.set_ylabel(metric_label(metric))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _reach_plot(reach: dict[tuple[str, str], tuple[float | None, float | None]], pricing: Pricing) -> bytes:
    """Bars: projected GPU-hours (samples where FLOPs were not recorded) to reach TFS's best."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    use_hours = all(flops for flops, _ in reach.values())
    labels = [f"{metric_label(m)}\n{arm.split(' ')[0]}" for m, arm in reach]
    values = [(pricing.project(f)[0] if use_hours else s) or 0.0 for f, s in reach.values()]
    ax.bar(labels, values, color=["tab:blue" if "TFS" in arm else "tab:orange" for _, arm in reach])
    ax.set_ylabel(f"{pricing.gpu} hours (projected)" if use_hours else "samples")
    ax.set_title("cost to reach TFS's best score", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    return _png(fig)


# --------------------------------------------------------------------------- rendering


def _markdown(blocks: list[Block]) -> str:
    lines = []
    for block in blocks:
        if isinstance(block, Figure):
            lines.append(f"![{block.name}]({block.name})")
        elif isinstance(block, tuple):
            header, rows = block
            lines += [
                "| " + " | ".join(header) + " |",
                "|" + "---|" * len(header),
                *("| " + " | ".join(r) + " |" for r in rows),
            ]
        else:
            lines.append(block)
        lines.append("")
    return "\n".join(lines)


def _html(blocks: list[Block]) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Figure):
            data = base64.b64encode(block.png).decode()
            body.append(f'<img alt="{block.name}" src="data:image/png;base64,{data}">')
        elif isinstance(block, tuple):
            header, rows = block
            cells = lambda tag, row: "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row)  # noqa: E731
            body.append(
                "<table><tr>"
                + cells("th", header)
                + "</tr>"
                + "".join("<tr>" + cells("td", r) + "</tr>" for r in rows)
                + "</table>"
            )
        elif block.startswith("#"):
            level = len(block) - len(block.lstrip("#"))
            body.append(f"<h{level}>{html.escape(block.lstrip('# ')).replace('`', '')}</h{level}>")
        else:
            body.append(f"<p>{html.escape(block)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:72em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>vpgtrans cost report</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(folders: list[str | Path], out: str | Path, pricing: Pricing = Pricing()) -> Path:
    """OUT/report.md (+ its PNGs) and the self-contained OUT/report.html; returns the HTML path."""
    blocks: list[Block] = ["# vpgtrans cost report", pricing.describe()]
    for i, folder in enumerate(map(Path, folders)):
        if (folder / "results.json").is_file():
            blocks += compare_section(folder, f"{i}-", pricing)
        elif (folder / "run.json").is_file():
            blocks += run_section(folder, f"{i}-", pricing)
        else:
            raise VPGTransError(f"{folder}: neither a transfer run (run.json) nor a compare folder (results.json)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for figure in (b for b in blocks if isinstance(b, Figure)):
        (out / figure.name).write_bytes(figure.png)
    write_text_atomic(out / "report.md", _markdown(blocks))
    write_text_atomic(out / "report.html", _html(blocks))
    return out / "report.html"

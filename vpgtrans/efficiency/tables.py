"""Human-readable outputs of `vpgtrans compare`: a Markdown table and learning-curve plots."""

from __future__ import annotations

import statistics
from pathlib import Path

from ..evaluation.tasks import CAPTION_TASKS, TASKS
from .speedup import late_peak_note, results_curves, speedup_points, sweep_edge_note

METRIC_NAMES = {"caption": "caption attribute accuracy (%)", "cider": "caption CIDEr-D x100", "vqa": "VQA accuracy (%)"}


def metric_label(metric: str) -> str:
    """What a metric of a compare measures: the world folder's, or a benchmark's headline score."""
    if metric in TASKS:
        return f"{metric} {'CIDEr-D x100' if metric in CAPTION_TASKS else 'accuracy (%)'}"
    return METRIC_NAMES.get(metric, metric)


def format_speedup(summary: dict) -> str:
    if summary["mean"] is None:
        return "never reached"
    text = f"{summary['mean']:.1f}x ± {summary['std']:.1f}"
    return text + (f" ({summary['never_reached']} seed(s) never reached)" if summary["never_reached"] else "")


def write_table(results: dict, path: Path) -> None:
    """Speed-ups per metric and unit, then best and final scores per arm (mean over seeds)."""
    lines = ["| metric | speed-up (epochs) | speed-up (samples) | speed-up (seconds) |", "|---|---|---|---|"]
    for metric, units in results["speedup"].items():
        lines.append(
            f"| {metric_label(metric)} | "
            + " | ".join(format_speedup(units[unit]) for unit in ("epoch", "samples", "seconds"))
            + " |"
        )
    others = {arm: per_metric for arm, per_metric in results.get("speedup_by_arm", {}).items() if arm != "vpgtrans"}
    if others:
        lines += [
            "",
            "| arm against TFS | "
            + " | ".join(f"speed-up on {metric_label(m)} (epochs)" for m in results["speedup"])
            + " |",
            "|---|" + "---|" * len(results["speedup"]),
        ]
        lines += [
            f"| {arm} | " + " | ".join(format_speedup(per_metric[m]) for m in results["speedup"]) + " |"
            for arm, per_metric in others.items()
        ]
    lines += ["", *_speedup_points_lines(results)]
    lines += ["", "| arm | metric | after epoch 1 | best | final |", "|---|---|---|---|---|"]
    for arm, per_seed in results["curves"].items():
        for metric in results["speedup"]:
            first = statistics.fmean(next(p["scores"][metric] for p in c if p["epoch"] == 1) for c in per_seed.values())
            best = statistics.fmean(max(p["scores"][metric] for p in c) for c in per_seed.values())
            final = statistics.fmean(c[-1]["scores"][metric] for c in per_seed.values())
            lines.append(f"| {arm} | {metric} | {first:.3f} | {best:.3f} | {final:.3f} |")
    if results.get("tfs_lr_sweep"):
        lines += [
            "",
            f"TFS learning-rate sweep (seed 0, mean best score): {results['tfs_lr_sweep']}; "
            f"chosen {results['tfs_lr']:g}",
        ]
        note = sweep_edge_note(results["tfs_lr_sweep"])
        lines += [f"- {note}"] if note else []
    lines += [""] if results.get("orderings") else []
    for text, check in results.get("orderings", {}).items():
        verdicts = [
            f"{metric_label(m)} {check[m]['means'][0]:.3f} vs {check[m]['means'][1]:.3f}: "
            f"{'yes' if check[m]['holds'] else 'no'} ({check[m]['seeds_holding']} of {check['seeds']} seeds)"
            for m in results["speedup"]
        ]
        lines.append(f"- {text} ({' vs '.join(check['arms'])}, epoch {check['epoch']}): " + "; ".join(verdicts))
    path.write_text("\n".join(lines) + "\n")


def _speedup_points_lines(results: dict) -> list[str]:
    """Per metric, where each seed's e_TFS and e_VT fell, and a warning when TFS peaked late."""
    curves = results_curves(results)
    lines = []
    for metric in results["speedup"]:
        pairs = [speedup_points(curves["tfs"][s], curves["vpgtrans"][s], metric) for s in curves["tfs"]]
        seeds = ", ".join(
            f"{best.epoch:.3g} / {'never' if reached is None else f'{reached.epoch:.3g}'}" for best, reached in pairs
        )
        lines.append(f"- {metric_label(metric)}: e_TFS / e_VT per seed (epochs): {seeds}")
        note = late_peak_note(list(curves["tfs"].values()), metric)
        lines += [f"  - {note}"] if note else []
    return lines


def write_plots(results: dict, folder: Path) -> None:
    """One PNG per metric: mean over seeds per arm against epochs, min-max band shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for metric in results["speedup"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm, per_seed in results["curves"].items():
            epochs = [p["epoch"] for p in next(iter(per_seed.values()))]
            values = [[p["scores"][metric] for p in c] for c in per_seed.values()]
            columns = list(zip(*values))
            ax.plot(epochs, [statistics.fmean(c) for c in columns], marker="o", label=arm)
            ax.fill_between(epochs, [min(c) for c in columns], [max(c) for c in columns], alpha=0.15)
        ax.set_xlabel("epoch (warm-up epochs count)")
        ax.set_ylabel(metric_label(metric))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / f"curve-{metric}.png", dpi=120)
        plt.close(fig)

"""The paper's speed-up and orderings, computed from learning curves: pure maths, no training.

The speed-up is `e_TFS / e_VT`: e_TFS is the point where training from scratch (TFS) reaches
its best score, e_VT the first point where VPGTrans beats that score (a tie does not), both
counted in epochs of DATA (fractional between epoch ends); the same ratio is also given in
samples seen and in measured training seconds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class CurvePoint:
    """Scores after `epoch` (of DATA; fractional between epoch ends), and the cumulative cost
    of reaching them (for the cost report)."""

    epoch: float
    step: int
    samples: int
    seconds: float
    scores: dict[str, float]
    lm_tokens: int = 0
    flops: float = 0.0  # analytic training FLOPs (costs.stage_flops); 0: not recorded
    peak_memory_bytes: int = 0
    device: str = ""


def results_curves(results: dict) -> dict[str, dict[str, list[CurvePoint]]]:
    """The curves of a results.json (as written by `run_compare`), per arm and seed."""
    return {
        arm: {seed: [CurvePoint(**p) for p in c] for seed, c in per_seed.items()}
        for arm, per_seed in results["curves"].items()
    }


def tfs_best(tfs: list[CurvePoint], metric: str) -> CurvePoint:
    """e_TFS: the first point (after the start) where TFS reaches its best score."""
    return max(tfs[1:], key=lambda p: p.scores[metric])


def speedup_points(
    tfs: list[CurvePoint], transfer: list[CurvePoint], metric: str
) -> tuple[CurvePoint, CurvePoint | None]:
    """(e_TFS: the first point where TFS reaches its best, e_VT: the first transfer point
    beating that score, or None; a tie is not a win, as the paper says "beats")."""
    best = tfs_best(tfs, metric)
    return best, next((p for p in transfer[1:] if p.scores[metric] > best.scores[metric]), None)


LATE_PEAK_SHARE = 0.2  # of the budget: a TFS best this close to the end may not be TFS converged


def late_peak_note(tfs_curves: list[list[CurvePoint]], metric: str) -> str | None:
    """A warning when TFS peaks in the last fifth of its budget: it may not have converged, and
    e_TFS, so the speed-up, then moves with the budget (docs/results.md#speed-up-depends-on-the-tfs-budget)."""
    budget = tfs_curves[0][-1].epoch
    late = sum(budget - tfs_best(c, metric).epoch <= LATE_PEAK_SHARE * budget for c in tfs_curves)
    if not late:
        return None
    return (
        f"TFS reached its best {metric} score in the last {LATE_PEAK_SHARE:.0%} of its {budget:g}-epoch budget "
        f"on {late} of "
        f"{len(tfs_curves)} seed(s): it may still be improving, and a longer budget can change the speed-up"
    )


def sweep_edge_note(sweep: dict[str, float]) -> str | None:
    """A warning when the sweep's winner (the learning rate `run_compare` keeps) is its largest or
    smallest: the best TFS may lie beyond the grid, and a weaker baseline inflates the speed-up."""
    if len(sweep) < 2:
        return None
    lrs = sorted(sweep, key=float)
    chosen = max(sweep, key=sweep.get)
    if chosen not in (lrs[0], lrs[-1]):
        return None
    side, beyond = ("largest", "above") if chosen == lrs[-1] else ("smallest", "below")
    return (
        f"TFS's chosen learning rate {chosen} is the {side} of its sweep ({', '.join(lrs)}): "
        f"a learning rate {beyond} it may give a stronger baseline and a smaller speed-up; extend --tfs-lrs"
    )


def speedup(tfs: list[CurvePoint], transfer: list[CurvePoint], metric: str, unit: str = "epoch") -> float | None:
    """The paper's speed-up: where TFS peaks over where the transfer first beats that peak.

    None when the transfer never beats the TFS best (the paper's "-")."""
    best, reached = speedup_points(tfs, transfer, metric)
    if reached is None:
        return None
    value = {"epoch": lambda p: p.epoch, "samples": lambda p: p.samples, "seconds": lambda p: p.seconds}[unit]
    return value(best) / max(value(reached), 1e-9)


def summarise(values: list[float | None]) -> dict:
    """Mean and spread over seeds; a seed that never reached counts as missing, and is reported."""
    present = [v for v in values if v is not None]
    return {
        "mean": statistics.fmean(present) if present else None,
        "std": statistics.pstdev(present) if len(present) > 1 else 0.0 if present else None,
        "per_seed": values,
        "never_reached": sum(v is None for v in values),
    }


ORDERINGS = {  # the paper's qualitative findings: (arm expected higher, arm expected lower, read after the warm-up?)
    "fused init beats random init after warm-up": ("vpgtrans", "random-warmup", True),
    "5x warm-up beats 1x": ("vpgtrans", "warmup-1x", True),
    "TFS starts better than inheriting without warm-up": ("tfs", "inherit-no-warmup", False),  # after epoch 1
}


def _score_at(curve: list[CurvePoint], epoch: int, metric: str) -> float:
    return next(p.scores[metric] for p in curve if p.epoch == epoch)


def orderings(
    curves: dict[str, dict[int, list[CurvePoint]]], warmup_end: int, metrics: tuple[str, ...]
) -> dict[str, dict]:
    """The paper's orderings, checked where both arms were run: per metric, the two arms' mean
    scores, whether the mean holds the ordering and on how many seeds it holds (the paper
    reads them off captioning, and a metric near chance level can flip them by noise)."""
    checks = {}
    for text, (high, low, after_warmup) in ORDERINGS.items():
        if high not in curves or low not in curves:
            continue
        epoch = warmup_end if after_warmup else 1
        seeds = sorted(set(curves[high]) & set(curves[low]))
        if not all(any(p.epoch == epoch for p in curves[arm][s]) for arm in (high, low) for s in seeds):
            continue  # the budget ended before the epoch it is read at
        checks[text] = {"arms": [high, low], "epoch": epoch, "seeds": len(seeds)}
        for metric in metrics:
            a = [_score_at(curves[high][s], epoch, metric) for s in seeds]
            b = [_score_at(curves[low][s], epoch, metric) for s in seeds]
            means = [statistics.fmean(a), statistics.fmean(b)]
            checks[text][metric] = {
                "means": means,
                "holds": means[0] > means[1],
                "seeds_holding": sum(x > y for x, y in zip(a, b)),
            }
    return checks

"""The paper's speed-up, its notes and orderings, on hand-made curves (pure maths, no model)."""

from __future__ import annotations

import pytest

from vpgtrans.efficiency.speedup import CurvePoint, late_peak_note, orderings, speedup, summarise, sweep_edge_note
from vpgtrans.efficiency.tables import write_table

METRICS = ("caption", "cider", "vqa")


def _curve(scores: list[float], samples_per_epoch: int = 100, seconds_per_epoch: float = 2.0) -> list[CurvePoint]:
    return [
        CurvePoint(e, e * 10, e * samples_per_epoch, e * seconds_per_epoch, {"caption": s})
        for e, s in enumerate(scores)
    ]


def test_speedup_as_the_paper_defines_it():
    tfs = _curve([0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.7, 0.8, 0.8, 0.75])  # best 0.8 first at epoch 7
    transfer = _curve([0.0, 0.5, 0.81, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])  # reaches 0.8 at epoch 2
    assert speedup(tfs, transfer, "caption") == pytest.approx(3.5)
    assert speedup(tfs, transfer, "caption", "samples") == pytest.approx(3.5)
    slow = _curve([0.0, 0.5, 0.81, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9], seconds_per_epoch=7.0)
    assert speedup(tfs, slow, "caption", "seconds") == pytest.approx(1.0)


def test_speedup_never_reached_and_ties():
    tfs = _curve([0.0, 0.2, 0.9, 0.9])
    assert speedup(tfs, _curve([0.0, 0.5, 0.8, 0.85]), "caption") is None
    assert speedup(tfs, _curve([0.0, 0.9, 0.5, 0.5]), "caption") is None  # a tie does not beat TFS's best
    assert speedup(tfs, _curve([0.0, 0.9, 0.91, 0.5]), "caption") == pytest.approx(1.0)
    summary = summarise([2.0, None, 4.0])
    assert (
        summary["mean"] == pytest.approx(3.0)
        and summary["never_reached"] == 1
        and summary["per_seed"] == [2.0, None, 4.0]
    )
    assert summarise([None])["mean"] is None


def test_sweep_winner_at_the_grid_edge_is_flagged():
    assert sweep_edge_note({"0.0005": 0.4, "0.001": 0.5, "0.003": 0.45}) is None
    assert sweep_edge_note({"0.001": 0.5}) is None  # a single learning rate is no sweep
    assert sweep_edge_note({}) is None
    high = sweep_edge_note({"0.0005": 0.4, "0.001": 0.45, "0.003": 0.47})
    assert high.startswith("TFS's chosen learning rate 0.003 is the largest of its sweep (0.0005, 0.001, 0.003)")
    assert "above it" in high
    low = sweep_edge_note({"0.003": 0.3, "0.0005": 0.5, "0.001": 0.45})
    assert "0.0005 is the smallest" in low and "below it" in low


def test_late_tfs_peak_is_flagged_and_each_seed_shown(tmp_path):
    early = _curve([0.0, 0.5, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7])  # best at epoch 2 of 10
    late = _curve([0.0, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.75, 0.7, 0.7])  # best at epoch 8: the last fifth
    assert late_peak_note([early, early], "caption") is None
    note = late_peak_note([early, late], "caption")
    assert note.startswith(
        "TFS reached its best caption score in the last 20% of its 10-epoch budget on 1 of 2 seed(s)"
    )
    transfer = _curve([0.0, 0.6, 0.76, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    tying = _curve([0.0, 0.6, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8])  # never beats seed 0's 0.8
    results = {
        "speedup": {"caption": {u: summarise([None, 4.0]) for u in ("epoch", "samples", "seconds")}},
        "curves": {
            arm: {str(s): [vars(p) for p in c] for s, c in enumerate(curves)}
            for arm, curves in (("tfs", [early, late]), ("vpgtrans", [tying, transfer]))
        },
    }
    write_table(results, tmp_path / "results.md")
    table = (tmp_path / "results.md").read_text()
    assert "- caption attribute accuracy (%): e_TFS / e_VT per seed (epochs): 2 / never, 8 / 2\n" in table
    assert "  - TFS reached its best caption score in the last 20%" in table


def test_orderings_per_metric_and_seed():
    def arm(*per_seed):  # per seed: (caption, vqa) after epoch 1
        return {
            s: [
                CurvePoint(0, 0, 0, 0.0, {"caption": 0.0, "cider": 0.0, "vqa": 0.0}),
                CurvePoint(1, 10, 100, 1.0, {"caption": c, "cider": 100 * c, "vqa": v}),
            ]
            for s, (c, v) in enumerate(per_seed)
        }

    curves = {
        "vpgtrans": arm((0.5, 0.40), (0.5, 0.40), (0.3, 0.40)),
        "random-warmup": arm((0.4, 0.45), (0.4, 0.45), (0.35, 0.35)),
        "tfs": arm((0.2, 0.2), (0.2, 0.2), (0.2, 0.2)),
    }
    checks = orderings(curves, 1, METRICS)
    assert set(checks) == {"fused init beats random init after warm-up"}  # the other arms were not run
    check = checks["fused init beats random init after warm-up"]
    assert check["arms"] == ["vpgtrans", "random-warmup"] and check["epoch"] == 1 and check["seeds"] == 3
    assert check["caption"]["holds"] and check["caption"]["seeds_holding"] == 2
    assert check["caption"]["means"] == pytest.approx([1.3 / 3, 1.15 / 3])
    assert not check["vqa"]["holds"] and check["vqa"]["seeds_holding"] == 1


def test_orderings_after_a_longer_warmup_are_read_at_its_end():
    def arm(after_1, after_2, seeds=2):
        return {
            s: [
                CurvePoint(e, 10 * e, 100 * e, float(e), {"caption": c, "cider": 100 * c, "vqa": 0.3})
                for e, c in enumerate((0.0, after_1, after_2))
            ]
            for s in range(seeds)
        }

    # the fused start is behind at epoch 1, mid-warm-up, and ahead when the two-epoch warm-up ends;
    # inheriting without warm-up is read after epoch 1 whatever the warm-up's length
    curves = {
        "vpgtrans": arm(0.2, 0.5),
        "random-warmup": arm(0.3, 0.4),
        "tfs": arm(0.25, 0.3),
        "inherit-no-warmup": arm(0.2, 0.6),
    }
    after_two = orderings(curves, 2, METRICS)
    assert after_two["fused init beats random init after warm-up"]["epoch"] == 2
    assert after_two["fused init beats random init after warm-up"]["caption"]["seeds_holding"] == 2
    assert after_two["TFS starts better than inheriting without warm-up"]["epoch"] == 1
    assert after_two["TFS starts better than inheriting without warm-up"]["caption"]["holds"]
    assert not orderings(curves, 1, METRICS)["fused init beats random init after warm-up"]["caption"]["holds"]
    assert "fused init beats random init after warm-up" not in orderings(curves, 3, METRICS)  # not reached

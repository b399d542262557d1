"""Exploratory reading (not part of the library) of committed `vpgtrans compare` results: the
speed-up to within DELTA of TFS's best, a reading less at the mercy of evaluation noise than
the paper's e_TFS / e_VT.

    python docs/benchmarks/probes/within_tolerance.py FOLDER... [--metric caption] [--deltas 0,0.005,0.01,0.02]

For each seed the target is T = (TFS's best score) - DELTA; e_TFS is the first point at which
TFS reaches T, e_VT the first at which VPGTrans reaches T. DELTA = 0 is the paper's reading,
except that a tie counts as reached. Prints per seed e_TFS / e_VT = ratio, and the mean.
"""

import argparse
import json
import statistics
from pathlib import Path

from vpgtrans.compare import CurvePoint, results_curves, tfs_best


def first_reaching(curve: list[CurvePoint], metric: str, target: float) -> float | None:
    return next((p.epoch for p in curve[1:] if p.scores[metric] >= target), None)


def compare_folders(doc: str, option: str, default: str):
    """(args, [(folder, curves)]) for the probes that read committed compare folders."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--metric", default="caption")
    parser.add_argument(option, default=default)
    args = parser.parse_args()
    return args, [(f, results_curves(json.loads((f / "results.json").read_text()))) for f in args.folders]


def main() -> None:
    args, folders = compare_folders(__doc__, "--deltas", "0,0.005,0.01,0.02")
    for folder, curves in folders:
        for delta in map(float, args.deltas.split(",")):
            cells, ratios = [], []
            for seed, tfs in curves["tfs"].items():
                target = tfs_best(tfs, args.metric).scores[args.metric] - delta
                e_tfs = first_reaching(tfs, args.metric, target)
                e_vt = first_reaching(curves["vpgtrans"][seed], args.metric, target)
                if e_vt is None:
                    cells.append(f"{e_tfs:g} / never")
                else:
                    ratios.append(e_tfs / e_vt)
                    cells.append(f"{e_tfs:g} / {e_vt:g} = {ratios[-1]:.2f}")
            mean = f"{statistics.fmean(ratios):.1f}x" if ratios else "never reached"
            print(f"{folder.name}  delta {delta:g}: {mean}  ({'; '.join(cells)})")


if __name__ == "__main__":
    main()

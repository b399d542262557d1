"""Exploratory reading (not part of the library) of committed `vpgtrans compare` results: how
many epochs TFS needs to reach what the transfer scores after k epochs.

    python docs/benchmarks/probes/head_start.py FOLDER... [--metric caption] [--epochs 1,2,3,5,10]

The paper's e_TFS / e_VT divides by TFS's best, which keeps rising on a world that rewards a
longer budget; this reading asks the converse question, per seed: the first epoch at which
TFS reaches VPGTrans's score after k epochs ("never" within the budget), so the transfer's
head start can be read at every point of its curve.
"""

from within_tolerance import compare_folders, first_reaching


def main() -> None:
    args, folders = compare_folders(__doc__, "--epochs", "1,2,3,5,10")
    for folder, curves in folders:
        for k in map(float, args.epochs.split(",")):
            cells = []
            for seed, tfs in curves["tfs"].items():
                target = next(p.scores[args.metric] for p in curves["vpgtrans"][seed] if p.epoch == k)
                reached = first_reaching(tfs, args.metric, target)
                cells.append(f"{target:.3f} -> {'never' if reached is None else f'{reached:g}'}")
            print(f"{folder.name}  VPGTrans after epoch {k:g}: TFS reaches it at  " + "; ".join(cells))


if __name__ == "__main__":
    main()

"""Exploratory reading (not part of the library): the paper's speed-up of one compare folder's
arm against another folder's TFS curves, seed by seed, with the library's own `speedup`.

    python docs/benchmarks/probes/cross_speedup.py TFS_FOLDER ARM_FOLDER [ARM]

ARM defaults to vpgtrans. Used in round 10 to read a Muon transfer (or Muon TFS) against the
AdamW reference's TFS: a cost reading that mixes the optimizer's gain with the transfer's.
"""

import json
import sys

from vpgtrans.compare import results_curves, speedup, summarise

tfs_folder, arm_folder = sys.argv[1], sys.argv[2]
arm = sys.argv[3] if len(sys.argv) > 3 else "vpgtrans"
tfs = results_curves(json.loads(open(f"{tfs_folder}/results.json").read()))["tfs"]
other = results_curves(json.loads(open(f"{arm_folder}/results.json").read()))[arm]
for metric in ("caption", "cider"):
    for unit in ("epoch", "seconds"):
        values = [speedup(tfs[s], other[s], metric, unit) for s in sorted(other)]
        summary = summarise(values)
        print(metric, unit, f"{summary['mean']:.2f} ± {summary['std']:.2f}", [v and round(v, 2) for v in values])

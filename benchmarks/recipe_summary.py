"""Summarise bench_recipe.py results across seeds: mean completion with 95 % t-intervals per reward and k.

    python benchmarks/recipe_summary.py sparse=/tmp/r/c_sparse*.json "sparse+rgvlm=/tmp/r/c_sparse_rgvlm*.json" ...

Each argument is ``LABEL=GLOB``; every file the glob matches is one training seed. Prints a markdown table.
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

from rgvlm_gym.rl.evaluation import t_interval


def main(argv: list[str]) -> None:
    groups = {}
    for arg in argv:
        label, _, pattern = arg.partition("=")
        files = sorted(glob.glob(pattern))
        if not files:
            raise SystemExit(f"no files match {pattern!r}")
        groups[label] = [json.loads(Path(f).read_text())["final"] for f in files]
    ks = sorted({int(k) for runs in groups.values() for r in runs for k in r["completion_by_k"]})
    cols = [*(f"k={k}" for k in ks), "k=4-6", "all k", "success", "invalid"]
    print("| reward | seeds | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for label, runs in groups.items():
        cells = []
        series = [[r["completion_by_k"][str(k)] for r in runs] for k in ks]
        series += [[r["completion_k4_6"] for r in runs], [r["completion"] for r in runs], [r["success"] for r in runs],
                   [r["invalid_rate"] for r in runs]]
        for values in series:
            m, lo, hi = t_interval(values)
            cells.append(f"{m:.2f} [{lo:.2f}, {hi:.2f}]")
        print(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

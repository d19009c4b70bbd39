"""Summarise bench_recipe.py results across seeds: mean completion with 95 % t-intervals per reward and k.

    python benchmarks/recipe_summary.py sparse=/tmp/r/c_sparse*.json "sparse+rgvlm=/tmp/r/c_sparse_rgvlm*.json" ... \
        [--png figure.png --title "..."]

Each argument is ``LABEL=GLOB``; every file the glob matches is one training seed. Prints a markdown table and
optionally draws Figure-4-style bars (completion by k, 95 % t-interval whiskers across seeds).
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

from rgvlm_gym.rl.evaluation import t_interval


def main(argv: list[str]) -> None:
    png, title = None, "Completion by number of sub-tasks"
    if "--png" in argv:
        i = argv.index("--png")
        png = argv[i + 1]
        argv = argv[:i] + argv[i + 2 :]
    if "--title" in argv:
        i = argv.index("--title")
        title = argv[i + 1]
        argv = argv[:i] + argv[i + 2 :]
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
    if png:
        draw(groups, ks, png, title)


def draw(groups: dict, ks: list[int], png: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 3.8), dpi=120)
    width = 0.8 / len(groups)
    for g, (label, runs) in enumerate(groups.items()):
        stats = [t_interval([r["completion_by_k"][str(k)] for r in runs]) for k in ks]
        x = np.arange(len(ks)) + (g - (len(groups) - 1) / 2) * width
        means = [m for m, _, _ in stats]
        err = [[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]]
        ax.bar(x, means, width, label=f"{label} (n={len(runs)})", yerr=err, capsize=3)
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("number of sub-tasks k")
    ax.set_ylabel("proportion of task completion")
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png)


if __name__ == "__main__":
    main(sys.argv[1:])

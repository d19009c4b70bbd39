"""Benchmark pictures (matplotlib, no display needed): :func:`grouped_bars`, :func:`learning_curves`,
:func:`curve_plot`.

Every picture draws 95 % intervals as whiskers and says in its caption what n is (training seeds, and
evaluation episodes per seed); a picture from simulated LVLM labels says so in its title. The numbers
behind each picture are in the CSV / JSON that :func:`rgvlm_gym.benchmark.aggregate.write_results` writes.
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["curve_plot", "grouped_bars", "learning_curves"]

_SIM = " (simulated LVLM labels)"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _plt().close(fig)
    return path


def _err(rows: Sequence[Mapping[str, Any]], metric: str) -> list[list[float]]:
    lows, highs = [], []
    for r in rows:
        m, lo, hi = r[metric], r[f"{metric}_lo"], r[f"{metric}_hi"]
        ok = not (math.isnan(lo) or math.isnan(hi))
        lows.append(m - lo if ok else 0.0)
        highs.append(hi - m if ok else 0.0)
    return [lows, highs]


def _n_caption(rows: Sequence[Mapping[str, Any]]) -> str:
    n = sorted({int(r["n"]) for r in rows})
    eps = sorted({int(r["episodes_per_seed"]) for r in rows if r["k"] != "all"})
    ci = "95 % t-intervals across seeds" if max(n) > 1 else "one seed: no intervals"
    return (f"bars: mean over n = {'/'.join(map(str, n))} training seeds ({ci}); "
            f"{'/'.join(map(str, eps))} evaluation episodes per seed and k")


def grouped_bars(summary: Sequence[Mapping[str, Any]], path: str | Path, *, metric: str = "completion",
                 title: str = "", simulated: bool = False, inits: Sequence[str] | None = None) -> Path:
    """Figure-4-style bars: x = number of sub-tasks k, one bar per algorithm x reward, whiskers = 95 % CI;
    one panel per initial-state kind."""
    plt = _plt()
    rows = [r for r in summary if r["k"] != "all"]
    inits = [i for i in (inits or ("dataset", "randomized")) if any(r["init"] == i for r in rows)]
    if not inits:
        raise ValueError("nothing to plot: the summary has no per-k rows")
    series = list(dict.fromkeys((r["algo"], r["reward"]) for r in rows))
    algos = {a for a, _ in series}
    fig, axes = plt.subplots(1, len(inits), figsize=(max(6.0, 1.2 + 0.22 * len(series) * 6) * len(inits) / 1.4, 4.2),
                             squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10")
    for ax, init in zip(axes[0], inits, strict=True):
        ks = sorted({r["k"] for r in rows if r["init"] == init})
        width = 0.8 / max(1, len(series))
        for si, (algo, reward) in enumerate(series):
            cells = {r["k"]: r for r in rows if r["init"] == init and r["algo"] == algo and r["reward"] == reward}
            present = [k for k in ks if k in cells]
            if not present:
                continue
            xs = [ks.index(k) - 0.4 + width * (si + 0.5) for k in present]
            rs = [cells[k] for k in present]
            label = reward if len(algos) == 1 else f"{algo}: {reward}"
            ax.bar(xs, [r[metric] for r in rs], width * 0.92, yerr=_err(rs, metric), capsize=2.5,
                   color=colours(si % 10), label=label, error_kw={"elinewidth": 1})
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("number of sub-tasks k")
        ax.set_title(f"{init} initial states")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel({"completion": "proportion of task completion", "success": "success rate"}.get(metric, metric))
    axes[0][-1].legend(fontsize=8, loc="upper right")
    fig.suptitle((title or f"{metric} by number of sub-tasks") + (_SIM if simulated else ""))
    fig.text(0.5, -0.04, _n_caption(rows), ha="center", fontsize=8)
    return _save(fig, path)


def learning_curves(runs: Sequence[Mapping[str, Any]], path: str | Path, *, simulated: bool = False,
                    max_metrics: int = 4) -> Path | None:
    """Per reward, the mean across seeds of each metric d3rlpy logged (``train/logs/*/*.csv``) against
    gradient steps, a band for min..max across seeds. Evaluations during training (``rgvlm train
    --eval-every``: ``train/learning_curve.csv``) come first. None when no run has logs."""
    plt = _plt()
    data: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        label = run["reward"] if len({r["algo"] for r in runs}) == 1 else f"{run['algo']}: {run['reward']}"
        curve = Path(run["dir"], "train", "learning_curve.csv")  # `rgvlm train --eval-every`
        if curve.is_file():
            with curve.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    for m in ("completion", "success"):
                        with contextlib.suppress(TypeError, ValueError):
                            data[f"evaluation {m}"][label][int(row["step"])].append(float(row[m]))
        for f in sorted(Path(run["dir"], "train", "logs").glob("*/*.csv")):
            with f.open(newline="") as fh:
                for row in csv.reader(fh):
                    if len(row) == 3:
                        try:
                            data[f.stem][label][int(row[1])].append(float(row[2]))
                        except ValueError:
                            continue
    if not data:
        return None
    names = sorted(data, key=lambda m: (not any(w in m for w in ("success", "completion")), m))[:max_metrics]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    n_seeds = sorted({len(v) for m in names for lab in data[m].values() for v in lab.values()})
    for ax, m in zip(axes[0], names, strict=True):
        for label, by_step in data[m].items():
            steps = sorted(by_step)
            mean = [sum(by_step[s]) / len(by_step[s]) for s in steps]
            ax.plot(steps, mean, label=label, marker="o" if len(steps) < 20 else None, markersize=3)
            ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps], alpha=0.15)
        ax.set_title(m)
        ax.set_xlabel("gradient steps")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Training curves" + (_SIM if simulated else ""), y=1.03)
    fig.text(0.5, -0.05, f"lines: mean over {'/'.join(map(str, n_seeds))} training seeds; bands: min-max across seeds",
             ha="center", fontsize=8)
    return _save(fig, path)


def curve_plot(summary: Sequence[Mapping[str, Any]], path: str | Path, *, x_label: str = "x", metric: str = "completion",
               title: str = "", simulated: bool = False, baseline: str = "sparse") -> Path:
    """Lines over labeler variants' ``x`` (e.g. the sim's noise): the labeler alone and ``sparse + labeler``,
    with 95 % whiskers, against the ``baseline`` reward as a horizontal line and band.

    ``summary`` rows are per reward (one cell each, e.g. the mean over k), with ``x`` set for labeler rewards.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    kinds: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in summary:
        if r.get("x") is None or r["reward"] == baseline:
            continue
        kinds["sparse + LVLM reward" if str(r["reward"]).startswith("sparse+") else "LVLM reward alone"].append(r)
    for i, (kind, rs) in enumerate(sorted(kinds.items())):
        rs = sorted(rs, key=lambda r: float(r["x"]))
        ax.errorbar([float(r["x"]) for r in rs], [r[metric] for r in rs], yerr=_err(rs, metric), marker="o", capsize=3,
                    label=kind, color=f"C{i + 1}")
    base = [r for r in summary if r["reward"] == baseline]
    if base:
        b = base[0]
        ax.axhline(b[metric], color="C0", label=baseline)
        if not math.isnan(b[f"{metric}_lo"]):
            ax.axhspan(b[f"{metric}_lo"], b[f"{metric}_hi"], color="C0", alpha=0.15)
    ax.set_xlabel(x_label)
    ax.set_ylabel({"completion": "proportion of task completion", "success": "success rate"}.get(metric, metric))
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title((title or f"{metric} vs {x_label}") + (_SIM if simulated else ""), fontsize=10)
    n = sorted({int(r["n"]) for r in summary})
    fig.text(0.5, -0.03, f"points: mean over n = {'/'.join(map(str, n))} training seeds, 95 % t-intervals; "
             "baseline band: its interval", ha="center", fontsize=8)
    return _save(fig, path)

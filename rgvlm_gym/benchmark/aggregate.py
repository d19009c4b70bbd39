"""Aggregating evaluations across seeds: :func:`episode_rows`, :func:`per_run`, :func:`summarize`,
:func:`t_interval`, :func:`verdicts`, :func:`write_results`, :func:`markdown_table`.

The unit is the **training seed**: each run (algorithm x reward x seed) gives one number per cell (initial
state x number of sub-tasks k) -- its mean over the cell's evaluation episodes -- and a cell's interval is
the 95 % Student-t interval of those per-seed numbers (``mean +- t(0.975, n-1) * sd / sqrt(n)``), the
interval that stays honest with 3-5 seeds. A normal or bootstrap interval over episodes would ignore the
seed-to-seed spread that dominates offline RL. With one seed there is no interval (NaN, shown as "n/a").

Metrics per episode, read from ``rgvlm evaluate``'s ``episodes.csv`` (its columns are fixed):
**completion** = ``subtasks_done / n_subtasks`` (the paper's Figure 4 metric), **success** (0/1).

    >>> lo, hi = t_interval([0.5, 0.6, 0.7])
    >>> round(lo, 3), round(hi, 3)
    (0.352, 0.848)
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["METRICS", "episode_rows", "markdown_table", "per_run", "rows_to_csv", "summarize", "t_interval", "verdicts", "write_results"]

METRICS = ("completion", "success")
_GROUP = ("algo", "reward", "init", "k")


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean of ``values`` (NaN, NaN with fewer than two values)."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    from scipy.stats import t

    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def episode_rows(eval_dir: str | Path) -> list[dict[str, Any]]:
    """The episodes of one ``rgvlm evaluate`` output folder, with ``init`` and ``completion`` added."""
    path = Path(eval_dir) / "episodes.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no episodes.csv in {eval_dir} (is it an `rgvlm evaluate` output folder?)")
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            k = int(r["n_subtasks"])
            done = int(r["subtasks_done"])
            rows.append({"k": k, "init": "randomized" if r["randomized"] in ("True", "true", "1") else "dataset",
                         "success": 1.0 if r["success"] in ("True", "true", "1") else 0.0,
                         "completion": min(done, k) / k if k else 0.0, "eval_seed": r.get("seed")})
    return rows


def per_run(run: Mapping[str, Any], eval_dir: str | Path) -> list[dict[str, Any]]:
    """One row per initial-state kind x k (and ``k = "all"``, the mean over k) for one run."""
    cells: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for e in episode_rows(eval_dir):
        cells[(e["init"], e["k"])].append(e)
    base = {k: run.get(k) for k in ("algo", "reward", "seed", "labeler", "lam", "x")}
    rows = []
    for (init, k), eps in sorted(cells.items()):
        rows.append({**base, "init": init, "k": k, "episodes": len(eps),
                     **{m: sum(e[m] for e in eps) / len(eps) for m in METRICS}})
    for init in sorted({i for i, _ in cells}):
        ks = [r for r in rows if r["init"] == init]
        rows.append({**base, "init": init, "k": "all", "episodes": sum(r["episodes"] for r in ks),
                     **{m: sum(r[m] for r in ks) / len(ks) for m in METRICS}})  # mean over k: each k weighs the same
    return rows


def summarize(rows: Iterable[Mapping[str, Any]], group: Sequence[str] = _GROUP) -> list[dict[str, Any]]:
    """Mean and 95 % t-interval across seeds per ``group`` cell; ``n`` is the number of seeds."""
    cells: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    order: list[tuple[Any, ...]] = []
    for r in rows:
        key = tuple(r.get(g) for g in group)
        if key not in cells:
            order.append(key)
        cells[key].append(r)
    out = []
    for key in order:
        rs = cells[key]
        rec: dict[str, Any] = dict(zip(group, key, strict=True))
        rec["n"] = len(rs)
        rec["seeds"] = sorted(r.get("seed") for r in rs)
        rec["episodes_per_seed"] = min(int(r["episodes"]) for r in rs)
        for extra in ("labeler", "lam", "x"):
            if extra not in group:
                rec[extra] = rs[0].get(extra)
        for m in METRICS:
            vals = [float(r[m]) for r in rs]
            lo, hi = t_interval(vals)
            rec[m] = sum(vals) / len(vals)
            rec[f"{m}_lo"], rec[f"{m}_hi"] = (max(0.0, lo), min(1.0, hi)) if not math.isnan(lo) else (lo, hi)
        out.append(rec)
    return out


def verdicts(summary: Sequence[Mapping[str, Any]], baseline: str = "sparse", metric: str = "completion") -> list[dict[str, Any]]:
    """Each reward against ``baseline`` per algorithm, initial state and k: ``above`` / ``below`` when the
    95 % intervals do not overlap, else ``overlap`` (``n/a`` without intervals)."""
    base = {(s["algo"], s["init"], s["k"]): s for s in summary if s["reward"] == baseline}
    out = []
    for s in summary:
        b = base.get((s["algo"], s["init"], s["k"]))
        if s["reward"] == baseline or b is None:
            continue
        lo, hi, blo, bhi = s[f"{metric}_lo"], s[f"{metric}_hi"], b[f"{metric}_lo"], b[f"{metric}_hi"]
        if any(math.isnan(v) for v in (lo, hi, blo, bhi)):
            v = "n/a"
        else:
            v = "above" if lo > bhi else "below" if hi < blo else "overlap"
        out.append({"algo": s["algo"], "init": s["init"], "k": s["k"], "reward": s["reward"], "baseline": baseline,
                    "metric": metric, "difference": s[metric] - b[metric], "verdict": v})
    return out


def _fmt(mean: float, lo: float, hi: float) -> str:
    if math.isnan(lo):
        return f"{mean:.2f} (n/a)"
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown_table(summary: Sequence[Mapping[str, Any]], metric: str = "completion", init: str = "dataset",
                   simulated: bool = False) -> str:
    """Rows: algorithm and reward; columns: k; cells: mean [95 % CI] across seeds."""
    rows = [s for s in summary if s["init"] == init]
    if not rows:
        return ""
    ks = sorted({s["k"] for s in rows if s["k"] != "all"}) + (["all"] if any(s["k"] == "all" for s in rows) else [])
    n = sorted({s["n"] for s in rows})
    eps = sorted({s["episodes_per_seed"] for s in rows if s["k"] != "all"})
    lines = [f"{metric.capitalize()} by number of sub-tasks k, {init} initial states: mean [95 % t-interval] over "
             f"n = {'/'.join(map(str, n))} training seeds, {'/'.join(map(str, eps))} evaluation episodes per seed and k"
             + (" (simulated LVLM labels)" if simulated else "") + ".", "",
             "| algo | reward | " + " | ".join(f"k={k}" for k in ks) + " |",
             "| --- | --- | " + " | ".join("---" for _ in ks) + " |"]
    cells = {(s["algo"], s["reward"], s["k"]): s for s in rows}
    for algo, reward in dict.fromkeys((s["algo"], s["reward"]) for s in rows):
        vals = []
        for k in ks:
            s = cells.get((algo, reward, k))
            vals.append(_fmt(s[metric], s[f"{metric}_lo"], s[f"{metric}_hi"]) if s else "")
        lines.append(f"| {algo} | {reward} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV text (the union of their keys as columns; lists joined with ';')."""
    if not rows:
        return ""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    return buf.getvalue()


def write_results(out_dir: str | Path, rows: Sequence[Mapping[str, Any]], *, simulated: bool,
                  meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``runs.csv`` (one row per run x cell, with a ``seed`` column), ``summary.csv``,
    ``summary.json`` (with the verdicts against sparse) and ``table.md`` into ``out_dir``; return the summary."""
    from rgvlm_gym.benchmark.runner import atomic_write_text

    out = Path(out_dir)
    summary = summarize(rows)
    verdict = verdicts(summary)
    atomic_write_text(out / "runs.csv", rows_to_csv(rows))
    atomic_write_text(out / "summary.csv", rows_to_csv(summary))
    doc = {"meta": dict(meta or {}), "simulated": simulated, "interval": "95 % Student-t across training seeds",
           "summary": summary, "verdicts_vs_sparse": verdict}
    atomic_write_text(out / "summary.json", json.dumps(doc, indent=1, default=str))
    parts = []
    if simulated:
        parts.append("**All LVLM rewards here come from the simulated LVLM (a stand-in answering from ground truth "
                     "through an error model), not from a real LVLM.**\n")
    for init in ("dataset", "randomized"):
        for metric in METRICS:
            t = markdown_table(summary, metric, init, simulated)
            if t:
                parts.append(t + "\n")
    if verdict:
        parts.append("Against sparse (completion; `above` / `below` only where the 95 % intervals do not overlap):\n")
        parts.append("| algo | init | k | reward | difference | verdict |\n| --- | --- | --- | --- | --- | --- |")
        parts.extend(f"| {v['algo']} | {v['init']} | {v['k']} | {v['reward']} | {v['difference']:+.2f} | {v['verdict']} |" for v in verdict)
    atomic_write_text(out / "table.md", "\n".join(parts) + "\n")
    return doc

"""A benchmark's report: :func:`report` turns the finished runs into CSV / JSON / markdown and pictures.

Files under ``OUT/results``: ``runs.csv`` (one row per run x initial state x k, with a ``seed`` column),
``summary.csv`` / ``summary.json`` (mean and 95 % t-interval across seeds per cell, verdicts against
sparse), ``table.md``, and the pictures ``completion.png``, ``success.png``, ``learning_curves.png`` (when
training logged metrics) and ``curve.png`` (when the config has a ``[curve]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rgvlm_gym.benchmark.aggregate import per_run, rows_to_csv, summarize, write_results
from rgvlm_gym.benchmark.config import BenchmarkConfig
from rgvlm_gym.benchmark.plots import curve_plot, grouped_bars, learning_curves
from rgvlm_gym.benchmark.runner import RunInfo, atomic_write_text

__all__ = ["is_simulated", "report"]


def is_simulated(dataset_ids: Sequence[str]) -> bool:
    """Whether any of these relabeled datasets holds simulated LVLM labels (their provenance says so)."""
    from rgvlm_gym.data import dataset_info

    for did in dataset_ids:
        try:
            if (dataset_info(did).get("relabel") or {}).get("simulated"):
                return True
        except Exception:  # a dataset that is gone: nothing to say about it
            continue
    return False


def report(cfg: BenchmarkConfig, runs: Sequence[RunInfo], out: str | Path, *, simulated: bool,
           echo: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Aggregate the runs whose evaluation finished; write results and pictures; None if none finished."""
    out = Path(out)
    res = out / "results"
    rows: list[dict[str, Any]] = []
    finished = []
    for run in runs:
        if not (run.dir / "eval.done").exists():
            continue
        rec = run.record()
        rows.extend(per_run(rec, run.dir / "eval"))
        finished.append({**rec, "dir": str(run.dir)})
    missing = len(runs) - len(finished)
    if not rows:
        echo("no finished evaluations to report")
        return None
    meta = {"config": cfg.name, "quick": cfg.quick, "description": cfg.description, "runs": len(finished), "runs_missing": missing,
            "seeds": list(cfg.train.seeds), "evaluation": {"episodes_per_k_seed_init": cfg.evaluate.episodes,
                                                           "seeds": list(cfg.evaluate.seeds), "subtasks": cfg.evaluate.subtasks}}
    doc = write_results(res, rows, simulated=simulated, meta=meta)
    title = (cfg.description or cfg.name) + (" (--quick: a smoke test, not a result)" if cfg.quick else "")
    pictures = [grouped_bars(doc["summary"], res / "completion.png", metric="completion", title=title, simulated=simulated),
                grouped_bars(doc["summary"], res / "success.png", metric="success", title=title, simulated=simulated)]
    lc = learning_curves(finished, res / "learning_curves.png", simulated=simulated)
    if lc is not None:
        pictures.append(lc)
    if cfg.curve is not None:
        ks = cfg.curve.ks
        sel = [r for r in rows if r["k"] != "all" and r["init"] == cfg.curve.init and (ks is None or r["k"] in ks)]
        by_run: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for r in sel:
            by_run.setdefault((r["algo"], r["reward"], r["seed"]), []).append(r)
        curve_rows = [{**rs[0], "k": "curve", "episodes": sum(x["episodes"] for x in rs),
                       "completion": sum(x["completion"] for x in rs) / len(rs),
                       "success": sum(x["success"] for x in rs) / len(rs)} for rs in by_run.values()]
        summ = summarize(curve_rows)
        pictures.append(curve_plot(summ, res / "curve.png", x_label=cfg.curve.x_label, simulated=simulated,
                                   title=f"completion (mean over k = {ks or 'all'}) vs {cfg.curve.x_label}"))
        atomic_write_text(res / "curve.csv", rows_to_csv(summ))
    echo((res / "table.md").read_text())
    echo("wrote " + ", ".join(str(p) for p in [res / "runs.csv", res / "summary.csv", res / "summary.json", *pictures])
         + (f"\n{missing} of {len(runs)} runs have not finished; the figures show the others" if missing else ""))
    return doc

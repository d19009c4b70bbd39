"""``rgvlm compare``: Figure-4-style bars with 95 % intervals from any set of ``rgvlm evaluate`` outputs.

Example::

    rgvlm compare runs/sparse_s0/eval runs/sparse_s1/eval runs/rgvlm_s0/eval runs/rgvlm_s1/eval --out cmp.png

Each EVAL_DIR is one training seed of one method. Folders with the same label are pooled as seeds of that
method; the label is ``--labels`` (one per folder), else the benchmark's ``run.json`` beside the folder,
else the ``train.json`` beside the evaluated model (algorithm and reward column), else the folder name.
Writes the PNG, and the numbers beside it (same name, ``.csv``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "label_of", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eval_dirs", nargs="+", metavar="EVAL_DIR", help="rgvlm evaluate output folders (with episodes.csv)")
    p.add_argument("--out", required=True, help="PNG to write (its numbers go to the same name with .csv)")
    p.add_argument("--labels", default=None, help="comma-separated label per EVAL_DIR (same label = seeds of one method)")
    p.add_argument("--metric", choices=("completion", "success"), default="completion", help="y axis (default: completion)")
    p.add_argument("--title", default="", help="figure title")
    p.add_argument("--simulated", action="store_true", help="say in the title that the rewards come from the simulated LVLM")


def label_of(eval_dir: Path) -> tuple[str, Any]:
    """(label, seed) of an evaluation folder (see the module docstring)."""
    run_json = eval_dir.parent / "run.json"
    if run_json.is_file():
        rec = json.loads(run_json.read_text())
        return f"{rec['algo']}: {rec['reward']}", rec.get("seed")
    ev = eval_dir / "evaluation.json"
    if ev.is_file():
        model = (json.loads(ev.read_text()).get("meta") or {}).get("model")
        train = Path(model).parent / "train.json" if model else None
        if train is not None and train.is_file():
            t = json.loads(train.read_text())
            return f"{t.get('algo')}: {t.get('reward')} on {t.get('dataset_id')}", t.get("seed")
    return eval_dir.name, None


def run(args: argparse.Namespace) -> int:
    from rgvlm_gym.benchmark.aggregate import per_run, rows_to_csv, summarize
    from rgvlm_gym.benchmark.plots import grouped_bars
    from rgvlm_gym.benchmark.runner import atomic_write_text

    dirs = [Path(d) for d in args.eval_dirs]
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if labels is not None and len(labels) != len(dirs):
        raise ValueError(f"--labels has {len(labels)} labels for {len(dirs)} EVAL_DIRs; give one per folder")
    rows = []
    for i, d in enumerate(dirs):
        label, seed = (labels[i], None) if labels else label_of(d)
        rows.extend(per_run({"algo": "", "reward": label, "seed": seed if seed is not None else i}, d))
    summary = summarize(rows)
    out = Path(args.out)
    grouped_bars(summary, out, metric=args.metric, title=args.title, simulated=args.simulated)
    atomic_write_text(out.with_suffix(".csv"), rows_to_csv(summary))
    for s in summary:
        if s["k"] == "all":
            lo, hi = s[f"{args.metric}_lo"], s[f"{args.metric}_hi"]
            print(f"{s['reward']:40s} {s['init']:10s} n={s['n']}  {args.metric} {s[args.metric]:.2f} [{lo:.2f}, {hi:.2f}]")
    print(f"wrote {out} and {out.with_suffix('.csv')}")
    return 0

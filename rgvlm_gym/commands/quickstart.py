"""``rgvlm quickstart``: the RG-VLM experiment, small: does sparse + RG-VLM beat sparse, and is it noise?

A small benchmark (:mod:`rgvlm_gym.benchmark`) built from the options:

1. collect a mixed-quality Minari dataset of procedural tasks with ``--subtasks`` sub-tasks (reused only
   when its stored parameters match the options; otherwise refused, or re-collected with ``--force``);
2. relabel it with RG-VLM rewards (the simulated LVLM by default: a stand-in, labelled as such; pass
   ``--lvlm openai:<model>[@url]`` or ``--lvlm hf:<path>`` for a real one);
3. train DiscreteIQL on the sparse reward and on sparse + lam x RG-VLM, once per seed (``--seeds``, 3 by
   default), ``--threads`` CPU threads shared by the runs;
4. evaluate every model on the same tasks from the dataset's and from randomized initial states;
5. print completion and success by k with 95 % intervals across seeds and say what the figure does and
   does not show; write ``comparison.png`` and ``comparison.json`` (seeds, means, intervals) into ``--out``.

Run again with the same options, it reuses everything that finished (a killed run continues).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "build_config", "run"]


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="rgvlm-quickstart", help="folder for runs, logs, results and the comparison figure")
    p.add_argument("--lvlm", default="sim", help="LVLM spec for relabeling (default: the simulated LVLM)")
    p.add_argument("--episodes", type=int, default=400, help="episodes to collect")
    p.add_argument("--num-tasks", type=int, default=40, help="procedural tasks in the suite")
    p.add_argument("--subtasks", default="2-4",
                   help="sub-task counts of the tasks (default 2-4: dense rewards are expected to matter on longer tasks)")
    p.add_argument("--steps", type=int, default=1500, help="training steps per model")
    p.add_argument("--batch-size", type=int, default=64, help="training mini-batch size")
    p.add_argument("--lam", type=float, default=1.0, help="weight of the RG-VLM reward in sparse + lam * rgvlm")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="evaluation episodes per sub-task count, per initial-state kind, per model")
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="training seeds, e.g. 0,1,2 (intervals need >= 2)")
    p.add_argument("--seed", type=int, default=0, help="collection and evaluation seed")
    p.add_argument("--namespace", default="quickstart", help="Minari namespace of the datasets")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the whole quickstart (default: the free cores); runs go in parallel, one thread each")
    p.add_argument("--force", action="store_true",
                   help="re-collect / relabel / retrain when stored datasets or runs were made with other options")


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark config (a dict, see :mod:`rgvlm_gym.benchmark.config`) the quickstart runs."""
    combined = "sparse+rgvlm" if args.lam == 1 else f"sparse+{args.lam:g}*rgvlm"
    return {
        "name": "quickstart",
        "namespace": args.namespace,
        "description": "IQL on sparse vs sparse + RG-VLM rewards (rgvlm quickstart)",
        "lvlm": args.lvlm,
        "dataset": {"episodes": args.episodes, "tasks": "procedural", "num_tasks": args.num_tasks, "subtasks": args.subtasks,
                    "policy": "mixed", "seed": args.seed},
        "train": {"algos": ["iql"], "rewards": ["sparse", combined], "seeds": list(args.seeds), "steps": args.steps,
                  "batch_size": args.batch_size},
        "evaluate": {"subtasks": args.subtasks, "episodes": args.eval_episodes, "seeds": [args.seed], "randomize_init": True},
    }


def _closing(summary: list[dict[str, Any]], combined: str, n: int, eps: int, simulated: bool, steps: int, episodes: int) -> str:
    by = {(s["reward"], s["init"], s["k"]): s for s in summary}
    above, below, overlap = [], [], []
    for (reward, init, k), s in sorted(by.items(), key=lambda kv: str(kv[0])):
        b = by.get(("sparse", init, k))
        if reward != combined or b is None or k == "all":
            continue
        where = f"k={k} ({'rand.' if init == 'randomized' else 'data'})"
        if math.isnan(s["completion_lo"]) or math.isnan(b["completion_lo"]):
            overlap.append(where)
        elif s["completion_lo"] > b["completion_hi"]:
            above.append(where)
        elif s["completion_hi"] < b["completion_lo"]:
            below.append(where)
        else:
            overlap.append(where)
    shows = []
    if above:
        shows.append(f"{combined} completes more of the task than sparse at {', '.join(above)} (95 % intervals apart)")
    if below:
        shows.append(f"{combined} completes less than sparse at {', '.join(below)} (intervals apart)")
    if overlap:
        shows.append(f"the two cannot be told apart at {', '.join(overlap)} (intervals overlap: no claim either way)")
    seeds = f"{n} training seed{'s' if n != 1 else ''}"
    return ("What this shows: " + "; ".join(shows) + f", with {seeds} and {eps} evaluation episodes per seed and k. "
            "What it does not show: " + ("anything about a real LVLM (the labels are SIMULATED from ground truth); "
                                         if simulated else "") +
            f"results at scale ({episodes} episodes, {steps} training steps per model, small procedural tasks, "
            "not ALFRED); differences smaller than the intervals; other seeds of the dataset. "
            "`rgvlm benchmark benchmarks/configs/figure4.toml` runs the full comparison.")


def run(args: argparse.Namespace) -> int:
    from rgvlm_gym.benchmark.config import BenchmarkConfig
    from rgvlm_gym.benchmark.plots import grouped_bars
    from rgvlm_gym.benchmark.report import is_simulated, report
    from rgvlm_gym.benchmark.runner import atomic_write_text, run_benchmark
    from rgvlm_gym.rl.threads import default_num_threads

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if not args.seeds:
        raise ValueError("--seeds must name at least one seed")
    out = Path(args.out)
    cfg = BenchmarkConfig.from_dict(build_config(args))
    combined = cfg.rewards[1].name
    simulated = args.lvlm.split(":", 1)[0] == "sim"
    tag = " (SIMULATED LVLM: a stand-in for CI and controlled studies, not an LVLM result)" if simulated else ""
    cores = args.threads if args.threads is not None else default_num_threads()
    jobs = max(1, min(cores, len(cfg.rewards) * len(args.seeds)))
    t0 = time.perf_counter()
    print(f"quickstart: IQL on sparse vs {combined} rewards{tag}, seeds {args.seeds}, {cores} thread(s)")
    status, job_list, runs = run_benchmark(cfg, out, jobs=jobs, force=args.force, cores=cores)
    relabeled = [j.info["dataset"] for j in job_list if j.kind == "relabel"]
    if any(j.kind == "relabel" and status.get(j.key) == "ok" for j in job_list):
        log = (out / "logs" / f"{next(j.key for j in job_list if j.kind == 'relabel')}.log").read_text(errors="replace")
        print("\n".join(line for line in log.splitlines() if line.startswith("LVLM calls:")))
    for j in job_list:
        if status.get(j.key) == "done" and j.kind in ("collect", "relabel"):
            print(f"{j.info['dataset']} exists with the same parameters: reused (--force to redo)")
    failed = [k for k, s in status.items() if s in ("failed", "skipped")]
    doc = report(cfg, runs, out, simulated=simulated or is_simulated(relabeled), echo=lambda _: None)
    if doc is None or failed:
        print(f"quickstart: failed jobs: {', '.join(failed)} (logs in {out / 'logs'})")
        return 1
    summary = doc["summary"]
    n, eps = len(args.seeds), args.eval_episodes
    print(f"\nProportion of task completion [95 % t-interval over {n} seeds]{tag}:")
    cells = [(s["init"], s["k"]) for s in summary if s["reward"] == "sparse"]
    by = {(s["reward"], s["init"], s["k"]): s for s in summary}
    print(f"{'':22s}" + "".join(f"{('rand. ' if i == 'randomized' else 'data ') + f'k={k}':>20s}" for i, k in cells))
    for reward in ("sparse", combined):
        print(f"{'IQL, ' + reward:22s}" + "".join(
            f"{by[(reward, i, k)]['completion']:8.2f} [{by[(reward, i, k)]['completion_lo']:.2f},{by[(reward, i, k)]['completion_hi']:.2f}]"
            for i, k in cells))
    grouped_bars(summary, out / "comparison.png", metric="completion", simulated=simulated,
                 title="IQL: sparse vs sparse + RG-VLM, proportion of task completion")

    def table(metric: str) -> dict[str, dict[str, Any]]:
        return {f"IQL, {r}": {f"{'randomized' if i == 'randomized' else 'dataset'} k={k}": {
            "mean": by[(r, i, k)][metric], "ci95": [by[(r, i, k)][f"{metric}_lo"], by[(r, i, k)][f"{metric}_hi"]],
            "n": by[(r, i, k)]["n"]} for i, k in cells} for r in ("sparse", combined)}

    closing = _closing(summary, combined, n, eps, simulated, args.steps, args.episodes)
    result = {"lvlm": args.lvlm, "simulated": simulated, "seeds": list(args.seeds), "eval_seeds": [args.seed],
              "eval_episodes_per_seed_and_k": eps, "interval": "95 % Student-t across training seeds (NaN with one seed)",
              "completion": table("completion"), "success": table("success"), "verdicts_vs_sparse": doc["verdicts_vs_sparse"],
              "conclusion": closing, "args": vars(args)}
    atomic_write_text(out / "comparison.json", json.dumps(result, indent=1, default=str))
    print("\n" + closing)
    print(f"\nwrote {out / 'comparison.png'} and {out / 'comparison.json'} (all numbers: {out / 'results'}) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0

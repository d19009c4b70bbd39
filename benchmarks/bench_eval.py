"""Evaluation speed: episodes/s of ``rgvlm_gym.rl.evaluation.evaluate`` on ALFRED prefix tasks, new vs old code.

Reads top to bottom (CleanRL style): hyper-parameters in ``Args``, then

1. a small mixed dataset of ALFRED train-split prefix tasks (k = 1..6) and ``rgvlm train --algo iql`` on it
   for ``--train-steps`` steps (a weakly trained policy: many episodes run to the step limit, the slow case);
2. the evaluation protocol of ``rgvlm evaluate`` (valid_seen, k = 1..6, ``--episodes`` per k, seeds 0,1,2,
   dataset initial states) timed with the current code (action masks on and off) and, side by side in the
   same process, with the evaluation module of ``--old-rev`` (git), on the same model and tasks;
3. episodes/s and the ratio new / old, printed and written as JSON (``--json-out``).

The instruction-embedding cache is warmed once before timing (every variant then reads the same cache), so
the figures measure rollouts and policy inference; the cold-cache cost is reported apart.

Run (repository root, venv active)::

    python benchmarks/bench_eval.py --alfred-dir ../shared/alfred/json_2.1.0 --json-out /tmp/bench_eval.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import rgvlm_gym  # noqa: F401  (before d3rlpy: keeps old gym's import banner quiet)


@dataclass
class Args:
    alfred_dir: str = "../shared/alfred/json_2.1.0"
    """ALFRED json_2.1.0 folder"""
    train_episodes: int = 300
    """episodes of the training dataset (train split, k = 1..6, mixed policies)"""
    train_steps: int = 300
    """gradient steps of rgvlm train --algo iql"""
    episodes: int = 20
    """evaluation episodes per k and seed"""
    seeds: str = "0,1,2"
    """evaluation seeds"""
    old_rev: str = "f83cc71"
    """git revision whose rgvlm_gym/rl/evaluation.py is the baseline ('' to skip)"""
    threads: int = 1
    """torch threads for every variant"""
    workers: int = 2
    """worker processes of the last variant (``rgvlm evaluate`` uses the free cores)"""
    model: str = ""
    """evaluate this model.d3 instead of training one (steps 1 skipped)"""
    json_out: str = ""
    """write the figures here as JSON too"""


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(p.parse_args()))


def old_module(rev: str):
    """The evaluation module of a git revision, imported under another name."""
    src = subprocess.run(["git", "show", f"{rev}:rgvlm_gym/rl/evaluation.py"], capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_evaluation.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_evaluation", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_evaluation"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def train(args: Args, rgvlm: list[str], alfred_dir: str, work: Path) -> None:
    """Collect a training dataset and train DiscreteIQL briefly (``rgvlm collect`` + ``rgvlm train``)."""
    subprocess.run([*rgvlm, "collect", "--tasks", "alfred", "--alfred-dir", alfred_dir, "--split", "train", "--subtasks", "1-6",
                    "--episodes", str(args.train_episodes), "--policy", "mixed", "--dataset-id", "bench/eval-train-v0",
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    # (image, instruction) observations and plain output units: the old evaluation code can run this model too
    subprocess.run([*rgvlm, "train", "bench/eval-train-v0", "--algo", "iql", "--steps", str(args.train_steps),
                    "--steps-per-epoch", str(args.train_steps), "--no-action-masks", "--no-action-text", "--out", str(work / "run")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    os.environ.setdefault("MINARI_DATASETS_PATH", str(work / "minari"))
    alfred_dir = os.path.abspath(args.alfred_dir)
    seeds = tuple(int(s) for s in args.seeds.split(","))

    # 1. a weakly trained policy
    rgvlm = [sys.executable, "-m", "rgvlm_gym.cli"]
    model = Path(args.model) if args.model else work / "run" / "model.d3"
    if not args.model:
        train(args, rgvlm, alfred_dir, work)

    import d3rlpy
    import torch

    import rgvlm_gym.rl  # noqa: F401  (registers DiscreteIQL)
    from rgvlm_gym.rl import evaluation as new

    torch.set_num_threads(args.threads)
    algo = d3rlpy.load_learnable(str(model))
    env_kwargs = {"tasks": "alfred", "alfred_dir": alfred_dir, "split": "valid_seen", "subtasks": "1-6"}
    common = {"episodes_per_k": args.episodes, "seeds": seeds, "randomize": (False,)}

    # warm the instruction-embedding cache (cold cost reported apart)
    t0 = time.perf_counter()
    new.evaluate(new.d3rlpy_policy(algo), env_kwargs, **common)
    cold = time.perf_counter() - t0

    results: dict[str, dict[str, float]] = {}

    def cpu_seconds() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def timed(name: str, fn) -> None:
        t, c = time.perf_counter(), cpu_seconds()
        report = fn()
        dt, cpu = time.perf_counter() - t, cpu_seconds() - c
        s = report.summary()
        n = len(report.episodes)
        # CPU seconds do not depend on other jobs the way wall time does: n / cpu is what one idle core gives
        results[name] = {"episodes": n, "seconds": round(dt, 2), "episodes_per_s": round(n / dt, 1),
                         "cpu_seconds": round(cpu, 2), "episodes_per_cpu_s": round(n / cpu, 1),
                         "success": round(s["success"]["rate"], 3), "steps_per_episode": round(sum(e.steps for e in report.episodes) / n, 1),
                         "invalid_action_rate": round(s["invalid_action_rate"]["rate"], 3)}
        print(f"{name:28s} {n} episodes in {dt:6.1f} s = {n / dt:6.1f} episodes/s ({n / cpu:6.1f} per CPU s)  success {s['success']['rate']:.1%}  "
              f"steps/episode {results[name]['steps_per_episode']}  invalid {s['invalid_action_rate']['rate']:.1%}", flush=True)

    if args.old_rev:
        old = old_module(args.old_rev)
        timed(f"old ({args.old_rev})", lambda: old.evaluate(old.d3rlpy_policy(algo), env_kwargs, **common))
    timed("new, masks off", lambda: new.evaluate(new.d3rlpy_policy(algo), env_kwargs, action_mask=False, **common))
    timed("new, masks on (default)", lambda: new.evaluate(new.d3rlpy_policy(algo), env_kwargs, **common))
    timed(f"new, masks on, {args.workers} workers", lambda: new.evaluate(new.d3rlpy_policy(algo), env_kwargs, workers=args.workers, **common))
    if args.old_rev:
        old_name = f"old ({args.old_rev})"
        for name in ("new, masks off", "new, masks on (default)", f"new, masks on, {args.workers} workers"):
            results[name]["speed_vs_old"] = round(results[name]["episodes_per_s"] / results[old_name]["episodes_per_s"], 2)
            print(f"{name}: {results[name]['speed_vs_old']}x the old code's episodes/s")
    out = {"args": dataclasses.asdict(args), "cold_embedding_cache_first_run_s": round(cold, 1), "results": results,
           "load_average": os.getloadavg()}
    print(json.dumps(out, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

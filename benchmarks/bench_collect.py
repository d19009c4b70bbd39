"""Collection speed including instruction embeddings: ``rgvlm collect`` of 1,000 ALFRED episodes, new vs old code.

Reads top to bottom (CleanRL style): hyper-parameters in ``Args``, then for each variant, in turns
(``--repeats`` rounds, so that both see the same machine load):

- ``new``: this checkout's ``rgvlm collect`` (instructions embedded while collecting, bfloat16 autocast where
  the CPU has it);
- ``old``: the same command from ``--old-rev`` (a ``git archive`` of it; embeddings computed after
  collecting, float32),

each with an empty embedding cache and Minari folder, timing the whole command (wall clock, and the CPU time
of the child: user + system). The figure of merit is episodes per wall-clock second *including* the
embeddings, and the ratio new / old.

Run (repository root, venv active)::

    python benchmarks/bench_collect.py --alfred-dir ../shared/alfred/json_2.1.0 --json-out /tmp/bench_collect.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Args:
    alfred_dir: str = "../shared/alfred/json_2.1.0"
    """ALFRED json_2.1.0 folder"""
    split: str = "valid_seen"
    """ALFRED split"""
    episodes: int = 1000
    """episodes per collection"""
    workers: int = 2
    """collection worker processes"""
    old_rev: str = "f83cc71"
    """git revision of the baseline ('' to skip it)"""
    repeats: int = 1
    """rounds of (old, new)"""
    json_out: str = ""
    """write the figures here as JSON too"""


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(p.parse_args()))


def run_collect(code_root: str, args: Args, work: Path, tag: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=code_root, MINARI_DATASETS_PATH=str(work / f"minari-{tag}"),
               RGVLM_GYM_CACHE_DIR=str(work / f"cache-{tag}"))
    cmd = [sys.executable, "-m", "rgvlm_gym.cli", "collect", "--tasks", "alfred", "--alfred-dir", os.path.abspath(args.alfred_dir),
           "--split", args.split, "--subtasks", "1-6", "--episodes", str(args.episodes), "--policy", "mixed",
           "--workers", str(args.workers), "--dataset-id", "bench/collect-v0", "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=code_root)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{tag}: rgvlm collect failed:\n{r.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n_cached = sum(1 for _ in (work / f"cache-{tag}").rglob("*.npz"))
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "episodes_per_s": round(args.episodes / wall, 1),
            "cache_shards": n_cached, "load_average_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    args = parse_args()
    root = Path(__file__).resolve().parents[1]
    old_root = ""
    if args.old_rev:
        old_root = tempfile.mkdtemp(prefix="rgvlm_old_")
        archive = subprocess.run(["git", "archive", args.old_rev], cwd=root, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old_root], input=archive, check=True)
    results: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    for i in range(args.repeats):
        for tag, code in (("old", old_root), ("new", str(root))):
            if not code:
                continue
            with tempfile.TemporaryDirectory(prefix="bench_collect_") as tmp:
                res = run_collect(code, args, Path(tmp), tag)
            results[tag].append(res)
            print(f"round {i} {tag:3s}: {args.episodes} episodes in {res['wall_s']} s wall = {res['episodes_per_s']} episodes/s "
                  f"(cpu {res['cpu_s']} s, load {res['load_average_1min']})", flush=True)
    summary: dict[str, object] = {"args": dataclasses.asdict(args), "runs": results}
    if results["old"] and results["new"]:
        ratios = [n["episodes_per_s"] / o["episodes_per_s"] for n, o in zip(results["new"], results["old"], strict=True)]
        summary["speed_ratio_new_over_old"] = [round(r, 2) for r in ratios]
        print("new / old episodes/s:", ", ".join(f"{r:.2f}x" for r in ratios))
    print(json.dumps(summary, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

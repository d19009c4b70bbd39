"""Relabel pipeline speed and memory: episodes/s with the simulated LVLM, LVLM calls per episode, peak RSS.

Reads top to bottom: collect two procedural datasets (``--episodes`` and ``--large-episodes``, mixed
behaviour policies), then run each measurement of :func:`rgvlm_gym.rewards.relabel` in a child process of its
own (so its peak RSS is its own):

1. ``overhead``: sim latency 0 -- the pipeline's own cost (read, hash, label, write), no cache;
2. ``latency``: sim latency ``--latency`` with ``--concurrency`` episodes in flight, no cache; the limit is
   ``min(concurrency / (rounds * latency), max_concurrency / (latency * calls_per_episode))`` episodes/s
   (each episode takes 2 sequential rounds of calls; the client runs at most ``max_concurrency`` calls at once);
3. ``rss``: latency 0 on the small and on the large dataset: peak RSS must stay flat;
4. calls per episode with ``long_episodes="segments"`` (default) and ``"subsample"``.

Every figure comes from the simulated LVLM (``sim``): it measures the pipeline, not a model.

    python benchmarks/bench_relabel.py --out /tmp/bench_relabel.json
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
from typing import Any


@dataclass
class Args:
    episodes: int = 200
    """episodes of the small dataset (overhead, calls per episode, RSS)"""
    large_episodes: int = 2000
    """episodes of the large dataset (RSS; and the latency run, for a steady state)"""
    latency: float = 0.5
    """sim latency per call in the latency run, seconds"""
    concurrency: int = 32
    """episodes in flight (and the LVLM client's max_concurrency)"""
    workers: int = 2
    """collection worker processes"""
    seed: int = 0
    """collection seed"""
    out: str = ""
    """optional path of a JSON file for the metrics"""
    child: str = ""
    """(internal) run one measurement, given as JSON, and print its result as JSON"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(parser.parse_args()))


def _status_kib(pid: int | str, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One relabel run in this (fresh) process. Peak RSS: this process's ``VmHWM`` (reset by exec, unlike
    ``ru_maxrss``, which a child inherits from its parent) and, sampled every 50 ms, this process plus its
    children (the dataset writer process)."""
    import threading

    from rgvlm_gym.rewards import relabel

    rss_start = _status_kib("self", "VmRSS")
    peak_tree = [0]
    stop = threading.Event()

    def sample() -> None:
        me = os.getpid()
        while not stop.wait(0.05):
            tree = _status_kib(me, "VmRSS") + sum(_status_kib(c, "VmRSS") for c in _children(me))
            peak_tree[0] = max(peak_tree[0], tree)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    s = relabel(spec["src"], spec["out"], "rgvlm", lvlm=spec["lvlm"], concurrency=spec["concurrency"], cache=False,
                long_episodes=spec.get("long_episodes"), progress=False, force=True)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    return {
        "episodes": s.episodes, "steps": s.steps, "wall_s": wall, "episodes_per_s": s.episodes / wall,
        "calls": s.calls, "calls_per_episode": s.calls_per_episode, "labeled": s.labeled,
        "peak_rss_mib": _status_kib("self", "VmHWM") / 1024, "peak_rss_with_writer_mib": peak_tree[0] / 1024,
        "rss_after_imports_mib": rss_start / 1024, "cpu_s": sum(resource.getrusage(w)[0] + resource.getrusage(w)[1]
                                                                 for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)),
        "simulated": s.simulated,
    }


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp(prefix="bench-relabel-"))
    from rgvlm_gym.data import collect_dataset

    small, large = f"bench/relabel-{args.episodes}-v0", f"bench/relabel-{args.large_episodes}-v0"
    t0 = time.perf_counter()
    for ds_id, n in ((small, args.episodes), (large, args.large_episodes)):
        collect_dataset(ds_id, episodes=n, workers=args.workers, seed=args.seed, progress=False, force=True)
    print(f"collected in {time.perf_counter() - t0:.0f} s", flush=True)

    c = args.concurrency
    lat = args.latency
    results: dict[str, Any] = {"args": dataclasses.asdict(args), "note": "all figures: simulated LVLM (sim)"}
    runs = {
        "overhead": {"src": small, "out": "bench/o-v0", "lvlm": "sim:latency=0", "concurrency": c},
        "overhead_subsample": {"src": small, "out": "bench/os-v0", "lvlm": "sim:latency=0", "concurrency": c,
                               "long_episodes": "subsample"},
        "rss_large": {"src": large, "out": "bench/rl-v0", "lvlm": "sim:latency=0", "concurrency": c},
        "latency": {"src": large, "out": "bench/l-v0", "lvlm": f"sim:latency={lat}", "concurrency": c},
        "latency_subsample": {"src": small, "out": "bench/ls-v0", "lvlm": f"sim:latency={lat}", "concurrency": c,
                              "long_episodes": "subsample"},
    }
    for name, spec in runs.items():
        r = run_child(spec)
        if name.startswith("latency"):
            limit = min(c / (2 * lat), c / (lat * r["calls_per_episode"]))
            r["limit_episodes_per_s"] = limit
            r["fraction_of_limit"] = r["episodes_per_s"] / limit
        results[name] = r
        print(f"{name}: {json.dumps(r)} (simulated LVLM)", flush=True)
    results["rss_small_mib"] = results["overhead"]["peak_rss_with_writer_mib"]
    results["rss_large_mib"] = results["rss_large"]["peak_rss_with_writer_mib"]
    print(
        f"pipeline overhead (latency 0): {results['overhead']['episodes_per_s']:.1f} episodes/s; "
        f"latency {lat} s, concurrency {c}: {results['latency']['episodes_per_s']:.1f} episodes/s = "
        f"{results['latency']['fraction_of_limit']:.1%} of {results['latency']['limit_episodes_per_s']:.1f}; "
        f"calls/episode {results['overhead']['calls_per_episode']:.2f} (segments), "
        f"{results['overhead_subsample']['calls_per_episode']:.2f} (subsample); peak RSS {results['rss_small_mib']:.0f} MiB "
        f"({args.episodes} episodes) vs {results['rss_large_mib']:.0f} MiB ({args.large_episodes}), relabel process + writer process "
        f"(simulated LVLM)"
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

"""Gradient updates per second of DiscreteIQL vs d3rlpy's DiscreteCQL on CPU, side by side.

Both algorithms get the same ``LanguageConditionedEncoderFactory``, the same batch size and the same
``(image, instruction)`` tuple observations (uint8 frames + float32 sentence embeddings, the format
the rgvlm-gym dataset converter writes). Each measurement runs in a fresh child process so that its
peak resident memory is its own; rounds alternate between algorithms so that machine noise hits all
of them alike, and the median over rounds is reported.

    python benchmarks/bench_iql.py                       # defaults below
    python benchmarks/bench_iql.py --batch-size 256 --rounds 5 --json-out bench.json

An update is ``algo.update(batch)``: d3rlpy's numpy -> torch conversion plus one gradient step
(DiscreteIQL: twin Q + V + policy; DiscreteCQL: Double-DQN TD loss + conservative term). Sampling
the mini-batch from the replay buffer is excluded (batches are pre-sampled and cycled).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import inspect
import io
import json
import os
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any


@dataclass
class Args:
    batch_size: int = 64
    """mini-batch size, the same for every algorithm"""
    image_size: int = 64
    """frames are (3, image_size, image_size) uint8"""
    embedding_dim: int = 384
    """instruction embedding size (MiniLM: 384)"""
    n_actions: int = 200
    """number of discrete actions (ALFRED vocabularies: ~100-300)"""
    n_transitions: int = 512
    """transitions in the synthetic replay buffer"""
    batch_pool: int = 8
    """pre-sampled mini-batches cycled through during timing"""
    warmup_updates: int = 5
    """untimed updates before timing starts"""
    updates: int = 60
    """timed updates per measurement"""
    rounds: int = 3
    """alternating rounds per algorithm; the median is reported"""
    threads: int = 1
    """torch intra-op threads per child process (1: CPU-time figures stay meaningful on a shared machine)"""
    algos: str = "discrete_iql,discrete_cql,discrete_iql_separate"
    """comma-separated: discrete_iql (shared encoder), discrete_iql_separate (Q, V, pi encoders), discrete_cql"""
    seed: int = 0
    """seed for the data and the networks"""
    json_out: str = ""
    """optional path for the raw results as JSON"""


def parse_args() -> Args:
    """CLI from the dataclass; help strings are the field docstrings."""
    tree = ast.parse(inspect.getsource(Args))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {
        node.target.id: nxt.value.value
        for node, nxt in zip(body, body[1:], strict=False)
        if isinstance(node, ast.AnnAssign)
        and isinstance(nxt, ast.Expr)
        and isinstance(nxt.value, ast.Constant)
    }
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(f.default),
            default=f.default,
            help=docs.get(f.name, ""),
        )
    return Args(**vars(parser.parse_args()))


def make_config(name: str, args: Args) -> Any:
    import d3rlpy

    from rgvlm_gym.rl import DiscreteIQLConfig, LanguageConditionedEncoderFactory

    encoder = LanguageConditionedEncoderFactory()  # the library default, identical for every algorithm
    if name == "discrete_iql":
        return DiscreteIQLConfig(encoder_factory=encoder, batch_size=args.batch_size)
    if name == "discrete_iql_separate":
        return DiscreteIQLConfig(encoder_factory=encoder, batch_size=args.batch_size, share_encoder=False)
    if name == "discrete_cql":
        return d3rlpy.algos.DiscreteCQLConfig(encoder_factory=encoder, batch_size=args.batch_size)
    raise ValueError(
        f"Expected `algos` entries in discrete_iql, discrete_iql_separate, discrete_cql, actually: {name!r}"
    )


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(name: str, args: Args) -> dict[str, Any]:
    """Runs in a fresh process: build data and algorithm, time ``updates`` gradient steps."""
    import d3rlpy
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n = args.n_transitions
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = d3rlpy.dataset.MDPDataset(
            observations=[
                rng.integers(0, 256, size=(n, 3, args.image_size, args.image_size), dtype=np.uint8),
                rng.standard_normal((n, args.embedding_dim)).astype(np.float32),
            ],
            actions=rng.integers(0, args.n_actions, size=n),
            rewards=rng.random(n).astype(np.float32),
            terminals=(np.arange(n) % 32 == 31).astype(np.float32),
            action_space=d3rlpy.ActionSpace.DISCRETE,
            action_size=args.n_actions,
        )
    batches = [dataset.sample_transition_batch(args.batch_size) for _ in range(args.batch_pool)]
    rss_before = rss_mib()

    algo = make_config(name, args).create(device="cpu:0")
    shape = dataset.sample_transition().observation_signature.shape
    algo.create_impl(shape, args.n_actions)  # d3rlpy's build_with_dataset drops tuple shapes
    n_params = sum(p.numel() for m in algo.impl.modules.get_torch_modules().values() for p in m.parameters())
    for i in range(args.warmup_updates):
        algo.update(batches[i % len(batches)])

    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(args.updates):
        metrics = algo.update(batches[i % len(batches)])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    assert all(np.isfinite(v) for v in metrics.values())
    return {
        "algo": name,
        "updates_per_s": args.updates / elapsed,
        "updates_per_cpu_s": args.updates / cpu,
        "ms_per_update": 1000 * elapsed / args.updates,
        "peak_rss_mib": peak,
        "peak_over_data_mib": peak - rss_before,
        "parameters": n_params,
    }


def main() -> None:
    args = parse_args()
    names = [a.strip() for a in args.algos.split(",") if a.strip()]
    spawn = get_context("spawn")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                result = pool.submit(measure, name, args).result()
            runs[name].append(result)
            print(
                f"round {round_index + 1}/{args.rounds} {name:<22} {result['updates_per_s']:7.2f} updates/s "
                f"{result['updates_per_cpu_s']:7.2f} updates/CPU-s",
                flush=True,
            )

    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "updates_per_s": statistics.median(r["updates_per_s"] for r in results),
            "updates_per_s_all": [round(r["updates_per_s"], 2) for r in results],
            "updates_per_cpu_s": statistics.median(r["updates_per_cpu_s"] for r in results),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "peak_over_data_mib": max(r["peak_over_data_mib"] for r in results),
            "parameters": results[0]["parameters"],
        }

    import torch

    print()
    print(
        f"batch {args.batch_size}, frames 3x{args.image_size}x{args.image_size}, embedding {args.embedding_dim}, "
        f"{args.n_actions} actions, {args.threads} threads, {args.updates} timed updates x {args.rounds} rounds; "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(
        "| algorithm | updates/s wall (median) | wall, all rounds | updates per CPU-second (median) "
        "| peak RSS MiB | peak over data MiB | parameters |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['updates_per_s']:.2f} | {s['updates_per_s_all']} | {s['updates_per_cpu_s']:.2f} | "
            f"{s['peak_rss_mib']:.0f} | {s['peak_over_data_mib']:.0f} | {s['parameters']:,} |"
        )
    if "discrete_iql" in summary and "discrete_cql" in summary:
        iql, cql = summary["discrete_iql"], summary["discrete_cql"]
        ratios = {
            "wall": iql["updates_per_s"] / cql["updates_per_s"],
            "cpu": iql["updates_per_cpu_s"] / cql["updates_per_cpu_s"],
        }
        summary["ratio_iql_over_cql"] = ratios
        print(
            f"\nDiscreteIQL / DiscreteCQL updates/s ratio: {ratios['wall']:.2f} wall-clock, "
            f"{ratios['cpu']:.2f} per CPU-second (target >= 1.0)"
        )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": dataclasses.asdict(args), "summary": summary, "runs": runs}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())

"""DiscreteIQL updates/s with rgvlm-gym's default threads vs torch's, idle and beside one competing CPU job.

One process per measurement (a torch process cannot change its inter-op threads once started):

    python benchmarks/bench_threads.py --seconds 30

prints a table of updates/s for: idle with the default (free cores), idle with torch's default (every
core), and each of those beside a competitor -- another training process using torch's default threads, the
situation that made ``rgvlm train`` fall from 56 to 1.17 updates/s. Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, os, sys, time
import numpy as np
import d3rlpy
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer, Signature
from rgvlm_gym.rl import DiscreteIQLConfig
from rgvlm_gym.rl.training import TrainConfig
from rgvlm_gym.rl.encoders import LanguageConditionedEncoderFactory
from rgvlm_gym.rl.threads import set_num_threads
import torch

threads, seconds = sys.argv[1], float(sys.argv[2])
n = set_num_threads(None if threads == "default" else int(threads)) if threads != "torch" else torch.get_num_threads()
rng = np.random.default_rng(0)
A, T = 229, 20
eps = []
for _ in range(50):
    obs = [rng.integers(0, 256, (T, 3, 64, 64), dtype=np.uint8), rng.standard_normal((T, 384)).astype(np.float32),
           (rng.random((T, A)) < 0.1).astype(np.float32)]
    eps.append(Episode(observations=obs, actions=rng.integers(0, A, (T, 1)), rewards=rng.random((T, 1)).astype(np.float32), terminated=True))
buf = ReplayBuffer(InfiniteBuffer(), episodes=eps,
    observation_signature=Signature(dtype=[np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float32)], shape=[(3, 64, 64), (384,), (A,)]),
    action_signature=Signature(dtype=[np.dtype(np.int64)], shape=[(1,)]), reward_signature=Signature(dtype=[np.dtype(np.float32)], shape=[(1,)]),
    action_space=ActionSpace.DISCRETE, action_size=A)
r = TrainConfig()
algo = DiscreteIQLConfig(encoder_factory=LanguageConditionedEncoderFactory(filters=[list(f) for f in r.filters], feature_size=r.feature_size),
                         batch_size=r.batch_size).create(device="cpu")
algo.build_with_dataset(buf)
for _ in range(5):
    algo.update(buf.sample_transition_batch(r.batch_size))
start, k = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    algo.update(buf.sample_transition_batch(r.batch_size)); k += 1
print(json.dumps({"threads": n, "updates_per_s": k / (time.perf_counter() - start)}))
"""


def measure(threads: str, seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RGVLM_GYM_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", WORKER, threads, str(seconds)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    rows = []
    for label, threads in (("idle, rgvlm default", "default"), ("idle, torch default", "torch")):
        rows.append((label, measure(threads, args.seconds)))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    competitor = subprocess.Popen([sys.executable, "-c", WORKER, "torch", str(10 * args.seconds)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)  # let it start working
        for label, threads in (("beside a torch-default job, rgvlm default", "default"), ("beside a torch-default job, torch default", "torch")):
            rows.append((label, measure(threads, args.seconds)))
    finally:
        competitor.kill()
        competitor.wait()
    print(f"{'setting':48s} threads  updates/s")
    for label, r in rows:
        print(f"{label:48s} {r['threads']:7d}  {r['updates_per_s']:9.1f}")
    loaded = {label: r["updates_per_s"] for label, r in rows}
    ratio = loaded["beside a torch-default job, rgvlm default"] / loaded["beside a torch-default job, torch default"]
    print(f"loaded: rgvlm default / torch default = {ratio:.2f}x")


if __name__ == "__main__":
    main()

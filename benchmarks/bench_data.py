"""Minari datasets of ALFRED tasks: collection speed, disk size, frame codecs, and load-to-d3rlpy cost.

Reads top to bottom (CleanRL style): hyper-parameters in ``Args``, then

1. frame codecs on real frames: bytes and ms per frame for PNG, JPEG (Minari's ``jpeg_encoding``), lossless
   WebP and deflate on raw pixels (what the dataset stores), at the LVLM size and the RL size;
2. ``rgvlm collect`` of ``--episodes`` episodes (1-6 sub-task ALFRED tasks, mixed policies) on
   ``--workers`` processes: episodes/s, success per policy, MB on disk, MB per 1,000 episodes;
3. ``to_d3rlpy`` of that dataset in a fresh child process (cold and warm embedding cache): seconds and peak
   RSS (``ru_maxrss`` of the child).

Run (repository root, venv active)::

    python benchmarks/bench_data.py --alfred-dir ../shared/alfred/json_2.1.0 --json-out /tmp/bench_data.json
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Args:
    alfred_dir: str = "../shared/alfred/json_2.1.0"
    """ALFRED json_2.1.0 folder"""
    split: str = "valid_seen"
    """ALFRED split to collect from"""
    subtasks: str = "1-6"
    """prefix tasks with this many sub-tasks"""
    episodes: int = 1000
    """episodes to collect"""
    workers: int = 2
    """collection worker processes"""
    policy: str = "mixed"
    """behaviour policy"""
    seed: int = 0
    """collection seed"""
    codec_frames: int = 300
    """frames used for the codec comparison"""
    json_out: str = ""
    """write the figures here as JSON too"""
    keep: bool = False
    """keep the temporary Minari folder (printed)"""


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", default=f.default)
        else:
            p.add_argument(flag, type=type(f.default), default=f.default)
    return Args(**vars(p.parse_args()))


def codec_table(frames: list[np.ndarray]) -> dict[str, dict[str, float]]:
    from PIL import Image

    def pil(fmt: str, **kw):
        def enc(f: np.ndarray) -> bytes:
            b = io.BytesIO()
            Image.fromarray(f).save(b, format=fmt, **kw)
            return b.getvalue()
        return enc

    codecs = {
        "raw": lambda f: f.tobytes(),
        "deflate-4 raw (stored)": lambda f: zlib.compress(f.tobytes(), 4),
        "PNG": pil("PNG"),
        "JPEG q75 (Minari jpeg_encoding)": pil("JPEG"),
        "WebP lossless m0": pil("WEBP", lossless=True, method=0),
    }
    out = {}
    for name, enc in codecs.items():
        t = time.perf_counter()
        sizes = [len(enc(f)) for f in frames]
        out[name] = {"KiB": float(np.mean(sizes)) / 1024, "ms": (time.perf_counter() - t) / len(frames) * 1e3}
    j = [np.asarray(Image.open(io.BytesIO(pil("JPEG")(f)))).astype(np.int16) for f in frames]
    out["JPEG q75 (Minari jpeg_encoding)"]["mean_abs_error"] = float(np.mean([np.abs(a - f).mean() for a, f in zip(j, frames, strict=True)]))
    return out


LOAD_CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
from rgvlm_gym.data import to_d3rlpy
buf = to_d3rlpy(sys.argv[1])
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "transitions": buf.transition_count, "episodes": len(buf.episodes)}))
"""


def main() -> None:
    args = parse_args()
    import gymnasium as gym

    import rgvlm_gym
    from rgvlm_gym.data.collect import collect_dataset, summarize

    root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    os.environ["RGVLM_GYM_CACHE_DIR"] = str(root / "cache")
    results: dict = {"args": dataclasses.asdict(args), "version": rgvlm_gym.__version__, "cpus": os.cpu_count()}

    # 1. codecs on real frames of expert episodes
    env = gym.make("rgvlm_gym/AlfredLite-v1", tasks="alfred", alfred_dir=args.alfred_dir, split=args.split, subtasks=args.subtasks)
    u = env.unwrapped
    big, small = [], []
    i = 0
    while len(big) < args.codec_frames:
        obs, _ = env.reset(seed=i, options={"task_index": (i * 37) % u.num_tasks})
        big.append(u.render_frame(224).copy())
        small.append(obs["image"])
        for a in u.expert_plan():
            obs, *_ = env.step(a)
            big.append(u.render_frame(224).copy())
            small.append(obs["image"])
        i += 1
    results["codecs_224"] = codec_table(big[: args.codec_frames])
    results["codecs_64"] = codec_table(small[: args.codec_frames])
    for size in ("224", "64"):
        print(f"frame codecs, {size} px ({args.codec_frames} frames of expert episodes):")
        for name, r in results[f"codecs_{size}"].items():
            extra = f", mean |error| {r['mean_abs_error']:.2f}" if "mean_abs_error" in r else ""
            print(f"  {name:<34} {r['KiB']:7.2f} KiB  {r['ms']:6.2f} ms{extra}")

    # 2. collection
    did = f"bench/alfred-{args.split}-{args.policy}-v0"
    t = time.perf_counter()
    ds = collect_dataset(did, episodes=args.episodes, tasks="alfred", alfred_dir=args.alfred_dir, split=args.split,
                         subtasks=args.subtasks, policy=args.policy, seed=args.seed, workers=args.workers, progress=True)
    dt = time.perf_counter() - t
    size_mb = sum(p.stat().st_size for p in Path(ds.storage.data_path).rglob("*") if p.is_file()) / 1e6
    results["collect"] = {"seconds": dt, "episodes_per_s": args.episodes / dt, "steps": ds.total_steps,
                          "frames": ds.total_steps + ds.total_episodes, "mb": size_mb,
                          "mb_per_1000_episodes": size_mb * 1000 / args.episodes, "summary": summarize(ds)}
    c = results["collect"]
    print(f"collect: {args.episodes} episodes, {c['steps']} steps in {dt:.1f} s = {c['episodes_per_s']:.1f} episodes/s "
          f"on {args.workers} workers; {size_mb:.1f} MB = {c['mb_per_1000_episodes']:.1f} MB per 1,000 episodes "
          f"({size_mb * 1e6 / c['frames'] / 1024:.1f} KiB per stored step incl. both images)")
    for k, s in c["summary"].items():
        print(f"  {k:<8} {int(s['episodes']):>5} episodes  success {s['success']:6.1%}  steps {s['steps']:5.1f}")

    # 3. load into a d3rlpy buffer, in a fresh process (cold, then warm embedding cache)
    for run in ("cold cache", "warm cache"):
        out = subprocess.run([sys.executable, "-c", LOAD_CHILD, did], capture_output=True, text=True, env=os.environ, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[f"load_{run.split()[0]}"] = r
        print(f"to_d3rlpy ({run}): {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, {r['transitions']} transitions")
    results["child_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    if args.keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

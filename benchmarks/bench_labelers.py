"""Label quality and cost of every labeler, side by side (all LVLM figures SIMULATED).

Reads top to bottom: collect one dataset (ALFRED ``--split`` prefix tasks with ``--subtasks`` sub-tasks when
the ALFRED data is present, else procedural tasks; mixed behaviour policies), then relabel it with every
labeler through :func:`rgvlm_gym.rewards.relabel` (no label cache, so every call is made) and record from
each run's summary:

- label quality against the dense progress oracle: Spearman (per step, pooled) and VOC (GVL's value-order
  correlation, mean over episodes), overall and per number of sub-tasks k;
- cost per 1,000 episodes: LVLM calls, prompt / completion tokens, images, model forward passes, reward-model
  training seconds, and wall seconds (measured beside other jobs on a shared machine: indicative only).

The LVLM labelers (``rgvlm``, ``success``, ``rlvlmf``, ``rating``, ``gvl``) run on the simulated LVLM at the
default profile and at two other noise levels (``--sims``): **every quality figure they give is simulated**
(the sim answers from ground truth through a documented error model; it is not a model's judgement).
The embedding labelers (``clip``, ``blip2``, ``roboclip``) run on tiny *random* models (no pretrained
weights can be downloaded here): only their cost in forward passes means anything; their quality is not
measured (the script reports none).

    python benchmarks/bench_labelers.py --episodes 300 --out /tmp/bench_labelers.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Args:
    episodes: int = 300
    """episodes of the dataset"""
    split: str = "valid_seen"
    """ALFRED split (when the ALFRED data is present)"""
    subtasks: str = "1-6"
    """ALFRED prefix tasks with this many sub-tasks"""
    frame_size: int = 224
    """side of the stored LVLM frames (>= 224; the sim never looks at pixels, it counts images)"""
    sims: str = "sim;sim:profile=default,noise=0.5;sim:profile=default,noise=3"
    """';'-separated sim specs: the default profile first, then two noise levels"""
    labelers: str = "oracle,rgvlm,success,rlvlmf,rating,gvl,clip,blip2,roboclip"
    """labelers to run"""
    variants: str = ""
    """';'-separated extra runs at the first sim spec, 'name:key=value,...' (e.g. 'rlvlmf:queries_per_episode=8')"""
    seed: int = 0
    """collection seed"""
    out: str = ""
    """optional path of a JSON file for every figure"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(parser.parse_args()))


def fmt(x: float, digits: int = 3) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def main() -> None:
    args = parse_args()
    os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp(prefix="bench-labelers-minari-"))
    os.environ.setdefault("RGVLM_GYM_CACHE_DIR", tempfile.mkdtemp(prefix="bench-labelers-cache-"))
    from rgvlm_gym.data import collect_dataset
    from rgvlm_gym.rewards import relabel
    from rgvlm_gym.rewards.embedding import save_tiny_model

    alfred = Path(__file__).resolve().parents[1].parent / "shared" / "alfred" / "json_2.1.0"
    src = "bench/labelers-src-v0"
    t0 = time.perf_counter()
    if alfred.is_dir():
        collect_dataset(src, episodes=args.episodes, tasks="alfred", alfred_dir=str(alfred), split=args.split,
                        subtasks=args.subtasks, policy="mixed", seed=args.seed, workers=1, frame_size=args.frame_size,
                        progress=False)
        data = f"ALFRED {args.split} prefixes, k = {args.subtasks}"
    else:
        collect_dataset(src, episodes=args.episodes, policy="mixed", seed=args.seed, workers=1,
                        frame_size=args.frame_size, progress=False)
        data = "procedural tasks"
    print(f"collected {args.episodes} mixed episodes ({data}) in {time.perf_counter() - t0:.0f} s")

    models = Path(tempfile.mkdtemp(prefix="bench-labelers-models-"))
    sims = [s for s in args.sims.split(";") if s]
    rows: list[dict[str, Any]] = []
    todo = [(n, {}) for n in args.labelers.split(",") if n]
    for variant in [v for v in args.variants.split(";") if v]:
        vname, _, kv = variant.partition(":")
        todo.append((vname, {k: json.loads(v) if v[:1].isdigit() else v for k, _, v in (x.partition("=") for x in kv.split(",") if x)}))
    for name, extra in todo:
        runs: list[tuple[str, dict[str, Any], str | None]]
        if name in ("clip", "blip2", "roboclip"):
            runs = [("tiny random model", {"model": save_tiny_model(name, str(models / name))}, None)]
        elif name == "oracle":
            runs = [("ground truth", {}, None)]
        elif extra:
            runs = [(f"{sims[0]} {extra}", extra, sims[0])]
        else:
            runs = [(spec, {}, spec) for spec in sims]
        for setting, labeler_args, lvlm in runs:
            t0 = time.perf_counter()
            s = relabel(src, f"bench/labelers-{name}-v0", name, lvlm=lvlm, cache=False, progress=False, force=True,
                        labeler_args=labeler_args)
            wall = time.perf_counter() - t0
            per = 1000.0 / s.episodes
            q = s.quality
            measurable = name not in ("clip", "blip2", "roboclip")
            row: dict[str, Any] = {
                "labeler": name,
                "setting": setting,
                "simulated": s.simulated,
                "episodes": s.episodes,
                "labeled": s.labeled,
                "spearman": q.overall.spearman if q and measurable else None,
                "voc": q.overall.voc if q and measurable else None,
                "oracle_voc": q.overall.oracle_voc if q else None,
                "by_k": {k: {"spearman": r.spearman, "voc": r.voc, "episodes": r.episodes}
                         for k, r in (q.by("n_subtasks").items() if q and measurable else [])},
                "per_1000": {
                    "calls": s.calls * per,
                    "prompt_tokens": s.prompt_tokens * per,
                    "completion_tokens": s.completion_tokens * per,
                    "images": s.images * per,
                    "forward_passes": s.forward_passes * per,
                    "train_s": s.train_s * per,
                    "wall_s": wall * per,
                },
            }
            rows.append(row)
            c = row["per_1000"]
            print(f"{name:9s} {setting:38s} spearman {fmt(row['spearman'])} voc {fmt(row['voc'])} | per 1000 ep: "
                  f"calls {c['calls']:.0f} tokens {c['prompt_tokens'] + c['completion_tokens']:.0f} images {c['images']:.0f} "
                  f"fwd {c['forward_passes']:.0f} train {c['train_s']:.1f} s wall {c['wall_s']:.0f} s"
                  + (" (SIMULATED)" if s.simulated else ""), flush=True)
    result = {"args": dataclasses.asdict(args), "data": data, "rows": rows,
              "note": "LVLM quality figures are SIMULATED (sim answers from ground truth); embedding labelers ran "
                      "tiny random models, so only their forward-pass counts mean anything; wall seconds measured "
                      "beside other jobs"}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()

"""``rgvlm quickstart``: the whole RG-VLM pipeline, small, in a few minutes on a laptop CPU.

1. collect a mixed-quality Minari dataset of procedural 1-3 sub-task tasks;
2. relabel it with RG-VLM rewards (the simulated LVLM by default: a stand-in, labelled as such; pass
   ``--lvlm openai:<model>[@url]`` or ``--lvlm hf:<path>`` for a real one);
3. train DiscreteIQL twice: on the sparse reward, and on sparse + lam * RG-VLM;
4. evaluate both by number of sub-tasks, from the dataset's and from randomized initial states;
5. write ``comparison.png`` (success by sub-task count) and ``comparison.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="rgvlm-quickstart", help="folder for models, evaluations and the comparison figure")
    p.add_argument("--lvlm", default="sim", help="LVLM spec for relabeling (default: the simulated LVLM)")
    p.add_argument("--episodes", type=int, default=300, help="episodes to collect")
    p.add_argument("--num-tasks", type=int, default=30, help="procedural tasks in the suite")
    p.add_argument("--subtasks", default="1-3", help="sub-task counts")
    p.add_argument("--steps", type=int, default=2000, help="training steps per model")
    p.add_argument("--lam", type=float, default=1.0, help="weight of the RG-VLM reward in sparse + lam * rgvlm")
    p.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per sub-task count and initial-state kind")
    p.add_argument("--seed", type=int, default=0, help="seed of collection, training and evaluation")
    p.add_argument("--namespace", default="quickstart", help="Minari namespace of the two datasets")
    p.add_argument("--force", action="store_true", help="recollect / relabel even if the datasets exist")


def _bar_chart(path: Path, rows: dict[str, dict[str, float]], title: str) -> None:
    """Grouped bars of success rate by sub-task count (PIL only: no plotting dependency)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=14)
    except TypeError:
        font = ImageFont.load_default()
    keys = sorted({k for r in rows.values() for k in r}, key=lambda k: (k.split()[0], int(k.split("=")[-1])))
    colours = [(120, 120, 130), (46, 134, 222), (230, 126, 34), (39, 174, 96)]
    left, bottom, top = 60, 70, 50
    W, H = max(120 + 70 * len(keys), left + 230 * len(rows) + 20), 380
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 12), title, fill="black", font=font)
    plot_h = H - top - bottom
    for i in range(0, 11, 2):
        y = top + plot_h * (1 - i / 10)
        d.line([(left, y), (W - 20, y)], fill=(225, 225, 225))
        d.text((8, y - 8), f"{i * 10}%", fill="black", font=font)
    n = len(rows)
    group_w = (W - left - 20) / max(1, len(keys))
    bar_w = (group_w - 14) / max(1, n)
    for gi, key in enumerate(keys):
        x0 = left + gi * group_w + 7
        for ri, r in enumerate(rows.values()):
            v = r.get(key, 0.0)
            x = x0 + ri * bar_w
            d.rectangle([x, top + plot_h * (1 - v), x + bar_w - 3, top + plot_h], fill=colours[ri % len(colours)])
        d.text((x0, H - bottom + 6), key.replace("randomized", "rand.").replace("dataset", "data"), fill="black", font=font)
    for ri, name in enumerate(rows):
        d.rectangle([left + ri * 230, H - 28, left + ri * 230 + 14, H - 14], fill=colours[ri % len(colours)])
        d.text((left + ri * 230 + 20, H - 30), name, fill="black", font=font)
    img.save(path)


def run(args: argparse.Namespace) -> int:
    import d3rlpy
    import torch

    from rgvlm_gym.data import collect_dataset, to_d3rlpy
    from rgvlm_gym.data.storage import _dataset_dir
    from rgvlm_gym.rewards.relabel import relabel
    from rgvlm_gym.rl import LanguageConditionedEncoderFactory
    from rgvlm_gym.rl.algos import make_algo_config
    from rgvlm_gym.rl.evaluation import d3rlpy_policy, evaluate, random_policy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    simulated = args.lvlm.split(":", 1)[0] == "sim"
    tag = " (SIMULATED LVLM: a stand-in for CI and controlled studies, not an LVLM result)" if simulated else ""
    src, dst = f"{args.namespace}/procedural-mixed-v0", f"{args.namespace}/procedural-mixed-rgvlm-v0"
    t0 = time.perf_counter()

    print(f"[1/4] collecting {args.episodes} episodes into {src}")
    if args.force or not _dataset_dir(src).exists():
        collect_dataset(src, episodes=args.episodes, tasks="procedural", num_tasks=args.num_tasks, subtasks=args.subtasks,
                        policy="mixed", seed=args.seed, force=args.force)
    else:
        print(f"      {src} exists: reused (--force to recollect)")

    print(f"[2/4] relabeling with RG-VLM rewards from {args.lvlm}{tag}")
    if args.force or not _dataset_dir(dst).exists():
        summary = relabel(src, dst, "rgvlm", lvlm=args.lvlm, lam=args.lam, force=args.force)
        print(summary.text())
    else:
        print(f"      {dst} exists: reused (--force to relabel)")

    torch.set_num_threads(max(1, torch.get_num_threads()))
    env_kwargs: dict[str, Any] = {"tasks": "procedural", "num_tasks": args.num_tasks, "subtasks": args.subtasks}
    results: dict[str, Any] = {}
    models = {"IQL, sparse reward": (src, "rewards"), f"IQL, sparse + {args.lam:g} x RG-VLM": (dst, "rewards")}
    for i, (name, (dataset, column)) in enumerate(models.items()):
        print(f"[3/4] training {name} on {dataset} ({args.steps} steps)")
        buffer = to_d3rlpy(dataset, reward=column)
        d3rlpy.seed(args.seed)
        encoder = LanguageConditionedEncoderFactory(filters=[[16, 8, 4], [32, 4, 2]], feature_size=128)
        algo = make_algo_config("iql", encoder_factory=encoder, batch_size=64, actor_learning_rate=1e-3,
                                critic_learning_rate=1e-3).create()
        algo.fit(buffer, n_steps=args.steps, n_steps_per_epoch=args.steps, show_progress=True, save_interval=10**9,
                 logger_adapter=d3rlpy.logging.NoopAdapterFactory())
        algo.save(str(out / f"model_{i}.d3"))
        print(f"[4/4] evaluating {name}")
        report = evaluate(d3rlpy_policy(algo), env_kwargs, episodes_per_k=args.eval_episodes, seeds=(args.seed,), progress=True)
        report.write(out / f"evaluation_{i}")
        results[name] = report
    results["random policy"] = evaluate(random_policy(args.seed), env_kwargs, episodes_per_k=args.eval_episodes, seeds=(args.seed,))

    rows: dict[str, dict[str, float]] = {}
    for name, report in results.items():
        rows[name] = {f"{'randomized' if r else 'dataset'} k={k}": m["success"]["rate"] for (r, k), m in report.breakdown(("randomized", "n_subtasks")).items()}
    print(f"\nSuccess rate by initial state and number of sub-tasks{tag}:")
    keys = list(next(iter(rows.values())))
    print(f"{'':34s}" + "".join(f"{k:>17s}" for k in keys))
    for name, r in rows.items():
        print(f"{name:34s}" + "".join(f"{r[k]:17.0%}" for k in keys))
    _bar_chart(out / "comparison.png", rows, f"Success by sub-task count{' (simulated LVLM)' if simulated else ''}")
    (out / "comparison.json").write_text(json.dumps({"lvlm": args.lvlm, "simulated": simulated, "success": rows,
                                                     "args": vars(args)}, indent=1, default=str))
    print(f"\nwrote {out / 'comparison.png'} and {out / 'comparison.json'} in {time.perf_counter() - t0:.0f} s")
    return 0

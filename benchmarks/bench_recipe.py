"""The learning-recipe search of issue 9: train DiscreteIQL on ALFRED train-split prefixes, evaluate on valid_seen.

Reads top to bottom (CleanRL style): arguments -> replay buffer -> algorithm -> fit, evaluating every
``--eval-every`` steps on held-out ALFRED valid_seen prefix tasks (k = 1..6, the dataset's initial states,
decoding over admissible actions) -> one JSON line of results and a learning curve.

    python benchmarks/bench_recipe.py --dataset exp/train16-oracle-v0 --reward lvlm_rewards --steps 6000 \
        --masks --eval-every 1000 --out /tmp/recipe/oracle.json

Figures it produced are in benchmarks/RESULTS.md ("Learning recipe").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--reward", default="rewards")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--masks", action="store_true", help="action masks as input + masked policy")
    p.add_argument("--action-text", action="store_true", help="score actions through their phrase embeddings")
    p.add_argument("--no-decode-mask", action="store_true", help="evaluate without masking inadmissible actions")
    p.add_argument("--filters", default="32,8,4;64,4,2;64,3,1")
    p.add_argument("--feature-size", type=int, default=256)
    p.add_argument("--expectile", type=float, default=0.7)
    p.add_argument("--weight-temp", type=float, default=3.0)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--eval-per-k", type=int, default=10)
    p.add_argument("--eval-split", default="valid_seen")
    p.add_argument("--also-train-split", action="store_true",
                   help="at the end, also evaluate on train-split tasks (the generalisation gap)")
    p.add_argument("--alfred-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/alfred/json_2.1.0"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    return p.parse_args()


def evaluate_masked(algo, envs, tasks, embed, masks_in: bool, decode_mask: bool) -> dict:
    """Lockstep rollouts of ``algo`` on ``tasks`` (task indices); greedy over admissible actions."""
    import torch
    from d3rlpy.torch_utility import convert_to_torch_recursively

    rows = []
    for start in range(0, len(tasks), len(envs)):
        batch = tasks[start : start + len(envs)]
        live = []
        for env, (seed, idx) in zip(envs, batch, strict=False):
            obs, info = env.reset(seed=seed, options={"task_index": idx})
            live.append({"env": env, "obs": obs, "info": info, "steps": 0, "invalid": 0, "done": False})
        while not all(s["done"] for s in live):
            act = [s for s in live if not s["done"]]
            images = np.stack([s["obs"]["image"].transpose(2, 0, 1) for s in act])
            emb = np.stack([embed(s["obs"]["instruction"]) for s in act]).astype(np.float32)
            mask = np.stack([s["info"]["action_mask"] for s in act]).astype(np.float32)
            x = [images, emb, mask] if masks_in else [images, emb]
            with torch.no_grad():
                xt = convert_to_torch_recursively(x, algo.impl.device)
                logits = algo.impl.policy_logits(xt).cpu().numpy()
            if decode_mask:
                logits = np.where(mask > 0.5, logits, -np.inf)
            for s, a in zip(act, logits.argmax(1), strict=True):
                obs, _, term, trunc, info = s["env"].step(int(a))
                s["obs"], s["info"] = obs, info
                s["steps"] += 1
                s["invalid"] += info["action_error"] is not None
                s["done"] = term or trunc
        for s in live:
            done, k = s["info"]["subtask_progress"]
            rows.append((k, done / k, float(s["info"]["success"]), s["invalid"], s["steps"]))
    arr = np.array(rows)
    out = {"completion_by_k": {}, "success_by_k": {}}
    for k in sorted({int(r[0]) for r in rows}):
        sel = arr[:, 0] == k
        out["completion_by_k"][k] = round(float(arr[sel, 1].mean()), 3)
        out["success_by_k"][k] = round(float(arr[sel, 2].mean()), 3)
    long = arr[:, 0] >= 4
    out["completion_k4_6"] = round(float(arr[long, 1].mean()), 3)
    out["completion"] = round(float(arr[:, 1].mean()), 3)
    out["success"] = round(float(arr[:, 2].mean()), 3)
    out["invalid_rate"] = round(float(arr[:, 3].sum() / arr[:, 4].sum()), 3)
    return out


def main() -> None:
    args = parse()
    import d3rlpy
    import gymnasium as gym

    import rgvlm_gym  # noqa: F401
    from rgvlm_gym.data import dataset_info, to_d3rlpy
    from rgvlm_gym.data.embeddings import InstructionEmbedder
    from rgvlm_gym.rl import DiscreteIQLConfig, LanguageConditionedEncoderFactory
    from rgvlm_gym.rl.threads import set_num_threads

    threads = set_num_threads(args.threads)
    t0 = time.perf_counter()
    buffer = to_d3rlpy(args.dataset, reward=args.reward, action_masks=args.masks)
    load_s = time.perf_counter() - t0
    d3rlpy.seed(args.seed)
    filters = [[int(v) for v in f.split(",")] for f in args.filters.split(";")]
    algo = DiscreteIQLConfig(
        encoder_factory=LanguageConditionedEncoderFactory(filters=filters, feature_size=args.feature_size),
        batch_size=args.batch_size, actor_learning_rate=args.lr, critic_learning_rate=args.lr,
        expectile=args.expectile, weight_temp=args.weight_temp, gamma=args.gamma,
        action_names=list(dataset_info(args.dataset)["action_names"]) if args.action_text else [],
    ).create(device="cpu")

    env_kwargs = {"tasks": "alfred", "alfred_dir": args.alfred_dir, "split": args.eval_split, "subtasks": "1-6"}
    envs = [gym.make("rgvlm_gym/AlfredLite-v1", **env_kwargs).unwrapped for _ in range(30)]
    rng = np.random.default_rng(1234)
    by_k: dict[int, list[int]] = {}
    for i, t in enumerate(envs[0].suite):
        by_k.setdefault(t.n_subtasks, []).append(i)
    tasks = [(int(rng.integers(1 << 30)), int(i)) for k in sorted(by_k) for i in rng.choice(by_k[k], args.eval_per_k, replace=False)]
    embedder = InstructionEmbedder("minilm")
    table: dict[str, np.ndarray] = {}

    def embed(text: str) -> np.ndarray:
        if text not in table:
            table[text] = embedder([text])[0]
        return table[text]

    curve = []
    train_s = 0.0
    t_fit = time.perf_counter()

    def callback(algo_, epoch: int, step: int) -> None:
        nonlocal train_s, t_fit
        if step % args.eval_every == 0 or step == args.steps:
            train_s += time.perf_counter() - t_fit
            res = evaluate_masked(algo_, envs, tasks, embed, args.masks, not args.no_decode_mask)
            curve.append({"step": step, "train_s": round(train_s, 1), **res})
            print(json.dumps(curve[-1]), flush=True)
            t_fit = time.perf_counter()

    algo.fit(buffer, n_steps=args.steps, n_steps_per_epoch=min(args.steps, 1000), show_progress=False,
             save_interval=10**9, callback=callback, experiment_name="recipe", with_timestamp=False,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    final = dict(curve[-1])
    if args.also_train_split:
        train_envs = [gym.make("rgvlm_gym/AlfredLite-v1", **{**env_kwargs, "split": "train"}).unwrapped for _ in range(30)]
        by_k_train: dict[int, list[int]] = {}
        for i, t in enumerate(train_envs[0].suite):
            by_k_train.setdefault(t.n_subtasks, []).append(i)
        train_tasks = [(int(rng.integers(1 << 30)), int(i)) for k in sorted(by_k_train)
                       for i in rng.choice(by_k_train[k], args.eval_per_k, replace=False)]
        final["train_split"] = evaluate_masked(algo, train_envs, train_tasks, embed, args.masks, not args.no_decode_mask)
        print(json.dumps({"train_split": final["train_split"]}), flush=True)
    result = {"args": vars(args), "threads": threads, "load_s": round(load_s, 1), "train_s": round(train_s, 1),
              "updates_per_s": round(args.steps / max(train_s, 1e-9), 1), "curve": curve, "final": final}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

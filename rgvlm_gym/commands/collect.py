"""``rgvlm collect``: collect AlfredLite episodes with behaviour policies into a Minari dataset.

Example::

    rgvlm collect --tasks alfred --alfred-dir path/to/json_2.1.0 --split valid_seen \\
        --subtasks 1-6 --episodes 200 --policy mixed --dataset-id rgvlm/alfred-valid-mixed-v0

Two worker processes by default (``--workers``); the content depends on ``--seed`` only, not on the
number of workers. Ends with the success rate per behaviour policy. The dataset is written atomically:
Ctrl-C or a crash leaves nothing under the id.
"""

from __future__ import annotations

import argparse
import time

__all__ = ["add_arguments", "format_summary", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rgvlm_gym.data.policies import DEFAULT_MIX, POLICY_NAMES

    p.add_argument("--tasks", choices=("procedural", "alfred"), default="procedural", help="task source")
    p.add_argument("--alfred-dir", default=None, help="ALFRED json_2.1.0 folder (with --tasks alfred; default: $RGVLM_GYM_ALFRED_DIR)")
    p.add_argument("--split", default="valid_seen", help="ALFRED split (with --tasks alfred)")
    p.add_argument("--subtasks", default=None, help="prefix tasks with this many sub-tasks, e.g. '1-6' (default: whole tasks)")
    p.add_argument("--randomize-init", action="store_true", help="randomized initial states")
    p.add_argument("--num-tasks", type=int, default=1000, help="size of the procedural task suite")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes")
    p.add_argument("--policy", choices=POLICY_NAMES, default="mixed", help="behaviour policy ('mixed' draws one per episode)")
    p.add_argument("--mix", default=None,
                   help="ratios for --policy mixed as kind=weight,... (default: " + ",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items()) + ")")
    p.add_argument("--dataset-id", required=True, help="Minari dataset id, namespace/name-vN")
    p.add_argument("--seed", type=int, default=0, help="collection seed: same seed, same dataset")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--frame-size", type=int, default=224, help="side of the stored LVLM frames (>= 224)")
    p.add_argument("--image-size", type=int, default=64, help="side of the RL observation")
    p.add_argument("--max-steps", type=int, default=50, help="episode step limit")
    p.add_argument("--force", action="store_true", help="replace an existing dataset with this id")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-embed", action="store_true",
                   help="skip caching the instructions' MiniLM embeddings while collecting (then the first `to_d3rlpy` computes them)")


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    """The per-policy table printed at the end of ``rgvlm collect``."""
    lines = [f"{'policy':<9} {'episodes':>8} {'success':>8} {'steps':>6} {'sub-tasks':>9}"]
    for name, s in summary.items():
        lines.append(f"{name:<9} {int(s['episodes']):>8} {s['success']:>8.1%} {s['steps']:>6.1f} {s['subtask_fraction']:>9.1%}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rgvlm_gym.data.collect import collect_dataset, summarize

    t0 = time.perf_counter()
    ds = collect_dataset(
        args.dataset_id, episodes=args.episodes, tasks=args.tasks, alfred_dir=args.alfred_dir, split=args.split,
        subtasks=args.subtasks, randomize_init=args.randomize_init, num_tasks=args.num_tasks, policy=args.policy,
        mix=args.mix, seed=args.seed, workers=args.workers, frame_size=args.frame_size, image_size=args.image_size,
        max_steps=args.max_steps, force=args.force, progress=not args.no_progress, embed=not args.no_embed,
    )
    dt = time.perf_counter() - t0  # collection, writing and instruction embeddings
    print(f"wrote {ds.id}: {ds.total_episodes} episodes, {ds.total_steps} steps, {ds.storage.get_size():.1f} MB "
          f"at {ds.storage.data_path} in {dt:.1f} s ({ds.total_episodes / dt:.1f} episodes/s)")
    print(format_summary(summarize(ds)))
    if not args.no_embed:
        print("cached the MiniLM embeddings of the instructions (computed while collecting), ready for to_d3rlpy")
    return 0

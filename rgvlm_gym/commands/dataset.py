"""``rgvlm dataset``: look at rgvlm-gym Minari datasets and export them to d3rlpy.

* ``rgvlm dataset show ID``: metadata (task suite, policy mix, seeds, version), and episodes, success, steps
  and sub-tasks done per behaviour policy, per number of sub-tasks ``k`` and per task type;
* ``rgvlm dataset to-d3rlpy ID --out buffer.h5 [--reward COLUMN] [--image-size S]``: the d3rlpy
  ``ReplayBuffer`` of :func:`rgvlm_gym.data.to_d3rlpy`, dumped with ``ReplayBuffer.dump`` (load it with
  ``d3rlpy.dataset.ReplayBuffer.load(path, d3rlpy.dataset.InfiniteBuffer())``).

``minari list local`` and ``minari show ID`` work on the same datasets.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

__all__ = ["add_arguments", "breakdown", "format_breakdown", "run"]


def breakdown(dataset, by: str) -> dict[str, dict[str, float]]:  # noqa: ANN001 - a MinariDataset or an id
    """Episodes, success rate, mean steps and mean sub-task fraction per value of a task field
    (``"n_subtasks"`` or ``"task_type"``), read from the episodes' task records."""
    import h5py
    import numpy as np

    from rgvlm_gym.data.storage import open_dataset

    ds = open_dataset(dataset)
    rows: dict[str, list[tuple[bool, int, float]]] = {}
    with h5py.File(os.path.join(ds.storage.data_path, "main_data.hdf5"), "r") as f:
        for i in ds.episode_indices:
            g = f[f"episode_{int(i)}"]
            task = json.loads(g.attrs["task"])
            term = g["terminations"][()]
            prog = g["privileged/subtask_progress"][()] if "privileged/subtask_progress" in g else np.zeros(1)
            n = max(int(task.get("n_subtasks", 1)), 1)
            key = f"k={task.get('n_subtasks', '?')}" if by == "n_subtasks" else str(task.get(by, "?"))
            rows.setdefault(key, []).append((bool(term[-1]), len(term), float(prog[-1]) / n))

    def order(k: str) -> tuple:
        return (0, int(k[2:]), "") if k.startswith("k=") and k[2:].isdigit() else (1, 0, k)

    return {k: {"episodes": len(v), "success": float(np.mean([r[0] for r in v])), "steps": float(np.mean([r[1] for r in v])),
                "subtask_fraction": float(np.mean([r[2] for r in v]))} for k, v in sorted(rows.items(), key=lambda kv: order(kv[0]))}


def format_breakdown(title: str, table: dict[str, dict[str, float]]) -> str:
    """A breakdown as the table ``rgvlm dataset show`` prints."""
    width = max([len(title), *map(len, table)])
    lines = [f"{title:<{width}} {'episodes':>8} {'success':>8} {'steps':>6} {'sub-tasks':>9}"]
    for name, s in table.items():
        lines.append(f"{name:<{width}} {int(s['episodes']):>8} {s['success']:>8.1%} {s['steps']:>6.1f} {s['subtask_fraction']:>9.1%}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("show", help="metadata and success per behaviour policy")
    s.add_argument("dataset_id")
    e = sub.add_parser("to-d3rlpy", help="export as a d3rlpy ReplayBuffer file (tuple observations)")
    e.add_argument("dataset_id")
    e.add_argument("--out", required=True, help="output file (.h5)")
    e.add_argument("--reward", default="rewards", help="reward column: rewards or an extra per-step column")
    e.add_argument("--image-size", type=int, default=None, help="resize the RL image (default: as stored)")
    e.add_argument("--force", action="store_true", help="overwrite --out")


def run(args: argparse.Namespace) -> int:
    from rgvlm_gym.data import dataset_info, open_dataset

    if args.action == "show":
        from rgvlm_gym.commands.collect import format_summary
        from rgvlm_gym.data.collect import summarize

        ds = open_dataset(args.dataset_id)
        info = dataset_info(ds)
        info.pop("action_names", None)
        print(f"{ds.id}: {ds.total_episodes} episodes, {ds.total_steps} steps, {ds.storage.get_size():.1f} MB at {ds.storage.data_path}")
        print(json.dumps(info, indent=2, sort_keys=True))
        print(format_summary(summarize(ds)))
        print()
        print(format_breakdown("k", breakdown(ds, "n_subtasks")))
        print()
        print(format_breakdown("task type", breakdown(ds, "task_type")))
        return 0
    if args.action == "to-d3rlpy":
        from rgvlm_gym.data import to_d3rlpy

        if os.path.exists(args.out) and not args.force:
            raise FileExistsError(f"--out {args.out!r} exists; pass --force to overwrite it")
        buf = to_d3rlpy(args.dataset_id, reward=args.reward, image_size=args.image_size)
        out_dir = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
        try:
            with os.fdopen(fd, "w+b") as f:  # h5py reads back what it writes
                buf.dump(f)
            os.replace(tmp, args.out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        print(f"wrote {args.out}: {buf.transition_count} transitions, {len(buf.episodes)} episodes, reward column {args.reward!r}")
        return 0
    raise ValueError(f"unknown action {args.action!r}")

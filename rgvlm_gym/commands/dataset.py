"""``rgvlm dataset``: look at rgvlm-gym Minari datasets and export them to d3rlpy.

* ``rgvlm dataset show ID``: metadata (task suite, policy mix, seeds, version) and success per policy;
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

__all__ = ["add_arguments", "run"]


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

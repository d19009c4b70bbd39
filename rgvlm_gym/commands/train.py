"""``rgvlm train``: train a d3rlpy algorithm on an rgvlm-gym Minari dataset.

Writes into ``--out``: ``model.d3`` (``d3rlpy.load_learnable`` after ``import rgvlm_gym.rl``), ``train.json``
(what was trained on, and how), and d3rlpy's logs (CSV per metric, TensorBoard with ``--tensorboard``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_id", help="Minari dataset id (namespace/name-vN) written by rgvlm collect / relabel")
    p.add_argument("--algo", default="iql", choices=("iql", "cql", "bcq", "bc", "dqn"), help="algorithm (iql = DiscreteIQL)")
    p.add_argument("--steps", type=int, default=10_000, help="gradient steps")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--reward", default="rewards", help="reward column: rewards (as stored) or an extra column such as lvlm_rewards")
    p.add_argument("--seed", type=int, default=0, help="seed (torch, numpy, sampling)")
    p.add_argument("--batch-size", type=int, default=256, help="mini-batch size")
    p.add_argument("--steps-per-epoch", type=int, default=1000, help="steps between logs and checkpoints")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard (under OUT/tensorboard)")
    p.add_argument("--force", action="store_true", help="overwrite an existing model in OUT")


def run(args: argparse.Namespace) -> int:
    from rgvlm_gym.commands.common import check_device

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    check_device(args.device)  # before minutes of loading
    out = Path(args.out)
    model_path = out / "model.d3"
    if model_path.exists() and not args.force:
        raise ValueError(f"{model_path} exists; pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)

    import d3rlpy
    from d3rlpy.logging import CombineAdapterFactory, FileAdapterFactory, TensorboardAdapterFactory

    import rgvlm_gym
    from rgvlm_gym.data import dataset_info, to_d3rlpy
    from rgvlm_gym.rl.algos import make_algo_config

    t0 = time.perf_counter()
    buffer = to_d3rlpy(args.dataset_id, reward=args.reward)
    info = dataset_info(args.dataset_id)
    print(f"loaded {args.dataset_id}: {buffer.transition_count} transitions in {len(buffer.episodes)} episodes "
          f"({time.perf_counter() - t0:.1f} s); reward column {args.reward!r}")
    d3rlpy.seed(args.seed)
    config = make_algo_config(args.algo, batch_size=args.batch_size)
    algo = config.create(device=args.device)
    adapters = [FileAdapterFactory(root_dir=str(out / "logs"))]
    if args.tensorboard:
        adapters.append(TensorboardAdapterFactory(root_dir=str(out / "tensorboard")))
    algo.fit(
        buffer,
        n_steps=args.steps,
        n_steps_per_epoch=min(args.steps, args.steps_per_epoch),
        experiment_name=f"{args.algo}",
        with_timestamp=False,
        logger_adapter=CombineAdapterFactory(adapters) if len(adapters) > 1 else adapters[0],
        show_progress=True,
        save_interval=max(1, args.steps // max(1, args.steps_per_epoch)),
    )
    # save atomically: a crash never leaves a half model under the name
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".model.", suffix=".d3")
    os.close(fd)
    try:
        algo.save(tmp)
        os.replace(tmp, model_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    record = {
        "dataset_id": args.dataset_id,
        "algo": args.algo,
        "algo_type": config.get_type(),
        "reward": args.reward,
        "steps": args.steps,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "instruction_encoder": "minilm",
        "env_kwargs": info.get("env_kwargs", {}),
        "rgvlm_gym_version": rgvlm_gym.__version__,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "train.json").write_text(json.dumps(record, indent=1))
    print(f"trained {args.algo} for {args.steps} steps in {record['train_seconds']} s; model: {model_path}")
    return 0

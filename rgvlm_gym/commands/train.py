"""``rgvlm train``: train a d3rlpy algorithm on an rgvlm-gym Minari dataset (:func:`rgvlm_gym.rl.training.train`).

With no other flag than ``--algo`` and ``--out`` it runs the learning recipe (:class:`~rgvlm_gym.rl.training.TrainConfig`).
Writes into ``--out``: ``model.d3`` (``d3rlpy.load_learnable`` after ``import rgvlm_gym.rl``), ``train.json``,
d3rlpy's metric CSVs under ``logs/`` (TensorBoard with ``--tensorboard``), and with ``--eval-every`` a
learning curve (``learning_curve.csv``, ``learning_curve.png``).
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rgvlm_gym.rl.training import TrainConfig

    d = TrainConfig()
    p.add_argument("dataset_id", help="Minari dataset id (namespace/name-vN) written by rgvlm collect / relabel")
    p.add_argument("--algo", default=d.algo, choices=("iql", "cql", "bcq", "bc", "dqn"), help="algorithm (iql = DiscreteIQL)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--reward", default=d.reward, help="reward column: rewards (as stored) or an extra column such as lvlm_rewards")
    p.add_argument("--steps", type=int, default=d.steps, help=f"gradient steps (recipe: {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"mini-batch size (recipe: {d.batch_size})")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help=f"learning rate (recipe: {d.learning_rate})")
    p.add_argument("--no-action-masks", action="store_true",
                   help="observations without the admissible-action mask (the recipe uses it, and DiscreteIQL decodes over it)")
    p.add_argument("--no-action-text", action="store_true",
                   help="iql: plain per-action output units only (the recipe also scores actions through their phrases)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed (torch, numpy, sampling)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the cores not busy with other work, at least 1; env RGVLM_GYM_NUM_THREADS)")
    p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch, help="steps between metric logs")
    p.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps and draw a learning curve")
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help="episodes per sub-task count in each evaluation")
    p.add_argument("--eval-split", default=None, help="ALFRED split to evaluate on during training (default: the dataset's)")
    p.add_argument("--device", default=d.device, help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard (under OUT/tensorboard; extra [tensorboard])")
    p.add_argument("--force", action="store_true", help="overwrite an existing model in OUT")


def run(args: argparse.Namespace) -> int:
    from rgvlm_gym.commands.common import check_device
    from rgvlm_gym.data import dataset_info
    from rgvlm_gym.rl.training import TrainConfig, train

    check_device(args.device)  # a device torch cannot use is the user's error, before minutes of loading

    eval_env = None
    if args.eval_split is not None:
        eval_env = dict(dataset_info(args.dataset_id).get("env_kwargs", {}))
        if eval_env.get("tasks") != "alfred":
            raise ValueError("--eval-split needs a dataset of ALFRED tasks (collected with --tasks alfred)")
        eval_env["split"] = args.eval_split
        eval_env.pop("randomize_init", None)
    config = TrainConfig(
        algo=args.algo,
        reward=args.reward,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        action_masks=not args.no_action_masks,
        action_text=not args.no_action_text,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        steps_per_epoch=args.steps_per_epoch,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        eval_env=eval_env,
        tensorboard=args.tensorboard,
    )
    train(args.dataset_id, args.out, config, force=args.force)
    return 0

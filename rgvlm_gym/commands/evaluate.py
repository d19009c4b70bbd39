"""``rgvlm evaluate``: roll a trained policy out in AlfredLite and report success by number of sub-tasks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "run"]


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_path", help="a model.d3 written by rgvlm train (or any d3rlpy save of a discrete algorithm)")
    p.add_argument("--tasks", choices=("procedural", "alfred"), default=None, help="task source (default: the training dataset's)")
    p.add_argument("--alfred-dir", default=None, help="ALFRED json_2.1.0 folder (with --tasks alfred; default: $RGVLM_GYM_ALFRED_DIR)")
    p.add_argument("--split", default=None, help="ALFRED split; valid_unseen for unseen scenes")
    p.add_argument("--subtasks", default="1-6", help="sub-task counts to evaluate, e.g. 1-6")
    p.add_argument("--suite-seed", type=int, default=None, help="procedural suite seed (another seed = unseen tasks)")
    p.add_argument("--num-tasks", type=int, default=None, help="procedural suite size")
    p.add_argument("--episodes", type=int, default=20, help="episodes per sub-task count, per seed and initial-state kind")
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="evaluation seeds, e.g. 0,1,2")
    p.add_argument("--randomize-init", action="store_true", help="also evaluate from randomized initial states (reported apart)")
    p.add_argument("--sample", action="store_true", help="sample actions from the policy instead of acting greedily")
    p.add_argument("--out", default=None, help="folder for episodes.csv and evaluation.json (default: next to the model)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--no-action-mask", dest="action_mask", action="store_false",
                   help="let the policy pick any action, admissible or not (default: the best admissible action)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="torch CPU threads (default: the free cores, never oversubscribing the machine)")
    p.add_argument("--batch-size", type=_positive, default=64, help="environments stepped together, one policy batch")
    p.add_argument("--workers", type=_positive, default=None,
                   help="processes rolling episodes out in parallel (default: the free cores; results do not depend on it)")


def run(args: argparse.Namespace) -> int:
    model = Path(args.model_path)
    if not model.is_file():
        raise FileNotFoundError(f"no model file at {model}")
    train_record = model.parent / "train.json"
    env_kwargs: dict = {}
    if train_record.is_file():
        env_kwargs = dict(json.loads(train_record.read_text()).get("env_kwargs", {}))
    for key in ("render_mode", "randomize_init"):
        env_kwargs.pop(key, None)
    if args.tasks is not None:
        if args.tasks != env_kwargs.get("tasks"):
            env_kwargs = {k: v for k, v in env_kwargs.items() if k in ("image_size", "max_steps")}
        env_kwargs["tasks"] = args.tasks
    for flag, key in (("alfred_dir", "alfred_dir"), ("split", "split"), ("suite_seed", "suite_seed"), ("num_tasks", "num_tasks")):
        if getattr(args, flag) is not None:
            env_kwargs[key] = getattr(args, flag)
    env_kwargs["subtasks"] = args.subtasks
    if env_kwargs.get("tasks") == "alfred" and not env_kwargs.get("alfred_dir"):
        from rgvlm_gym.alfred.paths import default_alfred_dir

        if not default_alfred_dir():
            raise ValueError("--tasks alfred needs --alfred-dir (or $RGVLM_GYM_ALFRED_DIR)")

    from rgvlm_gym.commands.common import load_model
    from rgvlm_gym.rl.evaluation import d3rlpy_policy, evaluate
    from rgvlm_gym.rl.threads import default_num_threads, set_num_threads

    threads = set_num_threads(args.threads)
    workers = args.workers if args.workers is not None else default_num_threads()
    algo = load_model(model, args.device)
    report = evaluate(
        d3rlpy_policy(algo, greedy=not args.sample),
        env_kwargs,
        episodes_per_k=args.episodes,
        seeds=args.seeds,
        randomize=(False, True) if args.randomize_init else (False,),
        progress=True,
        action_mask=args.action_mask,
        threads=threads,
        batch_size=args.batch_size,
        workers=workers,
    )
    report.meta["model"] = str(model)
    if train_record.is_file():
        report.meta["train"] = json.loads(train_record.read_text())
    out = Path(args.out) if args.out else model.parent / "evaluation"
    csv_path, json_path = report.write(out)
    mask = "on: the best admissible action" if report.meta["action_mask"] else "off: any action"
    print(f"{len(report.episodes)} episodes, action masking {mask}, {workers} worker process(es), {threads} torch thread(s)")
    print(report.table())
    print(f"wrote {csv_path} and {json_path}")
    return 0

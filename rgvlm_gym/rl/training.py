"""Train a d3rlpy algorithm on an rgvlm-gym dataset: the learning recipe, threads, evaluation during training.

Holds :class:`TrainConfig` (whose defaults are the learning recipe: what ``rgvlm train DATASET --algo iql
--out DIR`` runs), :func:`train` (the Python side of ``rgvlm train``) and :data:`SIM_LABELS_NOTE`.

The recipe (measured in ``benchmarks/RESULTS.md``, "Learning recipe", with ``benchmarks/bench_recipe.py``):
observations carry the admissible-action mask beside the frame and the instruction, the policy is
normalised and decoded over admissible actions, a smaller CNN than Nature-DQN's (the frames are 64 px
drawings), mini-batches of 64 and IQL's published loss settings.

Writes into ``out``: ``model.d3`` (atomically; ``d3rlpy.load_learnable`` after ``import rgvlm_gym.rl``),
``train.json`` (what was trained on and how, whether its rewards come from simulated LVLM labels), d3rlpy's
metric CSVs under ``logs/``, and with ``eval_every`` a learning curve (``learning_curve.csv`` and
``learning_curve.png``).

    >>> import os, tempfile
    >>> os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp()
    >>> from rgvlm_gym.data import collect_dataset
    >>> _ = collect_dataset("doctest/train-v0", episodes=6, num_tasks=4, workers=1, seed=0, progress=False)
    >>> record = train("doctest/train-v0", tempfile.mkdtemp(), TrainConfig(steps=4, threads=1), progress=False)
    >>> record["algo"], record["steps"], record["action_masks"], record["threads"]
    ('iql', 4, True, 1)
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rgvlm_gym.fileio import atomic_path, atomic_write_text
from rgvlm_gym.rl.device import check_device

__all__ = ["SIM_LABELS_NOTE", "TrainConfig", "train"]

SIM_LABELS_NOTE = (
    "The rewards were derived from SIMULATED LVLM labels (the 'sim' backend answers from ground truth "
    "through an error model): these figures are not results of a real LVLM."
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults are the learning recipe (module docstring).

    Args:
        algo: ``iql`` (DiscreteIQL), ``cql``, ``bcq``, ``bc`` or ``dqn``.
        reward: the dataset's reward column (``rewards``, ``lvlm_rewards``, ``original_rewards``, ...).
        steps: gradient steps.
        batch_size: mini-batch size.
        learning_rate: every optimizer's learning rate.
        action_masks: observations carry the admissible-action mask (DiscreteIQL's policy then normalises and
            decodes over admissible actions; every algorithm's encoder reads it).
        action_text: DiscreteIQL's Q and policy heads also score actions through their phrases' sentence
            embeddings (:mod:`rgvlm_gym.rl.action_text`); ``iql`` only.
        filters: the CNN's ``(out_channels, kernel, stride)`` per convolution.
        feature_size: width of the encoder output.
        seed: seed of torch, numpy and sampling.
        threads: torch threads (``None``: :func:`rgvlm_gym.rl.threads.default_num_threads`).
        device: torch device.
        steps_per_epoch: steps between d3rlpy's metric logs.
        eval_every: evaluate every this many steps (``None``: only after training, if at all).
        eval_episodes: episodes per sub-task count in each evaluation during training.
        eval_env: ``gym.make`` kwargs of the evaluation tasks (default: the dataset's environment).
        tensorboard: also log to TensorBoard (needs the ``[tensorboard]`` extra).
    """

    algo: str = "iql"
    reward: str = "rewards"
    steps: int = 8000
    batch_size: int = 64
    learning_rate: float = 3e-4
    action_masks: bool = True
    action_text: bool = True
    filters: tuple[tuple[int, int, int], ...] = ((16, 8, 4), (32, 4, 2), (32, 3, 1))
    feature_size: int = 256
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    steps_per_epoch: int = 1000
    eval_every: int | None = None
    eval_episodes: int = 5
    eval_env: dict[str, Any] | None = None
    tensorboard: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "steps_per_epoch", "eval_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.eval_every is not None and (isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1):
            raise ValueError(f"eval_every must be a positive integer or None, got {self.eval_every!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")


def _save_model(algo: Any, path: Path) -> None:
    with atomic_path(path) as tmp:  # a crash never leaves half a model under the name
        algo.save(str(tmp))


def train(
    dataset_id: str,
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    evaluate_fn: Callable[[Any, dict[str, Any], int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train ``config.algo`` on ``dataset_id``; write the model and ``train.json`` into ``out``; return the record.

    Args:
        dataset_id: an rgvlm-gym Minari dataset.
        out: output folder (created).
        config: the training settings (default: the recipe).
        force: overwrite an existing ``out/model.d3``.
        progress: d3rlpy's progress bar.
        evaluate_fn: ``(algo, env_kwargs, episodes_per_k) -> summary`` used every ``eval_every`` steps
            (default: :func:`rgvlm_gym.rl.evaluation.evaluate` on the evaluation tasks, dataset initial states).
    """
    cfg = config or TrainConfig()
    out = Path(out)
    model_path = out / "model.d3"
    if model_path.exists() and not force:
        raise FileExistsError(f"{model_path} exists; pass --force to overwrite it")
    check_device(cfg.device)
    if cfg.tensorboard:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ValueError("--tensorboard needs tensorboardX: pip install 'rgvlm-gym[tensorboard]'") from None
    out.mkdir(parents=True, exist_ok=True)

    import d3rlpy
    from d3rlpy.logging import CombineAdapterFactory, FileAdapterFactory, TensorboardAdapterFactory

    import rgvlm_gym
    from rgvlm_gym.data import dataset_info, to_d3rlpy
    from rgvlm_gym.rl.algos import make_algo_config
    from rgvlm_gym.rl.encoders import LanguageConditionedEncoderFactory
    from rgvlm_gym.rl.threads import set_num_threads

    threads = set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    info = dataset_info(dataset_id)
    buffer = to_d3rlpy(dataset_id, reward=cfg.reward, action_masks=cfg.action_masks)
    load_s = time.perf_counter() - t0
    simulated = bool((info.get("relabel") or {}).get("simulated", False))
    if progress:
        print(f"loaded {dataset_id}: {buffer.transition_count} transitions in {len(buffer.episodes)} episodes "
              f"({load_s:.1f} s); reward column {cfg.reward!r}; {threads} torch thread(s)")
        if simulated:
            print(SIM_LABELS_NOTE)

    d3rlpy.seed(cfg.seed)
    encoder = LanguageConditionedEncoderFactory(filters=[list(f) for f in cfg.filters], feature_size=cfg.feature_size)
    lr_fields = {"iql": ("actor_learning_rate", "critic_learning_rate"), "bcq": ("learning_rate",), "cql": ("learning_rate",),
                 "bc": ("learning_rate",), "dqn": ("learning_rate",)}
    overrides: dict[str, Any] = {name: cfg.learning_rate for name in lr_fields.get(cfg.algo, ())}
    if cfg.action_text and cfg.algo == "iql":
        overrides["action_names"] = list(info["action_names"])
    algo_config = make_algo_config(cfg.algo, encoder_factory=encoder, batch_size=cfg.batch_size, **overrides)
    algo = algo_config.create(device=cfg.device)

    env_kwargs = dict(cfg.eval_env if cfg.eval_env is not None else info.get("env_kwargs", {}))
    env_kwargs.pop("render_mode", None)
    curve: list[dict[str, Any]] = []
    train_s = 0.0
    t_fit = time.perf_counter()
    if cfg.eval_every is not None and evaluate_fn is None:
        evaluate_fn = _default_evaluate

    def callback(algo_: Any, epoch: int, step: int) -> None:
        nonlocal train_s, t_fit
        if cfg.eval_every is None or evaluate_fn is None or (step % cfg.eval_every and step != cfg.steps):
            return
        train_s += time.perf_counter() - t_fit
        summary = evaluate_fn(algo_, env_kwargs, cfg.eval_episodes)
        curve.append({"step": step, "train_s": round(train_s, 1), **summary})
        _write_curve(out, curve, simulated)
        t_fit = time.perf_counter()

    adapters = [FileAdapterFactory(root_dir=str(out / "logs"))]
    if cfg.tensorboard:
        adapters.append(TensorboardAdapterFactory(root_dir=str(out / "tensorboard")))
    n_epochs = -(-cfg.steps // min(cfg.steps, cfg.steps_per_epoch))
    quiet = contextlib.redirect_stdout(io.StringIO()) if not progress else contextlib.nullcontext()
    with quiet:
        algo.fit(
            buffer,
            n_steps=cfg.steps,
            n_steps_per_epoch=min(cfg.steps, cfg.steps_per_epoch),
            experiment_name=cfg.algo,
            with_timestamp=False,
            logger_adapter=CombineAdapterFactory(adapters) if len(adapters) > 1 else adapters[0],
            show_progress=progress,
            save_interval=n_epochs + 1,  # no intermediate checkpoints: model.d3 is the one saved model
            callback=callback,
        )
    train_s += time.perf_counter() - t_fit
    _save_model(algo, model_path)
    record: dict[str, Any] = {
        "dataset_id": dataset_id,
        **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("eval_env",)},
        "algo_type": algo_config.get_type(),
        "threads": threads,
        "instruction_encoder": "minilm",
        "observation": ["image", "instruction", "action_mask"] if cfg.action_masks else ["image", "instruction"],
        "env_kwargs": info.get("env_kwargs", {}),
        "eval_env": env_kwargs if cfg.eval_every else None,
        "labels_simulated": simulated,
        "rgvlm_gym_version": rgvlm_gym.__version__,
        "load_seconds": round(load_s, 1),
        "train_seconds": round(train_s, 1),
        "updates_per_second": round(cfg.steps / max(train_s, 1e-9), 1),
    }
    if simulated:
        record["note"] = SIM_LABELS_NOTE
    if curve:
        record["learning_curve"] = curve
    atomic_write_text(out / "train.json", json.dumps(record, indent=1))
    if progress:
        print(f"trained {cfg.algo} for {cfg.steps} steps in {record['train_seconds']} s "
              f"({record['updates_per_second']} updates/s); model: {model_path}")
    return record


def _default_evaluate(algo: Any, env_kwargs: dict[str, Any], episodes_per_k: int) -> dict[str, Any]:
    from rgvlm_gym.rl.evaluation import d3rlpy_policy, evaluate

    report = evaluate(d3rlpy_policy(algo), env_kwargs, episodes_per_k=episodes_per_k, seeds=(0,), randomize=(False,))
    overall = report.summary()
    return {
        "completion": round(overall["completion"]["mean"], 4),
        "completion_by_k": {str(k): round(m["completion"]["mean"], 4) for (k,), m in report.breakdown("n_subtasks").items()},
        "success": round(overall["success"]["rate"], 4),
        "invalid_rate": round(overall["invalid_action_rate"]["rate"], 4),
    }


def _write_curve(out: Path, curve: list[dict[str, Any]], simulated: bool) -> None:
    ks = sorted({k for row in curve for k in row.get("completion_by_k", {})}, key=int)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "train_s", "completion", "success", "invalid_rate", *[f"completion_k{k}" for k in ks]])
    for row in curve:
        w.writerow([row["step"], row["train_s"], row.get("completion"), row.get("success"), row.get("invalid_rate"),
                    *[row.get("completion_by_k", {}).get(k, "") for k in ks]])
    atomic_write_text(out / "learning_curve.csv", buf.getvalue())
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the picture is a convenience; the CSV holds the numbers
        return
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    steps = [r["step"] for r in curve]
    ax.plot(steps, [r.get("completion") for r in curve], "o-", color="k", label="all k")
    for k in ks:
        ax.plot(steps, [r.get("completion_by_k", {}).get(k) for r in curve], ".--", alpha=0.7, label=f"k={k}")
    ax.plot(steps, [r.get("invalid_rate") for r in curve], ":", color="tab:red", label="invalid-action rate")
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("proportion of sub-tasks completed")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Learning curve" + (" (rewards from SIMULATED LVLM labels)" if simulated else ""), fontsize=9)
    fig.tight_layout()
    with atomic_path(out / "learning_curve.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

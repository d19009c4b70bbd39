"""The evaluation protocol: roll a policy out in AlfredLite and report what the RG-VLM paper reports.

Holds :func:`evaluate`, :class:`EvalEpisode`, :class:`EvaluationReport`, :func:`d3rlpy_policy` (a trained
d3rlpy algorithm as a batch policy over AlfredLite observations), :func:`random_policy` and
:func:`wilson_interval`.

Metrics, per episode and aggregated by number of sub-tasks (the paper's Figure 4), by task type, and by
initial state (the dataset's, or randomized):

- **success**: every goal condition holds at the end;
- **GC**: fraction of goal conditions met at the end;
- **PLWS**: path-length-weighted success, ``success * L_expert / max(L_agent, L_expert)`` (Anderson et
  al., 2018), with ``L_expert`` the expert plan length from the episode's initial state;
- **invalid-action rate**: fraction of steps whose action was refused.

Rates carry 95 % Wilson intervals (binomial); means carry normal-approximation intervals.
Tasks are drawn per sub-task count (``episodes_per_k`` each), seeded, so two policies evaluated with the
same arguments face the same tasks, initial states and instruction variants.

    >>> report = evaluate(random_policy(seed=0), {"num_tasks": 60, "subtasks": "1-2"}, episodes_per_k=4, seeds=(0,), randomize=(False,))
    >>> sorted({e.n_subtasks for e in report.episodes}), len(report.episodes)
    ([1, 2], 8)
    >>> 0.0 <= report.summary()["success"]["rate"] <= 1.0
    True
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EvalEpisode", "EvaluationReport", "Policy", "d3rlpy_policy", "evaluate", "random_policy", "wilson_interval"]

#: a batch policy: observations (dicts with "image" and "instruction") and their infos (with
#: "action_mask") -> action indices
Policy = Callable[[Sequence[dict[str, Any]], Sequence[dict[str, Any]]], np.ndarray]
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion.

    >>> tuple(round(x, 3) for x in wilson_interval(8, 10))
    (0.49, 0.943)
    """
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return (float("nan"), float("nan"), float("nan"))
    m = float(a.mean())
    half = Z95 * float(a.std(ddof=1)) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return (m, m - half, m + half)


@dataclass(frozen=True)
class EvalEpisode:
    """One evaluation episode."""

    task_id: str
    task_key: str
    task_type: str
    n_subtasks: int
    randomized: bool
    seed: int
    success: bool
    gc: float
    steps: int
    expert_steps: int
    plws: float
    invalid_actions: int
    subtasks_done: int


@dataclass
class EvaluationReport:
    """All episodes of an evaluation, with aggregation and writers."""

    episodes: list[EvalEpisode]
    meta: dict[str, Any]

    def _aggregate(self, eps: Sequence[EvalEpisode]) -> dict[str, Any]:
        n = len(eps)
        wins = sum(e.success for e in eps)
        lo, hi = wilson_interval(wins, n)
        steps = sum(e.steps for e in eps)
        invalid = sum(e.invalid_actions for e in eps)
        ilo, ihi = wilson_interval(invalid, steps)
        gc, gclo, gchi = _mean_ci([e.gc for e in eps])
        pl, pllo, plhi = _mean_ci([e.plws for e in eps])
        return {
            "episodes": n,
            "success": {"rate": wins / n if n else float("nan"), "ci95": [lo, hi]},
            "gc": {"mean": gc, "ci95": [gclo, gchi]},
            "plws": {"mean": pl, "ci95": [pllo, plhi]},
            "invalid_action_rate": {"rate": invalid / steps if steps else float("nan"), "ci95": [ilo, ihi]},
        }

    def summary(self) -> dict[str, Any]:
        """Overall metrics."""
        return self._aggregate(self.episodes)

    def breakdown(self, by: str | tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Metrics grouped by episode fields, e.g. ``"n_subtasks"`` or ``("randomized", "n_subtasks")``."""
        keys = (by,) if isinstance(by, str) else by
        groups: dict[tuple[Any, ...], list[EvalEpisode]] = defaultdict(list)
        for e in self.episodes:
            groups[tuple(getattr(e, k) for k in keys)].append(e)
        return {k: self._aggregate(v) for k, v in sorted(groups.items())}

    def table(self) -> str:
        """Success / GC / PLWS / invalid-action rate by initial state and number of sub-tasks."""
        rows = ["init        k  episodes  success (95% CI)      GC     PLWS   invalid"]
        groups = self.breakdown(("randomized", "n_subtasks"))
        for (randomized, k), m in groups.items():
            s = m["success"]
            rows.append(
                f"{'randomized' if randomized else 'dataset':10s} {k:2d}  {m['episodes']:8d}  "
                f"{s['rate']:6.1%} [{s['ci95'][0]:5.1%},{s['ci95'][1]:6.1%}]  {m['gc']['mean']:5.2f}  "
                f"{m['plws']['mean']:5.2f}  {m['invalid_action_rate']['rate']:6.1%}"
            )
        o = self.summary()
        rows.append(
            f"{'all':10s}  -  {o['episodes']:8d}  {o['success']['rate']:6.1%} [{o['success']['ci95'][0]:5.1%},"
            f"{o['success']['ci95'][1]:6.1%}]  {o['gc']['mean']:5.2f}  {o['plws']['mean']:5.2f}  {o['invalid_action_rate']['rate']:6.1%}"
        )
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        def keyed(d: dict[tuple[Any, ...], Any]) -> dict[str, Any]:
            return {"/".join(str(x) for x in k): v for k, v in d.items()}

        return {
            "meta": self.meta,
            "overall": self.summary(),
            "by_subtasks": keyed(self.breakdown(("randomized", "n_subtasks"))),
            "by_task_type": keyed(self.breakdown(("randomized", "task_type"))),
            "episodes": [asdict(e) for e in self.episodes],
        }

    def write(self, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``episodes.csv`` and ``evaluation.json`` into a folder (each atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = out / "episodes.csv", out / "evaluation.json"
        fields = list(EvalEpisode.__dataclass_fields__)
        with _atomic(csv_path) as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for e in self.episodes:
                w.writerow(asdict(e))
        with _atomic(json_path) as f:
            json.dump(self.to_dict(), f, indent=1, default=float)
        return csv_path, json_path


class _atomic:
    """Open a temporary file next to ``path``; rename it into place only if the block succeeds."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Any:
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.f = os.fdopen(fd, "w", newline="")
        return self.f

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.f.close()
        if exc_type is None:
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def random_policy(seed: int = 0) -> Policy:
    """Uniformly random actions over the whole vocabulary (the floor every learned policy must beat)."""
    from rgvlm_gym.envs.alfred_lite import action_vocabulary

    rng = np.random.default_rng(seed)
    n = len(action_vocabulary())

    def act(observations: Sequence[dict[str, Any]], infos: Sequence[dict[str, Any]]) -> np.ndarray:
        return rng.integers(n, size=len(observations))

    return act


def d3rlpy_policy(algo: Any, encoder: str = "minilm", greedy: bool = True, image_size: int | None = None) -> Policy:
    """A trained d3rlpy algorithm on ``(image, instruction embedding)`` tuples as a batch policy.

    The instruction goes through the same frozen, cached encoder as :func:`rgvlm_gym.data.to_d3rlpy`.
    A model trained on another action vocabulary (an older AlfredLite) is refused with
    :class:`rgvlm_gym.envs.versions.VocabularyMismatchError`.
    """
    from rgvlm_gym.data.embeddings import InstructionEmbedder
    from rgvlm_gym.envs.versions import check_action_names

    if getattr(algo, "action_size", None) is not None:
        check_action_names(int(algo.action_size), "this model")

    embed = InstructionEmbedder(encoder)
    table: dict[str, np.ndarray] = {}

    n_inputs = len(algo.impl.observation_shape) if algo.impl is not None and isinstance(algo.impl.observation_shape[0], (list, tuple)) else 2

    def act(observations: Sequence[dict[str, Any]], infos: Sequence[dict[str, Any]]) -> np.ndarray:
        texts = [o["instruction"] for o in observations]
        new = sorted({t for t in texts if t not in table})
        if new:
            table.update(zip(new, embed(new), strict=True))
        images = np.stack([o["image"] for o in observations])
        if image_size is not None and images.shape[1] != image_size:
            from PIL import Image

            images = np.stack([np.asarray(Image.fromarray(im).resize((image_size, image_size), Image.Resampling.BOX)) for im in images])
        x = [np.ascontiguousarray(images.transpose(0, 3, 1, 2)), np.stack([table[t] for t in texts])]
        if n_inputs == 3:  # a model trained with action masks reads them (and DiscreteIQL decodes over them)
            x.append(np.stack([i["action_mask"] for i in infos]).astype(np.float32))
        out = algo.predict(x) if greedy else algo.sample_action(x)
        return np.asarray(out).reshape(-1)

    return act


def _select_tasks(env: Any, episodes_per_k: int, seed: int, ks: Iterable[int] | None) -> list[int]:
    by_k: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(env.suite):
        by_k[t.n_subtasks].append(i)
    wanted = sorted(by_k) if ks is None else [k for k in ks if k in by_k]
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for k in wanted:
        pool = by_k[k]
        chosen.extend(int(i) for i in rng.choice(pool, size=episodes_per_k, replace=len(pool) < episodes_per_k))
    return chosen


def evaluate(
    policy: Policy,
    env_kwargs: dict[str, Any],
    episodes_per_k: int = 20,
    seeds: Sequence[int] = (0, 1, 2),
    randomize: Sequence[bool] = (False, True),
    subtask_counts: Iterable[int] | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> EvaluationReport:
    """Roll ``policy`` out on AlfredLite tasks and collect :class:`EvalEpisode` s.

    Args:
        policy: maps a batch of observations to actions (see :func:`d3rlpy_policy`).
        env_kwargs: ``gym.make("rgvlm_gym/AlfredLite-v1", **env_kwargs)`` arguments (the task suite).
        episodes_per_k: tasks drawn per sub-task count, per seed and per initial-state kind.
        seeds: evaluation seeds (task draw, reset seed, randomized placement).
        randomize: evaluate from the dataset's initial states (False) and/or randomized ones (True).
        subtask_counts: only these sub-task counts (default: all in the suite).
        batch_size: episodes run in lockstep, so the policy sees batches.
        progress: show a progress bar.
    """
    import gymnasium as gym

    import rgvlm_gym  # noqa: F401  (registers the env)

    if episodes_per_k < 1:
        raise ValueError(f"episodes_per_k must be >= 1, got {episodes_per_k}")
    kwargs = {k: v for k, v in env_kwargs.items() if k != "randomize_init"}
    probe = gym.make("rgvlm_gym/AlfredLite-v1", **kwargs).unwrapped
    jobs = [(seed, rand, idx) for seed in seeds for rand in randomize for idx in _select_tasks(probe, episodes_per_k, seed, subtask_counts)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="evaluate", unit="ep")
    episodes: list[EvalEpisode] = []
    envs = [gym.make("rgvlm_gym/AlfredLite-v1", **kwargs).unwrapped for _ in range(min(batch_size, len(jobs)))]
    for start in range(0, len(jobs), len(envs)):
        batch = jobs[start : start + len(envs)]
        live = []
        for j, (seed, rand, idx) in enumerate(batch):
            env = envs[j]
            obs, info = env.reset(seed=seed * 100_003 + idx, options={"task_index": idx, "randomize_init": rand})
            expert = len(env.expert_plan())
            live.append({"env": env, "obs": obs, "info": info, "steps": 0, "invalid": 0, "expert": expert, "job": (seed, rand, idx), "done": False})
        while not all(s["done"] for s in live):
            active = [s for s in live if not s["done"]]
            actions = policy([s["obs"] for s in active], [s["info"] for s in active])
            for s, a in zip(active, actions, strict=True):
                obs, _, term, trunc, info = s["env"].step(int(a))
                s["obs"], s["info"] = obs, info
                s["steps"] += 1
                s["invalid"] += info["action_error"] is not None
                if term or trunc:
                    s["done"] = True
        for s in live:
            info, (seed, rand, idx) = s["info"], s["job"]
            met, total = info["goal_conditions"]
            ok = bool(info["success"])
            task = s["env"].task
            episodes.append(
                EvalEpisode(
                    task_id=task.task_id,
                    task_key=task.key,
                    task_type=task.task_type,
                    n_subtasks=task.n_subtasks,
                    randomized=bool(rand),
                    seed=int(seed),
                    success=ok,
                    gc=met / total if total else 0.0,
                    steps=s["steps"],
                    expert_steps=s["expert"],
                    plws=(s["expert"] / max(s["steps"], s["expert"], 1)) if ok else 0.0,
                    invalid_actions=s["invalid"],
                    subtasks_done=int(info["subtask_progress"][0]),
                )
            )
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    meta = {"env_kwargs": dict(env_kwargs), "episodes_per_k": episodes_per_k, "seeds": list(seeds), "randomize": list(randomize)}
    return EvaluationReport(episodes, meta)

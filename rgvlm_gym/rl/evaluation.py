"""The evaluation protocol: roll a policy out in AlfredLite and report what the RG-VLM paper reports.

Holds :func:`evaluate`, :class:`EvalEpisode`, :class:`EvaluationReport`, :func:`d3rlpy_policy` (a trained
d3rlpy algorithm as a batch policy over AlfredLite observations), :func:`action_scores`,
:func:`random_policy`, :func:`wilson_interval` and :func:`t_interval`.

Metrics, per episode and aggregated by number of sub-tasks ``k`` (the paper's Figure 4), by task type, and by
initial state (the dataset's, or randomized):

- **completion**: the proportion of task completion, sub-tasks completed / ``k`` (Figure 4's metric);
- **success**: every goal condition holds at the end;
- **GC**: fraction of goal conditions met at the end;
- **PLWS**: path-length-weighted success, ``success * L_expert / max(L_agent, L_expert)`` (Anderson et
  al., 2018), with ``L_expert`` the expert plan length from the episode's initial state;
- **invalid-action rate**: fraction of steps whose action was refused.

95 % intervals: Wilson for the success rate (episodes are independent Bernoulli trials); Student-t for the
means of completion, GC and PLWS (groups are small, 10-60 episodes), clipped to [0, 1] (Wilson where every
value of a group is 0 or 1, e.g. completion at k = 1, where a t interval collapses to a point); the invalid-action
rate is a ratio of sums over episodes (steps of one episode are not independent), so its interval is the
t interval of the ratio estimator (linearized, clustered by episode).

**Admissible actions.** With ``action_mask=True`` (the default) a policy that accepts ``masks`` is given
``info["action_mask"]`` of every environment and picks the best *admissible* action: :func:`d3rlpy_policy`
masks the scores of :func:`action_scores` (Q-values or policy logits), :func:`random_policy` draws among
admissible actions. The report's ``meta["action_mask"]`` says whether masks were applied.

**Speed.** ``batch_size`` environments step in lockstep and the policy sees them as one batch; a finished
episode's slot is refilled with the next one at once, so the batch stays full.

Tasks are drawn per sub-task count (``episodes_per_k`` each), seeded, so two policies evaluated with the
same arguments face the same tasks, initial states and instruction variants.

    >>> report = evaluate(random_policy(seed=0), {"num_tasks": 60, "subtasks": "1-2"}, episodes_per_k=4, seeds=(0,), randomize=(False,))
    >>> sorted({e.n_subtasks for e in report.episodes}), len(report.episodes), report.meta["action_mask"]
    ([1, 2], 8, True)
    >>> 0.0 <= report.summary()["completion"]["mean"] <= 1.0
    True
    >>> sorted(report.to_dict()["by_subtasks"])
    ['k=1, dataset', 'k=2, dataset']
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import sys
import tempfile
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "EvalEpisode",
    "EvaluationReport",
    "Policy",
    "action_scores",
    "d3rlpy_policy",
    "evaluate",
    "random_policy",
    "mean_interval",
    "t_interval",
    "wilson_interval",
]

Z95 = 1.959963984540054


class Policy(Protocol):
    """A batch policy: observations (dicts with ``"image"`` and ``"instruction"``) -> action indices.

    A policy with a second positional parameter also gets the environments' ``infos``. A policy that takes
    ``masks`` (keyword, ``(batch, n_actions)`` 0/1, or ``None``) must act only where the mask is 1; one that
    does not is called without them (and the report says masks were not applied). A policy
    with a ``prepare(instructions, progress)`` attribute is given every instruction of the evaluation up front
    (:func:`d3rlpy_policy` embeds them in one batched pass).
    """

    def __call__(self, observations: Sequence[dict[str, Any]], /) -> np.ndarray: ...


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


def t_interval(values: Sequence[float], bounds: tuple[float, float] | None = (0.0, 1.0)) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval ``(mean, low, high)`` of a small sample, clipped to ``bounds``.

    With one value the interval is the whole of ``bounds`` (nothing is known about the spread); with none,
    everything is NaN.

    >>> tuple(round(x, 3) for x in t_interval([0.0, 0.5, 1.0, 1.0]))
    (0.625, 0.0, 1.0)
    >>> tuple(round(x, 3) for x in t_interval([0.4, 0.5, 0.6]))
    (0.5, 0.252, 0.748)
    """
    from scipy.stats import t as student_t

    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return (float("nan"), float("nan"), float("nan"))
    m = float(a.mean())
    if len(a) == 1:
        lo, hi = bounds if bounds is not None else (float("nan"), float("nan"))
        return (m, float(lo), float(hi))
    half = float(student_t.ppf(0.975, len(a) - 1)) * float(a.std(ddof=1)) / math.sqrt(len(a))
    lo, hi = m - half, m + half
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return (m, lo, hi)


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % interval of per-episode values in [0, 1]: Wilson when every value is 0 or 1 (the mean is
    then a binomial proportion, and a t interval would collapse to a point at 0 or 1), else Student-t, clipped.

    >>> tuple(round(x, 3) for x in mean_interval([0.0] * 10))
    (0.0, 0.0, 0.278)
    """
    a = np.asarray(values, dtype=np.float64)
    if len(a) and np.isin(a, (0.0, 1.0)).all():
        lo, hi = wilson_interval(int(a.sum()), len(a))
        return (float(a.mean()), lo, hi)
    return t_interval(a)


def _ratio_interval(num: Sequence[float], den: Sequence[float]) -> tuple[float, float, float]:
    """``sum(num) / sum(den)`` with a 95 % t interval of the ratio estimator, clustered by item, in [0, 1]."""
    from scipy.stats import t as student_t

    x, y = np.asarray(num, np.float64), np.asarray(den, np.float64)
    if len(x) == 0 or y.sum() == 0:
        return (float("nan"), float("nan"), float("nan"))
    r = float(x.sum() / y.sum())
    if len(x) == 1:
        return (r, 0.0, 1.0)
    resid = x - r * y
    se = math.sqrt(float(resid.var(ddof=1)) / len(x)) / float(y.mean())
    half = float(student_t.ppf(0.975, len(x) - 1)) * se
    return (r, max(0.0, r - half), min(1.0, r + half))


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

    @property
    def completion(self) -> float:
        """Proportion of task completion: sub-tasks completed / k."""
        return min(1.0, self.subtasks_done / self.n_subtasks) if self.n_subtasks else float(self.success)

    def row(self) -> dict[str, Any]:
        """The episode as a flat dict (the fields and ``completion``)."""
        return {**asdict(self), "completion": self.completion}


def group_label(key: tuple[Any, ...], by: tuple[str, ...]) -> str:
    """A readable name of a group: ``("randomized", "n_subtasks")``, ``(False, 3)`` -> ``"k=3, dataset"``."""
    parts = dict(zip(by, key, strict=True))
    out = []
    if "n_subtasks" in parts:
        out.append(f"k={parts['n_subtasks']}")
    for name, value in parts.items():
        if name == "randomized":
            continue
        if name != "n_subtasks":
            out.append(str(value))
    if "randomized" in parts:
        out.append("randomized" if parts["randomized"] else "dataset")
    return ", ".join(out)


def _clean(x: Any) -> Any:
    """JSON without NaN (not valid JSON): NaN -> None, recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


@dataclass
class EvaluationReport:
    """All episodes of an evaluation, with aggregation and writers."""

    episodes: list[EvalEpisode]
    meta: dict[str, Any]

    @staticmethod
    def aggregate(eps: Sequence[EvalEpisode]) -> dict[str, Any]:
        """Completion, success, GC, PLWS and invalid-action rate of a group, each with its 95 % interval."""
        n = len(eps)
        wins = sum(e.success for e in eps)
        lo, hi = wilson_interval(wins, n)
        cm, clo, chi = mean_interval([e.completion for e in eps])
        gc, gclo, gchi = mean_interval([e.gc for e in eps])
        pl, pllo, plhi = mean_interval([e.plws for e in eps])
        ir, ilo, ihi = _ratio_interval([e.invalid_actions for e in eps], [e.steps for e in eps])
        return {
            "episodes": n,
            "completion": {"mean": cm, "ci95": [clo, chi]},
            "success": {"rate": wins / n if n else float("nan"), "ci95": [lo, hi]},
            "gc": {"mean": gc, "ci95": [gclo, gchi]},
            "plws": {"mean": pl, "ci95": [pllo, plhi]},
            "invalid_action_rate": {"rate": ir, "ci95": [ilo, ihi]},
            "steps": {"mean": float(np.mean([e.steps for e in eps])) if n else float("nan")},
        }

    def summary(self) -> dict[str, Any]:
        """Overall metrics."""
        return self.aggregate(self.episodes)

    def breakdown(self, by: str | tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Metrics grouped by episode fields, e.g. ``"n_subtasks"`` or ``("randomized", "n_subtasks")``."""
        keys = (by,) if isinstance(by, str) else by
        groups: dict[tuple[Any, ...], list[EvalEpisode]] = defaultdict(list)
        for e in self.episodes:
            groups[tuple(getattr(e, k) for k in keys)].append(e)
        return {k: self.aggregate(v) for k, v in sorted(groups.items())}

    def table(self) -> str:
        """Completion / success / GC / PLWS / invalid-action rate by initial state and number of sub-tasks."""
        head = (f"{'init':10s} {'k':>2s}  {'episodes':>8s}  {'completion (95% CI)':<20s}  {'success (95% CI)':<22s}"
                f"  {'GC':>5s}  {'PLWS':>5s}  {'invalid':>7s}")
        rows = [head]

        def row(name: str, k: str, m: dict[str, Any]) -> str:
            c, s = m["completion"], m["success"]
            return (f"{name:10s} {k:>2s}  {m['episodes']:8d}  {c['mean']:4.2f} [{c['ci95'][0]:4.2f}, {c['ci95'][1]:4.2f}]"
                    f"    {s['rate']:6.1%} [{s['ci95'][0]:5.1%},{s['ci95'][1]:6.1%}]  {m['gc']['mean']:5.2f}  "
                    f"{m['plws']['mean']:5.2f}  {m['invalid_action_rate']['rate']:7.1%}")

        for (randomized, k), m in self.breakdown(("randomized", "n_subtasks")).items():
            rows.append(row("randomized" if randomized else "dataset", str(k), m))
        rows.append(row("all", "-", self.summary()))
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data: meta, overall, readable groups (``"k=3, randomized"``), episodes."""

        def keyed(by: tuple[str, ...]) -> dict[str, Any]:
            return {group_label(k, by): {**dict(zip(by, k, strict=True)), **v} for k, v in self.breakdown(by).items()}

        return _clean({
            "meta": self.meta,
            "metrics": {
                "completion": "proportion of task completion: sub-tasks completed / k, mean per episode, 95 % t interval "
                              "clipped to [0, 1] (Wilson where every value is 0 or 1)",
                "success": "all goal conditions met; 95 % Wilson interval",
                "gc": "fraction of goal conditions met, mean per episode, 95 % interval as for completion",
                "plws": "path-length-weighted success, mean per episode, 95 % interval as for completion",
                "invalid_action_rate": "refused actions / steps, 95 % t interval of the ratio, clustered by episode",
            },
            "overall": self.summary(),
            "by_subtasks": keyed(("n_subtasks", "randomized")),
            "by_task_type": keyed(("task_type", "randomized")),
            "episodes": [e.row() for e in self.episodes],
        })

    def write(self, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``episodes.csv`` and ``evaluation.json`` into a folder (each atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = out / "episodes.csv", out / "evaluation.json"
        fields = [*EvalEpisode.__dataclass_fields__, "completion"]
        with _atomic(csv_path) as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for e in self.episodes:
                w.writerow(e.row())
        with _atomic(json_path) as f:
            json.dump(self.to_dict(), f, indent=1)
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
    """Uniformly random actions: over the admissible ones when given masks, else over the whole vocabulary
    (the floor every learned policy must beat).

    >>> act = random_policy(seed=0)
    >>> masks = np.zeros((50, 300), np.int8); masks[:, [3, 7]] = 1
    >>> sorted(set(act([{}] * 50, masks=masks).tolist()))
    [3, 7]
    """
    from rgvlm_gym.envs.alfred_lite import action_vocabulary

    state = {"rng": np.random.default_rng(seed)}
    n = len(action_vocabulary())

    def act(observations: Sequence[dict[str, Any]], infos: Sequence[dict[str, Any]] | None = None,
            masks: np.ndarray | None = None) -> np.ndarray:
        rng = state["rng"]
        if masks is None:
            return rng.integers(n, size=len(observations))
        m = np.asarray(masks, dtype=bool)
        # uniform over each row's admissible actions (the whole row where none is admissible)
        weights = np.where(m.any(axis=1, keepdims=True), m, True).astype(np.float64)
        cdf = np.cumsum(weights, axis=1)
        u = rng.random(len(m))[:, None] * cdf[:, -1:]
        return (cdf <= u).sum(axis=1).astype(np.int64)

    def reseed(key: int) -> None:
        """A stream of its own per chunk of episodes (forked workers would otherwise share one)."""
        state["rng"] = np.random.default_rng([seed, key])

    act.reseed = reseed  # type: ignore[attr-defined]
    return act


def _torch_scores(algo: Any, x: Any) -> tuple[Any, bool]:
    """(B, A) scores of a discrete d3rlpy algorithm on torch inputs, and whether they are logits.

    The greedy action of every supported algorithm is the argmax of these scores: DiscreteIQL's policy
    logits, DiscreteBC's imitator logits, the mean Q of DQN / DoubleDQN / DiscreteCQL, and for DiscreteBCQ
    its Q-values among the actions the imitator finds likely enough (others pushed below every Q-value).
    """
    import torch
    from d3rlpy.algos.qlearning.torch.bc_impl import DiscreteBCImpl
    from d3rlpy.algos.qlearning.torch.bcq_impl import DiscreteBCQImpl
    from d3rlpy.algos.qlearning.torch.dqn_impl import DQNImpl

    impl = algo.impl
    if impl is None:
        raise ValueError(f"{type(algo).__name__} is not built yet: fit it, build_with_dataset it or load a saved model")
    impl.modules.set_eval()
    if hasattr(impl, "policy_logits"):  # DiscreteIQL
        return impl.policy_logits(x), True
    if isinstance(impl, DiscreteBCImpl):
        return impl.modules.imitator(x).logits, True
    if isinstance(impl, DQNImpl):  # also DoubleDQN, DiscreteCQL, DiscreteBCQ
        q = torch.stack([qf(x).q_value for qf in impl.q_function]).mean(dim=0)
        if isinstance(impl, DiscreteBCQImpl):
            log_probs = torch.log_softmax(impl.modules.imitator(x).logits, dim=1)
            keep = (log_probs - log_probs.max(dim=1, keepdim=True).values) > math.log(algo.config.action_flexibility)
            spread = (q.max(dim=1, keepdim=True).values - q.min(dim=1, keepdim=True).values) + 1.0
            q = torch.where(keep, q, q - spread)  # any kept action outranks every dropped one
            return q, False
        return q, False
    raise ValueError(
        f"action scores are not available for {type(algo).__name__} (supported: DiscreteIQL, DQN, DoubleDQN, "
        "DiscreteCQL, DiscreteBCQ, DiscreteBC); evaluate without action masks (action_mask=False / --no-action-mask)"
    )


def action_scores(algo: Any, x: Any) -> np.ndarray:
    """``(batch, n_actions)`` scores of a discrete d3rlpy algorithm whose argmax is its greedy action.

    Q-values for DQN / DoubleDQN / DiscreteCQL / DiscreteBCQ (BCQ's filtered ones), policy logits for
    DiscreteIQL and DiscreteBC. Masking them (``-inf`` where an action is not admissible) and taking the
    argmax is how :func:`d3rlpy_policy` picks the best admissible action.
    """
    import torch
    from d3rlpy.torch_utility import convert_to_torch_recursively

    with torch.inference_mode():
        tx = convert_to_torch_recursively(x, algo.impl.device if algo.impl is not None else "cpu:0")
        if algo.config.observation_scaler is not None:
            tx = algo.config.observation_scaler.transform(tx)
        scores, _ = _torch_scores(algo, tx)
        return scores.float().cpu().numpy()


def d3rlpy_policy(algo: Any, encoder: str = "minilm", greedy: bool = True, image_size: int | None = None, seed: int = 0) -> Policy:
    """A trained discrete d3rlpy algorithm on ``(image, instruction embedding)`` tuples as a batch policy.

    The instruction goes through the same frozen, cached encoder as :func:`rgvlm_gym.data.to_d3rlpy`. A
    model trained on another action vocabulary (an older AlfredLite) is refused with
    :class:`rgvlm_gym.envs.versions.VocabularyMismatchError`. A model trained on ``(image, instruction, action mask)`` observations (``to_d3rlpy(action_masks=True)``)
    gets each observation's ``"action_mask"`` (which :func:`evaluate` adds) as its third input, whatever
    ``masks`` says; such a DiscreteIQL decodes over admissible actions by itself.
    Called with ``masks`` it picks the best admissible action (see :func:`action_scores`); ``greedy=False``
    samples from the masked policy of logit-based algorithms (IQL, BC) and stays greedy for Q-based ones, as
    d3rlpy's ``sample_action`` does.
    """
    import torch
    from d3rlpy.torch_utility import convert_to_torch_recursively

    from rgvlm_gym.data.embeddings import InstructionEmbedder
    from rgvlm_gym.envs.versions import check_action_names

    if getattr(algo, "action_size", None) is not None:
        check_action_names(int(algo.action_size), "this model")
    embed = InstructionEmbedder(encoder)
    table: dict[str, np.ndarray] = {}
    gen = torch.Generator().manual_seed(int(seed))
    shape = algo.impl.observation_shape if algo.impl is not None else None
    observes_mask = bool(shape) and isinstance(shape[0], list | tuple) and len(shape) == 3

    def inputs(observations: Sequence[dict[str, Any]], infos: Sequence[dict[str, Any]] | None) -> list[np.ndarray]:
        texts = [o["instruction"] for o in observations]
        new = sorted({t for t in texts if t not in table})
        if new:
            table.update(zip(new, embed(new), strict=True))
        images = np.stack([o["image"] for o in observations])
        if image_size is not None and images.shape[1] != image_size:
            from PIL import Image

            images = np.stack([np.asarray(Image.fromarray(im).resize((image_size, image_size), Image.Resampling.BOX)) for im in images])
        x = [np.ascontiguousarray(images.transpose(0, 3, 1, 2)), np.stack([table[t] for t in texts])]
        if observes_mask:  # a model trained on (image, instruction, admissible-action mask) observations
            if infos is not None and any(o.get("action_mask") is None for o in observations):
                observations = [{**o, "action_mask": i.get("action_mask")} for o, i in zip(observations, infos, strict=True)]
            if any(o.get("action_mask") is None for o in observations):
                raise ValueError("this model observes admissible-action masks (trained with action_masks=True), "
                                 "but the observations carry none (evaluate() adds info['action_mask'] to them)")
            x.append(np.stack([np.asarray(o["action_mask"], dtype=np.float32) for o in observations]))
        return x

    def prepare(instructions: Sequence[str], progress: bool = False) -> None:
        """Embed every instruction of an evaluation at once (batched, cached, with a progress bar)."""
        new = sorted({t for t in instructions if t not in table})
        if new:
            table.update(zip(new, embed(new, progress=progress), strict=True))

    def act(observations: Sequence[dict[str, Any]], infos: Sequence[dict[str, Any]] | None = None,
            masks: np.ndarray | None = None) -> np.ndarray:
        x = inputs(observations, infos)
        if masks is None:
            out = algo.predict(x) if greedy else algo.sample_action(x)
            return np.asarray(out).reshape(-1)
        with torch.inference_mode():
            tx = convert_to_torch_recursively(x, algo.impl.device)
            if algo.config.observation_scaler is not None:
                tx = algo.config.observation_scaler.transform(tx)
            scores, logits = _torch_scores(algo, tx)
            m = torch.as_tensor(np.asarray(masks), device=scores.device).bool()
            m = torch.where(m.any(dim=1, keepdim=True), m, torch.ones_like(m))  # nothing admissible: unmasked
            scores = scores.float().masked_fill(~m, -math.inf)
            if greedy or not logits:
                return scores.argmax(dim=1).cpu().numpy()
            probs = torch.softmax(scores, dim=1).cpu()
            return torch.multinomial(probs, 1, generator=gen).view(-1).numpy()

    act.prepare = prepare  # type: ignore[attr-defined]
    act.observes_action_mask = observes_mask  # type: ignore[attr-defined]
    return act


def _accepts_infos(policy: Any) -> bool:
    try:
        params = list(inspect.signature(policy).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _accepts_masks(policy: Any) -> bool:
    try:
        params = inspect.signature(policy).parameters
    except (TypeError, ValueError):
        return False
    return "masks" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


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


_FORKED: dict[str, Any] = {}


def _init_rollout_worker() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if "torch" in sys.modules:  # one thread per worker process: the workers are the parallelism
        sys.modules["torch"].set_num_threads(1)


def _rollout_chunk(chunk: list[tuple[int, tuple[int, bool, int]]]) -> tuple[dict[int, EvalEpisode], bool]:
    f = _FORKED
    reseed = getattr(f["policy"], "reseed", None)
    if callable(reseed):  # a random policy: its own stream per chunk, not the parent's copied state
        reseed(chunk[0][0])
    return _rollouts(f["policy"], f["kwargs"], chunk, f["batch_size"], f["use_masks"], None)


def _rollouts(
    policy: Any,
    kwargs: dict[str, Any],
    jobs: list[tuple[int, tuple[int, bool, int]]],
    batch_size: int,
    use_masks: bool,
    bar: Any,
    envs: list[Any] | None = None,
) -> tuple[dict[int, EvalEpisode], bool]:
    """Run ``jobs`` (index, (seed, randomized, task index)) with up to ``batch_size`` environments in
    lockstep, refilling a slot as soon as its episode ends; returns the episodes by index and whether
    masks were applied."""
    import gymnasium as gym

    envs = list(envs or [])
    while len(envs) < min(batch_size, len(jobs)):
        envs.append(gym.make("rgvlm_gym/AlfredLite-v1", **kwargs).unwrapped)
    results: dict[int, EvalEpisode] = {}
    with_infos = _accepts_infos(policy)
    pending = deque(jobs)
    slots: list[dict[str, Any] | None] = [None] * len(envs)
    masks_seen = False

    def start(slot: int) -> None:
        if not pending:
            slots[slot] = None
            return
        j, (seed, rand, idx) = pending.popleft()
        env = envs[slot]
        obs, info = env.reset(seed=seed * 100_003 + idx, options={"task_index": idx, "randomize_init": rand})
        slots[slot] = {"env": env, "obs": obs, "info": info, "steps": 0, "invalid": 0, "expert": len(env.expert_plan()),
                       "job": j, "seed": seed, "rand": rand}

    def finish(s: dict[str, Any]) -> None:
        info, task = s["info"], s["env"].task
        met, total = info["goal_conditions"]
        ok = bool(info["success"])
        results[s["job"]] = EvalEpisode(
            task_id=task.task_id, task_key=task.key, task_type=task.task_type, n_subtasks=task.n_subtasks,
            randomized=bool(s["rand"]), seed=int(s["seed"]), success=ok, gc=met / total if total else 0.0,
            steps=s["steps"], expert_steps=s["expert"],
            plws=(s["expert"] / max(s["steps"], s["expert"], 1)) if ok else 0.0,
            invalid_actions=s["invalid"], subtasks_done=int(info["subtask_progress"][0]),
        )
        if bar is not None:
            bar.update(1)

    for i in range(len(envs)):
        start(i)
    while True:
        active = [i for i, s in enumerate(slots) if s is not None]
        if not active:
            break
        raw = [slots[i]["info"].get("action_mask") for i in active]  # type: ignore[index]
        # the mask is part of what the agent sees (a model may observe it), whether or not decoding is restricted
        obs = [{**slots[i]["obs"], "action_mask": m} if m is not None else slots[i]["obs"] for i, m in zip(active, raw, strict=True)]  # type: ignore[index]
        args: list[Any] = [obs]
        if with_infos:
            args.append([slots[i]["info"] for i in active])  # type: ignore[index]
        if use_masks:
            if all(m is not None for m in raw):
                masks_seen = True
                actions = policy(*args, masks=np.stack(raw))
            else:  # an environment without masks: the policy acts unmasked
                actions = policy(*args, masks=None)
        else:
            actions = policy(*args)
        for i, a in zip(active, np.asarray(actions).reshape(-1), strict=True):
            s = slots[i]
            assert s is not None
            o, _, term, trunc, info = s["env"].step(int(a))
            s["obs"], s["info"] = o, info
            s["steps"] += 1
            s["invalid"] += info["action_error"] is not None
            if term or trunc:
                finish(s)
                start(i)
    return results, masks_seen


def evaluate(
    policy: Policy,
    env_kwargs: dict[str, Any],
    episodes_per_k: int = 20,
    seeds: Sequence[int] = (0, 1, 2),
    randomize: Sequence[bool] = (False, True),
    subtask_counts: Iterable[int] | None = None,
    batch_size: int = 64,
    progress: bool = False,
    action_mask: bool = True,
    threads: int | None = None,
    workers: int = 1,
) -> EvaluationReport:
    """Roll ``policy`` out on AlfredLite tasks and collect :class:`EvalEpisode` s.

    Args:
        policy: maps a batch of observations (and, if it takes them, ``masks``) to actions (see
            :func:`d3rlpy_policy`).
        env_kwargs: ``gym.make("rgvlm_gym/AlfredLite-v1", **env_kwargs)`` arguments (the task suite).
        episodes_per_k: tasks drawn per sub-task count, per seed and per initial-state kind.
        seeds: evaluation seeds (task draw, reset seed, randomized placement).
        randomize: evaluate from the dataset's initial states (False) and/or randomized ones (True).
        subtask_counts: only these sub-task counts (default: all in the suite).
        batch_size: environments stepped in lockstep, so the policy sees batches of this size.
        progress: show a progress bar.
        action_mask: give the policy ``info["action_mask"]`` so that it acts among admissible actions only.
        threads: torch intra-op threads (``rgvlm_gym.rl.threads.set_num_threads``); ``None`` leaves torch's
            setting alone.
        workers: processes that roll out chunks of episodes in parallel (forked where the OS can, each with
            one torch thread and its own batch of environments); the episodes do not depend on it for a
            deterministic policy.
    """
    import gymnasium as gym

    import rgvlm_gym  # noqa: F401  (registers the env)

    if episodes_per_k < 1:
        raise ValueError(f"episodes_per_k must be >= 1, got {episodes_per_k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if int(workers) > 1 and "fork" not in __import__("multiprocessing").get_all_start_methods():
        workers = 1  # no fork (Windows, macOS default): one process
    if threads is not None:
        from rgvlm_gym.rl.threads import set_num_threads

        threads = set_num_threads(threads)
    elif "torch" in sys.modules:
        threads = int(sys.modules["torch"].get_num_threads())
    kwargs = {k: v for k, v in env_kwargs.items() if k != "randomize_init"}
    probe = gym.make("rgvlm_gym/AlfredLite-v1", **kwargs).unwrapped
    jobs = [(seed, rand, idx) for seed in seeds for rand in randomize for idx in _select_tasks(probe, episodes_per_k, seed, subtask_counts)]
    use_masks = bool(action_mask) and _accepts_masks(policy)
    prepare = getattr(policy, "prepare", None)
    if callable(prepare):  # e.g. embed all instructions in one batched pass instead of a few per step
        texts = [probe.reset(seed=seed * 100_003 + idx, options={"task_index": idx, "randomize_init": rand})[0]["instruction"]
                 for seed, rand, idx in jobs]
        prepare(texts, progress=progress)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="evaluate", unit="ep")
    workers = max(1, min(int(workers), len(jobs)))
    results: dict[int, EvalEpisode] = {}
    masks_seen = False
    indexed = list(enumerate(jobs))
    if workers == 1:
        res, masks_seen = _rollouts(policy, kwargs, indexed, batch_size, use_masks, bar, envs=[probe])
        results.update(res)
    else:
        import multiprocessing as mp

        # forked workers inherit the policy (a closure over the model and its embedding table): nothing is
        # pickled but the jobs and the episodes; chunks of a few batches keep the progress bar moving
        chunk = max(batch_size, 1) * 2
        chunks = [indexed[i : i + chunk] for i in range(0, len(indexed), chunk)]
        _FORKED.update(policy=policy, kwargs=kwargs, batch_size=batch_size, use_masks=use_masks)
        try:
            with mp.get_context("fork").Pool(workers, initializer=_init_rollout_worker) as pool:
                for res, seen in pool.imap_unordered(_rollout_chunk, chunks):
                    results.update(res)
                    masks_seen = masks_seen or seen
                    if bar is not None:
                        bar.update(len(res))
        finally:
            _FORKED.clear()
    if bar is not None:
        bar.close()
    meta = {
        "env_kwargs": dict(env_kwargs),
        "episodes_per_k": episodes_per_k,
        "seeds": list(seeds),
        "randomize": list(randomize),
        "action_mask": bool(use_masks and masks_seen),
        "action_mask_requested": bool(action_mask),
        "policy_observes_action_mask": bool(getattr(policy, "observes_action_mask", False)),
        "threads": threads,
        "batch_size": int(batch_size),
        "workers": workers,
    }
    return EvaluationReport([results[j] for j in range(len(jobs))], meta)

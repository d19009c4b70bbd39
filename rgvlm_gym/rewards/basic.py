"""Labelers without an LVLM, and the combination of two labelers.

Holds:

- :class:`SparseLabeler` — the episode's own (sparse) environment reward.
- :class:`OracleLabeler` — the dense progress oracle: what an ideal judge would credit each step with
  (:func:`progress_contributions`), the reference upper bound; ``oracle_subtask`` is the older sub-task
  indicator (:func:`subtask_contributions`), kept for comparison.
- :class:`CombinedLabeler` — ``base + lam * normalise(dense)``, e.g. sparse + lam * RG-VLM.

Normalisation of the dense part (``normalize``), applied per episode before scaling by ``lam``:

- ``"none"`` (default, the paper's choice): the dense labeler's rewards as they are. Every dense labeler
  here is already in [0, 1]: RG-VLM gives score / 10, the oracle 0 / 0.5 / 1 (:data:`PARTIAL_CREDIT`), the
  success detector 0 or 1.
- ``"max"``: divided by the episode's largest dense reward (when > 0), so the best step of each episode
  gets 1 — removes a labeler's overall stinginess or generosity.
- ``"sum"``: divided by the episode's dense sum (when > 0), so each episode's dense rewards add up to 1 —
  the return bonus no longer grows with episode length, which keeps long random detours from earning more
  than short solutions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.rewards.base import Labeler, LabelResult, make_labeler, register_labeler

__all__ = [
    "NORMALIZATIONS",
    "PARTIAL_CREDIT",
    "CombinedLabeler",
    "MissingGroundTruthError",
    "OracleLabeler",
    "SparseLabeler",
    "SubtaskOracleLabeler",
    "oracle_contributions",
    "progress_contributions",
    "subtask_contributions",
]

NORMALIZATIONS = ("none", "max", "sum")
FALLBACKS = ("none", "base")


#: Credit of a step that brings the goal closer without completing a sub-task (a sub-task: 1, else 0).
PARTIAL_CREDIT = 0.5


class MissingGroundTruthError(ValueError):
    """An episode lacks the privileged ground truth a labeler needs (e.g. a dataset from an older version)."""


def subtask_contributions(episode: EpisodeRecord) -> np.ndarray:
    """(T,) float32 sub-tasks completed by each step, clipped to [0, 1] (the older, sparse-ish oracle)."""
    if len(episode.progress) != len(episode) + 1:
        raise MissingGroundTruthError(
            f"Expect episode {episode.episode_id} `progress` to have T+1 = {len(episode) + 1} entries, "
            f"actually: {len(episode.progress)}"
        )
    out: np.ndarray = np.clip(episode.progress_deltas(), 0.0, 1.0).astype(np.float32)
    return out


def progress_contributions(episode: EpisodeRecord) -> np.ndarray:
    """(T,) float32 contribution of each step to the goal, from the expert planner's cost-to-go.

    What an ideal judge says of each action (privileged ground truth, recorded at collection):

    - ``1`` -- the step completed a sub-task (sub-task progress went up);
    - :data:`PARTIAL_CREDIT` -- it brought the goal closer: the expert plan from the state after it is
      shorter than from the state before, or it is the expert's own next action (walking to the right
      place, picking up the right object, ...);
    - ``0`` -- useless, invalid, or undoing (the plan got no shorter).

    Raises :class:`MissingGroundTruthError` for episodes without ``cost_to_go`` (datasets collected
    before rgvlm-gym recorded it): re-collect them, or use the ``oracle_subtask`` labeler.

    Example:
        >>> from rgvlm_gym.rewards.testing import toy_episode
        >>> ep = toy_episode()   # 3 steps: a walk, then two steps that each complete a sub-task
        >>> progress_contributions(ep).tolist(), subtask_contributions(ep).tolist()
        ([0.5, 1.0, 1.0], [0.0, 1.0, 1.0])
    """
    full = subtask_contributions(episode)
    T = len(episode)
    cost, expert = episode.cost_to_go, episode.expert_actions
    if cost is None or expert is None:
        raise MissingGroundTruthError(
            f"episode {episode.episode_id} has no per-step progress ground truth (cost_to_go): its dataset was "
            "collected by rgvlm-gym before format version 2. Re-collect it with `rgvlm collect`, or use "
            "`--labeler oracle_subtask` (the sub-task indicator)."
        )
    cost = np.asarray(cost, dtype=np.int64)
    expert = np.asarray(expert, dtype=np.int64)
    if len(cost) != T + 1 or len(expert) != T + 1:
        raise MissingGroundTruthError(
            f"Expect episode {episode.episode_id} `cost_to_go` and `expert_actions` to have T+1 = {T + 1} "
            f"entries, actually: {len(cost)} and {len(expert)}"
        )
    actions = np.asarray(episode.actions, dtype=np.int64)
    errors = episode.action_errors
    valid = np.array([not e for e in errors], dtype=bool) if len(errors) == T else np.ones(T, bool)
    known = (cost[:-1] >= 0) & (cost[1:] >= 0)
    closer = known & (cost[1:] < cost[:-1])
    followed = (actions == expert[:-1]) & (expert[:-1] >= 0) & valid
    out = np.where(full > 0, 1.0, np.where(closer | followed, PARTIAL_CREDIT, 0.0)).astype(np.float32)
    return out


def oracle_contributions(episode: EpisodeRecord) -> np.ndarray:
    """(T,) float32 in [0, 1]: the ground truth every labeler is judged by (:func:`progress_contributions`)."""
    return progress_contributions(episode)


class SparseLabeler(Labeler):
    """The environment's own reward as stored in the episode (1 on the step that reaches success).

    Example:
        >>> import numpy as np
        >>> from rgvlm_gym.rewards import SparseLabeler
        >>> from rgvlm_gym.rewards.testing import toy_episode
        >>> SparseLabeler().label(toy_episode()).rewards
        array([0., 0., 1.], dtype=float32)
    """

    name = "sparse"

    def label(self, episode: EpisodeRecord) -> LabelResult:
        rewards = np.asarray(episode.rewards, dtype=np.float32).copy()
        if rewards.shape != (len(episode),):
            raise ValueError(
                f"Expect episode {episode.episode_id} `rewards` of shape ({len(episode)},), actually: {rewards.shape}"
            )
        return LabelResult(rewards=rewards, raw_scores=rewards)

    def params(self) -> dict[str, Any]:
        return {}


class OracleLabeler(Labeler):
    """The dense progress oracle: each step's contribution to the goal (:func:`progress_contributions`).

    Privileged: it reads the expert planner's cost-to-go recorded at collection, which only a simulator
    knows. It is the upper bound a dense labeler is compared against (an ideal LVLM judge), not something to
    train a deployable agent with. ``variant="subtask"`` (registered as ``oracle_subtask``) is the older
    indicator: the sub-tasks each step completed.

    Example:
        >>> from rgvlm_gym.rewards import OracleLabeler
        >>> from rgvlm_gym.rewards.testing import toy_episode
        >>> OracleLabeler().label(toy_episode()).rewards
        array([0.5, 1. , 1. ], dtype=float32)
        >>> OracleLabeler(variant="subtask").label(toy_episode()).rewards
        array([0., 1., 1.], dtype=float32)
    """

    name = "oracle"
    VARIANTS = ("progress", "subtask")

    def __init__(self, variant: str = "progress") -> None:
        if variant not in self.VARIANTS:
            raise ValueError(f"Expect oracle `variant` to be one of {self.VARIANTS}, actually: {variant!r}")
        self.variant = variant

    def label(self, episode: EpisodeRecord) -> LabelResult:
        fn = progress_contributions if self.variant == "progress" else subtask_contributions
        contributions = fn(episode)
        return LabelResult(rewards=contributions, raw_scores=contributions)

    def params(self) -> dict[str, Any]:
        return {"variant": self.variant}


class SubtaskOracleLabeler(OracleLabeler):
    """The sub-task indicator oracle (``oracle_subtask``): 1 on a step that completes a sub-task, else 0."""

    name = "oracle_subtask"

    def __init__(self) -> None:
        super().__init__(variant="subtask")

    def params(self) -> dict[str, Any]:
        return {}


def normalize_dense(rewards: np.ndarray, normalize: str) -> np.ndarray:
    """Per-episode normalisation of dense rewards (module docstring)."""
    r: np.ndarray = np.array(rewards, dtype=np.float32)
    if normalize == "max" and r.size and r.max() > 0:
        r /= r.max()
    elif normalize == "sum" and r.size and r.sum() > 0:
        r /= r.sum()
    return r


class CombinedLabeler(Labeler):
    """``base + lam * normalise(dense)``: e.g. the sparse reward plus lam times RG-VLM's score / 10.

    Args:
        base: the base labeler (default: sparse), a :class:`Labeler`, a name or a ``{"type", "params"}``.
        dense: the dense labeler (RG-VLM, oracle, success detector...), same forms.
        lam: weight of the dense part (``lam >= 0``).
        normalize: ``"none"``, ``"max"`` or ``"sum"`` (module docstring).
        fallback: what an episode the dense labeler could not label gets: ``"none"`` (it stays unlabeled)
            or ``"base"`` (the base reward alone; ``meta["fallback"]`` says why).

    The result keeps both parts for audit: ``meta["base"]`` and ``meta["dense"]`` (before normalisation),
    and the dense labeler's ``raw_scores`` and ``texts``.

    Example:
        >>> from rgvlm_gym.rewards import CombinedLabeler
        >>> from rgvlm_gym.rewards.testing import toy_episode
        >>> CombinedLabeler(base="sparse", dense="oracle", lam=0.5).label(toy_episode()).rewards
        array([0.25, 0.5 , 1.5 ], dtype=float32)
    """

    name = "combined"

    def __init__(
        self,
        base: Labeler | str | Mapping[str, Any] = "sparse",
        dense: Labeler | str | Mapping[str, Any] = "oracle",
        lam: float = 1.0,
        normalize: str = "none",
        fallback: str = "none",
    ) -> None:
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not np.isfinite(lam) or lam < 0:
            raise ValueError(f"Expect `lam` to be a finite number >= 0, actually: {lam!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"Expect `normalize` to be one of {NORMALIZATIONS}, actually: {normalize!r}")
        if fallback not in FALLBACKS:
            raise ValueError(f"Expect `fallback` to be one of {FALLBACKS}, actually: {fallback!r}")
        self.base = make_labeler(base)
        self.dense = make_labeler(dense)
        self.lam = float(lam)
        self.normalize = normalize
        self.fallback = fallback

    @property
    def uses_lvlm(self) -> bool:  # type: ignore[override]
        return self.base.uses_lvlm or self.dense.uses_lvlm

    @property
    def needs_fit(self) -> bool:  # type: ignore[override]
        return self.base.needs_fit or self.dense.needs_fit

    def fit(self, episodes: Any) -> None:
        for part in (self.base, self.dense):
            if part.needs_fit:
                part.fit(episodes)

    def extra_cost(self) -> dict[str, float]:
        out = dict(self.base.extra_cost())
        for k, v in self.dense.extra_cost().items():
            out[k] = out.get(k, 0) + v
        return out

    def params(self) -> dict[str, Any]:
        return {
            "base": self.base.config,
            "dense": self.dense.config,
            "lam": self.lam,
            "normalize": self.normalize,
            "fallback": self.fallback,
        }

    def combine(self, base: LabelResult, dense: LabelResult) -> LabelResult:
        """The combination of two results of the same episode."""
        usage: dict[str, float] = dict(base.usage)
        for k, v in dense.usage.items():
            usage[k] = usage.get(k, 0) + v
        shared: dict[str, Any] = {
            "raw_scores": dense.raw_scores,
            "texts": [*base.texts, *dense.texts],
            "calls": base.calls + dense.calls,
            "usage": usage,
            "cached": base.cached or dense.cached,
            "simulated": base.simulated or dense.simulated,
        }
        meta: dict[str, Any] = {
            "lam": self.lam,
            "normalize": self.normalize,
            "base_status": base.status,
            "dense_status": dense.status,
            "dense_meta": dense.meta,
        }
        if base.rewards is None:
            return LabelResult.unlabeled(base.status, f"base labeler: {base.reason}", meta=meta, **shared)
        meta["base"] = base.rewards.tolist()
        if dense.rewards is None:
            if self.fallback == "base":
                meta["fallback"] = f"dense labeler {dense.status}: {dense.reason}"
                return LabelResult(rewards=base.rewards.copy(), meta=meta, **shared)
            return LabelResult.unlabeled(dense.status, dense.reason, meta=meta, **shared)
        if dense.rewards.shape != base.rewards.shape:
            raise ValueError(
                f"Expect the base and dense labels to have one reward per step, actually: shapes "
                f"{base.rewards.shape} and {dense.rewards.shape}"
            )
        meta["dense"] = dense.rewards.tolist()
        rewards = base.rewards + np.float32(self.lam) * normalize_dense(dense.rewards, self.normalize)
        return LabelResult(rewards=rewards.astype(np.float32), meta=meta, **shared)

    def label(self, episode: EpisodeRecord) -> LabelResult:
        return self.combine(self.base.label(episode), self.dense.label(episode))

    async def alabel(self, episode: EpisodeRecord) -> LabelResult:
        base, dense = await asyncio.gather(self.base.alabel(episode), self.dense.alabel(episode))
        return self.combine(base, dense)

    async def _release_loop_resources(self) -> None:
        await self.base._release_loop_resources()
        await self.dense._release_loop_resources()

    def close(self) -> None:
        self.base.close()
        self.dense.close()


register_labeler("sparse", SparseLabeler)
register_labeler("oracle", OracleLabeler)
register_labeler("oracle_subtask", SubtaskOracleLabeler)
register_labeler("combined", CombinedLabeler)

"""What the LVLM-feedback labelers share: ground-truth frame values and :class:`FeedbackLabeler`.

Holds :func:`oracle_values`, :func:`episode_scale` and :class:`FeedbackLabeler`, the base of the ``rlvlmf``
(preferences, :mod:`rgvlm_gym.rewards.rlvlmf`) and ``rating`` (:mod:`rgvlm_gym.rewards.rating`) labelers.

A feedback labeler works on the whole dataset, in two phases:

1. :meth:`FeedbackLabeler.fit` reads the episodes once (streamed), samples queries inside each episode
   (``queries_per_episode`` on average, deterministic per episode), asks the LVLM each one as a two-stage
   conversation (an analysis, then a short verdict; one repair prompt when the verdict is unusable; a query
   still unusable is dropped and counted, never guessed) and trains a reward model on the answers
   (:mod:`rgvlm_gym.rewards.reward_model`).
2. :meth:`FeedbackLabeler.label` scores every frame of an episode with the reward model, scaled to [0, 1]
   by the range seen in training: the reward of step t is the score of the frame after it (``reward="state"``,
   as RL-VLM-F and ERL-VLM do) or the change of score over the step (``reward="delta"``).

Every LVLM call goes through the label cache (when one is given), so a re-run or a resumed run asks the
LVLM nothing it has answered before; training (seconds, seeded) and labeling (one forward pass per frame)
are simply redone. Costs of the fit phase (calls, tokens, images, training seconds) and forward passes are
in :meth:`FeedbackLabeler.extra_cost`; ``rgvlm relabel`` prints them.

The ground truth the simulated LVLM answers from is :func:`oracle_values`, built on the oracle's
per-step contributions (:func:`~rgvlm_gym.rewards.basic.oracle_contributions`) only.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from rgvlm_gym._async import run_coroutine
from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.lvlm import LVLM, LVLMError, LVLMResponse
from rgvlm_gym.lvlm.sim_tasks import progress_values
from rgvlm_gym.rewards.base import LabelResult
from rgvlm_gym.rewards.basic import PARTIAL_CREDIT, oracle_contributions
from rgvlm_gym.rewards.cache import LabelCache, array_digest, content_key
from rgvlm_gym.rewards.lvlm_labeler import LVLMLabeler, _Tally
from rgvlm_gym.rewards.reward_model import RewardModel, TrainStats, observation_features

__all__ = ["REWARD_FORMS", "FeedbackLabeler", "episode_frames", "episode_scale", "oracle_values"]

REWARD_FORMS = ("state", "delta")


def episode_scale(episode: EpisodeRecord, contributions: np.ndarray | None = None) -> float:
    """The denominator of :func:`oracle_values`: the credit of the whole task as this episode would earn it.

    A successful episode: its total contribution (so its last frame is 100 % done). An unfinished one: its
    total plus the credit the expert plan from its last state would still earn (1 per sub-task left,
    :data:`~rgvlm_gym.rewards.basic.PARTIAL_CREDIT` per other step of that plan, from the recorded
    ``cost_to_go``), so its last frame is short of 100 % by what is left to do; without ``cost_to_go``,
    ``max(total, n_subtasks)``.
    """
    c = oracle_contributions(episode) if contributions is None else contributions
    total = float(np.sum(c))
    if episode.success and total > 0:
        return total
    n_sub = int(episode.task.get("n_subtasks") or 0)
    cost = episode.cost_to_go
    if cost is not None and len(cost) == len(episode) + 1 and int(cost[-1]) >= 0 and len(episode.progress):
        left = max(0, n_sub - int(episode.progress[-1]))
        return max(total + left + max(0, int(cost[-1]) - left) * PARTIAL_CREDIT, 1e-6)
    return max(total, float(n_sub), 1e-6)


def oracle_values(episode: EpisodeRecord) -> np.ndarray:
    """(T+1,) float64 ground-truth completed fraction of each frame, in [0, 1] (privileged).

    ``cumsum(oracle_contributions) / episode_scale`` with 0 for the first frame
    (:func:`~rgvlm_gym.lvlm.sim_tasks.progress_values`).

    Example:
        >>> from rgvlm_gym.rewards.feedback import oracle_values
        >>> from rgvlm_gym.rewards.testing import toy_episode
        >>> oracle_values(toy_episode()).round(3).tolist()
        [0.0, 0.2, 0.6, 1.0]
    """
    c = oracle_contributions(episode)
    return progress_values(c, episode_scale(episode, c))


def episode_frames(episode: EpisodeRecord) -> np.ndarray:
    """The episode's LVLM frames, or its RL images when it has none: (T+1, H, W, 3) uint8."""
    frames = episode.frames if episode.frames is not None else episode.images
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[0] != len(episode) + 1 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"Expect episode {episode.episode_id} frames (or images) of shape (T+1={len(episode) + 1}, H, W, 3) "
            f"uint8, actually: {arr.dtype} {arr.shape}"
        )
    return arr


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


class FeedbackLabeler(LVLMLabeler):
    """Base of labelers that train a reward model from LVLM feedback (module docstring).

    Subclasses define :meth:`sample` (the queries of an episode), :meth:`query_content`, the prompt texts
    (:attr:`PROMPTS`), :meth:`parse` and :meth:`train`.

    Args:
        lvlm: an :class:`~rgvlm_gym.lvlm.LVLM`, a spec string or a config.
        queries_per_episode: average LVLM queries per episode (each query costs 2 calls, 3 with a repair).
        segment: frames per segment shown in a query (1: single images).
        reward: ``"state"`` (reward of step t = model score of the frame after it) or ``"delta"``.
        epochs, hidden, lr: reward-model training.
        seed: seed of query sampling and training.
        concurrency: episodes whose queries are asked at once during :meth:`fit`.
        cache, gen, retry_invalid: as for :class:`~rgvlm_gym.rewards.lvlm_labeler.LVLMLabeler`.
    """

    needs_fit = True
    #: prompt texts by section (``system``, ``intro``, ``caption``, ``analysis``, ``label``, ``repair``).
    PROMPTS: ClassVar[dict[str, str]] = {}
    #: the sim task answering the queries.
    SIM_TASK: ClassVar[str] = ""

    def __init__(
        self,
        lvlm: LVLM | str | Mapping[str, Any],
        *,
        queries_per_episode: float = 2.0,
        segment: int = 1,
        reward: str = "state",
        epochs: int = 100,
        hidden: int = 128,
        lr: float = 1e-3,
        seed: int = 0,
        concurrency: int = 32,
        cache: LabelCache | str | os.PathLike[str] | None = None,
        gen: Mapping[str, Any] | None = None,
        retry_invalid: bool = False,
    ) -> None:
        if isinstance(queries_per_episode, bool) or not isinstance(queries_per_episode, (int, float)) or not 0 < queries_per_episode <= 1000:
            raise ValueError(f"Expect `queries_per_episode` to be a number in (0, 1000], actually: {queries_per_episode!r}")
        for name, value, low in (("segment", segment, 1), ("epochs", epochs, 1), ("hidden", hidden, 1), ("concurrency", concurrency, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Expect `{name}` to be an int >= {low}, actually: {value!r}")
        if reward not in REWARD_FORMS:
            raise ValueError(f"Expect `reward` to be one of {REWARD_FORMS}, actually: {reward!r}")
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"Expect `lr` to be a number > 0, actually: {lr!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"Expect `seed` to be an int, actually: {seed!r}")
        self.queries_per_episode = float(queries_per_episode)
        self.segment = segment
        self.reward = reward
        self.epochs, self.hidden, self.lr, self.seed = epochs, hidden, float(lr), seed
        self.concurrency = concurrency
        self.model: RewardModel | None = None
        self.train_stats: TrainStats | None = None
        self.fit_report: dict[str, Any] = {}
        self._cost: dict[str, float] = {}
        self._lock = threading.Lock()
        super().__init__(lvlm, cache=cache, gen=gen, retry_invalid=retry_invalid)

    # -- identity

    def _own_params(self) -> dict[str, Any]:
        return {
            "queries_per_episode": self.queries_per_episode,
            "segment": self.segment,
            "reward": self.reward,
            "epochs": self.epochs,
            "hidden": self.hidden,
            "lr": self.lr,
            "seed": self.seed,
        }

    def params(self) -> dict[str, Any]:
        return {**super().params(), **self._own_params()}

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), **self._own_params()}

    def prompt_id(self) -> str:
        return f"{self.name}_v1@{content_key(self.PROMPTS)}"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FeedbackLabeler:
        params = dict(params)
        lvlm = params.pop("lvlm")
        return cls(lvlm, **params)

    # -- what subclasses provide

    def sample(self, episode: EpisodeRecord, rng: np.random.Generator, n: int) -> list[list[list[int]]]:
        """``n`` queries of the episode, each a list of segments, each a list of frame indices."""
        raise NotImplementedError

    def query_privileged(self) -> dict[str, Any]:
        """Extra privileged fields of this labeler's sim task (e.g. the rating scale)."""
        return {}

    def parse(self, text: str) -> tuple[Any, str]:
        """``(verdict, "")`` for a usable answer, ``(None, what is wrong)`` otherwise."""
        raise NotImplementedError

    def train(self, items: list[tuple[list[np.ndarray], Any]]) -> tuple[RewardModel, TrainStats]:
        """A reward model from ``(segment features, verdict)`` pairs."""
        raise NotImplementedError

    # -- queries

    def _episode_rng(self, episode: EpisodeRecord) -> np.random.Generator:
        key = content_key({"seed": self.seed, "episode": episode.episode_id, "goal": episode.instruction, "T": len(episode)})
        return np.random.default_rng([self.seed & 0xFFFFFFFF, int(key[:16], 16)])

    def _n_queries(self, rng: np.random.Generator) -> int:
        whole = int(self.queries_per_episode)
        return whole + int(rng.random() < self.queries_per_episode - whole)

    def query_messages(self, episode: EpisodeRecord, frames: np.ndarray, segments: list[list[int]], gt: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The stage-1 (analysis) conversation of one query."""
        p = self.PROMPTS
        content: list[dict[str, Any]] = [_text(p["intro"].format(goal=episode.instruction, n=len(segments)))]
        for j, seg in enumerate(segments, start=1):
            content.append(_text(p["caption"].format(index=j, n_frames=len(seg))))
            content.extend({"type": "image", "image": frames[t]} for t in seg)
        content.append(_text(p["analysis"].format(goal=episode.instruction)))
        if gt is not None:
            content.append({"type": "privileged", "data": {**gt, "stage": "analysis", "frames": segments}})
        return [{"role": "system", "content": p["system"]}, {"role": "user", "content": content}]

    async def _ask(self, episode: EpisodeRecord, frames: np.ndarray, segments: list[list[int]], gt: dict[str, Any] | None, tally: _Tally, replay: bool) -> tuple[Any, str, list[str]]:
        """One two-stage query: ``(verdict or None, status, texts)``; status ``ok``, ``invalid`` or ``error``."""
        p = self.PROMPTS
        label_priv = [] if gt is None else [{"type": "privileged", "data": {**gt, "stage": "label", "frames": segments}}]
        conv = self.query_messages(episode, frames, segments, gt)
        gen = dict(self.gen)
        first = await self._acall((conv, {**gen, "max_tokens": gen.get("max_tokens", 300)}), tally, replay)
        if isinstance(first, LVLMError):
            return None, "error", []
        assert isinstance(first, LVLMResponse)
        texts = [first.text]
        conv = [*conv, {"role": "assistant", "content": first.text},
                {"role": "user", "content": [_text(p["label"]), *label_priv]}]
        label_gen = {**gen, "max_tokens": gen.get("max_tokens", 16)}
        answer = await self._acall((conv, label_gen), tally, replay)
        if isinstance(answer, LVLMError):
            return None, "error", texts
        assert isinstance(answer, LVLMResponse)
        texts.append(answer.text)
        verdict, error = self.parse(answer.text)
        if verdict is not None:
            return verdict, "ok", texts
        conv = [*conv, {"role": "assistant", "content": answer.text},
                {"role": "user", "content": [_text(p["repair"].format(error=error)), *label_priv]}]
        answer = await self._acall((conv, label_gen), tally, replay)
        if isinstance(answer, LVLMError):
            return None, "error", texts
        assert isinstance(answer, LVLMResponse)
        texts.append(answer.text)
        verdict, _ = self.parse(answer.text)
        return verdict, ("ok" if verdict is not None else "invalid"), texts

    def _ground_truth(self, episode: EpisodeRecord) -> dict[str, Any] | None:
        if len(episode.progress) != len(episode) + 1:
            if self.lvlm.backend == "sim":
                raise ValueError(
                    f"The simulated LVLM needs ground-truth progress; episode {episode.episode_id} has "
                    f"{len(episode.progress)} progress entries, expected {len(episode) + 1}"
                )
            return None
        c = oracle_contributions(episode)
        return {"task": self.SIM_TASK, "goal": episode.instruction, "contributions": [float(x) for x in c],
                "scale": episode_scale(episode, c), **self.query_privileged()}

    # -- fit

    def fit(self, episodes: Callable[[], Iterable[EpisodeRecord]] | Iterable[EpisodeRecord]) -> None:
        """Ask the LVLM the sampled queries of every episode and train the reward model (module docstring).

        Raises:
            ValueError: no query got a usable answer (nothing to train on), or bad episodes.
        """
        source = episodes() if callable(episodes) else episodes
        run_coroutine(lambda: self._afit(iter(source)))

    async def _afit(self, source: Any) -> None:
        tally = _Tally()
        items: list[tuple[list[np.ndarray], Any]] = []
        counts = {"episodes": 0, "queries": 0, "ok": 0, "invalid": 0, "error": 0}
        seen: list[np.ndarray] = []
        sem = asyncio.Semaphore(self.concurrency * 4)

        async def one(ep: EpisodeRecord) -> None:
            frames = episode_frames(ep)
            gt = self._ground_truth(ep)
            rng = self._episode_rng(ep)
            queries = self.sample(ep, rng, self._n_queries(rng))
            if not queries:
                return
            used = sorted({t for q in queries for seg in q for t in seg})
            feats = dict(zip(used, observation_features(frames[used], ep.instruction), strict=True))

            async def ask(q: list[list[int]]) -> None:
                async with sem:
                    verdict, status, _ = await self._ask(ep, frames, q, gt, tally, True)
                counts["queries"] += 1
                counts[status] += 1
                if verdict is not None:
                    items.append(([np.stack([feats[t] for t in seg]) for seg in q], verdict))
                    seen.extend(feats[t] for seg in q for t in seg)

            await asyncio.gather(*(ask(q) for q in queries))

        try:
            pending: list[asyncio.Task[None]] = []
            for ep in source:
                counts["episodes"] += 1
                pending.append(asyncio.ensure_future(one(ep)))
                if len(pending) >= self.concurrency:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        finally:
            await self._release_loop_resources()
        items.sort(key=lambda it: (array_digest(np.concatenate(it[0])), repr(it[1])))  # training independent of answer order
        usable = self.usable(items)
        if not usable:
            raise ValueError(
                f"labeler {self.name!r}: no usable LVLM answer to train the reward model on "
                f"({counts['queries']} queries over {counts['episodes']} episodes: {counts['ok']} ok, "
                f"{counts['invalid']} invalid, {counts['error']} failed)"
            )
        model, stats = self.train(usable)
        model.fit_scale(np.stack(seen))
        self.model, self.train_stats = model, stats
        self.fit_report = {**counts, "trained_on": len(usable), "train_accuracy": stats.accuracy,
                           "train_loss": stats.loss, "model_digest": model.state_dict_digest()}
        with self._lock:
            for k, v in {"calls": tally.calls, "calls_from_cache": tally.cached_calls, **tally.usage,
                         "train_s": stats.train_s}.items():
                self._cost[k] = self._cost.get(k, 0) + v
            self._simulated_fit = tally.simulated

    def usable(self, items: list[tuple[list[np.ndarray], Any]]) -> list[tuple[list[np.ndarray], Any]]:
        """The answers training uses (all by default)."""
        return items

    def extra_cost(self) -> dict[str, float]:
        with self._lock:
            return dict(self._cost)

    # -- labels

    def values(self, episode: EpisodeRecord) -> np.ndarray:
        """(T+1,) the reward model's scaled score of each frame (in [0, 1])."""
        if self.model is None:
            raise ValueError(f"labeler {self.name!r} has no reward model yet: call fit(episodes) first (relabel does it)")
        frames = episode_frames(episode)
        out = self.model.scaled(observation_features(frames, episode.instruction))
        with self._lock:
            self._cost["forward_passes"] = self._cost.get("forward_passes", 0) + len(frames)
        return out

    def label(self, episode: EpisodeRecord) -> LabelResult:
        v = self.values(episode)
        rewards = v[1:] if self.reward == "state" else v[1:] - v[:-1]
        assert self.model is not None
        meta = {"values": v.tolist(), "reward": self.reward, "model_digest": self.fit_report.get("model_digest")}
        return LabelResult(rewards=rewards, raw_scores=v[1:], simulated=self.lvlm.backend == "sim", meta=meta)

    async def alabel(self, episode: EpisodeRecord) -> LabelResult:
        return self.label(episode)

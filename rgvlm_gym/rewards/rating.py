"""Rating-based feedback (ERL-VLM, Luu et al., 2025): rewards from LVLM ratings of trajectory segments.

Holds :class:`RatingLabeler` and :func:`parse_rating`.

Per query the LVLM sees one segment of ``segment`` consecutive frames (default 3) and the goal. Stage 1 asks
it to describe the segment and how well the robot is doing; stage 2 asks for the rating alone on an ordinal
scale of ``levels`` (default 3: bad / average / good), as ``Rating: <level>``. A reward model over
(frame, instruction) is trained on the ratings with a class-balanced ordinal loss
(:func:`~rgvlm_gym.rewards.reward_model.train_rating`; ``class_balanced=False`` turns the balancing off) and
labels every transition (:mod:`rgvlm_gym.rewards.feedback`: fit / label phases, costs, caching).
``queries_per_episode`` segments are rated per episode (2 calls each), at uniformly drawn starts.

With ``make_lvlm("sim")`` the ratings are simulated (:mod:`rgvlm_gym.lvlm.sim_tasks`, task ``"rating"``):
the labels are then **simulated**.

Example (simulated LVLM, exact judge):
    >>> from rgvlm_gym.rewards.rating import RatingLabeler, parse_rating
    >>> parse_rating("Rating: good", 3), parse_rating("Rating: Very bad.", 5)
    ((2, ''), (0, ''))
    >>> from rgvlm_gym.rewards.testing import toy_episode
    >>> labeler = RatingLabeler("sim:noise=0,seed=0", segment=1, queries_per_episode=4, epochs=300)
    >>> labeler.fit([toy_episode(i) for i in range(4)])
    >>> r = labeler.label(toy_episode()).rewards
    >>> bool(r[2] > r[0])
    True
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.lvlm import LVLM
from rgvlm_gym.lvlm.sim_tasks import rating_labels
from rgvlm_gym.rewards.base import register_labeler
from rgvlm_gym.rewards.cache import LabelCache
from rgvlm_gym.rewards.feedback import FeedbackLabeler
from rgvlm_gym.rewards.reward_model import RewardModel, TrainStats, train_rating

__all__ = ["RatingLabeler", "parse_rating"]

_RATING = re.compile(r"rating\s*[:=]?\s*\**\s*([a-z][a-z ]*)", re.IGNORECASE)


def parse_rating(text: str, levels: int) -> tuple[int | None, str]:
    """``(level, "")`` for an answer with ``Rating: <level name>`` (0 the worst), else ``(None, why)``."""
    names = rating_labels(levels)
    m = _RATING.search(text)
    if not m:
        return None, "the answer has no 'Rating: <level>'"
    said = m.group(1).strip().lower()
    for i in sorted(range(len(names)), key=lambda i: -len(names[i])):  # "very bad" before "bad"
        if said.startswith(names[i]):
            return i, ""
    return None, f"{said!r} is not one of {', '.join(names)}"


class RatingLabeler(FeedbackLabeler):
    """ERL-VLM-style rating labeler (module docstring).

    Args:
        lvlm: an :class:`~rgvlm_gym.lvlm.LVLM`, a spec string or a config.
        levels: size of the rating scale (2..5).
        class_balanced: weight ratings by inverse frequency when training (ERL-VLM).
        segment: frames per rated segment (default 3).
        **kwargs: :class:`~rgvlm_gym.rewards.feedback.FeedbackLabeler`'s (``queries_per_episode``, ``reward``,
            ``epochs``, ``hidden``, ``lr``, ``seed``, ``concurrency``, ``cache``, ``gen``...).
    """

    name = "rating"
    SIM_TASK = "rating"
    PROMPTS: ClassVar[dict[str, str]] = {
        "system": "You are an expert judge of household robot tasks. You rate how well the robot is doing.",
        "intro": "The robot's goal: {goal}\nYou will see {n} segment of the robot's first-person view, frames in "
                 "time order.",
        "caption": "Segment {index} ({n_frames} frame(s)):",
        "analysis": "Describe what the robot does in this segment and how far it is toward the goal: {goal}",
        "label": "Rate how well the robot is achieving the goal in this segment. Reply with a single line "
                 "'Rating: <level>' where <level> is one of: {levels}.",
        "repair": "Your answer could not be used: {error}. Reply with a single line 'Rating: <level>'.",
    }

    def __init__(
        self,
        lvlm: LVLM | str | Mapping[str, Any],
        *,
        levels: int = 3,
        class_balanced: bool = True,
        segment: int = 3,
        cache: LabelCache | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        rating_labels(levels)  # validates
        self.levels = levels
        self.class_balanced = bool(class_balanced)
        self.PROMPTS = {**type(self).PROMPTS, "label": type(self).PROMPTS["label"].replace("{levels}", ", ".join(rating_labels(levels)))}
        super().__init__(lvlm, cache=cache, segment=segment, **kwargs)

    def _own_params(self) -> dict[str, Any]:
        return {**super()._own_params(), "levels": self.levels, "class_balanced": self.class_balanced}

    def query_privileged(self) -> dict[str, Any]:
        return {"levels": self.levels}

    def sample(self, episode: EpisodeRecord, rng: np.random.Generator, n: int) -> list[list[list[int]]]:
        seg = min(self.segment, len(episode) + 1)
        starts = len(episode) + 2 - seg
        return [[list(range(a, a + seg))] for a in rng.integers(starts, size=n).tolist()]

    def parse(self, text: str) -> tuple[Any, str]:
        return parse_rating(text, self.levels)

    def train(self, items: list[tuple[list[np.ndarray], Any]]) -> tuple[RewardModel, TrainStats]:
        by_len: dict[int, list[tuple[np.ndarray, int]]] = {}
        for segs, level in items:
            by_len.setdefault(len(segs[0]), []).append((segs[0], int(level)))
        # Segments are cut short only in episodes shorter than `segment`; pad them by repeating the last frame.
        width = max(by_len)
        x = np.stack([np.concatenate([s, np.repeat(s[-1:], width - len(s), 0)]) for segs, _ in items for s in segs[:1]])
        y = np.asarray([int(level) for _, level in items])
        return train_rating(x, y, self.levels, class_balanced=self.class_balanced, hidden=self.hidden,
                            epochs=self.epochs, lr=self.lr, seed=self.seed)


register_labeler("rating", RatingLabeler)

"""RL-VLM-F (Wang et al., ICML 2024, arXiv 2402.03681): rewards from LVLM preferences between two images.

Holds :class:`RLVLMFLabeler` and :func:`parse_preference`.

Per query the LVLM sees two frames (or two short segments, ``segment > 1``) of the same episode — so of the
same task — and the goal. Stage 1 asks it to analyse what each image shows and how far it is toward the
goal; stage 2 asks for the verdict alone: ``0`` (image 1 is closer to the goal), ``1`` (image 2) or ``-1``
(no preference / unsure). RL-VLM-F drops ``-1`` answers (``ties="drop"``, the default); ``ties="half"``
keeps them as a 0.5 target. A Bradley-Terry reward model over (frame, instruction)
(:func:`~rgvlm_gym.rewards.reward_model.train_bradley_terry`) is trained on the answers and labels every
transition (:mod:`rgvlm_gym.rewards.feedback`: the fit / label phases, costs, caching).

Pair sampling: ``pairs="random"`` draws two distinct segment starts uniformly within the episode;
``pairs="spread"`` draws the second start at least a quarter of the episode away from the first (more
informative pairs for long episodes). ``queries_per_episode`` is the query budget (2 calls per query).

With ``make_lvlm("sim")`` the answers are simulated (:mod:`rgvlm_gym.lvlm.sim_tasks`, task
``"preference"``): the labels are then **simulated**.

Example (simulated LVLM, exact judge; a real fit needs more than one toy episode):
    >>> from rgvlm_gym.rewards.rlvlmf import RLVLMFLabeler
    >>> from rgvlm_gym.rewards.testing import toy_episode
    >>> labeler = RLVLMFLabeler("sim:noise=0,seed=0", queries_per_episode=6, epochs=300)
    >>> labeler.fit([toy_episode(i) for i in range(4)])
    >>> result = labeler.label(toy_episode())
    >>> result.simulated, result.rewards.shape, bool(result.rewards[2] > result.rewards[0])
    (True, (3,), True)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.lvlm import LVLM
from rgvlm_gym.rewards.base import register_labeler
from rgvlm_gym.rewards.cache import LabelCache
from rgvlm_gym.rewards.feedback import FeedbackLabeler
from rgvlm_gym.rewards.reward_model import RewardModel, TrainStats, train_bradley_terry

__all__ = ["PAIRINGS", "TIES", "RLVLMFLabeler", "parse_preference"]

PAIRINGS = ("random", "spread")
TIES = ("drop", "half")
_VERDICT = re.compile(r"^\W*?(-1|0|1)(?!\d)")


def parse_preference(text: str) -> tuple[int | None, str]:
    """``(0 | 1 | -1, "")`` for an answer that starts with the verdict, else ``(None, what is wrong)``.

    Example:
        >>> parse_preference("1"), parse_preference(" -1."), parse_preference("Image 2")
        ((1, ''), (-1, ''), (None, 'the answer does not start with 0, 1 or -1'))
    """
    m = _VERDICT.match(text.strip())
    if not m:
        return None, "the answer does not start with 0, 1 or -1"
    return int(m.group(1)), ""


class RLVLMFLabeler(FeedbackLabeler):
    """RL-VLM-F preference labeler (module docstring).

    Args:
        lvlm: an :class:`~rgvlm_gym.lvlm.LVLM`, a spec string or a config.
        pairs: ``"random"`` or ``"spread"`` pair sampling.
        ties: ``"drop"`` (RL-VLM-F) or ``"half"`` for "no preference" answers.
        **kwargs: :class:`~rgvlm_gym.rewards.feedback.FeedbackLabeler`'s (``queries_per_episode``, ``segment``,
            ``reward``, ``epochs``, ``hidden``, ``lr``, ``seed``, ``concurrency``, ``cache``, ``gen``...).
    """

    name = "rlvlmf"
    SIM_TASK = "preference"
    PROMPTS: ClassVar[dict[str, str]] = {
        "system": "You are an expert judge of household robot tasks. You compare pictures of the robot's progress.",
        "intro": "The robot's goal: {goal}\nYou will see {n} images (or short image sequences) from the robot's "
                 "first-person view while it works on this goal.",
        "caption": "Image {index} ({n_frames} frame(s)):",
        "analysis": "1. What is shown in Image 1? 2. What is shown in Image 2? 3. The goal is: {goal}. Is there any "
                    "difference between Image 1 and Image 2 in terms of achieving the goal?",
        "label": "Is the goal better achieved in Image 1 or Image 2? Reply a single line of 0 if the goal is better "
                 "achieved in Image 1, or 1 if it is better achieved in Image 2. Reply -1 if the text is unsure or "
                 "there is no difference.",
        "repair": "Your answer could not be used: {error}. Reply with a single line: 0, 1 or -1.",
    }

    def __init__(
        self,
        lvlm: LVLM | str | Mapping[str, Any],
        *,
        pairs: str = "random",
        ties: str = "drop",
        cache: LabelCache | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if pairs not in PAIRINGS:
            raise ValueError(f"Expect `pairs` to be one of {PAIRINGS}, actually: {pairs!r}")
        if ties not in TIES:
            raise ValueError(f"Expect `ties` to be one of {TIES}, actually: {ties!r}")
        self.pairs, self.ties = pairs, ties
        super().__init__(lvlm, cache=cache, **kwargs)

    def _own_params(self) -> dict[str, Any]:
        return {**super()._own_params(), "pairs": self.pairs, "ties": self.ties}

    def sample(self, episode: EpisodeRecord, rng: np.random.Generator, n: int) -> list[list[list[int]]]:
        starts = len(episode) + 2 - self.segment  # segment starts 0..T+1-segment
        if starts < 2:
            return []
        out = []
        for _ in range(n):
            a = int(rng.integers(starts))
            if self.pairs == "spread" and starts >= 4:
                gap = max(1, starts // 4)
                choices = [s for s in range(starts) if abs(s - a) >= gap]
            else:
                choices = [s for s in range(starts) if s != a]
            b = int(choices[int(rng.integers(len(choices)))])
            out.append([list(range(a, a + self.segment)), list(range(b, b + self.segment))])
        return out

    def parse(self, text: str) -> tuple[Any, str]:
        return parse_preference(text)

    def usable(self, items: list[tuple[list[np.ndarray], Any]]) -> list[tuple[list[np.ndarray], Any]]:
        return [it for it in items if it[1] != -1 or self.ties == "half"]

    def train(self, items: list[tuple[list[np.ndarray], Any]]) -> tuple[RewardModel, TrainStats]:
        seg_a = np.stack([segs[0] for segs, _ in items])
        seg_b = np.stack([segs[1] for segs, _ in items])
        y = np.asarray([1.0 if v == 0 else 0.0 if v == 1 else 0.5 for _, v in items], np.float32)
        return train_bradley_terry(seg_a, seg_b, y, hidden=self.hidden, epochs=self.epochs, lr=self.lr, seed=self.seed)


register_labeler("rlvlmf", RLVLMFLabeler)

"""Generative value learning (GVL; Ma et al., 2024, arXiv 2411.04549): progress from shuffled frames.

Holds :class:`GVLLabeler`, :func:`parse_percentages`, :func:`shuffled_frames` and :func:`unshuffle`.

Per episode, one LVLM call (plus one repair prompt when the answer is unusable): the model is shown the
task goal, the episode's **first frame as a reference at 0 %**, then the other frames **in a shuffled
order** (so it cannot read progress off the time order), and asked for the task-completion percentage of
each, one line ``Frame j: p%`` per shown frame. The answers are put back in time order (:func:`unshuffle`):
the value of frame t is ``v_t = p / 100`` (``v_0 = 0``), and the reward of step t is the change of
predicted progress ``v_{t+1} - v_t`` (so it is negative when the model thinks the step undid progress).

Episodes with more than ``frame_budget`` frames (default 30) show ``frame_budget`` evenly spaced frames
(first and last included); the values of the frames not shown are interpolated linearly in time.

The per-episode value-order correlation (VOC, GVL's metric: the Spearman correlation between the predicted
values and the frames' time order) is in ``meta["voc"]``; ``rgvlm relabel``'s label-quality report gives
it for every labeler (:mod:`rgvlm_gym.rewards.quality`).

With ``make_lvlm("sim")`` the percentages are simulated (:mod:`rgvlm_gym.lvlm.sim_tasks`, task ``"gvl"``):
the labels are then **simulated**.

Example (simulated LVLM, exact judge: the values are the ground-truth completed fractions):
    >>> from rgvlm_gym.rewards.gvl import GVLLabeler
    >>> from rgvlm_gym.rewards.testing import toy_episode
    >>> result = GVLLabeler("sim:noise=0,seed=0").label(toy_episode())
    >>> result.meta["values"], result.rewards, result.calls
    ([0.0, 0.2, 0.6, 1.0], array([0.2, 0.4, 0.4], dtype=float32), 1)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.lvlm import LVLM, LVLMError, LVLMResponse
from rgvlm_gym.rewards.base import LabelResult, register_labeler
from rgvlm_gym.rewards.basic import oracle_contributions
from rgvlm_gym.rewards.cache import LabelCache, content_key
from rgvlm_gym.rewards.feedback import episode_frames, episode_scale
from rgvlm_gym.rewards.lvlm_labeler import LVLMLabeler, Protocol
from rgvlm_gym.rewards.quality import value_order_correlation

__all__ = ["GVLLabeler", "parse_percentages", "shuffled_frames", "unshuffle"]

PROMPTS = {
    "system": "You are an expert roboticist tasked to predict task completion percentages for frames of a robot "
              "for the task of {goal}. The task completion percentages are between 0 and 100, where 100 "
              "corresponds to full task completion. Note that these frames are in random order, so please pay "
              "attention to the individual frames when reasoning about task completion percentage.",
    "initial": "Initial robot scene: this frame is at 0% task completion.",
    "caption": "Frame {index}:",
    "question": "For each of the {n} frames above, give its task completion percentage for the task \"{goal}\". "
                "Reply with exactly {n} lines, 'Frame <number>: <percentage>%', in the order the frames were shown.",
    "repair": "Your answer could not be used: {error}. Reply with exactly {n} lines 'Frame <number>: <percentage>%'.",
}
_LINE = re.compile(r"frame\s*(\d+)\s*[:\-=]\s*(-?\d+(?:\.\d+)?)\s*%?", re.IGNORECASE)


def parse_percentages(text: str, n: int) -> tuple[list[float] | None, str]:
    """The ``n`` percentages of ``Frame j: p%`` lines (j = 1..n, each once, p in 0..100), in frame order;
    ``(None, what is wrong)`` otherwise.

    Example:
        >>> parse_percentages("Frame 2: 40%\\nFrame 1: 10%", 2)
        ([10.0, 40.0], '')
        >>> parse_percentages("Frame 1: 10%", 2)
        (None, 'expected 2 frames (1..2), got [1]')
    """
    found: dict[int, float] = {}
    for m in _LINE.finditer(text):
        j, p = int(m.group(1)), float(m.group(2))
        if j in found:
            return None, f"frame {j} is given twice"
        found[j] = p
    if sorted(found) != list(range(1, n + 1)):
        return None, f"expected {n} frames (1..{n}), got {sorted(found)}"
    bad = [j for j, p in found.items() if not 0.0 <= p <= 100.0]
    if bad:
        return None, f"percentages must be in 0..100; frame {bad[0]} has {found[bad[0]]}"
    return [found[j] for j in range(1, n + 1)], ""


def shuffled_frames(n_frames: int, frame_budget: int, rng: np.random.Generator) -> list[int]:
    """The frame indices to show after the reference frame 0, in the order shown: frames 1..n_frames-1
    (or ``frame_budget - 1`` of them, evenly spaced, the last included), shuffled."""
    if n_frames <= frame_budget:
        chosen = list(range(1, n_frames))
    else:
        chosen = sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, frame_budget)} - {0})
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def unshuffle(percentages: Sequence[float], shown: Sequence[int], n_frames: int) -> np.ndarray:
    """(n_frames,) values in time order from percentages given in shown order: ``v[shown[j]] = p_j / 100``,
    ``v[0] = 0``, frames not shown interpolated linearly in time.

    Example:
        >>> unshuffle([100.0, 20.0], shown=[4, 2], n_frames=5).round(3).tolist()
        [0.0, 0.1, 0.2, 0.6, 1.0]
    """
    if len(percentages) != len(shown):
        raise ValueError(f"Expect one percentage per shown frame ({len(shown)}), actually: {len(percentages)}")
    known_t = np.asarray([0, *shown], dtype=np.float64)
    known_v = np.asarray([0.0, *percentages], dtype=np.float64) / 100.0
    order = np.argsort(known_t, kind="stable")
    out: np.ndarray = np.interp(np.arange(n_frames), known_t[order], known_v[order])
    return out


class GVLLabeler(LVLMLabeler):
    """GVL labeler (module docstring).

    Args:
        lvlm: an :class:`~rgvlm_gym.lvlm.LVLM`, a spec string or a config.
        frame_budget: most frames shown per episode, the reference frame included (>= 2).
        seed: seed of the shuffles (each episode's shuffle is drawn from it and the episode's content).
        cache, gen, retry_invalid: as for :class:`~rgvlm_gym.rewards.lvlm_labeler.LVLMLabeler`.
    """

    name = "gvl"

    def __init__(
        self,
        lvlm: LVLM | str | Mapping[str, Any],
        *,
        frame_budget: int = 30,
        seed: int = 0,
        cache: LabelCache | str | os.PathLike[str] | None = None,
        gen: Mapping[str, Any] | None = None,
        retry_invalid: bool = False,
    ) -> None:
        if isinstance(frame_budget, bool) or not isinstance(frame_budget, int) or frame_budget < 2:
            raise ValueError(f"Expect `frame_budget` to be an int >= 2, actually: {frame_budget!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"Expect `seed` to be an int, actually: {seed!r}")
        self.frame_budget, self.seed = frame_budget, seed
        super().__init__(lvlm, cache=cache, gen=gen, retry_invalid=retry_invalid)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "frame_budget": self.frame_budget, "seed": self.seed}

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "frame_budget": self.frame_budget, "seed": self.seed}

    def prompt_id(self) -> str:
        return f"gvl_v1@{content_key(PROMPTS)}"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GVLLabeler:
        params = dict(params)
        lvlm = params.pop("lvlm")
        return cls(lvlm, **params)

    def messages(self, episode: EpisodeRecord, frames: np.ndarray, shown: list[int], gt: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The conversation of one episode: reference frame, then the shown frames in shuffled order."""
        goal = episode.instruction
        content: list[dict[str, Any]] = [{"type": "text", "text": PROMPTS["initial"]}, {"type": "image", "image": frames[0]}]
        for j, t in enumerate(shown, start=1):
            content.append({"type": "text", "text": PROMPTS["caption"].format(index=j)})
            content.append({"type": "image", "image": frames[t]})
        content.append({"type": "text", "text": PROMPTS["question"].format(n=len(shown), goal=goal)})
        if gt is not None:
            content.append({"type": "privileged", "data": {**gt, "frames": shown}})
        return [{"role": "system", "content": PROMPTS["system"].format(goal=goal)}, {"role": "user", "content": content}]

    def protocol(self, episode: EpisodeRecord) -> Protocol:
        frames = episode_frames(episode)
        n = len(frames)
        meta: dict[str, Any] = {"model": self.lvlm.spec, "frame_budget": self.frame_budget}
        if len(episode) == 0:
            return LabelResult(rewards=np.zeros(0, np.float32), raw_scores=np.zeros(0, np.float32), meta={**meta, "values": [0.0]})
        gt: dict[str, Any] | None = None
        if len(episode.progress) == len(episode) + 1:
            c = oracle_contributions(episode)
            gt = {"task": "gvl", "goal": episode.instruction, "contributions": [float(x) for x in c], "scale": episode_scale(episode, c)}
        elif self.lvlm.backend == "sim":
            raise ValueError(f"The simulated LVLM needs ground-truth progress; episode {episode.episode_id} has none")
        key = content_key(self.episode_content(episode))
        shown = shuffled_frames(n, self.frame_budget, np.random.default_rng([self.seed & 0xFFFFFFFF, int(key[:16], 16)]))
        meta["shown"] = shown
        conv = self.messages(episode, frames, shown, gt)
        gen = {**self.gen, "max_tokens": self.gen.get("max_tokens", 16 + 8 * len(shown))}
        texts: list[dict[str, Any]] = []
        (answer,) = yield [(conv, gen)]
        if isinstance(answer, LVLMError):
            return LabelResult.unlabeled("error", f"request failed: {type(answer).__name__}: {answer}", texts=texts, meta=meta)
        assert isinstance(answer, LVLMResponse)
        texts.append({"part": 0, "stage": "progress", "text": answer.text})
        pct, error = parse_percentages(answer.text, len(shown))
        if pct is None:
            meta["repaired_parts"] = [0]
            priv = [p for p in conv[-1]["content"] if p["type"] == "privileged"]
            conv = [*conv, {"role": "assistant", "content": answer.text},
                    {"role": "user", "content": [{"type": "text", "text": PROMPTS["repair"].format(error=error, n=len(shown))}, *priv]}]
            (answer,) = yield [(conv, gen)]
            if isinstance(answer, LVLMError):
                return LabelResult.unlabeled("error", f"repair request failed: {type(answer).__name__}: {answer}", texts=texts, meta=meta)
            assert isinstance(answer, LVLMResponse)
            texts.append({"part": 0, "stage": "repair", "text": answer.text})
            pct, error2 = parse_percentages(answer.text, len(shown))
            if pct is None:
                return LabelResult.unlabeled("invalid", f"invalid percentages: {error}; after one repair prompt: {error2}", texts=texts, meta=meta)
        values = unshuffle(pct, shown, n)
        meta["values"] = values.tolist()
        meta["voc"] = value_order_correlation(values)
        rewards = np.diff(values).astype(np.float32)
        return LabelResult(rewards=rewards, raw_scores=values[1:].astype(np.float32), texts=texts, meta=meta)


register_labeler("gvl", GVLLabeler)

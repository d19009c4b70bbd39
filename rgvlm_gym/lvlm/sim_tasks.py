"""Simulated-LVLM answers to the query types of the baseline labelers: preference, rating, GVL progress.

**Everything these handlers produce is simulated**: they answer from privileged ground truth carried in the
request (``{"type": "privileged", "data": {...}}`` parts, see :mod:`rgvlm_gym.lvlm.sim`), never from pixels.

Holds :func:`progress_values`, :func:`perturbed_values` and three sim tasks registered with
:func:`~rgvlm_gym.lvlm.sim.register_sim_task`:

- ``"preference"`` (RL-VLM-F): which of two images (or short segments) is closer to the goal.
- ``"rating"`` (ERL-VLM): an ordinal rating of one segment.
- ``"gvl"`` (generative value learning): the task-completion percentage of each of an episode's frames,
  shown shuffled.

Ground truth
------------
Every request carries the whole episode's per-step contributions ``c_1..c_T`` (the oracle's
:func:`~rgvlm_gym.rewards.basic.oracle_contributions`, in [0, 1]) and a ``scale`` (see
:func:`progress_values`); the *value* of frame ``t`` (0 = the first frame) is the completed fraction
``v_t = clip(sum(c_1..c_t) / scale, 0, 1)``.

Error model (the same :class:`~rgvlm_gym.lvlm.sim.SimSettings` as the ``rgvlm`` task)
-------------------------------------------------------------------------------------
1. Per step, exactly as the ``rgvlm`` task perturbs an action's contribution (:func:`perturbed_values`):
   a step with ``c > 0`` loses it with probability ``miss``; a step with ``c == 0`` gets ``k / 10``,
   ``k ~ U{3..7}``, with probability ``useless_credit``. The perturbed values ``v'_t`` are the cumulative
   sums of the perturbed contributions over the same ``scale``, clipped to [0, 1]. These draws depend on
   the seed, the goal and the contributions only, so every query about the same episode sees the same
   perturbed episode (queries agree with each other, whatever their order).
2. Per shown frame, a score in points ``s_t = 10 * v'_t + noise * N(0, 1)``; the draw depends on the seed,
   the episode and the frame index (not on what else is shown, nor the order it is shown in).
3. ``malformed``: with that probability (drawn from the whole request) the answer has no usable verdict.

Each handler's docstring says how it turns scores into an answer. Stage ``"analysis"`` requests (the first
turn of a two-stage query) get prose starting with :data:`~rgvlm_gym.lvlm.sim.SIM_DISCLAIMER`, consistent
with the verdict of stage ``"label"``.

Example:
    >>> from rgvlm_gym.lvlm import make_lvlm
    >>> sim = make_lvlm("sim:noise=0,seed=0")
    >>> gt = {"task": "preference", "stage": "label", "goal": "chill an apple", "contributions": [0.5, 0.0, 0.5],
    ...       "scale": 1.0, "frames": [[3], [1]]}
    >>> sim.chat([{"role": "user", "content": [{"type": "privileged", "data": gt}]}]).text
    '0'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rgvlm_gym.lvlm.sim import SIM_DISCLAIMER, SimRequest, register_sim_task, registered_sim_tasks

__all__ = [
    "PREFERENCE_NONE",
    "frame_scores",
    "perturbed_values",
    "progress_values",
    "rating_labels",
]

#: the label answer meaning "no preference" (RL-VLM-F's -1).
PREFERENCE_NONE = "-1"
_EVASIVE = "Both images look similar to me; I cannot say which one is closer to the goal."


def progress_values(contributions: Sequence[float], scale: float) -> np.ndarray:
    """(T+1,) float64 completed fraction of each frame: ``clip(cumsum(c) / scale, 0, 1)`` with ``v_0 = 0``.

    Example:
        >>> progress_values([0.5, 0.0, 1.0], 2.0).tolist()
        [0.0, 0.25, 0.25, 0.75]
    """
    c = np.asarray(contributions, dtype=np.float64).ravel()
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"Expect `scale` to be a finite number > 0, actually: {scale!r}")
    out: np.ndarray = np.clip(np.concatenate([[0.0], np.cumsum(c)]) / scale, 0.0, 1.0)
    return out


def _episode(data: Mapping[str, Any], task: str) -> tuple[str, list[float], float]:
    contributions = data.get("contributions")
    if not isinstance(contributions, (list, tuple)) or not all(isinstance(c, (int, float)) for c in contributions):
        raise ValueError(f"Expect privileged {task} `contributions` to be a list of numbers, actually: {contributions!r:.80}")
    contribs = [float(c) for c in contributions]
    if any(not 0.0 <= c <= 1.0 for c in contribs):
        raise ValueError(f"Expect privileged {task} `contributions` in [0, 1], actually: {contribs!r:.80}")
    scale = data.get("scale")
    if not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"Expect privileged {task} `scale` to be a number > 0, actually: {scale!r}")
    return str(data.get("goal", "")), contribs, float(scale)


def perturbed_values(request: SimRequest, goal: str, contributions: Sequence[float], scale: float) -> np.ndarray:
    """(T+1,) frame values after the per-step ``miss`` / ``useless_credit`` draws (module docstring, 1)."""
    s = request.settings
    n = len(contributions)
    rng = request.key_rng("episode-values", goal, list(contributions), scale)
    u_miss, u_credit, credit = rng.random(n), rng.random(n), rng.integers(3, 8, size=n)
    out = []
    for i, c in enumerate(contributions):
        if c > 0 and u_miss[i] < s.miss:
            c = 0.0
        elif c == 0 and u_credit[i] < s.useless_credit:
            c = float(credit[i]) / 10.0
        out.append(c)
    return progress_values(out, scale)


def frame_scores(request: SimRequest, goal: str, contributions: Sequence[float], scale: float, frames: Sequence[int]) -> np.ndarray:
    """Scores ``10 * v'_t + noise * N(0, 1)`` (in points, unclipped) of the frames ``frames`` (module docstring, 2)."""
    values = perturbed_values(request, goal, contributions, scale)
    out = np.empty(len(frames), dtype=np.float64)
    for j, t in enumerate(frames):
        if not isinstance(t, int) or not 0 <= t < len(values):
            raise ValueError(f"Expect privileged frame indices in 0..{len(values) - 1}, actually: {t!r}")
        z = float(request.key_rng("frame-noise", goal, list(contributions), scale, t).standard_normal())
        out[j] = 10.0 * values[t] + request.settings.noise * z
    return out


def _segments(data: Mapping[str, Any], task: str, n: int) -> list[list[int]]:
    frames = data.get("frames")
    if not isinstance(frames, (list, tuple)) or len(frames) != n or not all(isinstance(f, (list, tuple)) and f for f in frames):
        raise ValueError(f"Expect privileged {task} `frames` to be {n} non-empty lists of frame indices, actually: {frames!r:.80}")
    return [list(f) for f in frames]


def _stage(data: Mapping[str, Any], task: str) -> str:
    stage = data.get("stage", "label")
    if stage not in ("analysis", "label"):
        raise ValueError(f"Expect privileged {task} `stage` to be 'analysis' or 'label', actually: {stage!r}")
    return str(stage)


def _mean_score(request: SimRequest, goal: str, contribs: list[float], scale: float, seg: list[int]) -> float:
    return float(frame_scores(request, goal, contribs, scale, seg).mean())


def _preference(request: SimRequest) -> str:
    """``"preference"``: ``{"task", "stage", "goal", "contributions", "scale", "frames": [seg_a, seg_b]}``.

    A segment's score is the mean score of its frames; scores are rounded half up to whole points; the
    answer (stage ``"label"``) is ``"0"`` when image/segment 1 scores higher, ``"1"`` when 2 does, ``"-1"``
    (no preference) when they are equal. ``malformed``: an evasive sentence with no number.
    """
    data = request.data
    stage = _stage(data, "preference")
    goal, contribs, scale = _episode(data, "preference")
    seg_a, seg_b = _segments(data, "preference", 2)
    a = math.floor(_mean_score(request, goal, contribs, scale, seg_a) + 0.5)
    b = math.floor(_mean_score(request, goal, contribs, scale, seg_b) + 0.5)
    verdict = "0" if a > b else "1" if b > a else PREFERENCE_NONE
    if request.rng.random() < request.settings.malformed:
        return _EVASIVE
    if stage == "label":
        return verdict
    closer = {"0": "Image 1 is closer to the goal.", "1": "Image 2 is closer to the goal.",
              PREFERENCE_NONE: "Neither image is clearly closer to the goal."}[verdict]
    return (
        f"{SIM_DISCLAIMER}\nThe goal is \"{goal}\". Image 1 shows about {max(0, min(10, a)) * 10}% of the task "
        f"done; image 2 about {max(0, min(10, b)) * 10}%. {closer}"
    )


def rating_labels(n_levels: int) -> list[str]:
    """Names of the ``n_levels`` ordinal levels, worst first (ERL-VLM's bad / average / good for 3).

    Example:
        >>> rating_labels(3), rating_labels(5)[-1]
        (['bad', 'average', 'good'], 'excellent')
    """
    names = {2: ["bad", "good"], 3: ["bad", "average", "good"], 4: ["bad", "poor", "fair", "good"],
             5: ["very bad", "bad", "average", "good", "excellent"]}
    if n_levels not in names:
        raise ValueError(f"Expect `n_levels` to be 2..5, actually: {n_levels!r}")
    return names[n_levels]


def _rating(request: SimRequest) -> str:
    """``"rating"``: ``{"task", "stage", "goal", "contributions", "scale", "frames": [segment], "levels": n}``.

    The segment's score ``s`` (mean of its frames' scores, clipped to [0, 10]) falls in level
    ``min(n - 1, floor(s / 10 * n))`` (equal-width bins, level 0 the worst); the answer (stage ``"label"``)
    is ``"Rating: <level name>"``. ``malformed``: a sentence without a rating.
    """
    data = request.data
    stage = _stage(data, "rating")
    goal, contribs, scale = _episode(data, "rating")
    (seg,) = _segments(data, "rating", 1)
    n = data.get("levels", 3)
    names = rating_labels(int(n)) if isinstance(n, int) else rating_labels(-1)
    score = min(10.0, max(0.0, _mean_score(request, goal, contribs, scale, seg)))
    level = min(len(names) - 1, int(math.floor(score / 10.0 * len(names))))
    if request.rng.random() < request.settings.malformed:
        return "The agent is doing something, but it is hard to judge how well from these images."
    if stage == "label":
        return f"Rating: {names[level]}"
    return f"{SIM_DISCLAIMER}\nThe goal is \"{goal}\". In this segment about {round(score) * 10}% of the task is done, so its progress is {names[level]}."


def _gvl(request: SimRequest) -> str:
    """``"gvl"``: ``{"task", "goal", "contributions", "scale", "frames": [t_1, ..., t_n]}`` (the frames in the
    order shown).

    The answer has one line per shown frame, ``"Frame j: p%"``, with ``p = clip(round_half_up(10 * s), 0,
    100)`` (``s`` the frame's score in points, so ``noise`` 1 is 10 percentage points). ``malformed``: one of
    a missing line or prose without numbers (equally likely).
    """
    data = request.data
    goal, contribs, scale = _episode(data, "gvl")
    frames = data.get("frames")
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ValueError(f"Expect privileged gvl `frames` to be a non-empty list of frame indices, actually: {frames!r:.80}")
    scores = frame_scores(request, goal, contribs, scale, list(frames))
    pct = [min(100, max(0, math.floor(10.0 * s + 0.5))) for s in scores]
    lines = [f"Frame {j}: {p}%" for j, p in enumerate(pct, start=1)]
    if request.rng.random() < request.settings.malformed:
        if len(lines) > 1 and request.rng.random() < 0.5:
            del lines[int(request.rng.integers(len(lines)))]
        else:
            return "The frames show the agent working on the task; progress grows over the episode."
    return "\n".join(lines)


for _name, _fn in (("preference", _preference), ("rating", _rating), ("gvl", _gvl)):
    if _name not in registered_sim_tasks():
        register_sim_task(_name, _fn)

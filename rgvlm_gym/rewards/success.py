"""A baseline LVLM labeler: per-step success detection (:class:`SuccessDetectorLabeler`).

The usual way to get rewards from a VLM without RG-VLM's analysis: show it the frame after each step and
ask "is the task complete in this frame?" (yes / no). The reward of step t is 1 if the answer for the frame
after step t is yes, else 0 (``first_only=True``: only the first yes counts, like a sparse reward from a
learned detector). One call per step (an unusable answer gets one repair prompt), the steps of an
episode concurrently in ``alabel``. It is the LVLM baseline RG-VLM is compared against: it says nothing
about partial progress.

Also registers the ``"success"`` task of the simulated LVLM (:func:`rgvlm_gym.lvlm.register_sim_task`)::

    {"task": "success", "success": bool, "goal": str, "step": int}

answered ``"yes"`` / ``"no"`` through the sim's error model read the RG-VLM way: the frame's "score" is
``10 * s + noise * N(0, 1)`` with ``s`` the true success (0 or 1; ``miss`` turns a true 1 into 0,
``useless_credit`` a true 0 into 0.3..0.7), and the answer is yes when the score is >= 5. ``malformed``
gives an evasive sentence instead. Sim answers are **simulated**.

Example (simulated LVLM):
    >>> from rgvlm_gym.rewards import SuccessDetectorLabeler
    >>> from rgvlm_gym.rewards.testing import toy_episode
    >>> result = SuccessDetectorLabeler("sim:noise=0,seed=0").label(toy_episode())
    >>> result.rewards, result.calls, result.simulated
    (array([0., 0., 1.], dtype=float32), 3, True)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.lvlm import LVLM, LVLMError, LVLMResponse, register_sim_task, registered_sim_tasks
from rgvlm_gym.lvlm.sim import SimRequest
from rgvlm_gym.rewards.base import LabelResult, register_labeler
from rgvlm_gym.rewards.cache import LabelCache
from rgvlm_gym.rewards.lvlm_labeler import LVLMLabeler, Protocol
from rgvlm_gym.rewards.prompts import PROMPT_VERSION, PromptTemplate, load_prompts
from rgvlm_gym.rewards.rollout import EARLIER_ACTIONS_KEY

__all__ = ["SuccessDetectorLabeler", "parse_yes_no"]

_EVASIVE = "It is hard to tell from this frame alone; the task may or may not be finished."


def _sim_success(request: SimRequest) -> str:
    data, s = request.data, request.settings
    success = bool(data.get("success"))
    rng = request.key_rng("success", str(data.get("goal", "")), int(data.get("step", 0)), success)
    u_miss, u_credit, credit, z = rng.random(), rng.random(), int(rng.integers(3, 8)), float(rng.standard_normal())
    value = 1.0 if success else 0.0
    if success and u_miss < s.miss:
        value = 0.0
    elif not success and u_credit < s.useless_credit:
        value = credit / 10.0
    if request.rng.random() < s.malformed:
        return _EVASIVE
    return "yes" if 10.0 * value + s.noise * z >= 5.0 else "no"


if "success" not in registered_sim_tasks():
    register_sim_task("success", _sim_success)

_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> tuple[bool | None, str]:
    """``(True/False, "")`` for an answer starting with yes / no, else ``(None, what is wrong)``.

    Example:
        >>> parse_yes_no("Yes, the apple is in the fridge."), parse_yes_no("maybe")
        ((True, ''), (None, "the answer does not start with 'yes' or 'no'"))
    """
    m = _YES_NO.match(text.strip())
    if not m:
        return None, "the answer does not start with 'yes' or 'no'"
    return m.group(1).lower() == "yes", ""


class SuccessDetectorLabeler(LVLMLabeler):
    """Per-step LVLM success detection (module docstring).

    Args:
        lvlm: an :class:`~rgvlm_gym.lvlm.LVLM`, a spec string or a config.
        first_only: reward only the first step judged successful.
        prompt: prompt version or path (sections ``success_system``, ``success_question``, ``success_repair``).
        cache, gen, retry_invalid: as for :class:`~rgvlm_gym.rewards.lvlm_labeler.LVLMLabeler`.
    """

    name = "success"
    reward_bounds = (0.0, 1.0)  # a verdict: 0 or 1

    def __init__(
        self,
        lvlm: LVLM | str | Mapping[str, Any],
        *,
        first_only: bool = False,
        prompt: str = PROMPT_VERSION,
        cache: LabelCache | str | os.PathLike[str] | None = None,
        gen: Mapping[str, Any] | None = None,
        retry_invalid: bool = False,
    ) -> None:
        self.first_only = bool(first_only)
        self.prompt_name = str(prompt)
        self.prompts: PromptTemplate = load_prompts(prompt)
        super().__init__(lvlm, cache=cache, gen={"max_tokens": 8, **dict(gen or {})}, retry_invalid=retry_invalid)

    def params(self) -> dict[str, Any]:
        params = super().params()
        params.update(first_only=self.first_only, prompt=self.prompt_name)
        return params

    def prompt_id(self) -> str:
        return f"{self.prompts.version}@{self.prompts.sha256}:success"

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "first_only": self.first_only}

    def protocol(self, episode: EpisodeRecord) -> Protocol:
        n = len(episode)
        frames = episode.frames
        if frames is None or len(frames) != n + 1:
            raise ValueError(
                f"Expect episode {episode.episode_id} to carry T+1 = {n + 1} LVLM frames, actually: "
                f"{'None' if frames is None else len(frames)}"
            )
        offset = len(episode.extra.get(EARLIER_ACTIONS_KEY, []))
        n_sub = int(episode.task.get("n_subtasks") or 0)
        progress = np.asarray(episode.progress)
        has_gt = len(progress) == n + 1 and n_sub > 0
        if not has_gt and self.lvlm.backend == "sim":
            raise ValueError(f"The simulated LVLM needs ground-truth progress; episode {episode.episode_id} has none")
        p = self.prompts
        meta: dict[str, Any] = {"prompt": p.version, "prompt_sha256": p.sha256, "model": self.lvlm.spec}
        convs: list[list[dict[str, Any]]] = []
        for t in range(n):
            content: list[dict[str, Any]] = [
                {"type": "text", "text": p.render("success_question", goal=episode.instruction, step=offset + t + 1)},
                {"type": "image", "image": frames[t + 1]},
            ]
            if has_gt:
                data = {"task": "success", "success": bool(progress[t + 1] >= n_sub), "goal": episode.instruction, "step": offset + t + 1}
                content.append({"type": "privileged", "data": data})
            convs.append([{"role": "system", "content": p.render("success_system")}, {"role": "user", "content": content}])
        if not convs:
            return LabelResult(rewards=np.zeros(0, np.float32), raw_scores=np.zeros(0, np.float32), meta=meta)
        texts: list[dict[str, Any]] = []
        answers = yield [(c, dict(self.gen)) for c in convs]
        verdicts: list[bool | None] = []
        errors: dict[int, str] = {}
        for t, answer in enumerate(answers):
            if isinstance(answer, LVLMError):
                return LabelResult.unlabeled("error", f"step {offset + t + 1}: request failed: {answer}", texts=texts, meta=meta)
            assert isinstance(answer, LVLMResponse)
            texts.append({"part": t, "stage": "success", "text": answer.text})
            verdict, error = parse_yes_no(answer.text)
            verdicts.append(verdict)
            if verdict is None:
                errors[t] = error
                privileged = [part for part in convs[t][1]["content"] if part["type"] == "privileged"]
                convs[t].append({"role": "assistant", "content": answer.text})
                repair = p.render("success_repair", error=error)
                convs[t].append({"role": "user", "content": [{"type": "text", "text": repair}, *privileged]})
        if errors:
            meta["repaired_steps"] = sorted(errors)
            answers = yield [(convs[t], dict(self.gen)) for t in sorted(errors)]
            for t, answer in zip(sorted(errors), answers, strict=True):
                if isinstance(answer, LVLMError):
                    return LabelResult.unlabeled("error", f"step {offset + t + 1}: request failed: {answer}", texts=texts, meta=meta)
                assert isinstance(answer, LVLMResponse)
                texts.append({"part": t, "stage": "repair", "text": answer.text})
                verdict, error = parse_yes_no(answer.text)
                if verdict is None:
                    return LabelResult.unlabeled(
                        "invalid",
                        f"step {offset + t + 1}: {errors[t]}; after one repair prompt: {error}",
                        texts=texts,
                        meta=meta,
                    )
                verdicts[t] = verdict
        raw = np.asarray([1.0 if v else 0.0 for v in verdicts], dtype=np.float32)
        rewards = raw.copy()
        if self.first_only and rewards.any():
            first = int(np.argmax(rewards))
            rewards[:] = 0.0
            rewards[first] = 1.0
        return LabelResult(rewards=rewards, raw_scores=raw, texts=texts, meta=meta)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SuccessDetectorLabeler:
        params = dict(params)
        lvlm = params.pop("lvlm")
        return cls(lvlm, **params)


register_labeler("success", SuccessDetectorLabeler)

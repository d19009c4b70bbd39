"""Online LVLM rewards: :class:`RGVLMRewardWrapper`, a Gymnasium wrapper that labels episodes as they run.

Two modes:

- ``"episode"``: the wrapper records the episode (LVLM frames from ``env.unwrapped.render_frame(frame_size)``,
  actions, rewards, ``info["subtask_progress"]``) and labels it when it ends. Rewards already returned
  cannot change, so the step rewards stay the environment's; the final step's ``info`` carries
  ``"lvlm_rewards"`` (the labeler's (T,) rewards, or None if it could not label the episode),
  ``"lvlm_combined_rewards"`` (env reward + ``lam`` * label, per step) and ``"lvlm_label"`` (the full
  :class:`~rgvlm_gym.rewards.base.LabelResult`).
- ``"step"``: after every step the wrapper labels the last ``window`` transitions (a sliding window of
  ``window + 1`` frames, earlier actions given as text) and adds ``lam * label`` of the newest transition to
  the reward; ``info["lvlm_reward"]`` is that label (0.0 when unlabeled; ``info["lvlm_status"]`` says
  why). With RG-VLM that is 2 LVLM calls per step, so use it with a fast local model or a cache.

The labeler is any :class:`~rgvlm_gym.rewards.base.Labeler` (RG-VLM, the oracle, the success detector...) or
its config; the wrapper records the labeler's config, so ``env.spec`` can rebuild it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rgvlm_gym.rewards.base import Labeler, LabelResult, make_labeler
from rgvlm_gym.rewards.rollout import EpisodeBuilder

__all__ = ["WRAPPER_MODES", "RGVLMRewardWrapper"]

WRAPPER_MODES = ("episode", "step")


class RGVLMRewardWrapper(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Label episodes with an LVLM labeler while they run (module docstring).

    Args:
        env: an AlfredLite env (needs ``render_frame`` and ``action_names`` on ``env.unwrapped``).
        labeler: a :class:`~rgvlm_gym.rewards.base.Labeler`, a labeler name or a ``{"type", "params"}``.
        mode: ``"episode"`` or ``"step"``.
        lam: weight of the label (``combined = env reward + lam * label``).
        window: transitions labeled per step in ``"step"`` mode.
        frame_size: side of the LVLM frames.

    Example (simulated LVLM: the labels are simulated):
        >>> import gymnasium as gym
        >>> import rgvlm_gym
        >>> from rgvlm_gym.rewards import RGVLMLabeler, RGVLMRewardWrapper
        >>> env = gym.make("rgvlm_gym/AlfredLite-v1", num_tasks=20)
        >>> env = RGVLMRewardWrapper(env, RGVLMLabeler("sim:noise=0,seed=0"), mode="episode", lam=0.5)
        >>> obs, info = env.reset(seed=0, options={"task_index": 3})
        >>> for a in env.unwrapped.expert_plan():
        ...     obs, reward, terminated, truncated, info = env.step(a)
        >>> info["lvlm_rewards"]
        array([0.5, 1. , 0.5, 1. , 1. , 1. , 1. , 0.5, 1. ], dtype=float32)
        >>> info["lvlm_label"].simulated, info["lvlm_label"].calls
        (True, 2)
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        labeler: Labeler | str | Mapping[str, Any],
        mode: str = "episode",
        lam: float = 1.0,
        window: int = 4,
        frame_size: int = 224,
    ) -> None:
        if mode not in WRAPPER_MODES:
            raise ValueError(f"Expect `mode` to be one of {WRAPPER_MODES}, actually: {mode!r}")
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not np.isfinite(lam):
            raise ValueError(f"Expect `lam` to be a finite number, actually: {lam!r}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"Expect `window` to be a positive int, actually: {window!r}")
        if not hasattr(env.unwrapped, "render_frame"):
            raise ValueError(
                f"Expect an env whose unwrapped env has render_frame(size) (e.g. rgvlm_gym/AlfredLite-v1), "
                f"actually: {type(env.unwrapped).__name__}"
            )
        self.labeler = make_labeler(labeler)
        gym.utils.RecordConstructorArgs.__init__(
            self, labeler=self.labeler.config, mode=mode, lam=float(lam), window=window, frame_size=frame_size
        )
        gym.Wrapper.__init__(self, env)
        self.mode = mode
        self.lam = float(lam)
        self.window = window
        self._builder = EpisodeBuilder(frame_size)
        self._step_labels: list[float] = []
        self._episodes = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._builder.reset(self.env, obs, info)
        self._step_labels = []
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._builder.step(self.env, int(action), obs, float(reward), terminated, truncated, info)
        info = dict(info)
        if self.mode == "step":
            result = self.labeler.label(self._builder.build(self._episodes, last=self.window))
            label = float(result.rewards[-1]) if result.rewards is not None and len(result.rewards) else 0.0
            self._step_labels.append(label if result.labeled else float("nan"))
            info["lvlm_reward"] = label
            info["lvlm_status"] = result.status if result.labeled else f"{result.status}: {result.reason}"
            info["lvlm_simulated"] = result.simulated
            reward = float(reward) + self.lam * label
        if terminated or truncated:
            info.update(self._finish())
        return obs, reward, terminated, truncated, info

    def _finish(self) -> dict[str, Any]:
        episode = self._builder.build(self._episodes)
        self._episodes += 1
        if self.mode == "step":
            labels = np.asarray(self._step_labels, dtype=np.float32)
            ok = not np.isnan(labels).any()
            rewards = labels if ok else None
            return {
                "lvlm_rewards": rewards,
                "lvlm_combined_rewards": None if rewards is None else episode.rewards + np.float32(self.lam) * rewards,
            }
        result: LabelResult = self.labeler.label(episode)
        combined = None if result.rewards is None else episode.rewards + np.float32(self.lam) * result.rewards
        return {"lvlm_rewards": result.rewards, "lvlm_combined_rewards": combined, "lvlm_label": result}

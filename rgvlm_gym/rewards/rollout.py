"""Episode records from live environment steps, for online labeling and tests.

Holds:

- :class:`EpisodeBuilder` — accumulates ``reset`` / ``step`` results of an AlfredLite env (observations,
  actions, rewards, ``info["subtask_progress"]`` and LVLM frames from ``render_frame(size)``) and builds
  an :class:`~rgvlm_gym.data.episode.EpisodeRecord` of the whole episode or of its last steps.
- :func:`rollout` — play a list of actions (or a policy) in an env and return the record.

Example:
    >>> import gymnasium as gym
    >>> import rgvlm_gym
    >>> from rgvlm_gym.rewards.rollout import rollout
    >>> env = gym.make("rgvlm_gym/AlfredLite-v1", num_tasks=20)
    >>> ep = rollout(env, "expert", seed=0, options={"task_index": 3})
    >>> len(ep), ep.frames.shape[1:], ep.progress.tolist(), ep.success
    (9, (224, 224, 3), [0, 0, 1, 1, 2, 3, 4, 5, 5, 6], True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord

__all__ = ["EARLIER_ACTIONS_KEY", "EpisodeBuilder", "rollout"]

#: ``EpisodeRecord.extra`` key of the actions taken before a record's first frame (a window of a longer
#: episode); the RG-VLM prompt mentions them and numbers the steps after them.
EARLIER_ACTIONS_KEY = "earlier_actions"


class EpisodeBuilder:
    """Collects one episode step by step (see the module docstring).

    Args:
        frame_size: side of the LVLM frames (``env.unwrapped.render_frame(frame_size)``); >= 224 keeps the
            renderer's text labels legible.
    """

    def __init__(self, frame_size: int = 224) -> None:
        if not isinstance(frame_size, int) or frame_size < 32:
            raise ValueError(f"Expect `frame_size` to be an int >= 32, actually: {frame_size!r}")
        self.frame_size = frame_size
        self.clear()

    def clear(self) -> None:
        self.instruction = ""
        self.task: dict[str, Any] = {}
        self.actions: list[int] = []
        self.action_names: list[str] = []
        self.images: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.terminations: list[bool] = []
        self.truncations: list[bool] = []
        self.progress: list[int] | None = []
        self.expert: list[tuple[int, int]] | None = []
        self.action_errors: list[str] = []

    def __len__(self) -> int:
        return len(self.actions)

    def _frame(self, env: gym.Env[Any, Any]) -> np.ndarray:
        return np.array(env.unwrapped.render_frame(self.frame_size), dtype=np.uint8, copy=True)  # type: ignore[attr-defined]

    def reset(self, env: gym.Env[Any, Any], obs: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        """Start a new episode from ``env.reset``'s result (the env must be in that state)."""
        self.clear()
        self.instruction = str(obs.get("instruction", info.get("task", {}).get("instruction", "")))
        self.task = dict(info.get("task", {}))
        self.images.append(np.asarray(obs["image"]).copy())
        self.frames.append(self._frame(env))
        self._add_progress(env, info)

    def _add_progress(self, env: gym.Env[Any, Any], info: Mapping[str, Any]) -> None:
        # Privileged ground truth (AlfredLite's info["subtask_progress"]); envs without it give records
        # with an empty progress array, which real LVLMs label fine and the oracle / sim refuse clearly.
        if "subtask_progress" in info and self.progress is not None:
            self.progress.append(int(info["subtask_progress"][0]))
        else:
            self.progress = None
        # the dense oracle's ground truth (the expert plan's length and first action), where the env has it
        cost_to_go = getattr(env.unwrapped, "expert_cost_to_go", None)
        if cost_to_go is not None and self.expert is not None:
            self.expert.append(cost_to_go())
        else:
            self.expert = None

    def step(
        self,
        env: gym.Env[Any, Any],
        action: int,
        obs: Mapping[str, Any],
        reward: float,
        terminated: bool,
        truncated: bool,
        info: Mapping[str, Any],
    ) -> None:
        """Add one ``env.step(action)`` result (the env must be in the state after it)."""
        if not self.frames:
            raise RuntimeError("EpisodeBuilder.step called before reset")
        names = env.unwrapped.action_names  # type: ignore[attr-defined]
        self.actions.append(int(action))
        self.action_names.append(str(info.get("action_name") or names[int(action)]))
        self.images.append(np.asarray(obs["image"]).copy())
        self.frames.append(self._frame(env))
        self.rewards.append(float(reward))
        self.terminations.append(bool(terminated))
        self.truncations.append(bool(truncated))
        self._add_progress(env, info)
        self.action_errors.append(str(info.get("action_error") or ""))

    def build(self, episode_id: int = 0, *, last: int | None = None) -> EpisodeRecord:
        """The record of the episode so far, or of its ``last`` steps only (a window: frames of those steps,
        with the earlier action names in ``extra["earlier_actions"]``)."""
        if not self.frames:
            raise RuntimeError("EpisodeBuilder.build called before reset")
        start = 0 if last is None else max(0, len(self.actions) - int(last))
        extra: dict[str, Any] = {}
        if start:
            extra[EARLIER_ACTIONS_KEY] = list(self.action_names[:start])
        return EpisodeRecord(
            episode_id=episode_id,
            instruction=self.instruction,
            task=dict(self.task),
            actions=np.asarray(self.actions[start:], dtype=np.int64),
            action_names=list(self.action_names[start:]),
            images=np.stack(self.images[start:]),
            frames=np.stack(self.frames[start:]),
            rewards=np.asarray(self.rewards[start:], dtype=np.float32),
            terminations=np.asarray(self.terminations[start:], dtype=bool),
            truncations=np.asarray(self.truncations[start:], dtype=bool),
            progress=np.asarray(self.progress[start:] if self.progress is not None else [], dtype=np.int64),
            action_errors=list(self.action_errors[start:]),
            extra=extra,
            cost_to_go=None if self.expert is None else np.asarray([c for c, _ in self.expert[start:]], dtype=np.int64),
            expert_actions=None if self.expert is None else np.asarray([a for _, a in self.expert[start:]], dtype=np.int64),
        )


def rollout(
    env: gym.Env[Any, Any],
    policy: str | Sequence[int] | Callable[[Any, dict[str, Any]], int],
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    frame_size: int = 224,
    episode_id: int = 0,
    max_steps: int | None = None,
) -> EpisodeRecord:
    """Play one episode and return its record.

    Args:
        env: an AlfredLite env (``gym.make("rgvlm_gym/AlfredLite-v1", ...)``).
        policy: ``"expert"`` (the expert plan from the reset state), a list of action indices, or a
            callable ``(obs, info) -> action``.
        seed, options: passed to ``env.reset``.
        frame_size: side of the LVLM frames.
        episode_id: the record's id.
        max_steps: stop after this many steps (the env's own truncation applies too).
    """
    builder = EpisodeBuilder(frame_size)
    obs, info = env.reset(seed=seed, options=options)
    builder.reset(env, obs, info)
    if isinstance(policy, str):
        if policy != "expert":
            raise ValueError(f"Expect `policy` to be 'expert', a list of actions or a callable, actually: {policy!r}")
        policy = list(env.unwrapped.expert_plan())  # type: ignore[attr-defined]
    plan = None if callable(policy) else list(policy)
    t = 0
    while max_steps is None or t < max_steps:
        if plan is not None:
            if t >= len(plan):
                break
            action = int(plan[t])
        else:
            assert callable(policy)
            action = int(policy(obs, info))
        obs, reward, terminated, truncated, info = env.step(action)
        builder.step(env, action, obs, float(reward), terminated, truncated, info)
        t += 1
        if terminated or truncated:
            break
    return builder.build(episode_id)

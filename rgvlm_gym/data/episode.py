"""One recorded episode, in the form every stage after collection reads: :class:`EpisodeRecord`.

The Minari dataset layer (:mod:`rgvlm_gym.data`) turns stored episodes into records and records into
stored episodes; labelers, the relabel pipeline, inspection and the d3rlpy conversion only see records.
Frames and the sub-task progress are carried separately from what an RL algorithm trains on:
``frames`` are the large (>= 224 px) views an LVLM labels, ``progress`` is privileged ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EpisodeRecord"]


@dataclass
class EpisodeRecord:
    """An episode of T steps.

    Attributes:
        episode_id: index of the episode in its dataset.
        instruction: the natural-language goal the agent was given.
        task: ``info["task"]`` of the episode: at least task_id, task_type, n_subtasks, instruction.
        actions: (T,) int64 action indices.
        action_names: T strings, ``"<Verb> <type>"``.
        images: (T+1, S, S, 3) uint8 RL observations (S = the env's ``image_size``).
        frames: (T+1, F, F, 3) uint8 frames for LVLM labeling (F >= 224), or None if not loaded.
        rewards: (T,) float rewards as stored (the environment's sparse reward in a collected dataset).
        terminations: (T,) bool.
        truncations: (T,) bool.
        progress: (T+1,) int sub-task progress before the first step and after each step
            (privileged ground truth: for oracle labels and evaluation, never for training).
        action_errors: T strings, "" where the action was valid.
        extra: further per-step or per-episode columns (e.g. a relabeled dataset's raw LVLM labels).
        policy: the behaviour policy kind that acted (``expert``, ``noisy``, ...; "" if unknown).
        seed: the ``env.reset`` seed of the episode (with ``task["task_index"]`` it replays the start).
        goal_conditions: (T+1,) int goal conditions met before the first step and after each step
            (privileged, like ``progress``), or None.
        cost_to_go: (T+1,) int length of the expert plan from each state (0 once solved, -1 where no plan
            exists), or None for datasets collected before it was recorded (privileged).
        expert_actions: (T+1,) int the expert's next action from each state (-1: none), or None (privileged).
        action_masks: (T+1, A) uint8 admissible actions in each state (the env's ``info["action_mask"]``), or
            None. Not privileged: the agent sees them at run time too.
    """

    episode_id: int
    instruction: str
    task: dict[str, Any]
    actions: np.ndarray
    action_names: list[str]
    images: np.ndarray
    frames: np.ndarray | None
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    progress: np.ndarray
    action_errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    policy: str = ""
    seed: int | None = None
    goal_conditions: np.ndarray | None = None
    cost_to_go: np.ndarray | None = None
    expert_actions: np.ndarray | None = None
    action_masks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.actions))

    @property
    def success(self) -> bool:
        """Whether the episode ended by reaching the goal."""
        return bool(len(self.terminations) and self.terminations[-1])

    @property
    def n_subtasks(self) -> int:
        return int(self.task["n_subtasks"])

    def progress_deltas(self) -> np.ndarray:
        """(T,) sub-tasks completed by each step (the oracle's per-step signal)."""
        return np.diff(np.asarray(self.progress, dtype=np.int64)).astype(np.float32)

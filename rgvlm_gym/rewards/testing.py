"""Tiny hand-made episodes for examples and tests: :func:`toy_episode`.

Not real rollouts: flat-colour frames and made-up actions, just enough for a labeler to run on. Tests of
label quality use real AlfredLite rollouts (:func:`rgvlm_gym.rewards.rollout.rollout`).
"""

from __future__ import annotations

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord

__all__ = ["toy_episode"]


def toy_episode(episode_id: int = 0, frame_size: int = 224) -> EpisodeRecord:
    """A 3-step episode "put a cold apple on the counter": walk (no progress), cool (sub-task 1), put
    (sub-task 2, success). Progress ``[0, 0, 1, 2]``, sparse rewards ``[0, 0, 1]``, the expert's plan
    shrinking 3, 2, 1, 0 (every step is the expert's)."""
    colours = np.asarray([[40, 40, 40], [90, 60, 30], [30, 90, 160], [60, 160, 60]], dtype=np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], (4, frame_size, frame_size, 3)).copy()
    return EpisodeRecord(
        episode_id=episode_id,
        instruction="Put a cold apple on the counter.",
        task={"task_id": "toy", "task_type": "pick_cool_then_place_in_recep", "n_subtasks": 2,
              "instruction": "Put a cold apple on the counter."},
        actions=np.asarray([0, 1, 2], dtype=np.int64),
        action_names=["GotoLocation fridge", "CoolObject apple", "PutObject countertop"],
        images=frames[:, ::4, ::4].copy(),
        frames=frames,
        rewards=np.asarray([0.0, 0.0, 1.0], dtype=np.float32),
        terminations=np.asarray([False, False, True]),
        truncations=np.asarray([False, False, False]),
        progress=np.asarray([0, 0, 1, 2], dtype=np.int64),
        action_errors=["", "", ""],
        cost_to_go=np.asarray([3, 2, 1, 0], dtype=np.int64),
        expert_actions=np.asarray([0, 1, 2, -1], dtype=np.int64),
    )

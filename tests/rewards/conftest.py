"""Fixtures of the reward tests: episode records from real AlfredLite rollouts (no Minari needed)."""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import pytest
from _rewards_helpers import N_TASKS, make_episodes

from rgvlm_gym.data.episode import EpisodeRecord


@pytest.fixture(scope="session")
def episodes() -> list[EpisodeRecord]:
    """40 real rollouts with 224 px LVLM frames and ground-truth sub-task progress."""
    return make_episodes(40, seed=0)


@pytest.fixture(scope="session")
def long_episode() -> EpisodeRecord:
    """One episode of more than 16 steps (many random detours before the expert finishes)."""
    for ep in make_episodes(12, seed=3, p_random=0.6, max_steps=40):
        if len(ep) >= 20 and ep.progress_deltas().sum() > 0:
            return ep
    raise AssertionError("no long episode with progress found")


@pytest.fixture
def env() -> Iterator[gym.Env]:
    e = gym.make("rgvlm_gym/AlfredLite-v0", num_tasks=N_TASKS)
    yield e
    e.close()

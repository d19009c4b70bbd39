"""Fixtures of the reward tests: episode records from real AlfredLite rollouts (no Minari needed)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rgvlm_gym  # noqa: F401  (registers the envs)
from rgvlm_gym.alfred.planner import PlanningError
from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.rewards.rollout import rollout

# The LVLM tests' real HTTP server helper (a fault-injection OpenAI-compatible endpoint).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lvlm"))

N_TASKS = 60


def mixed_policy(env: gym.Env, rng: np.random.Generator, p_random: float):
    """Expert actions with probability 1 - p_random, else a random action (re-planning after it)."""
    n = env.action_space.n

    def act(obs, info) -> int:
        if rng.random() < p_random:
            return int(rng.integers(n))
        try:
            plan = env.unwrapped.expert_plan()
        except PlanningError:
            return int(rng.integers(n))
        return int(plan[0]) if plan else int(rng.integers(n))

    return act


def make_episodes(n: int, seed: int = 0, p_random: float = 0.25, max_steps: int = 24) -> list[EpisodeRecord]:
    """``n`` episodes of the procedural suite: expert plans with random actions mixed in; every fifth one is
    cut short (so not every episode succeeds)."""
    env = gym.make("rgvlm_gym/AlfredLite-v0", num_tasks=N_TASKS)
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n):
        cap = int(rng.integers(2, 6)) if i % 5 == 4 else max_steps
        ep = rollout(
            env,
            mixed_policy(env, rng, p_random),
            seed=seed * 1000 + i,
            options={"task_index": (seed * 7 + i) % N_TASKS},
            episode_id=i,
            max_steps=cap,
        )
        episodes.append(ep)
    env.close()
    return episodes


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

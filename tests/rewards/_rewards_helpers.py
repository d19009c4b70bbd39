"""Helpers of the reward tests: episode records from real AlfredLite rollouts (no Minari needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np

import rgvlm_gym  # noqa: F401  (registers the envs)
from rgvlm_gym.alfred.planner import PlanningError
from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.rewards.rollout import rollout

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


def lvlm_servers() -> ModuleType:
    """``tests/lvlm/_lvlm_servers.py`` (the LVLM tests' real HTTP fault-injection server), imported by path."""
    name = "_lvlm_servers"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "lvlm" / "_lvlm_servers.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]

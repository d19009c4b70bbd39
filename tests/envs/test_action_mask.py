"""info["action_mask"] agrees with the world: every masked-out action fails, every admissible one works."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest

import rgvlm_gym  # noqa: F401
from tests.conftest import ALFRED_DIR


def _check_mask_against_world(env, rng: np.random.Generator, n_episodes: int, steps: int) -> int:
    """Walk random + expert episodes; at each state try every action on a copy of the world."""
    u = env.unwrapped
    checked = 0
    for ep in range(n_episodes):
        obs, info = env.reset(seed=ep, options={"task_index": int(rng.integers(u.num_tasks))})
        for _ in range(steps):
            mask = info["action_mask"]
            assert mask.dtype == np.int8 and mask.shape == (u.action_space.n,)
            assert set(np.unique(mask)) <= {0, 1}
            for a, (verb, arg) in enumerate(u._vocab):
                error = u.world.copy().step(verb, arg)
                assert (error is None) == bool(mask[a]), (u.action_names[a], error, bool(mask[a]))
            checked += 1
            plan = u.expert_plan()
            # mostly valid random actions, some expert ones, so states go deep into tasks
            if plan and rng.random() < 0.5:
                a = plan[0]
            else:
                a = int(rng.choice(np.flatnonzero(mask))) if rng.random() < 0.8 else int(rng.integers(u.action_space.n))
            obs, r, term, trunc, info = env.step(a)
            assert (info["action_error"] is None) == bool(mask[a])
            if term or trunc:
                break
    return checked


def test_mask_agrees_with_world_procedural() -> None:
    env = gym.make("rgvlm_gym/AlfredLite-v0", num_tasks=60)
    assert _check_mask_against_world(env, np.random.default_rng(0), 40, 25) > 400


@pytest.mark.skipif(not ALFRED_DIR.is_dir(), reason=f"ALFRED data not found at {ALFRED_DIR}")
def test_mask_agrees_with_world_alfred_randomized() -> None:
    env = gym.make("rgvlm_gym/AlfredLite-v0", tasks="alfred", alfred_dir=str(ALFRED_DIR), split="valid_seen",
                   subtasks="1-6", randomize_init=True)
    assert _check_mask_against_world(env, np.random.default_rng(1), 30, 20) > 300


def test_mask_in_reset_and_step_infos_and_a_copy() -> None:
    env = gym.make("rgvlm_gym/AlfredLite-v0", num_tasks=5)
    _, info = env.reset(seed=0)
    first = info["action_mask"]
    kept = copy.deepcopy(first)
    first[:] = 0  # the caller owns the array: changing it changes nothing in the env
    assert (env.unwrapped.action_mask() == kept).all()
    names = env.unwrapped.action_names
    # at the start only walking is possible
    assert all(names[i].startswith("GotoLocation") for i in np.flatnonzero(kept))
    _, _, _, _, info = env.step(int(np.flatnonzero(kept)[0]))
    assert info["action_mask"].shape == kept.shape

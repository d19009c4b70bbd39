"""gym.make_vec over AlfredLite in sync and async modes: right instructions, autoreset declared (issue 12)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rgvlm_gym  # noqa: F401
from rgvlm_gym.envs.spaces import AUTORESET_MODE, InstructionText

ENV_KW = dict(num_tasks=12, max_steps=3)


def _rollout(mode: str, **vector_kwargs):
    envs = gym.make_vec("rgvlm_gym/AlfredLite-v1", num_envs=3, vectorization_mode=mode, vector_kwargs=vector_kwargs, **ENV_KW)
    seen = []
    try:
        obs, infos = envs.reset(seed=7)
        rng = np.random.default_rng(0)
        for _ in range(8):  # max_steps=3: every sub-env truncates and autoresets at least once
            got = list(obs["instruction"])
            assert got == list(infos["task"]["instruction"])
            assert all(0 < len(t) < 2048 and len(set(t)) > 3 for t in got)
            seen.append(got)
            obs, _, _, _, infos = envs.step(rng.integers(envs.single_action_space.n, size=3))
        return seen, envs.metadata
    finally:
        envs.close()


def test_sync_and_async_give_the_same_instructions():
    sync, meta = _rollout("sync")
    asyn, ameta = _rollout("async")
    assert asyn == sync
    assert len({t for step in sync for t in step}) > 3  # autoresets drew new tasks
    assert meta["autoreset_mode"] == ameta["autoreset_mode"] == AUTORESET_MODE


def test_async_without_shared_memory_agrees():
    assert _rollout("async", shared_memory=False)[0] == _rollout("sync")[0]


def test_async_no_copy_is_a_live_view():
    envs = gym.make_vec("rgvlm_gym/AlfredLite-v1", num_envs=2, vectorization_mode="async", vector_kwargs={"copy": False}, **ENV_KW)
    try:
        obs, infos = envs.reset(seed=1)
        first = tuple(obs["instruction"])
        assert first == tuple(infos["task"]["instruction"])
        obs2, infos2 = envs.reset(seed=2)
        assert tuple(obs["instruction"]) == tuple(infos2["task"]["instruction"])  # same object, new content
    finally:
        envs.close()


def test_instruction_space_is_a_text_space():
    env = gym.make("rgvlm_gym/AlfredLite-v1", num_tasks=5)
    space = env.observation_space["instruction"]
    assert isinstance(space, InstructionText) and isinstance(space, gym.spaces.Text)
    assert space == gym.spaces.Text(space.max_length, min_length=0, charset=space.character_set)
    obs, _ = env.reset(seed=0)
    assert space.contains(obs["instruction"])


@pytest.mark.parametrize("env_id", ["rgvlm_gym/AlfredLite-v0", "rgvlm_gym/AlfredLite-v1"])
def test_v0_is_an_alias_of_v1(env_id):
    env = gym.make(env_id, num_tasks=5).unwrapped
    ref = gym.make("rgvlm_gym/AlfredLite-v1", num_tasks=5).unwrapped
    assert env.action_names == ref.action_names
    assert type(env) is type(ref)

"""Behaviour policies: each kind behaves as documented, the mix parses, episodes are functions of their seeds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rgvlm_gym  # noqa: F401
from rgvlm_gym.data.collect import collect_episode, episode_plan
from rgvlm_gym.data.policies import DEFAULT_MIX, POLICY_NAMES, make_policy, parse_mix


@pytest.fixture(scope="module")
def env():
    return gym.make("rgvlm_gym/AlfredLite-v0", num_tasks=30).unwrapped


def test_default_mix_sums_to_one_and_names() -> None:
    assert abs(sum(DEFAULT_MIX.values()) - 1.0) < 1e-9
    assert set(DEFAULT_MIX) | {"mixed"} == set(POLICY_NAMES)


def test_parse_mix_errors() -> None:
    with pytest.raises(ValueError, match="unknown policy kind 'expret'"):
        parse_mix("expret=1")
    with pytest.raises(ValueError, match="kind=weight"):
        parse_mix("expert")
    with pytest.raises(ValueError, match="sum to > 0"):
        parse_mix({"expert": 0.0})
    with pytest.raises(ValueError, match="did you mean 'expert'"):
        make_policy("expret")


def test_kinds_behave_as_documented(env) -> None:
    results: dict[str, list] = {k: [] for k in DEFAULT_MIX}
    for kind in DEFAULT_MIX:
        for i in range(8):
            results[kind].append(collect_episode(env, kind, episode_id=i, seed=100 + i, task_index=i, frame_size=224, frames=False))
    assert all(r.success for r in results["expert"])
    assert all(r.success for r in results["noisy"] + results["detour"])
    # detours take extra steps over the expert on the same task and seed
    assert sum(len(r) for r in results["detour"]) > sum(len(r) for r in results["expert"])
    for r in results["partial"]:
        assert not r.success and bool(r.truncations[-1])
        assert len(r) < env.max_steps
    for r in results["random"]:
        assert len(r) == env.max_steps or r.success
    assert all(r.policy == k for k, rs in results.items() for r in rs)


def test_collect_episode_is_a_function_of_its_seeds(env) -> None:
    a = collect_episode(env, "noisy", episode_id=0, seed=5, task_index=2, policy_seed=9)
    collect_episode(env, "random", episode_id=1, seed=6, task_index=4)  # state in between
    b = collect_episode(env, "noisy", episode_id=0, seed=5, task_index=2, policy_seed=9)
    assert a.actions.tolist() == b.actions.tolist()
    assert np.array_equal(a.images, b.images) and np.array_equal(a.frames, b.frames)
    assert a.frames.shape[1:] == (224, 224, 3) and len(a.frames) == len(a) + 1
    assert a.progress.tolist() == b.progress.tolist() and a.instruction == b.instruction


def test_episode_plan_mix_follows_ratios() -> None:
    mix = {"expert": 0.5, "random": 0.5}
    kinds = [episode_plan(i, 0, 10, "mixed", mix).policy for i in range(400)]
    assert 150 < kinds.count("expert") < 250
    # each pass over the suite is a permutation of it
    assert sorted(episode_plan(i, 0, 10, "expert", {}).task_index for i in range(10, 20)) == list(range(10))

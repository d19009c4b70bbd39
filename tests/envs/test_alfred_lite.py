"""``rgvlm_gym/AlfredLite-v0``: the contract of DESIGN.md, check_env, seeding, errors, rewards, rendering."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rgvlm_gym  # noqa: F401  (registers the env)
from rgvlm_gym.alfred.world import VERBS, World
from rgvlm_gym.envs.alfred_lite import AlfredLiteEnv

ENV_ID = "rgvlm_gym/AlfredLite-v0"


def make(**kwargs: Any) -> gym.Env:
    kwargs.setdefault("num_tasks", 30)
    return gym.make(ENV_ID, **kwargs)


def make_alfred(alfred_dir: Path, **kwargs: Any) -> gym.Env:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the load report's warning about skipped trajectories
        return gym.make(ENV_ID, tasks="alfred", alfred_dir=str(alfred_dir), split="valid_seen", **kwargs)


def world_state(env: gym.Env) -> tuple:
    w = env.unwrapped.world
    return (
        w.view_key(),
        dict(w.parent),
        {k: frozenset(v) for k, v in w.flags.items()},
        w.held,
        w.location,
        dict(w.focus),
    )


def run_expert(env: gym.Env) -> list[tuple[float, bool, bool, dict]]:
    out = []
    for a in env.unwrapped.expert_plan():
        _, reward, terminated, truncated, info = env.step(a)
        assert info["action_error"] is None, info["action_error"]
        out.append((reward, terminated, truncated, info))
    return out


# -- check_env ----------------------------------------------------------------------------------------
def test_check_env_procedural() -> None:
    check_env(make().unwrapped)


@pytest.mark.filterwarnings("ignore:.*could not use")  # check_env re-makes the env from its spec
def test_check_env_alfred_prefixes_randomized(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir, subtasks="1-6", randomize_init=True)
    assert env.unwrapped.num_tasks > 800
    check_env(env.unwrapped)


# -- contract -----------------------------------------------------------------------------------------
def test_observation_and_info_follow_the_contract() -> None:
    env = make()
    obs, info = env.reset(seed=0)
    assert set(obs) == {"image", "instruction"}
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (64, 64, 3)
    assert isinstance(obs["instruction"], str) and obs["instruction"]
    assert env.observation_space.contains(obs)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    for key in ("task_id", "task_type", "n_subtasks", "instruction"):
        assert key in info["task"]
    assert info["task"]["instruction"] == obs["instruction"]
    assert info["success"] is False
    met, total = info["goal_conditions"]
    assert met < total
    assert info["subtask_progress"][1] == info["task"]["n_subtasks"]


def test_alfred_task_ids_are_alfreds(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir)
    u = env.unwrapped
    assert u.num_tasks == len(u.load_report.tasks)
    _, info = env.reset(seed=0, options={"task_index": 0})
    assert info["task"]["task_id"] == u.suite[0].task_id
    assert re.fullmatch(r"trial_T\d{8}_\d{6}_\d{6}", info["task"]["task_id"])
    assert Path(u.suite[0].source).is_file()


# -- seeding ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 123])
def test_reset_by_seed_is_deterministic(seed: int) -> None:
    a, b = make(), make()
    obs_a, info_a = a.reset(seed=seed)
    obs_b, info_b = b.reset(seed=seed)
    assert obs_a["image"].tobytes() == obs_b["image"].tobytes()
    assert obs_a["instruction"] == obs_b["instruction"]
    assert info_a["task"] == info_b["task"]
    for act in a.unwrapped.expert_plan()[:3]:
        oa, *_ = a.step(act)
        ob, *_ = b.step(act)
        assert oa["image"].tobytes() == ob["image"].tobytes()


def test_reset_by_seed_is_deterministic_alfred_randomized(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir, subtasks="1-6", randomize_init=True)
    obs1, info1 = env.reset(seed=42)
    state1 = world_state(env)
    env.reset(seed=7)
    obs2, info2 = env.reset(seed=42)
    assert obs1["image"].tobytes() == obs2["image"].tobytes()
    assert obs1["instruction"] == obs2["instruction"] and info1["task"] == info2["task"]
    assert world_state(env) == state1


def test_different_seeds_draw_different_tasks() -> None:
    env = make()
    keys = {env.reset(seed=s)[1]["task"]["task_id"] for s in range(20)}
    assert len(keys) > 5


def test_task_index_is_stable(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir, subtasks="1-6")
    _, info0 = env.reset(seed=0, options={"task_index": 5})
    _, info1 = env.reset(seed=99, options={"task_index": 5})
    assert info0["task"]["task_id"] == info1["task"]["task_id"] == env.unwrapped.suite[5].task_id
    assert info0["task"]["task_index"] == 5
    assert env.unwrapped.task is env.unwrapped.suite[5]
    other = make_alfred(alfred_dir, subtasks="1-6")
    _, info2 = other.reset(seed=3, options={"task_index": 5})
    assert (info2["task"]["task_id"], info2["task"]["n_subtasks"]) == (
        info0["task"]["task_id"],
        info0["task"]["n_subtasks"],
    )


def test_instruction_variant_is_drawn_by_seed(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir)
    u = env.unwrapped
    i = next(i for i, t in enumerate(u.suite) if len(t.instructions) >= 3)
    seen = {env.reset(seed=s, options={"task_index": i})[0]["instruction"] for s in range(30)}
    assert len(seen) >= 2
    normalized = {" ".join(v.split()) for v in u.suite[i].instructions}
    assert seen <= normalized


@pytest.mark.parametrize("bad", [-1, 10**6])
def test_out_of_range_task_index(bad: int) -> None:
    env = make()
    with pytest.raises(ValueError, match=f"task_index.*{bad}"):
        env.reset(seed=0, options={"task_index": bad})
    with pytest.raises(ValueError, match="task_index"):
        env.reset(seed=0, options={"task_index": env.unwrapped.num_tasks})


def test_randomize_init_changes_the_initial_state(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir, randomize_init=True)
    plain = make_alfred(alfred_dir)
    states = set()
    for seed in range(5):
        env.reset(seed=seed, options={"task_index": 10})
        states.add(tuple(sorted(env.unwrapped.world.parent.items(), key=lambda kv: kv[0])))
        steps = run_expert(env)
        assert steps[-1][3]["success"]
    assert len(states) >= 4
    plain.reset(seed=0, options={"task_index": 10})
    plain_state = tuple(sorted(plain.unwrapped.world.parent.items()))
    assert plain_state not in states
    # the per-reset option overrides the kwarg
    plain.reset(seed=1, options={"task_index": 10, "randomize_init": True})
    assert tuple(sorted(plain.unwrapped.world.parent.items())) != plain_state


# -- bad constructor arguments ------------------------------------------------------------------------
def test_tasks_typo_suggests_the_right_name() -> None:
    with pytest.raises(ValueError, match="alfrd.*did you mean 'alfred'"):
        gym.make(ENV_ID, tasks="alfrd")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"tasks": "alfred"}, "alfred_dir"),
        ({"image_size": 8}, "image_size"),
        ({"max_steps": 0}, "max_steps"),
        ({"render_mode": "human"}, "render_mode"),
        ({"tasks": "procedural", "task_types": "pick_and_eat"}, "pick_and_eat"),
    ],
)
def test_bad_kwargs(kwargs: dict, pattern: str) -> None:
    # the class itself: gym.make turns render_mode="human" into a HumanRendering wrapper
    with pytest.raises(ValueError, match=pattern):
        AlfredLiteEnv(num_tasks=5, **kwargs)


def test_bad_alfred_dir_and_split(tmp_path: Path, alfred_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        gym.make(ENV_ID, tasks="alfred", alfred_dir=str(tmp_path / "nowhere"), split="valid_seen")
    with pytest.raises(ValueError, match="valid_sean"):
        gym.make(ENV_ID, tasks="alfred", alfred_dir=str(alfred_dir), split="valid_sean")
    with pytest.raises(ValueError, match="subtasks"):
        gym.make(ENV_ID, tasks="alfred", alfred_dir=str(alfred_dir), split="valid_seen", subtasks="6-1")


# -- actions ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [-1, 10**5, "n"])
def test_out_of_range_action_is_an_error_message_not_an_exception(action: Any) -> None:
    env = make()
    env.reset(seed=0)
    env.step(env.unwrapped.expert_plan()[0])
    if action == "n":
        action = env.action_space.n
    before = world_state(env)
    obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(info["action_error"], str) and str(action) in info["action_error"]
    assert "out of range" in info["action_error"]
    assert reward == 0.0 and not terminated and not truncated
    assert world_state(env) == before
    assert env.observation_space.contains(obs)


def test_invalid_action_names_itself_and_changes_nothing() -> None:
    env = make()
    env.reset(seed=0)
    u = env.unwrapped
    before = world_state(env)
    a = u.action_index("PutObject fridge")  # nothing in hand at the start
    _, reward, terminated, _, info = env.step(a)
    assert info["action_name"] == "PutObject fridge"
    assert info["action_error"].startswith("PutObject fridge")
    assert reward == 0.0 and not terminated
    assert world_state(env) == before


def test_action_names_format_and_index_round_trip() -> None:
    u = make().unwrapped
    names = u.action_names
    assert len(names) == u.action_space.n == len(set(names))
    pattern = re.compile(rf"^({'|'.join(VERBS)}) [a-z]+$")
    for i, name in enumerate(names):
        assert pattern.match(name), name
        assert u.action_index(name) == i
    assert {n.split()[0] for n in names} == set(VERBS)
    for example in (
        "GotoLocation countertop",
        "PickupObject apple",
        "PutObject fridge",
        "HeatObject apple",
        "CoolObject apple",
        "CleanObject apple",
        "SliceObject apple",
        "ToggleObject desklamp",
    ):
        assert example in names
    assert u.action_index("PickupObject Apple") == names.index("PickupObject apple")
    with pytest.raises(ValueError, match="did you mean 'PickupObject apple'"):
        u.action_index("PickupObject appel")
    with pytest.raises(ValueError, match="unknown action"):
        u.action_index("Teleport kitchen")


def test_vocabulary_is_the_same_for_every_suite(alfred_dir: Path) -> None:
    assert make().unwrapped.action_names == make_alfred(alfred_dir).unwrapped.action_names


# -- rewards and episode end --------------------------------------------------------------------------
def check_expert_episode(env: gym.Env) -> None:
    steps = run_expert(env)
    rewards = [r for r, *_ in steps]
    assert rewards.count(1.0) == 1 and rewards[-1] == 1.0 and sum(rewards) == 1.0
    assert [t for _, t, _, _ in steps] == [False] * (len(steps) - 1) + [True]
    assert not any(tr for _, _, tr, _ in steps)
    info = steps[-1][3]
    n_goal = len(env.unwrapped.task.goal)
    n_sub = info["task"]["n_subtasks"]
    assert info["success"] is True
    assert info["goal_conditions"] == (n_goal, n_goal)
    assert info["subtask_progress"] == (n_sub, n_sub)
    progress = [i["subtask_progress"][0] for *_, i in steps]
    assert progress == sorted(progress)
    assert all(not i["success"] for *_, i in steps[:-1])
    assert env.unwrapped.expert_plan() == []


@pytest.mark.parametrize("task_index", range(0, 30, 3))
def test_expert_plan_gets_reward_once_procedural(task_index: int) -> None:
    env = make()
    env.reset(seed=task_index, options={"task_index": task_index})
    check_expert_episode(env)


def test_expert_plan_gets_reward_once_alfred_prefixes(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir, subtasks="1-6", randomize_init=True)
    for i in range(0, env.unwrapped.num_tasks, 40):
        env.reset(seed=i, options={"task_index": i})
        check_expert_episode(env)


def replays(task) -> bool:
    w = World(task.scene)
    for name in task.expert_actions:
        verb, arg = name.split(" ", 1)
        if w.step(verb, w.onto.canonical(arg)) is not None:
            return False
    return task.is_success(w)


def test_alfred_expert_progress_counts_every_subtask(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir)
    u = env.unwrapped
    i = next(i for i, t in enumerate(u.suite) if t.n_subtasks >= 5 and replays(t))
    env.reset(seed=0, options={"task_index": i})
    # the ALFRED plan itself, step by step: progress climbs by one per sub-task
    progress = [0]
    for name in u.task.expert_actions:
        _, _, _, _, info = env.step(u.action_index(name))
        assert info["action_error"] is None
        if not name.startswith("GotoLocation"):
            progress.append(info["subtask_progress"][0])
    n = u.task.n_subtasks
    assert progress == list(range(n + 1))


def test_truncation_at_max_steps() -> None:
    env = make(max_steps=4)
    env.reset(seed=0)
    noop = env.unwrapped.action_index("PutObject fridge")  # invalid at the start: changes nothing
    flags = []
    for _ in range(4):
        _, reward, terminated, truncated, _ = env.step(noop)
        flags.append((reward, terminated, truncated))
    assert flags == [(0.0, False, False)] * 3 + [(0.0, False, True)]
    env.reset(seed=0)
    _, _, _, truncated, _ = env.step(noop)
    assert not truncated  # the counter restarts


def test_success_on_the_last_step_is_terminated_not_truncated() -> None:
    env = make()
    env.reset(seed=0, options={"task_index": 0})
    n = len(env.unwrapped.expert_plan())
    env = make(max_steps=n)
    env.reset(seed=0, options={"task_index": 0})
    steps = run_expert(env)
    assert steps[-1][:3] == (1.0, True, False)


# -- rendering ----------------------------------------------------------------------------------------
def test_render_rgb_array() -> None:
    env = make(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (224, 224, 3) and frame.dtype == np.uint8
    again = env.render()
    assert frame.tobytes() == again.tobytes()
    env.step(env.unwrapped.expert_plan()[0])
    assert env.render().tobytes() != frame.tobytes()
    plain = make()
    plain.reset(seed=0)
    assert plain.render() is None
    big = make(render_mode="rgb_array", render_size=300)
    big.reset(seed=0)
    assert big.render().shape == (300, 300, 3)


@pytest.mark.parametrize("size", [32, 96, 224])
def test_image_size_kwarg(size: int) -> None:
    env = make(image_size=size)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (size, size, 3)
    assert env.observation_space["image"].shape == (size, size, 3)
    assert env.observation_space.contains(obs)


def test_observation_image_changes_with_the_state() -> None:
    env = make()
    obs0, _ = env.reset(seed=0)
    obs1, *_ = env.step(env.unwrapped.expert_plan()[0])
    assert obs0["image"].tobytes() != obs1["image"].tobytes()
    obs0["image"][:] = 0  # the observation is a copy, not the renderer's cache
    again, _ = env.reset(seed=0)
    assert again["image"].any()


# -- gym.make forms and spec recovery -----------------------------------------------------------------
def test_module_prefixed_id() -> None:
    env = gym.make("rgvlm_gym:rgvlm_gym/AlfredLite-v0", num_tasks=5)
    assert isinstance(env.unwrapped, AlfredLiteEnv)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3)


def test_spec_recovers_the_same_suite_procedural() -> None:
    env = make(num_tasks=12, suite_seed=3, image_size=48)
    env2 = gym.make(env.spec)
    assert env2.spec.kwargs == env.spec.kwargs
    for e in (env, env2):
        e.reset(seed=0, options={"task_index": 5})
    assert env.unwrapped.task.key == env2.unwrapped.task.key
    assert env.unwrapped.instruction == env2.unwrapped.instruction
    assert env.unwrapped.expert_plan() == env2.unwrapped.expert_plan()


def test_spec_recovers_the_same_suite_alfred(alfred_dir: Path) -> None:
    env = make_alfred(alfred_dir, subtasks="1-6", randomize_init=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env2 = gym.make(env.spec)
    assert env2.spec.kwargs == env.spec.kwargs
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in env.spec.kwargs.values())
    o1, i1 = env.reset(seed=3, options={"task_index": 5})
    o2, i2 = env2.reset(seed=3, options={"task_index": 5})
    assert i1["task"] == i2["task"]
    assert o1["image"].tobytes() == o2["image"].tobytes()
    assert env.unwrapped.num_tasks == env2.unwrapped.num_tasks


def test_task_types_filter() -> None:
    env = make(task_types="pick_heat_then_place_in_recep,look_at_obj_in_light", num_tasks=10)
    types = {t.task_type for t in env.unwrapped.suite}
    assert types == {"pick_heat_then_place_in_recep", "look_at_obj_in_light"}


SUITE_DIGEST = """
import hashlib, sys, warnings
warnings.simplefilter("ignore")
import gymnasium as gym, rgvlm_gym
env = gym.make("rgvlm_gym/AlfredLite-v0", tasks="alfred", alfred_dir=sys.argv[1], split="valid_seen",
               subtasks="1-6", randomize_init=True)
h = hashlib.sha256()
for i in range(0, env.unwrapped.num_tasks, 9):
    obs, info = env.reset(seed=i, options={"task_index": i})
    h.update(obs["image"].tobytes() + obs["instruction"].encode() + info["task"]["task_id"].encode())
    h.update(repr(env.unwrapped.expert_plan()).encode())
print(h.hexdigest())
"""


def test_alfred_suite_is_identical_across_processes(alfred_dir: Path) -> None:
    """Task order, instructions, randomized states and frames do not depend on PYTHONHASHSEED."""
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", SUITE_DIGEST, str(alfred_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1

"""Procedural task generator: scenes, solvable tasks, determinism, instruction variety, prefixes, errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from rgvlm_gym.alfred.ontology import load_ontology
from rgvlm_gym.alfred.procedural import (
    ROOMS,
    generate_prefix_tasks,
    generate_scene,
    generate_task,
    procedural_suite,
    rooms_for_task_type,
)
from rgvlm_gym.alfred.tasks import TASK_TYPES, TaskSpec
from rgvlm_gym.alfred.world import World

ONTO = load_ontology()
SLICEABLE_TYPES = [t for t in TASK_TYPES if t != "look_at_obj_in_light"]


def replay(task: TaskSpec, actions: tuple[str, ...] | None = None) -> World:
    """Run a task's expert actions (or the given ones) from its initial state; every step must be valid."""
    w = World(task.scene)
    for a in task.expert_actions if actions is None else actions:
        verb, arg = a.split(" ", 1)
        err = w.step(verb, ONTO.canonical(arg))
        assert err is None, f"{task.key}: {a}: {err}"
    return w


def combos() -> list[tuple[str, str, bool]]:
    out = []
    for t in TASK_TYPES:
        for r in rooms_for_task_type(t):
            out.append((t, r, False))
            if r == "kitchen" and t in SLICEABLE_TYPES:
                out.append((t, r, True))
    return out


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("room", ROOMS)
def test_generate_scene_is_alfred_like(room: str) -> None:
    for seed in range(20):
        scene = generate_scene(np.random.default_rng(seed), room)
        assert scene.room == room
        rec_ids = [r.id for r in scene.receptacles]
        obj_ids = [o.id for o in scene.objects]
        assert len(set(rec_ids)) == len(rec_ids) and len(set(obj_ids)) == len(obj_ids)
        assert not set(rec_ids) & set(obj_ids)
        assert {r.type for r in scene.receptacles} <= set(ONTO.rooms[room]["receptacles"])
        movable = [o for o in scene.objects if o.type not in ONTO.toggleable]
        assert 15 <= len(movable) <= 40
        type_of = {r.id: r.type for r in scene.receptacles} | {o.id: o.type for o in scene.objects}
        for o in scene.objects:
            if o.type in ONTO.toggleable:
                assert type_of[o.parent] in ONTO.lamp_supports[o.type]
                assert "on" not in o.flags
            else:
                assert ONTO.fits(o.type, type_of[o.parent]), (o, type_of[o.parent])
                if o.parent in obj_ids:  # nested one deep, in a movable receptacle standing in a fixed one
                    parent = next(p for p in scene.objects if p.id == o.parent)
                    assert parent.parent in rec_ids
        World(scene)  # a valid initial state


def test_kitchens_have_many_cabinets_and_nesting() -> None:
    scenes = [generate_scene(np.random.default_rng(s), "kitchen") for s in range(30)]
    assert all(sum(r.type == "Cabinet" for r in sc.receptacles) >= 3 for sc in scenes)
    assert all({"Fridge", "Microwave", "SinkBasin", "CounterTop"} <= sc.receptacle_types() for sc in scenes)
    obj_ids = [{o.id for o in sc.objects} for sc in scenes]
    nested = sum(any(o.parent in ids for o in sc.objects) for sc, ids in zip(scenes, obj_ids, strict=True))
    assert nested >= 10


def test_generate_scene_required_lamps_and_receptacles() -> None:
    for seed in range(20):
        sc = generate_scene(
            np.random.default_rng(seed), "living_room", lamps=["FloorLamp"], receptacles=["Safe"]
        )
        assert "Safe" in sc.receptacle_types()
        lamps = [o for o in sc.objects if o.type == "FloorLamp"]
        assert len(lamps) == 1 and lamps[0].parent == "Floor"
    with pytest.raises(ValueError, match="room 'garage'.*kitchen"):
        generate_scene(np.random.default_rng(0), "garage")


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("task_type", "room", "sliced"), combos())
def test_every_task_type_and_room(task_type: str, room: str, sliced: bool) -> None:
    for seed in range(8):
        task = generate_task(seed, task_type, room, sliced)
        assert task.task_type == task_type and task.scene.room == room
        assert task.params["object_sliced"] is sliced
        assert task.task_id == f"proc-{seed:06d}" and task.source == f"procedural:{seed}"
        assert task.prefix is None
        assert task.n_subtasks == sum(not a.startswith("GotoLocation") for a in task.expert_actions)
        assert len(task.subgoals) == task.n_subtasks and task.subgoals[-1] == task.goal
        assert 3 <= len(task.instructions) <= 5 and len(set(task.instructions)) == len(task.instructions)
        for a in task.expert_actions:
            assert re.fullmatch(
                r"(GotoLocation|PickupObject|PutObject|ToggleObject|SliceObject|HeatObject|CoolObject|CleanObject) [a-z]+",
                a,
            )
        p = task.params
        if task_type == "look_at_obj_in_light":
            assert p["toggle_target"] in ("DeskLamp", "FloorLamp") and not p["parent_target"]
        else:
            assert (
                ONTO.is_receptacle(p["parent_target"]) and p["parent_target"] in task.scene.receptacle_types()
            )
        if task_type == "pick_and_place_with_movable_recep":
            assert p["mrecep_target"] in ONTO.movable_receptacles
        if sliced:
            assert p["object_target"] in ONTO.sliceable
            assert task.expert_actions.count(f"SliceObject {p['object_target'].lower()}") >= 1
        replay_and_check(task)


def replay_and_check(task: TaskSpec) -> None:
    w = World(task.scene)
    assert not any(c.holds(w) for c in task.goal), f"{task.key}: a goal condition holds at the start"
    k = 0
    for a in task.expert_actions:
        verb, arg = a.split(" ", 1)
        err = w.step(verb, ONTO.canonical(arg))
        assert err is None, f"{task.key}: {a}: {err}"
        if verb != "GotoLocation":
            assert all(c.holds(w) for c in task.subgoals[k]), f"{task.key}: sub-goal {k + 1} fails after {a}"
            k += 1
    assert task.is_success(w), f"{task.key}: goal {[c.describe() for c in task.goal]} not met"


def test_plan_replay_300_seeds() -> None:
    types = Counter()
    for seed in range(300):
        task = generate_task(seed)
        replay_and_check(task)
        types[task.task_type] += 1
    assert set(types) == set(TASK_TYPES)


def test_plans_read_like_alfred() -> None:
    for seed in range(60):
        task = generate_task(seed, "pick_cool_then_place_in_recep", sliced=True)
        acts = task.expert_actions
        verbs = [a.split()[0] for a in acts]
        knife = next(a for a in acts if a.startswith("PickupObject"))
        assert knife.split()[1] in ("knife", "butterknife")
        assert verbs.index("SliceObject") < verbs.index("CoolObject")
        # pick knife -> slice -> put knife -> pick slice, each put preceded by a walk
        sub = [a for a in acts if not a.startswith("GotoLocation")]
        assert [a.split()[0] for a in sub] == [
            "PickupObject",
            "SliceObject",
            "PutObject",
            "PickupObject",
            "CoolObject",
            "PutObject",
        ]
        for i, v in enumerate(verbs):
            if v == "PutObject" and i > 0:
                assert verbs[i - 1] == "GotoLocation"
        w = replay(task, acts[: verbs.index("CoolObject")])
        assert w.location == "Fridge"


def test_determinism() -> None:
    for seed in (0, 1, 17, 123456):
        a, b = generate_task(seed), generate_task(seed)
        assert a == b and a.params == b.params and a.instructions == b.instructions
    assert generate_task(5) != generate_task(6)
    assert generate_prefix_tasks(9, (1, 6)) == generate_prefix_tasks(9, (1, 6))
    s1, s2 = procedural_suite(30, seed=2), procedural_suite(60, seed=2)
    assert s1 == s2[:30]
    assert [t.instructions for t in s1] == [t.instructions for t in s2[:30]]
    assert procedural_suite(10, seed=0) != procedural_suite(10, seed=1)


def test_same_tasks_in_every_process() -> None:
    """No dependence on Python's per-process string hashing (set iteration order)."""
    code = (
        "import hashlib, rgvlm_gym.alfred.procedural as P; "
        "s = P.procedural_suite(40) + P.procedural_suite(20, subtasks=(1, 6)); "
        "print(hashlib.md5(repr([(t.key, t.instructions, t.expert_actions, t.scene.to_dict()) for t in s]).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": h},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in ("1", "2")
    }
    assert len(digests) == 1


def test_instruction_variety() -> None:
    tasks = [generate_task(s) for s in range(200)]
    firsts = {t.instructions[0] for t in tasks}
    assert len(firsts) >= 180
    all_instr = {i for t in tasks for i in t.instructions}
    assert len(all_instr) >= 600
    # several whole-task phrasings per task type (the opening words differ, not only the names)
    openings: dict[str, set[str]] = {}
    for t in tasks:
        for i in t.instructions:
            openings.setdefault(t.task_type, set()).add(" ".join(i.split()[:2]))
    assert all(len(v) >= 4 for v in openings.values()), {k: len(v) for k, v in openings.items()}
    # natural names, not ALFRED type names
    text = " ".join(all_instr)
    assert "diningtable" not in text.lower() and "sinkbasin" not in text.lower()


def test_step_descriptions_vary_per_step_kind() -> None:
    phrasings: dict[str, set[str]] = {}
    for seed in range(150):
        full = generate_prefix_tasks(seed, (1, 10))[-1]
        assert full.prefix is None
        for instr in full.instructions:
            sentences = re.split(r"(?<=[.!?]) ", instr)
            assert len(sentences) == len(full.expert_actions), (sentences, full.expert_actions)
            for a, s in zip(full.expert_actions, sentences, strict=True):
                phrasings.setdefault(a.split()[0], set()).add(" ".join(s.split()[:2]))
    assert set(phrasings) == {
        "GotoLocation",
        "PickupObject",
        "PutObject",
        "SliceObject",
        "HeatObject",
        "CoolObject",
        "CleanObject",
        "ToggleObject",
    }
    assert all(len(v) >= 3 for v in phrasings.values()), {k: sorted(v) for k, v in phrasings.items()}


def test_natural_names() -> None:
    seen = " ".join(i for s in range(300) for i in generate_task(s).instructions)
    for phrase in ("counter", "sink", "table"):
        assert phrase in seen
    kitchen = " ".join(
        i for s in range(40) for i in generate_task(s, "pick_and_place_simple", "kitchen", False).instructions
    )
    assert re.search(r"\b(an apple|an egg|a [a-z]+)\b", kitchen)
    assert " a apple" not in seen and " a egg" not in seen  # articles agree


# --------------------------------------------------------------------------------------------------
# Prefix tasks and suites
# --------------------------------------------------------------------------------------------------
def test_prefix_tasks_goals_hold_after_their_steps() -> None:
    for seed in range(40):
        full = generate_task(seed)
        prefixes = generate_prefix_tasks(seed, (1, 6))
        n = full.n_subtasks
        assert [p.n_subtasks for p in prefixes] == list(range(1, min(6, n) + 1))
        for p in prefixes:
            k = p.n_subtasks
            assert p.task_id == full.task_id and p.scene == full.scene and p.task_type == full.task_type
            assert p.prefix == (k if k < n else None)
            assert p.goal == (full.subgoals[k - 1] if k < n else full.goal)
            assert p.subgoals == full.subgoals[:k]
            assert full.expert_actions[: len(p.expert_actions)] == p.expert_actions
            assert not p.expert_actions[-1].startswith("GotoLocation")
            assert sum(not a.startswith("GotoLocation") for a in p.expert_actions) == k
            w = replay(p)
            assert p.is_success(w), (p.key, [c.describe() for c in p.goal])
            # instructions: the step descriptions so far, one sentence per step
            for instr in p.instructions:
                assert len(re.split(r"(?<=[.!?]) ", instr)) == len(p.expert_actions)
        keys = [p.key for p in prefixes]
        assert len(set(keys)) == len(keys)
    assert generate_prefix_tasks(3, "2-3", "pick_and_place_simple")[0].n_subtasks == 2
    assert generate_prefix_tasks(3, (5, 6), "look_at_obj_in_light") == []


def test_suite_is_balanced_and_stable() -> None:
    suite = procedural_suite(70, seed=0)
    assert Counter(t.task_type for t in suite) == {t: 10 for t in TASK_TYPES}
    assert len({t.key for t in suite}) == 70
    rooms = Counter(t.scene.room for t in suite)
    assert set(rooms) == set(ROOMS)
    for t in suite[:20]:
        replay_and_check(t)

    pre = procedural_suite(120, seed=1, subtasks=(1, 6))
    ks = Counter(t.n_subtasks for t in pre)
    assert set(ks) == set(range(1, 7)) and min(ks.values()) >= 12
    assert len({t.task_type for t in pre}) == 7
    for t in pre:
        assert t.is_success(replay(t))

    only = procedural_suite(12, task_types=["look_at_obj_in_light"], rooms=["bedroom"])
    assert {(t.task_type, t.scene.room) for t in only} == {("look_at_obj_in_light", "bedroom")}
    bath = procedural_suite(9, rooms=["bathroom"])
    assert {t.task_type for t in bath} == {
        "pick_and_place_simple",
        "pick_two_obj_and_place",
        "pick_clean_then_place_in_recep",
    }


def test_generation_speed() -> None:
    generate_task(0)  # load data files
    t0 = time.perf_counter()
    for s in range(200):
        generate_task(s)
    per_task = (time.perf_counter() - t0) / 200
    assert per_task < 0.02, f"{per_task * 1000:.1f} ms per task"


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
def test_errors() -> None:
    with pytest.raises(
        ValueError, match=r"unknown task type 'pick_and_place'.*pick_and_place_simple.*Did you mean"
    ):
        generate_task(0, "pick_and_place")
    with pytest.raises(
        ValueError, match=r"unknown room 'livingroom'.*kitchen, living_room.*Did you mean 'living_room'"
    ):
        generate_task(0, room="livingroom")
    with pytest.raises(
        ValueError, match=r"'look_at_obj_in_light' is not generated in room 'kitchen'.*living_room"
    ):
        generate_task(0, "look_at_obj_in_light", "kitchen")
    with pytest.raises(ValueError, match="no sliced variant"):
        generate_task(0, "pick_and_place_simple", "bathroom", sliced=True)
    with pytest.raises(ValueError, match="no sliced variant"):
        generate_task(0, "look_at_obj_in_light", sliced=True)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        generate_task(-1)
    with pytest.raises(ValueError, match="subtasks"):
        generate_prefix_tasks(0, (3, 1))
    with pytest.raises(ValueError, match="n_tasks"):
        procedural_suite(0)
    with pytest.raises(ValueError, match="unknown task type 'heat'"):
        procedural_suite(5, task_types=["heat"])
    with pytest.raises(ValueError, match="not generated in rooms"):
        procedural_suite(5, task_types=["pick_heat_then_place_in_recep"], rooms=["bedroom"])
    with pytest.raises(ValueError, match="sub-tasks"):
        procedural_suite(5, subtasks=(9, 12))
    with pytest.raises(ValueError, match="unknown task type"):
        rooms_for_task_type("nope")
    # a sliced task never lands in a room without knives
    assert generate_task(4, sliced=True).scene.room == "kitchen"

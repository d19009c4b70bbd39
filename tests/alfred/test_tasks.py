"""Goal conditions of the seven ALFRED task types, GC counts, sub-goals from plans, (de)serialisation."""

from __future__ import annotations

import json

import pytest

from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
from rgvlm_gym.alfred.tasks import (
    TASK_TYPES,
    HasFlag,
    Holding,
    InReceptacle,
    LampOn,
    Sliced,
    TaskSpec,
    condition_from_dict,
    goal_for_task_type,
    subgoals_from_plan,
)
from rgvlm_gym.alfred.world import World

RECS = (
    ReceptacleSpec("CounterTop|1", "CounterTop"),
    ReceptacleSpec("Fridge|1", "Fridge"),
    ReceptacleSpec("Fridge|2", "Fridge"),
    ReceptacleSpec("Microwave|1", "Microwave"),
    ReceptacleSpec("SinkBasin|1", "SinkBasin"),
    ReceptacleSpec("DiningTable|1", "DiningTable"),
    ReceptacleSpec("Desk|1", "Desk"),
    ReceptacleSpec("Bed|1", "Bed"),
)


def world(*objs: tuple, at: str | None = None, hold: str | None = None) -> World:
    """A room with the fixed receptacles above and ``objs`` = (id, type, parent[, flags])."""
    specs = tuple(
        ObjectSpec(o[0], o[1], o[2], None, frozenset(o[3]) if len(o) > 3 else frozenset()) for o in objs
    )
    w = World(SceneSpec("t", "kitchen", RECS, specs))
    if hold is not None:
        assert w.step("GotoLocation", w.obj_type[hold]) is None
        assert w.step("PickupObject", w.obj_type[hold]) is None
        assert w.held == hold
    if at is not None:
        assert w.step("GotoLocation", at) is None
    return w


def gc(goal: tuple, w: World) -> tuple[int, int]:
    spec = TaskSpec("t", "pick_and_place_simple", 1, ("x",), goal, (goal,), w.scene)
    met = spec.goal_conditions_met(w)
    assert spec.is_success(w) == (met[0] == met[1])
    return met


# -- the seven task types -----------------------------------------------------------------------------
def test_every_task_type_has_a_goal() -> None:
    assert len(TASK_TYPES) == 7
    for tt in TASK_TYPES:
        goal = goal_for_task_type(tt, "Apple", "Fridge", mrecep="Bowl", toggle="DeskLamp")
        assert goal and all(isinstance(c.describe(), str) for c in goal)


def test_pick_and_place_simple() -> None:
    goal = goal_for_task_type("pick_and_place_simple", "Apple", "Fridge")
    assert gc(goal, world(("Apple|1", "Apple", "CounterTop|1"))) == (0, 1)
    assert gc(goal, world(("Apple|1", "Apple", "Fridge|2"))) == (1, 1)
    assert gc(goal, world(("Apple|1", "Apple", "Fridge|1"), hold="Apple|1")) == (0, 1)  # in hand is not in
    # any apple in any fridge; in a bowl in the fridge counts as in the fridge
    assert gc(goal, world(("Bowl|1", "Bowl", "Fridge|1"), ("Apple|1", "Apple", "Bowl|1"))) == (1, 1)
    assert gc(goal, world(("Tomato|1", "Tomato", "Fridge|1"))) == (0, 1)


def test_pick_two_obj_and_place_needs_both_in_one_receptacle() -> None:
    goal = goal_for_task_type("pick_two_obj_and_place", "Apple", "Fridge")
    assert gc(goal, world(("Apple|1", "Apple", "CounterTop|1"), ("Apple|2", "Apple", "CounterTop|1"))) == (
        0,
        2,
    )
    assert gc(goal, world(("Apple|1", "Apple", "Fridge|1"), ("Apple|2", "Apple", "CounterTop|1"))) == (1, 2)
    assert gc(goal, world(("Apple|1", "Apple", "Fridge|1"), ("Apple|2", "Apple", "Fridge|2"))) == (1, 2)
    assert gc(goal, world(("Apple|1", "Apple", "Fridge|1"), ("Apple|2", "Apple", "Fridge|1"))) == (2, 2)
    assert gc(
        goal,
        world(
            ("Apple|1", "Apple", "Fridge|1"),
            ("Apple|2", "Apple", "Fridge|1"),
            ("Apple|3", "Apple", "Fridge|1"),
        ),
    ) == (2, 2)


def test_look_at_obj_in_light() -> None:
    goal = goal_for_task_type("look_at_obj_in_light", "Book", toggle="DeskLamp")
    lamp_on = ("DeskLamp|1", "DeskLamp", "Desk|1", {"on"})
    lamp_off = ("DeskLamp|1", "DeskLamp", "Desk|1")
    book = ("Book|1", "Book", "Bed|1")
    assert gc(goal, world(book, lamp_off)) == (0, 2)
    assert gc(goal, world(book, lamp_off, hold="Book|1", at="Desk")) == (1, 2)
    assert gc(goal, world(book, lamp_on, hold="Book|1", at="Desk")) == (2, 2)
    assert gc(goal, world(book, lamp_on, hold="Book|1", at="Bed")) == (
        1,
        2,
    )  # the lamp must be where you stand
    assert gc(goal, world(book, lamp_on, at="Desk")) == (1, 2)  # looking at it without holding it
    w = world(book, lamp_off, hold="Book|1", at="Desk")
    assert w.step("ToggleObject", "DeskLamp") is None
    assert gc(goal, w) == (2, 2)


@pytest.mark.parametrize(
    ("task_type", "flag", "other"),
    [
        ("pick_clean_then_place_in_recep", "clean", "hot"),
        ("pick_heat_then_place_in_recep", "hot", "cold"),
        ("pick_cool_then_place_in_recep", "cold", "hot"),
    ],
)
def test_state_change_then_place(task_type: str, flag: str, other: str) -> None:
    goal = goal_for_task_type(task_type, "Apple", "DiningTable")
    assert gc(goal, world(("Apple|1", "Apple", "DiningTable|1"))) == (0, 2)
    assert gc(goal, world(("Apple|1", "Apple", "DiningTable|1", {other}))) == (0, 2)
    assert gc(goal, world(("Apple|1", "Apple", "CounterTop|1", {flag}))) == (1, 2)
    # the one with the flag must be the one in place
    assert gc(
        goal, world(("Apple|1", "Apple", "CounterTop|1", {flag}), ("Apple|2", "Apple", "DiningTable|1"))
    ) == (1, 2)
    assert gc(
        goal,
        world(("Apple|1", "Apple", "DiningTable|1", {flag})),
    ) == (2, 2)


def test_pick_and_place_with_movable_recep() -> None:
    goal = goal_for_task_type("pick_and_place_with_movable_recep", "Apple", "DiningTable", mrecep="Bowl")
    assert len(goal) == 3
    assert gc(goal, world(("Bowl|1", "Bowl", "CounterTop|1"), ("Apple|1", "Apple", "CounterTop|1"))) == (0, 3)
    assert gc(goal, world(("Bowl|1", "Bowl", "CounterTop|1"), ("Apple|1", "Apple", "Bowl|1"))) == (1, 3)
    assert gc(goal, world(("Bowl|1", "Bowl", "DiningTable|1"), ("Apple|1", "Apple", "DiningTable|1"))) == (
        1,
        3,
    )
    # an apple in a bowl on the counter and an empty bowl on the table: the nesting is missing
    w = world(
        ("Bowl|1", "Bowl", "CounterTop|1"),
        ("Apple|1", "Apple", "Bowl|1"),
        ("Bowl|2", "Bowl", "DiningTable|1"),
    )
    assert gc(goal, w) == (2, 3)
    assert gc(goal, world(("Bowl|1", "Bowl", "DiningTable|1"), ("Apple|1", "Apple", "Bowl|1"))) == (3, 3)


def test_sliced_variants() -> None:
    goal = goal_for_task_type("pick_and_place_simple", "Apple", "Fridge", sliced=True)
    assert isinstance(goal[0], Sliced) and "sliced" in goal[-1].flags
    assert gc(goal, world(("Apple|1", "Apple", "Fridge|1"))) == (0, 2)  # whole
    assert gc(goal, world(("Apple|1", "Apple", "CounterTop|1", {"sliced"}))) == (1, 2)
    assert gc(goal, world(("Apple|1", "Apple", "Fridge|1", {"sliced"}))) == (2, 2)
    heat = goal_for_task_type("pick_heat_then_place_in_recep", "Potato", "CounterTop", sliced=True)
    assert gc(heat, world(("Potato|1", "Potato", "CounterTop|1", {"sliced"}))) == (1, 3)
    assert gc(heat, world(("Potato|1", "Potato", "CounterTop|1", {"sliced", "hot"}))) == (3, 3)
    assert gc(heat, world(("Potato|1", "Potato", "CounterTop|1", {"hot"}))) == (1, 3)
    two = goal_for_task_type("pick_two_obj_and_place", "Bread", "CounterTop", sliced=True)
    s = {"sliced"}
    assert gc(
        two, world(("Bread|1", "Bread", "CounterTop|1", s), ("Bread|2", "Bread", "CounterTop|1", s))
    ) == (3, 3)
    assert gc(two, world(("Bread|1", "Bread", "CounterTop|1", s), ("Bread|2", "Bread", "CounterTop|1"))) == (
        2,
        3,
    )


def test_sliced_goal_reached_by_acting() -> None:
    goal = goal_for_task_type("pick_cool_then_place_in_recep", "Apple", "CounterTop", sliced=True)
    w = world(("Apple|1", "Apple", "CounterTop|1"), ("Knife|1", "Knife", "CounterTop|1"), at="CounterTop")
    assert gc(goal, w) == (0, 3)
    for verb, arg in [
        ("PickupObject", "Knife"),
        ("SliceObject", "Apple"),
        ("PutObject", "CounterTop"),
        ("PickupObject", "Apple"),
        ("GotoLocation", "Fridge"),
    ]:
        assert w.step(verb, arg) is None
    assert gc(goal, w) == (1, 3)
    assert w.step("CoolObject", "Apple") is None
    assert gc(goal, w) == (2, 3)
    assert w.step("GotoLocation", "CounterTop") is None and w.step("PutObject", "CounterTop") is None
    assert gc(goal, w) == (3, 3)


def test_unknown_task_type_and_missing_params_raise() -> None:
    with pytest.raises(ValueError, match="unknown task type 'pick_and_eat'.*pick_and_place_simple"):
        goal_for_task_type("pick_and_eat", "Apple", "Fridge")
    with pytest.raises(ValueError, match="parent_target"):
        goal_for_task_type("pick_and_place_simple", "Apple")
    with pytest.raises(ValueError, match="toggle_target"):
        goal_for_task_type("look_at_obj_in_light", "Book")
    with pytest.raises(ValueError, match="mrecep_target"):
        goal_for_task_type("pick_and_place_with_movable_recep", "Apple", "DiningTable")


def test_lamp_on_and_holding_conditions() -> None:
    w = world(("DeskLamp|1", "DeskLamp", "Desk|1", {"on"}), ("Apple|1", "Apple", "Desk|1", {"hot"}))
    assert not LampOn("DeskLamp").holds(w)  # not at the desk
    assert w.step("GotoLocation", "Desk") is None
    assert LampOn("DeskLamp").holds(w)
    assert not LampOn("FloorLamp").holds(w)
    assert not Holding("Apple").holds(w)
    assert w.step("PickupObject", "Apple") is None
    assert Holding("Apple").holds(w) and Holding("Apple", frozenset({"hot"})).holds(w)
    assert not Holding("Apple", frozenset({"cold"})).holds(w)
    assert HasFlag("Apple", "hot").holds(w) and not HasFlag("Apple", "clean").holds(w)


# -- serialisation ------------------------------------------------------------------------------------
ALL_CONDITIONS = [
    Holding("Apple", frozenset({"hot", "sliced"})),
    Holding("Book"),
    InReceptacle("Apple", "Bowl", frozenset({"sliced"}), 2, "DiningTable"),
    InReceptacle("Mug", "CoffeeMachine"),
    Sliced("Bread"),
    HasFlag("Potato", "cold"),
    LampOn("FloorLamp"),
]


@pytest.mark.parametrize("cond", ALL_CONDITIONS, ids=lambda c: type(c).__name__)
def test_condition_dict_round_trip(cond) -> None:
    d = cond.to_dict()
    assert d["kind"] == type(cond).__name__
    back = condition_from_dict(json.loads(json.dumps(d)))
    assert back == cond and hash(back) == hash(cond)
    assert back.describe() == cond.describe()


def test_condition_from_dict_unknown_kind() -> None:
    with pytest.raises((KeyError, ValueError)):
        condition_from_dict({"kind": "Teleported", "obj": "Apple"})


def test_describe_texts() -> None:
    assert InReceptacle("Apple", "Fridge", frozenset({"hot"}), 2).describe() == "2 hot apples in a fridge"
    assert (
        InReceptacle("Apple", "Bowl", within="DiningTable").describe()
        == "a apple in a bowl on/in a diningtable"
    )
    assert Holding("Apple", frozenset({"sliced", "cold"})).describe() == "holding a sliced cold apple"


# -- sub-goals from plans -----------------------------------------------------------------------------
def replay_subgoals(w: World, plan: list[tuple[str, str]]) -> None:
    """Each sub-goal must hold right after its sub-task (and not before the first)."""
    subgoals = subgoals_from_plan(plan)
    assert len(subgoals) == sum(v != "GotoLocation" for v, _ in plan)
    assert not all(c.holds(w) for c in subgoals[0])
    k = 0
    for verb, arg in plan:
        assert w.step(verb, arg) is None, (verb, arg)
        if verb != "GotoLocation":
            unmet = [c.describe() for c in subgoals[k] if not c.holds(w)]
            assert not unmet, f"after sub-task {k + 1} ({verb} {arg}): {unmet}"
            k += 1


def test_subgoals_pick_two() -> None:
    plan = [
        ("GotoLocation", "CounterTop"),
        ("PickupObject", "Apple"),
        ("GotoLocation", "Fridge"),
        ("PutObject", "Fridge"),
        ("GotoLocation", "CounterTop"),
        ("PickupObject", "Apple"),
        ("GotoLocation", "Fridge"),
        ("PutObject", "Fridge"),
    ]
    g = subgoals_from_plan(plan)
    assert g == [
        (Holding("Apple"),),
        (InReceptacle("Apple", "Fridge"),),
        (InReceptacle("Apple", "Fridge"), Holding("Apple")),
        (InReceptacle("Apple", "Fridge", count=2),),
    ]
    replay_subgoals(world(("Apple|1", "Apple", "CounterTop|1"), ("Apple|2", "Apple", "CounterTop|1")), plan)


def test_subgoals_movable_recep() -> None:
    plan = [
        ("GotoLocation", "CounterTop"),
        ("PickupObject", "Apple"),
        ("PutObject", "Bowl"),
        ("PickupObject", "Bowl"),
        ("GotoLocation", "DiningTable"),
        ("PutObject", "DiningTable"),
    ]
    g = subgoals_from_plan(plan)
    assert g[1] == (InReceptacle("Apple", "Bowl"),)
    assert g[2] == (InReceptacle("Apple", "Bowl"), Holding("Bowl"))  # the bowl picked up is the one used
    assert set(g[3]) == {
        InReceptacle("Apple", "Bowl", within="DiningTable"),
        InReceptacle("Bowl", "DiningTable"),
    }
    final = goal_for_task_type("pick_and_place_with_movable_recep", "Apple", "DiningTable", mrecep="Bowl")
    w = world(("Apple|1", "Apple", "CounterTop|1"), ("Bowl|1", "Bowl", "CounterTop|1"))
    replay_subgoals(w, plan)
    assert all(c.holds(w) for c in final)


def test_subgoals_sliced_heat() -> None:
    plan = [
        ("GotoLocation", "CounterTop"),
        ("PickupObject", "Knife"),
        ("SliceObject", "Apple"),
        ("PutObject", "CounterTop"),
        ("PickupObject", "Apple"),
        ("GotoLocation", "Microwave"),
        ("HeatObject", "Apple"),
        ("GotoLocation", "Fridge"),
        ("PutObject", "Fridge"),
    ]
    g = subgoals_from_plan(plan)
    assert g[0] == (Holding("Knife"),)
    assert g[1] == (Sliced("Apple"), Holding("Knife"))
    assert g[3] == (
        Sliced("Apple"),
        InReceptacle("Knife", "CounterTop"),
        Holding("Apple", frozenset({"sliced"})),
    )
    assert g[4][-1] == Holding("Apple", frozenset({"sliced", "hot"}))
    assert set(g[5]) == {
        Sliced("Apple"),
        InReceptacle("Knife", "CounterTop"),
        InReceptacle("Apple", "Fridge", frozenset({"sliced", "hot"})),
    }
    final = goal_for_task_type("pick_heat_then_place_in_recep", "Apple", "Fridge", sliced=True)
    w = world(("Apple|1", "Apple", "CounterTop|1"), ("Knife|1", "Knife", "CounterTop|1"))
    replay_subgoals(w, plan)
    assert all(c.holds(w) for c in final)


def test_subgoals_lamp_and_keys() -> None:
    plan = [
        ("GotoLocation", "Bed"),
        ("PickupObject", "Book", "Book|1"),
        ("GotoLocation", "Desk"),
        ("ToggleObject", "DeskLamp"),
    ]
    g = subgoals_from_plan(plan)
    assert g == [(Holding("Book"),), (Holding("Book"), LampOn("DeskLamp"))]
    # the same key is the same object: picking it up again does not add a second one
    keyed = [
        ("PickupObject", "Apple", "A1"),
        ("PutObject", "Fridge"),
        ("PickupObject", "Apple", "A1"),
        ("PutObject", "CounterTop"),
    ]
    assert subgoals_from_plan(keyed)[-1] == (InReceptacle("Apple", "CounterTop"),)
    unkeyed = [s[:2] for s in keyed]
    assert set(subgoals_from_plan(unkeyed)[-1]) == {
        InReceptacle("Apple", "Fridge"),
        InReceptacle("Apple", "CounterTop"),
    }


def test_subgoals_unknown_verb() -> None:
    with pytest.raises(ValueError, match="OpenObject"):
        subgoals_from_plan([("PickupObject", "Apple"), ("OpenObject", "Fridge")])


def test_task_summary() -> None:
    goal = goal_for_task_type("pick_and_place_simple", "Apple", "Fridge")
    w = world(("Apple|1", "Apple", "CounterTop|1"))
    spec = TaskSpec(
        "trial_X",
        "pick_and_place_simple",
        2,
        ("Put an apple in the fridge.",),
        goal,
        (goal, goal),
        w.scene,
        prefix=None,
    )
    s = spec.summary()
    assert s["task_id"] == "trial_X" and s["n_subtasks"] == 2 and s["prefix_of"] is None
    assert s["instruction"] == "Put an apple in the fridge." and s["goal"] == ["a apple in a fridge"]
    p = TaskSpec("trial_X", "pick_and_place_simple", 1, ("a",), goal, (goal,), w.scene, prefix=1)
    assert p.key == "trial_X@1" and p.summary("other")["prefix_of"] == "trial_X"
    assert p.summary("other")["instruction"] == "other"

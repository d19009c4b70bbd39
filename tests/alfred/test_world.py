"""World semantics: every verb's preconditions and effects on small hand-built rooms.

Each test builds the smallest room that exercises one rule. Invalid actions are checked for three
things: a message naming the action, no exception, and an unchanged state (view, parents, flags, hand).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rgvlm_gym.alfred.ontology import load_ontology
from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
from rgvlm_gym.alfred.world import N_SLICES, NEAR_RADIUS, VERBS, World

ONTO = load_ontology()


def make_world(recs: list[tuple], objs: list[tuple], room: str = "kitchen") -> World:
    """``recs``: (id, type[, position[, is_open]]); ``objs``: (id, type, parent[, flags])."""
    rspecs = tuple(ReceptacleSpec(*r) for r in recs)
    ospecs = tuple(
        ObjectSpec(o[0], o[1], o[2], None, frozenset(o[3]) if len(o) > 3 else frozenset()) for o in objs
    )
    return World(SceneSpec("test", room, rspecs, ospecs))


def kitchen() -> World:
    """A counter with a sink beside it (within reach), a far fridge and microwave, two drawers."""
    return make_world(
        [
            ("CounterTop|1", "CounterTop", (0.0, 0.9, 0.0)),
            ("SinkBasin|1", "SinkBasin", (0.6, 0.8, 0.0)),
            ("Fridge|1", "Fridge", (5.0, 0.0, 5.0), False),
            ("Microwave|1", "Microwave", (-5.0, 1.0, 5.0)),
            ("Drawer|1", "Drawer", (3.0, 0.5, -3.0)),
            ("Drawer|2", "Drawer", (3.0, 0.5, -2.0)),
            ("Floor", "Floor", (0.0, 0.0, 0.0)),
        ],
        [
            ("Apple|1", "Apple", "CounterTop|1"),
            ("Apple|2", "Apple", "CounterTop|1"),
            ("Knife|1", "Knife", "CounterTop|1"),
            ("Bowl|1", "Bowl", "CounterTop|1"),
            ("Candle|1", "Candle", "CounterTop|1"),
            ("Candle|2", "Candle", "CounterTop|1"),
            ("Potato|1", "Potato", "Fridge|1"),
            ("SoapBar|1", "SoapBar", "Drawer|2"),
            ("Laptop|1", "Laptop", "CounterTop|1"),
        ],
    )


def bedroom() -> World:
    return make_world(
        [("Desk|1", "Desk", (0.0, 0.7, 0.0)), ("Bed|1", "Bed", (4.0, 0.5, 4.0))],
        [("DeskLamp|1", "DeskLamp", "Desk|1"), ("Book|1", "Book", "Bed|1")],
        room="bedroom",
    )


def ok(w: World, verb: str, arg: str) -> None:
    err = w.step(verb, arg)
    assert err is None, f"{verb} {arg}: {err}"


def snapshot(w: World) -> tuple:
    return (
        w.view_key(),
        dict(w.parent),
        {k: list(v) for k, v in w.children.items()},
        {k: frozenset(v) for k, v in w.flags.items()},
        dict(w.obj_type),
        w.held,
        w.location,
        dict(w.focus),
        dict(w.last_put),
        frozenset(w.moved),
    )


def fails(w: World, verb: str, arg: str, *words: str) -> str:
    """The action fails, names itself and the given words, and changes nothing."""
    before = snapshot(w)
    err = w.step(verb, arg)
    assert isinstance(err, str) and err, f"{verb} {arg} should have failed"
    assert err.startswith(f"{verb} {arg.lower()}"), err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert snapshot(w) == before, f"{verb} {arg} changed the state"
    return err


# -- GotoLocation -------------------------------------------------------------------------------------
def test_goto_receptacle_type_faces_the_first_of_that_type() -> None:
    w = kitchen()
    assert w.location is None and w.places() == []
    ok(w, "GotoLocation", "Drawer")
    assert w.location == "Drawer"
    assert w.places()[:2] == ["Drawer|1", "Drawer|2"]  # every drawer of the room is one place
    assert "SoapBar|1" in w.visible()


def test_goto_object_walks_to_its_receptacle_and_faces_it() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "SoapBar")
    assert w.location == "Drawer"
    assert w.focus["Drawer"] == "Drawer|2"
    assert w.places()[0] == "Drawer|2"


def test_goto_object_in_a_movable_receptacle_goes_to_the_fixed_one() -> None:
    w = make_world(
        [("CounterTop|1", "CounterTop"), ("DiningTable|1", "DiningTable")],
        [("Bowl|1", "Bowl", "DiningTable|1"), ("Apple|1", "Apple", "Bowl|1")],
    )
    ok(w, "GotoLocation", "Apple")
    assert w.location == "DiningTable"


def test_goto_missing_type_fails() -> None:
    w = kitchen()
    fails(w, "GotoLocation", "Tomato", "no tomato")
    fails(w, "GotoLocation", "Toilet", "no toilet")
    ok(w, "GotoLocation", "CounterTop")
    fails(w, "GotoLocation", "Tomato", "no tomato")  # from a place too


def test_goto_the_only_object_of_a_type_while_holding_it_fails() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Laptop")
    fails(w, "GotoLocation", "Laptop", "holding")


# -- PickupObject -------------------------------------------------------------------------------------
def test_pickup_takes_an_object_here() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    assert w.held == "Apple|1"
    assert w.parent["Apple|1"] is None
    assert "Apple|1" not in w.children["CounterTop|1"]
    assert "Apple|1" not in w.visible()


def test_pickup_with_full_hands_fails() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    fails(w, "PickupObject", "Knife", "hands are full", "apple")


def test_pickup_missing_or_elsewhere_fails() -> None:
    w = kitchen()
    fails(w, "PickupObject", "Apple", "no apple", "start")
    ok(w, "GotoLocation", "CounterTop")
    fails(w, "PickupObject", "Potato", "no potato", "countertop")  # it is in the fridge
    fails(w, "PickupObject", "Tomato", "no tomato")  # none in the room


def test_pickup_not_pickupable_fails() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    fails(w, "PickupObject", "CounterTop", "cannot be picked up")
    fails(w, "PickupObject", "Unicorn", "cannot be picked up")


def test_pickup_from_inside_a_closed_receptacle() -> None:
    w = kitchen()
    assert not next(r for r in w.scene.receptacles if r.id == "Fridge|1").is_open
    ok(w, "GotoLocation", "Fridge")
    ok(w, "PickupObject", "Potato")
    assert w.held == "Potato|1"


def test_pickup_prefers_a_slice_after_slicing() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Knife")
    ok(w, "SliceObject", "Apple")
    ok(w, "PutObject", "CounterTop")
    ok(w, "PickupObject", "Apple")  # Apple|2 is still whole and here; a slice comes first
    assert w.held is not None
    assert "sliced" in w.flags[w.held]
    assert w.held.startswith("Apple|1|AppleSliced_")


def test_pickup_a_movable_receptacle_takes_its_contents() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    ok(w, "PutObject", "Bowl")
    ok(w, "PickupObject", "Bowl")
    assert w.held == "Bowl|1"
    assert w.parent["Apple|1"] == "Bowl|1"
    assert w.fixed_ancestor("Apple|1") is None  # travels with the bowl
    ok(w, "GotoLocation", "Fridge")
    ok(w, "PutObject", "Fridge")
    assert w.fixed_ancestor("Apple|1") == "Fridge|1"


# -- PutObject ----------------------------------------------------------------------------------------
def test_put_into_the_receptacle_here() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    ok(w, "GotoLocation", "Fridge")
    ok(w, "PutObject", "Fridge")
    assert w.held is None
    assert w.parent["Apple|1"] == "Fridge|1"
    assert "Apple|1" in w.children["Fridge|1"]
    assert "Apple|1" in w.moved


def test_put_with_nothing_held_fails() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    fails(w, "PutObject", "CounterTop", "not holding anything")


def test_put_what_does_not_fit_fails() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Laptop")
    ok(w, "GotoLocation", "Microwave")
    fails(w, "PutObject", "Microwave", "laptop", "does not go in")
    fails(w, "PutObject", "Unicorn", "does not go in")


def test_put_into_a_receptacle_that_is_not_here_fails() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    fails(w, "PutObject", "Fridge", "no fridge here", "countertop")  # 7 m away
    fails(w, "PutObject", "Plate", "no plate here")  # no plate in the room at all
    w2 = kitchen()
    ok(w2, "GotoLocation", "CounterTop")
    ok(w2, "PickupObject", "Apple")
    ok(w2, "GotoLocation", "Drawer")
    fails(w2, "PutObject", "Bowl", "no bowl here")  # the bowl is on the counter


def test_put_into_a_movable_receptacle_here() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    ok(w, "PutObject", "Bowl")
    assert w.parent["Apple|1"] == "Bowl|1"
    assert w.fixed_ancestor("Apple|1") == "CounterTop|1"


def test_put_into_a_neighbour_within_reach() -> None:
    w = kitchen()
    assert "SinkBasin|1" in w.near["CounterTop|1"]  # 0.6 m apart
    assert NEAR_RADIUS >= 0.6
    assert "Fridge|1" not in w.near["CounterTop|1"]
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    ok(w, "PutObject", "SinkBasin")
    assert w.parent["Apple|1"] == "SinkBasin|1"
    assert w.location == "CounterTop"


def test_neighbours_beyond_near_radius_are_out_of_reach() -> None:
    w = make_world(
        [
            ("CounterTop|1", "CounterTop", (0.0, 0.9, 0.0)),
            ("SinkBasin|1", "SinkBasin", (NEAR_RADIUS + 0.05, 0.8, 0.0)),
        ],
        [("Apple|1", "Apple", "CounterTop|1")],
    )
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    fails(w, "PutObject", "SinkBasin", "no sinkbasin here")


def test_second_put_goes_into_the_same_receptacle_as_the_first() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Candle")
    ok(w, "GotoLocation", "Drawer")
    ok(w, "PutObject", "Drawer")
    first = w.parent["Candle|1"]
    assert first == "Drawer|1"
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Candle")
    assert w.held == "Candle|2"
    ok(w, "GotoLocation", "SoapBar")  # now facing the other drawer
    assert w.focus["Drawer"] == "Drawer|2"
    ok(w, "PutObject", "Drawer")
    assert w.parent["Candle|2"] == first


# -- SliceObject --------------------------------------------------------------------------------------
def test_slice_needs_a_knife_in_hand() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    fails(w, "SliceObject", "Apple", "knife")
    ok(w, "PickupObject", "Candle")
    fails(w, "SliceObject", "Apple", "knife")


def test_slice_something_not_sliceable_or_not_here_fails() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Knife")
    fails(w, "SliceObject", "Laptop", "cannot be sliced")
    fails(w, "SliceObject", "Potato", "no whole potato here")  # in the fridge


@pytest.mark.parametrize("tool", ["Knife", "ButterKnife"])
def test_slice_makes_n_slices_in_place(tool: str) -> None:
    w = make_world(
        [("CounterTop|1", "CounterTop")],
        [("Bread|1", "Bread", "CounterTop|1", {"hot"}), (f"{tool}|1", tool, "CounterTop|1")],
    )
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", tool)
    ok(w, "SliceObject", "Bread")
    slices = w.instances("Bread")
    assert len(slices) == N_SLICES
    assert "Bread|1" not in w.obj_type and "Bread|1" not in w.parent
    for s in slices:
        assert w.flags[s] == {"sliced", "hot"}  # keeps its state
        assert w.parent[s] == "CounterTop|1"
    assert w.held == f"{tool}|1"
    fails(w, "SliceObject", "Bread", "no whole bread")


# -- Heat / Cool / Clean ------------------------------------------------------------------------------
APPLIANCE = [
    ("HeatObject", "Microwave", "hot"),
    ("CoolObject", "Fridge", "cold"),
    ("CleanObject", "SinkBasin", "clean"),
]


@pytest.mark.parametrize(("verb", "appliance", "flag"), APPLIANCE)
def test_appliance_needs_the_object_in_hand(verb: str, appliance: str, flag: str) -> None:
    w = kitchen()
    ok(w, "GotoLocation", appliance)
    fails(w, verb, "Apple", "must hold", "nothing")
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Knife")
    ok(w, "GotoLocation", appliance)
    fails(w, verb, "Apple", "must hold", "knife")


@pytest.mark.parametrize(("verb", "appliance", "flag"), APPLIANCE)
def test_appliance_needs_the_right_appliance(verb: str, appliance: str, flag: str) -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    ok(w, "GotoLocation", "Drawer")
    fails(w, verb, "Apple", f"go to a {appliance.lower()}")
    wrong = next(a for _, a, _ in APPLIANCE if a != appliance and a != "SinkBasin")
    ok(w, "GotoLocation", wrong)
    fails(w, verb, "Apple", f"go to a {appliance.lower()}")
    ok(w, "GotoLocation", appliance)
    ok(w, verb, "Apple")
    assert flag in w.flags["Apple|1"]
    assert w.held == "Apple|1"  # still in hand


@pytest.mark.parametrize(
    ("verb", "word"), [("HeatObject", "heated"), ("CoolObject", "cooled"), ("CleanObject", "cleaned")]
)
def test_appliance_on_an_object_that_does_not_afford_it(verb: str, word: str) -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Laptop")
    fails(w, verb, "Laptop", f"cannot be {word}")


def test_heat_then_cool_swaps_the_flags_and_clean_keeps_them() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    ok(w, "GotoLocation", "Microwave")
    ok(w, "HeatObject", "Apple")
    assert w.flags["Apple|1"] == {"hot"}
    ok(w, "GotoLocation", "Fridge")
    ok(w, "CoolObject", "Apple")
    assert w.flags["Apple|1"] == {"cold"}
    ok(w, "GotoLocation", "SinkBasin")
    ok(w, "CleanObject", "Apple")
    assert w.flags["Apple|1"] == {"cold", "clean"}
    ok(w, "GotoLocation", "Microwave")
    ok(w, "HeatObject", "Apple")
    assert w.flags["Apple|1"] == {"hot", "clean"}


def test_clean_at_a_sink_within_reach_of_the_counter() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Apple")
    ok(w, "CleanObject", "Apple")  # the sink basin is beside the counter
    assert "clean" in w.flags["Apple|1"]


# -- ToggleObject -------------------------------------------------------------------------------------
def test_toggle_lamp_on_and_off() -> None:
    w = bedroom()
    ok(w, "GotoLocation", "Desk")
    ok(w, "ToggleObject", "DeskLamp")
    assert w.flags["DeskLamp|1"] == {"on"}
    ok(w, "ToggleObject", "DeskLamp")
    assert w.flags["DeskLamp|1"] == set()


def test_goto_a_lamp_by_type() -> None:
    w = bedroom()
    ok(w, "GotoLocation", "DeskLamp")
    assert w.location == "Desk"
    ok(w, "ToggleObject", "DeskLamp")


def test_toggle_preconditions() -> None:
    w = bedroom()
    fails(w, "ToggleObject", "DeskLamp", "no desklamp here", "start")
    ok(w, "GotoLocation", "Bed")
    fails(w, "ToggleObject", "DeskLamp", "no desklamp here", "bed")
    fails(w, "ToggleObject", "FloorLamp", "no floorlamp here")
    fails(w, "ToggleObject", "Book", "cannot be switched on")


def test_lamp_that_starts_on_is_switched_off() -> None:
    w = make_world([("Desk|1", "Desk")], [("DeskLamp|1", "DeskLamp", "Desk|1", {"on"})])
    ok(w, "GotoLocation", "Desk")
    ok(w, "ToggleObject", "DeskLamp")
    assert "on" not in w.flags["DeskLamp|1"]


# -- invalid actions in general -----------------------------------------------------------------------
def test_unknown_verb_is_a_message() -> None:
    w = kitchen()
    before = snapshot(w)
    err = w.step("OpenObject", "Fridge")
    assert err is not None and "OpenObject" in err
    assert snapshot(w) == before


def test_every_action_from_several_states_never_raises_and_failures_change_nothing() -> None:
    """Sweep the whole (verb, type) vocabulary, plus unknown types, from states reached on the way."""
    types = sorted(ONTO.all_types) + ["Unicorn", ""]
    script = [
        ("GotoLocation", "CounterTop"),
        ("PickupObject", "Knife"),
        ("SliceObject", "Apple"),
        ("GotoLocation", "Fridge"),
        ("PutObject", "Fridge"),
        ("GotoLocation", "CounterTop"),
        ("PickupObject", "Apple"),
        ("GotoLocation", "Microwave"),
    ]
    w = kitchen()
    n_failed = 0
    for step in [None, *script]:
        if step is not None:
            ok(w, *step)
        for verb, typ in itertools.product(VERBS, types):
            probe = w.copy()
            before = snapshot(probe)
            err = probe.step(verb, typ)  # must not raise
            if err is not None:
                n_failed += 1
                assert verb in err, err
                assert snapshot(probe) == before, f"{verb} {typ}: {err}"
    assert n_failed > 1000


def test_copy_is_independent() -> None:
    w = kitchen()
    ok(w, "GotoLocation", "CounterTop")
    c = w.copy()
    ok(c, "PickupObject", "Knife")
    ok(c, "SliceObject", "Apple")
    assert w.held is None and "Apple|1" in w.obj_type and w.flags["Apple|1"] == set()
    assert "Knife|1" in w.children["CounterTop|1"]


def test_view_key_changes_with_what_the_agent_sees() -> None:
    w = kitchen()
    k0 = w.view_key()
    ok(w, "GotoLocation", "CounterTop")
    k1 = w.view_key()
    ok(w, "PickupObject", "Apple")
    k2 = w.view_key()
    ok(w, "GotoLocation", "Microwave")
    ok(w, "HeatObject", "Apple")
    k3 = w.view_key()
    assert len({k0, k1, k2, k3}) == 4
    assert kitchen().view_key() == k0


def test_unknown_parent_in_scene_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Apple\\|1.*Nowhere\\|1"):
        make_world([("CounterTop|1", "CounterTop")], [("Apple|1", "Apple", "Nowhere|1")])


def test_random_walks_keep_the_tree_consistent() -> None:
    """Random valid and invalid actions: every object is in exactly one place (or in hand)."""
    from rgvlm_gym.envs.alfred_lite import action_vocabulary

    vocab = action_vocabulary()
    rng = np.random.default_rng(0)
    n_ok = 0
    for _ in range(5):
        w = kitchen()
        for _ in range(300):
            verb, arg = vocab[int(rng.integers(len(vocab)))]
            n_ok += w.step(verb, arg) is None
            held = [o for o, p in w.parent.items() if p is None]
            assert held == ([w.held] if w.held else [])
            for o, p in w.parent.items():
                if p is not None:
                    assert w.children[p].count(o) == 1
            assert sum(len(v) for v in w.children.values()) == len(w.parent) - len(held)
    assert n_ok > 50  # the walk did change the world


def test_second_put_follows_a_first_put_into_a_neighbour() -> None:
    w = make_world(
        [
            ("Drawer|1", "Drawer", (3.0, 0.5, 3.0)),
            ("CounterTop|1", "CounterTop", (0.0, 0.9, 0.0)),
            ("Drawer|2", "Drawer", (0.5, 0.5, 0.0)),
        ],
        [("Candle|1", "Candle", "CounterTop|1"), ("Candle|2", "Candle", "CounterTop|1")],
    )
    ok(w, "GotoLocation", "CounterTop")
    ok(w, "PickupObject", "Candle")
    ok(w, "PutObject", "Drawer")  # the drawer beside the counter
    assert w.parent["Candle|1"] == "Drawer|2"
    ok(w, "PickupObject", "Candle")
    ok(w, "GotoLocation", "Drawer")
    ok(w, "PutObject", "Drawer")
    assert w.parent["Candle|2"] == "Drawer|2"

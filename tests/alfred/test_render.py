"""Tests of the egocentric renderer: determinism, state cues, closed receptacles, sizes, text, caching."""

from __future__ import annotations

import numpy as np
import pytest

from rgvlm_gym.alfred.ontology import load_ontology
from rgvlm_gym.alfred.render import TEXT_MIN_SIZE, Renderer, render_frame
from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
from rgvlm_gym.alfred.world import World


def kitchen(
    apple_flags: frozenset[str] = frozenset(), fridge_potato: bool = True, cabinet_plate: bool = True
) -> World:
    recs = (
        ReceptacleSpec("CounterTop|1", "CounterTop"),
        ReceptacleSpec("CounterTop|2", "CounterTop"),
        ReceptacleSpec("Fridge|1", "Fridge"),
        ReceptacleSpec("Cabinet|1", "Cabinet"),
        ReceptacleSpec("Cabinet|2", "Cabinet", is_open=True),
        ReceptacleSpec("Cabinet|3", "Cabinet"),
        ReceptacleSpec("Microwave|1", "Microwave"),
        ReceptacleSpec("SinkBasin|1", "SinkBasin"),
    )
    objs = [
        ObjectSpec("Apple|1", "Apple", "CounterTop|1", flags=apple_flags),
        ObjectSpec("Bowl|1", "Bowl", "CounterTop|1"),
        ObjectSpec("Egg|1", "Egg", "Bowl|1"),
        ObjectSpec("Knife|1", "Knife", "CounterTop|1"),
        ObjectSpec("Tomato|1", "Tomato", "CounterTop|1"),
        ObjectSpec("Mug|1", "Mug", "CounterTop|2"),
    ]
    if fridge_potato:
        objs.append(ObjectSpec("Potato|1", "Potato", "Fridge|1"))
    if cabinet_plate:
        objs.append(ObjectSpec("Plate|1", "Plate", "Cabinet|2"))
    return World(SceneSpec("test-kitchen", "kitchen", recs, tuple(objs)))


def at(world: World, place: str) -> World:
    assert world.step("GotoLocation", place) is None
    return world


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a != b).any())


SIZES = (64, 224)


def test_same_state_same_bytes_across_renderers() -> None:
    for size in (32, 64, 224, 300):
        a = Renderer().render(at(kitchen(), "CounterTop"), size)
        b = Renderer().render(at(kitchen(), "CounterTop"), size)
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("size", [32, 64, 100, 128, 224, 300, 512])
def test_shape_and_dtype(size: int) -> None:
    w = at(kitchen(), "CounterTop")
    w.step("PickupObject", "Knife")
    for world in (kitchen(), w):
        frame = Renderer().render(world, size)
        assert frame.shape == (size, size, 3)
        assert frame.dtype == np.uint8


@pytest.mark.parametrize("size", [31, 513, 0, 64.0, True, "64"])
def test_bad_size_is_a_clear_error(size: object) -> None:
    with pytest.raises(ValueError, match="`size`"):
        Renderer().render(kitchen(), size)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", SIZES)
def test_hot_cold_clean_each_look_different(size: int) -> None:
    frames = [
        Renderer().render(at(kitchen(frozenset(f)), "CounterTop"), size)
        for f in ((), {"hot"}, {"cold"}, {"clean"})
    ]
    for i in range(len(frames)):
        for j in range(i + 1, len(frames)):
            assert differ(frames[i], frames[j]), (i, j)


@pytest.mark.parametrize("size", SIZES)
def test_held_vs_not(size: int) -> None:
    r = Renderer()
    w = at(kitchen(), "CounterTop")
    before = r.render(w, size)
    assert w.step("PickupObject", "Knife") is None
    after = r.render(w, size)
    assert differ(before, after)
    # the hand panel (bottom fifth) changed
    assert differ(before[-size // 5 :], after[-size // 5 :])


@pytest.mark.parametrize("size", SIZES)
def test_closed_receptacle_hides_contents(size: int) -> None:
    with_potato = Renderer().render(at(kitchen(fridge_potato=True), "Fridge"), size)
    empty = Renderer().render(at(kitchen(fridge_potato=False), "Fridge"), size)
    assert with_potato.tobytes() == empty.tobytes()


@pytest.mark.parametrize("size", SIZES)
def test_open_receptacle_shows_contents(size: int) -> None:
    def cabinet2(plate: bool) -> np.ndarray:
        w = kitchen(cabinet_plate=plate)
        at(w, "Cabinet").focus["Cabinet"] = "Cabinet|2"
        return Renderer().render(w, size)

    assert differ(cabinet2(True), cabinet2(False))


@pytest.mark.parametrize("size", SIZES)
def test_nested_and_sliced_contents_show(size: int) -> None:
    r = Renderer()
    w = at(kitchen(), "CounterTop")
    whole = r.render(w, size)
    nested = w.copy()
    nested.children["Bowl|1"].remove("Egg|1")
    nested.children["CounterTop|1"].append("Egg|1")
    nested.parent["Egg|1"] = "CounterTop|1"
    assert differ(whole, r.render(nested, size))  # the egg left the bowl
    assert w.step("PickupObject", "Knife") is None
    holding_knife = r.render(w, size)
    assert w.step("SliceObject", "Tomato") is None
    assert differ(holding_knife, r.render(w, size))


@pytest.mark.parametrize("size", SIZES)
def test_lamp_on_off(size: int) -> None:
    def bedroom(on: bool) -> World:
        scene = SceneSpec(
            "test-bedroom",
            "bedroom",
            (ReceptacleSpec("Desk|1", "Desk"), ReceptacleSpec("Bed|1", "Bed")),
            (ObjectSpec("DeskLamp|1", "DeskLamp", "Desk|1", flags=frozenset({"on"} if on else ())),),
        )
        return at(World(scene), "Desk")

    assert differ(Renderer().render(bedroom(True), size), Renderer().render(bedroom(False), size))


def test_text_only_at_large_sizes() -> None:
    """Facing another of three identical closed cabinets changes only text ("1 of 3" -> "2 of 3")."""

    cabinets = tuple(ReceptacleSpec(f"Cabinet|{i}", "Cabinet") for i in (1, 2, 3))
    scene = SceneSpec("cabinets", "kitchen", cabinets, (ObjectSpec("Cup|1", "Cup", "Cabinet|2"),))

    def facing(rid: str, size: int) -> np.ndarray:
        w = at(World(scene), "Cabinet")
        w.focus["Cabinet"] = rid
        return Renderer().render(w, size)

    for size in (32, 64, 100):
        assert size < TEXT_MIN_SIZE
        assert facing("Cabinet|1", size).tobytes() == facing("Cabinet|3", size).tobytes()
    for size in (TEXT_MIN_SIZE, 224, 300):
        assert differ(facing("Cabinet|1", size), facing("Cabinet|3", size))
    # the header band is one flat colour without text, and carries white text with it
    small, large = facing("Cabinet|1", 64), facing("Cabinet|1", 224)
    assert len(np.unique(small[1:3].reshape(-1, 3), axis=0)) == 1
    assert (large[:20].min(axis=-1) > 230).sum() > 20


def test_start_overview_depends_on_room() -> None:
    base = kitchen()
    other = World(SceneSpec("x", "bathroom", base.scene.receptacles, base.scene.objects))
    r = Renderer()
    for size in SIZES:
        assert differ(r.render(base, size), r.render(other, size))


def test_cache_returns_the_same_read_only_array() -> None:
    r = Renderer(cache_size=2)
    w = at(kitchen(), "CounterTop")
    frame = r.render(w, 64)
    assert not frame.flags.writeable
    with pytest.raises(ValueError):
        frame[0, 0, 0] = 1
    assert r.render(w, 64) is frame
    assert r.render(w.copy(), 64) is frame  # same view, same frame
    assert r.render(w, 224) is not frame
    w.step("PickupObject", "Apple")
    r.render(w, 64)
    assert r.render(kitchen(), 64).shape == (64, 64, 3)
    assert len(r._frames.data) == 2  # bounded
    assert render_frame(w, 64) is render_frame(w, 64)


def test_every_object_type_has_its_own_sprite() -> None:
    """At 16 px every pickupable or toggleable type looks different from every other, also unknown types."""
    onto = load_ontology()
    r = Renderer()
    types = sorted(onto.pickupable | onto.toggleable) + ["SomeNewThing", "AnotherNewThing"]
    seen: dict[bytes, str] = {}
    for t in types:
        sp = r.sprite(("obj", t, frozenset(), 0, 16, False))
        key = sp.pm.tobytes()
        assert key not in seen, f"{t} looks like {seen.get(key)}"
        seen[key] = t


def test_crowded_place_renders_at_every_size() -> None:
    """Fifteen cabinets and twenty things on a counter: faced one large, a few others, "+N more"."""
    onto = load_ontology()
    recs = (ReceptacleSpec("CounterTop|1", "CounterTop", (0.0, 0.9, 0.0)),) + tuple(
        ReceptacleSpec(f"Cabinet|{i}", "Cabinet", (0.3 * i, 0.5, 0.0)) for i in range(15)
    )
    things = sorted(t for t in onto.pickupable if onto.fits(t, "CounterTop"))[:20]
    scene = SceneSpec(
        "crowd", "kitchen", recs, tuple(ObjectSpec(f"{t}|1", t, "CounterTop|1") for t in things)
    )
    r = Renderer()
    for place in ("CounterTop", "Cabinet"):
        w = at(World(scene), place)
        for size in (32, 48, 64, 128, 224, 300, 512):
            assert r.render(w, size).shape == (size, size, 3)

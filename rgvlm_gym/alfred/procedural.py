"""Procedural ALFRED-style tasks: the embedded default task source (no data needed).

Holds :data:`ROOMS`, :func:`generate_scene` (a kitchen, living room, bedroom or bathroom from the room
recipes in ``envs/procedural.json``), :func:`generate_task` (one of the seven ALFRED task types, with an
expert plan written like ALFRED's ``high_pddl`` and templated instructions from ``envs/templates.json``),
:func:`generate_prefix_tasks` (its k-sub-task prefixes, as :mod:`rgvlm_gym.alfred.traj` cuts ALFRED tasks)
and :func:`procedural_suite` (a stable, seeded list of tasks balanced over task types).

Every generated task is verified by replaying its plan in a :class:`~rgvlm_gym.alfred.world.World`: each
step must be valid, the state after each sub-task must meet that sub-task's goal, no goal condition may
hold at the start, and the goal must hold at the end. A draft that fails is dropped and the next sub-seed
tried, so ``generate_task(seed)`` is deterministic.

    >>> task = generate_task(4, "pick_heat_then_place_in_recep")
    >>> task.task_id, task.task_type, task.scene.room, task.n_subtasks
    ('proc-000004', 'pick_heat_then_place_in_recep', 'kitchen', 3)
    >>> task.expert_actions
    ('GotoLocation shelf', 'PickupObject cup', 'GotoLocation microwave', 'HeatObject cup', 'GotoLocation countertop', 'PutObject countertop')
    >>> task.instructions[0]
    'Heat a glass and put it on the counter.'
    >>> [c.describe() for c in task.goal]
    ['a cup is hot', 'a hot cup in a countertop']
    >>> generate_prefix_tasks(4, (2, 2), "pick_heat_then_place_in_recep")[0].instructions[0]
    'Go to the shelf. Pick up the glass. Turn around and bring the cup to the microwave oven. Microwave the glass, then remove it.'
"""

from __future__ import annotations

import difflib
import json
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from rgvlm_gym.alfred.ontology import FLOOR, Ontology, data_dir, load_ontology
from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
from rgvlm_gym.alfred.tasks import TASK_TYPES, Condition, TaskSpec, goal_for_task_type, subgoals_from_plan
from rgvlm_gym.alfred.world import World

__all__ = [
    "ROOMS",
    "describe_plan",
    "generate_prefix_tasks",
    "generate_scene",
    "generate_task",
    "procedural_suite",
    "rooms_for_task_type",
]

ROOMS = ("kitchen", "living_room", "bedroom", "bathroom")
_MAX_ATTEMPTS = 64
_N_TASK_VARIANTS = 4  # whole-task instruction variants per task (ALFRED has ~3 annotations)
_N_STEP_VARIANTS = 3  # step-by-step instruction variants per prefix task
_BASE_SUBTASKS = {  # non-navigation steps of each task type's plan; slicing adds 3 (pick knife, slice, put knife)
    "pick_and_place_simple": 2,
    "pick_two_obj_and_place": 4,
    "look_at_obj_in_light": 2,
    "pick_clean_then_place_in_recep": 3,
    "pick_heat_then_place_in_recep": 3,
    "pick_cool_then_place_in_recep": 3,
    "pick_and_place_with_movable_recep": 4,
}
_APPLIANCE_OF = {
    "pick_clean_then_place_in_recep": ("clean", "CleanObject"),
    "pick_heat_then_place_in_recep": ("heat", "HeatObject"),
    "pick_cool_then_place_in_recep": ("cool", "CoolObject"),
}
_FLAG_OF = {"clean": "clean", "heat": "hot", "cool": "cold"}


# --------------------------------------------------------------------------------------------------
# Data files
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Recipe:
    room: str
    receptacles: dict[str, tuple[int, int]]
    weights: dict[str, float]
    objects: dict[str, float]
    lamps: dict[str, float]
    n_objects: tuple[int, int]
    nest_p: float


@dataclass(frozen=True)
class _Config:
    recipes: dict[str, _Recipe]
    task_rooms: dict[str, tuple[str, ...]]
    sliced_p: float
    not_parent: frozenset[str]
    not_parent_two: frozenset[str]
    movable_at_parent_p: float


@cache
def _config() -> _Config:
    raw = json.loads((data_dir() / "procedural.json").read_text())
    onto = load_ontology()
    recipes = {}
    for room, r in raw["rooms"].items():
        allowed = set(onto.rooms[room]["receptacles"])
        recs = {t: (int(v["n"][0]), int(v["n"][1])) for t, v in r["receptacles"].items()}
        unknown = set(recs) - allowed
        assert not unknown, (
            f"procedural.json: room {room} has receptacles {unknown} not in the ontology's room"
        )
        assert set(r["objects"]) <= onto.pickupable, f"procedural.json: room {room} has unknown objects"
        recipes[room] = _Recipe(
            room,
            recs,
            {t: float(v.get("w", 1.0)) for t, v in r["receptacles"].items()},
            {t: float(w) for t, w in r["objects"].items()},
            {t: float(p) for t, p in r.get("lamps", {}).items()},
            (int(r["n_objects"][0]), int(r["n_objects"][1])),
            float(r.get("nest_p", 0.0)),
        )
    return _Config(
        recipes=recipes,
        task_rooms={t: tuple(v) for t, v in raw["task_rooms"].items()},
        sliced_p=float(raw["sliced_p"]),
        not_parent=frozenset(raw["not_parent"]),
        not_parent_two=frozenset(raw["not_parent_two"]),
        movable_at_parent_p=float(raw["movable_at_parent_p"]),
    )


@dataclass(frozen=True)
class _Templates:
    names: dict[str, tuple[str, ...]]
    room_names: dict[str, dict[str, tuple[str, ...]]]
    slice_base: dict[str, str]
    plurals: dict[str, tuple[str, ...]]
    slice_names: tuple[str, ...]
    slice_plurals: tuple[str, ...]
    in_types: frozenset[str]
    adjectives: dict[str, tuple[str, ...]]
    task: dict[str, tuple[tuple[str, frozenset[str]], ...]]
    task_sliced: dict[str, tuple[tuple[str, frozenset[str]], ...]]
    steps: dict[str, tuple[tuple[str, frozenset[str]], ...]]


def _fields(template: str) -> frozenset[str]:
    return frozenset(f for _, f, _, _ in string.Formatter().parse(template) if f)


@cache
def _templates() -> _Templates:
    raw = json.loads((data_dir() / "templates.json").read_text())

    def parsed(d: dict[str, list[str]]) -> dict[str, tuple[tuple[str, frozenset[str]], ...]]:
        return {k: tuple((t, _fields(t)) for t in v) for k, v in d.items()}

    return _Templates(
        names={k: tuple(v) for k, v in raw["names"].items()},
        room_names={r: {k: tuple(v) for k, v in d.items()} for r, d in raw.get("room_names", {}).items()},
        slice_base=dict(raw.get("slice_base", {})),
        plurals={k: tuple(v) for k, v in raw["plurals"].items()},
        slice_names=tuple(raw["slice_names"]),
        slice_plurals=tuple(raw["slice_plurals"]),
        in_types=frozenset(raw["in_types"]),
        adjectives={k: tuple(v) for k, v in raw["adjectives"].items()},
        task=parsed(raw["task"]),
        task_sliced=parsed(raw["task_sliced"]),
        steps=parsed(raw["steps"]),
    )


# --------------------------------------------------------------------------------------------------
# Small seeded helpers (python-level draws on a numpy Generator: fast and reproducible)
# --------------------------------------------------------------------------------------------------
def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.random() * len(seq))]


def _weighted(rng: np.random.Generator, items: Sequence[str], weights: Sequence[float]) -> str:
    total = sum(weights)
    x = rng.random() * total
    for item, w in zip(items, weights, strict=True):
        x -= w
        if x < 0:
            return item
    return items[-1]


def _randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return lo + int(rng.random() * (hi - lo + 1))


def _did_you_mean(value: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_choice(name: str, value: str, options: Sequence[str]) -> None:
    if value not in options:
        raise ValueError(
            f"unknown {name} {value!r}; expected one of {', '.join(options)}.{_did_you_mean(value, options)}"
        )


def rooms_for_task_type(task_type: str) -> tuple[str, ...]:
    """The rooms in which procedural tasks of an ALFRED task type are generated (as in ALFRED's data)."""
    _check_choice("task type", task_type, TASK_TYPES)
    return _config().task_rooms[task_type]


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------
class _SceneBuilder:
    """Receptacles and objects of one room, placed under constraints (which types may not hold which)."""

    def __init__(
        self, rng: np.random.Generator, recipe: _Recipe, onto: Ontology, forbid: frozenset[tuple[str, str]]
    ) -> None:
        self.rng, self.recipe, self.onto, self.forbid = rng, recipe, onto, forbid
        self.receptacles: list[ReceptacleSpec] = []
        self.by_type: dict[str, list[str]] = {}
        self.movables: list[ObjectSpec] = []
        self.objects: list[ObjectSpec] = []
        self.count: dict[str, int] = {}
        self.rec_type: dict[str, str] = {}

    def add_receptacles(self, required: Iterable[str]) -> None:
        need = set(required)
        for t, (lo, hi) in self.recipe.receptacles.items():
            n = max(_randint(self.rng, lo, hi), 1 if t in need else 0)
            for i in range(n):
                rid = FLOOR if t == FLOOR else f"{t}|{i + 1}"
                self.receptacles.append(ReceptacleSpec(rid, t))
                self.by_type.setdefault(t, []).append(rid)
                self.rec_type[rid] = t
        missing = need - set(self.by_type)
        assert not missing, f"room {self.recipe.room} cannot have receptacles {missing}"

    def _new_id(self, typ: str) -> str:
        self.count[typ] = self.count.get(typ, 0) + 1
        return f"{typ}|p{self.count[typ]}"

    def add_lamp(self, lamp: str) -> bool:
        supports = [t for t in self.onto.lamp_supports.get(lamp, ()) if t in self.by_type]
        if not supports or self.count.get(lamp):
            return False
        home = _pick(self.rng, self.by_type[_pick(self.rng, supports)])
        self.objects.append(ObjectSpec(self._new_id(lamp), lamp, home))
        return True

    def _allowed(self, typ: str, recep_type: str) -> bool:
        return self.onto.fits(typ, recep_type) and (typ, recep_type) not in self.forbid

    def place(self, typ: str, only: frozenset[str] | None = None, nest: bool = True) -> str | None:
        """Put a new object of ``typ`` somewhere it fits; return its id (None if nowhere)."""
        if nest and typ not in self.onto.movable_receptacles and self.rng.random() < self.recipe.nest_p:
            hosts = [
                m
                for m in self.movables
                if self._allowed(typ, m.type)
                and (typ, self.rec_type[m.parent]) not in self.forbid
                and (only is None or self.rec_type[m.parent] in only)
            ]
            if hosts:
                host = _pick(self.rng, hosts)
                return self._add(typ, host.id)
        types = [t for t in self.by_type if self._allowed(typ, t) and (only is None or t in only)]
        if not types:
            return None
        t = _weighted(self.rng, types, [self.recipe.weights.get(t, 1.0) for t in types])
        return self._add(typ, _pick(self.rng, self.by_type[t]))

    def _add(self, typ: str, parent: str) -> str:
        spec = ObjectSpec(self._new_id(typ), typ, parent)
        if typ in self.onto.movable_receptacles:
            self.movables.append(spec)
        else:
            self.objects.append(spec)
        return spec.id

    def fill(self, n_total: int) -> None:
        """Add objects drawn from the room's pool until ``n_total`` are placed (at most 4 of a type)."""
        pool = list(self.recipe.objects)
        weights = [self.recipe.objects[t] for t in pool]
        for _ in range(3):
            missing = n_total - self.n_placed()
            if missing <= 0:
                return
            drawn = [_weighted(self.rng, pool, weights) for _ in range(missing)]
            # movable receptacles first, so later objects can be nested in them
            for typ in sorted(drawn, key=lambda t: t not in self.onto.movable_receptacles):
                if self.count.get(typ, 0) < 4:
                    self.place(typ)

    def n_placed(self) -> int:
        return len(self.movables) + sum(o.type not in self.onto.toggleable for o in self.objects)

    def build(self, scene_id: str) -> SceneSpec:
        return SceneSpec(
            scene_id, self.recipe.room, tuple(self.receptacles), tuple(self.movables) + tuple(self.objects)
        )


def generate_scene(
    rng: np.random.Generator,
    room: str,
    *,
    receptacles: Iterable[str] = (),
    lamps: Iterable[str] = (),
    scene_id: str | None = None,
) -> SceneSpec:
    """An ALFRED-style room: the recipe's receptacles (several cabinets, drawers, ...) and 15-40 objects.

    Objects go into receptacles they fit (``Ontology.fits``), some nested in movable receptacles (an egg in
    a bowl); lamps stand on a desk, side table, ... (desk lamps) or on the floor (floor lamps).

    Args:
        rng: the random generator (the scene is a function of its state).
        room: one of :data:`ROOMS`.
        receptacles: receptacle types the room must have (at least one instance each).
        lamps: lamp types the room must have (at most one of each type is placed).
        scene_id: the scene's id (default: drawn from ``rng``).

    Example:
        >>> scene = generate_scene(np.random.default_rng(0), "bedroom", lamps=["DeskLamp"])
        >>> scene.room, 15 <= len(scene.objects) <= 41, "DeskLamp" in {o.type for o in scene.objects}
        ('bedroom', True, True)
    """
    _check_choice("room", room, ROOMS)
    onto = load_ontology()
    recipe = _config().recipes[room]
    sid = scene_id if scene_id is not None else f"proc-{room}-{int(rng.integers(1 << 30)):09d}"
    b = _SceneBuilder(rng, recipe, onto, frozenset())
    lamps = list(lamps)
    need = set(receptacles)
    for lamp in lamps:
        if not any(t in recipe.receptacles for t in onto.lamp_supports.get(lamp, ())):
            raise ValueError(f"room {room!r} has no receptacle a {lamp} can stand on")
        if not any(t in need for t in onto.lamp_supports[lamp]):
            need.add(next(t for t in onto.lamp_supports[lamp] if t in recipe.receptacles))
    b.add_receptacles(need)
    _add_lamps(b, recipe, lamps)
    b.fill(_randint(rng, *recipe.n_objects))
    return b.build(sid)


def _add_lamps(b: _SceneBuilder, recipe: _Recipe, required: Iterable[str]) -> None:
    req = set(required)
    for lamp in sorted(set(recipe.lamps) | req):
        if lamp in req or b.rng.random() < recipe.lamps.get(lamp, 0.0):
            b.add_lamp(lamp)


# --------------------------------------------------------------------------------------------------
# Task parameters
# --------------------------------------------------------------------------------------------------
@dataclass
class _Params:
    task_type: str
    room: str
    obj: str
    parent: str | None = None
    mrecep: str | None = None
    toggle: str | None = None
    sliced: bool = False
    knife: str | None = None

    def pddl(self) -> dict[str, Any]:
        return {
            "object_target": self.obj,
            "parent_target": self.parent or "",
            "mrecep_target": self.mrecep or "",
            "toggle_target": self.toggle or "",
            "object_sliced": self.sliced,
        }


def _can_slice(task_type: str, room: str, onto: Ontology) -> bool:
    if task_type == "look_at_obj_in_light":
        return False
    pool = _config().recipes[room].objects
    return any(t in pool for t in onto.slicing_tools) and any(
        t in pool for t in _sliceable_targets(task_type, onto)
    )


def _sliceable_targets(task_type: str, onto: Ontology) -> frozenset[str]:
    kind = _APPLIANCE_OF.get(task_type, (None,))[0]
    able = {"clean": onto.cleanable, "heat": onto.heatable, "cool": onto.coolable}.get(
        kind or "", onto.pickupable
    )
    return onto.sliceable & able


def _parent_options(p: _Params, onto: Ontology, recipe: _Recipe, holds: Sequence[str]) -> list[str]:
    cfg = _config()
    excluded = set(cfg.not_parent) | set(onto.movable_receptacles)
    if p.task_type == "pick_two_obj_and_place":
        excluded |= cfg.not_parent_two
    if p.task_type in _APPLIANCE_OF:
        excluded.add(onto.appliances[_APPLIANCE_OF[p.task_type][0]])
    return [t for t in recipe.receptacles if t not in excluded and all(onto.fits(h, t) for h in holds)]


def _draw_params(
    rng: np.random.Generator, task_type: str, room: str, sliced: bool | None, onto: Ontology
) -> _Params | None:
    cfg = _config()
    recipe = cfg.recipes[room]
    if sliced is None:
        sliced = _can_slice(task_type, room, onto) and rng.random() < cfg.sliced_p
    pool = [t for t in recipe.objects]
    if task_type in _APPLIANCE_OF:
        kind = _APPLIANCE_OF[task_type][0]
        able = {"clean": onto.cleanable, "heat": onto.heatable, "cool": onto.coolable}[kind]
        pool = [t for t in pool if t in able]
    if sliced:
        pool = [t for t in pool if t in onto.sliceable]
    if task_type == "pick_and_place_with_movable_recep":
        mreceps = [t for t in recipe.objects if t in onto.movable_receptacles]
        pool = [
            t for t in pool if t not in onto.movable_receptacles and any(onto.fits(t, m) for m in mreceps)
        ]
    elif task_type != "look_at_obj_in_light":
        probe = _Params(task_type, room, "")
        pool = [t for t in pool if _parent_options(probe, onto, recipe, [t])]
    if not pool:
        return None
    obj = _weighted(rng, pool, [recipe.objects[t] for t in pool])
    p = _Params(task_type, room, obj, sliced=bool(sliced))
    if sliced:
        knives = [t for t in onto.slicing_tools if t in recipe.objects]
        p.knife = _pick(rng, sorted(knives))
    if task_type == "look_at_obj_in_light":
        lamps = [
            t for t in recipe.lamps if any(s in recipe.receptacles for s in onto.lamp_supports.get(t, ()))
        ]
        if not lamps:
            return None
        p.toggle = _weighted(rng, lamps, [recipe.lamps[t] for t in lamps])
        return p
    holds = [obj]
    if task_type == "pick_and_place_with_movable_recep":
        mreceps = [t for t in recipe.objects if t in onto.movable_receptacles and onto.fits(obj, t)]
        mreceps = [t for t in mreceps if _parent_options(p, onto, recipe, [t])]
        if not mreceps:
            return None
        p.mrecep = _weighted(rng, mreceps, [recipe.objects[t] for t in mreceps])
        holds = [p.mrecep]
    parents = _parent_options(p, onto, recipe, holds)
    if not parents:
        return None
    p.parent = _weighted(rng, parents, [recipe.weights.get(t, 1.0) for t in parents])
    return p


def _scene_for(rng: np.random.Generator, p: _Params, onto: Ontology, scene_id: str) -> SceneSpec | None:
    cfg = _config()
    recipe = cfg.recipes[p.room]
    forbid: set[tuple[str, str]] = set()
    if p.task_type == "pick_and_place_with_movable_recep":
        assert p.mrecep is not None and p.parent is not None
        forbid |= {(p.obj, p.mrecep), (p.mrecep, p.parent)}
    elif p.parent is not None:
        forbid.add((p.obj, p.parent))
    b = _SceneBuilder(rng, recipe, onto, frozenset(forbid))
    need = {t for t in (p.parent,) if t}
    if p.task_type in _APPLIANCE_OF:
        need.add(onto.appliances[_APPLIANCE_OF[p.task_type][0]])
    if p.toggle:
        supports = [t for t in onto.lamp_supports[p.toggle] if t in recipe.receptacles]
        need.add(_pick(rng, supports))
    b.add_receptacles(need)
    _add_lamps(b, recipe, [p.toggle] if p.toggle else [])
    # the task's own objects first: the movable receptacle, the target(s), the knife
    if p.mrecep is not None and b.place(p.mrecep) is None:
        return None
    n_obj = 2 if p.task_type == "pick_two_obj_and_place" and not p.sliced else 1
    for _ in range(n_obj):
        only = None
        at_parent_ok = p.mrecep is not None and p.parent is not None and onto.fits(p.obj, p.parent)
        if at_parent_ok and rng.random() < cfg.movable_at_parent_p:
            assert p.parent is not None
            only = frozenset({p.parent})
        if b.place(p.obj, only=only, nest=p.mrecep is None) is None:
            return None
    if p.knife is not None and b.place(p.knife) is None:
        return None
    b.fill(_randint(rng, *recipe.n_objects))
    return b.build(scene_id)


# --------------------------------------------------------------------------------------------------
# Expert plans, built by acting in a World
# --------------------------------------------------------------------------------------------------
class _PlanFailed(Exception):
    pass


@dataclass
class _Step:
    verb: str
    arg: str
    key: str | None = None
    ctx: dict[str, Any] = field(default_factory=dict)


class _Planner:
    """Writes a plan the way ALFRED's ``high_pddl`` reads, executing each step as it goes."""

    def __init__(self, world: World, rng: np.random.Generator) -> None:
        self.w, self.rng = world, rng
        self.steps: list[_Step] = []

    def _thing(self, oid: str) -> dict[str, Any]:
        w = self.w
        inside = [w.obj_type[c] for c in w.children.get(oid, [])]
        return {"type": w.obj_type[oid], "sliced": "sliced" in w.flags[oid], "contents": inside}

    def do(self, verb: str, arg: str, **ctx: Any) -> None:
        w = self.w
        held_before = self._thing(w.held) if w.held else None
        err = w.step(verb, arg)
        if err is not None:
            raise _PlanFailed(err)
        key = w.held if verb == "PickupObject" else None
        ctx.setdefault("held", held_before if verb != "PickupObject" else None)
        if verb == "PickupObject":
            assert w.held is not None
            ctx["thing"] = self._thing(w.held)
        self.steps.append(_Step(verb, arg, key, ctx))

    def goto(self, place: str, force: bool = False) -> None:
        if force or self.w.location != place:
            self.do("GotoLocation", place, kind="recep")

    def goto_object(self, obj_type: str) -> None:
        self.do("GotoLocation", obj_type, kind="object")
        self.steps[-1].ctx["place"] = self.w.location

    def _source(self, oid: str) -> tuple[str, str]:
        """(place type, direct holder type) of an object not in hand."""
        rid = self.w.fixed_ancestor(oid)
        if rid is None:
            raise _PlanFailed(f"{oid} is not in any receptacle")
        parent = self.w.parent[oid]
        assert parent is not None
        return self.w.rec_type[rid], self.w.type_of(parent)

    def pick(self, obj_type: str, *, avoid: Iterable[str] = (), sliced: bool | None = None) -> None:
        """Go to where an object of the type is (not at ``avoid`` places) and pick it up."""
        w, avoid = self.w, set(avoid)
        cands = [
            o
            for o in w.instances(obj_type)
            if o != w.held
            and w.fixed_ancestor(o) is not None
            and self._source(o)[0] not in avoid
            and (sliced is None or ("sliced" in w.flags[o]) == sliced)
        ]
        if not cands:
            raise _PlanFailed(f"no {obj_type} to pick up")
        if w.location is not None and any(self._source(o)[0] == w.location for o in cands):
            place = w.location  # already there: ALFRED plans pick up without walking
        else:
            place = self._source(_pick(self.rng, cands))[0]
        self.goto(place)
        holder = self._holder_of_next_pick(obj_type)
        self.do("PickupObject", obj_type, place=place, holder=holder)
        got = w.held
        assert got is not None
        if sliced is not None and ("sliced" in w.flags[got]) != sliced:
            raise _PlanFailed(f"picked a {'whole' if sliced else 'sliced'} {obj_type}")

    def _holder_of_next_pick(self, obj_type: str) -> str | None:
        # what the next PickupObject takes it from, to describe the step
        o = self.w.pickup_target(obj_type)
        p = self.w.parent[o] if o is not None else None
        return self.w.type_of(p) if p is not None else None

    def put(self, recep: str, *, walk: bool = True, force: bool = False) -> None:
        if walk and recep in self.w.members:
            self.goto(recep, force)
        elif walk:
            self.goto_object(recep)  # a movable receptacle: walk to where it is
        self.do("PutObject", recep)

    def slice_with_knife(self, p: _Params, onto: Ontology) -> str:
        """Pick up a knife, slice the target, put the knife down; return where the slices are."""
        assert p.knife is not None
        self.pick(p.knife)
        self.goto_object(p.obj)
        self.do("SliceObject", p.obj, place=self.w.location, tool=p.knife)
        at = self.w.location
        assert at is not None
        options = [at, "CounterTop", "DiningTable", "SideTable"]
        if p.parent is not None:
            options.append(p.parent)
        options = [t for t in dict.fromkeys(options) if t in self.w.members and onto.fits(p.knife, t)]
        if not options:
            raise _PlanFailed("nowhere to put the knife")
        self.put(_pick(self.rng, options), force=True)  # ALFRED walks back even when already there
        return at


def _write_plan(p: _Params, w: World, rng: np.random.Generator, onto: Ontology) -> list[_Step]:
    pl = _Planner(w, rng)
    slices_at = pl.slice_with_knife(p, onto) if p.sliced else None
    sl = True if p.sliced else None

    def pick_target(avoid: Iterable[str] = ()) -> None:
        if slices_at is not None and slices_at not in set(avoid):
            pl.goto(slices_at, force=True)
        pl.pick(p.obj, avoid=avoid, sliced=sl)

    t = p.task_type
    if t == "look_at_obj_in_light":
        assert p.toggle is not None
        pick_target()
        pl.goto_object(p.toggle)
        pl.do("ToggleObject", p.toggle)
    elif t == "pick_and_place_with_movable_recep":
        assert p.mrecep is not None and p.parent is not None
        at_parent = [
            o for o in w.instances(p.obj) if w.fixed_ancestor(o) is not None and pl._source(o)[0] == p.parent
        ]
        if at_parent and not p.sliced:
            # carry the receptacle to the target first, then put the object (already there) into it
            pl.pick(p.mrecep, avoid=[p.parent])
            pl.put(p.parent)
            pl.do("PickupObject", p.obj, place=p.parent, holder=pl._holder_of_next_pick(p.obj))
            pl.put(p.mrecep, walk=False)
        else:
            pick_target()
            pl.put(p.mrecep)
            pl.pick(p.mrecep, avoid=[p.parent])
            pl.put(p.parent)
    else:
        assert p.parent is not None
        pick_target(avoid=[p.parent])
        if t in _APPLIANCE_OF:
            kind, verb = _APPLIANCE_OF[t]
            pl.goto(onto.appliances[kind])
            pl.do(verb, p.obj, appliance=onto.appliances[kind])
        pl.put(p.parent)
        if t == "pick_two_obj_and_place":
            pick_target(avoid=[p.parent])
            pl.put(p.parent)
    return pl.steps


def _verify(
    scene: SceneSpec,
    steps: Sequence[_Step],
    goal: Sequence[Condition],
    subgoals: Sequence[Sequence[Condition]],
    onto: Ontology,
) -> bool:
    w = World(scene, onto)
    if any(c.holds(w) for c in goal):
        return False
    k = 0
    for s in steps:
        if w.step(s.verb, s.arg) is not None:
            return False
        if s.verb != "GotoLocation":
            if not all(c.holds(w) for c in subgoals[k]):
                return False
            k += 1
    return k == len(subgoals) and all(c.holds(w) for c in goal)


# --------------------------------------------------------------------------------------------------
# Instructions
# --------------------------------------------------------------------------------------------------
_AN = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def _finish(s: str) -> str:
    s = _AN.sub(lambda m: m.group(1) + "n ", " ".join(s.split()))
    s = s[0].upper() + s[1:]
    return s if s[-1] in ".!?" else s + "."


def _plural(name: str) -> str:
    head, sep, tail = name.partition(" of ")
    if sep:
        return _plural(head) + sep + tail
    if name.endswith("fe"):
        return name[:-2] + "ves"
    if name.endswith(("s", "x", "ch", "sh")) or name.endswith(("tomato", "potato")):
        return name + "es"
    return name + "s"


class _Namer:
    """Natural names for ALFRED types, drawn per instruction variant."""

    def __init__(self, rng: np.random.Generator, room: str) -> None:
        self.tpl, self.rng = _templates(), rng
        self.names = {**self.tpl.names, **self.tpl.room_names.get(room, {})}

    def name(self, typ: str) -> str:
        names = self.names.get(typ)
        return _pick(self.rng, names) if names else typ.lower()

    def base(self, typ: str) -> str:
        if typ in self.tpl.slice_base:
            return self.tpl.slice_base[typ]
        names = self.names.get(typ)
        return names[0] if names else typ.lower()

    def plural(self, typ: str) -> str:
        if typ in self.tpl.plurals:
            return _pick(self.rng, self.tpl.plurals[typ])
        return _plural(self.name(typ))

    def obj(self, typ: str, sliced: bool = False) -> str:
        if sliced:
            return _pick(self.rng, self.tpl.slice_names).format(obj=self.base(typ))
        return self.name(typ)

    def objs(self, typ: str, sliced: bool = False) -> str:
        if sliced:
            return _pick(self.rng, self.tpl.slice_plurals).format(obj=self.base(typ))
        return self.plural(typ)

    def prep(self, recep_type: str) -> str:
        return "in" if recep_type in self.tpl.in_types else "on"

    def thing(self, t: dict[str, Any]) -> str:
        noun = self.obj(t["type"], t["sliced"])
        if t["contents"] and self.rng.random() < 0.6:
            inner = self.obj(t["contents"][0])
            noun = _pick(
                self.rng,
                [
                    f"{noun} with the {inner}",
                    f"{noun} holding the {inner}",
                    f"{noun} with the {inner} {self.prep(t['type'])} it",
                ],
            )
        return noun


def _fill(
    rng: np.random.Generator, options: Sequence[tuple[str, frozenset[str]]], values: dict[str, str]
) -> str:
    usable = [t for t, f in options if f <= values.keys()]
    assert usable, f"no template fits the values {sorted(values)}"
    return _finish(_pick(rng, usable).format(**values))


def _task_values(p: _Params, nm: _Namer, onto: Ontology) -> dict[str, str]:
    v: dict[str, str] = {
        "obj": nm.obj(p.obj, p.sliced),
        "objs": nm.objs(p.obj, p.sliced),
        "whole": nm.name(p.obj),
    }
    if p.parent:
        v["recep"], v["prep"] = nm.name(p.parent), nm.prep(p.parent)
    if p.mrecep:
        v["mrecep"], v["mprep"] = nm.name(p.mrecep), nm.prep(p.mrecep)
    if p.toggle:
        v["lamp"] = nm.name(p.toggle)
    if p.task_type in _APPLIANCE_OF:
        kind = _APPLIANCE_OF[p.task_type][0]
        v["appliance"] = nm.name(onto.appliances[kind])
        v["adj"] = _pick(nm.rng, nm.tpl.adjectives[_FLAG_OF[kind]])
    return v


def _task_descriptions(p: _Params, rng: np.random.Generator, onto: Ontology, n: int) -> tuple[str, ...]:
    tpl = _templates()
    options = list(tpl.task[p.task_type])
    if p.sliced:
        options += list(tpl.task_sliced.get(p.task_type, ()))
    out: list[str] = []
    order = rng.permutation(len(options))
    for i in order:
        nm = _Namer(rng, p.room)
        out.append(_fill(rng, [options[int(i)]], _task_values(p, nm, onto)))
        if len(dict.fromkeys(out)) >= n:
            break
    return tuple(dict.fromkeys(out))


def _step_description(s: _Step, nm: _Namer, rng: np.random.Generator) -> str:
    tpl = _templates()
    v: dict[str, str] = {}
    held = s.ctx.get("held")
    if held:
        v["held"] = nm.thing(held)
    if s.verb == "GotoLocation":
        if s.ctx.get("kind") == "object":
            v["obj"] = nm.obj(s.arg)
            place = s.ctx.get("place")
            if place:
                v["place"], v["pprep"] = nm.name(place), nm.prep(place)
            return _fill(rng, tpl.steps["GotoObject"], v)
        v["recep"] = nm.name(s.arg)
        return _fill(rng, tpl.steps["GotoLocation"], v)
    if s.verb == "PickupObject":
        thing = s.ctx.get("thing") or {"type": s.arg, "sliced": False, "contents": []}
        v["obj"] = nm.thing(thing)
        holder = s.ctx.get("holder") or s.ctx.get("place")
        if holder:
            v["place"] = nm.name(holder)
            inside = nm.prep(holder) == "in"
            v["from"] = _pick(rng, ["from", "out of"] if inside else ["from", "off"])
        return _fill(rng, tpl.steps["PickupObject"], v)
    if s.verb == "PutObject":
        v["recep"], v["prep"] = nm.name(s.arg), nm.prep(s.arg)
        v.setdefault("held", nm.obj(s.arg))
        return _fill(rng, tpl.steps["PutObject"], v)
    if s.verb == "SliceObject":
        v["obj"] = nm.name(s.arg)
        if s.ctx.get("tool"):
            v["tool"] = nm.name(s.ctx["tool"])
        if s.ctx.get("place"):
            v["place"], v["pprep"] = nm.name(s.ctx["place"]), nm.prep(s.ctx["place"])
        return _fill(rng, tpl.steps["SliceObject"], v)
    if s.verb in ("HeatObject", "CoolObject", "CleanObject"):
        v["obj"] = v.get("held") or nm.obj(s.arg)
        v["appliance"] = nm.name(s.ctx["appliance"])
        return _fill(rng, tpl.steps[s.verb], v)
    if s.verb == "ToggleObject":
        v["lamp"] = nm.name(s.arg)
        return _fill(rng, tpl.steps["ToggleObject"], v)
    raise AssertionError(f"no description for {s.verb}")


def describe_plan(world: World, plan: Sequence[tuple[str, str]], rng: np.random.Generator) -> str:
    """Step-by-step instruction text for ``plan`` carried out from ``world`` (which is not changed).

    The same step templates as procedural tasks' step descriptions, filled from the scene as it is: used
    for prefix tasks in randomized initial states, whose human step text describes the original placements.

        >>> from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
        >>> scene = SceneSpec("demo", "kitchen", (ReceptacleSpec("Microwave|1", "Microwave"),
        ...     ReceptacleSpec("Fridge|1", "Fridge")), (ObjectSpec("Cup|1", "Cup", "Microwave|1"),))
        >>> text = describe_plan(World(scene), [("GotoLocation", "Microwave"), ("PickupObject", "Cup"),
        ...     ("GotoLocation", "Fridge"), ("PutObject", "Fridge")], np.random.default_rng(0))
        >>> "microwave" in text and "fridge" in text.lower()
        True

    Raises:
        ValueError: if an action of the plan fails from that state.
    """
    w = world.copy()
    nm = _Namer(rng, world.scene.room)

    def thing(oid: str) -> dict[str, Any]:
        return {"type": w.obj_type[oid], "sliced": "sliced" in w.flags[oid], "contents": [w.obj_type[c] for c in w.children.get(oid, [])]}

    out = []
    for verb, arg in plan:
        ctx: dict[str, Any] = {"held": thing(w.held) if w.held is not None and verb != "PickupObject" else None}
        if verb == "GotoLocation":
            ctx["kind"] = "recep" if arg in w.members else "object"
        elif verb == "PickupObject":
            target = w.pickup_target(arg)
            parent = w.parent.get(target) if target is not None else None
            ctx["holder"] = w.type_of(parent) if parent is not None else None
            ctx["place"] = w.location
        elif verb == "SliceObject":
            ctx["place"] = w.location
            ctx["tool"] = w.obj_type[w.held] if w.held is not None else None
        elif verb in _APPLIANCE_VERB_KIND:
            ctx["appliance"] = w.onto.appliances[_APPLIANCE_VERB_KIND[verb]]
        err = w.step(verb, arg)
        if err is not None:
            raise ValueError(f"describe_plan: {err}")
        if verb == "GotoLocation" and ctx["kind"] == "object":
            ctx["place"] = w.location
        if verb == "PickupObject":
            ctx["thing"] = thing(w.held)  # type: ignore[arg-type]
        out.append(_step_description(_Step(verb, arg, None, ctx), nm, rng))
    return " ".join(out)


_APPLIANCE_VERB_KIND = {"HeatObject": "heat", "CoolObject": "cool", "CleanObject": "clean"}


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Draft:
    params: _Params
    scene: SceneSpec
    steps: tuple[_Step, ...]
    goal: tuple[Condition, ...]
    subgoals: tuple[tuple[Condition, ...], ...]
    rng_seed: tuple[int, int]


def _resolve_args(
    task_type: str | None, room: str | None, sliced: bool | None, rng: np.random.Generator
) -> tuple[str, str]:
    cfg = _config()
    onto = load_ontology()
    if task_type is not None:
        _check_choice("task type", task_type, TASK_TYPES)
    if room is not None:
        _check_choice("room", room, ROOMS)
    types = [task_type] if task_type else [t for t in TASK_TYPES if room is None or room in cfg.task_rooms[t]]
    if sliced:
        types = [
            t
            for t in types
            if any(_can_slice(t, r, onto) for r in cfg.task_rooms[t] if room is None or r == room)
        ]
    if not types:
        raise ValueError(_no_task_msg(task_type, room, sliced))
    t = task_type or _pick(rng, types)
    rooms = [
        r for r in cfg.task_rooms[t] if (room is None or r == room) and (not sliced or _can_slice(t, r, onto))
    ]
    if not rooms:
        raise ValueError(_no_task_msg(t, room, sliced))
    return t, room or _pick(rng, rooms)


def _no_task_msg(task_type: str | None, room: str | None, sliced: bool | None) -> str:
    cfg = _config()
    if task_type is not None:
        rooms = cfg.task_rooms[task_type]
        if room is not None and room not in rooms:
            return (
                f"task type {task_type!r} is not generated in room {room!r}; its rooms are {', '.join(rooms)}"
            )
        return (
            f"task type {task_type!r} has no sliced variant"
            + (f" in room {room!r}" if room else "")
            + " (sliced=True)"
        )
    return f"no task type is generated in room {room!r} with sliced={sliced}"


def _draft(seed: int, task_type: str | None, room: str | None, sliced: bool | None) -> _Draft:
    onto = load_ontology()
    for attempt in range(_MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, attempt])
        t, r = _resolve_args(task_type, room, sliced, rng)
        p = _draw_params(rng, t, r, sliced, onto)
        if p is None:
            continue
        scene = _scene_for(rng, p, onto, f"proc-{seed:06d}")
        if scene is None:
            continue
        try:
            steps = _write_plan(p, World(scene, onto), rng, onto)
        except _PlanFailed:
            continue
        goal = goal_for_task_type(
            p.task_type, p.obj, p.parent, sliced=p.sliced, mrecep=p.mrecep, toggle=p.toggle
        )
        plan = [(s.verb, s.arg, s.key) for s in steps]
        subgoals = subgoals_from_plan(plan, onto)
        subgoals[-1] = goal
        if not _verify(scene, steps, goal, subgoals, onto):
            continue
        return _Draft(p, scene, tuple(steps), goal, tuple(subgoals), (seed, attempt))
    raise RuntimeError(
        f"could not generate a solvable task for seed={seed}, task_type={task_type}, room={room}, sliced={sliced}"
    )


def _validate_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def generate_task(
    seed: int, task_type: str | None = None, room: str | None = None, sliced: bool | None = None
) -> TaskSpec:
    """A procedural ALFRED-style task, a pure function of its arguments.

    Args:
        seed: non-negative integer; the task id is ``proc-<seed:06d>``.
        task_type: one of :data:`~rgvlm_gym.alfred.tasks.TASK_TYPES` (default: drawn from the seed).
        room: one of :data:`ROOMS` (default: drawn among the rooms where the task type occurs in ALFRED).
        sliced: force (True) or forbid (False) a sliced variant; default: about a third of the kitchen
            tasks whose object can be sliced.

    Returns:
        A :class:`~rgvlm_gym.alfred.tasks.TaskSpec` whose ``instructions`` are several whole-task phrasings
        and whose ``expert_actions`` solve it (verified by replay).

    Raises:
        ValueError: unknown task type or room, or a combination ALFRED does not have (``look_at_obj_in_light``
            in a kitchen, a sliced task in a bathroom, ...).
    """
    seed = _validate_seed(seed)
    d = _draft(seed, task_type, room, sliced)
    rng = np.random.default_rng([seed, d.rng_seed[1], 1])
    instructions = _task_descriptions(d.params, rng, load_ontology(), _N_TASK_VARIANTS)
    return _task_spec(d, seed, instructions)


def _task_spec(d: _Draft, seed: int, instructions: tuple[str, ...], k: int | None = None) -> TaskSpec:
    n = sum(s.verb != "GotoLocation" for s in d.steps)
    expert = tuple(f"{s.verb} {s.arg.lower()}" for s in d.steps)
    if k is None:
        k_, end = n, len(d.steps) - 1
    else:
        k_ = k
        end = [i for i, s in enumerate(d.steps) if s.verb != "GotoLocation"][k - 1]
    return TaskSpec(
        task_id=f"proc-{seed:06d}",
        task_type=d.params.task_type,
        n_subtasks=k_,
        instructions=instructions,
        goal=d.goal if k_ == n else d.subgoals[k_ - 1],
        subgoals=d.subgoals[:k_],
        scene=d.scene,
        expert_actions=expert[: end + 1],
        source=f"procedural:{seed}",
        params=d.params.pddl(),
        prefix=k_ if k is not None and k_ < n else None,
    )


def _parse_range(subtasks: tuple[int, int] | str) -> tuple[int, int]:
    from rgvlm_gym.alfred.traj import parse_subtask_range

    if isinstance(subtasks, str):
        rng_ = parse_subtask_range(subtasks)
        assert rng_ is not None
        return rng_
    try:
        lo, hi = (int(x) for x in subtasks)
    except (TypeError, ValueError):
        raise ValueError(f"subtasks must be a (low, high) pair like (1, 6), got {subtasks!r}") from None
    if not 1 <= lo <= hi:
        raise ValueError(f"subtasks range must satisfy 1 <= low <= high, got {subtasks!r}")
    return lo, hi


def generate_prefix_tasks(
    seed: int,
    subtasks: tuple[int, int] | str = (1, 6),
    task_type: str | None = None,
    room: str | None = None,
    sliced: bool | None = None,
) -> list[TaskSpec]:
    """The k-sub-task prefixes of ``generate_task(seed, ...)`` for k in the inclusive range.

    Mirrors :func:`rgvlm_gym.alfred.traj.tasks_from_trajectory`: a prefix's instructions are the step
    descriptions (like ALFRED's ``high_descs``) up to its k-th sub-task joined, one variant per simulated
    annotator; its goal is the state after sub-task k; ``prefix=k`` when k is less than the task's length
    (the full-length task has ``prefix=None``). Ranges beyond the task's length are clipped.

    Example:
        >>> [(t.n_subtasks, t.prefix) for t in generate_prefix_tasks(4, (1, 6), "pick_heat_then_place_in_recep")]
        [(1, 1), (2, 2), (3, None)]
    """
    seed = _validate_seed(seed)
    lo, hi = _parse_range(subtasks)
    d = _draft(seed, task_type, room, sliced)
    rng = np.random.default_rng([seed, d.rng_seed[1], 2])
    annotators = []
    for _ in range(_N_STEP_VARIANTS):
        nm = _Namer(rng, d.params.room)
        annotators.append([_step_description(s, nm, rng) for s in d.steps])
    n = sum(s.verb != "GotoLocation" for s in d.steps)
    sub_end = [i for i, s in enumerate(d.steps) if s.verb != "GotoLocation"]
    out = []
    for k in range(max(lo, 1), min(hi, n) + 1):
        end = sub_end[k - 1]
        instr = tuple(dict.fromkeys(" ".join(descs[: end + 1]) for descs in annotators))
        out.append(_task_spec(d, seed, instr, k))
    return out


def _max_subtasks(task_type: str, rooms: Sequence[str]) -> int:
    onto = load_ontology()
    can = any(_can_slice(task_type, r, onto) for r in rooms)
    return _BASE_SUBTASKS[task_type] + (3 if can else 0)


def procedural_suite(
    n_tasks: int,
    seed: int = 0,
    subtasks: tuple[int, int] | str | None = None,
    task_types: Sequence[str] | None = None,
    rooms: Sequence[str] | None = None,
) -> list[TaskSpec]:
    """A stable, seeded list of procedural tasks: task i depends only on (i, seed, subtasks, filters).

    Task i is generated from seed ``seed * 1_000_000 + i``. Without ``subtasks`` the task types cycle
    (i mod the number of types), so any stretch of the suite is balanced over them. With ``subtasks=(lo,
    hi)`` every item is one prefix task: the items cycle over the feasible (k, task type) pairs, so the
    number of sub-tasks k is balanced too (a task type appears for the k its plans can reach; sliced
    variants are used where k needs the longer plan).

    Args:
        n_tasks: number of tasks (>= 1).
        seed: suite seed (>= 0).
        subtasks: None for full tasks, or an inclusive (low, high) range (or ``"1-6"``) of sub-task counts.
        task_types: restrict to these ALFRED task types (default: all seven).
        rooms: restrict to these rooms (default: all four).

    Example:
        >>> [t.task_type for t in procedural_suite(3)]
        ['pick_and_place_simple', 'pick_two_obj_and_place', 'look_at_obj_in_light']
        >>> [t.n_subtasks for t in procedural_suite(4, subtasks=(1, 4), task_types=["pick_heat_then_place_in_recep"])]
        [1, 2, 3, 4]
    """
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, (int, np.integer)) or n_tasks < 1:
        raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}")
    seed = _validate_seed(seed)
    cfg = _config()
    room_list = tuple(rooms) if rooms is not None else ROOMS
    for r in room_list:
        _check_choice("room", r, ROOMS)
    if task_types is not None:
        for t in task_types:
            _check_choice("task type", t, TASK_TYPES)
        types = tuple(dict.fromkeys(task_types))
        for t in types:
            if not set(cfg.task_rooms[t]) & set(room_list):
                raise ValueError(
                    f"task type {t!r} is not generated in rooms {list(room_list)}; its rooms are {', '.join(cfg.task_rooms[t])}"
                )
    else:
        types = tuple(t for t in TASK_TYPES if set(cfg.task_rooms[t]) & set(room_list))
        if not types:
            raise ValueError(f"no task type is generated in rooms {list(room_list)}")

    def rooms_of(t: str) -> list[str]:
        return [r for r in cfg.task_rooms[t] if r in room_list]

    base = seed * 1_000_000
    out: list[TaskSpec] = []
    if subtasks is None:
        for i in range(n_tasks):
            t = types[i % len(types)]
            rs = rooms_of(t)
            room = rs[i // len(types) % len(rs)]
            out.append(generate_task(base + i, t, room))
        return out
    lo, hi = _parse_range(subtasks)
    pairs = [(k, t) for k in range(lo, hi + 1) for t in types if k <= _max_subtasks(t, rooms_of(t))]
    if not pairs:
        longest = max(_max_subtasks(t, rooms_of(t)) for t in types)
        raise ValueError(
            f"subtasks {subtasks!r}: no task type here has that many sub-tasks (at most {longest})"
        )
    for i in range(n_tasks):
        k, t = pairs[i % len(pairs)]
        rs = [r for r in rooms_of(t) if k <= _BASE_SUBTASKS[t] or _can_slice(t, r, load_ontology())]
        room = rs[i // len(pairs) % len(rs)]
        sliced = True if k > _BASE_SUBTASKS[t] else None
        tasks = generate_prefix_tasks(base + i, (k, k), t, room, sliced)
        assert len(tasks) == 1, (k, t, room)
        out.append(tasks[0])
    return out

"""Tasks: goal conditions checked on a :class:`~rgvlm_gym.alfred.world.World`, and task specifications.

Holds the goal-condition types (:class:`Holding`, :class:`InReceptacle`, :class:`Sliced`, :class:`HasFlag`,
:class:`LampOn`), :class:`TaskSpec`, :data:`TASK_TYPES`, :func:`goal_for_task_type` (the ALFRED goal of
each of the seven task types) and :func:`subgoals_from_plan` (the state after each sub-task of a plan,
which defines prefix tasks and sub-task progress).

Goals are type-level, as ALFRED's PDDL goals are: "a hot apple in a fridge" is met by any apple in any
fridge. An object counts as in a receptacle when it is in it directly or inside a movable receptacle
that is (an apple in a bowl on the table is on the table).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rgvlm_gym.alfred.ontology import Ontology, load_ontology
from rgvlm_gym.alfred.scene import SceneSpec
from rgvlm_gym.alfred.world import World

__all__ = [
    "TASK_TYPES",
    "Condition",
    "HasFlag",
    "Holding",
    "InReceptacle",
    "LampOn",
    "Sliced",
    "TaskSpec",
    "condition_from_dict",
    "goal_for_task_type",
    "subgoals_from_plan",
]

TASK_TYPES = (
    "pick_and_place_simple",
    "pick_two_obj_and_place",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_and_place_with_movable_recep",
)
STATE_FLAGS = ("sliced", "hot", "cold", "clean")


def _fl(flags: frozenset[str]) -> str:
    return "".join(f"{f} " for f in STATE_FLAGS if f in flags)


@dataclass(frozen=True)
class Condition:
    """Base class: a predicate on a world state."""

    def holds(self, w: World) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": type(self).__name__}
        for k, v in self.__dict__.items():
            d[k] = sorted(v) if isinstance(v, frozenset) else v
        return d


@dataclass(frozen=True)
class Holding(Condition):
    """The agent holds an object of a type, with at least the given state flags."""

    obj: str
    flags: frozenset[str] = frozenset()

    def holds(self, w: World) -> bool:
        h = w.held
        return h is not None and w.obj_type[h] == self.obj and self.flags <= w.flags[h]

    def describe(self) -> str:
        return f"holding a {_fl(self.flags)}{self.obj.lower()}"


@dataclass(frozen=True)
class InReceptacle(Condition):
    """At least ``count`` objects of a type (with the flags) are in one receptacle of type ``recep``.

    ``within``: that receptacle (a movable one) must itself be in a receptacle of this type.
    """

    obj: str
    recep: str
    flags: frozenset[str] = frozenset()
    count: int = 1
    within: str | None = None

    def holds(self, w: World) -> bool:
        counts: Counter[str] = Counter()
        for o, t in w.obj_type.items():
            if t != self.obj or not self.flags <= w.flags[o]:
                continue
            # direct parent, or the receptacle holding the movable receptacle the object is in
            p = w.parent[o]
            while p is not None:
                if w.type_of(p) == self.recep and (self.within is None or self._within(w, p)):
                    counts[p] += 1
                    break
                if p in w.rec_type:
                    break
                p = w.parent[p]
        return any(c >= self.count for c in counts.values())

    def _within(self, w: World, node: str) -> bool:
        p = w.parent.get(node)
        return p is not None and w.type_of(p) == self.within

    def describe(self) -> str:
        what = f"{self.count} {_fl(self.flags)}{self.obj.lower()}s" if self.count > 1 else f"a {_fl(self.flags)}{self.obj.lower()}"
        where = f"a {self.recep.lower()}" + (f" on/in a {self.within.lower()}" if self.within else "")
        return f"{what} in {where}"


@dataclass(frozen=True)
class Sliced(Condition):
    """Some object of the type has been sliced."""

    obj: str

    def holds(self, w: World) -> bool:
        return any(t == self.obj and "sliced" in w.flags[o] for o, t in w.obj_type.items())

    def describe(self) -> str:
        return f"a {self.obj.lower()} is sliced"


@dataclass(frozen=True)
class HasFlag(Condition):
    """Some object of the type is hot / cold / clean (anywhere)."""

    obj: str
    flag: str

    def holds(self, w: World) -> bool:
        return any(t == self.obj and self.flag in w.flags[o] for o, t in w.obj_type.items())

    def describe(self) -> str:
        return f"a {self.obj.lower()} is {self.flag}"


@dataclass(frozen=True)
class LampOn(Condition):
    """A lamp of the type is on, at the place where the agent stands."""

    lamp: str

    def holds(self, w: World) -> bool:
        return any(w.obj_type[o] == self.lamp and "on" in w.flags[o] for o in w.visible())

    def describe(self) -> str:
        return f"a {self.lamp.lower()} here is on"


_KINDS = {c.__name__: c for c in (Holding, InReceptacle, Sliced, HasFlag, LampOn)}


def condition_from_dict(d: dict[str, Any]) -> Condition:
    d = dict(d)
    cls = _KINDS[d.pop("kind")]
    if "flags" in d:
        d["flags"] = frozenset(d["flags"])
    return cls(**d)


@dataclass(frozen=True)
class TaskSpec:
    """One task: a scene, an instruction (several human or templated variants) and a goal.

    Attributes:
        task_id: ALFRED's ``task_id`` (``trial_T...``) for ALFRED tasks, with ``@k`` for a k-sub-task prefix.
        task_type: one of :data:`TASK_TYPES` (a prefix keeps the type of the task it was cut from).
        n_subtasks: non-navigation steps of the expert plan.
        instructions: instruction variants; ``reset`` picks one by seed.
        goal: conditions that must all hold for success.
        subgoals: the goal after each sub-task (``len == n_subtasks``), for sub-task progress.
        scene: the room and the objects' initial places.
        expert_actions: the reference plan as ``"<Verb> <type>"`` strings (ALFRED's ``high_pddl`` mapped).
        source: where the task came from (a traj_data path, or ``procedural:<seed>``).
        params: the ALFRED ``pddl_params``.
        prefix: k when this task is the first k sub-tasks of a longer one, else None.
    """

    task_id: str
    task_type: str
    n_subtasks: int
    instructions: tuple[str, ...]
    goal: tuple[Condition, ...]
    subgoals: tuple[tuple[Condition, ...], ...]
    scene: SceneSpec
    expert_actions: tuple[str, ...] = ()
    source: str = ""
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    prefix: int | None = None

    @property
    def key(self) -> str:
        """Unique within a suite: ``task_id``, with ``@k`` for a k-sub-task prefix of a longer task."""
        return self.task_id if self.prefix is None else f"{self.task_id}@{self.prefix}"

    def is_success(self, w: World) -> bool:
        return all(c.holds(w) for c in self.goal)

    def goal_conditions_met(self, w: World) -> tuple[int, int]:
        return sum(c.holds(w) for c in self.goal), len(self.goal)

    def summary(self, instruction: str | None = None) -> dict[str, Any]:
        """The ``info["task"]`` dict."""
        return {
            "task_id": self.task_id,
            "task_type": self.task_type,
            "n_subtasks": self.n_subtasks,
            "prefix_of": self.task_id if self.prefix is not None else None,
            "instruction": instruction if instruction is not None else self.instructions[0],
            "scene": self.scene.scene_id,
            "goal": [c.describe() for c in self.goal],
        }


# --------------------------------------------------------------------------------------------------
# ALFRED goals
# --------------------------------------------------------------------------------------------------
def goal_for_task_type(
    task_type: str,
    obj: str,
    recep: str | None = None,
    *,
    sliced: bool = False,
    mrecep: str | None = None,
    toggle: str | None = None,
) -> tuple[Condition, ...]:
    """The goal conditions of an ALFRED task type (its ``pddl_params`` as arguments).

    The conditions are ordered weakest-first; all must hold for success, and the fraction that holds is
    the goal-condition (GC) score.

        >>> [c.describe() for c in goal_for_task_type("pick_heat_then_place_in_recep", "Apple", "Fridge")]
        ['a apple is hot', 'a hot apple in a fridge']
    """
    s = frozenset({"sliced"}) if sliced else frozenset()
    pre: list[Condition] = [Sliced(obj)] if sliced else []
    if task_type == "pick_and_place_simple":
        return (*pre, InReceptacle(obj, _req(recep, task_type), s))
    if task_type == "pick_two_obj_and_place":
        r = _req(recep, task_type)
        return (*pre, InReceptacle(obj, r, s, 1), InReceptacle(obj, r, s, 2))
    if task_type == "look_at_obj_in_light":
        return (*pre, Holding(obj, s), LampOn(_req(toggle, task_type, "toggle_target")))
    for kind, flag in (("clean", "clean"), ("heat", "hot"), ("cool", "cold")):
        if task_type == f"pick_{kind}_then_place_in_recep":
            return (*pre, HasFlag(obj, flag), InReceptacle(obj, _req(recep, task_type), s | {flag}))
    if task_type == "pick_and_place_with_movable_recep":
        m, r = _req(mrecep, task_type, "mrecep_target"), _req(recep, task_type)
        return (*pre, InReceptacle(obj, m, s), InReceptacle(m, r), InReceptacle(obj, m, s, within=r))
    raise ValueError(f"unknown task type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")


def _req(v: str | None, task_type: str, name: str = "parent_target") -> str:
    if not v:
        raise ValueError(f"task type {task_type!r} needs {name}")
    return v


# --------------------------------------------------------------------------------------------------
# Sub-task goals from a plan
# --------------------------------------------------------------------------------------------------
@dataclass
class _Sym:
    type: str
    flags: set[str]
    where: str | None  # None = held, else a receptacle type
    placed: bool = False


def subgoals_from_plan(steps: Sequence[tuple[str, ...]], onto: Ontology | None = None) -> list[tuple[Condition, ...]]:
    """The goal after each sub-task of a high-level plan, navigation ignored.

    ``steps`` are ``(verb, Type)`` or ``(verb, Type, instance_key)``; the key (ALFRED's ``objectId``)
    says which object a pickup takes. Without keys a pickup takes a new object, except a movable
    receptacle, which is taken to be the one used before (a mug something was put in).

    Tracks the plan symbolically: what is held, what was put where, what was sliced, heated, cooled,
    cleaned or switched on. The state after sub-task k, lifted to types, is the goal of the k-sub-task
    prefix: objects put somewhere must be there, the object in hand must be held, with its state.

        >>> g = subgoals_from_plan([("PickupObject", "Knife"), ("SliceObject", "Apple"), ("PutObject", "CounterTop")])
        >>> [[c.describe() for c in step] for step in g]
        [['holding a knife'], ['a apple is sliced', 'holding a knife'], ['a apple is sliced', 'a knife in a countertop']]
    """
    onto = onto or load_ontology()
    things: list[_Sym] = []
    keyed: dict[str, _Sym] = {}
    sliced: list[str] = []
    lamps: list[str] = []
    held: _Sym | None = None
    out: list[tuple[Condition, ...]] = []
    for step in steps:
        verb, arg = step[0], step[1]
        key = step[2] if len(step) > 2 else None
        if verb == "GotoLocation":
            continue
        if verb == "PickupObject":
            if key is not None and key in keyed:
                held = keyed[key]
            elif key is None and arg in onto.movable_receptacles and any(t.type == arg and t.where for t in things):
                held = [t for t in things if t.type == arg and t.where][-1]
            else:
                held = _Sym(arg, {"sliced"} if arg in sliced else set(), None)
                things.append(held)
                if key is not None:
                    keyed[key] = held
            held.where = None
        elif verb == "PutObject":
            if held is not None:
                held.where, held.placed, held = arg, True, None
        elif verb == "SliceObject":
            if arg not in sliced:
                sliced.append(arg)
            for t in things:
                if t.type == arg and t is not held:
                    t.flags.add("sliced")
        elif verb in ("HeatObject", "CoolObject", "CleanObject"):
            if held is not None:
                flag = {"HeatObject": "hot", "CoolObject": "cold", "CleanObject": "clean"}[verb]
                held.flags.add(flag)
                held.flags.discard({"hot": "cold", "cold": "hot"}.get(flag, ""))
        elif verb == "ToggleObject":
            if arg not in lamps:
                lamps.append(arg)
        else:
            raise ValueError(f"unknown plan verb {verb!r}")
        out.append(_lift(things, sliced, lamps, held, onto))
    return out


def _lift(things: list[_Sym], sliced: list[str], lamps: list[str], held: _Sym | None, onto: Ontology) -> tuple[Condition, ...]:
    conds: list[Condition] = [Sliced(t) for t in sliced]
    where_of = {id(t): t.where for t in things}
    groups: Counter[tuple[str, str, frozenset[str], str | None]] = Counter()
    for t in things:
        if not t.placed or t.where is None:
            continue
        # an object in a movable receptacle that was itself placed somewhere: record the nesting
        within = None
        if t.where in onto.movable_receptacles:
            hosts = [h for h in things if h.type == t.where and h.placed]
            if hosts and hosts[-1].where is not None and hosts[-1] is not t:
                within = where_of[id(hosts[-1])]
        groups[(t.type, t.where, frozenset(t.flags), within)] += 1
    for (typ, where, flags, within), n in groups.items():
        conds.append(InReceptacle(typ, where, flags, n, within))
    for lamp in lamps:
        conds.append(LampOn(lamp))
    if held is not None:
        conds.insert(len(conds) - len(lamps), Holding(held.type, frozenset(held.flags)))
    return tuple(conds)


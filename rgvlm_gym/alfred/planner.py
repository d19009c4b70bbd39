"""The expert planner: a high-level action sequence that reaches a goal from any world state.

Holds :func:`expert_plan` and :class:`PlanningError`. The planner works on a copy of the world and
achieves the goal's conditions one at a time, in an order that keeps earlier ones true (slice first, put
things in place, then take what must be held, then switch the lamp on), simulating every action so the
plan it returns is valid by construction; it then checks that every condition holds.

    >>> from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
    >>> from rgvlm_gym.alfred.tasks import goal_for_task_type
    >>> from rgvlm_gym.alfred.world import World
    >>> scene = SceneSpec("demo", "kitchen",
    ...     (ReceptacleSpec("CounterTop|1", "CounterTop"), ReceptacleSpec("Microwave|1", "Microwave"),
    ...      ReceptacleSpec("Fridge|1", "Fridge")),
    ...     (ObjectSpec("Apple|1", "Apple", "CounterTop|1"),))
    >>> expert_plan(World(scene), goal_for_task_type("pick_heat_then_place_in_recep", "Apple", "Fridge"))
    [('GotoLocation', 'CounterTop'), ('PickupObject', 'Apple'), ('GotoLocation', 'Microwave'), ('HeatObject', 'Apple'), ('GotoLocation', 'Fridge'), ('PutObject', 'Fridge')]
"""

from __future__ import annotations

from collections.abc import Sequence

from rgvlm_gym.alfred.ontology import FLOOR
from rgvlm_gym.alfred.tasks import Condition, HasFlag, Holding, InReceptacle, LampOn, Sliced
from rgvlm_gym.alfred.world import World

__all__ = ["PlanningError", "expert_plan"]

Action = tuple[str, str]
_FLAG_VERB = {"hot": ("HeatObject", "heat"), "cold": ("CoolObject", "cool"), "clean": ("CleanObject", "clean")}
# where to set down what is in hand, in order of preference
_STASH = ("CounterTop", "DiningTable", "SideTable", "Desk", "CoffeeTable", "Dresser", "Shelf", "TVStand", "Cart", "Sofa", "Bed",
          "ArmChair", "Cabinet", "Drawer", "SinkBasin", "Fridge", "GarbageCan", "Toilet")


class PlanningError(RuntimeError):
    """The goal cannot be reached from this state (e.g. a needed object or appliance is missing)."""


def _rank(c: Condition) -> int:
    if isinstance(c, Sliced):
        return 0
    if isinstance(c, InReceptacle):
        return 1 if c.within else 2
    if isinstance(c, HasFlag):
        return 3
    if isinstance(c, Holding):
        return 4
    return 5


class _Planner:
    def __init__(self, world: World, max_len: int) -> None:
        self.w = world.copy()
        self.plan: list[Action] = []
        self.max_len = max_len
        self.placed: list[InReceptacle] = []  # conditions met so far: don't take their objects away

    # -- primitives --------------------------------------------------------------------------------
    def do(self, verb: str, arg: str) -> None:
        err = self.w.step(verb, arg)
        if err is not None:
            raise PlanningError(err)
        self.plan.append((verb, arg))
        if len(self.plan) > self.max_len:
            raise PlanningError(f"no plan within {self.max_len} actions")

    def goto_place_of(self, obj: str) -> None:
        """Walk to where an object is (nothing to do if it is in reach already)."""
        if obj in self.w.visible():
            return
        rid = self.w.fixed_ancestor(obj)
        if rid is None:
            raise PlanningError(f"{obj} is not anywhere reachable")
        rtype = self.w.rec_type[rid]
        self.do("GotoLocation", self.w.obj_type[obj] if rtype == FLOOR else rtype)

    def goto_type(self, rtype: str) -> None:
        if self.w.location != rtype:
            if rtype not in self.w.members:
                raise PlanningError(f"this room has no {rtype.lower()}")
            self.do("GotoLocation", rtype)

    def stash(self) -> None:
        """Set down whatever is in hand, here if it fits, else on the nearest usual surface."""
        h = self.w.held
        if h is None:
            return
        htype = self.w.obj_type[h]
        onto = self.w.onto
        here = [self.w.rec_type[r] for r in self.w.places()]
        for rtype in dict.fromkeys(here):
            if rtype != FLOOR and onto.fits(htype, rtype) and self.w.step("PutObject", rtype) is None:
                self.plan.append(("PutObject", rtype))
                return
        for rtype in _STASH + tuple(sorted(self.w.members)):
            if rtype in self.w.members and rtype != FLOOR and onto.fits(htype, rtype):
                self.goto_type(rtype)
                self.do("PutObject", rtype)
                return
        if FLOOR in self.w.members and onto.fits(htype, FLOOR):  # boots and the like: on the floor
            self.do("PutObject", FLOOR)
            return
        raise PlanningError(f"nowhere to set down the {htype.lower()}")

    def pick(self, candidates: list[str]) -> str:
        """Pick up one of the candidate objects (the world decides which of that type you get)."""
        if not candidates:
            raise PlanningError("no object to pick up")
        w = self.w
        obj = min(candidates, key=lambda o: ("sliced" not in w.flags[o], o in w.moved, w.order.get(o, 1 << 30)))
        if w.held is not None:
            self.stash()
        self.goto_place_of(obj)
        self.do("PickupObject", w.obj_type[obj])
        return w.held  # type: ignore[return-value]

    # -- conditions --------------------------------------------------------------------------------
    def sliced(self, obj_type: str) -> None:
        w = self.w
        if any(t == obj_type and "sliced" in w.flags[o] for o, t in w.obj_type.items()):
            return
        tools = w.onto.slicing_tools
        if w.held is None or w.obj_type[w.held] not in tools:
            knives = [o for o, t in w.obj_type.items() if t in tools]
            self.pick(knives)
        whole = [o for o, t in w.obj_type.items() if t == obj_type and o != w.held]
        if not whole:
            raise PlanningError(f"no {obj_type.lower()} to slice")
        target = min(whole, key=lambda o: (o in w.moved, w.order.get(o, 1 << 30)))
        self.goto_place_of(target)
        self.do("SliceObject", obj_type)

    def holding(self, obj_type: str, flags: frozenset[str], avoid: InReceptacle | None = None) -> str:
        w = self.w
        if "sliced" in flags:
            self.sliced(obj_type)
        h = w.held
        ok = h is not None and w.obj_type[h] == obj_type and ("sliced" in w.flags[h]) >= ("sliced" in flags)
        if not ok:
            pool = [o for o, t in w.obj_type.items() if t == obj_type and o != h and ("sliced" not in flags or "sliced" in w.flags[o])]
            # don't take one that already counts where it has to be
            keep = self.placed + ([avoid] if avoid is not None else [])
            pool = [o for o in pool if not any(_counts_for(w, o, c) for c in keep)] or pool
            # prefer one that already has the wanted states
            pool.sort(key=lambda o: -len(flags & w.flags[o]))
            best = [o for o in pool if len(flags & w.flags[o]) == len(flags & w.flags[pool[0]])] if pool else []
            self.pick(best)
        for flag in sorted(flags - {"sliced"}):
            if flag in w.flags[w.held]:  # type: ignore[index]
                continue
            verb, kind = _FLAG_VERB[flag]
            self.goto_type(w.onto.appliances[kind])
            self.do(verb, obj_type)
        return w.held  # type: ignore[return-value]

    def put_in(self, c: InReceptacle) -> None:
        w = self.w
        onto = w.onto
        for _ in range(c.count + 2):
            if c.holds(w):
                return
            if c.within:
                hosts = [o for o, t in w.obj_type.items() if t == c.recep and w.parent.get(o) is not None and w.type_of(w.parent[o]) == c.within]
                if not hosts:
                    if w.held is None or w.obj_type[w.held] != c.recep:
                        self.pick([o for o, t in w.obj_type.items() if t == c.recep])
                    self.goto_type(c.within)
                    self.do("PutObject", c.within)
                    continue
                self.holding(c.obj, c.flags, avoid=c)
                self.goto_type(c.within)
                self.do("PutObject", c.recep)
                continue
            self.holding(c.obj, c.flags, avoid=c)
            if c.recep in onto.movable_receptacles:
                hosts = [o for o, t in w.obj_type.items() if t == c.recep and o != w.held and w.fixed_ancestor(o) is not None]
                if not hosts:
                    raise PlanningError(f"no {c.recep.lower()} to put the {c.obj.lower()} in")
                self.goto_place_of(min(hosts, key=lambda o: w.order.get(o, 1 << 30)))
            else:
                self.goto_type(c.recep)
            self.do("PutObject", c.recep)
        if not c.holds(w):
            raise PlanningError(f"could not make it true that {c.describe()}")

    def lamp_on(self, c: LampOn) -> None:
        w = self.w
        lamps = [o for o, t in w.obj_type.items() if t == c.lamp]
        if not lamps:
            raise PlanningError(f"this room has no {c.lamp.lower()}")
        lamp = min(lamps, key=lambda o: ("on" not in w.flags[o], w.order.get(o, 1 << 30)))
        self.goto_place_of(lamp)
        if not c.holds(w):
            self.do("ToggleObject", c.lamp)

    def achieve(self, c: Condition) -> None:
        if isinstance(c, InReceptacle) and c not in self.placed:
            self.placed.append(c)  # protected from here on (put_in itself avoids its own objects)
        if c.holds(self.w):
            return
        if isinstance(c, Sliced):
            self.sliced(c.obj)
        elif isinstance(c, InReceptacle):
            self.put_in(c)
        elif isinstance(c, HasFlag):
            self.holding(c.obj, frozenset({c.flag}))
        elif isinstance(c, Holding):
            self.holding(c.obj, c.flags)
        elif isinstance(c, LampOn):
            self.lamp_on(c)
        else:  # pragma: no cover - new condition kinds must be taught to the planner
            raise PlanningError(f"the planner does not know how to achieve {type(c).__name__}")


def _counts_for(w: World, obj: str, c: InReceptacle) -> bool:
    p = w.parent.get(obj)
    while p is not None:
        if w.type_of(p) == c.recep:
            return True
        if p in w.rec_type:
            return False
        p = w.parent.get(p)
    return False


def expert_plan(world: World, goal: Sequence[Condition], max_len: int = 60) -> list[Action]:
    """A list of ``(verb, Type)`` actions that reaches every goal condition from the world's state.

    The world itself is not changed. Raises :class:`PlanningError` if the goal cannot be reached.
    """
    planner = _Planner(world, max_len)
    ordered = sorted(goal, key=_rank)
    for _ in range(3):  # a later condition can undo an earlier one; a few passes settle it
        for c in ordered:
            planner.achieve(c)
        if all(c.holds(planner.w) for c in goal):
            return planner.plan
    unmet = [c.describe() for c in goal if not c.holds(planner.w)]
    raise PlanningError(f"plan ends with goal conditions unmet: {', '.join(unmet)}")

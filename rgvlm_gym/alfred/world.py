"""World state and the semantics of ALFRED's high-level actions.

Holds :class:`World`, a mutable, fast, copyable state of one room, and :data:`VERBS`. The world follows
ALFRED's high-level plans (``plan.high_pddl``):

- ``GotoLocation <type>`` walks to the receptacles of a type (every drawer of the room is one place) or to
  the place holding an object of that type. Where several receptacles share the type the agent *faces*
  one of them: the first, the one it last took something from, or the one holding the object it walked
  to; ``PutObject`` uses the one it last put something into, else the faced one (so two candles go
  into the same drawer). Receptacles within arm's reach of the faced one
  (:data:`NEAR_RADIUS`, e.g. the sink beside a counter) can be used from there too, as in ALFRED, whose
  plans often skip the walk between such neighbours.
- ``PickupObject <type>`` takes an object visible at the current place (inside a closed receptacle too:
  ALFRED folds opening and closing into pickup and put). After slicing, what you pick up is a slice.
- ``PutObject <receptacle type>`` puts the held object into a receptacle of that type here (a fixed one,
  or a movable one such as a bowl or a mug), if the object fits there. The floor is in reach everywhere.
- ``SliceObject <type>`` needs a knife or butter knife in hand; the object becomes three slices.
- ``HeatObject`` / ``CoolObject`` / ``CleanObject <type>``: holding that object, at a microwave / fridge /
  sink basin, it becomes hot / cold / clean.
- ``ToggleObject <type>`` switches a lamp here on (or off).

An action whose preconditions fail changes nothing and returns a message saying why; it never raises.
"""

from __future__ import annotations

from collections.abc import Iterator

from rgvlm_gym.alfred.ontology import FLOOR, Ontology, load_ontology
from rgvlm_gym.alfred.scene import SceneSpec

__all__ = ["NEAR_RADIUS", "N_SLICES", "VERBS", "World"]

VERBS = (
    "GotoLocation",
    "PickupObject",
    "PutObject",
    "ToggleObject",
    "SliceObject",
    "HeatObject",
    "CoolObject",
    "CleanObject",
)
N_SLICES = 3
NEAR_RADIUS = 1.0  # metres between receptacle positions for "within reach of the faced receptacle"
_APPLIANCE_FLAG = {"HeatObject": ("heat", "hot", "cold"), "CoolObject": ("cool", "cold", "hot"), "CleanObject": ("clean", "clean", None)}


def _low(t: str) -> str:
    return t.lower()


class World:
    """The mutable state of a room: where each object is, what the agent holds and where it stands.

    Example:
        >>> from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
        >>> scene = SceneSpec("demo", "kitchen",
        ...     (ReceptacleSpec("CounterTop|1", "CounterTop"), ReceptacleSpec("Fridge|1", "Fridge")),
        ...     (ObjectSpec("Apple|1", "Apple", "CounterTop|1"),))
        >>> w = World(scene)
        >>> w.step("PickupObject", "Apple")
        'PickupObject apple: there is no apple here (you are at the start)'
        >>> w.step("GotoLocation", "CounterTop"), w.step("PickupObject", "Apple"), w.held
        (None, None, 'Apple|1')
        >>> w.step("GotoLocation", "Fridge"), w.step("CoolObject", "Apple"), sorted(w.flags["Apple|1"])
        (None, None, ['cold'])
    """

    __slots__ = (
        "onto", "scene", "rec_type", "members", "near", "obj_type", "parent", "children", "flags", "held", "location", "focus", "order", "last_put", "moved",
    )

    def __init__(self, scene: SceneSpec, onto: Ontology | None = None) -> None:
        self.onto = onto or load_ontology()
        self.scene = scene
        self.rec_type: dict[str, str] = {}
        self.members: dict[str, list[str]] = {}
        self.children: dict[str, list[str]] = {}
        for r in scene.receptacles:
            self.rec_type[r.id] = r.type
            self.members.setdefault(r.type, []).append(r.id)
            self.children[r.id] = []
        self.near = _neighbours(scene)
        self.obj_type: dict[str, str] = {}
        self.parent: dict[str, str | None] = {}
        self.flags: dict[str, set[str]] = {}
        self.order: dict[str, int] = {}
        for i, o in enumerate(scene.objects):
            self.obj_type[o.id] = o.type
            self.flags[o.id] = set(o.flags)
            self.order[o.id] = i
            self.children.setdefault(o.id, [])
        for o in scene.objects:
            if o.parent not in self.children:
                raise ValueError(f"scene {scene.scene_id}: object {o.id} is in unknown receptacle {o.parent!r}")
            self.parent[o.id] = o.parent
            self.children[o.parent].append(o.id)
        self.held: str | None = None
        self.location: str | None = None  # a receptacle type: the place the agent stands at
        self.focus: dict[str, str] = {t: ids[0] for t, ids in self.members.items()}
        self.last_put: dict[str, str] = {}
        self.moved: set[str] = set()  # objects the agent has put somewhere

    # -- copying -----------------------------------------------------------------------------------
    def copy(self) -> World:
        w = object.__new__(World)
        w.onto, w.scene, w.rec_type, w.members, w.order, w.near = self.onto, self.scene, self.rec_type, self.members, self.order, self.near
        w.obj_type = dict(self.obj_type)
        w.parent = dict(self.parent)
        w.children = {k: list(v) for k, v in self.children.items()}
        w.flags = {k: set(v) for k, v in self.flags.items()}
        w.held, w.location, w.focus, w.last_put = self.held, self.location, dict(self.focus), dict(self.last_put)
        w.moved = set(self.moved)
        return w

    # -- queries -----------------------------------------------------------------------------------
    def type_of(self, ident: str) -> str:
        return self.obj_type.get(ident) or self.rec_type[ident]

    def fixed_ancestor(self, obj: str) -> str | None:
        """The fixed receptacle an object is (transitively) in; None while held."""
        node: str | None = obj
        while node is not None and node not in self.rec_type:
            node = self.parent.get(node)
        return node

    def subtree(self, node: str) -> Iterator[str]:
        """Objects inside ``node`` (a receptacle or an object), depth first, in a stable order."""
        for child in self.children[node]:
            yield child
            if self.children[child]:
                yield from self.subtree(child)

    def places(self) -> list[str]:
        """Receptacles in reach: the faced one, the others of its type, then its neighbours."""
        if self.location is None:
            return []
        faced = self.focus[self.location]
        out = [faced] + [r for r in self.members[self.location] if r != faced]
        out.extend(r for r in self.near.get(faced, ()) if self.rec_type[r] != self.location)
        return out

    def visible(self) -> list[str]:
        """Objects in reach (the held object excluded), the faced receptacle's first."""
        out: list[str] = []
        for rid in self.places():
            out.extend(self.subtree(rid))
        return out

    def pickup_target(self, obj_type: str) -> str | None:
        """The object ``PickupObject <obj_type>`` would take from here (None: none in reach).

        A slice before a whole one, one you have not put away yourself, this place's receptacles before
        their neighbours, then scene order.
        """
        candidates = [
            (self.rec_type[rid] != self.location, o) for rid in self.places() for o in self.subtree(rid) if self.obj_type[o] == obj_type
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda c: ("sliced" not in self.flags[c[1]], c[1] in self.moved, c[0], self.order.get(c[1], 1 << 30)))[1]

    def instances(self, obj_type: str) -> list[str]:
        return [o for o, t in self.obj_type.items() if t == obj_type]

    def where(self) -> str:
        return f"the {_low(self.location)}" if self.location else "the start"

    # -- admissible actions ------------------------------------------------------------------------
    def admissible(self) -> set[tuple[str, str]]:
        """Every ``(verb, Type)`` that :meth:`step` would carry out from this state (the rest fail).

        It mirrors the preconditions of the action handlers below without trying each action on a copy
        (one pass over what is in reach instead of ~230 copies a step); tests check that the two agree.
        """
        onto = self.onto
        out: set[tuple[str, str]] = {("GotoLocation", t) for t in self.members}
        for o, t in self.obj_type.items():
            if o != self.held and self.fixed_ancestor(o) is not None:
                out.add(("GotoLocation", t))
        seen = self.visible()
        seen_types = {self.obj_type[o] for o in seen}
        if self.held is None:
            out.update(("PickupObject", t) for t in seen_types & onto.pickupable)
        else:
            held_type = self.obj_type[self.held]
            put_here: set[str] = set()
            if FLOOR in self.rec_type:
                put_here.add(FLOOR)
            if self.location is not None:
                put_here.add(self.location)
                put_here.update(self.rec_type[r] for r in self.near.get(self.focus[self.location], ()))
                inside_held = set(self.subtree(self.held))
                put_here.update(self.obj_type[o] for o in seen if o not in inside_held)
            out.update(("PutObject", t) for t in put_here if onto.fits(held_type, t))
            if held_type in onto.slicing_tools:
                whole = {self.obj_type[o] for o in seen if "sliced" not in self.flags[o]}
                out.update(("SliceObject", t) for t in whole & onto.sliceable)
            for verb, (kind, _, _) in _APPLIANCE_FLAG.items():
                able = {"heat": onto.heatable, "cool": onto.coolable, "clean": onto.cleanable}[kind]
                appliance = onto.appliances[kind]
                if held_type in able and (self.location == appliance or self._reaches(appliance)):
                    out.add((verb, held_type))
        out.update(("ToggleObject", t) for t in seen_types & onto.toggleable)
        return out

    # -- actions -----------------------------------------------------------------------------------
    def step(self, verb: str, arg: str) -> str | None:
        """Apply a high-level action; return None on success, else why it failed (state unchanged)."""
        handler = _HANDLERS.get(verb)
        if handler is None:
            return f"unknown action verb {verb!r}"
        return handler(self, arg)

    def _goto(self, target: str) -> str | None:
        if target in self.members:
            self.location = target
            return None
        candidates = [o for o in self.instances(target) if o != self.held and self.fixed_ancestor(o) is not None]
        if not candidates:
            if self.held is not None and self.obj_type[self.held] == target:
                return f"GotoLocation {_low(target)}: you are holding the {_low(target)}"
            return f"GotoLocation {_low(target)}: there is no {_low(target)} in this room"
        # walk to a whole one first (a sliced object is several pieces), then to one you have not put
        # somewhere yourself (you know where those are), then in scene order
        obj = min(candidates, key=lambda o: ("sliced" in self.flags[o], o in self.moved, self.order.get(o, 1 << 30)))
        rid = self.fixed_ancestor(obj)
        assert rid is not None
        self.location = self.rec_type[rid]
        self.focus[self.location] = rid
        return None

    def _pickup(self, target: str) -> str | None:
        name = _low(target)
        if self.held is not None:
            return f"PickupObject {name}: your hands are full (holding a {_low(self.obj_type[self.held])})"
        if target not in self.onto.pickupable:
            return f"PickupObject {name}: a {name} cannot be picked up"
        obj = self.pickup_target(target)
        if obj is None:
            return f"PickupObject {name}: there is no {name} here (you are at {self.where()})"
        home = self.fixed_ancestor(obj)
        if home is not None and self.rec_type[home] == self.location:
            self.focus[self.location] = home  # you face what you took something from
        self.children[self.parent[obj]].remove(obj)  # type: ignore[index]
        self.parent[obj] = None
        self.held = obj
        return None

    def _put(self, target: str) -> str | None:
        name = _low(target)
        if self.held is None:
            return f"PutObject {name}: you are not holding anything"
        held_type = self.obj_type[self.held]
        if not self.onto.fits(held_type, target):
            return f"PutObject {name}: a {_low(held_type)} does not go in a {name}"
        near = [r for r in self.near.get(self.focus[self.location], ()) if self.rec_type[r] == target] if self.location else []
        if target == FLOOR and FLOOR in self.rec_type:
            dest = FLOOR  # the floor is in reach everywhere
        elif self.location == target:
            dest = self.last_put.get(target, self.focus[target])
            self.last_put[target] = dest
        elif near:
            dest = self.last_put[target] if self.last_put.get(target) in near else near[0]
            self.last_put[target] = dest
        else:
            inside_held = set(self.subtree(self.held))
            movable = [o for o in self.visible() if self.obj_type[o] == target and o not in inside_held]
            if not movable:
                return f"PutObject {name}: there is no {name} here (you are at {self.where()})"
            dest = movable[0]
        obj, self.held = self.held, None
        self.moved.add(obj)
        self.parent[obj] = dest
        self.children[dest].append(obj)
        return None

    def _slice(self, target: str) -> str | None:
        name = _low(target)
        if target not in self.onto.sliceable:
            return f"SliceObject {name}: a {name} cannot be sliced"
        if self.held is None or self.obj_type[self.held] not in self.onto.slicing_tools:
            return f"SliceObject {name}: you need a knife in hand to slice"
        whole = [o for o in self.visible() if self.obj_type[o] == target and "sliced" not in self.flags[o]]
        if not whole:
            return f"SliceObject {name}: there is no whole {name} here (you are at {self.where()})"
        obj = whole[0]
        dest = self.parent[obj]
        assert dest is not None
        pos = self.children[dest].index(obj)
        self.children[dest].remove(obj)
        flags = self.flags.pop(obj) | {"sliced"}
        del self.parent[obj], self.obj_type[obj]
        self.children.pop(obj)
        for k in range(N_SLICES):
            sid = f"{obj}|{target}Sliced_{k + 1}"
            self.obj_type[sid] = target
            self.flags[sid] = set(flags)
            self.parent[sid] = dest
            self.children[sid] = []
            self.children[dest].insert(pos + k, sid)
        return None

    def _appliance(self, verb: str, target: str) -> str | None:
        name = _low(target)
        kind, add, remove = _APPLIANCE_FLAG[verb]
        able = {"heat": self.onto.heatable, "cool": self.onto.coolable, "clean": self.onto.cleanable}[kind]
        appliance = self.onto.appliances[kind]
        if target not in able:
            return f"{verb} {name}: a {name} cannot be {'heated' if kind == 'heat' else kind + 'ed'}"
        if self.held is None or self.obj_type[self.held] != target:
            holding = f"a {_low(self.obj_type[self.held])}" if self.held else "nothing"
            return f"{verb} {name}: you must hold the {name} (you hold {holding})"
        if self.location != appliance and not self._reaches(appliance):
            return f"{verb} {name}: go to a {_low(appliance)} first (you are at {self.where()})"
        f = self.flags[self.held]
        f.add(add)
        if remove:
            f.discard(remove)
        return None

    def _toggle(self, target: str) -> str | None:
        name = _low(target)
        if target not in self.onto.toggleable:
            return f"ToggleObject {name}: a {name} cannot be switched on"
        lamps = [o for o in self.visible() if self.obj_type[o] == target]
        if not lamps:
            return f"ToggleObject {name}: there is no {name} here (you are at {self.where()})"
        f = self.flags[lamps[0]]
        f.symmetric_difference_update({"on"})
        return None

    def _reaches(self, rtype: str) -> bool:
        return self.location is not None and any(self.rec_type[r] == rtype for r in self.near.get(self.focus[self.location], ()))

    # -- fingerprints ------------------------------------------------------------------------------
    def view_key(self) -> tuple:
        """Everything the agent sees from where it stands (a cache key for rendering)."""
        held = None
        if self.held is not None:
            held = (self.obj_type[self.held], frozenset(self.flags[self.held]), self._nested_key(self.held))
        if self.location is None:
            return (None, held)
        recs = tuple((rid, self._nested_key(rid)) for rid in self.places())
        return (self.location, self.focus[self.location], recs, held)

    def _nested_key(self, node: str) -> tuple:
        return tuple(
            (self.obj_type[c], frozenset(self.flags[c]), self._nested_key(c) if self.children[c] else ()) for c in self.children[node]
        )


def _neighbours(scene: SceneSpec) -> dict[str, tuple[str, ...]]:
    """For each positioned fixed receptacle, the others within NEAR_RADIUS (horizontally), nearest first."""
    pos = [(r.id, r.position) for r in scene.receptacles if r.position is not None and r.type != "Floor"]
    out: dict[str, tuple[str, ...]] = {}
    for rid, p in pos:
        d = [(((p[0] - q[0]) ** 2 + (p[2] - q[2]) ** 2) ** 0.5, other) for other, q in pos if other != rid]
        out[rid] = tuple(o for dist, o in sorted(d) if dist <= NEAR_RADIUS)
    return out


_HANDLERS = {
    "GotoLocation": World._goto,
    "PickupObject": World._pickup,
    "PutObject": World._put,
    "SliceObject": World._slice,
    "ToggleObject": World._toggle,
    "HeatObject": lambda w, a: w._appliance("HeatObject", a),
    "CoolObject": lambda w, a: w._appliance("CoolObject", a),
    "CleanObject": lambda w, a: w._appliance("CleanObject", a),
}

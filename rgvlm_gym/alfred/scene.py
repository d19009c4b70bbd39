"""Scene specifications: which receptacles a room has and where every object starts.

Holds :class:`ReceptacleSpec`, :class:`ObjectSpec` and :class:`SceneSpec` (frozen, picklable, JSON-able),
and :func:`randomize_scene`, the paper's randomized initial states: movable objects re-placed into
compatible receptacles of the same room, seeded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from rgvlm_gym.alfred.ontology import Ontology, load_ontology

__all__ = ["ObjectSpec", "ReceptacleSpec", "SceneSpec", "randomize_scene"]

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class ReceptacleSpec:
    """A fixed receptacle instance (a counter, a drawer, ..., or the floor)."""

    id: str
    type: str
    position: Vec3 | None = None
    is_open: bool = False


@dataclass(frozen=True)
class ObjectSpec:
    """An object instance and the receptacle (fixed id, or a movable receptacle's object id) holding it."""

    id: str
    type: str
    parent: str
    position: Vec3 | None = None
    flags: frozenset[str] = field(default_factory=frozenset)  # e.g. {"on"} for a lamp that starts on


@dataclass(frozen=True)
class SceneSpec:
    """A room: its fixed receptacles and objects in their initial places."""

    scene_id: str
    room: str
    receptacles: tuple[ReceptacleSpec, ...]
    objects: tuple[ObjectSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for o in d["objects"]:
            o["flags"] = sorted(o["flags"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SceneSpec:
        recs = tuple(
            ReceptacleSpec(r["id"], r["type"], tuple(r["position"]) if r.get("position") else None, r.get("is_open", False))
            for r in d["receptacles"]
        )
        objs = tuple(
            ObjectSpec(
                o["id"], o["type"], o["parent"], tuple(o["position"]) if o.get("position") else None, frozenset(o.get("flags", ()))
            )
            for o in d["objects"]
        )
        return cls(d["scene_id"], d["room"], recs, objs)

    def receptacle_types(self) -> set[str]:
        return {r.type for r in self.receptacles}


def randomize_scene(
    scene: SceneSpec, rng: np.random.Generator, onto: Ontology | None = None, keep: frozenset[str] = frozenset()
) -> SceneSpec:
    """Re-place every pickupable object into a random compatible fixed receptacle of the room.

    Objects inside movable receptacles stay inside them (they travel together), so a nested
    "apple in a bowl" stays nested. Objects in ``keep`` (ids) are left where they are; objects with no
    compatible receptacle in the room also stay. Any scene in which a task was solvable stays solvable:
    only locations change, never which objects exist or what they afford.
    """
    onto = onto or load_ontology()
    fixed = list(scene.receptacles)
    by_id = {r.id: r for r in scene.receptacles}
    objects = []
    for obj in scene.objects:
        movable_here = obj.type in onto.pickupable and obj.parent in by_id and obj.id not in keep
        if not movable_here:
            objects.append(obj)
            continue
        options = [r for r in fixed if onto.fits(obj.type, r.type)]
        if not options:
            objects.append(obj)
            continue
        target = options[int(rng.integers(len(options)))]
        objects.append(replace(obj, parent=target.id, position=None))
    return replace(scene, objects=tuple(objects))

"""The translation layer between rgvlm-gym's ALFRED world and AI2-THOR 2.1.0.

Holds :func:`restore_actions` (a ``traj_data.json`` scene as THOR actions), :func:`interaction_pose`
(where to stand to act on an object), :func:`match_objects` (world ids to THOR object ids) and
:class:`Translator` (the THOR action sequence that carries out one high-level action).

Scene restore follows ALFRED's own (``env/thor_env.py``): ``Initialize`` (grid 0.25 m, camera offset 0.75,
visibility 1.5 m, agent invisible), ``SetObjectToggles`` with the recorded toggles, two
``SetStateOfAllObjects`` (``CanBeDirty``, ``CanBeFilled``) when the scene was recorded dirty and empty,
``SetObjectPoses`` with the recorded poses, then the recorded initial pose (``init_action``, a ``TeleportFull``).

High-level actions become THOR's interaction actions, as ALFRED's expert carried them out:

- ``GotoLocation X``: ``TeleportFull`` to a reachable grid point (``GetReachablePositions``) about a metre
  from the target, facing it, the camera tilted towards it (ALFRED's navigation was a planner over the same
  grid; a teleport reaches the same pose without the walk);
- ``PickupObject`` / ``PutObject``: ``OpenObject`` / ``CloseObject`` around them when the receptacle is
  closed; ``PutObject`` with ``forceAction`` and ``placeStationary`` (ALFRED's settings);
- ``HeatObject``: into the microwave, close, ``ToggleObjectOn``/``Off``, open, take it out, close;
  ``CoolObject``: into the fridge, close, open, take it out, close; ``CleanObject``: into the sink basin,
  faucet on (``CleanObject`` on it if THOR still says dirty), faucet off, take it out;
- ``SliceObject``: ``SliceObject`` (the knife in hand); ``ToggleObject``: ``ToggleObjectOn`` or ``Off``.

Before acting on an object THOR does not report ``visible``, the agent first teleports to an interaction
pose for it. The world decides *which* object an action means (its receptacle in focus, its pickup rule);
:func:`match_objects` pairs world objects with THOR's by type and nearest position.

    >>> restore_actions({"object_poses": [], "object_toggles": [], "dirty_and_empty": False,
    ...                  "init_action": {"action": "TeleportFull", "x": 0.25, "y": 0.9, "z": 1.0, "rotation": 90, "horizon": 30}})[-1]["action"]
    'TeleportFull'
    >>> pose = interaction_pose({"x": 1.0, "y": 0.9, "z": 0.0}, [{"x": 0.0, "y": 0.9, "z": 0.0}, {"x": 3.0, "y": 0.9, "z": 3.0}])
    >>> pose["x"], pose["z"], pose["rotation"]
    (0.0, 0.0, 90.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rgvlm_gym.alfred.ontology import FLOOR, Ontology, load_ontology
from rgvlm_gym.alfred.world import World

__all__ = ["INITIALIZE", "Translator", "interaction_pose", "match_objects", "restore_actions"]

Obj = Mapping[str, Any]
INITIALIZE = {
    "action": "Initialize", "gridSize": 0.25, "cameraY": 0.75, "renderImage": True, "renderDepthImage": False,
    "renderClassImage": False, "renderObjectImage": False, "visibility_distance": 1.5, "makeAgentsVisible": False,
}
CAMERA_ABOVE_AGENT = 0.675  # metres from the agent's position (capsule centre) to its camera: approximate
REACH = 1.5  # THOR's visibility distance: interactions need the object within it


def restore_actions(scene: Mapping[str, Any]) -> list[dict[str, Any]]:
    """THOR actions that restore a ``traj_data.json`` ``scene`` (after ``reset(floor_plan)``), in order."""
    acts: list[dict[str, Any]] = [dict(INITIALIZE)]
    if scene.get("object_toggles"):
        acts.append({"action": "SetObjectToggles", "objectToggles": list(scene["object_toggles"])})
    if scene.get("dirty_and_empty"):
        acts.append({"action": "SetStateOfAllObjects", "StateChange": "CanBeDirty", "forceAction": True})
        acts.append({"action": "SetStateOfAllObjects", "StateChange": "CanBeFilled", "forceAction": False})
    acts.append({"action": "SetObjectPoses", "objectPoses": list(scene.get("object_poses") or [])})
    if scene.get("init_action"):
        acts.append(dict(scene["init_action"]))
    return acts


def _hdist(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    return math.hypot(a["x"] - b["x"], a["z"] - b["z"])


def interaction_pose(
    target: Mapping[str, float],
    reachable: Sequence[Mapping[str, float]],
    best: float = 1.0,
    agent_y: float | None = None,
    also: Sequence[Mapping[str, float]] = (),
) -> dict[str, Any]:
    """A ``TeleportFull`` to the reachable point nearest ``best`` metres from ``target`` with it (and every
    position in ``also``, e.g. the cabinet to open first) within reach if possible, else the point nearest
    all of them; facing the target (THOR's yaw: 0 faces +z, 90 faces +x), the camera tilted to it in
    15-degree steps."""
    if not reachable:
        raise ValueError("no reachable positions: call GetReachablePositions after the scene is restored")
    need = [target, *also]
    within = [p for p in reachable if _hdist(p, target) >= 0.25 and all(_hdist(p, t) <= REACH for t in need)]
    if within:
        p = min(within, key=lambda q: (abs(_hdist(q, target) - best), q["x"], q["z"]))
    else:
        p = min(reachable, key=lambda q: (max(_hdist(q, t) for t in need), q["x"], q["z"]))
    d = _hdist(p, target)
    yaw = math.degrees(math.atan2(target["x"] - p["x"], target["z"] - p["z"])) % 360.0
    y = float(agent_y if agent_y is not None else p["y"])
    tilt = math.degrees(math.atan2(y + CAMERA_ABOVE_AGENT - target["y"], max(d, 1e-6)))  # + looks down in THOR
    horizon = float(min(60, max(-30, 15 * round(tilt / 15))))
    return {"action": "TeleportFull", "x": float(p["x"]), "y": y, "z": float(p["z"]), "rotation": round(yaw, 1), "horizon": horizon}


def _thor_type(obj: Obj) -> str:
    t = str(obj["objectType"])
    return t[: -len("Sliced")] if t.endswith("Sliced") else t


def match_objects(world: World, objects: Iterable[Obj]) -> dict[str, str]:
    """World receptacle and object ids -> THOR object ids: same type, nearest position first (greedy).

    World items without a position (receptacles known only from a layout's type list) take the remaining
    THOR object of their type nearest the room's others; sliced THOR pieces are not matched here.
    """
    pool: dict[str, list[Obj]] = {}
    for o in objects:
        if not str(o["objectType"]).endswith("Sliced"):
            pool.setdefault(str(o["objectType"]), []).append(o)
    items: list[tuple[str, str, tuple[float, float, float] | None]] = []
    for r in world.scene.receptacles:
        if r.type != FLOOR:
            items.append((r.id, r.type, r.position))
    for o in world.scene.objects:
        items.append((o.id, o.type, o.position))
    pairs = []
    for wid, typ, pos in items:
        for o in pool.get(typ, ()):
            p = o["position"]
            d = math.dist(pos, (p["x"], p["y"], p["z"])) if pos is not None else 1e6
            pairs.append((d, wid, str(o["objectId"])))
    out: dict[str, str] = {}
    used: set[str] = set()
    for _, wid, tid in sorted(pairs):
        if wid not in out and tid not in used:
            out[wid] = tid
            used.add(tid)
    return out


class Translator:
    """Turns one high-level action, already accepted by the world, into THOR actions.

    :meth:`bind` after every scene restore; :meth:`actions` before executing; :meth:`commit` after THOR
    carried the action out (it learns the ids of new slices).
    """

    def __init__(self, onto: Ontology | None = None) -> None:
        self.onto = onto or load_ontology()
        self.ids: dict[str, str] = {}
        self.reachable: list[dict[str, float]] = []

    def bind(self, world: World, metadata: Mapping[str, Any], reachable: Sequence[Mapping[str, float]]) -> None:
        self.ids = match_objects(world, metadata["objects"])
        self.reachable = [dict(p) for p in reachable]

    # -- lookups -----------------------------------------------------------------------------------
    @staticmethod
    def _objects(meta: Mapping[str, Any]) -> dict[str, Obj]:
        return {str(o["objectId"]): o for o in meta["objects"]}

    def thor_id(self, world_id: str, meta: Mapping[str, Any], want_type: str | None = None) -> str:
        tid = self.ids.get(world_id)
        objs = self._objects(meta)
        if tid is not None and tid in objs:
            return tid
        # unmatched (or gone): the nearest THOR object of the type to the agent
        typ = want_type or world_id.split("|")[0]
        agent = meta["agent"]["position"]
        cands = [o for o in objs.values() if _thor_type(o) == typ]
        if not cands:
            raise KeyError(f"THOR reports no {typ} in this scene (world object {world_id})")
        return str(min(cands, key=lambda o: _hdist(o["position"], agent))["objectId"])

    def _approach(self, tid: str, meta: Mapping[str, Any], also: Sequence[str] = ()) -> list[dict[str, Any]]:
        objs = self._objects(meta)
        if all(objs[t].get("visible") for t in (tid, *also)):
            return []
        extra = [objs[t]["position"] for t in also]
        return [interaction_pose(objs[tid]["position"], self.reachable, agent_y=meta["agent"]["position"]["y"], also=extra)]

    def _closed_containers(self, tid: str, meta: Mapping[str, Any]) -> list[str]:
        """Closed receptacles around an object, innermost first (a cup in a closed box in a closed cabinet)."""
        parent_of = {c: str(o["objectId"]) for o in meta["objects"] for c in (o.get("receptacleObjectIds") or ())}
        objs = self._objects(meta)
        out, node = [], parent_of.get(tid)
        while node is not None and node not in out:
            if objs[node].get("openable") and not objs[node].get("isOpen"):
                out.append(node)
            node = parent_of.get(node)
        return out

    def _around(self, tid: str, core: list[dict[str, Any]], meta: Mapping[str, Any], include_self: bool = False) -> list[dict[str, Any]]:
        """``core`` with the closed receptacles around ``tid`` (and ``tid`` itself if asked) opened before and closed after."""
        boxes = self._closed_containers(tid, meta)
        o = self._objects(meta)[tid]
        if include_self and o.get("openable") and not o.get("isOpen"):
            boxes.insert(0, tid)
        opens = [{"action": "OpenObject", "objectId": b, "moveMagnitude": 1.0} for b in reversed(boxes)]
        closes = [{"action": "CloseObject", "objectId": b, "forceAction": True} for b in boxes]
        # stand where the object itself is in reach: a cabinet's pivot can be over a metre from its contents
        return [*self._approach(tid, meta, also=boxes), *opens, *core, *closes]

    @staticmethod
    def _held(meta: Mapping[str, Any]) -> str:
        inv = meta.get("inventoryObjects") or []
        if not inv:
            raise KeyError("THOR's agent holds nothing")
        return str(inv[0]["objectId"])

    def _appliance(self, before: World, rtype: str, meta: Mapping[str, Any]) -> str:
        if before.location == rtype:
            rid = before.focus[rtype]
        else:
            near = before.near.get(before.focus[before.location], ()) if before.location else ()
            rid = next(r for r in near if before.rec_type[r] == rtype)
        return self.thor_id(rid, meta, rtype)

    # -- actions -----------------------------------------------------------------------------------
    def actions(self, verb: str, typ: str, before: World, after: World, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
        """THOR actions for ``verb typ``, which took the world from ``before`` to ``after``."""
        if verb == "GotoLocation":
            assert after.location is not None
            rid = after.focus[after.location]
            target = rid
            if typ not in after.members or rid == FLOOR:  # walking to an object: face the object itself
                objs = [o for o in after.subtree(rid) if after.obj_type[o] == typ] if rid != FLOOR else after.instances(typ)
                target = min(objs, key=lambda o: after.order.get(o, 1 << 30)) if objs else rid
            tid = self.thor_id(target, meta, after.type_of(target) if target != FLOOR else typ)
            pos = self._objects(meta)[tid]["position"]
            return [interaction_pose(pos, self.reachable, agent_y=meta["agent"]["position"]["y"])]
        if verb == "PickupObject":
            obj = before.pickup_target(typ)
            assert obj is not None
            tid = self.thor_id(obj, meta, typ)
            return self._around(tid, [{"action": "PickupObject", "objectId": tid}], meta)
        if verb == "PutObject":
            held = self._held(meta)
            assert before.held is not None
            dest = after.parent[before.held]
            assert dest is not None
            if dest == FLOOR:
                return [{"action": "DropHandObject"}]
            rid = self.thor_id(dest, meta, after.type_of(dest))
            put = {"action": "PutObject", "objectId": held, "receptacleObjectId": rid, "forceAction": True, "placeStationary": True}
            return self._around(rid, [put], meta, include_self=True)
        if verb == "SliceObject":
            (whole,) = [o for o in before.obj_type if o not in after.obj_type]
            tid = self.thor_id(whole, meta, typ)
            return self._around(tid, [{"action": "SliceObject", "objectId": tid}], meta)
        if verb in ("HeatObject", "CoolObject", "CleanObject"):
            held = self._held(meta)
            kind = {"HeatObject": "heat", "CoolObject": "cool", "CleanObject": "clean"}[verb]
            app = self._appliance(before, self.onto.appliances[kind], meta)
            put = {"action": "PutObject", "objectId": held, "receptacleObjectId": app, "forceAction": True, "placeStationary": True}
            take = {"action": "PickupObject", "objectId": held}
            opn, close = {"action": "OpenObject", "objectId": app, "moveMagnitude": 1.0}, {"action": "CloseObject", "objectId": app, "forceAction": True}
            if kind == "heat":
                on, off = {"action": "ToggleObjectOn", "objectId": app}, {"action": "ToggleObjectOff", "objectId": app}
                return [*self._approach(app, meta), opn, put, close, on, off, opn, take, close]
            if kind == "cool":
                return [*self._approach(app, meta), opn, put, close, opn, take, close]
            faucet = self._faucet_of(app, meta)
            on, off = {"action": "ToggleObjectOn", "objectId": faucet}, {"action": "ToggleObjectOff", "objectId": faucet}
            held_meta = self._objects(meta).get(held, {})
            wash = [{"action": "CleanObject", "objectId": held}] if held_meta.get("isDirty") else []
            return [*self._approach(app, meta, also=[faucet]), put, on, *wash, off, take]
        if verb == "ToggleObject":
            lamp = next(o for o in before.visible() if before.obj_type[o] == typ)
            tid = self.thor_id(lamp, meta, typ)
            on = bool(self._objects(meta)[tid].get("isToggled"))
            return [*self._approach(tid, meta), {"action": "ToggleObjectOff" if on else "ToggleObjectOn", "objectId": tid}]
        raise ValueError(f"no THOR translation for {verb!r}")

    def _faucet_of(self, basin: str, meta: Mapping[str, Any]) -> str:
        objs = self._objects(meta)
        faucets = [o for o in objs.values() if o["objectType"] == "Faucet"]
        if not faucets:
            raise KeyError("THOR reports no faucet to clean with")
        return str(min(faucets, key=lambda o: _hdist(o["position"], objs[basin]["position"]))["objectId"])

    def commit(self, verb: str, typ: str, before: World, after: World, meta: Mapping[str, Any]) -> None:
        """Learn what an executed action created in THOR (slices of a sliced object)."""
        if verb != "SliceObject":
            return
        (whole,) = [o for o in before.obj_type if o not in after.obj_type]
        tid = self.ids.get(whole, "")
        pieces = sorted(str(o["objectId"]) for o in meta["objects"]
                        if str(o["objectType"]) == f"{typ}Sliced" and str(o["objectId"]).startswith(tid.split("|" + typ)[0]))
        slices = sorted(o for o in after.obj_type if o.startswith(whole + "|"))
        for wid, tid_piece in zip(slices, pieces, strict=False):
            self.ids[wid] = tid_piece

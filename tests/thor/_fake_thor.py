"""A test double for an AI2-THOR 2.1.0 controller: the same API (``reset``, ``step(dict)``, ``stop``) and
event format (``metadata`` with ``objects``, ``agent``, ``inventoryObjects``, ``lastActionSuccess``,
``errorMessage``, ``reachablePositions``; ``frame``), with a small physics of its own: visibility within
1.5 m and outside closed receptacles, one object in hand, closed receptacles must be opened, slicing needs
a knife, toggles, dirt, teleports only onto the reachable grid.

AI2-THOR cannot start on the test machines; this double stands in for it only. Its scenes are built from
rgvlm-gym's reconstructed scenes (receptacles and lamps; faucets beside basins); movable objects appear
through ``SetObjectPoses``, as in ALFRED's restore, with THOR-style ids at their new positions.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rgvlm_gym.alfred.ontology import load_ontology
from rgvlm_gym.alfred.scene import SceneSpec

ONTO = load_ontology()


def thor_id(typ: str, p: dict[str, float]) -> str:
    return f"{typ}|{p['x']:+06.2f}|{p['y']:+06.2f}|{p['z']:+06.2f}"


@dataclass
class Event:
    metadata: dict[str, Any]
    frame: np.ndarray


@dataclass
class FakeThor:
    scenes: dict[str, SceneSpec]
    width: int = 300
    height: int = 300
    fail: dict[str, str] = field(default_factory=dict)  # action -> errorMessage, always fails
    hang_once: set[str] = field(default_factory=set)  # actions that hang (block) the first time
    calls: list[dict[str, Any]] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    stopped: bool = False

    def __post_init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.agent = {"position": {"x": 0.0, "y": 0.9, "z": 0.0}, "rotation": {"x": 0.0, "y": 0.0, "z": 0.0}, "cameraHorizon": 0.0}
        self.held: str | None = None
        self.reachable: list[dict[str, float]] = []
        self.last_event: Event | None = None
        self._release = threading.Event()
        self._grid_queried = False

    # -- controller API ----------------------------------------------------------------------------
    def reset(self, scene_name: str) -> Event:
        self.resets.append(scene_name)
        spec = self.scenes[scene_name]
        self.objects, self.held, self._grid_queried = {}, None, False
        placed = [r.position for r in spec.receptacles if r.position is not None and r.type != "Floor"] or [(0.0, 0.9, 0.0)]
        cx, cz = sum(p[0] for p in placed) / len(placed), sum(p[2] for p in placed) / len(placed)
        for i, r in enumerate(spec.receptacles):
            if r.type == "Floor":
                continue
            # receptacles known only by type get a place on a ring around the room's centre
            p = r.position or (cx + 1.5 * math.cos(i), 0.9, cz + 1.5 * math.sin(i))
            self._add(r.type, {"x": p[0], "y": p[1], "z": p[2]}, receptacle=True)
            if r.type in ("SinkBasin", "BathtubBasin"):
                self._add("Faucet", {"x": p[0] + 0.3, "y": p[1] + 0.1, "z": p[2]}, toggleable=True)
        for o in spec.objects:
            if o.type in ONTO.toggleable:
                home = next(r for r in spec.receptacles if r.id == o.parent)
                p = o.position or ((home.position[0], home.position[1] + 0.3, home.position[2]) if home.position else (30.0, 1.0, 30.0))
                self._add(o.type, {"x": p[0], "y": p[1], "z": p[2]}, toggleable=True)  # lamps stand free: never enclosed
        self._grid()
        return self._event(True)

    def step(self, action: dict[str, Any]) -> Event:
        self.calls.append(action)
        name = action["action"]
        if name in self.hang_once:
            self.hang_once.discard(name)
            self._release.wait(30)  # the supervisor gives up first and kills us
        if name in self.fail:
            return self._event(False, self.fail[name])
        handler = getattr(self, f"_do_{name}", None)
        if handler is None:
            return self._event(False, f"Invalid action: {name}")
        err = handler(action)
        return self._event(err is None, err or "")

    def stop(self) -> None:
        self.stopped = True
        self._release.set()

    # -- scene -------------------------------------------------------------------------------------
    def _add(self, typ: str, pos: dict[str, float], *, receptacle: bool = False, pickupable: bool = False, toggleable: bool = False,
             oid: str | None = None) -> str:
        oid = oid or thor_id(typ, pos)
        base = typ[:-6] if typ.endswith("Sliced") else typ
        self.objects[oid] = {
            "objectId": oid, "objectType": typ, "name": oid, "position": dict(pos), "rotation": {"x": 0.0, "y": 0.0, "z": 0.0},
            "visible": False, "pickupable": pickupable, "receptacle": receptacle or typ in ONTO.movable_receptacles,
            "openable": typ in ONTO.openable, "isOpen": False, "toggleable": toggleable or typ == "Microwave",
            "isToggled": False, "sliceable": base in ONTO.sliceable and not typ.endswith("Sliced"), "isSliced": False,
            "dirtyable": base in ONTO.cleanable, "isDirty": False, "receptacleObjectIds": [], "parentReceptacles": None,
        }
        return oid

    def _grid(self) -> None:
        recs = [o["position"] for o in self.objects.values() if o["receptacle"]]
        xs = [p["x"] for p in recs] or [0.0]
        zs = [p["z"] for p in recs] or [0.0]
        pts = []
        x = math.floor(min(xs)) - 1.5
        while x <= max(xs) + 1.5:
            z = math.floor(min(zs)) - 1.5
            while z <= max(zs) + 1.5:
                if all(math.hypot(x - p["x"], z - p["z"]) >= 0.3 for p in recs):
                    pts.append({"x": round(x, 2), "y": 0.9, "z": round(z, 2)})
                z += 0.25
            x += 0.25
        self.reachable = pts

    def _nearest_receptacle(self, p: dict[str, float]) -> str:
        recs = [o for o in self.objects.values() if o["receptacle"] and not o["pickupable"]]
        return min(recs, key=lambda o: math.dist((p["x"], p["y"], p["z"]), (o["position"]["x"], o["position"]["y"], o["position"]["z"])))["objectId"]

    def _enclosed(self, oid: str) -> bool:
        for pid in self.objects[oid]["parentReceptacles"] or []:
            parent = self.objects.get(pid)
            if parent is not None and (parent["openable"] and not parent["isOpen"] or self._enclosed(pid)):
                return True
        return False

    def _visible(self, oid: str) -> bool:
        o = self.objects[oid]
        if oid == self.held:
            return False
        a = self.agent["position"]
        return math.hypot(o["position"]["x"] - a["x"], o["position"]["z"] - a["z"]) <= 1.5 and not self._enclosed(oid)

    def _event(self, ok: bool, error: str = "") -> Event:
        for oid, o in self.objects.items():
            o["visible"] = self._visible(oid)
        inv = [{"objectId": self.held, "objectType": self.objects[self.held]["objectType"]}] if self.held else []
        meta = {
            "objects": [dict(o, position=dict(o["position"]), receptacleObjectIds=list(o["receptacleObjectIds"])) for o in self.objects.values()],
            "agent": {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.agent.items()},
            "inventoryObjects": inv, "lastActionSuccess": ok, "errorMessage": error, "reachablePositions": [dict(p) for p in self.reachable],
        }
        shade = len(self.calls) % 256
        self.last_event = Event(meta, np.full((self.height, self.width, 3), shade, np.uint8))
        return self.last_event

    def _move_into(self, oid: str, parent: str | None) -> None:
        for old in self.objects[oid]["parentReceptacles"] or []:
            if old in self.objects:
                self.objects[old]["receptacleObjectIds"].remove(oid)
        self.objects[oid]["parentReceptacles"] = [parent] if parent else None
        if parent:
            self.objects[parent]["receptacleObjectIds"].append(oid)
            pp = self.objects[parent]["position"]
            self.objects[oid]["position"] = {"x": pp["x"], "y": pp["y"] + 0.05, "z": pp["z"]}

    # -- actions -----------------------------------------------------------------------------------
    def _do_Initialize(self, a: dict[str, Any]) -> None:
        return None

    def _do_Pass(self, a: dict[str, Any]) -> None:
        return None

    def _do_SetObjectToggles(self, a: dict[str, Any]) -> None:
        for t in a["objectToggles"]:
            for o in self.objects.values():
                if o["objectType"] == t["objectType"]:
                    o["isToggled"] = bool(t["isOn"])

    def _do_SetStateOfAllObjects(self, a: dict[str, Any]) -> None:
        if a["StateChange"] == "CanBeDirty":
            for o in self.objects.values():
                o["isDirty"] = o["dirtyable"]

    def _do_SetObjectPoses(self, a: dict[str, Any]) -> None:
        for oid in [k for k, o in self.objects.items() if o["pickupable"]]:
            self._move_into(oid, None)
            del self.objects[oid]
        for pose in a["objectPoses"]:
            typ = pose["objectName"].split("_")[0]
            if not ONTO.is_known(typ) or ONTO.canonical(typ) not in ONTO.pickupable:
                continue
            oid = thor_id(typ, pose["position"])
            while oid in self.objects:
                oid += "x"
            self._add(typ, pose["position"], pickupable=True, oid=oid)
            parent = self._nearest_receptacle(pose["position"])
            self.objects[oid]["parentReceptacles"] = [parent]
            self.objects[parent]["receptacleObjectIds"].append(oid)

    def _do_TeleportFull(self, a: dict[str, Any]) -> str | None:
        # the recorded initial pose comes before GetReachablePositions; after it, only grid points
        if self._grid_queried and not any(abs(p["x"] - a["x"]) < 1e-6 and abs(p["z"] - a["z"]) < 1e-6 for p in self.reachable):
            return f"TeleportFull: ({a['x']}, {a['z']}) is not a reachable grid point"
        self.agent = {"position": {"x": a["x"], "y": a["y"], "z": a["z"]}, "rotation": {"x": 0.0, "y": a["rotation"], "z": 0.0},
                      "cameraHorizon": a["horizon"]}
        return None

    def _do_GetReachablePositions(self, a: dict[str, Any]) -> None:
        self._grid_queried = True
        return None

    def _need_visible(self, oid: str) -> str | None:
        if oid not in self.objects:
            return f"object {oid} not found"
        if not self._visible(oid):
            return f"{oid} is not visible"
        return None

    def _do_OpenObject(self, a: dict[str, Any]) -> str | None:
        err = self._need_visible(a["objectId"])
        if err:
            return err
        o = self.objects[a["objectId"]]
        if not o["openable"]:
            return f"{a['objectId']} is not openable"
        o["isOpen"] = True
        return None

    def _do_CloseObject(self, a: dict[str, Any]) -> str | None:
        o = self.objects.get(a["objectId"])
        if o is None or not o["openable"]:
            return f"{a['objectId']} cannot be closed"
        o["isOpen"] = False
        return None

    def _do_PickupObject(self, a: dict[str, Any]) -> str | None:
        err = self._need_visible(a["objectId"])
        if err:
            return err
        if self.held is not None:
            return "Agent hand is full"
        if not self.objects[a["objectId"]]["pickupable"]:
            return f"{a['objectId']} is not pickupable"
        self._move_into(a["objectId"], None)
        self.held = a["objectId"]
        return None

    def _do_PutObject(self, a: dict[str, Any]) -> str | None:
        if self.held is None or self.held != a["objectId"]:
            return f"not holding {a['objectId']}"
        rid = a["receptacleObjectId"]
        err = self._need_visible(rid)
        if err:
            return err
        r = self.objects[rid]
        if not r["receptacle"]:
            return f"{rid} is not a receptacle"
        if r["openable"] and not r["isOpen"]:
            return f"{rid} is closed"
        held, self.held = self.held, None
        self._move_into(held, rid)
        return None

    def _do_DropHandObject(self, a: dict[str, Any]) -> str | None:
        if self.held is None:
            return "nothing in hand"
        self.objects[self.held]["position"] = {"x": self.agent["position"]["x"], "y": 0.05, "z": self.agent["position"]["z"]}
        self.held = None
        return None

    def _toggle(self, a: dict[str, Any], on: bool) -> str | None:
        err = self._need_visible(a["objectId"])
        if err:
            return err
        o = self.objects[a["objectId"]]
        if not o["toggleable"]:
            return f"{a['objectId']} is not toggleable"
        o["isToggled"] = on
        if on and o["objectType"] == "Faucet":  # water cleans what is in the basin under it
            for b in self.objects.values():
                if b["objectType"] in ("SinkBasin", "BathtubBasin") and math.hypot(b["position"]["x"] - o["position"]["x"], b["position"]["z"] - o["position"]["z"]) < 0.5:
                    for c in b["receptacleObjectIds"]:
                        self.objects[c]["isDirty"] = False
        return None

    def _do_ToggleObjectOn(self, a: dict[str, Any]) -> str | None:
        return self._toggle(a, True)

    def _do_ToggleObjectOff(self, a: dict[str, Any]) -> str | None:
        return self._toggle(a, False)

    def _do_CleanObject(self, a: dict[str, Any]) -> str | None:
        self.objects[a["objectId"]]["isDirty"] = False
        return None

    def _do_SliceObject(self, a: dict[str, Any]) -> str | None:
        err = self._need_visible(a["objectId"])
        if err:
            return err
        o = self.objects[a["objectId"]]
        if not o["sliceable"]:
            return f"{a['objectId']} is not sliceable"
        if self.held is None or "Knife" not in self.objects[self.held]["objectType"]:
            return "Agent must hold a knife to slice"
        parent = (o["parentReceptacles"] or [None])[0]
        self._move_into(a["objectId"], None)
        del self.objects[a["objectId"]]
        for k in range(1, 5):
            sid = self._add(f"{o['objectType']}Sliced", o["position"], pickupable=True, oid=f"{a['objectId']}|{o['objectType']}Sliced_{k}")
            self.objects[sid]["isSliced"] = True
            if parent:
                self.objects[sid]["parentReceptacles"] = [parent]
                self.objects[parent]["receptacleObjectIds"].append(sid)
        return None


def fake_factory(scenes: dict[str, SceneSpec], made: list[FakeThor] | None = None, **kw: Any):
    """A ``controller_factory`` for AlfredThor-v0 that builds :class:`FakeThor` doubles (kept in ``made``)."""

    def factory(x_display: str | None, width: int, height: int, quality: str) -> FakeThor:
        fake = FakeThor(scenes, width, height, **kw)  # `fail` and `hang_once` are shared: a hang happens once in all
        if made is not None:
            made.append(fake)
        return fake

    return factory

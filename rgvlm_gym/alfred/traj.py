"""Loading ALFRED ``json_2.1.0`` trajectories as rgvlm-gym tasks.

Holds :class:`AlfredTrajectory` (a validated ``traj_data.json``), :func:`load_trajectory`,
:func:`reconstruct_scene` (the initial state: which receptacle holds each object), :func:`tasks_from_trajectory`
(the full task and its prefix tasks) and :func:`load_split` (a whole split, with a report of what could
not be used and why).

Works on full ALFRED downloads and on trimmed files: only ``task_id``, ``task_type``, ``pddl_params``,
``scene``, ``plan.high_pddl`` and ``turk_annotations`` are read.

Initial state. ALFRED records every movable object's pose (``scene.object_poses``) but not which receptacle
holds it. The receptacles of a room come from the layout files (``layouts/FloorPlan*-openable.json``, whose
keys are receptacle ids carrying their positions) and from the receptacle ids and coordinates in the plans
of every trajectory of the same floor plan. Each object goes to the receptacle whose contents' region (per
receptacle type, ``receptacle_geometry`` in the ontology) is nearest its position, nested into a bowl,
plate, pot, ... when it sits inside one. The trajectory's own plan is then evidence too: the receptacle a
plan step picks an object up from is where that object was (``planner_action.coordinateReceptacleObjectId``).
:func:`reconstruct_scene` reports how often geometry alone agreed with that evidence.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rgvlm_gym.alfred.ontology import FLOOR, Ontology, load_ontology, room_of_floor_plan
from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
from rgvlm_gym.alfred.tasks import TASK_TYPES, Condition, TaskSpec, goal_for_task_type, subgoals_from_plan
from rgvlm_gym.alfred.world import World

__all__ = [
    "SPLITS",
    "AlfredTrajectory",
    "LoadReport",
    "SceneEvidence",
    "load_split",
    "load_trajectory",
    "map_high_pddl",
    "parse_subtask_range",
    "reconstruct_scene",
    "tasks_from_trajectory",
    "verify_task",
]

SPLITS = ("train", "valid_seen", "valid_unseen", "tests_seen", "tests_unseen")
_REQUIRED = ("task_id", "task_type", "pddl_params", "scene", "plan", "turk_annotations")
Vec3 = tuple[float, float, float]


# --------------------------------------------------------------------------------------------------
# One trajectory
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlfredTrajectory:
    """The parts of an ALFRED ``traj_data.json`` that rgvlm-gym uses, validated."""

    path: str
    task_id: str
    task_type: str
    pddl_params: dict[str, Any]
    floor_plan: str
    object_poses: tuple[dict[str, Any], ...]
    object_toggles: tuple[dict[str, Any], ...]
    high_pddl: tuple[dict[str, Any], ...]
    annotations: tuple[dict[str, Any], ...]


def load_trajectory(path: str | Path) -> AlfredTrajectory:
    """Read and validate one ``traj_data.json``; errors name the file and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such traj_data file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON, truncated or corrupted? ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level, got {type(raw).__name__}")
    for key in _REQUIRED:
        if key not in raw:
            raise ValueError(f"{path}: missing field {key!r}")
    scene, plan = raw["scene"], raw["plan"]
    if not isinstance(scene, dict) or "floor_plan" not in scene or "object_poses" not in scene:
        raise ValueError(f"{path}: field 'scene' must hold 'floor_plan' and 'object_poses'")
    if not isinstance(plan, dict) or not isinstance(plan.get("high_pddl"), list) or not plan["high_pddl"]:
        raise ValueError(f"{path}: missing or empty field 'plan.high_pddl'")
    if raw["task_type"] not in TASK_TYPES:
        raise ValueError(f"{path}: unknown task_type {raw['task_type']!r}; expected one of {', '.join(TASK_TYPES)}")
    anns = raw["turk_annotations"].get("anns") if isinstance(raw["turk_annotations"], dict) else None
    if not anns:
        raise ValueError(f"{path}: field 'turk_annotations.anns' is missing or empty")
    for i, step in enumerate(plan["high_pddl"]):
        da = step.get("discrete_action") if isinstance(step, dict) else None
        if not isinstance(da, dict) or "action" not in da or not isinstance(da.get("args"), list):
            raise ValueError(f"{path}: plan.high_pddl[{i}].discrete_action must have 'action' and 'args'")
    return AlfredTrajectory(
        path=str(path),
        task_id=str(raw["task_id"]),
        task_type=raw["task_type"],
        pddl_params=dict(raw["pddl_params"]),
        floor_plan=str(scene["floor_plan"]),
        object_poses=tuple(scene["object_poses"]),
        object_toggles=tuple(scene.get("object_toggles") or ()),
        high_pddl=tuple(plan["high_pddl"]),
        annotations=tuple(anns),
    )


def map_high_pddl(traj: AlfredTrajectory, onto: Ontology | None = None) -> list[tuple[str, str, str | None]]:
    """ALFRED's ``high_pddl`` as ``(verb, Type, objectId)`` actions (DESIGN.md's mapping; NoOp dropped).

    ``PutObject`` maps by its receptacle (``args[1]``), every other step by ``args[0]``. A handful of
    ALFRED steps have an empty argument; their object is the one in hand.
    """
    onto = onto or load_ontology()
    out: list[tuple[str, str, str | None]] = []
    held: str | None = None
    for i, step in enumerate(traj.high_pddl):
        verb, args = step["discrete_action"]["action"], step["discrete_action"]["args"]
        pa = step.get("planner_action", {})
        if verb == "NoOp":
            continue
        arg = args[1] if verb == "PutObject" and len(args) > 1 else (args[0] if args else "")
        if not arg and verb in ("HeatObject", "CoolObject", "CleanObject", "SliceObject") and held:
            arg = held.lower()
        if not arg:
            raise ValueError(f"{traj.path}: plan.high_pddl[{i}] ({verb}) has no argument")
        try:
            typ = onto.canonical(arg)
        except ValueError:
            raise ValueError(f"{traj.path}: plan.high_pddl[{i}]: unknown object type {arg!r}") from None
        able = {"HeatObject": onto.heatable, "CoolObject": onto.coolable, "CleanObject": onto.cleanable, "SliceObject": onto.sliceable}
        if verb in able and typ not in able[verb]:
            raise ValueError(f"{traj.path}: plan.high_pddl[{i}]: {verb} on a {arg}, which does not afford it")
        key = pa.get("objectId") if verb == "PickupObject" else None
        if verb == "PickupObject":
            held = typ
        elif verb == "PutObject":
            held = None
        out.append((verb, typ, key))
    return out


# --------------------------------------------------------------------------------------------------
# Scene reconstruction
# --------------------------------------------------------------------------------------------------
def _fmt_id(typ: str, pos: Vec3) -> str:
    return f"{typ}|{pos[0]:+06.2f}|{pos[1]:+06.2f}|{pos[2]:+06.2f}"


_ID_RE = re.compile(r"^([A-Za-z]+)\|([-+]?\d+\.\d+)\|([-+]?\d+\.\d+)\|([-+]?\d+\.\d+)(?:\|([A-Za-z]+))?")


def _parse_id(ident: str) -> tuple[str, Vec3] | None:
    """``"Sink|-01.90|+00.97|-01.50|SinkBasin"`` -> ``("SinkBasin", (-1.9, 0.97, -1.5))``."""
    m = _ID_RE.match(ident)
    if not m:
        return None
    typ = m.group(5) or m.group(1)
    return typ, (float(m.group(2)), float(m.group(3)), float(m.group(4)))


def _coord_pos(coords: list[float]) -> Vec3:
    """ALFRED planner coordinates ``[x*4, x*4, z*4, z*4, y*4, y*4]`` -> ``(x, y, z)``."""
    return (coords[0] / 4.0, coords[4] / 4.0, coords[2] / 4.0)


@dataclass
class SceneEvidence:
    """Receptacles and lamps of each floor plan, seen in layout files and in plans of any trajectory."""

    receptacles: dict[str, dict[str, tuple[str, Vec3 | None]]] = field(default_factory=lambda: defaultdict(dict))
    lamps: dict[str, dict[str, tuple[str, Vec3]]] = field(default_factory=lambda: defaultdict(dict))
    scene_types: dict[str, list[str]] = field(default_factory=dict)
    layouts_dir: Path | None = None

    def add_layout(self, floor_plan: str) -> None:
        if self.layouts_dir is None or floor_plan in self.scene_types:
            return
        openable = self.layouts_dir / f"{floor_plan}-openable.json"
        objects = self.layouts_dir / f"{floor_plan}-objects.json"
        if openable.is_file():
            for ident in json.loads(openable.read_text()):
                parsed = _parse_id(ident)
                if parsed:
                    self._add(floor_plan, parsed[0], parsed[1], ident)
        self.scene_types[floor_plan] = json.loads(objects.read_text()) if objects.is_file() else []

    def add_plan(self, traj: AlfredTrajectory) -> None:
        fp = traj.floor_plan
        for step in traj.high_pddl:
            pa = step.get("planner_action", {})
            cr = pa.get("coordinateReceptacleObjectId")
            if pa.get("action") == "ToggleObject" and "coordinateObjectId" in pa:
                typ, coords = pa["coordinateObjectId"]
                pos = _coord_pos(coords)
                self.lamps[fp].setdefault(_fmt_id(typ, pos), (typ, pos))
            elif cr and isinstance(cr, list) and len(cr) == 2:
                typ, coords = cr
                self._add(fp, typ, _coord_pos(coords), None)

    def _add(self, fp: str, typ: str, pos: Vec3, ident: str | None) -> None:
        recs = self.receptacles[fp]
        for rid, (t, p) in recs.items():
            # a basin's id carries its sink's or tub's position, up to a metre from the basin's own
            tol = 1.2 if typ in ("SinkBasin", "BathtubBasin") else 0.3
            if t == typ and p is not None and math.dist(p, pos) < tol and (ident is None or rid == ident):
                if ident is None and typ in ("SinkBasin", "BathtubBasin"):
                    recs[rid] = (t, pos)  # a basin's own position beats its sink's, which its id carries
                return
        recs[ident or _fmt_id(typ, pos)] = (typ, pos)


def _infer_parent(
    typ: str, pos: Vec3, fixed: list[ReceptacleSpec], movables: list[tuple[str, str, Vec3]], onto: Ontology
) -> str | None:
    # inside a movable receptacle (an apple in a bowl)?
    best, best_d = None, 1e9
    for mid, mtype, mpos in movables:
        g = onto.geometry.get(mtype)
        if g is None or not onto.fits(typ, mtype):
            continue
        dy = pos[1] - mpos[1]
        d = math.hypot(pos[0] - mpos[0], pos[2] - mpos[2])
        if g["dy"][0] <= dy <= g["dy"][1] and d <= g["r"] and d < best_d:
            best, best_d = mid, d
    if best is not None:
        return best
    # the smallest receptacle whose contents' region holds the object (a burner before the counter
    # around it); failing that, the one whose region is nearest
    best_score, best_reach = 1e9, 1e9
    for r in fixed:
        if r.position is None:
            continue
        g = onto.geometry.get(r.type, {"dy": [-0.2, 0.5], "r": 0.5})
        dy = pos[1] - r.position[1]
        lo, hi = g["dy"]
        violation = max(lo - 0.02 - dy, dy - hi - 0.02, 0.0)
        d = math.hypot(pos[0] - r.position[0], pos[2] - r.position[2])
        fits = onto.fits(typ, r.type)
        if violation == 0 and d <= g["r"] and fits:
            if g["r"] < best_reach:
                best, best_reach, best_score = r.id, g["r"], 0.0
            continue
        if best_reach < 1e9:
            continue
        score = d / g["r"] + (0.0 if violation == 0 else 1.0 + 5.0 * violation) + (0.0 if fits else 0.75)
        if score < best_score:
            best, best_score = r.id, score
    if pos[1] < 0.12 and best_score > 1.0 and any(r.type == FLOOR for r in fixed):
        return next(r.id for r in fixed if r.type == FLOOR)
    if best is None:  # no positioned receptacle: any compatible one
        best = next((r.id for r in fixed if onto.fits(typ, r.type)), None)
    return best


@dataclass
class SceneAgreement:
    """How often geometry alone put a plan's pickup targets where the plan picked them up from."""

    checked: int = 0
    agreed: int = 0
    mismatches: list[tuple[str, str, str]] = field(default_factory=list)  # (object id, inferred, plan)


def reconstruct_scene(
    traj: AlfredTrajectory,
    evidence: SceneEvidence | None = None,
    onto: Ontology | None = None,
    agreement: SceneAgreement | None = None,
    use_plan: bool = True,
) -> SceneSpec:
    """The initial state of a trajectory's room (see the module docstring for the method)."""
    onto = onto or load_ontology()
    if evidence is None:
        evidence = SceneEvidence()
        evidence.add_plan(traj)
    fp = traj.floor_plan
    recs = {rid: (t, p) for rid, (t, p) in evidence.receptacles.get(fp, {}).items() if onto.is_receptacle(t)}
    fixed = [ReceptacleSpec(rid, t, p) for rid, (t, p) in sorted(recs.items()) if t not in onto.movable_receptacles]
    present = {r.type for r in fixed}
    for t in evidence.scene_types.get(fp, []):
        if t in onto.fixed_receptacles and t not in present and t != FLOOR:
            fixed.append(ReceptacleSpec(f"{t}|{fp}", t, None))
            present.add(t)
    fixed.append(ReceptacleSpec(FLOOR, FLOOR, (0.0, 0.0, 0.0)))

    # objects: one instance per pose entry; ids as AI2-THOR writes them
    poses: list[tuple[str, str, Vec3]] = []
    seen: Counter[str] = Counter()
    for i, p in enumerate(traj.object_poses):
        try:
            name, pd = p["objectName"], p["position"]
            typ = name.split("_")[0]
            pos = (float(pd["x"]), float(pd["y"]), float(pd["z"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{traj.path}: scene.object_poses[{i}] needs objectName and position x/y/z") from None
        if not onto.is_known(typ) or onto.canonical(typ) not in onto.pickupable:
            continue
        typ = onto.canonical(typ)
        oid = _fmt_id(typ, pos)
        seen[oid] += 1
        if seen[oid] > 1:
            oid = f"{oid}#{seen[oid]}"
        poses.append((oid, typ, pos))
    movables = [(oid, t, pos) for oid, t, pos in poses if t in onto.movable_receptacles]
    parent: dict[str, str] = {}
    for oid, typ, pos in poses:
        inferred = _infer_parent(typ, pos, fixed, [m for m in movables if m[0] != oid], onto)
        if inferred is not None:
            parent[oid] = inferred
    # movable receptacles nest at most one deep: one inside another keeps the outer one's place
    for oid, p in list(parent.items()):
        if p in parent and parent[p] in parent:
            parent[oid] = parent[p]

    # the plan's own evidence: where each object was picked up from
    by_id = {r.id: r for r in fixed}
    pos_of = {oid: pos for oid, _, pos in poses}
    type_of = {oid: t for oid, t, _ in poses}
    moved: set[str] = set()
    touched: list[str] = []
    for step in traj.high_pddl:
        pa = step.get("planner_action", {})
        if pa.get("action") == "SliceObject" and "objectId" in pa:
            oid = _match_object(pa["objectId"], pos_of, type_of)
            if oid is not None and oid not in touched:
                touched.append(oid)
    for step in traj.high_pddl:
        pa = step.get("planner_action", {})
        act = pa.get("action")
        if act == "PutObject" and "objectId" in pa:
            moved.add(pa["objectId"])
        if act != "PickupObject" or "objectId" not in pa or pa["objectId"] in moved or "Sliced" in pa["objectId"]:
            continue
        moved.add(pa["objectId"])
        oid = _match_object(pa["objectId"], pos_of, type_of)
        if oid is not None and oid not in touched:
            touched.append(oid)
        cr = pa.get("coordinateReceptacleObjectId")
        if oid is None or not cr:
            continue
        rtype, rpos = cr[0], _coord_pos(cr[1])
        current = _fixed_ancestor(oid, parent, by_id)
        if agreement is not None:
            agreement.checked += 1
            got = by_id[current].type if current else "nothing"
            if got == rtype:
                agreement.agreed += 1
            else:
                agreement.mismatches.append((oid, got, rtype))
        if use_plan and (current is None or by_id[current].type != rtype):
            same = [r for r in fixed if r.type == rtype]
            if same:
                parent[oid] = min(same, key=lambda r: math.dist(r.position, rpos) if r.position else 1e9).id

    lamps = []
    on = {t["objectType"] for t in traj.object_toggles if t.get("isOn")}
    lamp_types = [t for t in evidence.scene_types.get(fp, []) if t in onto.toggleable]
    known = evidence.lamps.get(fp, {})
    for typ in sorted(set(lamp_types) | {t for t, _ in known.values()}):
        placed = [(lid, p) for lid, (t, p) in sorted(known.items()) if t == typ]
        if not placed:
            placed = [(f"{typ}|{fp}", None)]
        for lid, lpos in placed:
            supports = [r for r in fixed if r.type in onto.lamp_supports.get(typ, ())]
            if not supports:
                continue
            if lpos is not None:
                home = min(supports, key=lambda r: math.dist(r.position, lpos) if r.position else 1e9)
            else:
                home = supports[0]
            lamps.append(ObjectSpec(lid, typ, home.id, lpos, frozenset({"on"}) if typ in on else frozenset()))

    objects = tuple(ObjectSpec(oid, typ, parent[oid], pos) for oid, typ, pos in poses if oid in parent) + tuple(lamps)
    # The objects the plan uses come first, in plan order: where a type-level action could mean several
    # objects ("GotoLocation apple" in a room with three apples), the world takes the first in scene order.
    rank = {oid: i for i, oid in enumerate(touched)}
    objects = tuple(sorted(objects, key=lambda o: rank.get(o.id, len(rank))))
    return SceneSpec(fp, room_of_floor_plan(fp), tuple(fixed), objects)


def _fixed_ancestor(oid: str, parent: dict[str, str], fixed: dict[str, ReceptacleSpec]) -> str | None:
    node: str | None = oid
    for _ in range(4):
        node = parent.get(node) if node is not None else None
        if node is None or node in fixed:
            return node
    return None


def _match_object(object_id: str, pos_of: dict[str, Vec3], type_of: dict[str, str]) -> str | None:
    if object_id in pos_of:
        return object_id
    parsed = _parse_id(object_id)
    if parsed is None:
        return None
    typ, pos = parsed
    cands = [o for o, t in type_of.items() if t == typ and math.dist(pos_of[o], pos) < 0.03]
    return min(cands, key=lambda o: math.dist(pos_of[o], pos)) if cands else None


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------
def _sentence(s: str) -> str:
    s = " ".join(s.split())
    if not s:
        return s
    s = s[0].upper() + s[1:]
    return s if s[-1] in ".!?" else s + "."


def tasks_from_trajectory(
    traj: AlfredTrajectory,
    scene: SceneSpec,
    subtasks: tuple[int, int] | None = None,
    onto: Ontology | None = None,
) -> list[TaskSpec]:
    """The task of a trajectory (``subtasks=None``) or its prefix tasks with k in the inclusive range.

    A full task's instructions are the human ``task_desc`` variants; a prefix task's are the human step
    descriptions (``high_descs``) up to its k-th sub-task, joined, one variant per annotation.
    """
    onto = onto or load_ontology()
    actions = map_high_pddl(traj, onto)
    n = sum(v != "GotoLocation" for v, _, _ in actions)
    p = traj.pddl_params

    def t(key: str) -> str | None:
        v = p.get(key)
        return onto.canonical(v) if v else None

    obj = t("object_target")
    if obj is None:
        raise ValueError(f"{traj.path}: pddl_params.object_target is empty")
    goal = goal_for_task_type(
        traj.task_type, obj, t("parent_target"), sliced=bool(p.get("object_sliced")), mrecep=t("mrecep_target"), toggle=t("toggle_target")
    )
    subgoals: list[tuple[Condition, ...]] = subgoals_from_plan(actions, onto)
    subgoals[-1] = goal  # the full task's goal is ALFRED's, whatever path the plan took
    expert = tuple(f"{v} {a.lower()}" for v, a, _ in actions)
    base = dict(task_type=traj.task_type, scene=scene, source=traj.path, params=p)
    if subtasks is None:
        descs = tuple(dict.fromkeys(_sentence(a.get("task_desc", "")) for a in traj.annotations if a.get("task_desc")))
        if not descs:
            raise ValueError(f"{traj.path}: no annotation has a task_desc")
        return [TaskSpec(traj.task_id, n_subtasks=n, instructions=descs, goal=goal, subgoals=tuple(subgoals), expert_actions=expert, **base)]
    lo, hi = subtasks
    out = []
    # index of the high_pddl step (NoOp excluded) that completes each sub-task
    sub_end = [i for i, (v, _, _) in enumerate(actions) if v != "GotoLocation"]
    usable = [a["high_descs"] for a in traj.annotations if isinstance(a.get("high_descs"), list) and len(a["high_descs"]) >= len(actions)]
    if not usable:
        raise ValueError(f"{traj.path}: no annotation has one high_desc per plan step ({len(actions)} steps)")
    for k in range(max(lo, 1), min(hi, n) + 1):
        end = sub_end[k - 1]
        instr = tuple(dict.fromkeys(" ".join(_sentence(d) for d in descs[: end + 1]) for descs in usable))
        out.append(
            TaskSpec(
                traj.task_id,
                n_subtasks=k,
                instructions=instr,
                goal=subgoals[k - 1],
                subgoals=tuple(subgoals[:k]),
                expert_actions=expert[: end + 1],
                prefix=k if k < n else None,
                **base,
            )
        )
    return out


def parse_subtask_range(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"1-6"`` -> ``(1, 6)``, ``"3"`` -> ``(3, 3)``; None stays None."""
    if spec is None or isinstance(spec, tuple):
        return spec
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(spec))
    if not m:
        raise ValueError(f"subtasks must look like '1-6' or '3', got {spec!r}")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 1 <= lo <= hi:
        raise ValueError(f"subtasks range must satisfy 1 <= low <= high, got {spec!r}")
    return lo, hi


@dataclass
class LoadReport:
    """What :func:`load_split` loaded, and what it could not use and why."""

    split: str
    tasks: list[TaskSpec]
    trajectories: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> one file it happened to
    agreement: SceneAgreement = field(default_factory=SceneAgreement)
    randomized_unplannable: int = 0  # tasks kept whose seeded randomized check found no plan (see verify_task)

    def skip(self, reason: str, path: str) -> None:
        """Count a trajectory or task that cannot be used, with one example file per reason."""
        self.skipped[reason] += 1
        self.examples.setdefault(reason, path)

    def summary(self) -> str:
        s = f"{self.split}: {self.trajectories} trajectories -> {len(self.tasks)} tasks"
        if self.skipped:
            s += f"; could not use {sum(self.skipped.values())}: " + ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
        return s


def _trajectory_files(alfred_dir: Path, split: str) -> list[Path]:
    if not alfred_dir.is_dir():
        raise FileNotFoundError(f"alfred_dir {str(alfred_dir)!r} is not a directory (expected ALFRED's json_2.1.0 folder)")
    split_dir = alfred_dir / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in alfred_dir.iterdir() if p.is_dir())
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)} (found here: {', '.join(have) or 'none'})")
        raise FileNotFoundError(f"split {split!r} not found in {alfred_dir} (found: {', '.join(have) or 'no splits'})")
    files = sorted(split_dir.glob("*/*/traj_data.json"))
    if not files:
        raise FileNotFoundError(f"{split_dir}: no */*/traj_data.json files (is alfred_dir ALFRED's json_2.1.0 folder?)")
    return files


def _default_layouts(alfred_dir: Path) -> Path | None:
    for cand in (alfred_dir.parent / "layouts", alfred_dir / "layouts", alfred_dir.parent / "gen" / "layouts"):
        if cand.is_dir():
            return cand
    return None


@lru_cache(maxsize=8)
def _load_split_cached(alfred_dir: str, split: str, subtasks: tuple[int, int] | None, layouts_dir: str | None) -> LoadReport:
    root = Path(alfred_dir)
    files = _trajectory_files(root, split)
    onto = load_ontology()
    evidence = SceneEvidence(layouts_dir=Path(layouts_dir) if layouts_dir else _default_layouts(root))
    report = LoadReport(split=split, tasks=[])
    trajs: list[AlfredTrajectory] = []
    # every split on disk contributes receptacle evidence for its floor plans
    other = [f for s in SPLITS if s != split and (root / s).is_dir() for f in sorted((root / s).glob("*/*/traj_data.json"))]
    in_split = set(files)
    for path in files + other:
        try:
            traj = load_trajectory(path)
            evidence.add_layout(traj.floor_plan)
            evidence.add_plan(traj)
        except (ValueError, FileNotFoundError) as exc:
            if path in in_split:
                report.skip(str(exc).split(": ", 1)[-1].split(" (")[0], str(path))
            continue
        except Exception as exc:  # a malformed file must not abort the split: report it like any other
            if path in in_split:
                report.skip(f"malformed traj_data.json ({type(exc).__name__})", str(path))
            continue
        if path in in_split:
            trajs.append(traj)
    report.trajectories = len(files)
    for traj in trajs:
        try:
            scene = reconstruct_scene(traj, evidence, onto, report.agreement)
            tasks = tasks_from_trajectory(traj, scene, subtasks, onto)
        except ValueError as exc:
            reason = str(exc).split(": ", 1)[-1]
            report.skip(re.sub(r"\[\d+\]", "[i]", reason), traj.path)
            continue
        except Exception as exc:  # a malformed file must not abort the split: report it like any other
            report.skip(f"malformed traj_data.json ({type(exc).__name__})", traj.path)
            continue
        for task in tasks:
            reason = verify_task(task, onto, report)
            if reason is None:
                report.tasks.append(task)
            else:
                report.skip(reason, traj.path)
    return report


def verify_task(task: TaskSpec, onto: Ontology | None = None, report: LoadReport | None = None) -> str | None:
    """Why a task cannot be offered (None: it can), checked by planning from its initial state.

    A task is refused when the expert planner finds no plan from the dataset's initial state, or when its
    goal already holds there (nothing to do). One randomized initial state (seeded by the task) is planned
    too; where that fails the task is kept, because the environment only offers randomized states it can
    plan from, and ``report.randomized_unplannable`` counts it.
    """
    from rgvlm_gym.alfred.planner import expert_plan  # the planner imports the task module: late import
    from rgvlm_gym.alfred.scene import randomize_scene

    onto = onto or load_ontology()
    try:
        world = World(task.scene, onto)
        if task.is_success(world):
            return "goal already holds in the reconstructed initial state"
        expert_plan(world, task.goal)
    except Exception as exc:  # PlanningError, or a scene the world cannot hold: the task is refused, never raised later
        return f"no expert plan from the initial state ({re.sub(r'[A-Z][A-Za-z]*[|][^ ]*', '<object>', str(exc))})"
    seed = zlib.crc32(f"{task.task_id}/{task.n_subtasks}".encode())
    try:
        expert_plan(World(randomize_scene(task.scene, np.random.default_rng(seed), onto), onto), task.goal)
    except Exception:
        if report is not None:
            report.randomized_unplannable += 1
    return None


def load_split(
    alfred_dir: str | Path,
    split: str,
    subtasks: str | tuple[int, int] | None = None,
    layouts_dir: str | Path | None = None,
) -> LoadReport:
    """Load every trajectory of a split as tasks (cached per process).

    Args:
        alfred_dir: ALFRED's ``json_2.1.0`` folder (``<split>/<task>/<trial>/traj_data.json``).
        split: ``train``, ``valid_seen``, ...
        subtasks: None for the full tasks; ``"1-6"`` for every prefix task with 1..6 sub-tasks.
        layouts_dir: ALFRED's ``layouts`` folder (default: next to ``alfred_dir``); optional.

    Nothing is skipped silently: the report counts unusable trajectories and tasks by reason. A malformed
    ``traj_data.json`` is one of them (it never aborts the split), and so is a task the expert planner
    cannot solve from its initial state (:func:`verify_task`): every task in the report has a plan.
    """
    rng = parse_subtask_range(subtasks)
    return _load_split_cached(str(Path(alfred_dir).resolve()), split, rng, str(layouts_dir) if layouts_dir else None)


def iter_trajectories(alfred_dir: str | Path, split: str) -> Iterable[AlfredTrajectory]:
    """Every valid trajectory of a split, in a stable order (invalid ones raise)."""
    for path in _trajectory_files(Path(alfred_dir), split):
        yield load_trajectory(path)

"""ALFRED's object and receptacle ontology, loaded from the package data file ``envs/ontology.json``.

Holds :class:`Ontology` (affordances, receptacle compatibility, room kinds, receptacle geometry priors)
and :func:`load_ontology` (cached). Type names are ALFRED's CamelCase (``ButterKnife``); the action
vocabulary uses their lowercase form (``butterknife``), see :meth:`Ontology.canonical`.

    >>> onto = load_ontology()
    >>> onto.canonical("butterknife")
    'ButterKnife'
    >>> onto.fits("Apple", "Fridge"), onto.fits("Laptop", "Microwave")
    (True, False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["Ontology", "data_dir", "load_ontology", "room_of_floor_plan"]

FLOOR = "Floor"  # pseudo-receptacle for objects lying on the floor


def data_dir() -> Path:
    """Directory of the declarative environment definitions (``envs/`` in the source tree).

    A wheel ships them as ``rgvlm_gym/_envdata``; an editable install reads the repository's ``envs/``.
    """
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_envdata", here.parent / "envs"):
        if (candidate / "ontology.json").is_file():
            return candidate
    raise FileNotFoundError(f"rgvlm-gym data files not found next to {here} (looked for _envdata/ and ../envs/)")


@dataclass(frozen=True)
class Ontology:
    """Affordances and receptacle compatibility of ALFRED's object types."""

    pickupable: frozenset[str]
    movable_receptacles: frozenset[str]
    openable: frozenset[str]
    toggleable: frozenset[str]
    sliceable: frozenset[str]
    slicing_tools: frozenset[str]
    heatable: frozenset[str]
    coolable: frozenset[str]
    cleanable: frozenset[str]
    appliances: dict[str, str]
    static_objects: frozenset[str]
    lamp_supports: dict[str, tuple[str, ...]]
    receptacles: dict[str, frozenset[str]]
    rooms: dict[str, dict[str, Any]]
    geometry: dict[str, dict[str, Any]]
    _by_lower: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ontology:
        def fs(key: str) -> frozenset[str]:
            return frozenset(data[key])

        receptacles = {k: frozenset(v) for k, v in data["receptacles"].items()}
        geometry = {k: v for k, v in data["receptacle_geometry"].items() if not k.startswith("_")}
        onto = cls(
            pickupable=fs("pickupable"),
            movable_receptacles=fs("movable_receptacles"),
            openable=fs("openable"),
            toggleable=fs("toggleable"),
            sliceable=fs("sliceable"),
            slicing_tools=fs("slicing_tools"),
            heatable=fs("heatable"),
            coolable=fs("coolable"),
            cleanable=fs("cleanable"),
            appliances=dict(data["appliances"]),
            static_objects=fs("static_objects"),
            lamp_supports={k: tuple(v) for k, v in data["lamp_supports"].items()},
            receptacles=receptacles,
            rooms=dict(data["rooms"]),
            geometry=geometry,
        )
        names = onto.pickupable | onto.static_objects | set(receptacles)
        onto._by_lower.update({n.lower(): n for n in names})
        return onto

    # -- type sets ---------------------------------------------------------------------------------
    @property
    def fixed_receptacles(self) -> frozenset[str]:
        """Receptacles that never move (counters, cabinets, fridges, ... and the floor)."""
        return frozenset(self.receptacles) - self.movable_receptacles

    @property
    def all_types(self) -> frozenset[str]:
        return frozenset(self._by_lower.values())

    # -- queries -----------------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        """ALFRED CamelCase type of a (case-insensitive) type name; raises ``ValueError`` if unknown."""
        try:
            return self._by_lower[name.lower()]
        except KeyError:
            raise ValueError(f"unknown ALFRED object type {name!r}") from None

    def is_known(self, name: str) -> bool:
        return name.lower() in self._by_lower

    def fits(self, obj_type: str, recep_type: str) -> bool:
        """Whether an object of ``obj_type`` may be put into a receptacle of ``recep_type``."""
        return obj_type in self.receptacles.get(recep_type, ())

    def is_receptacle(self, name: str) -> bool:
        return name in self.receptacles


@cache
def load_ontology(path: str | None = None) -> Ontology:
    """Load (and cache) the ontology from ``envs/ontology.json`` or an explicit path."""
    file = Path(path) if path else data_dir() / "ontology.json"
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from exc
    return Ontology.from_json(data)


def room_of_floor_plan(floor_plan: str | int) -> str:
    """Room kind of an AI2-THOR floor plan (``"FloorPlan301"`` -> ``"bedroom"``)."""
    num = int(str(floor_plan).removeprefix("FloorPlan").split("_")[0])
    for room, spec in load_ontology().rooms.items():
        lo, hi = spec["floor_plans"]
        if lo <= num <= hi:
            return room
    raise ValueError(f"floor plan {floor_plan!r} is not in any ALFRED room range (1-30, 201-230, 301-330, 401-430)")

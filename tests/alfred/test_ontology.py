"""The ontology covers ALFRED's published type lists (issue 12).

The lists below are an independent listing of the type names ALFRED's generator defines (its object list,
receptacle list, openable and affordance lists, and a sample of its receptacle compatibilities), typed
from ALFRED's documentation of ``gen/constants.py``; the ontology is read from ``envs/ontology.json``.
"""

from __future__ import annotations

import pytest

from rgvlm_gym.alfred.ontology import load_ontology
from rgvlm_gym.envs.alfred_lite import action_vocabulary
from rgvlm_gym.envs.versions import current_action_names

ONTO = load_ontology()


def names(text: str) -> list[str]:
    return text.split()


ALFRED_OBJECTS = names("""
AlarmClock Apple ArmChair BaseballBat BasketBall Bathtub BathtubBasin Bed Blinds Book Boots Bowl Box Bread ButterKnife
Cabinet Candle Cart CD CellPhone Chair Cloth CoffeeMachine CounterTop CreditCard Cup Curtains Desk DeskLamp DishSponge
Drawer Dresser Egg FloorLamp Footstool Fork Fridge GarbageCan Glassbottle HandTowel HandTowelHolder HousePlant Kettle
KeyChain Knife Ladle Laptop LaundryHamper LaundryHamperLid Lettuce LightSwitch Microwave Mirror Mug Newspaper Ottoman
Painting Pan PaperTowel PaperTowelRoll Pen Pencil PepperShaker Pillow Plate Plunger Poster Pot Potato RemoteControl Safe
SaltShaker ScrubBrush Shelf ShowerDoor ShowerGlass Sink SinkBasin SoapBar SoapBottle Sofa Spatula Spoon SprayBottle
Statue StoveBurner StoveKnob DiningTable CoffeeTable SideTable TeddyBear Television TennisRacket TissueBox Toaster Toilet
ToiletPaper ToiletPaperHanger ToiletPaperRoll Tomato Towel TowelHolder TVStand Vase Watch WateringCan Window WineBottle
""")
ALFRED_RECEPTACLES = names("""
BathtubBasin Bowl Cup Drawer Mug Plate Shelf SinkBasin Box Cabinet CoffeeMachine CounterTop Fridge GarbageCan
HandTowelHolder Microwave PaintingHanger Pan Pot StoveBurner DiningTable CoffeeTable SideTable ToiletPaperHanger
TowelHolder Safe ArmChair Toilet Sofa Ottoman Dresser LaundryHamper Desk Bed Cart TVStand Toaster
""")
ALFRED_MOVABLE_RECEPTACLES = names("Bowl Box Cup Mug Plate Pan Pot")
ALFRED_OPENABLE = names("Fridge Cabinet Microwave Drawer Safe Box")
ALFRED_TOGGLEABLE = names("DeskLamp FloorLamp")
ALFRED_SLICEABLE = names("Apple Bread Egg Lettuce Potato Tomato")
ALFRED_HEATABLE = names("Apple Bread Cup Egg Mug Plate Potato Tomato")
ALFRED_COOLABLE = names("Apple Bowl Bread Cup Egg Lettuce Mug Pan Plate Pot Potato Tomato WineBottle")
ALFRED_CLEANABLE = names("Apple Bowl ButterKnife Cloth Cup DishSponge Egg Fork Kettle Knife Ladle Lettuce Mug Pan Plate Pot Potato SoapBar Spatula Spoon Tomato")
# (object, receptacle) pairs ALFRED allows, including those the first ontology lacked (the failures)
ALFRED_FITS = [
    ("Glassbottle", "Plate"), ("Glassbottle", "Microwave"), ("Glassbottle", "Box"), ("Book", "Plate"), ("Mug", "Bowl"),
    ("Candle", "Bowl"), ("KeyChain", "Mug"), ("Watch", "Mug"), ("BasketBall", "Sofa"), ("Cloth", "ArmChair"),
    ("Cloth", "LaundryHamper"), ("Bread", "Toaster"), ("Plunger", "Cart"), ("Plunger", "Cabinet"),
    ("ToiletPaperRoll", "ToiletPaperHanger"), ("PaperTowel", "Toilet"), ("Newspaper", "Toilet"), ("WateringCan", "Drawer"),
    ("Apple", "Fridge"), ("Mug", "CoffeeMachine"), ("Kettle", "StoveBurner"), ("Towel", "TowelHolder"),
    ("HandTowel", "HandTowelHolder"), ("CreditCard", "Safe"), ("TissueBox", "TVStand"), ("Pillow", "Bed"),
]


def test_every_alfred_type_is_known() -> None:
    missing = [t for t in ALFRED_OBJECTS if not ONTO.is_known(t)]
    assert not missing, f"ALFRED types missing from envs/ontology.json: {missing}"
    assert all(ONTO.canonical(t.lower()) == t for t in ALFRED_OBJECTS)


def test_every_alfred_receptacle_is_a_receptacle() -> None:
    assert [r for r in ALFRED_RECEPTACLES if not ONTO.is_receptacle(r)] == []
    assert set(ALFRED_MOVABLE_RECEPTACLES) == ONTO.movable_receptacles


@pytest.mark.parametrize(
    ("name", "listed"),
    [("openable", ALFRED_OPENABLE), ("toggleable", ALFRED_TOGGLEABLE), ("sliceable", ALFRED_SLICEABLE),
     ("heatable", ALFRED_HEATABLE), ("coolable", ALFRED_COOLABLE), ("cleanable", ALFRED_CLEANABLE)],
)
def test_affordance_lists_match_alfred(name: str, listed: list[str]) -> None:
    assert getattr(ONTO, name) == frozenset(listed)


@pytest.mark.parametrize(("obj", "recep"), ALFRED_FITS)
def test_alfred_receptacle_compatibilities(obj: str, recep: str) -> None:
    assert ONTO.fits(obj, recep)


def test_every_object_alfred_places_somewhere_is_pickupable_and_has_a_place() -> None:
    for obj, _ in ALFRED_FITS:
        assert obj in ONTO.pickupable, obj
    # every pickupable type fits at least one fixed receptacle, so a scene can always hold it
    fixed = ONTO.fixed_receptacles
    assert [t for t in ONTO.pickupable if not any(ONTO.fits(t, r) for r in fixed)] == []


def test_vocabulary_has_actions_for_the_new_types() -> None:
    names = set(current_action_names())
    for a in ("PickupObject papertowel", "PickupObject toiletpaperroll", "PickupObject plunger", "PutObject toaster",
              "PutObject laundryhamper", "SliceObject egg", "GotoLocation plunger"):
        assert a in names
    assert len(names) == len(action_vocabulary())  # no duplicates

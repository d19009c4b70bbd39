"""Actions as text: every AlfredLite action read as a short English phrase and embedded like instructions.

Holds :func:`describe_action` and :func:`action_text_embeddings`. A policy (or Q-function) that scores an
action through the embedding of its phrase -- ``logits = (W h) . e(action)`` -- shares what it learns
between actions whose names mean similar things, and ties "the apple" in an instruction to
``PickupObject apple``: with a few thousand episodes, most of ALFRED's ~100 object and receptacle types are
seen a handful of times, so per-action output units alone barely generalise to held-out tasks
(``benchmarks/RESULTS.md``, "Learning recipe").

    >>> describe_action("PickupObject apple"), describe_action("PutObject sinkbasin")
    ('pick up the apple', 'put it in the sink basin')
    >>> describe_action("GotoLocation countertop")
    'go to the counter top'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["action_text_embeddings", "describe_action"]

_VERBS = {
    "GotoLocation": "go to the {}",
    "PickupObject": "pick up the {}",
    "PutObject": "put it in the {}",
    "ToggleObject": "turn on the {}",
    "SliceObject": "slice the {}",
    "HeatObject": "heat the {}",
    "CoolObject": "cool the {}",
    "CleanObject": "clean the {}",
}
# ALFRED's type names run words together; these are the pieces they are made of (a longest-match split)
_WORD_LIST = """alarm arm baseball basin bat bath bathtub bed bin blinds book bottle bowl box bread butter can candle cart
    cd cell chair cloth clock coffee computer counter credit card cup curtains desk dining dish dresser egg faucet
    floor fork fridge garbage glass hand houseplant kettle key keychain knife ladle lamp laptop lettuce light
    machine microwave mirror mug newspaper ottoman painting pan paper pen pencil pepper phone pillow plate plunger
    plant pot potato remote control safe salt saltshaker shaker shelf shower door side sink soap sofa spatula
    sponge spoon spray statue stool stove burner knob table teddy bear television tennis racket tissue toaster
    toilet top towel holder tv stand vase watch watering window wine ring roll head curtain
    apple tomato candle poster coat hanger hamper scrub brush"""
_WORDS = sorted(_WORD_LIST.split(), key=len, reverse=True)


def _split_words(name: str) -> str:
    out: list[str] = []
    rest = name.lower()
    while rest:
        for w in _WORDS:
            if rest.startswith(w):
                out.append(w)
                rest = rest[len(w) :]
                break
        else:  # an unknown piece: keep the rest as one word
            out.append(rest)
            break
    return " ".join(out)


def describe_action(name: str) -> str:
    """``"PickupObject apple"`` -> ``"pick up the apple"`` (a phrase a sentence encoder reads well)."""
    verb, _, arg = name.strip().partition(" ")
    template = _VERBS.get(verb)
    words = _split_words(re.sub(r"[^a-z]", "", arg.lower()))
    return template.format(words) if template else f"{verb} {words}".strip()


@lru_cache(maxsize=8)
def _embed(phrases: tuple[str, ...], encoder: str) -> np.ndarray:
    from rgvlm_gym.data.embeddings import InstructionEmbedder

    return np.asarray(InstructionEmbedder(encoder)(list(phrases)), dtype=np.float32)


def action_text_embeddings(action_names: Sequence[str], encoder: str = "minilm") -> np.ndarray:
    """(A, D) float32 sentence embeddings of the actions' phrases (cached on disk like instructions)."""
    return _embed(tuple(describe_action(a) for a in action_names), encoder).copy()

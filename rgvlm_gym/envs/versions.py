"""Environment ids and the action vocabulary they stand for.

Holds :data:`ENV_ID` (the canonical id), :data:`ENV_IDS` (every registered id of the same environment),
:class:`VocabularyMismatchError` and :func:`check_action_names`.

``rgvlm_gym/AlfredLite-v1`` is the canonical id: its action vocabulary is built from ALFRED's *full*
object and receptacle lists (``envs/ontology.json`` version 2). ``rgvlm_gym/AlfredLite-v0`` stays registered
as an alias of the same environment so existing scripts keep running; it is **not** the old vocabulary.
Datasets and models keep the action names they were recorded with; one whose names differ from the
current vocabulary (anything recorded by rgvlm-gym before the full ontology, when v0 had 229 actions) is
refused with a message naming the mismatch, never silently reinterpreted: an action index means a
different action across vocabularies, so training on it or evaluating it would be wrong without an error.

    >>> from rgvlm_gym.envs.versions import check_action_names, current_action_names
    >>> check_action_names(current_action_names(), "this dataset")  # same vocabulary: nothing to say
    >>> check_action_names(["GotoLocation countertop"], "dataset 'old/x-v0'")
    Traceback (most recent call last):
    ...
    rgvlm_gym.envs.versions.VocabularyMismatchError: dataset 'old/x-v0' was recorded with another action vocabulary ...
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ENV_ID", "ENV_IDS", "LEGACY_ENV_IDS", "VocabularyMismatchError", "check_action_names", "current_action_names"]

ENV_ID = "rgvlm_gym/AlfredLite-v1"
LEGACY_ENV_IDS = ("rgvlm_gym/AlfredLite-v0",)  # aliases of the same environment (same vocabulary)
ENV_IDS = (ENV_ID, *LEGACY_ENV_IDS)


class VocabularyMismatchError(ValueError):
    """A dataset or model was recorded with an action vocabulary other than the current one."""


def current_action_names() -> list[str]:
    """The action names of the current AlfredLite vocabulary (``env.unwrapped.action_names``)."""
    from rgvlm_gym.envs.alfred_lite import action_vocabulary

    return [f"{verb} {typ.lower()}" for verb, typ in action_vocabulary()]


def check_action_names(names: Sequence[str] | int, what: str) -> None:
    """Raise :class:`VocabularyMismatchError` unless ``names`` (or an action count) is the current vocabulary.

    Args:
        names: the recorded action names, or only their number (a model that stores no names).
        what: how to call the thing in the message, e.g. ``"dataset 'ns/name-v0'"``.
    """
    current = current_action_names()
    if isinstance(names, int):
        if names == len(current):
            return
        detail = f"it has {names} actions, {ENV_ID} has {len(current)}"
    else:
        names = list(names)
        if names == current:
            return
        first = next((i for i, (a, b) in enumerate(zip(names, current, strict=False)) if a != b), min(len(names), len(current)))
        there = repr(names[first]) if first < len(names) else "missing"
        here = repr(current[first]) if first < len(current) else "missing"
        detail = f"{len(names)} actions there, {len(current)} in {ENV_ID}; action {first} is {there} there but {here} here"
    raise VocabularyMismatchError(
        f"{what} was recorded with another action vocabulary ({detail}). {ENV_ID} (alias {', '.join(LEGACY_ENV_IDS)}) uses "
        "ALFRED's full object list; data and models recorded before it (rgvlm-gym's AlfredLite-v0 vocabulary) are not "
        "remapped, because an action index means another action there. Re-collect the dataset / retrain the model with "
        "this rgvlm-gym, or read it with the rgvlm-gym version that wrote it."
    )

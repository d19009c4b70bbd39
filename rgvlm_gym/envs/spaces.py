"""Observation spaces shared by rgvlm-gym's environments.

Holds :data:`AUTORESET_MODE` (declared in the envs' metadata, as Gymnasium 1.x expects: vector envs
of these envs reset an ended sub-environment on the *next* step), :class:`InstructionText`, a :class:`gymnasium.spaces.Text` whose values travel correctly through an
``AsyncVectorEnv``'s shared memory, and :class:`SharedTexts`, the live view it reads there.

Why: Gymnasium 1.0's async vector env reads its shared observation buffer *once*, when it is built, and
then returns that object after every step, relying on NumPy views to see the workers' writes. A plain
``Text`` space is read into a tuple of ``str`` (a snapshot of the empty buffer), so every instruction came
back as 2,048 copies of the charset's first character. ``InstructionText`` reads into :class:`SharedTexts`,
which decodes the buffer when indexed, and whose ``deepcopy`` (what the vector env returns by default) is a
plain tuple of the current strings. Everything else (sampling, ``contains``, flattening, Minari's
serialization, equality with ``Text``) is ``Text``'s own.

    >>> import gymnasium as gym
    >>> import rgvlm_gym
    >>> envs = gym.make_vec("rgvlm_gym/AlfredLite-v1", num_envs=2, vectorization_mode="async", num_tasks=10)
    >>> obs, infos = envs.reset(seed=0)
    >>> list(obs["instruction"]) == list(infos["task"]["instruction"]), len(obs["instruction"][0]) < 2048
    (True, True)
    >>> envs.close()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import read_from_shared_memory

__all__ = ["AUTORESET_MODE", "InstructionText", "SharedTexts"]

try:  # Gymnasium >= 1.1 names the modes; 1.0's vector envs reset on the step after an episode ends
    from gymnasium.vector import AutoresetMode

    AUTORESET_MODE: Any = AutoresetMode.NEXT_STEP
except ImportError:
    AUTORESET_MODE = "NextStep"


class InstructionText(spaces.Text):
    """A ``Text`` space that an ``AsyncVectorEnv`` shares correctly (see the module docstring)."""


class SharedTexts(Sequence[str]):
    """The ``n`` strings of a shared ``Text`` buffer, decoded on access (a live view, like a NumPy view)."""

    def __init__(self, space: spaces.Text, shared_memory: Any, n: int) -> None:
        self._space, self._memory, self._n = space, shared_memory, n
        self._chars = np.array(list(space.character_list) + [""], dtype=object)

    def _codes(self) -> np.ndarray:
        return np.frombuffer(self._memory.get_obj(), dtype=np.int32).reshape(self._n, self._space.max_length)

    def _decode(self, codes: np.ndarray) -> str:
        # padding is len(charset), mapped to "" by the extra entry
        return "".join(self._chars[np.minimum(codes, len(self._chars) - 1)])

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        if isinstance(i, slice):
            return tuple(self)[i]
        codes = self._codes()
        return self._decode(codes[range(self._n)[i]])

    def __iter__(self) -> Iterator[str]:
        codes = self._codes()
        return iter([self._decode(row) for row in codes])

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (tuple, list, SharedTexts)) else other)

    __hash__ = None  # type: ignore[assignment]  # mutable view

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return repr(tuple(self))


@read_from_shared_memory.register(InstructionText)
def _read_instruction_text(space: InstructionText, shared_memory: Any, n: int = 1) -> SharedTexts:
    return SharedTexts(space, shared_memory, n)

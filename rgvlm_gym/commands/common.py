"""Checks several sub-commands share: :func:`check_device` and :func:`load_model`.

Both turn what the user typed into a clear :class:`~rgvlm_gym.errors.UsageError` instead of a traceback from
deep inside torch or d3rlpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rgvlm_gym.errors import UsageError
from rgvlm_gym.rl.device import check_device

__all__ = ["check_device", "load_model"]


def load_model(path: str | Path, device: str) -> Any:
    """``d3rlpy.load_learnable(path)`` with a clear error when the file is not a d3rlpy model."""
    import d3rlpy

    import rgvlm_gym.rl  # noqa: F401  (registers DiscreteIQL and the encoder with d3rlpy)

    model = Path(path)
    if not model.is_file():
        raise FileNotFoundError(f"no model file at {model}")
    try:
        return d3rlpy.load_learnable(str(model), device=check_device(device))
    except UsageError:
        raise
    except Exception as exc:  # pickle, zip, torch and d3rlpy each fail differently on a file that is not a model
        raise UsageError(f"{model} is not a model saved by `rgvlm train` / d3rlpy's save ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from exc

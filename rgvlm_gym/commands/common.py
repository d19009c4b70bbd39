"""Checks several sub-commands share: :func:`check_device` and :func:`load_model`.

Both turn what the user typed into a clear :class:`~rgvlm_gym.errors.UsageError` instead of a traceback from
deep inside torch or d3rlpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rgvlm_gym.errors import UsageError

__all__ = ["check_device", "load_model"]


def check_device(device: str) -> str:
    """``device`` if torch can use it here (``cpu``, ``cuda``, ``cuda:N``, ``mps``), else a UsageError.

    >>> check_device("cpu")
    'cpu'
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UsageError(f"Expect --device to be a torch device such as 'cpu' or 'cuda:0', actually: {device!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available here: this torch build has no CUDA device (torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError(f"--device {device}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {device}: rgvlm-gym runs on cpu, cuda or mps")
    return device


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

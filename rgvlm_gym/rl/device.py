"""Which torch device a run may use: :func:`check_device` (a clear error instead of torch's assertion).

    >>> check_device("cpu")
    'cpu'
"""

from __future__ import annotations

from rgvlm_gym.errors import UsageError

__all__ = ["check_device"]


def check_device(device: str) -> str:
    """``device`` if torch can use it here (``cpu``, ``cuda``, ``cuda:N``, ``mps``), else a UsageError."""
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

"""The errors rgvlm-gym raises for its users' mistakes and for faults of the world around it.

Holds :class:`RgvlmError` (the family), :class:`UsageError` (bad input: an argument, a spec, an id),
:class:`DatasetBusyError` (another process is writing that dataset id) and :class:`DiskFullError`.

The ``rgvlm`` command prints these as one line (``rgvlm <command>: error: ...``) and exits 1; any other
exception is a bug and keeps its traceback. Each class also derives from the built-in a Python caller
would expect (``ValueError``, ``FileExistsError``, ``OSError``), so ``except ValueError`` keeps working.

    >>> issubclass(UsageError, ValueError), issubclass(DatasetBusyError, FileExistsError)
    (True, True)
    >>> DiskFullError("no room").errno
    28
"""

from __future__ import annotations

import errno

__all__ = ["DatasetBusyError", "DiskFullError", "RgvlmError", "UsageError"]


class RgvlmError(Exception):
    """Base of the errors the ``rgvlm`` command reports without a traceback."""


class UsageError(RgvlmError, ValueError):
    """Bad input from the user: an argument, a spec string, a dataset id, a file that is not what it should be."""


class DatasetBusyError(RgvlmError, FileExistsError):
    """Another process is writing a dataset with that id right now (its claim is held)."""


class DiskFullError(RgvlmError, OSError):
    """Not enough free space to write; nothing was published and temporary files were removed."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)

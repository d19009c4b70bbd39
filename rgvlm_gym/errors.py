"""The errors rgvlm-gym raises for its users' mistakes and for faults of the world around it.

Holds :class:`RgvlmError` (the family), :class:`UsageError` (bad input: an argument, a spec, an id),
:class:`DatasetBusyError` (another process is writing that dataset id), :class:`DiskFullError`,
:class:`WriterError` (the dataset writer process died) and :class:`LabelingError` (a relabel job left more
episodes unlabeled than it may; nothing was published).

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

__all__ = ["DatasetBusyError", "DiskFullError", "LabelingError", "RgvlmError", "UsageError", "WriterError"]


class RgvlmError(Exception):
    """Base of the errors the ``rgvlm`` command reports without a traceback."""


class UsageError(RgvlmError, ValueError):
    """Bad input from the user: an argument, a spec string, a dataset id, a file that is not what it should be."""


class DatasetBusyError(RgvlmError, FileExistsError):
    """Another process is writing a dataset with that id right now (its claim is held)."""


class DiskFullError(RgvlmError, OSError):
    """Not enough free space to write; nothing was published and temporary files were removed."""

    def __init__(self, message: str, *more: str) -> None:
        # pickling re-creates an OSError from its args, (errno, message): accept both forms
        super().__init__(errno.ENOSPC, more[0] if more else message)

    def __str__(self) -> str:
        return str(self.strerror)


class WriterError(RgvlmError, RuntimeError):
    """The process writing a dataset died before it finished (killed, crashed); nothing was published."""


class LabelingError(RgvlmError, RuntimeError):
    """A relabel job left more episodes unlabeled than ``max_unlabeled`` allows; the dataset was not published.

    ``summary`` holds what the job did up to the point it stopped (a ``RelabelSummary``) when known.
    """

    def __init__(self, message: str, summary: object = None) -> None:
        super().__init__(message)
        self.summary = summary

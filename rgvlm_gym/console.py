"""What rgvlm-gym's dependencies print: silence the foreign noise, keep users' own messages.

Holds :func:`silence_gym_banner`, :func:`quiet_foreign_output` and :func:`strip_ansi`.

- Old ``gym`` (pulled in by d3rlpy, never used by rgvlm-gym, which is on Gymnasium) prints a 3-line
  "Gym has been unmaintained since 2022 ..." notice from ``gym_notices`` when imported.
  :func:`silence_gym_banner` makes that one optional import fail, which gym skips silently; it runs when
  ``rgvlm_gym`` is imported. Nothing else of gym changes.
- d3rlpy logs through structlog at info/debug level (the full parameter dump, "Building models...") in
  colour on stdout. :func:`quiet_foreign_output` (called once by the ``rgvlm`` command) keeps structlog's
  warnings and errors only, on stderr, in plain text unless stderr is a terminal; and strips ANSI colour
  codes (Gymnasium's ``logger.warn`` adds them) from warnings when stderr is not a terminal. It does
  not filter any warning: users' own warnings still show. In a pipe or a log file, progress bars redraw
  at most every 10 s instead of 10 times a second (``TQDM_MININTERVAL``, unless set).

    >>> strip_ansi("\\x1b[33mWARN: careful\\x1b[0m")
    'WARN: careful'
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Any, TextIO

__all__ = ["quiet_foreign_output", "silence_gym_banner", "strip_ansi"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves)."""
    return _ANSI.sub("", text)


def silence_gym_banner() -> None:
    """Stop old gym's import-time "unmaintained" notice (it is printed only when ``gym_notices.notices``
    imports; gym catches the failure). Does nothing once gym is imported, or when a program imported
    ``gym_notices.notices`` itself."""
    if "gym" not in sys.modules:
        sys.modules.setdefault("gym_notices.notices", None)  # type: ignore[arg-type]


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _PlainPrintLogger:
    """A structlog logger writing to a stream, without colour codes when the stream is not a terminal."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def msg(self, message: str) -> None:
        text = message if _is_tty(self._file) else strip_ansi(message)
        print(text, file=self._file, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = failure = fatal = msg


def quiet_foreign_output(level: int = logging.WARNING) -> None:
    """Keep only warnings from d3rlpy's structlog logs (on stderr) and keep ANSI codes out of pipes.

    Safe before or after d3rlpy is imported: d3rlpy's ``structlog.configure`` sets processors only, and
    the level filter and logger factory set here are kept.
    """
    silence_gym_banner()
    if not _is_tty(sys.stderr):  # a log file gets a line per redraw: fewer redraws
        os.environ.setdefault("TQDM_MININTERVAL", "10")
    try:
        import structlog
    except ImportError:  # d3rlpy not installed: nothing of it to quiet
        structlog = None
    if structlog is not None:
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=lambda *args: _PlainPrintLogger(sys.stderr),
            cache_logger_on_first_use=False,
        )
    if not getattr(warnings.formatwarning, "_rgvlm_plain", False):
        original = warnings.formatwarning

        def formatwarning(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
            text = original(message, category, filename, lineno, line)
            return text if _is_tty(sys.stderr) else strip_ansi(text)

        formatwarning._rgvlm_plain = True  # type: ignore[attr-defined]
        warnings.formatwarning = formatwarning

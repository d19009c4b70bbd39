"""Writing files that people and later runs depend on: all or nothing (:func:`atomic_path`, :func:`atomic_write_text`).

A crash, Ctrl-C or ``kill -9`` in the middle of a write leaves the old file (or none), never half a file:
the content goes to a temporary file beside the target and is renamed onto it once complete. The result is
readable like any file the user writes (``mkstemp``'s 0600 would hide results from the rest of a team).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out" / "a.txt"
    >>> atomic_write_text(p, "hello"); p.read_text()
    'hello'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block ends without an error (else removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` all or nothing."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

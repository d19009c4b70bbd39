"""Where ALFRED's data is on this machine: :func:`resolve_alfred_dir` and :data:`ALFRED_DIR_ENV`.

Datasets and models record the ``alfred_dir`` they were made with, an absolute path on the machine that
made them. On another machine (or after the data moved) that path does not exist; ``$RGVLM_GYM_ALFRED_DIR``
then says where ALFRED's ``json_2.1.0`` folder is here, and is also the default of every ``--alfred-dir``
flag and of the test suite.

    >>> import os, tempfile
    >>> here = tempfile.mkdtemp()
    >>> os.environ[ALFRED_DIR_ENV] = here
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     resolve_alfred_dir("/machine/that/collected/it/json_2.1.0") == here
    True
    >>> del os.environ[ALFRED_DIR_ENV]
"""

from __future__ import annotations

import os
import warnings

__all__ = ["ALFRED_DIR_ENV", "default_alfred_dir", "resolve_alfred_dir"]

ALFRED_DIR_ENV = "RGVLM_GYM_ALFRED_DIR"


def default_alfred_dir() -> str | None:
    """``$RGVLM_GYM_ALFRED_DIR`` if set, else None."""
    return os.environ.get(ALFRED_DIR_ENV) or None


def resolve_alfred_dir(path: str | os.PathLike[str] | None) -> str:
    """``path`` if it is a folder, else ``$RGVLM_GYM_ALFRED_DIR`` if that is one; else a clear error.

    Raises:
        ValueError: no path and no variable.
        FileNotFoundError: neither is a folder.
    """
    env = default_alfred_dir()
    if path is not None and os.path.isdir(path):
        return os.fspath(path)
    if env and os.path.isdir(env):
        if path is not None:
            warnings.warn(f"alfred_dir {os.fspath(path)!r} not found; using {ALFRED_DIR_ENV}={env!r}", stacklevel=2)
        return env
    if path is None and not env:
        raise ValueError(f"tasks='alfred' needs alfred_dir, the path of ALFRED's json_2.1.0 folder (or set {ALFRED_DIR_ENV})")
    tried = " or ".join(repr(str(p)) for p in (path, env) if p)
    raise FileNotFoundError(
        f"ALFRED data not found at {tried}: pass the json_2.1.0 folder of an ALFRED download (--alfred-dir / "
        f"alfred_dir=) or set {ALFRED_DIR_ENV} to it (a dataset or model made elsewhere records that machine's path)"
    )

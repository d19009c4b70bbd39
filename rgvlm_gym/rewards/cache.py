"""A persistent label cache: :class:`LabelCache` (SQLite, WAL), and content hashing for its keys.

What is stored, keyed by a SHA-256 content hash:

- ``labels``: one row per labeled episode (or window), keyed by the labeler's identity (labeler type and
  settings, the LVLM's model identity without secrets or transport settings, prompt version and hash) and
  the episode's content (hash of the frame bytes, the action names, the goal); the row holds the
  :class:`~rgvlm_gym.rewards.base.LabelResult` as JSON (rewards, parsed scores, status, reason, the LVLM's
  answers, usage).
- ``responses``: one row per finished LVLM call, keyed by the request (model identity, generation
  settings, every message part, images by hash). A job killed in the middle of an episode resumes without
  repeating any call that had finished.
- ``meta``: ``schema_version`` (see :data:`SCHEMA_VERSION`), ``created_by`` (package version).

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)
    labels(key TEXT PRIMARY KEY, labeler TEXT, model TEXT, prompt TEXT, status TEXT, result TEXT, created REAL)
    responses(key TEXT PRIMARY KEY, model TEXT, response TEXT, created REAL)

Durability and concurrency: the database runs in WAL mode with ``synchronous=NORMAL``; every ``put`` is its
own committed transaction, so a process killed at any point (SIGKILL included) loses at most the calls in
flight. Each thread gets its own connection; other processes may write the same file at once (SQLite
serialises writers; ``busy_timeout`` waits for the lock).

Bad files: a file that is not SQLite, or an SQLite file without our ``meta`` table, or one written with
another schema version, raises :class:`LabelCacheError` naming the file, what was found and what to do
(pass another path, or delete the file to start afresh) — it is never modified (the file is checked
before it is switched to WAL). Rows are not trusted either: an undecodable row is a miss, and the
labelers check a cached label's schema and ranges (RG-VLM: scores 0-10, rewards 0-1) before using it.
Secrets (API keys from the environment or given to a client) are redacted from everything stored
(:mod:`rgvlm_gym.secrets`). ``readonly=True`` opens an
existing cache for lookups only (``put_*`` then store nothing and return False).

Example:
    >>> import tempfile, os
    >>> from rgvlm_gym.rewards.cache import LabelCache, content_key
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.sqlite")
    >>> with LabelCache(path) as cache:
    ...     key = content_key({"episode": 1})
    ...     cache.put_label(key, {"status": "ok", "rewards": [0.5]}, labeler="demo")
    ...     cache.get_label(key)
    True
    {'status': 'ok', 'rewards': [0.5]}
    >>> LabelCache(path, readonly=True).stats()["labels"]
    1
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rgvlm_gym.secrets import redact

__all__ = ["SCHEMA_VERSION", "LabelCache", "LabelCacheError", "array_digest", "content_key"]

#: version of the table layout; a file with another version is refused (never rewritten).
SCHEMA_VERSION = 1
_APP = "rgvlm_gym.rewards.LabelCache"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, labeler TEXT NOT NULL, model TEXT, prompt TEXT, "
    "status TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, response TEXT NOT NULL, "
    "created REAL NOT NULL)",
)


class LabelCacheError(RuntimeError):
    """The label cache file cannot be used (wrong format or version, unwritable, disk full)."""


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default).encode()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__array__": array_digest(obj)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot hash a {type(obj).__name__} in a cache key")


def array_digest(array: np.ndarray) -> str:
    """Hex BLAKE2b digest of an array's dtype, shape and bytes."""
    arr = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.data)
    return h.hexdigest()


def content_key(payload: Any) -> str:
    """Hex SHA-256 of a JSON-able payload (arrays hashed by :func:`array_digest`; key order irrelevant)."""
    return hashlib.sha256(_canonical(payload)).hexdigest()


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("rgvlm-gym")
    except Exception:  # not installed (source tree): informative only
        return "unknown"


class LabelCache:
    """The SQLite label cache (see the module docstring).

    Args:
        path: the database file (created, with its folder, unless ``readonly``).
        readonly: open an existing file for lookups only.
        timeout_s: how long a writer waits for another writer's lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False, timeout_s: float = 30.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.readonly = bool(readonly)
        self.timeout_s = float(timeout_s)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._checked = False
        if self.readonly:
            if not self.path.is_file():
                raise LabelCacheError(f"label cache {self.path} does not exist (readonly=True needs an existing file)")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LabelCacheError(f"cannot create the folder of label cache {self.path}: {exc}") from exc
        conn = self._conn()
        self._check_and_init(conn)  # raises, leaving the file as it was, unless it is ours (or new)
        self._checked = True
        if not self.readonly:
            try:
                self._set_wal(conn)
            except sqlite3.DatabaseError as exc:
                raise LabelCacheError(f"cannot use label cache {self.path}: {exc}") from exc

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                conn = sqlite3.connect(
                    f"{self.path.as_uri()}?mode=ro", uri=True, timeout=self.timeout_s, check_same_thread=False
                )
            else:
                conn = sqlite3.connect(str(self.path), timeout=self.timeout_s, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            if not self.readonly and self._checked:  # never before the file is known to be ours
                self._set_wal(conn)
        except sqlite3.DatabaseError as exc:
            raise LabelCacheError(
                f"{self.path} is not a usable label cache ({exc}); pass another path, or delete the file "
                f"to start a new cache"
            ) from exc
        return conn

    @staticmethod
    def _set_wal(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise LabelCacheError(f"label cache {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _check_and_init(self, conn: sqlite3.Connection) -> None:
        where = f"label cache {self.path}"
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables and not self.readonly:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    for stmt in _SCHEMA:
                        conn.execute(stmt)
                    conn.executemany(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                        [
                            ("app", _APP),
                            ("schema_version", str(SCHEMA_VERSION)),
                            ("created_by", f"rgvlm-gym {_package_version()}"),
                        ],
                    )
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" not in tables:
                raise LabelCacheError(
                    f"{where} is an SQLite file of another application (tables: {sorted(tables) or 'none'}); "
                    f"pass another path for the label cache"
                )
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise LabelCacheError(
                f"{where} is not a usable label cache ({exc}); pass another path, or delete the file to start "
                f"a new cache"
            ) from exc
        if meta.get("app") != _APP:
            raise LabelCacheError(f"{where} was not written by rgvlm-gym (meta: {meta!r:.120}); pass another path")
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise LabelCacheError(
                f"{where} has schema version {version} (written by {meta.get('created_by', '?')}); this "
                f"rgvlm-gym reads version {SCHEMA_VERSION}. Pass another cache path, or delete the file to "
                f"relabel from scratch; the file was left untouched"
            )
        missing = {"labels", "responses"} - tables
        if missing:
            raise LabelCacheError(f"{where} lacks the tables {sorted(missing)}; it is damaged, pass another path")

    # -- reads

    def _get(self, sql: str, key: str) -> Any:
        try:
            row = self._conn().execute(sql, (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise LabelCacheError(f"reading label cache {self.path} failed: {exc}") from exc
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except (TypeError, ValueError) as exc:  # a damaged row is a miss (and is overwritten when relabeled)
            import warnings

            warnings.warn(f"label cache {self.path}: ignoring an undecodable row ({key[:12]}...): {exc}", RuntimeWarning, stacklevel=3)
            return None

    def get_label(self, key: str) -> dict[str, Any] | None:
        """The stored result under ``key``, or None."""
        out: dict[str, Any] | None = self._get("SELECT result FROM labels WHERE key = ?", key)
        return out

    def get_response(self, key: str) -> dict[str, Any] | None:
        """The stored LVLM response (``LVLMResponse.to_dict()``) under ``key``, or None."""
        out: dict[str, Any] | None = self._get("SELECT response FROM responses WHERE key = ?", key)
        return out

    # -- writes (each one committed at once)

    def _put(self, sql: str, args: tuple[Any, ...]) -> bool:
        if self.readonly:
            return False
        conn = self._conn()
        try:
            with conn:
                conn.execute(sql, args)
        except sqlite3.OperationalError as exc:
            raise LabelCacheError(
                f"writing label cache {self.path} failed: {exc}. Labels committed before are kept; free space "
                f"or pass another path, then re-run to resume"
            ) from exc
        return True

    def put_label(
        self,
        key: str,
        result: Mapping[str, Any],
        *,
        labeler: str,
        model: str | None = None,
        prompt: str | None = None,
    ) -> bool:
        """Store (or replace) a label result; committed before it returns. False when read-only."""
        return self._put(
            "INSERT OR REPLACE INTO labels (key, labeler, model, prompt, status, result, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, labeler, model, prompt, str(result.get("status", "ok")), json.dumps(redact(dict(result))), time.time()),
        )

    def put_response(self, key: str, response: Mapping[str, Any], *, model: str | None = None) -> bool:
        """Store an LVLM response; committed before it returns. False when read-only."""
        return self._put(
            "INSERT OR REPLACE INTO responses (key, model, response, created) VALUES (?, ?, ?, ?)",
            (key, model, json.dumps(redact(dict(response))), time.time()),
        )

    def delete_label(self, key: str) -> bool:
        """Forget a label (e.g. to ask again for an ``invalid`` one)."""
        return self._put("DELETE FROM labels WHERE key = ?", (key,))

    # -- housekeeping

    def stats(self) -> dict[str, Any]:
        """Row counts: ``labels``, ``responses``, and ``by_status`` of the labels."""
        conn = self._conn()
        try:
            by_status = dict(conn.execute("SELECT status, COUNT(*) FROM labels GROUP BY status").fetchall())
            n_resp = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise LabelCacheError(f"reading label cache {self.path} failed: {exc}") from exc
        return {"labels": sum(by_status.values()), "responses": int(n_resp), "by_status": by_status}

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._lock:
            conns, self._conns = self._conns, []
            self._closed = True
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> LabelCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _reopen, (str(self.path), self.readonly, self.timeout_s)

    def __repr__(self) -> str:
        return f"LabelCache({str(self.path)!r}{', readonly=True' if self.readonly else ''})"


def _reopen(path: str, readonly: bool, timeout_s: float) -> LabelCache:
    return LabelCache(path, readonly=readonly, timeout_s=timeout_s)

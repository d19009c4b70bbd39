"""Minari datasets of AlfredLite episodes: one writer, streaming readers, and clear errors.

Holds :func:`write_dataset`, :func:`iter_episodes`, :func:`load_episode`, :func:`open_dataset`,
:func:`dataset_info`, :func:`parse_dataset_id`, :class:`DatasetError` and :data:`FORMAT_VERSION`.

Writer (``rgvlm collect`` and the relabel pipeline both use it)::

    write_dataset(
        dataset_id: str,                      # "namespace/name-vN"
        episodes: Iterable[EpisodeRecord],    # streamed: one episode in memory at a time
        *,
        env: gym.Env | EnvSpec | None = None, # the env that made them (spec, spaces, action names) ...
        source: MinariDataset | str | None = None,  # ... or a dataset to inherit them from (relabel)
        metadata: Mapping | None = None,      # merged into metadata["rgvlm_gym"] (Minari's own keys
                                              # description/author/algorithm_name/... go top level)
        force: bool = False,                  # replace an existing dataset of that id
        extra_step_columns: Sequence[str] = (),     # record.extra[name]: (T,) floats per episode
        extra_episode_columns: Sequence[str] = (),  # record.extra[name]: any JSON value per episode
        frames: bool = True,                  # every record must carry frames
        progress: bool | int = False,         # tqdm bar (int: its total)
    ) -> MinariDataset

It is atomic: the dataset is built under ``$MINARI_DATASETS_PATH/.rgvlm-tmp/<random>/`` (a hidden folder
Minari does not list) and renamed to ``$MINARI_DATASETS_PATH/<id>/`` only once complete. An exception,
Ctrl-C or ``kill -9`` leaves nothing under the id; a later write removes stale temporary folders (each is
guarded by a lock its writer holds while alive, so a folder is stale exactly when its writer is gone).
An existing id is never replaced unless ``force=True``.

Claims: a writer first claims the id (:func:`claim_dataset`: an exclusive ``flock`` on
``.rgvlm-locks/<id>.lock``, released by the kernel when the process dies), so two jobs writing the same
id cannot both succeed -- the second fails at once with :class:`~rgvlm_gym.errors.DatasetBusyError`, and
without ``force`` the commit is a rename that never replaces a finished dataset. An id whose folder would
lie inside another dataset's folder, or contain one, is refused (``--force`` never deletes another dataset).

Disk space: before each episode the writer checks that the disk has room for it uncompressed (plus a
margin); when it does not, it stops with :class:`~rgvlm_gym.errors.DiskFullError`, removes its temporary
folder and publishes nothing (HDF5 does not survive running out of space mid-write: it crashes the process).

Storage layout (Minari 0.5.4 HDF5, ``<id>/data/main_data.hdf5`` + ``metadata.json``), per episode group
``episode_i``:

=================================  ===============================================================
``observations/image``             (T+1, S, S, 3) uint8 RL observation, gzip (lossless)
``observations/instruction``       (T+1,) utf-8 strings (Minari's Text space encoding)
``actions rewards terminations``   as Minari writes them (``rewards`` = the record's rewards)
``truncations``
attrs ``id seed options/task_index``  Minari's own; ``reset(seed=seed, options=options)`` replays it
attrs ``task policy instruction``  the task dict (JSON), the behaviour policy kind, the goal text
``frames``                         (T+1, F, F, 3) uint8 LVLM frames (F >= 224), gzip, one chunk a frame
``action_errors``                  (T,) utf-8 strings, "" where the action was valid
``extra/<name>``                   extra per-step float32 (T,) or per-episode JSON string columns
``action_masks``                   (T+1, A) uint8 admissible actions per state (``info["action_mask"]``)
``privileged/subtask_progress``    (T+1,) sub-task progress: ground truth for oracle labels and
``privileged/goal_conditions``     evaluation. Minari's ``iterate_episodes`` (and so d3rlpy and any
``privileged/cost_to_go``          training code built on Minari) never reads these groups; only
``privileged/expert_action``       :func:`iter_episodes` / :func:`load_episode` fill
                                   ``EpisodeRecord.progress`` (and ``cost_to_go``, ``expert_actions``:
                                   the expert plan's length and first action per state, format 2+)
                                   from them.
=================================  ===============================================================

Why this storage (measured on ALFRED valid_seen frames; ``benchmarks/RESULTS.md``): pyarrow is not
installed, so Minari's Arrow backend is out; HDF5 it is. Minari's ``jpeg_encoding`` (the default in
0.5.4) re-encodes every uint8 image observation with PIL's default JPEG quality 75 -- on these flat
drawings that is a mean error of 5.5 grey levels at 64 px (max > 150 at label edges), so the RL
observations would differ from what the env shows at evaluation; it is turned off. For the 224 px frames,
deflate on the raw pixels (HDF5's gzip filter, level 4) is lossless, ~13 KiB a frame and 2x faster to
write than PNG (~16 KiB, 4.5 ms) -- PNG's filters do worse than plain deflate on these antialiased
drawings -- and any HDF5 tool reads it as a plain array. Lossless WebP is smaller only at 20x the time.
The RL image is written by Minari into a dataset this module creates first with the gzip filter
(Minari appends into an existing dataset), ~2 KiB instead of 12 KiB a step.

Readers: :func:`iter_episodes` streams :class:`~rgvlm_gym.data.episode.EpisodeRecord` s (memory stays
flat); :func:`load_episode` reads one. Both raise :class:`DatasetError` naming the dataset and what is
wrong (unknown id with "did you mean", another environment's dataset, a corrupted file, a missing column).

    >>> import gymnasium as gym, os, tempfile, rgvlm_gym
    >>> os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp()  # keep ~/.minari clean
    >>> from rgvlm_gym.data.collect import collect_episode
    >>> env = gym.make("rgvlm_gym/AlfredLite-v1", num_tasks=10)
    >>> rec = collect_episode(env.unwrapped, "expert", episode_id=0, seed=0, task_index=3, frame_size=224)
    >>> ds = write_dataset("doctest/demo-v0", [rec], env=env, metadata={"note": "hi"})
    >>> back = load_episode(ds, 0)
    >>> bool((back.frames == rec.frames).all()), back.success, back.progress.tolist()[-1]
    (True, True, 6)
    >>> dataset_info(ds)["note"]
    'hi'
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.envs.versions import ENV_ID, ENV_IDS, VocabularyMismatchError, check_action_names
from rgvlm_gym.errors import DatasetBusyError, DiskFullError, UsageError

if TYPE_CHECKING:
    import gymnasium as gym
    import h5py
    from gymnasium.envs.registration import EnvSpec
    from minari import MinariDataset

__all__ = [
    "ENV_ID",
    "ENV_IDS",
    "FORMAT_VERSION",
    "claim_dataset",
    "clean_stale_temporaries",
    "DatasetError",
    "DatasetId",
    "dataset_info",
    "iter_episodes",
    "load_episode",
    "open_dataset",
    "parse_dataset_id",
    "write_dataset",
]

FORMAT_VERSION = 2  # 2: privileged/{cost_to_go,expert_action} and action_masks
META_KEY = "rgvlm_gym"
_TMP_DIR = ".rgvlm-tmp"
_LOCK_DIR = ".rgvlm-locks"
_SPACE_MARGIN = 4 << 20  # bytes kept free beyond an episode's uncompressed size (HDF5 metadata, Minari's JSON)
_GZIP = 4
_MINARI_KEYS = ("description", "author", "author_email", "algorithm_name", "code_permalink", "requirements")
_ID_RE = re.compile(r"^(?:(?P<namespace>[-_\w](?:[-_\w/]*[-_\w])?)/)?(?P<name>[-_\w]+?)-v(?P<version>\d+)$")
_REOPEN_EVERY = 64


class DatasetError(UsageError):
    """A dataset is missing, of another environment, corrupted or lacks a column (the message says which)."""


@dataclass(frozen=True)
class DatasetId:
    """A parsed ``namespace/name-vN`` dataset id (the namespace is optional, the version is not).

    >>> DatasetId.parse("rgvlm/alfred-valid-mixed-v0")
    DatasetId(namespace='rgvlm', name='alfred-valid-mixed', version=0)
    """

    namespace: str | None
    name: str
    version: int

    @classmethod
    def parse(cls, dataset_id: str) -> DatasetId:
        m = _ID_RE.fullmatch(str(dataset_id))
        if not m:
            raise UsageError(f"dataset id must look like 'namespace/name-vN' (e.g. 'rgvlm/alfred-valid-mixed-v0'), got {dataset_id!r}")
        return cls(m["namespace"], m["name"], int(m["version"]))

    def __str__(self) -> str:
        return f"{self.namespace + '/' if self.namespace else ''}{self.name}-v{self.version}"


def parse_dataset_id(dataset_id: str) -> DatasetId:
    """Parse and validate a dataset id (see :class:`DatasetId`)."""
    return DatasetId.parse(dataset_id)


# --------------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------------
def _root() -> Path:
    from minari.storage import get_dataset_path

    return Path(get_dataset_path())


def _dataset_dir(dataset_id: str) -> Path:
    return _root() / str(DatasetId.parse(dataset_id))


def _local_ids() -> list[str]:
    root = _root()
    ids = []
    for meta in root.glob("**/data/metadata.json"):
        rel = meta.parent.parent.relative_to(root).as_posix()
        if not any(part.startswith(".") for part in rel.split("/")):
            ids.append(rel)
    return sorted(ids)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_flock(path: Path) -> int | None:
    """Open ``path`` (created if missing) and take an exclusive lock without waiting: the fd, or None when
    another open file holds the lock."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return fd


def _lock_path(path: Path) -> int | None:
    """:func:`_try_flock`, retried until the locked file is still the one at ``path`` (a releasing holder
    unlinks it; a lock on the unlinked file would guard nothing)."""
    for _ in range(100):
        fd = _try_flock(path)
        if fd is None:
            return None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise RuntimeError(f"could not lock {path}: it keeps being replaced")


def _unlock_path(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)  # while still holding the lock (see _lock_path)
    os.close(fd)


def _clean_stale_tmp(root: Path) -> None:
    """Remove temporary dataset folders whose writer is gone: its lock (``<folder>.lock``) can be taken,
    or, for folders of older versions without one, its pid is not running."""
    tmp_root = root / _TMP_DIR
    if not tmp_root.is_dir():
        return
    for d in tmp_root.iterdir():
        if not d.is_dir():
            if d.suffix == ".lock" and not d.with_suffix("").exists():  # a lock whose folder is gone
                with contextlib.suppress(OSError, RuntimeError):
                    fd = _lock_path(d)
                    if fd is not None:
                        _unlock_path(d, fd)
            continue
        lock = d.with_name(d.name + ".lock")
        if lock.exists():
            try:
                fd = _lock_path(lock)
            except (OSError, RuntimeError):
                continue
            if fd is None:
                continue  # its writer is alive
            shutil.rmtree(d, ignore_errors=True)
            _unlock_path(lock, fd)
            continue
        pid = d.name.split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def clean_stale_temporaries(exiting_pid: int | None = None) -> None:
    """Remove the temporary folders of dataset writers that died (under ``$MINARI_DATASETS_PATH/.rgvlm-tmp``).

    Every :func:`write_dataset` does this first; call it after killing a writer to reclaim the space now.
    ``exiting_pid``: also remove the folders of that process, which is about to exit (a writer's signal
    handler cleaning up before ``os._exit``).
    """
    root = _root()
    if exiting_pid is not None and (root / _TMP_DIR).is_dir():
        for d in (root / _TMP_DIR).glob(f"{int(exiting_pid)}-*"):
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            elif d.suffix == ".lock":
                d.unlink(missing_ok=True)  # ours: the process exits right after
    _clean_stale_tmp(root)


def _is_dataset_dir(path: Path) -> bool:
    return (path / "data" / "metadata.json").is_file()


def _check_nesting(dataset_id: str, final_dir: Path, root: Path) -> None:
    """Refuse an id whose folder lies inside another dataset's folder, or would contain one."""
    for parent in final_dir.relative_to(root).parents:
        if str(parent) != "." and _is_dataset_dir(root / parent):
            raise UsageError(
                f"dataset id {dataset_id!r} would put it inside the folder of dataset {parent.as_posix()!r} "
                f"({root / parent}); choose an id outside another dataset")
    if final_dir.is_dir():
        inner = sorted(m.parent.parent.relative_to(root).as_posix() for m in final_dir.glob("*/**/data/metadata.json"))
        if inner:
            raise UsageError(
                f"the folder of dataset id {dataset_id!r} ({final_dir}) holds other datasets ({', '.join(inner[:5])}); "
                f"it is never replaced (not even with --force); choose another id")


#: dataset id -> fd of its claim lock, for claims this process (or a parent it was forked from) holds
_HELD: dict[str, int] = {}


@contextlib.contextmanager
def claim_dataset(dataset_id: str, *, force: bool = False) -> Iterator[Path]:
    """Claim ``dataset_id`` for writing, for the duration of the ``with`` block; yields its final folder.

    At most one process holds the claim of an id at a time (an exclusive ``flock`` that the kernel drops
    when the holder dies, so a killed job never leaves a claim behind). Claims are re-entrant in the
    process that holds them and in processes forked from it while it does (a writer child).

    Raises:
        DatasetBusyError: another process is writing this id.
        FileExistsError: the dataset exists and ``force`` is False.
        UsageError: a malformed id, or one inside another dataset's folder (or containing one).

    >>> import os, tempfile
    >>> os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp()
    >>> with claim_dataset("doctest/claimed-v0") as path:
    ...     path.name
    'claimed-v0'
    """
    did = str(DatasetId.parse(dataset_id))
    root = _root()
    final_dir = root / did
    _check_nesting(did, final_dir, root)
    if did in _HELD:
        if final_dir.exists() and not force:
            raise FileExistsError(f"dataset {did!r} already exists at {final_dir}; pass --force (force=True) to replace it")
        yield final_dir
        return
    lock_dir = root / _LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_dir / (did.replace("/", "%") + ".lock")
    fd = _lock_path(lock)
    if fd is None:
        try:
            holder = lock.read_text().strip() or "?"
        except OSError:
            holder = "?"
        raise DatasetBusyError(
            f"dataset {did!r} is being written by another process (pid {holder}); wait for it to finish, "
            f"or choose another id")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        if final_dir.exists() and not force:
            raise FileExistsError(f"dataset {did!r} already exists at {final_dir}; pass --force (force=True) to replace it")
        _HELD[did] = fd
        try:
            yield final_dir
        finally:
            _HELD.pop(did, None)
    finally:
        _unlock_path(lock, fd)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return int(st.f_bavail) * int(st.f_frsize)


def _ensure_space(path: Path, rec: EpisodeRecord, dataset_id: str) -> None:
    """Stop before HDF5 runs out of space (it crashes then): room for the episode uncompressed + a margin."""
    need = sum(int(np.asarray(a).nbytes) for a in (rec.images, rec.frames, rec.actions, rec.rewards,
                                                      rec.progress) if a is not None) + _SPACE_MARGIN
    free = _free_bytes(path)
    if free < need:
        raise DiskFullError(
            f"not enough free space to write dataset {dataset_id!r} in {_root()}: {free / 1e6:.1f} MB free, an "
            f"episode needs up to {need / 1e6:.1f} MB; nothing was published and the temporary folder was "
            f"removed. Free some space (or set MINARI_DATASETS_PATH to a larger disk) and re-run")


# --------------------------------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------------------------------
def open_dataset(dataset: MinariDataset | str, *, check_env: bool = True) -> MinariDataset:
    """A :class:`minari.MinariDataset` from an id (or the dataset itself), with errors that say what is wrong.

    Raises:
        DatasetError: unknown id (with "did you mean"), unreadable/corrupted files, a dataset of another
            environment (``check_env``), or one not written by rgvlm-gym.
    """
    import minari

    if isinstance(dataset, str):
        dataset_id = str(DatasetId.parse(dataset))
        path = _dataset_dir(dataset_id)
        if not (path / "data").is_dir():
            local = _local_ids()
            close = difflib.get_close_matches(dataset_id, local, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else (
                f"; local datasets: {', '.join(local)}" if local else "; there are no local datasets (run `rgvlm collect`)")
            raise DatasetError(f"dataset {dataset_id!r} not found in {_root()}{hint}")
        try:
            ds = minari.load_dataset(dataset_id)
        except Exception as exc:  # json/HDF5/Minari errors all mean the same thing to the user
            raise DatasetError(f"dataset {dataset_id!r} at {path} cannot be read (corrupted or incomplete?): {exc}") from exc
    else:
        ds = dataset
    if check_env:
        _check_rgvlm(ds)
    return ds


def _check_rgvlm(ds: MinariDataset) -> dict[str, Any]:
    spec = ds.env_spec
    env_id = getattr(spec, "id", None)
    if env_id not in ENV_IDS:
        raise DatasetError(f"dataset {ds.id!r} was recorded in environment {env_id!r}, not {ENV_ID!r}; rgvlm-gym reads only its own datasets")
    meta = ds.storage.metadata.get(META_KEY)
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise DatasetError(f"dataset {ds.id!r} has no {META_KEY!r} metadata: it was not written by rgvlm-gym's write_dataset")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise DatasetError(f"dataset {ds.id!r} has format version {meta['format_version']}, newer than this rgvlm-gym reads ({FORMAT_VERSION}); upgrade rgvlm-gym")
    try:  # an action index means another action in another vocabulary: refuse, never reinterpret
        check_action_names(meta.get("action_names") or [], f"dataset {ds.id!r}")
    except VocabularyMismatchError as exc:
        raise DatasetError(str(exc)) from None
    return meta


def dataset_info(dataset: MinariDataset | str) -> dict[str, Any]:
    """The dataset's ``rgvlm_gym`` metadata (task suite, policy mix, seeds, version, columns, ...)."""
    return dict(_check_rgvlm(open_dataset(dataset)))


def _h5(ds: MinariDataset) -> h5py.File:
    import h5py

    path = Path(ds.storage.data_path) / "main_data.hdf5"
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise DatasetError(f"dataset {ds.id!r}: cannot open {path} (corrupted or truncated?): {exc}") from exc


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def _strings(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _read_episode(ds: MinariDataset, f: h5py.File, i: int, meta: dict[str, Any], frames: bool, images: bool = True) -> EpisodeRecord:
    try:
        return _read_episode_unchecked(ds, f, i, meta, frames, images)
    except DatasetError:
        raise
    except (KeyError, OSError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        # h5py/HDF5 and json report damaged bytes in many ways; to the user they all mean one thing
        raise DatasetError(f"dataset {ds.id!r} episode {i}: cannot be read (corrupted?): {type(exc).__name__}: {exc}") from exc


def _read_episode_unchecked(ds: MinariDataset, f: h5py.File, i: int, meta: dict[str, Any], frames: bool, images: bool = True) -> EpisodeRecord:
    name = f"episode_{i}"
    if name not in f:
        raise DatasetError(f"dataset {ds.id!r} has no episode {i} (it has {ds.storage.total_episodes})")
    where = f"dataset {ds.id!r} episode {i}"
    g = f[name]
    try:
        actions = np.asarray(g["actions"][()], dtype=np.int64)
        obs = g["observations"]
        image = np.asarray(obs["image"][()], dtype=np.uint8) if images else np.zeros((len(actions) + 1, 0, 0, 3), np.uint8)
        instruction = _strings(obs["instruction"][:1])[0]
        rewards = np.asarray(g["rewards"][()], dtype=np.float32)
        term = np.asarray(g["terminations"][()], dtype=bool)
        trunc = np.asarray(g["truncations"][()], dtype=bool)
    except KeyError as exc:
        raise DatasetError(f"{where}: missing Minari column {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"{where}: cannot be read (corrupted?): {exc}") from exc
    if "privileged" not in g or "subtask_progress" not in g["privileged"]:
        raise DatasetError(f"{where}: missing column 'privileged/subtask_progress'")
    progress = np.asarray(g["privileged/subtask_progress"][()], dtype=np.int64)
    priv = g["privileged"]
    gc = np.asarray(priv["goal_conditions"][()], dtype=np.int64) if "goal_conditions" in priv else None
    cost = np.asarray(priv["cost_to_go"][()], dtype=np.int64) if "cost_to_go" in priv else None
    expert = np.asarray(priv["expert_action"][()], dtype=np.int64) if "expert_action" in priv else None
    masks = np.asarray(g["action_masks"][()], dtype=np.uint8) if "action_masks" in g else None
    frame_arr = None
    if frames:
        if "frames" not in g:
            raise DatasetError(f"{where}: missing frame column 'frames' (a dataset written with frames=False?); load with frames=False")
        try:
            frame_arr = np.asarray(g["frames"][()], dtype=np.uint8)
        except OSError as exc:
            raise DatasetError(f"{where}: frames cannot be read (corrupted?): {exc}") from exc
    names = meta.get("action_names", [])
    _check_columns(where, actions, rewards, term, trunc, progress, image if images else None, frame_arr, len(names))
    attrs = g.attrs
    task = json.loads(attrs["task"]) if "task" in attrs else {}
    extra: dict[str, Any] = {}
    if "extra" in g:
        for key, d in g["extra"].items():
            extra[key] = json.loads(_strings([d[()]])[0]) if d.shape == () else np.asarray(d[()], dtype=np.float32)
    seed = attrs.get("seed")
    return EpisodeRecord(
        episode_id=int(i),
        instruction=str(attrs.get("instruction", instruction)),
        task=task,
        actions=actions,
        action_names=[names[a] for a in actions.tolist()],
        images=image,
        frames=frame_arr,
        rewards=rewards,
        terminations=term,
        truncations=trunc,
        progress=progress,
        action_errors=_strings(g["action_errors"][()]) if "action_errors" in g else [""] * len(actions),
        extra=extra,
        policy=str(attrs.get("policy", "")),
        seed=None if seed is None else int(seed),
        goal_conditions=gc,
        cost_to_go=cost,
        expert_actions=expert,
        action_masks=masks,
    )


def _check_columns(where: str, actions: np.ndarray, rewards: np.ndarray, term: np.ndarray, trunc: np.ndarray,
                   progress: np.ndarray, images: np.ndarray | None, frames: np.ndarray | None, n_actions: int) -> None:
    """What a damaged file can hold but an episode cannot: a source is checked as it is read."""
    T = len(actions)
    if T < 1 or actions.ndim != 1:
        raise DatasetError(f"{where}: expected a 1-d actions column with at least one step, actually shape {actions.shape}")
    bad = np.flatnonzero((actions < 0) | (actions >= n_actions))
    if len(bad):
        raise DatasetError(f"{where}: action {int(actions[bad[0]])} at step {int(bad[0])} is outside the action space "
                           f"(0..{n_actions - 1}); the file is corrupted")
    for col, arr, n in (("rewards", rewards, T), ("terminations", term, T), ("truncations", trunc, T), ("privileged/subtask_progress", progress, T + 1),
                        ("observations/image", images, T + 1), ("frames", frames, T + 1)):
        if arr is not None and len(arr) != n:
            raise DatasetError(f"{where}: column {col!r} has {len(arr)} rows for {T} actions (expected {n}); the file is corrupted")
    bad = np.flatnonzero(~np.isfinite(rewards))
    if len(bad):
        raise DatasetError(f"{where}: reward {rewards[bad[0]]} at step {int(bad[0])} is not finite; the file is corrupted")


def _check_source_meta(ds: MinariDataset, meta: Mapping[str, Any], f: h5py.File | None = None) -> None:
    """Dataset-level consistency: one action name per action, and (with the file) as many episodes on disk as
    the metadata says."""
    n = getattr(ds.action_space, "n", None)
    names = meta.get("action_names")
    if not isinstance(names, list) or n is None or len(names) != int(n) or not all(isinstance(x, str) and x for x in names):
        got = len(names) if isinstance(names, list) else type(names).__name__
        raise DatasetError(f"dataset {ds.id!r}: metadata 'action_names' must name each of the {n} actions, actually: {got} "
                           f"entries; the metadata is corrupted (an LVLM would be sent numbers instead of actions)")
    if f is not None:
        try:
            on_disk = sum(1 for k in f if k.startswith("episode_"))
        except (KeyError, OSError, RuntimeError, ValueError) as exc:
            raise DatasetError(f"dataset {ds.id!r}: the data file cannot be listed (corrupted?): {exc}") from exc
        if on_disk != int(ds.storage.total_episodes):
            raise DatasetError(f"dataset {ds.id!r}: metadata says {ds.storage.total_episodes} episodes, the data file holds "
                               f"{on_disk}; the metadata or the file is corrupted")


def iter_episodes(
    dataset: MinariDataset | str, frames: bool = True, *, indices: Iterable[int] | None = None, images: bool = True
) -> Iterator[EpisodeRecord]:
    """Stream the episodes of an rgvlm-gym dataset as records (one episode in memory at a time).

    Args:
        dataset: a dataset id or a :class:`minari.MinariDataset`.
        frames: decode the (T+1, F, F, 3) LVLM frames (``False``: ``record.frames`` is None, faster).
        indices: episodes to read (default: all of the dataset's ``episode_indices``).
        images: read the RL observations (``False``: an empty (T+1, 0, 0, 3) array, for label-only passes).
    """
    ds = open_dataset(dataset)
    meta = _check_rgvlm(ds)
    with _h5(ds) as f:
        _check_source_meta(ds, meta, f)
    idx = [int(i) for i in (ds.episode_indices if indices is None else indices)]
    # the file is reopened every _REOPEN_EVERY episodes: with one handle open over a whole dataset,
    # HDF5's memory grows ~135 KiB per episode read (350 MiB after 2,000 episodes); reopened, it stays flat
    for k in range(0, len(idx), _REOPEN_EVERY):
        with _h5(ds) as f:
            for i in idx[k : k + _REOPEN_EVERY]:
                yield _read_episode(ds, f, i, meta, frames, images)


def load_episode(dataset: MinariDataset | str, i: int, frames: bool = True) -> EpisodeRecord:
    """Episode ``i`` of a dataset as an :class:`EpisodeRecord`."""
    ds = open_dataset(dataset)
    meta = _check_rgvlm(ds)
    with _h5(ds) as f:
        _check_source_meta(ds, meta)
        return _read_episode(ds, f, int(i), meta, frames)


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _validate(rec: EpisodeRecord, k: int, frames: bool, step_cols: Sequence[str], ep_cols: Sequence[str], image_shape: tuple[int, ...]) -> None:
    T = len(rec.actions)
    where = f"episode record {k} (episode_id={rec.episode_id})"
    if T < 1:
        raise ValueError(f"{where}: an episode needs at least one step, got 0 actions")
    for name, arr, n in (("images", rec.images, T + 1), ("rewards", rec.rewards, T), ("terminations", rec.terminations, T),
                         ("truncations", rec.truncations, T), ("progress", rec.progress, T + 1)):
        if len(arr) != n:
            raise ValueError(f"{where}: expected len({name}) == {n} for {T} actions, actually: {len(arr)}")
    for name, arr in (("cost_to_go", rec.cost_to_go), ("expert_actions", rec.expert_actions), ("action_masks", rec.action_masks)):
        if arr is not None and len(arr) != T + 1:
            raise ValueError(f"{where}: expected len({name}) == {T + 1} for {T} actions, actually: {len(arr)}")
    if tuple(np.shape(rec.images)[1:]) != tuple(image_shape):
        raise ValueError(f"{where}: images must be (T+1, {', '.join(map(str, image_shape))}), actually: {np.shape(rec.images)}")
    if not (bool(rec.terminations[-1]) or bool(rec.truncations[-1])):
        raise ValueError(f"{where}: the last step must be terminated or truncated")
    if frames:
        if rec.frames is None:
            raise ValueError(f"{where}: frames are required (write_dataset(..., frames=False) to store none)")
        fs = np.shape(rec.frames)
        if len(fs) != 4 or fs[0] != T + 1 or fs[1] != fs[2] or fs[1] < 224 or fs[3] != 3:
            raise ValueError(f"{where}: frames must be (T+1, F, F, 3) with F >= 224, actually: {fs}")
    for c in step_cols:
        if c not in rec.extra or len(np.asarray(rec.extra[c]).reshape(-1)) != T:
            raise ValueError(f"{where}: extra step column {c!r} must be a length-{T} sequence in record.extra")
    for c in ep_cols:
        if c not in rec.extra:
            raise ValueError(f"{where}: extra episode column {c!r} is missing from record.extra")


def write_dataset(
    dataset_id: str,
    episodes: Iterable[EpisodeRecord],
    *,
    env: gym.Env | EnvSpec | None = None,
    source: MinariDataset | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    force: bool = False,
    extra_step_columns: Sequence[str] = (),
    extra_episode_columns: Sequence[str] = (),
    frames: bool = True,
    progress: bool | int = False,
) -> MinariDataset:
    """Write records as a new Minari dataset, atomically (see the module docstring for the layout).

    Args:
        dataset_id: ``namespace/name-vN``.
        episodes: records, streamed; ``episode_id`` is replaced by the position in the stream.
        env: the environment (or its ``EnvSpec``) the episodes come from; its spec is stored so that
            ``recover_environment()`` rebuilds it.
        source: instead of ``env``, a dataset whose env spec, spaces and ``rgvlm_gym`` metadata to inherit
            (``metadata["source_dataset"]`` records its id).
        metadata: merged into the dataset's ``rgvlm_gym`` metadata (JSON values); Minari's standard keys
            (``description``, ``author``, ``author_email``, ``algorithm_name``, ``code_permalink``,
            ``requirements``) go to Minari's top level.
        force: replace an existing dataset with this id (only once the new one is complete).
        extra_step_columns: names in ``record.extra`` holding (T,) floats (e.g. ``lvlm_rewards``).
        extra_episode_columns: names in ``record.extra`` holding a JSON value per episode.
        frames: require and store ``record.frames``.
        progress: show a tqdm bar (an int gives its total).

    Returns:
        The new dataset, loaded from its final place.

    Raises:
        FileExistsError: the id exists and ``force`` is False.
        ValueError: malformed id, bad records, or neither/both of ``env`` and ``source``.
    """
    import gymnasium as gym
    import h5py
    import minari
    from gymnasium.envs.registration import EnvSpec
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage
    from minari.namespace import create_namespace, list_local_namespaces

    import rgvlm_gym

    did = DatasetId.parse(dataset_id)
    dataset_id = str(did)
    if (env is None) == (source is None):
        raise ValueError("write_dataset needs exactly one of env= (the collecting env) or source= (a dataset to inherit from)")
    dup = set(extra_step_columns) & set(extra_episode_columns)
    if dup:
        raise ValueError(f"extra columns named both per-step and per-episode: {sorted(dup)}")

    base_meta: dict[str, Any] = {}
    if source is not None:
        src = open_dataset(source)
        spec = src.env_spec
        obs_space, act_space = src.observation_space, src.action_space
        base_meta = dict(_check_rgvlm(src))
        base_meta["source_dataset"] = src.id
        for k in ("extra_step_columns", "extra_episode_columns"):
            base_meta.pop(k, None)
    else:
        if isinstance(env, EnvSpec):
            spec = env
            made = gym.make(env)
            obs_space, act_space, unwrapped = made.observation_space, made.action_space, made.unwrapped
        else:
            assert env is not None
            spec = env.spec
            obs_space, act_space, unwrapped = env.observation_space, env.action_space, env.unwrapped
        if spec is None or spec.id not in ENV_IDS:
            raise ValueError(f"env must be made with gym.make({ENV_ID!r}, ...) so its spec can be stored; got spec {getattr(spec, 'id', None)!r}")
        base_meta = {
            "action_names": list(unwrapped.action_names),  # type: ignore[attr-defined]
            "image_size": int(unwrapped.image_size),  # type: ignore[attr-defined]
            "env_kwargs": dict(spec.kwargs),
        }
    image_shape = tuple(obs_space["image"].shape)  # type: ignore[index]

    user = dict(metadata or {})
    top: dict[str, Any] = {k: user.pop(k) for k in _MINARI_KEYS if k in user}
    top.setdefault("author", "rgvlm-gym")
    if isinstance(top["author"], str):
        top["author"] = {top["author"]}
    if isinstance(top.get("author_email"), str):
        top["author_email"] = {top["author_email"]}
    top.setdefault("requirements", [f"rgvlm-gym>={rgvlm_gym.__version__}"])
    rg_meta = base_meta | user | {
        "format_version": FORMAT_VERSION,
        "rgvlm_gym_version": rgvlm_gym.__version__,
        "extra_step_columns": list(extra_step_columns),
        "extra_episode_columns": list(extra_episode_columns),
        "frames": bool(frames),
        "privileged": "episode_i/privileged/{subtask_progress,goal_conditions,cost_to_go,expert_action} (read only by rgvlm_gym.data.iter_episodes)",
    }

    root = _root()
    stack = contextlib.ExitStack()
    final_dir = stack.enter_context(claim_dataset(dataset_id, force=force))
    _clean_stale_tmp(root)
    tmp = root / _TMP_DIR / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    committed = False
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp_lock = tmp.with_name(tmp.name + ".lock")
        tmp_fd = _lock_path(tmp_lock)  # held while this writer lives: _clean_stale_tmp leaves the folder alone
        assert tmp_fd is not None
        stack.callback(_unlock_path, tmp_lock, tmp_fd)
        tmp.mkdir()
        data = tmp / "data"
        storage = MinariStorage.new(data, observation_space=obs_space, action_space=act_space, env_spec=spec, data_format="hdf5", jpeg_encoding=False)
        storage.update_metadata({"dataset_id": dataset_id, "minari_version": minari.__version__, **top, META_KEY: json.loads(json.dumps(rg_meta, default=_json_default))})
        h5_path = data / "main_data.hdf5"
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=progress if isinstance(progress, int) and not isinstance(progress, bool) else None, unit="ep", desc=f"writing {dataset_id}")
        n_frames = 0
        for k, rec in enumerate(episodes):
            _validate(rec, k, frames, extra_step_columns, extra_episode_columns, image_shape)
            _ensure_space(tmp, rec, dataset_id)
            T = len(rec.actions)
            # 1. our columns, and a gzip dataset for the RL image that Minari appends into
            with h5py.File(h5_path, "a", track_order=True) as f:
                g = f.create_group(f"episode_{k}")
                obs_g = g.create_group("observations")
                chunk_t = min(T + 1, 16)
                obs_g.create_dataset("image", shape=(0, *image_shape), maxshape=(None, *image_shape), dtype=np.uint8,
                                     chunks=(chunk_t, *image_shape), compression="gzip", compression_opts=_GZIP)
                if frames:
                    fr = np.ascontiguousarray(rec.frames, dtype=np.uint8)
                    g.create_dataset("frames", data=fr, chunks=(1, *fr.shape[1:]), compression="gzip", compression_opts=_GZIP)
                    n_frames += len(fr)
                g.create_dataset("action_errors", data=[e or "" for e in (rec.action_errors or [""] * T)], dtype=h5py.string_dtype("utf-8"))
                p = g.create_group("privileged")
                p.create_dataset("subtask_progress", data=np.asarray(rec.progress, dtype=np.int16))
                if rec.goal_conditions is not None:
                    p.create_dataset("goal_conditions", data=np.asarray(rec.goal_conditions, dtype=np.int16))
                if rec.cost_to_go is not None:
                    p.create_dataset("cost_to_go", data=np.asarray(rec.cost_to_go, dtype=np.int16))
                if rec.expert_actions is not None:
                    p.create_dataset("expert_action", data=np.asarray(rec.expert_actions, dtype=np.int16))
                if rec.action_masks is not None:
                    m = np.ascontiguousarray(rec.action_masks, dtype=np.uint8)
                    g.create_dataset("action_masks", data=m, chunks=m.shape, compression="gzip", compression_opts=_GZIP)
                if extra_step_columns or extra_episode_columns:
                    e = g.create_group("extra")
                    for c in extra_step_columns:
                        e.create_dataset(c, data=np.asarray(rec.extra[c], dtype=np.float32).reshape(-1))
                    for c in extra_episode_columns:
                        e.create_dataset(c, data=json.dumps(rec.extra[c], default=_json_default), dtype=h5py.string_dtype("utf-8"))
                g.attrs["task"] = json.dumps(rec.task, default=_json_default)
                g.attrs["policy"] = rec.policy
                g.attrs["instruction"] = rec.instruction
            # 2. Minari's own columns, through Minari's API
            options = {"task_index": int(rec.task["task_index"])} if "task_index" in rec.task else None
            buf = EpisodeBuffer(
                id=k,
                seed=rec.seed,
                options=options,
                observations={"image": np.asarray(rec.images, dtype=np.uint8), "instruction": [rec.instruction] * (T + 1)},
                actions=np.asarray(rec.actions, dtype=np.int64),
                rewards=np.asarray(rec.rewards, dtype=np.float64),
                terminations=np.asarray(rec.terminations, dtype=bool),
                truncations=np.asarray(rec.truncations, dtype=bool),
            )
            storage.update_episodes([buf])
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if storage.total_episodes == 0:
            raise ValueError(f"no episodes to write to {dataset_id!r}")
        storage.update_metadata({"dataset_size": storage.get_size()})
        # 3. commit: rename into place (replacing an old one only now, with force)
        if did.namespace is not None:
            parts = did.namespace.split("/")
            for j in range(1, len(parts) + 1):
                ns = "/".join(parts[:j])
                if ns not in list_local_namespaces():
                    with contextlib.suppress(ValueError):
                        create_namespace(ns)
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        trash = None
        if final_dir.exists():
            if not force:
                raise FileExistsError(f"dataset {dataset_id!r} already exists at {final_dir}; pass --force (force=True) to replace it")
            _check_nesting(dataset_id, final_dir, root)
            trash = root / _TMP_DIR / f"{os.getpid()}-old-{uuid.uuid4().hex[:12]}"
            os.rename(final_dir, trash)
        try:
            os.rename(tmp, final_dir)  # never replaces a non-empty folder: a dataset that appeared meanwhile wins
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(f"dataset {dataset_id!r} was created at {final_dir} by another process while this one was writing; nothing was replaced") from exc
            raise
        committed = True
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except OSError as exc:
        if exc.errno == errno.ENOSPC or "No space left on device" in str(exc):
            if isinstance(exc, DiskFullError):
                raise
            raise DiskFullError(f"the disk of {root} is full while writing dataset {dataset_id!r} ({exc}); nothing was published and the temporary folder was removed") from exc
        raise
    except RuntimeError as exc:  # h5py reports some write failures as RuntimeError
        if "No space left on device" in str(exc):
            raise DiskFullError(f"the disk of {root} is full while writing dataset {dataset_id!r} ({exc}); nothing was published and the temporary folder was removed") from exc
        raise
    finally:
        if not committed:
            shutil.rmtree(tmp, ignore_errors=True)
        stack.close()
    return minari.load_dataset(dataset_id)

"""The relabel pipeline: a Minari dataset in, a new Minari dataset with LVLM rewards out.

Holds :func:`relabel` (the Python side of ``rgvlm relabel``), :func:`build_labeler`, :func:`default_cache_path`
and :class:`RelabelSummary`.

What :func:`relabel` does, streaming (memory stays flat however many episodes the dataset has):

1. reads the source episodes one at a time (:func:`~rgvlm_gym.data.iter_episodes`; the source is only
   read, never written),
2. labels them concurrently (:func:`~rgvlm_gym.rewards.stream.label_stream`: ``concurrency`` episodes at
   once, at most ``2 * concurrency`` in memory) through the persistent :class:`~rgvlm_gym.rewards.LabelCache`,
3. writes the new dataset atomically (:func:`~rgvlm_gym.data.write_dataset`: nothing appears under
   ``out_id`` until every episode is written; an existing id is replaced only with ``force``).

**Rewards of the new dataset.** For a dense labeler (``rgvlm``, ``oracle``, ``success``, and the baselines
``rlvlmf``, ``rating``, ``gvl``, ``clip``, ``blip2``, ``roboclip``: their ``labeler_args`` are set with
``rgvlm relabel --labeler-arg KEY=VALUE`` / ``--model``) the ``rewards``
column is the combined reward ``sparse + lam * dense`` (``lam`` defaults to 1.0; the dense part is the
labeler's per-step reward, RG-VLM's score / 10, in [0, 1]; no normalisation). ``--labeler sparse`` copies
the sparse reward. Per-step extra columns, each usable as ``rgvlm train --reward COLUMN`` /
``to_d3rlpy(..., reward=COLUMN)``:

- ``original_rewards``: the source's rewards (the environment's sparse reward),
- ``lvlm_rewards``: the dense reward alone (score / 10), for training on LVLM rewards without the sparse
  term; an unlabeled episode has its sparse reward here too (the fallback below),
- ``lvlm_labels``: the raw dense labels for audit, ``NaN`` where the episode is unlabeled (do not train
  on this column when there are unlabeled episodes).

Per-episode columns: ``label_status`` (``ok`` / ``invalid`` / ``error``) and ``label`` (JSON: reason, the
0-10 scores, the LVLM's text answers per stage, calls, usage).

**Unlabeled episodes** (the LVLM answered invalid JSON twice, or a request failed for good): the episode keeps
its sparse reward in ``rewards`` and ``lvlm_rewards``, ``lvlm_labels`` is NaN, and ``label_status`` /
``label["reason"]`` say why. No score is ever invented. ``error`` episodes are not cached, so re-running asks
again; ``invalid`` ones are (``RGVLMLabeler(retry_invalid=True)`` asks again).

**A job that labels too little fails.** More than ``max_unlabeled`` unlabeled episodes (default
:data:`DEFAULT_MAX_UNLABELED`, 5 % of the source's episodes, rounded down -- so on a small dataset any
unlabeled episode fails the job) stop the job at once with :class:`~rgvlm_gym.errors.LabelingError`
(``rgvlm relabel`` exits 1) and nothing is published: a dead endpoint, a wrong API key or a model that never
answers in the format must not produce a "successful" dataset of sparse rewards. The error lists each
kind of failure with its full reason (status codes, URLs) and the episodes. ``max_unlabeled="100%"``
restores the permissive behaviour.

**One writer per id.** The output id is claimed before labeling starts
(:func:`~rgvlm_gym.data.claim_dataset`): a second job for the same id fails at once
(:class:`~rgvlm_gym.errors.DatasetBusyError`); ids inside another dataset's folder are refused.

**Resuming.** Every finished LVLM call and every finished episode is committed to the label cache (SQLite,
WAL) as it completes. Re-running a finished job makes zero LVLM calls; re-running a job that was killed
(SIGKILL included) labels each episode exactly once, asking only the calls that had not finished. The
default cache is ``<cache dir>/labels.sqlite`` (:func:`default_cache_path`; ``$RGVLM_GYM_CACHE_DIR``).

**Relabeling a relabeled dataset** starts from its ``original_rewards`` (labels never stack).

**Provenance** (``dataset_info(out)["relabel"]``): the labeler config, the LVLM spec (no secrets), prompt
version and hash, the parameters, the package version and whether the labels are simulated.

With ``--lvlm sim`` the labels are simulated from ground truth (a test double, not a model's judgement);
every figure :class:`RelabelSummary` prints says "(simulated LVLM)".

Example (simulated LVLM; a tiny dataset collected first):
    >>> import os, tempfile
    >>> old_path = os.environ.get("MINARI_DATASETS_PATH")
    >>> os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp()
    >>> from rgvlm_gym.data import collect_dataset, dataset_info
    >>> from rgvlm_gym.rewards import relabel
    >>> _ = collect_dataset("doctest/relabel-src-v0", episodes=3, num_tasks=10, policy="expert", workers=1,
    ...                     progress=False)
    >>> cache = os.path.join(tempfile.mkdtemp(), "labels.sqlite")
    >>> summary = relabel("doctest/relabel-src-v0", "doctest/relabel-out-v0", "rgvlm", lvlm="sim:noise=0",
    ...                   cache=cache, progress=False)
    >>> summary.episodes, summary.labeled, summary.calls_per_episode, summary.simulated
    (3, 3, 2.0, True)
    >>> prov = dataset_info("doctest/relabel-out-v0")["relabel"]
    >>> prov["simulated"], prov["prompt_version"], prov["labeler"]["params"]["dense"]["type"]
    (True, 'rgvlm_v1', 'rgvlm')
    >>> relabel("doctest/relabel-src-v0", "doctest/relabel-out-v0", "rgvlm", lvlm="sim:noise=0", cache=cache,
    ...         progress=False, force=True).calls
    0
    >>> _ = os.environ.pop("MINARI_DATASETS_PATH") if old_path is None else os.environ.update(MINARI_DATASETS_PATH=old_path)
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.errors import LabelingError
from rgvlm_gym.rewards.base import Labeler, make_labeler, registered_labelers
from rgvlm_gym.rewards.basic import CombinedLabeler, SparseLabeler, oracle_contributions
from rgvlm_gym.rewards.cache import LabelCache
from rgvlm_gym.rewards.quality import QualityReport, label_quality
from rgvlm_gym.rewards.stream import (
    EPISODE_COLUMNS,
    STEP_COLUMNS,
    LabelStats,
    annotate,
    label_stream,
    provenance,
)

if TYPE_CHECKING:
    from minari import MinariDataset

    from rgvlm_gym.lvlm import LVLM

__all__ = [
    "DEFAULT_MAX_UNLABELED",
    "RELABEL_EPISODE_COLUMNS",
    "RELABEL_STEP_COLUMNS",
    "RelabelSummary",
    "build_labeler",
    "labeler_title",
    "default_cache_path",
    "relabel",
    "relabel_labelers",
]

#: per-step extra columns of a relabeled dataset (module docstring).
RELABEL_STEP_COLUMNS = (*STEP_COLUMNS, "lvlm_rewards")
#: per-episode extra columns of a relabeled dataset.
RELABEL_EPISODE_COLUMNS = EPISODE_COLUMNS
SIM_NOTE = "(simulated LVLM)"
_DEFAULT_LAM = 1.0
#: default of ``relabel(max_unlabeled=...)`` / ``--max-unlabeled``: a job with more than 5 % of its episodes
#: unlabeled fails and publishes nothing (a dead endpoint or a wrong key must not produce a "successful" job)
DEFAULT_MAX_UNLABELED = "5%"


def default_cache_path() -> Path:
    """``<rgvlm cache dir>/labels.sqlite`` (``$RGVLM_GYM_CACHE_DIR`` or ``~/.cache/rgvlm_gym``)."""
    from rgvlm_gym.data.embeddings import cache_dir

    return cache_dir() / "labels.sqlite"


def relabel_labelers() -> list[str]:
    """Labeler names ``rgvlm relabel --labeler`` accepts (every registered one but ``combined``, which
    :func:`relabel` builds itself)."""
    return [n for n in registered_labelers() if n != "combined"]


def _make_lvlm(lvlm: LVLM | str | Mapping[str, Any], concurrency: int) -> LVLM:
    """An LVLM client; a spec without ``max_concurrency`` gets ``concurrency`` (so the client does not
    throttle the pipeline below its own concurrency)."""
    from rgvlm_gym.lvlm import LVLM, LVLMSpec, make_lvlm

    if isinstance(lvlm, LVLM):
        return lvlm
    if isinstance(lvlm, str):
        try:
            spec = LVLMSpec.parse(lvlm).to_dict()
        except ValueError as exc:
            raise ValueError(f"Expect `lvlm` to be an LVLM spec (sim[:k=v,...], openai:<model>[@url], hf:<path>), actually: {lvlm!r}: {exc}") from exc
    elif isinstance(lvlm, Mapping) and "type" in lvlm:
        spec = {"type": lvlm["type"], "params": dict(lvlm.get("params") or {})}
    else:
        raise ValueError(f"Expect `lvlm` to be an LVLM, a spec string or a {{'type', 'params'}} dict, actually: {lvlm!r:.80}")
    spec["params"].setdefault("max_concurrency", max(8, int(concurrency)))
    try:
        return make_lvlm(spec)
    except TypeError as exc:  # an unknown option in the spec string
        raise ValueError(f"bad LVLM spec {lvlm!r}: {exc}") from exc


def build_labeler(
    name: str | Mapping[str, Any] | Labeler,
    *,
    lvlm: LVLM | str | Mapping[str, Any] | None = "sim",
    lam: float = _DEFAULT_LAM,
    cache: LabelCache | None = None,
    frame_budget: int | None = None,
    long_episodes: str | None = None,
    concurrency: int = 32,
    labeler_args: Mapping[str, Any] | None = None,
) -> Labeler:
    """The labeler :func:`relabel` runs: ``sparse + lam * <name>`` for a dense labeler, the sparse labeler
    for ``"sparse"``; a ``{"type", "params"}`` config or a :class:`Labeler` is used as given.

    Args:
        name: ``rgvlm``, ``oracle``, ``success``, ``sparse`` (:func:`relabel_labelers`), a config or a labeler.
        lvlm: the LVLM for labelers that ask one (spec string, config or client).
        lam: weight of the dense reward (>= 0).
        cache: the label cache for LVLM labelers (None: none).
        frame_budget: most frames per LVLM request (labelers that have the option; None: their default).
        long_episodes: ``"segments"`` or ``"subsample"`` for episodes over the frame budget (labelers that
            have the option; None: their default, segments).
        concurrency: the LVLM client's ``max_concurrency`` when the spec does not set it.
        labeler_args: further constructor arguments of the labeler (``{"model": PATH}`` for ``clip``,
            ``{"queries_per_episode": 4}`` for ``rlvlmf``...; ``rgvlm relabel --labeler-arg KEY=VALUE``).

    Raises:
        ValueError: an unknown labeler (with "did you mean"), a bad LVLM spec, a bad ``lam``.
    """
    if isinstance(name, Labeler):
        return name
    if isinstance(name, Mapping):
        return make_labeler(name)
    if name == "sparse":
        return SparseLabeler()
    if name == "combined" or name not in registered_labelers():
        make_labeler(name)  # raises the registry's "Unknown labeler ... Did you mean" error
        raise ValueError(f"Expect `labeler` to be one of {relabel_labelers()}, actually: {name!r} (relabel builds the combination itself; see --lam)")
    from rgvlm_gym.rewards.base import _REGISTRY

    cls = _REGISTRY[name]
    kwargs: dict[str, Any] = dict(labeler_args or {})
    if cls.uses_lvlm:
        if lvlm is None:
            raise ValueError(f"labeler {name!r} asks an LVLM: pass `lvlm` (e.g. 'sim' or 'openai:gpt-4o')")
        kwargs["lvlm"] = _make_lvlm(lvlm, concurrency)
        if cache is not None:
            kwargs["cache"] = cache
        accepted = inspect.signature(cls.__init__).parameters
        if frame_budget is not None:
            if "frame_budget" not in accepted:
                raise ValueError(f"labeler {name!r} has no frame budget; leave `frame_budget` unset")
            kwargs["frame_budget"] = frame_budget
        if long_episodes is not None:
            if "long_episodes" not in accepted:
                raise ValueError(f"labeler {name!r} has no long-episode mode; leave `long_episodes` unset")
            kwargs["long_episodes"] = long_episodes
        if cls.needs_fit:  # feedback labelers ask their fit-phase queries this many episodes at a time
            kwargs.setdefault("concurrency", concurrency)
    try:
        dense = cls(**kwargs)
    except TypeError as exc:  # an argument the labeler does not take
        raise ValueError(f"bad arguments for labeler {name!r} ({', '.join(sorted(kwargs))}): {exc}") from exc
    return CombinedLabeler(base=SparseLabeler(), dense=dense, lam=lam)


def labeler_title(config: Mapping[str, Any]) -> str:
    """A labeler config as people name it: ``sparse + 0.5 * rgvlm`` for a combination, else its type.

    >>> labeler_title({"type": "combined", "params": {"base": {"type": "sparse"}, "dense": {"type": "oracle"}, "lam": 0.5}})
    'sparse + 0.5 * oracle'
    >>> labeler_title({"type": "rgvlm", "params": {}})
    'rgvlm'
    """
    params = config.get("params") or {}
    if config.get("type") == "combined" and isinstance(params.get("dense"), Mapping):
        base = labeler_title(params["base"]) if isinstance(params.get("base"), Mapping) else "sparse"
        return f"{base} + {params.get('lam', 1.0):g} * {labeler_title(params['dense'])}"
    return str(config.get("type", "?"))


def _walk(labeler: Labeler) -> Iterator[Labeler]:
    todo = [labeler]
    while todo:
        lab = todo.pop()
        yield lab
        for attr in ("base", "dense"):
            inner = getattr(lab, attr, None)
            if isinstance(inner, Labeler):
                todo.append(inner)


def _lvlms(labeler: Labeler) -> list[LVLM]:
    out: list[LVLM] = []
    for lab in _walk(labeler):
        lvlm = getattr(lab, "lvlm", None)
        if lvlm is not None and all(lvlm is not x for x in out):
            out.append(lvlm)
    return out


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _redact(obj: Any) -> Any:
    """Drop ``user:password@`` from URLs and any ``*key*`` / ``*token*`` / ``*secret*`` values."""
    if isinstance(obj, str):
        return _USERINFO.sub("", obj)
    if isinstance(obj, Mapping):
        return {
            k: ("<redacted>" if re.search(r"api_key$|secret|token$|password", str(k), re.I) and not str(k).endswith("_env") else _redact(v))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_redact(v) for v in obj]
    return obj


@dataclass
class RelabelSummary:
    """What a :func:`relabel` run did; :meth:`text` is the closing summary ``rgvlm relabel`` prints.

    ``calls`` counts LVLM calls made by this run (episodes and calls served from the label cache add none).
    """

    source: str
    out: str
    labeler: dict[str, Any]
    lvlm: str | None
    episodes: int
    steps: int
    labeled: int
    cached: int
    calls: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    images: int
    cost_usd: float
    elapsed_s: float
    simulated: bool
    cache: str | None
    forward_passes: int = 0
    train_s: float = 0.0
    unlabeled: dict[str, int] = field(default_factory=dict)
    unlabeled_episodes: dict[str, list[int]] = field(default_factory=dict)
    quality: QualityReport | None = None

    @property
    def calls_per_episode(self) -> float:
        return self.calls / self.episodes if self.episodes else math.nan

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.elapsed_s if self.elapsed_s > 0 else math.nan

    def text(self) -> str:
        """The closing summary; its first line says so when the labels come from the simulated LVLM."""
        n_unl = self.episodes - self.labeled
        lines = [
            f"Relabeled {self.source} -> {self.out} with {labeler_title(self.labeler)}"
            + (f" ({self.lvlm})" if self.lvlm else ""),
            f"Episodes: {self.episodes} ({self.labeled} labeled, {self.cached} from the cache, {n_unl} unlabeled), "
            f"{self.steps} steps in {self.elapsed_s:.1f} s ({self.episodes_per_s:.1f} episodes/s)",
            f"LVLM calls: {self.calls}",
            f"LVLM calls per episode: {self.calls_per_episode:.2f}; failed calls: {self.failed_calls}",
            f"Tokens: {self.prompt_tokens} in / {self.completion_tokens} out; images: {self.images}",
            f"Model forward passes: {self.forward_passes}; reward-model training: {self.train_s:.3g} s",
            f"Cost: ${self.cost_usd:.4f}",
        ]
        for why, n in sorted(self.unlabeled.items(), key=lambda kv: -kv[1]):
            eps = self.unlabeled_episodes.get(why, [])
            more = ", ..." if n > len(eps) else ""
            lines.append(f"Unlabeled ({n}): {why} [episodes {', '.join(map(str, eps))}{more}]; kept their sparse reward")
        if self.cache:
            lines.append(f"Label cache: {self.cache}")
        if self.quality is not None:
            lines.append("Label quality vs the dense progress oracle (per step):")
            lines.extend(self.quality.table().splitlines())
        if self.simulated:  # said once, first: every figure below derives from simulated labels
            lines.insert(0, "SIMULATED LVLM (sim): the labels and every figure below are simulated from ground truth "
                            "through an error model, not a model's judgement.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "quality"}
        out["quality"] = None if self.quality is None else self.quality.to_dict()
        out["calls_per_episode"] = self.calls_per_episode
        out["episodes_per_s"] = self.episodes_per_s
        return out

    def __str__(self) -> str:
        return self.text()


def _restore_original(rec: EpisodeRecord) -> EpisodeRecord:
    """A record of a relabeled dataset, back to its original rewards and without our audit columns."""
    if "original_rewards" not in rec.extra:
        return rec
    extra = {k: v for k, v in rec.extra.items() if k not in (*RELABEL_STEP_COLUMNS, *RELABEL_EPISODE_COLUMNS)}
    return replace(rec, rewards=np.asarray(rec.extra["original_rewards"], np.float32), extra=extra)


def _check_source(ds: MinariDataset, info: Mapping[str, Any], labeler: Labeler) -> None:
    from rgvlm_gym.data import DatasetError, load_episode

    if ds.total_episodes == 0:
        raise DatasetError(f"dataset {ds.id!r} has no episodes to relabel")
    needs_frames = any(lab.uses_lvlm for lab in _walk(labeler))
    if needs_frames and not info.get("frames", True):
        raise DatasetError(
            f"dataset {ds.id!r} has no LVLM frames (written with frames=False); an LVLM labeler needs them. "
            f"Re-collect it with `rgvlm collect` (frames are stored by default), or use --labeler sparse/oracle"
        )
    first = load_episode(ds, int(next(iter(ds.episode_indices))), frames=needs_frames)
    if not first.instruction.strip():
        raise DatasetError(f"dataset {ds.id!r} episode {first.episode_id} has no instruction (the task goal an LVLM labeler needs)")


class _WriterProcess:
    """``write_dataset`` in a forked child process, fed records through a bounded queue.

    Writing (HDF5 + gzip of every frame) is the largest single cost of a relabel job and holds the GIL; in a
    process of its own it overlaps with reading and labeling. The child is forked before the label cache, the
    LVLM client or any thread exists, and leaves with ``os._exit`` (it never touches the parent's handles).
    It dies with the parent (Linux ``PR_SET_PDEATHSIG``: SIGTERM when the parent dies, even by SIGKILL;
    elsewhere it notices within 0.5 s) and removes its temporary folder on the way out. If the child dies
    first (killed, crashed), the parent raises :class:`~rgvlm_gym.errors.WriterError` -- never hangs.
    """

    def __init__(self, queue_size: int = 4) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self._q = ctx.Queue(maxsize=queue_size)
        self._parent_conn, child_conn = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=self._main, args=(self._q, child_conn, os.getpid()), daemon=True,
                                 name="relabel-writer")
        self._proc.start()
        child_conn.close()

    @staticmethod
    def _main(q: Any, conn: Any, parent: int) -> None:  # pragma: no cover - runs in the child
        import queue as queue_mod
        import signal

        def stop(signum: int, frame: Any) -> None:
            # remove our temporary folder and leave at once: an exception raised here could land inside
            # HDF5's C code (which swallows it, or crashes on a half-written file)
            with contextlib.suppress(BaseException):
                from rgvlm_gym.data.storage import clean_stale_temporaries

                clean_stale_temporaries(exiting_pid=os.getpid())
            os._exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which aborts us
        _die_with_parent()
        code = 0
        try:
            if os.getppid() != parent:  # the parent died before the death signal was armed
                raise RuntimeError("the relabel process died")

            def get() -> Any:
                while True:
                    try:
                        return q.get(timeout=0.5)
                    except queue_mod.Empty:
                        if os.getppid() != parent:
                            raise RuntimeError("the relabel process died") from None

            job = get()
            if job is None:
                return

            def records() -> Iterator[EpisodeRecord]:
                while (item := get()) is not None:
                    if isinstance(item, str):  # "abort"
                        raise RuntimeError("relabel aborted")
                    yield item

            from rgvlm_gym.data import write_dataset

            write_dataset(job["out"], records(), **job["kwargs"])
            conn.send(("ok", None))
        except BaseException as exc:  # reported to the parent, which re-raises it
            code = 1
            with contextlib.suppress(Exception):
                try:
                    conn.send(("error", exc))
                except Exception:
                    conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        finally:
            os._exit(code)

    def _put(self, item: Any) -> None:
        import queue as queue_mod

        while True:
            try:
                self._q.put(item, timeout=0.5)
                return
            except queue_mod.Full:
                if not self._proc.is_alive():
                    self._raise_child_error()

    def _raise_child_error(self) -> None:
        report = None
        if self._parent_conn.poll(5):
            with contextlib.suppress(EOFError, OSError):  # EOF: the child died without a word
                report = self._parent_conn.recv()
        if report is not None and report[0] == "error":
            raise report[1]
        self._proc.join(timeout=10)
        self._forget_queue()
        code = self._proc.exitcode
        how = f"exit code {code}" if code is None or code >= 0 else f"killed by signal {_signal_name(-code)}"
        from rgvlm_gym.data.storage import clean_stale_temporaries
        from rgvlm_gym.errors import WriterError

        clean_stale_temporaries()  # the dead writer's temporary folder
        raise WriterError(
            f"the dataset writer process (pid {self._proc.pid}) died before finishing ({how}); nothing was "
            f"published. Finished labels are in the label cache: re-run to resume")

    def _forget_queue(self) -> None:
        """The child is gone: never wait at exit for records nobody will read (the queue's feeder thread)."""
        with contextlib.suppress(Exception):
            self._q.cancel_join_thread()
            self._q.close()

    def write(self, out: str, records: Iterator[EpisodeRecord], **kwargs: Any) -> None:
        """``write_dataset(out, records, **kwargs)`` in the child; returns when the dataset is committed."""
        self._put({"out": out, "kwargs": kwargs})
        try:
            for rec in records:
                if self._parent_conn.poll() or not self._proc.is_alive():  # the writer failed early (bad record, disk full, killed)
                    self._raise_child_error()
                self._put(rec)
        except BaseException:
            self.abort()
            raise
        self._put(None)
        while not self._parent_conn.poll(0.5):
            if not self._proc.is_alive() and not self._parent_conn.poll(0.5):
                self._raise_child_error()
        try:
            status, exc = self._parent_conn.recv()
        except EOFError:
            self._raise_child_error()
        self._proc.join(timeout=30)
        if status == "error":
            raise exc

    def abort(self) -> None:
        """Stop the child (it removes its temporary dataset folder)."""
        if self._proc.is_alive():
            with contextlib.suppress(Exception):
                self._q.put_nowait("abort")
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=5)
        self._forget_queue()

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(Exception):
                self._q.put_nowait(None)
            self.abort()
        self._forget_queue()


def _die_with_parent() -> None:
    """Linux: the kernel sends this process SIGTERM when its parent dies (SIGKILL included)."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def relabel(
    src: MinariDataset | str,
    out_id: str,
    labeler: str | Mapping[str, Any] | Labeler = "rgvlm",
    *,
    lvlm: LVLM | str | Mapping[str, Any] | None = "sim",
    lam: float = _DEFAULT_LAM,
    force: bool = False,
    concurrency: int = 32,
    cache: LabelCache | str | os.PathLike[str] | bool = True,
    frame_budget: int | None = None,
    long_episodes: str | None = None,
    progress: bool = True,
    quality: bool = True,
    writer_process: bool | None = None,
    max_unlabeled: int | float | str = DEFAULT_MAX_UNLABELED,
    labeler_args: Mapping[str, Any] | None = None,
) -> RelabelSummary:
    """Relabel the Minari dataset ``src`` into the new dataset ``out_id`` (module docstring).

    Args:
        src: the source dataset (id or :class:`minari.MinariDataset`); only read.
        out_id: the new dataset's id (``namespace/name-vN``); must differ from ``src``.
        labeler: a name of :func:`relabel_labelers` (``rewards = sparse + lam * labels``), a
            ``{"type", "params"}`` config or a :class:`Labeler` (used as given: its own cache, its rewards).
        lvlm: the LVLM of an LVLM labeler given by name (spec string, config or client).
        lam: weight of the dense reward in ``rewards``.
        force: replace ``out_id`` if it exists (only once the new dataset is complete).
        concurrency: episodes labeled at once (and the LVLM client's ``max_concurrency`` unless set in its spec).
        cache: label cache: True for :func:`default_cache_path`, a path, a :class:`LabelCache`, or False for
            none (then nothing resumes).
        frame_budget: most frames per LVLM request (None: the labeler's default, 16).
        long_episodes: ``"segments"`` (default: 2 calls per part of ``frame_budget - 1`` actions, every frame
            seen) or ``"subsample"`` (2 calls per episode, ``frame_budget`` frames) for longer episodes.
        progress: a tqdm progress bar (ETA, live calls / tokens / failures) on stderr.
        quality: compute the label-quality report against the oracle (ground truth is in every rgvlm-gym
            dataset; the report is skipped for ``sparse``).
        writer_process: write the new dataset in a forked child process, overlapping writing with reading
            and labeling (None: where ``fork`` exists). The result is the same either way.
        max_unlabeled: how many episodes may end unlabeled (``invalid`` or ``error``) before the job fails:
            an int count, a fraction in [0, 1] (float) or a percentage string such as ``"5%"`` (the default;
            of the source's episodes, rounded down -- so on a small dataset any failure fails the job).
            Over it, the job stops at once and publishes nothing (:class:`~rgvlm_gym.errors.LabelingError`);
            finished labels stay in the cache, so a re-run resumes.
        labeler_args: further constructor arguments of a labeler given by name (:func:`build_labeler`).

    Returns:
        A :class:`RelabelSummary`.

    Raises:
        FileExistsError: ``out_id`` exists and ``force`` is False (:class:`~rgvlm_gym.errors.DatasetBusyError`:
            another job is writing it now).
        LabelingError: more episodes than ``max_unlabeled`` ended unlabeled; nothing was published.
        ValueError: bad arguments; :class:`~rgvlm_gym.data.DatasetError` for an unknown source (with "did you
            mean"), one without frames or instructions, or a corrupted one.
    """
    from rgvlm_gym.data import dataset_info, iter_episodes, open_dataset, write_dataset
    from rgvlm_gym.data.storage import claim_dataset, parse_dataset_id

    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"Expect `concurrency` to be a positive int, actually: {concurrency!r}")
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"Expect `lam` to be a finite number >= 0, actually: {lam!r}")
    ds = open_dataset(src)
    out = str(parse_dataset_id(out_id))
    if out == ds.id:
        raise ValueError(f"Expect `out_id` to differ from the source dataset, actually: both are {out!r} (the source is never modified)")
    allowed = _allowed_unlabeled(max_unlabeled, int(ds.total_episodes))
    info = dataset_info(ds)
    stack = contextlib.ExitStack()
    # claimed before labeling starts (and before the writer is forked, which inherits the claim): a second
    # job for the same id fails now, not after its labels are paid for
    stack.enter_context(claim_dataset(out, force=force))
    writer = own_cache = lab = None
    try:
        writer = _WriterProcess() if (writer_process if writer_process is not None else _can_fork()) else None
        cache_obj: LabelCache | None
        if isinstance(cache, LabelCache):
            cache_obj = cache
        elif cache is False or cache is None:
            cache_obj = None
        else:
            own_cache = cache_obj = LabelCache(default_cache_path() if cache is True else cache)
        lab = build_labeler(labeler, lvlm=lvlm, lam=lam, cache=cache_obj, frame_budget=frame_budget,
                            long_episodes=long_episodes, concurrency=concurrency, labeler_args=labeler_args)
        _check_source(ds, info, lab)
        return _run(ds, out, lab, info, force=force, concurrency=concurrency, cache=cache_obj, progress=progress,
                    quality=quality, lam=lam, frame_budget=frame_budget, long_episodes=long_episodes,
                    write_dataset=write_dataset if writer is None else writer.write, iter_episodes=iter_episodes,
                    allowed_unlabeled=allowed, max_unlabeled=max_unlabeled)
    finally:
        if writer is not None:
            writer.close()
        if lab is not None and not isinstance(labeler, Labeler):
            lab.close()
        if own_cache is not None:
            own_cache.close()
        stack.close()


def _allowed_unlabeled(max_unlabeled: int | float | str, episodes: int) -> int:
    """The number of unlabeled episodes ``max_unlabeled`` allows out of ``episodes``.

    >>> _allowed_unlabeled("5%", 100), _allowed_unlabeled("5%", 10), _allowed_unlabeled(3, 10), _allowed_unlabeled(0.5, 9)
    (5, 0, 3, 4)
    """
    from rgvlm_gym.errors import UsageError

    value: Any = max_unlabeled
    what = f"Expect `max_unlabeled` to be a count (int >= 0), a fraction in [0, 1] or a percentage like '5%', actually: {max_unlabeled!r}"
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text[:-1]) / 100.0 if text.endswith("%") else int(text)
        except ValueError:
            raise UsageError(what) from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UsageError(what)
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise UsageError(what)
        return int(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UsageError(what)
    return int(math.floor(value * episodes + 1e-9))


def _run(
    ds: MinariDataset,
    out: str,
    lab: Labeler,
    info: Mapping[str, Any],
    *,
    force: bool,
    concurrency: int,
    cache: LabelCache | None,
    progress: bool,
    quality: bool,
    lam: float,
    frame_budget: int | None,
    long_episodes: str | None,
    write_dataset: Any,
    iter_episodes: Any,
    allowed_unlabeled: int | None = None,
    max_unlabeled: Any = None,
) -> RelabelSummary:
    lvlms = _lvlms(lab)
    lvlm_spec = _display_spec(lvlms[0].spec) if lvlms else None
    simulated = any(x.backend == "sim" for x in lvlms)
    needs_frames = any(x.uses_lvlm for x in _walk(lab))
    has_dense = isinstance(lab, CombinedLabeler) or not isinstance(lab, SparseLabeler)
    for x in lvlms:
        x.usage.reset()

    prov = provenance(lab)
    prov.update(
        parameters={
            "lam": lam if isinstance(lab, CombinedLabeler) else None,
            "concurrency": concurrency,
            "frame_budget": frame_budget,
            "long_episodes": long_episodes,
            "source_dataset": ds.id,
        },
        rewards="sparse + lam * dense labels" if isinstance(lab, CombinedLabeler) else f"{lab.name} labels",
        columns={
            "rewards": "the combined reward (sparse where the episode is unlabeled)",
            "original_rewards": "the source's rewards",
            "lvlm_rewards": "the dense labels alone (sparse where the episode is unlabeled)",
            "lvlm_labels": "the raw dense labels, NaN where the episode is unlabeled (audit)",
            "label_status": "ok / invalid / error per episode",
            "label": "JSON: reason, 0-10 scores, the LVLM's answers per stage, calls, usage",
        },
    )
    prov = _redact(prov)
    step_cols = list(dict.fromkeys([*[c for c in info.get("extra_step_columns", []) if c not in RELABEL_STEP_COLUMNS], *RELABEL_STEP_COLUMNS]))
    ep_cols = list(dict.fromkeys([*[c for c in info.get("extra_episode_columns", []) if c not in RELABEL_EPISODE_COLUMNS], *RELABEL_EPISODE_COLUMNS]))
    desc = f"{ds.id} relabeled by rgvlm-gym with {labeler_title(lab.config)}" + (f" ({lvlm_spec})" if lvlm_spec else "")
    metadata = {"relabel": prov, "description": desc + (" " + SIM_NOTE if simulated else "")}

    stats = LabelStats()
    if lab.needs_fit:  # reward-model labelers see the whole dataset first (their LVLM calls are cached too)
        lab.fit(lambda: (_restore_original(r) for r in iter_episodes(ds, frames=needs_frames or bool(info.get("frames", True)))))
        fitted = [x.fit_report for x in _walk(lab) if getattr(x, "fit_report", None)]
        if fitted:  # what the reward model was trained on (queries, answers, accuracy, weights digest)
            metadata["relabel"]["reward_model"] = fitted[0]
    labels: list[np.ndarray | None] = []
    values: list[np.ndarray | None] = []
    oracle: list[np.ndarray] = []
    groups: dict[str, list[Any]] = {"task_type": [], "n_subtasks": []}
    unlabeled_eps: dict[str, list[int]] = {}
    reasons: dict[str, str] = {}  # group -> the first full reason (digits and all)
    steps = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=ds.total_episodes, unit="ep", desc=f"relabel {out}" + (" " + SIM_NOTE if simulated else ""), smoothing=0.1)

    def labeled() -> Iterator[EpisodeRecord]:
        nonlocal steps
        source = (_restore_original(r) for r in iter_episodes(ds, frames=needs_frames or bool(info.get("frames", True))))
        with contextlib.closing(label_stream(lab, source, concurrency=concurrency, stats=stats)) as stream:
            for i, (rec, res) in enumerate(stream):
                ann = annotate(rec, res)
                dense = np.asarray(ann.extra["lvlm_labels"], np.float32)
                ann.extra["lvlm_rewards"] = np.where(np.isnan(dense), ann.rewards, dense).astype(np.float32) if res.labeled else ann.rewards.copy()
                if not res.labeled:
                    group = f"{res.status}: {_group(res.reason)}"
                    unlabeled_eps.setdefault(group, []).append(i)
                    reasons.setdefault(group, f"{res.status}: {_first_reason(res.reason)}")
                    n_bad = stats.episodes - stats.labeled
                    if allowed_unlabeled is not None and n_bad > allowed_unlabeled:
                        # stop now: the job fails whatever the rest does; nothing is published
                        raise LabelingError(_too_many(ds.id, out, n_bad, stats.episodes, int(ds.total_episodes), max_unlabeled,
                                                      allowed_unlabeled, unlabeled_eps, reasons), summary=summary(partial=True))
                steps += len(rec)
                if quality and has_dense and rec.cost_to_go is not None and len(rec.progress) == len(rec) + 1:
                    labels.append(None if not res.labeled or np.isnan(dense).any() else dense)
                    vals = res.meta.get("dense_meta", res.meta).get("values")
                    values.append(None if vals is None or len(vals) != len(rec) + 1 else np.asarray(vals, np.float64))
                    oracle.append(oracle_contributions(rec))
                    groups["task_type"].append(str(rec.task.get("task_type", "?")))
                    groups["n_subtasks"].append(int(rec.task.get("n_subtasks", -1)))
                if bar is not None:
                    failed = sum(x.usage.snapshot().failures for x in lvlms)
                    bar.set_postfix({**stats.postfix(), "failed": failed, "cached": stats.cached}, refresh=False)
                    bar.update(1)
                yield ann

    def summary(partial: bool = False) -> RelabelSummary:
        report = None
        if labels and not partial:
            report = label_quality(labels, oracle, groups, values=values, note=f"labels from {lvlm_spec} {SIM_NOTE}" if simulated else "")
        snaps = [x.usage.snapshot() for x in lvlms]
        extra = lab.extra_cost()  # calls and tokens of a fit phase, model forward passes, training time
        return RelabelSummary(
            source=ds.id,
            out=out,
            labeler=_redact(lab.config),
            lvlm=lvlm_spec,
            episodes=stats.episodes,
            steps=steps,
            labeled=stats.labeled,
            cached=stats.cached,
            calls=stats.calls + int(extra.get("calls", 0)),
            failed_calls=sum(s.failures for s in snaps),
            prompt_tokens=stats.prompt_tokens + int(extra.get("prompt_tokens", 0)),
            completion_tokens=stats.completion_tokens + int(extra.get("completion_tokens", 0)),
            images=stats.images + int(extra.get("images", 0)),
            cost_usd=sum(s.cost_usd for s in snaps),
            elapsed_s=stats.elapsed_s,
            simulated=simulated or stats.simulated,
            cache=None if cache is None else str(cache.path),
            unlabeled={reasons[k]: len(v) for k, v in unlabeled_eps.items()},
            unlabeled_episodes={reasons[k]: v[:10] for k, v in unlabeled_eps.items()},
            quality=report,
            forward_passes=int(extra.get("forward_passes", 0)),
            train_s=float(extra.get("train_s", 0.0)),
        )

    records = labeled()
    try:
        write_dataset(out, records, source=ds.id, metadata=metadata, force=force, frames=bool(info.get("frames", True)),
                      extra_step_columns=step_cols, extra_episode_columns=ep_cols)
    finally:
        # now, not when garbage-collected (at exit its labeling thread would be gone): stops the labeling
        records.close()
        if bar is not None:
            bar.close()
    return summary()


def _too_many(src: str, out: str, n_bad: int, seen: int, total: int, max_unlabeled: Any, allowed: int,
              unlabeled_eps: Mapping[str, list[int]], reasons: Mapping[str, str]) -> str:
    lines = [f"relabel {src} -> {out} stopped: {n_bad} of the {seen} episodes labeled so far (of {total}) are unlabeled, "
             f"more than --max-unlabeled {max_unlabeled} allows ({allowed}); {out!r} was not written. Finished labels "
             f"are in the label cache: fix the cause and re-run to resume (or raise --max-unlabeled)."]
    for group, eps in sorted(unlabeled_eps.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"  {len(eps)} x {reasons[group]} [episodes {', '.join(map(str, eps[:10]))}{', ...' if len(eps) > 10 else ''}]")
    return "\n".join(lines)


def _display_spec(spec: str) -> str:
    """An LVLM spec for people: no secrets, no ``max_concurrency`` (a transport setting relabel adds)."""
    out = re.sub(r"(?<=[:,])max_concurrency=\d+,?", "", _redact(spec))
    return out.rstrip(",:")


_PART = re.compile(r"^part \d+/\d+ \(steps \d+-\d+\): ")
_REASON_CHARS = 2000


def _group(reason: str) -> str:
    """The grouping key of a reason: without episode-specific numbers, so equal failures count together
    (only the key; the summary shows a full reason of each group)."""
    return re.sub(r"\d+(\.\d+)?", "#", _PART.sub("", reason.split("; after one repair prompt")[0]))


def _first_reason(reason: str) -> str:
    """A reason as shown: whole (digits, URLs, status codes), without the part prefix, capped generously."""
    text = _PART.sub("", reason.split("; after one repair prompt")[0])
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + f"... [{len(text) - _REASON_CHARS} more characters]"

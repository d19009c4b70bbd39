"""Streaming, concurrent labeling of many episodes: the engine of the relabel pipeline.

Holds :func:`label_stream`, :class:`LabelStats`, :func:`annotate` and :func:`provenance`. Nothing here
reads or writes datasets; the relabel pipeline joins them to the dataset layer::

    records = iter_episodes(src)                                   # streamed, one episode at a time
    stats = LabelStats()
    labeled = (annotate(rec, res) for rec, res in label_stream(labeler, records, stats=stats))
    write_dataset(out, labeled, source=src, metadata=provenance(labeler),
                  extra_step_columns=STEP_COLUMNS, extra_episode_columns=EPISODE_COLUMNS)
    print(stats.summary())                                         # ... "LVLM calls: N" ...

:func:`label_stream` keeps at most ``window`` episodes in memory (default ``2 * concurrency``), labels up to
``concurrency`` of them at once on an event loop of its own (LVLM calls of one episode overlap too), and
yields ``(record, result)`` in input order. Memory stays flat however long the stream is.

:func:`annotate` turns a record and its result into the record to store: ``rewards`` become the labels (the
originals are kept in ``extra["original_rewards"]``), with the raw labels, status and the LVLM's answers
as extra columns for audit. An unlabeled episode keeps its original rewards and says why.

Example (simulated LVLM):
    >>> from rgvlm_gym.rewards import CombinedLabeler, RGVLMLabeler
    >>> from rgvlm_gym.rewards.stream import LabelStats, annotate, label_stream
    >>> from rgvlm_gym.rewards.testing import toy_episode
    >>> labeler = CombinedLabeler(dense=RGVLMLabeler("sim:noise=0,seed=0"), lam=0.5)
    >>> stats = LabelStats()
    >>> out = [annotate(r, res) for r, res in label_stream(labeler, [toy_episode(i) for i in range(3)], stats=stats)]
    >>> out[0].rewards, out[0].extra["original_rewards"], out[0].extra["lvlm_labels"]
    (array([0.25, 0.5 , 1.5 ], dtype=float32), array([0., 0., 1.], dtype=float32), array([0.5, 1. , 1. ], dtype=float32))
    >>> stats.episodes, stats.labeled, stats.calls, stats.simulated
    (3, 3, 6, True)
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.rewards.base import Labeler, LabelResult

__all__ = ["EPISODE_COLUMNS", "STEP_COLUMNS", "LabelStats", "annotate", "label_stream", "provenance"]

#: per-step extra columns :func:`annotate` adds: the rewards before relabeling, and the raw labels
#: (the dense labeler's rewards before combination; NaN where the episode is unlabeled).
STEP_COLUMNS = ("original_rewards", "lvlm_labels")
#: per-episode extra columns: ``label_status`` ("ok" / "invalid" / "error") and ``label`` (JSON: reason,
#: raw scores, the LVLM's text answers, calls, usage, metadata).
EPISODE_COLUMNS = ("label_status", "label")


@dataclass
class LabelStats:
    """Running totals of a labeling job (thread-safe updates through :meth:`add`).

    ``calls`` counts LVLM calls made now; episodes served from the label cache add none.
    """

    episodes: int = 0
    labeled: int = 0
    cached: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    simulated: bool = False
    unlabeled: collections.Counter[str] = field(default_factory=collections.Counter)
    started: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, result: LabelResult) -> None:
        with self._lock:
            self.episodes += 1
            self.labeled += int(result.labeled)
            self.cached += int(result.cached)
            self.calls += result.calls
            self.prompt_tokens += int(result.usage.get("prompt_tokens", 0))
            self.completion_tokens += int(result.usage.get("completion_tokens", 0))
            self.images += int(result.usage.get("images", 0))
            self.simulated = self.simulated or result.simulated
            if not result.labeled:
                self.unlabeled[f"{result.status}: {_reason_kind(result.reason)}"] += 1

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def postfix(self) -> dict[str, Any]:
        """Short live counters for a progress bar."""
        return {"calls": self.calls, "tok": self.prompt_tokens + self.completion_tokens, "unlabeled": self.episodes - self.labeled}

    def summary(self, cost_usd: float | None = None) -> str:
        """Closing summary lines (episodes, calls, tokens, cost, unlabeled and why)."""
        rate = self.episodes / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [
            f"Episodes: {self.episodes} ({self.labeled} labeled, {self.cached} from the cache, "
            f"{self.episodes - self.labeled} unlabeled) in {self.elapsed_s:.1f} s ({rate:.1f} episodes/s)",
            f"LVLM calls: {self.calls}",
            f"Tokens: {self.prompt_tokens} in / {self.completion_tokens} out; images: {self.images}",
        ]
        if cost_usd is not None:
            lines.append(f"Cost: ${cost_usd:.4f}")
        for why, n in self.unlabeled.most_common():
            lines.append(f"Unlabeled ({n}): {why}")
        if self.simulated:
            lines.append("Labels come from the simulated LVLM (sim): they are simulated, not a model's judgement.")
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """The reason without episode-specific numbers, for grouping ("expected 7 scores" -> "expected N scores")."""
    return re.sub(r"\d+(\.\d+)?", "N", reason.split("; after one repair prompt")[0])[:160]


def label_stream(
    labeler: Labeler,
    episodes: Iterable[EpisodeRecord],
    *,
    concurrency: int = 32,
    window: int | None = None,
    stats: LabelStats | None = None,
    on_result: Callable[[EpisodeRecord, LabelResult], None] | None = None,
) -> Iterator[tuple[EpisodeRecord, LabelResult]]:
    """Label a stream of episodes concurrently; yield ``(record, result)`` in input order.

    Args:
        labeler: any :class:`~rgvlm_gym.rewards.base.Labeler`.
        episodes: records, consumed lazily.
        concurrency: episodes labeled at once (the LVLM client's own ``max_concurrency`` bounds its calls).
        window: episodes read ahead at most (default ``2 * concurrency``); memory holds about this many.
        stats: totals to update (:class:`LabelStats`).
        on_result: called with each finished ``(record, result)``, in input order.

    Exceptions a labeler raises for bad input (``ValueError``: an episode without frames...) propagate
    at the episode that caused them; episodes before it have been yielded.
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"Expect `concurrency` to be a positive int, actually: {concurrency!r}")
    window = 2 * concurrency if window is None else window
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"Expect `window` to be a positive int or None, actually: {window!r}")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="label_stream", daemon=True)
    thread.start()
    sem_box: dict[str, asyncio.Semaphore] = {}

    async def one(record: EpisodeRecord) -> LabelResult:
        sem = sem_box.setdefault("sem", asyncio.Semaphore(concurrency))
        async with sem:
            return await labeler.alabel(record)

    pending: collections.deque[tuple[EpisodeRecord, concurrent.futures.Future[LabelResult]]] = collections.deque()
    source = iter(episodes)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                try:
                    record = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending.append((record, asyncio.run_coroutine_threadsafe(one(record), loop)))
            if not pending:
                break
            record, future = pending.popleft()
            result = future.result()
            if stats is not None:
                stats.add(result)
            if on_result is not None:
                on_result(record, result)
            yield record, result
    finally:
        for _, future in pending:
            future.cancel()
        with_timeout = asyncio.run_coroutine_threadsafe(_drain(labeler), loop)
        with contextlib.suppress(Exception):  # closing clients is best effort
            with_timeout.result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


async def _drain(labeler: Labeler) -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    await labeler._release_loop_resources()


def annotate(record: EpisodeRecord, result: LabelResult) -> EpisodeRecord:
    """The record to store after labeling (module docstring; columns :data:`STEP_COLUMNS`,
    :data:`EPISODE_COLUMNS`). The input record is not modified."""
    n = len(record)
    original = np.asarray(record.rewards, dtype=np.float32).copy()
    labels = np.full(n, np.nan, dtype=np.float32)
    rewards = original.copy()
    if result.labeled:
        assert result.rewards is not None and result.rewards.shape == (n,), (result.rewards, n)
        rewards = result.rewards.astype(np.float32)
        if "dense_status" not in result.meta:  # a single labeler: its rewards are the labels
            labels = rewards.copy()
        elif "dense" in result.meta:  # a combination: the dense part before normalisation
            labels = np.asarray(result.meta["dense"], dtype=np.float32)
        # (a combination that fell back to its base reward has no dense labels: NaN)
    label = result.to_dict()
    label.pop("rewards", None)
    extra = {
        **record.extra,
        "original_rewards": original,
        "lvlm_labels": labels,
        "label_status": result.status,
        "label": json.loads(json.dumps(label, default=_json_default)),
    }
    return replace(record, rewards=rewards, extra=extra)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def provenance(labeler: Labeler) -> dict[str, Any]:
    """Metadata for a relabeled dataset: the labeler config (no secrets), LVLM spec, prompt version and
    hash, package version, and whether the labels are simulated."""
    from rgvlm_gym.rewards.cache import _package_version

    out: dict[str, Any] = {"labeler": labeler.config, "package_version": _package_version()}
    inner = [labeler]
    while inner:
        lab = inner.pop()
        for attr in ("base", "dense"):
            if isinstance(getattr(lab, attr, None), Labeler):
                inner.append(getattr(lab, attr))
        lvlm = getattr(lab, "lvlm", None)
        if lvlm is not None:
            out["lvlm"] = lvlm.spec
            out["simulated"] = lvlm.backend == "sim"
        prompts = getattr(lab, "prompts", None)
        if prompts is not None:
            out["prompt_version"] = prompts.version
            out["prompt_sha256"] = prompts.sha256
    return out

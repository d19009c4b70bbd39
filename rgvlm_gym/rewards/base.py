"""The labeler interface shared by every reward labeler, and the labeler registry.

Holds:

- :class:`LabelResult` — one episode's labels (one float per step, or ``None`` when unlabeled) and metadata.
- :class:`Labeler` — the interface: ``label(episode)`` / ``async alabel(episode)`` / ``label_many``,
  ``config`` (``{"type", "params"}``, no secrets).
- :func:`register_labeler`, :func:`make_labeler`, :func:`registered_labelers` — registered factories.
- :func:`run_coroutine` — run a coroutine to completion from sync code (inside Jupyter too).

Statuses of a :class:`LabelResult`:

- ``"ok"``: ``rewards`` holds one float per step.
- ``"invalid"``: the LVLM answered, but not validly even after one repair prompt; ``rewards`` is None and
  ``reason`` says what was wrong. Cached: a re-run does not ask again (pass ``retry_invalid=True`` to).
- ``"error"``: an LVLM request failed for good (network, server); ``rewards`` is None. Not cached, so a
  re-run asks again.

Scores are never invented: an episode is labeled completely or not at all.
"""

from __future__ import annotations

import abc
import asyncio
import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from rgvlm_gym._async import run_coroutine
from rgvlm_gym.data.episode import EpisodeRecord

__all__ = [
    "LABEL_STATUSES",
    "LabelResult",
    "Labeler",
    "make_labeler",
    "register_labeler",
    "registered_labelers",
    "run_coroutine",
]

LABEL_STATUSES = ("ok", "invalid", "error")
T = TypeVar("T")


def _as_float_array(x: Any) -> np.ndarray | None:
    return None if x is None else np.asarray(x, dtype=np.float32)


@dataclass
class LabelResult:
    """One episode's labels.

    Attributes:
        rewards: (T,) float32, one reward per step; None when the episode is unlabeled.
        status: ``"ok"``, ``"invalid"`` or ``"error"`` (module docstring).
        reason: why the episode is unlabeled ("" when ok).
        raw_scores: (T,) the labeler's own scale before normalisation (0..10 for RG-VLM), if any.
        texts: the LVLM's answers in order, as ``{"part", "stage", "text"}`` dicts (``stage`` is
            ``"analysis"``, ``"scores"``, ``"repair"``, ``"success"``...).
        calls: LVLM calls made for this result now (0 when it came from the cache).
        usage: token / image / latency totals of those calls (``prompt_tokens``, ``completion_tokens``,
            ``images``, ``latency_s``).
        cached: True when the whole result came from the label cache.
        simulated: True when any answer came from the simulated LVLM (the labels are then simulated).
        meta: labeler-specific details (parts, frame indices, components of a combination...).
    """

    rewards: np.ndarray | None
    status: str = "ok"
    reason: str = ""
    raw_scores: np.ndarray | None = None
    texts: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    usage: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    simulated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.status in LABEL_STATUSES, self.status
        assert (self.rewards is not None) == (self.status == "ok"), (self.status, self.rewards)
        self.rewards = _as_float_array(self.rewards)
        self.raw_scores = _as_float_array(self.raw_scores)

    @property
    def labeled(self) -> bool:
        return self.status == "ok"

    @classmethod
    def unlabeled(cls, status: str, reason: str, **kw: Any) -> LabelResult:
        return cls(rewards=None, status=status, reason=reason, **kw)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (cache rows, audit columns); :meth:`from_dict` reads it back."""
        return {
            "rewards": None if self.rewards is None else self.rewards.tolist(),
            "status": self.status,
            "reason": self.reason,
            "raw_scores": None if self.raw_scores is None else self.raw_scores.tolist(),
            "texts": list(self.texts),
            "calls": self.calls,
            "usage": dict(self.usage),
            "simulated": self.simulated,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, cached: bool = False) -> LabelResult:
        return cls(
            rewards=data.get("rewards"),
            status=data["status"],
            reason=data.get("reason", ""),
            raw_scores=data.get("raw_scores"),
            texts=list(data.get("texts", [])),
            calls=int(data.get("calls", 0)),
            usage=dict(data.get("usage", {})),
            cached=cached,
            simulated=bool(data.get("simulated", False)),
            meta=dict(data.get("meta", {})),
        )


class Labeler(abc.ABC):
    """Turns an episode into one reward per step.

    Subclasses set :attr:`name`, implement :meth:`label` (and :meth:`alabel` when they call an LVLM) and
    :meth:`params`; ``make_labeler(labeler.config)`` rebuilds an equal labeler.
    """

    #: registry name (``"rgvlm"``, ``"sparse"``, ``"oracle"``...).
    name: ClassVar[str] = ""
    #: whether labels come from an LVLM (and so cost calls).
    uses_lvlm: ClassVar[bool] = False
    #: whether the labeler must see the whole dataset before labeling any episode (labelers that train a
    #: reward model); :func:`~rgvlm_gym.rewards.relabel` then calls :meth:`fit` first.
    needs_fit: ClassVar[bool] = False

    def fit(self, episodes: Callable[[], Iterable[EpisodeRecord]] | Iterable[EpisodeRecord]) -> None:  # noqa: B027
        """Learn from the dataset before labeling (a no-op unless :attr:`needs_fit`).

        ``episodes`` is an iterable of records or a function returning a fresh iterator over them (the
        dataset may be read more than once).
        """

    def extra_cost(self) -> dict[str, float]:
        """Costs not carried by per-episode results: LVLM calls / tokens / images made in :meth:`fit`,
        model ``forward_passes``, reward-model ``train_s``. Totals since the labeler was built."""
        return {}

    @abc.abstractmethod
    def label(self, episode: EpisodeRecord) -> LabelResult:
        """Label one episode (blocking)."""

    async def alabel(self, episode: EpisodeRecord) -> LabelResult:
        """Label one episode (async); labelers without I/O answer at once."""
        return self.label(episode)

    async def alabel_many(self, episodes: Iterable[EpisodeRecord], *, concurrency: int = 8) -> list[LabelResult]:
        """Label episodes concurrently (at most ``concurrency`` at once); results in episode order."""
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"Expect `concurrency` to be a positive int, actually: {concurrency!r}")
        sem = asyncio.Semaphore(concurrency)

        async def one(ep: EpisodeRecord) -> LabelResult:
            async with sem:
                return await self.alabel(ep)

        return list(await asyncio.gather(*(one(ep) for ep in episodes)))

    def label_many(self, episodes: Sequence[EpisodeRecord], *, concurrency: int = 8) -> list[LabelResult]:
        """Blocking :meth:`alabel_many`."""

        async def run() -> list[LabelResult]:
            try:
                return await self.alabel_many(episodes, concurrency=concurrency)
            finally:
                await self._release_loop_resources()

        return run_coroutine(run)

    async def _release_loop_resources(self) -> None:  # noqa: B027 - optional hook
        """Close per-event-loop clients before a loop of ours ends (LVLM labelers override it)."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this labeler (JSON-able, no secrets)."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Labeler:
        return cls(**params)

    @property
    def config(self) -> dict[str, Any]:
        """``{"type": name, "params": {...}}``; :func:`make_labeler` rebuilds the labeler from it."""
        return {"type": self.name, "params": self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release caches and clients (idempotent)."""


_REGISTRY: dict[str, type[Labeler]] = {}


def register_labeler(name: str, cls: type[Labeler], *, overwrite: bool = False) -> None:
    """Register a labeler class under ``name`` (the ``"type"`` of its config)."""
    if not isinstance(cls, type) or not issubclass(cls, Labeler):
        raise ValueError(f"Expect `cls` to be a Labeler subclass, actually: {cls!r}")
    if name in _REGISTRY and not overwrite and _REGISTRY[name] is not cls:
        raise ValueError(f"labeler {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = cls


def registered_labelers() -> list[str]:
    """Names of the registered labelers."""
    return sorted(_REGISTRY)


def make_labeler(config: str | Mapping[str, Any] | Labeler, **params: Any) -> Labeler:
    """Build a labeler from a name plus keyword params, or from a ``{"type", "params"}`` config.

    Keyword ``params`` override the config's (e.g. ``make_labeler(cfg, cache="labels.sqlite")``).

    Example:
        >>> from rgvlm_gym.rewards import make_labeler
        >>> make_labeler("combined", base="sparse", dense="oracle", lam=0.5).config
        {'type': 'combined', 'params': {'base': {'type': 'sparse', 'params': {}}, 'dense': {'type': 'oracle', 'params': {'variant': 'progress'}}, 'lam': 0.5, 'normalize': 'none', 'fallback': 'none'}}
    """
    if isinstance(config, Labeler):
        if params:
            raise ValueError("Expect no extra params when `config` is already a Labeler")
        return config
    if isinstance(config, str):
        name, merged = config, dict(params)
    elif isinstance(config, Mapping) and "type" in config:
        name, merged = str(config["type"]), {**dict(config.get("params") or {}), **params}
    else:
        raise ValueError(
            f"Expect `config` to be a labeler name or a {{'type', 'params'}} dict, actually: {config!r:.80}"
        )
    if name not in _REGISTRY:
        hint = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        raise ValueError(
            f"Unknown labeler {name!r}; registered: {', '.join(registered_labelers())}."
            + (f" Did you mean {hint[0]!r}?" if hint else "")
        )
    return _REGISTRY[name].from_params(merged)

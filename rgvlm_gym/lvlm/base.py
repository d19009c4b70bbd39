"""The LVLM client interface shared by every backend.

Holds:

- :class:`LVLM` — the abstract client: ``chat``, ``achat``, ``chat_many`` / ``achat_many``, ``usage``,
  ``spec`` and ``config``.
- :class:`LVLMResponse` — one answer (``text``, ``usage``, ``model``).
- :class:`LVLMError`, :class:`LVLMRequestError` — typed errors.
- message helpers: :func:`normalize_messages`, :func:`strip_privileged`, :func:`privileged_data`,
  :func:`count_images`.

Messages are OpenAI-style chat::

    [{"role": "system" | "user" | "assistant",
      "content": "plain text" | [
          {"type": "text", "text": "..."},
          {"type": "image", "image": np.uint8 (H, W, 3) array or PIL.Image},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
          {"type": "privileged", "data": {...}},   # ground truth for the simulated LVLM only
      ]}]

``privileged`` parts carry ground truth for :mod:`rgvlm_gym.lvlm.sim`; real backends strip them before
anything is sent, logged or counted.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rgvlm_gym._async import run_coroutine
from rgvlm_gym.lvlm.usage import LVLMUsage, Price, UsageMeter

__all__ = [
    "LVLM",
    "LVLMError",
    "LVLMRequestError",
    "LVLMResponse",
    "Messages",
    "count_images",
    "normalize_messages",
    "privileged_data",
    "strip_privileged",
]

Messages = Sequence[Mapping[str, Any]]

_ROLES = ("system", "user", "assistant")
_PART_TYPES = ("text", "image", "image_url", "privileged")


class LVLMError(RuntimeError):
    """Base class of the errors raised by LVLM clients."""


class LVLMRequestError(LVLMError):
    """A request failed for good (after the last retry, or at once for a non-retryable status).

    Attributes:
        model: the model asked.
        url: the endpoint (credentials removed).
        attempts: how many attempts were made.
        status: the last HTTP status code, or a word for failures without one (``"timeout"``,
            ``"connection error"``, ``"invalid response"``).
        reason: the last error message, secrets redacted.
    """

    def __init__(self, *, model: str, url: str, attempts: int, status: int | str, reason: str) -> None:
        self.model = model
        self.url = url
        self.attempts = attempts
        self.status = status
        self.reason = reason
        tries = "attempt" if attempts == 1 else "attempts"
        super().__init__(
            f"LVLM request to model {model!r} at {url} failed after {attempts} {tries}; "
            f"last status: {status}: {reason}"
        )


@dataclass(frozen=True)
class LVLMResponse:
    """One LVLM answer.

    Attributes:
        text: the generated text.
        usage: tokens, images, latency and retries of the call (:class:`~rgvlm_gym.lvlm.usage.LVLMUsage`).
        model: the model that answered (``"sim"`` for the simulated LVLM).
        finish_reason: why generation stopped, when the backend says (``"stop"``, ``"length"``...).
    """

    text: str
    usage: LVLMUsage
    model: str
    finish_reason: str | None = None

    @property
    def simulated(self) -> bool:
        return self.usage.simulated

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for caches); :meth:`from_dict` reads it back."""
        return {
            "text": self.text,
            "usage": dataclasses.asdict(self.usage),
            "model": self.model,
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LVLMResponse:
        return cls(
            text=data["text"],
            usage=LVLMUsage(**data.get("usage", {})),
            model=data["model"],
            finish_reason=data.get("finish_reason"),
        )


# --------------------------------------------------------------------------------------------- messages


def _check_image(image: Any, where: str) -> None:
    from PIL import Image

    if isinstance(image, Image.Image):
        return
    if isinstance(image, np.ndarray):
        if (
            image.dtype != np.uint8
            or image.ndim not in (2, 3)
            or (image.ndim == 3 and image.shape[2] not in (1, 3, 4))
        ):
            raise ValueError(
                f"Expect {where} to be an np.uint8 array of shape (H, W, 3), actually: "
                f"dtype={image.dtype}, shape={image.shape}"
            )
        return
    raise ValueError(
        f"Expect {where} to be an np.uint8 (H, W, 3) array or a PIL.Image, actually: {type(image).__name__}"
    )


def normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """Validate ``messages`` and return them with every ``content`` as a list of parts.

    Raises:
        ValueError: on an unknown role or part type, a missing field, or an image that is not an
            np.uint8 (H, W, 3) array or a PIL image.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(
            f"Expect `messages` to be a list of {{'role', 'content'}} dicts, actually: {type(messages).__name__}"
        )
    if not messages:
        raise ValueError("Expect `messages` to hold at least one message, actually: an empty list")
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or "role" not in msg or "content" not in msg:
            raise ValueError(
                f"Expect messages[{i}] to be a dict with 'role' and 'content', actually: {msg!r:.80}"
            )
        role = msg["role"]
        if role not in _ROLES:
            raise ValueError(f"Expect messages[{i}]['role'] to be one of {_ROLES}, actually: {role!r}")
        content = msg["content"]
        if isinstance(content, str):
            parts: list[dict[str, Any]] = [{"type": "text", "text": content}]
        elif isinstance(content, Sequence):
            parts = []
            for j, part in enumerate(content):
                where = f"messages[{i}]['content'][{j}]"
                if isinstance(part, str):
                    part = {"type": "text", "text": part}
                if not isinstance(part, Mapping) or part.get("type") not in _PART_TYPES:
                    got = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                    raise ValueError(f"Expect {where}['type'] to be one of {_PART_TYPES}, actually: {got!r}")
                kind = part["type"]
                if kind == "text" and not isinstance(part.get("text"), str):
                    raise ValueError(
                        f"Expect {where}['text'] to be a str, actually: {type(part.get('text')).__name__}"
                    )
                if kind == "image":
                    _check_image(part.get("image"), f"{where}['image']")
                if kind == "image_url":
                    url = part.get("image_url")
                    if not (isinstance(url, Mapping) and isinstance(url.get("url"), str)):
                        raise ValueError(
                            f"Expect {where}['image_url'] to be {{'url': str}}, actually: {url!r:.80}"
                        )
                if kind == "privileged" and not isinstance(part.get("data"), Mapping):
                    raise ValueError(
                        f"Expect {where}['data'] to be a dict, actually: {type(part.get('data')).__name__}"
                    )
                parts.append(dict(part))
        else:
            raise ValueError(
                f"Expect messages[{i}]['content'] to be a str or a list of parts, actually: {type(content).__name__}"
            )
        out.append({"role": role, "content": parts})
    return out


def strip_privileged(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop every ``privileged`` part (and any message left empty by that) from normalised messages."""
    out = []
    for msg in messages:
        parts = [p for p in msg["content"] if p["type"] != "privileged"]
        if parts:
            out.append({"role": msg["role"], "content": parts})
    return out


def privileged_data(messages: list[dict[str, Any]]) -> list[Mapping[str, Any]]:
    """The ``data`` of every ``privileged`` part, in message order."""
    return [p["data"] for msg in messages for p in msg["content"] if p["type"] == "privileged"]


def count_images(messages: list[dict[str, Any]]) -> int:
    """How many image parts (``image`` or ``image_url``) the normalised messages hold."""
    return sum(1 for msg in messages for p in msg["content"] if p["type"] in ("image", "image_url"))


# --------------------------------------------------------------------------------------------- client


class LVLM(abc.ABC):
    """A vision-language model client.

    Subclasses implement :meth:`_chat` (and :meth:`_achat` when they have a native async path; the default
    runs :meth:`_chat` in a worker thread). The base class validates messages, bounds concurrency, and
    records usage in :attr:`usage`.

    Args:
        max_concurrency: at most this many :meth:`achat` calls of this client run at once (per event loop).
        gen_defaults: generation settings used when a call does not give them (``temperature``,
            ``max_tokens``, ``seed``, ``response_format``...).
        prices: optional price table for :attr:`usage` (model -> dollars per 1M input/output tokens).
    """

    #: registry name of the backend (``"sim"``, ``"openai"``, ``"hf"``).
    backend: ClassVar[str] = ""

    def __init__(
        self,
        *,
        max_concurrency: int = 8,
        gen_defaults: Mapping[str, Any] | None = None,
        prices: Mapping[str, Price | tuple[float, float]] | None = None,
    ) -> None:
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"Expect `max_concurrency` to be a positive int, actually: {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        self.gen_defaults: dict[str, Any] = dict(gen_defaults or {})
        self.usage = UsageMeter(prices)
        self._thread_slots = threading.BoundedSemaphore(max_concurrency)
        self._loop_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._slots_lock = threading.Lock()

    # -- what subclasses provide

    @property
    @abc.abstractmethod
    def model(self) -> str:
        """The model name reported in responses and usage."""

    @abc.abstractmethod
    def _params(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this client (no secrets)."""

    @abc.abstractmethod
    def _chat(self, messages: list[dict[str, Any]], gen: dict[str, Any]) -> LVLMResponse:
        """Answer normalised messages (blocking)."""

    async def _achat(self, messages: list[dict[str, Any]], gen: dict[str, Any]) -> LVLMResponse:
        """Answer normalised messages (async); the default runs :meth:`_chat` in a worker thread."""
        return await asyncio.to_thread(self._chat, messages, gen)

    # -- serialisation

    @property
    def config(self) -> dict[str, Any]:
        """``{"type": backend, "params": {...}}``: ``make_lvlm(lvlm.config)`` rebuilds the client. No secrets."""
        params = self._params()
        if self.max_concurrency != 8:
            params["max_concurrency"] = self.max_concurrency
        if self.gen_defaults:
            params["gen_defaults"] = dict(self.gen_defaults)
        if self.usage.prices:
            params["prices"] = {
                k: (p.input_per_mtok, p.output_per_mtok) for k, p in self.usage.prices.items()
            }
        return {"type": self.backend, "params": params}

    @property
    def spec(self) -> str:
        """The spec string of this client (``sim:...``, ``openai:model@url``, ``hf:path``); no secrets."""
        from rgvlm_gym.lvlm.registry import LVLMSpec

        return LVLMSpec.from_config(self.config).to_string()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickles rebuild from the secret-free config (keys are re-read from the environment).
        from rgvlm_gym.lvlm.registry import make_lvlm

        return make_lvlm, (self.config,)

    # -- calls

    def _merge_gen(self, gen: Mapping[str, Any]) -> dict[str, Any]:
        merged = {**self.gen_defaults, **gen}
        max_tokens = merged.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"Expect `max_tokens` to be a positive int, actually: {max_tokens!r}")
        temperature = merged.get("temperature")
        if temperature is not None and (not isinstance(temperature, (int, float)) or temperature < 0):
            raise ValueError(f"Expect `temperature` to be a number >= 0, actually: {temperature!r}")
        return merged

    def chat(self, messages: Messages, **gen: Any) -> LVLMResponse:
        """Answer one conversation.

        Args:
            messages: OpenAI-style chat messages (see the module docstring).
            **gen: generation settings: ``temperature``, ``max_tokens``, ``top_p``, ``seed``, ``stop``,
                ``response_format`` (e.g. ``{"type": "json_object"}``); backends pass on what they support.

        Returns:
            The :class:`LVLMResponse`.
        """
        norm = normalize_messages(messages)
        settings = self._merge_gen(gen)
        with self._thread_slots:
            return self._run_recorded(lambda: self._chat(norm, settings), norm)

    async def achat(self, messages: Messages, **gen: Any) -> LVLMResponse:
        """Async :meth:`chat`; at most ``max_concurrency`` run at once per event loop."""
        norm = normalize_messages(messages)
        settings = self._merge_gen(gen)
        async with self._slot():
            start = time.perf_counter()
            try:
                response = await self._achat(norm, settings)
            except BaseException as exc:
                self._record_failure(exc, norm, time.perf_counter() - start)
                raise
            self.usage.record(response.model, response.usage)
            return response

    def _run_recorded(self, fn: Callable[[], LVLMResponse], norm: list[dict[str, Any]]) -> LVLMResponse:
        start = time.perf_counter()
        try:
            response = fn()
        except BaseException as exc:
            self._record_failure(exc, norm, time.perf_counter() - start)
            raise
        self.usage.record(response.model, response.usage)
        return response

    def _record_failure(self, exc: BaseException, norm: list[dict[str, Any]], latency_s: float) -> None:
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, ValueError)):
            return
        attempts = exc.attempts if isinstance(exc, LVLMRequestError) else 1
        self.usage.record_failure(
            self.model,
            retries=max(attempts - 1, 0),
            images=count_images(strip_privileged(norm)),
            latency_s=latency_s,
        )

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._slots_lock:
            sem = self._loop_slots.get(loop)
            if sem is None:
                sem = self._loop_slots[loop] = asyncio.Semaphore(self.max_concurrency)
            return sem

    async def achat_many(
        self,
        requests: Sequence[Messages],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        **gen: Any,
    ) -> list[LVLMResponse | BaseException]:
        """Answer many conversations concurrently; results in request order.

        Args:
            requests: one message list per conversation.
            concurrency: an extra bound on in-flight calls for this batch (the client's
                ``max_concurrency`` always applies).
            return_exceptions: put a failed call's exception in its slot instead of raising the first one.
            **gen: generation settings for every call.
        """
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise ValueError(f"Expect `concurrency` to be a positive int or None, actually: {concurrency!r}")
        local = asyncio.Semaphore(concurrency) if concurrency else None

        async def one(msgs: Messages) -> LVLMResponse:
            if local is None:
                return await self.achat(msgs, **gen)
            async with local:
                return await self.achat(msgs, **gen)

        return list(await asyncio.gather(*(one(m) for m in requests), return_exceptions=return_exceptions))

    def chat_many(
        self,
        requests: Sequence[Messages],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        **gen: Any,
    ) -> list[LVLMResponse | BaseException]:
        """Blocking :meth:`achat_many` (runs its own event loop; works inside Jupyter too)."""

        async def run() -> list[LVLMResponse | BaseException]:
            try:
                return await self.achat_many(
                    requests, concurrency=concurrency, return_exceptions=return_exceptions, **gen
                )
            finally:
                await self._release_loop_resources()

        return run_coroutine(run)

    async def _release_loop_resources(self) -> None:  # noqa: B027 - optional hook
        """Close what this client opened on the running event loop (called before ``chat_many``'s own
        loop ends); backends with per-loop network clients override it."""

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing to release
        """Release network clients or models (idempotent)."""

    def __enter__(self) -> LVLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

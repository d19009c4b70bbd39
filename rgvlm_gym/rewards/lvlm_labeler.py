"""The machinery shared by labelers that ask an LVLM: :class:`LVLMLabeler`.

A subclass describes its conversation with the model as a *protocol*: a generator that yields a batch of
requests (``(messages, gen)`` pairs), receives their answers (an :class:`~rgvlm_gym.lvlm.LVLMResponse`,
or the :class:`~rgvlm_gym.lvlm.LVLMError` of a request that failed for good), and finally returns the
:class:`~rgvlm_gym.rewards.base.LabelResult`. The same protocol runs blocking (``label``: one
``lvlm.chat`` after another) or async (``alabel``: a batch's requests concurrently with ``lvlm.achat``).

Around the protocol this class keeps the :class:`~rgvlm_gym.rewards.cache.LabelCache` (when one is given):
a stored episode result is returned without any call; otherwise every finished call is stored as soon as it
returns, and the episode's result as soon as it is complete. ``"error"`` results (a request failed for good)
are not stored, so a re-run asks again; ``"invalid"`` ones are, unless ``retry_invalid=True`` (which
asks the model afresh for episodes cached as invalid, without replaying their stored answers).

Cache keys hold the LVLM's *model identity*: its ``{"type", "params"}`` config without transport settings
that cannot change an answer (concurrency, timeouts, retries, prices, the sim's latency, API key variable).
Privileged ground truth enters the keys only for the simulated LVLM, the one backend that reads it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import warnings
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.lvlm import LVLM, LVLMError, LVLMResponse, make_lvlm
from rgvlm_gym.rewards.base import Labeler, LabelResult
from rgvlm_gym.rewards.cache import LabelCache, array_digest, content_key

__all__ = ["MAX_ANSWER_CHARS", "LVLMLabeler", "Protocol", "Request", "model_identity"]

#: longest LVLM answer kept (characters); longer ones are cut before they are parsed, cached or stored
#: (a real model's answer, capped by ``max_tokens``, is far shorter; a server that ignores the cap must
#: not grow the cache and the dataset by megabytes per call). Cut before parsing, so a resumed job parses
#: exactly what the first run parsed.
MAX_ANSWER_CHARS = 64 * 1024

Request = tuple[list[dict[str, Any]], dict[str, Any]]
Answer = LVLMResponse | LVLMError
Protocol = Generator[list[Request], list[Answer], LabelResult]

#: LVLM config params that cannot change an answer, left out of cache keys.
_TRANSPORT_PARAMS = frozenset(
    {
        "max_concurrency",
        "prices",
        "latency",
        "timeout_s",
        "max_retries",
        "backoff_s",
        "backoff_max_s",
        "retry_after_max_s",
        "api_key_env",
        "batch_size",
        "device",
    }
)
#: bump when the meaning of cached labels changes without a prompt or settings change.
KEY_VERSION = 1


def model_identity(lvlm: LVLM) -> dict[str, Any]:
    """The part of ``lvlm.config`` that determines answers (no secrets, no transport settings)."""
    cfg = lvlm.config
    return {"type": cfg["type"], "params": {k: v for k, v in cfg["params"].items() if k not in _TRANSPORT_PARAMS}}


def _digest_messages(messages: list[dict[str, Any]], privileged: bool) -> list[Any]:
    out: list[Any] = []
    for msg in messages:
        content = msg["content"]
        if isinstance(content, str):
            out.append([msg["role"], content])
            continue
        parts: list[Any] = []
        for part in content:
            kind = part["type"]
            if kind == "text":
                parts.append(part["text"])
            elif kind == "image":
                parts.append({"image": array_digest(np.asarray(part["image"]))})
            elif kind == "image_url":
                parts.append({"image_url": content_key(part["image_url"]["url"])})
            elif kind == "privileged" and privileged:
                parts.append({"privileged": part["data"]})
        out.append([msg["role"], parts])
    return out


class _Tally:
    def __init__(self) -> None:
        self.calls = 0
        self.cached_calls = 0
        self.simulated = False
        self.usage: dict[str, float] = {"prompt_tokens": 0, "completion_tokens": 0, "images": 0, "latency_s": 0.0}

    def add(self, response: LVLMResponse, cached: bool) -> None:
        self.simulated = self.simulated or response.usage.simulated
        if cached:
            self.cached_calls += 1
            return
        self.calls += 1
        u = response.usage
        self.usage["prompt_tokens"] += u.prompt_tokens
        self.usage["completion_tokens"] += u.completion_tokens
        self.usage["images"] += u.images
        self.usage["latency_s"] += u.latency_s

    def failed(self) -> None:
        self.calls += 1


class LVLMLabeler(Labeler):
    """Base class of labelers that query an LVLM (module docstring).

    Args:
        lvlm: an :class:`~rgvlm_gym.lvlm.LVLM`, a spec string (``"sim:noise=1"``, ``"openai:gpt-4o"``) or a
            ``{"type", "params"}`` config.
        cache: a :class:`~rgvlm_gym.rewards.cache.LabelCache` or the path of its file; None: no cache.
        gen: extra generation settings for every call (``temperature`` defaults to 0).
        retry_invalid: ask again for episodes cached as ``"invalid"``.
    """

    uses_lvlm = True
    #: the range of this labeler's per-step rewards; a cached label outside it is not used (None: any finite)
    reward_bounds: tuple[float, float] | None = None
    #: the range of its raw scores (``LabelResult.raw_scores``), e.g. (0, 10) for RG-VLM (None: any)
    score_bounds: tuple[float, float] | None = None

    def __init__(
        self,
        lvlm: LVLM | str | Mapping[str, Any],
        *,
        cache: LabelCache | str | os.PathLike[str] | None = None,
        gen: Mapping[str, Any] | None = None,
        retry_invalid: bool = False,
    ) -> None:
        self.lvlm: LVLM = lvlm if isinstance(lvlm, LVLM) else make_lvlm(lvlm)
        self.cache: LabelCache | None = cache if cache is None or isinstance(cache, LabelCache) else LabelCache(cache)
        self._owns_cache = cache is not None and not isinstance(cache, LabelCache)
        self.gen: dict[str, Any] = {"temperature": 0.0, **dict(gen or {})}
        self.retry_invalid = bool(retry_invalid)
        self._identity = model_identity(self.lvlm)
        self._privileged_in_keys = self.lvlm.backend == "sim"

    # -- what subclasses provide

    def settings(self) -> dict[str, Any]:
        """Labeler settings that change answers or labels (part of every episode key)."""
        return {"gen": self.gen}

    def prompt_id(self) -> str | None:
        """``"<version>@<sha256>"`` of the prompt template, if any."""
        return None

    def protocol(self, episode: EpisodeRecord) -> Protocol:
        """The conversation for one episode (module docstring)."""
        raise NotImplementedError

    def episode_content(self, episode: EpisodeRecord) -> dict[str, Any]:
        """What of the episode the labels depend on (hashed into the episode key)."""
        content: dict[str, Any] = {
            "goal": episode.instruction,
            "actions": list(episode.action_names),
            "earlier": list(episode.extra.get("earlier_actions", [])),
            "frames": None if episode.frames is None else array_digest(episode.frames),
        }
        if self._privileged_in_keys:
            content["progress"] = np.asarray(episode.progress).tolist()
            content["n_subtasks"] = episode.task.get("n_subtasks")
        return content

    # -- keys

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"lvlm": self.lvlm.config}
        gen = {k: v for k, v in self.gen.items() if not (k == "temperature" and v == 0.0)}
        if gen:
            params["gen"] = gen
        if self.retry_invalid:
            params["retry_invalid"] = True
        return params

    def episode_key(self, episode: EpisodeRecord) -> str:
        """The cache key of an episode's labels under this labeler."""
        return content_key(
            {
                "key_version": KEY_VERSION,
                "labeler": self.name,
                "model": self._identity,
                "prompt": self.prompt_id(),
                "settings": self.settings(),
                "episode": self.episode_content(episode),
            }
        )

    def request_key(self, messages: list[dict[str, Any]], gen: Mapping[str, Any]) -> str:
        """The cache key of one LVLM request."""
        return content_key(
            {
                "key_version": KEY_VERSION,
                "model": self._identity,
                "gen": dict(gen),
                "messages": _digest_messages(messages, self._privileged_in_keys),
            }
        )

    # -- cache

    def _cached_label(self, key: str, n_steps: int | None = None) -> LabelResult | bool | None:
        """The cached result; None on a miss; False for an ``invalid`` label to retry (then its stored
        responses are not replayed either)."""
        if self.cache is None:
            return None
        stored = self.cache.get_label(key)
        if stored is None:
            return None
        problem = self._check_stored_label(stored, n_steps)
        if problem is not None:  # a damaged or tampered row: label again (and overwrite it)
            _warn_bad_row(self.cache, "label", key, ValueError(problem))
            return None
        if self.retry_invalid and stored.get("status") == "invalid":
            return False
        result = LabelResult.from_dict(stored, cached=True)
        result.meta["cached_usage"] = result.usage
        result.meta["cached_calls"] = result.calls
        result.calls, result.usage = 0, {}
        return result

    def _check_stored_label(self, stored: Any, n_steps: int | None) -> str | None:
        """Why a cached label cannot be used (None: it can): the schema of :meth:`LabelResult.to_dict`, one
        finite reward per step within :attr:`reward_bounds`, raw scores within :attr:`score_bounds`."""
        if not isinstance(stored, Mapping):
            return f"a label row must be a JSON object, not {type(stored).__name__}"
        status = stored.get("status")
        if status not in ("ok", "invalid", "error"):
            return f"unknown status {status!r}"
        rewards = stored.get("rewards")
        if (status == "ok") != (rewards is not None):
            return f"status {status!r} with rewards {'present' if rewards is not None else 'missing'}"
        for name, values, bounds in (("rewards", rewards, self.reward_bounds), ("raw_scores", stored.get("raw_scores"), self.score_bounds)):
            if values is None:
                continue
            try:
                arr = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                return f"{name} are not numbers"
            if arr.ndim != 1 or (name == "rewards" and n_steps is not None and len(arr) != n_steps):
                return f"{name} have shape {arr.shape}, expected ({n_steps},)"
            finite = arr[np.isfinite(arr)]
            if name == "rewards" and len(finite) != len(arr):
                return "rewards are not all finite"
            if bounds is not None and len(finite) and (finite.min() < bounds[0] or finite.max() > bounds[1]):
                return f"{name} outside [{bounds[0]:g}, {bounds[1]:g}] (e.g. {finite[(finite < bounds[0]) | (finite > bounds[1])][0]:g})"
        if not isinstance(stored.get("texts", []), list) or not isinstance(stored.get("meta", {}), Mapping):
            return "texts / meta have the wrong type"
        return None

    def _store_label(self, key: str, result: LabelResult) -> None:
        if self.cache is not None and result.status != "error":
            self.cache.put_label(
                key, result.to_dict(), labeler=self.name, model=self.lvlm.spec, prompt=self.prompt_id()
            )

    def _cached_response(self, key: str) -> LVLMResponse | None:
        if self.cache is None:
            return None
        stored = self.cache.get_response(key)
        if stored is None:
            return None
        try:
            response = LVLMResponse.from_dict(stored)
            if not isinstance(response.text, str) or len(response.text) > MAX_ANSWER_CHARS + 200:
                raise ValueError("the answer is not text of at most MAX_ANSWER_CHARS characters")
        except (KeyError, TypeError, ValueError) as exc:  # a damaged or foreign row: ask again
            _warn_bad_row(self.cache, "LVLM response", key, exc)
            return None
        return response

    def _store_response(self, key: str, response: LVLMResponse) -> None:
        if self.cache is not None:
            self.cache.put_response(key, response.to_dict(), model=self.lvlm.spec)

    # -- drivers

    def _finish(self, result: LabelResult, tally: _Tally) -> LabelResult:
        result.calls = tally.calls
        result.usage = dict(tally.usage)
        result.simulated = result.simulated or tally.simulated
        if tally.cached_calls:
            result.meta["calls_from_cache"] = tally.cached_calls
        return result

    def _call(self, request: Request, tally: _Tally, replay: bool = True) -> Answer:
        messages, gen = request
        key = self.request_key(messages, gen)
        hit = self._cached_response(key) if replay else None
        if hit is not None:
            tally.add(hit, cached=True)
            return hit
        try:
            response = _sanitize(self.lvlm.chat(messages, **gen))
        except LVLMError as exc:
            tally.failed()
            return exc
        self._store_response(key, response)
        tally.add(response, cached=False)
        return response

    async def _acall(self, request: Request, tally: _Tally, replay: bool = True) -> Answer:
        messages, gen = request
        key = self.request_key(messages, gen)
        hit = self._cached_response(key) if replay else None
        if hit is not None:
            tally.add(hit, cached=True)
            return hit
        try:
            response = _sanitize(await self.lvlm.achat(messages, **gen))
        except LVLMError as exc:
            tally.failed()
            return exc
        self._store_response(key, response)
        tally.add(response, cached=False)
        return response

    def label(self, episode: EpisodeRecord) -> LabelResult:
        key = self.episode_key(episode)
        cached = self._cached_label(key, len(episode))
        if isinstance(cached, LabelResult):
            return cached
        replay = cached is None
        tally = _Tally()
        proto = self.protocol(episode)
        try:
            batch = next(proto)
            while True:
                batch = proto.send([self._call(r, tally, replay) for r in batch])
        except StopIteration as stop:
            result = self._finish(stop.value, tally)
        self._store_label(key, result)
        return result

    async def alabel(self, episode: EpisodeRecord) -> LabelResult:
        key = self.episode_key(episode)
        cached = self._cached_label(key, len(episode))
        if isinstance(cached, LabelResult):
            return cached
        replay = cached is None
        tally = _Tally()
        proto = self.protocol(episode)
        try:
            batch = next(proto)
            while True:
                answers = await asyncio.gather(*(self._acall(r, tally, replay) for r in batch))
                batch = proto.send(list(answers))
        except StopIteration as stop:
            result = self._finish(stop.value, tally)
        self._store_label(key, result)
        return result

    async def _release_loop_resources(self) -> None:
        await self.lvlm._release_loop_resources()

    def close(self) -> None:
        if self._owns_cache and self.cache is not None:
            self.cache.close()


def _sanitize(response: LVLMResponse) -> LVLMResponse:
    """The answer as rgvlm-gym keeps it: secrets redacted (a server may echo the API key), at most
    :data:`MAX_ANSWER_CHARS` characters."""
    from rgvlm_gym.secrets import redact

    text = redact(response.text)
    if len(text) > MAX_ANSWER_CHARS:
        text = text[:MAX_ANSWER_CHARS] + f" ...[cut: {len(text) - MAX_ANSWER_CHARS} more characters]"
    return response if text == response.text else dataclasses.replace(response, text=text)


def _warn_bad_row(cache: LabelCache, what: str, key: str, exc: BaseException) -> None:
    warnings.warn(f"label cache {cache.path}: ignoring a damaged {what} row ({key[:12]}...): {exc}; asking again",
                  RuntimeWarning, stacklevel=3)

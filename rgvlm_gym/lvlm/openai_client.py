"""The ``openai:`` backend: any OpenAI-compatible chat-completions server, on the official ``openai`` SDK.

Works unchanged against OpenAI, vLLM, SGLang, Ollama and ``transformers serve``
(``openai:<model>@http://localhost:8000/v1``).

Holds :class:`OpenAILVLM`. What it does on top of the SDK (whose own retries are disabled):

- **Key handling**: the API key comes from an environment variable (``OPENAI_API_KEY`` unless
  ``api_key_env`` names another), read when the client is built. A loopback server needs none (a dummy is
  sent); for other servers a missing key raises ``ValueError`` at the first request. The key never appears in
  ``repr``, ``spec``, ``config``, logs or error messages (they are redacted), and pickling a client
  re-reads the key from the environment instead of storing it. Sending a key over plain ``http`` to a host
  that is not loopback warns once per host.
- **Images** (np.uint8 arrays or PIL images) become base64 PNG / JPEG ``data:`` URLs, downscaled so the
  longer side is at most ``image_max_side``. ``privileged`` parts are dropped before anything is sent.
- **Concurrency**: at most ``max_concurrency`` requests in flight per event loop (``achat``) and per
  client (``chat`` from threads).
- **Retries**: on 408 / 409 / 425 / 429 / 5xx, timeouts, connection errors (resets, dropped connections) and
  invalid (non-JSON) bodies, up to ``max_retries`` more attempts, waiting ``Retry-After`` (or
  ``retry-after-ms``) when the server sends it, else exponential back-off with jitter:
  ``d = min(backoff_max_s, backoff_s * 2**(k-1))``, wait ``uniform(d/2, d)``. Other 4xx fail at once. The
  final failure raises :class:`~rgvlm_gym.lvlm.base.LVLMRequestError` naming the model, URL, attempts and
  last status.
- **Generation settings**: ``temperature``, ``max_tokens``, ``max_completion_tokens``, ``top_p``,
  ``seed``, ``stop``, ``response_format`` (JSON mode: ``{"type": "json_object"}`` or a ``json_schema``),
  penalties, ``logprobs``... go to the SDK; any other key goes into the request body as is (``extra_body``,
  e.g. vLLM's ``top_k`` or ``guided_json``).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import os
import random
import re
import threading
import time
import urllib.parse
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

from rgvlm_gym.lvlm.base import LVLM, LVLMRequestError, LVLMResponse, strip_privileged
from rgvlm_gym.lvlm.images import IMAGE_FORMATS, encode_data_url
from rgvlm_gym.lvlm.usage import LVLMUsage, Price

__all__ = ["DEFAULT_BASE_URL", "OpenAILVLM", "is_loopback_url", "redact"]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: sent to loopback servers when no key is set (vLLM's convention); not a secret.
DUMMY_KEY = "EMPTY"

_SDK_KEYS = frozenset(
    {
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "top_p",
        "seed",
        "stop",
        "response_format",
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "user",
        "reasoning_effort",
        "extra_body",
        "extra_headers",
    }
)
_RETRY_STATUS = frozenset({408, 409, 425, 429})
_WARNED_HOSTS: set[str] = set()
_WARN_LOCK = threading.Lock()
_KEY_PATTERNS = (
    re.compile(r"(sk-[A-Za-z0-9_\-]{3})[A-Za-z0-9_\-]{5,}"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',}]+"),
)


class _Secret:
    """A string that never shows itself in ``repr``/``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("secrets are not picklable")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with each of ``secrets`` and anything shaped like an API key or bearer token replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


def _host(url: str) -> str:
    return (urllib.parse.urlsplit(url).hostname or "").lower()


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = _host(url)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _public_url(url: str) -> str:
    """``url`` without user info or query string."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


class _InvalidResponse(Exception):
    pass


class OpenAILVLM(LVLM):
    """A client of an OpenAI-compatible chat-completions server (``openai:<model>[@<base_url>]``).

    Args:
        model: the model name the server knows.
        base_url: the API root (``.../v1``); default ``$OPENAI_BASE_URL`` or OpenAI's.
        api_key_env: environment variable holding the API key.
        api_key: the key itself, for programmatic use; it is never serialised (``config`` names
            ``api_key_env`` only), so prefer the environment variable.
        timeout_s: seconds before an attempt times out.
        max_retries: attempts after the first one for retryable failures.
        backoff_s: first back-off delay (seconds); doubles each retry.
        backoff_max_s: cap on one back-off delay.
        retry_after_max_s: cap on a server's ``Retry-After``.
        image_max_side: longest image side sent, in pixels (``None``: as given).
        image_format: ``"png"`` or ``"jpeg"``.
        jpeg_quality: JPEG quality 1..95.
        image_detail: OpenAI's ``detail`` (``"low"``, ``"high"``, ``"auto"``); ``None`` leaves it out.
        max_concurrency: requests in flight at most.
        gen_defaults: generation settings used when a call does not give them.
        prices: price table, model -> dollars per 1M input / output tokens.
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        backoff_max_s: float = 20.0,
        retry_after_max_s: float = 60.0,
        image_max_side: int | None = 768,
        image_format: str = "png",
        jpeg_quality: int = 90,
        image_detail: str | None = None,
        max_concurrency: int = 8,
        gen_defaults: Mapping[str, Any] | None = None,
        prices: Mapping[str, Price | tuple[float, float]] | None = None,
    ) -> None:
        super().__init__(max_concurrency=max_concurrency, gen_defaults=gen_defaults, prices=prices)
        if not isinstance(model, str) or not model:
            raise ValueError(f"Expect `model` to be a non-empty str, actually: {model!r}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(
                f"Expect `image_format` to be one of {IMAGE_FORMATS}, actually: {image_format!r}"
            )
        if image_max_side is not None and (not isinstance(image_max_side, int) or image_max_side < 1):
            raise ValueError(
                f"Expect `image_max_side` to be a positive int or None, actually: {image_max_side!r}"
            )
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"Expect `max_retries` to be an int >= 0, actually: {max_retries!r}")
        if timeout_s <= 0:
            raise ValueError(f"Expect `timeout_s` to be > 0, actually: {timeout_s!r}")
        if backoff_s < 0 or backoff_max_s < 0 or retry_after_max_s < 0:
            raise ValueError(
                f"Expect back-off delays >= 0, actually: backoff_s={backoff_s}, backoff_max_s={backoff_max_s}, "
                f"retry_after_max_s={retry_after_max_s}"
            )
        self._model = model
        self.base_url = base_url
        resolved = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        if urllib.parse.urlsplit(resolved).scheme not in ("http", "https"):
            raise ValueError(
                f"Expect `base_url` to start with http:// or https://, actually: {_public_url(resolved)!r}"
            )
        self._resolved_url = resolved.rstrip("/")
        self.url = _public_url(self._resolved_url)
        self.api_key_env = api_key_env
        self._api_key_given = api_key is not None
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if not key and is_loopback_url(self._resolved_url):
            key = DUMMY_KEY
        # A missing key for a remote server is reported at the first request (building a client to read its
        # spec or config needs none).
        self._key = _Secret(key) if key else None
        if key and key != DUMMY_KEY:
            from rgvlm_gym.secrets import register_secret

            register_secret(key)  # scrubbed from answers before they are cached or stored
        key = key or ""
        password = urllib.parse.urlsplit(self._resolved_url).password
        self._secrets = tuple(_Secret(s) for s in (key if key != DUMMY_KEY else "", password or "") if s)
        if key and key != DUMMY_KEY and urllib.parse.urlsplit(self._resolved_url).scheme == "http":
            self._warn_plain_http()
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.retry_after_max_s = float(retry_after_max_s)
        self.image_max_side = image_max_side
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.image_detail = image_detail
        self._jitter = random.Random()
        self._client_lock = threading.Lock()
        self._sync_client: Any = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    # -- identity

    @property
    def model(self) -> str:
        return self._model

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self._model}
        if self.base_url:
            params["base_url"] = _public_url(self.base_url)
        defaults = {
            "api_key_env": "OPENAI_API_KEY",
            "timeout_s": 60.0,
            "max_retries": 4,
            "backoff_s": 0.5,
            "backoff_max_s": 20.0,
            "retry_after_max_s": 60.0,
            "image_max_side": 768,
            "image_format": "png",
            "jpeg_quality": 90,
            "image_detail": None,
        }
        for name, default in defaults.items():
            if getattr(self, name) != default:
                params[name] = getattr(self, name)
        return params

    def _warn_plain_http(self) -> None:
        host = _host(self._resolved_url)
        if is_loopback_url(self._resolved_url):
            return
        with _WARN_LOCK:
            if host in _WARNED_HOSTS:
                return
            _WARNED_HOSTS.add(host)
        warnings.warn(
            f"Sending an API key over plain http to {host}, which is not this machine: anyone on the network "
            f"path can read it. Use https:// for remote servers.",
            UserWarning,
            stacklevel=4,
        )

    # -- SDK clients

    def _sdk_kwargs(self) -> dict[str, Any]:
        if self._key is None:
            raise ValueError(
                f"No API key for {self.url}: set the environment variable {self.api_key_env} "
                f"(or choose another with api_key_env=...)"
            )
        return {
            "api_key": self._key.reveal(),
            "base_url": self._resolved_url,
            "timeout": self.timeout_s,
            "max_retries": 0,  # ours, below
        }

    def _sync(self) -> Any:
        with self._client_lock:
            if self._sync_client is None:
                import openai

                self._sync_client = openai.OpenAI(**self._sdk_kwargs())
            return self._sync_client

    def _async(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._client_lock:
            client = self._async_clients.get(loop)
            if client is None:
                import openai

                client = self._async_clients[loop] = openai.AsyncOpenAI(**self._sdk_kwargs())
            return client

    def close(self) -> None:
        with self._client_lock:
            if self._sync_client is not None:
                self._sync_client.close()
                self._sync_client = None
            self._async_clients = weakref.WeakKeyDictionary()

    async def _release_loop_resources(self) -> None:
        loop = asyncio.get_running_loop()
        with self._client_lock:
            client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.close()

    async def aclose(self) -> None:
        """Close the async client of the running event loop (and the sync one)."""
        await self._release_loop_resources()
        self.close()

    # -- requests

    def build_request(
        self, messages: list[dict[str, Any]], gen: Mapping[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """The SDK keyword arguments for normalised ``messages`` and the number of images in them.

        Privileged parts are dropped, images become data URLs, a message of a single text part is sent
        as a plain string (the form every server accepts).
        """
        out: list[dict[str, Any]] = []
        n_images = 0
        for msg in strip_privileged(messages):
            parts: list[dict[str, Any]] = []
            for part in msg["content"]:
                if part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif part["type"] == "image":
                    url = encode_data_url(
                        part["image"],
                        max_side=self.image_max_side,
                        fmt=self.image_format,
                        jpeg_quality=self.jpeg_quality,
                    )
                    image_url: dict[str, Any] = {"url": url}
                    if self.image_detail:
                        image_url["detail"] = self.image_detail
                    parts.append({"type": "image_url", "image_url": image_url})
                    n_images += 1
                elif part["type"] == "image_url":
                    parts.append({"type": "image_url", "image_url": dict(part["image_url"])})
                    n_images += 1
            if len(parts) == 1 and parts[0]["type"] == "text":
                out.append({"role": msg["role"], "content": parts[0]["text"]})
            else:
                out.append({"role": msg["role"], "content": parts})
        kwargs: dict[str, Any] = {"model": self._model, "messages": out}
        extra: dict[str, Any] = {}
        for key, value in gen.items():
            if key in _SDK_KEYS:
                if key == "extra_body":
                    extra.update(value or {})
                else:
                    kwargs[key] = value
            else:
                extra[key] = value
        if extra:
            kwargs["extra_body"] = extra
        return kwargs, n_images

    def _parse(self, resp: Any, n_images: int, latency: float, retries: int) -> LVLMResponse:
        choices = None if isinstance(resp, (str, bytes)) else getattr(resp, "choices", None)
        if not choices:
            shown = resp if isinstance(resp, (str, bytes)) else type(resp).__name__
            raise _InvalidResponse(f"expected a chat completion JSON object, got {str(shown)[:120]!r}")
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None) or ""
        usage = getattr(resp, "usage", None)
        return LVLMResponse(
            text=text,
            usage=LVLMUsage(
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                images=n_images,
                latency_s=latency,
                retries=retries,
            ),
            model=getattr(resp, "model", None) or self._model,
            finish_reason=getattr(choice, "finish_reason", None),
        )

    def _classify(self, exc: BaseException) -> tuple[int | str, bool, float | None, str]:
        """(status, retryable, retry-after seconds, redacted message) of a failed attempt."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return "timeout", True, None, f"no response within {self.timeout_s:g} s"
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
            return "connection error", True, None, self._redact(detail)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retryable = status in _RETRY_STATUS or status >= 500
            headers = getattr(exc.response, "headers", None)
            return status, retryable, _retry_after(headers), self._redact(str(exc.message))[:500]
        if isinstance(exc, (_InvalidResponse, openai.APIResponseValidationError)):
            return "invalid response", True, None, self._redact(str(exc))[:500]
        if isinstance(exc, ValueError):  # json.JSONDecodeError from a body that claims to be JSON
            return "invalid response", True, None, self._redact(f"body is not valid JSON ({exc})")[:500]
        raise exc

    def _redact(self, text: str) -> str:
        return redact(text, tuple(s.reveal() for s in self._secrets))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max_s)
        d = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
        return self._jitter.uniform(d / 2, d)

    def _give_up(self, attempts: int, status: int | str, reason: str) -> LVLMRequestError:
        err = LVLMRequestError(
            model=self._model,
            url=f"{self.url}/chat/completions",
            attempts=attempts,
            status=status,
            reason=reason,
        )
        logger.warning("%s", err)
        return err

    def _on_failure(self, exc: BaseException, attempt: int) -> float | LVLMRequestError:
        """Classify a failed attempt: the delay before the next one, or the final error to raise (raised by
        the caller outside its ``except`` block, so that the SDK's exception, which may quote the server's
        error body, is not chained to it)."""
        status, retryable, retry_after, reason = self._classify(exc)
        if not retryable or attempt > self.max_retries:
            return self._give_up(attempt, status, reason)
        delay = self._delay(attempt, retry_after)
        logger.info(
            "LVLM %s attempt %d/%d failed (%s: %s); retrying in %.2f s",
            self._model,
            attempt,
            self.max_retries + 1,
            status,
            reason[:200],
            delay,
        )
        return delay

    def _chat(self, messages: list[dict[str, Any]], gen: dict[str, Any]) -> LVLMResponse:
        kwargs, n_images = self.build_request(messages, gen)
        client = self._sync()
        start = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = client.chat.completions.create(**kwargs)
                return self._parse(resp, n_images, time.perf_counter() - start, attempt - 1)
            except Exception as exc:  # classified; non-LVLM errors re-raised by _classify
                outcome = self._on_failure(exc, attempt)
            if isinstance(outcome, LVLMRequestError):
                raise outcome
            time.sleep(outcome)

    async def _achat(self, messages: list[dict[str, Any]], gen: dict[str, Any]) -> LVLMResponse:
        kwargs, n_images = self.build_request(messages, gen)
        client = self._async()
        start = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await client.chat.completions.create(**kwargs)
                return self._parse(resp, n_images, time.perf_counter() - start, attempt - 1)
            except Exception as exc:
                outcome = self._on_failure(exc, attempt)
            if isinstance(outcome, LVLMRequestError):
                raise outcome
            await asyncio.sleep(outcome)

"""LVLM spec strings, the backend registry and :func:`make_lvlm`.

Holds:

- :class:`LVLMSpec` — a parsed spec: ``{"type", "params"}``, to and from the spec string.
- :func:`register_lvlm` — add a backend (a class, or ``"module:Class"`` imported on first use).
- :func:`make_lvlm` — build a client from a spec string, an ``LVLMSpec`` or a ``{"type", "params"}`` dict.

Spec strings:

- ``sim[:key=value,...]`` — the simulated LVLM (:mod:`rgvlm_gym.lvlm.sim`), e.g. ``sim:noise=1,seed=3``.
- ``openai:<model>[@<base_url>]`` — any OpenAI-compatible server, e.g. ``openai:gpt-4o`` or
  ``openai:Qwen/Qwen2.5-VL-7B-Instruct@http://localhost:8000/v1``.
- ``hf:<local path or hub id>`` — a transformers model in this process.

Example:
    >>> from rgvlm_gym.lvlm import LVLMSpec
    >>> LVLMSpec.parse("openai:llava:7b@http://localhost:11434/v1").to_dict()
    {'type': 'openai', 'params': {'model': 'llava:7b', 'base_url': 'http://localhost:11434/v1'}}
    >>> LVLMSpec.parse("sim:noise=1.5,seed=3").params
    {'noise': 1.5, 'seed': 3}
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rgvlm_gym.lvlm.base import LVLM

__all__ = ["LVLMSpec", "make_lvlm", "register_lvlm", "registered_backends"]

_REGISTRY: dict[str, type[LVLM] | str] = {
    "sim": "rgvlm_gym.lvlm.sim:SimLVLM",
    "openai": "rgvlm_gym.lvlm.openai_client:OpenAILVLM",
    "hf": "rgvlm_gym.lvlm.hf:HFLVLM",
}

_URL_SPLIT = re.compile(r"^(?P<model>.+?)@(?P<url>https?://.+)$")
# "model@ftp://host" or "model@localhost:8000/v1": a base URL was meant, but not an HTTP one
_BAD_URL = re.compile(r"^(?P<model>.+?)@(?P<url>(?:[A-Za-z][A-Za-z0-9+.-]*://|(?:localhost|[\w.-]+\.[A-Za-z]{2,}|\d+\.\d+\.\d+\.\d+):\d+).*)$")


def register_lvlm(name: str, backend: type[LVLM] | str, *, overwrite: bool = False) -> None:
    """Register an LVLM backend under ``name``.

    Args:
        name: the spec prefix (``name:...``).
        backend: an :class:`~rgvlm_gym.lvlm.base.LVLM` subclass, or ``"module:Class"`` imported on first use.
            The class is built as ``Class(**params)``; a spec string ``name:rest`` gives
            ``params = {"model": rest}`` unless the class defines ``parse_spec_rest(rest) -> dict``.
        overwrite: replace an existing registration.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
        raise ValueError(f"Expect a backend name of letters, digits, '_' or '-', actually: {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"LVLM backend {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = backend


def registered_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(_REGISTRY)


def _backend_class(name: str) -> type[LVLM]:
    if name not in _REGISTRY:
        hint = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(
            f"Unknown LVLM backend {name!r}; registered: {', '.join(registered_backends())}.{did_you_mean}"
        )
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module_name), attr)
        _REGISTRY[name] = entry
    return entry


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def parse_key_values(text: str, *, where: str) -> dict[str, Any]:
    """Parse ``key=value,key=value`` (values become int, float, bool, None or str)."""
    params: dict[str, Any] = {}
    if not text:
        return params
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"Expect {where} options as key=value pairs separated by ',', actually: {item!r}"
            )
        params[key] = _parse_value(value.strip())
    return params


@dataclass(frozen=True)
class LVLMSpec:
    """A parsed LVLM spec: a backend ``type`` and constructor ``params``."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> LVLMSpec:
        """Parse a spec string (see the module docstring).

        Raises:
            ValueError: an empty spec, an unknown backend (with a "did you mean" hint) or malformed options.
        """
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(
                f"Expect an LVLM spec string such as 'sim' or 'openai:gpt-4o', actually: {spec!r}"
            )
        name, _, rest = spec.strip().partition(":")
        klass = _backend_class(name)
        parser = getattr(klass, "parse_spec_rest", None)
        if parser is not None:
            params = parser(rest)
        elif name == "sim":
            params = parse_key_values(rest, where="'sim'")
        elif name == "openai":
            if not rest:
                raise ValueError("Expect 'openai:<model>[@<base_url>]', actually: no model after 'openai:'")
            m = _URL_SPLIT.match(rest)
            bad = None if m else _BAD_URL.match(rest)
            if bad:
                raise ValueError(
                    f"Expect the base URL after '@' in 'openai:<model>@<base_url>' to start with http:// or https://, "
                    f"actually: {re.sub(r'//[^/@]*@', '//***@', bad['url'])!r} (e.g. openai:{bad['model']}@http://localhost:8000/v1)"
                )
            params = {"model": m["model"], "base_url": m["url"]} if m else {"model": rest}
        else:
            if not rest:
                raise ValueError(f"Expect '{name}:<model>', actually: nothing after '{name}:'")
            params = {"model": rest}
        return cls(name, params)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LVLMSpec:
        """From a ``{"type", "params"}`` dict."""
        if not isinstance(config, Mapping) or "type" not in config:
            raise ValueError(
                f"Expect an LVLM config {{'type': ..., 'params': {{...}}}}, actually: {config!r:.100}"
            )
        _backend_class(config["type"])
        return cls(config["type"], dict(config.get("params") or {}))

    def to_dict(self) -> dict[str, Any]:
        """``{"type": ..., "params": {...}}``."""
        return {"type": self.type, "params": dict(self.params)}

    def to_string(self) -> str:
        """The short spec string. Only ``sim`` keeps all its options; for other backends it names the model
        (and ``base_url``), the full settings live in :meth:`to_dict`."""
        p = self.params
        if self.type == "sim":
            simple = {k: v for k, v in p.items() if isinstance(v, (int, float, str, bool)) or v is None}
            opts = ",".join(f"{k}={_format_value(v)}" for k, v in simple.items())
            return f"sim:{opts}" if opts else "sim"
        if self.type == "openai":
            url = p.get("base_url")
            return f"openai:{p['model']}@{url}" if url else f"openai:{p['model']}"
        return f"{self.type}:{p.get('model', '')}"

    def __str__(self) -> str:
        return self.to_string()


def make_lvlm(spec: str | LVLMSpec | Mapping[str, Any], **kwargs: Any) -> LVLM:
    """Build an LVLM client.

    Args:
        spec: a spec string (``"sim:noise=1,seed=0"``, ``"openai:gpt-4o"``,
            ``"openai:my-vlm@http://localhost:8000/v1"``, ``"hf:/models/SmolVLM"``), an :class:`LVLMSpec`, or
            a ``{"type", "params"}`` dict such as ``lvlm.config``.
        **kwargs: constructor arguments of the backend; they override the spec's (e.g. ``max_concurrency``,
            ``timeout_s``, ``api_key_env``, ``device``, ``gen_defaults``).

    Raises:
        ValueError: an unknown backend (with a hint) or an argument the backend does not take.

    Example:
        >>> from rgvlm_gym.lvlm import make_lvlm
        >>> lvlm = make_lvlm("sim:profile=exact,seed=0")  # the exact judge; "sim" alone errs like an LVLM
        >>> gt = {"task": "rgvlm", "stage": "scores", "goal": "put a washed apple in the fridge",
        ...       "actions": ["PickupObject apple", "GotoLocation sofa"], "contributions": [1.0, 0.0]}
        >>> r = lvlm.chat([{"role": "user", "content": [
        ...     {"type": "text", "text": "Score each action from 0 to 10. Answer in JSON."},
        ...     {"type": "privileged", "data": gt}]}])
        >>> r.text, r.model, r.usage.simulated
        ('{"scores": [10, 0]}', 'sim', True)
        >>> lvlm.spec
        'sim:profile=exact,seed=0'
    """
    if isinstance(spec, str):
        parsed = LVLMSpec.parse(spec)
    elif isinstance(spec, LVLMSpec):
        parsed = spec
    else:
        parsed = LVLMSpec.from_config(spec)
    klass = _backend_class(parsed.type)
    params = {**parsed.params, **kwargs}
    sig = inspect.signature(klass.__init__)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_any:
        allowed = [n for n in sig.parameters if n != "self"]
        for key in params:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
                raise ValueError(
                    f"LVLM backend {parsed.type!r} takes no argument {key!r}; it takes {', '.join(allowed)}.{did_you_mean}"
                )
    return klass(**params)

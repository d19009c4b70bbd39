"""Keeping secrets out of what rgvlm-gym stores: :func:`register_secret`, :func:`secret_values`, :func:`redact`.

A server may echo a request -- API key included -- in its answer; the label cache and the relabeled
dataset keep LVLM answers, so answers are scrubbed before they are parsed, cached or written. A secret is
any value of an environment variable whose name says it holds one (``*API_KEY*``, ``*TOKEN*``,
``*SECRET*``, ``*PASSWORD*``; values of 8 characters or more) and any key given to a client in code
(:func:`register_secret`).

    >>> import os
    >>> os.environ["DEMO_API_KEY"] = "sk-demo-0123456789"
    >>> redact({"text": "your key is sk-demo-0123456789!"})
    {'text': 'your key is <redacted>!'}
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["REDACTED", "redact", "register_secret", "secret_values"]

REDACTED = "<redacted>"
_NAME = re.compile(r"API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.I)
_MIN_LEN = 8
_REGISTERED: set[str] = set()


def register_secret(value: str | None) -> None:
    """Treat ``value`` as a secret from now on (e.g. an API key passed to a client in code)."""
    if value and len(value) >= _MIN_LEN:
        _REGISTERED.add(value)


def secret_values() -> list[str]:
    """The current secrets, longest first (so a key that contains another is replaced whole)."""
    found = set(_REGISTERED)
    for name, value in os.environ.items():
        if _NAME.search(name) and not name.endswith("_ENV") and len(value) >= _MIN_LEN:
            found.add(value)
    return sorted(found, key=len, reverse=True)


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """``obj`` (str, or dicts / lists of them) with every secret replaced by ``<redacted>``."""
    values = secret_values() if secrets is None else secrets
    if not values:
        return obj
    if isinstance(obj, str):
        for v in values:
            if v in obj:
                obj = obj.replace(v, REDACTED)
        return obj
    if isinstance(obj, dict):
        return {k: redact(v, values) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, values) for v in obj)
    return obj

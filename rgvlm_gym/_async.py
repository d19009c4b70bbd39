"""Running coroutines from synchronous code: :func:`run_coroutine`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["run_coroutine"]

T = TypeVar("T")


def run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``factory()`` to completion from sync code: in a fresh event loop, or, when this thread
    already runs one (Jupyter), in a helper thread with its own loop.

    >>> async def answer() -> int:
    ...     return 42
    >>> run_coroutine(answer)
    42
    """

    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result

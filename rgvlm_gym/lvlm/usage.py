"""Usage accounting for LVLM clients.

Holds:

- :class:`LVLMUsage` — what one call cost (tokens, images, latency, retries), attached to every response.
- :class:`Price` — dollars per million input / output tokens of one model.
- :class:`UsageMeter` — a thread- and asyncio-safe running total over a job (calls, failures, retries,
  tokens, images, time, cost), one per LVLM client (``lvlm.usage``).
- :class:`UsageSummary` — a frozen snapshot of a meter, with a one-line ``str``.

Example:
    >>> from rgvlm_gym.lvlm.usage import LVLMUsage, UsageMeter
    >>> meter = UsageMeter(prices={"my-model": (1.0, 2.0)})
    >>> meter.record("my-model", LVLMUsage(prompt_tokens=1000, completion_tokens=500, images=1, latency_s=0.2))
    >>> s = meter.snapshot()
    >>> (s.calls, s.prompt_tokens, s.completion_tokens, s.images, round(s.cost_usd, 6))
    (1, 1000, 500, 1, 0.002)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LVLMUsage", "Price", "UsageMeter", "UsageSummary"]


@dataclass(frozen=True)
class LVLMUsage:
    """What one LVLM call used.

    Attributes:
        prompt_tokens: input tokens as reported by the backend (the sim estimates them).
        completion_tokens: generated tokens.
        images: images sent with the request.
        latency_s: wall-clock seconds of the call, retries and back-off included.
        retries: attempts beyond the first (HTTP backends only).
        simulated: True when the answer came from the simulated LVLM, not a model.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    latency_s: float = 0.0
    retries: int = 0
    simulated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Price:
    """US dollars per one million tokens of one model."""

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ValueError(
                f"Expect prices to be >= 0, actually: {self.input_per_mtok}, {self.output_per_mtok}"
            )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


def _as_price(value: Price | tuple[float, float] | Mapping[str, float]) -> Price:
    if isinstance(value, Price):
        return value
    if isinstance(value, Mapping):
        return Price(float(value["input_per_mtok"]), float(value["output_per_mtok"]))
    inp, out = value
    return Price(float(inp), float(out))


@dataclass(frozen=True)
class UsageSummary:
    """A snapshot of a :class:`UsageMeter`.

    ``latency_s`` sums the per-call latencies; ``wall_s`` spans from the start of the first call to the end
    of the last one, so ``calls / wall_s`` is the achieved throughput. ``cost_usd`` covers the calls whose
    model has a price; ``unpriced_models`` lists those that had none.
    """

    calls: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    latency_s: float = 0.0
    wall_s: float = 0.0
    cost_usd: float = 0.0
    unpriced_models: tuple[str, ...] = ()
    simulated_calls: int = 0
    models: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        cost = f"${self.cost_usd:.4f}"
        if self.unpriced_models:
            cost += f" (no price for {', '.join(self.unpriced_models)})"
        sim = f", {self.simulated_calls} simulated" if self.simulated_calls else ""
        return (
            f"LVLM calls: {self.calls} ({self.failures} failed, {self.retries} retries{sim}); "
            f"tokens: {self.prompt_tokens} in / {self.completion_tokens} out; images: {self.images}; "
            f"time: {self.wall_s:.2f} s wall, {self.latency_s:.2f} s summed latency; cost: {cost}"
        )


class UsageMeter:
    """Running totals over many LVLM calls; safe to share between threads and asyncio tasks.

    Args:
        prices: optional price table, model name -> :class:`Price` or ``(input, output)`` dollars per
            one million tokens. Simulated calls cost nothing.
    """

    def __init__(self, prices: Mapping[str, Price | tuple[float, float]] | None = None) -> None:
        self.prices: dict[str, Price] = {k: _as_price(v) for k, v in (prices or {}).items()}
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter (the price table stays)."""
        with self._lock:
            self._calls = self._failures = self._retries = 0
            self._prompt = self._completion = self._images = self._simulated = 0
            self._latency = 0.0
            self._cost = 0.0
            self._unpriced: set[str] = set()
            self._models: set[str] = set()
            self._first_start: float | None = None
            self._last_end: float | None = None

    def _span(self, latency_s: float) -> None:
        end = time.perf_counter()
        start = end - latency_s
        if self._first_start is None or start < self._first_start:
            self._first_start = start
        if self._last_end is None or end > self._last_end:
            self._last_end = end

    def record(self, model: str, usage: LVLMUsage) -> None:
        """Add one successful call."""
        with self._lock:
            self._calls += 1
            self._retries += usage.retries
            self._prompt += usage.prompt_tokens
            self._completion += usage.completion_tokens
            self._images += usage.images
            self._latency += usage.latency_s
            self._models.add(model)
            self._span(usage.latency_s)
            if usage.simulated:
                self._simulated += 1
            elif model in self.prices:
                self._cost += self.prices[model].cost(usage.prompt_tokens, usage.completion_tokens)
            else:
                self._unpriced.add(model)

    def record_failure(
        self, model: str, *, retries: int = 0, images: int = 0, latency_s: float = 0.0
    ) -> None:
        """Add one call that failed for good (after ``retries`` retries)."""
        with self._lock:
            self._calls += 1
            self._failures += 1
            self._retries += retries
            self._images += images
            self._latency += latency_s
            self._models.add(model)
            self._span(latency_s)

    def snapshot(self) -> UsageSummary:
        """The totals so far."""
        with self._lock:
            wall = 0.0
            if self._first_start is not None and self._last_end is not None:
                wall = self._last_end - self._first_start
            return UsageSummary(
                calls=self._calls,
                failures=self._failures,
                retries=self._retries,
                prompt_tokens=self._prompt,
                completion_tokens=self._completion,
                images=self._images,
                latency_s=self._latency,
                wall_s=wall,
                cost_usd=self._cost,
                unpriced_models=tuple(sorted(self._unpriced)),
                simulated_calls=self._simulated,
                models=tuple(sorted(self._models)),
            )

    def summary(self) -> str:
        """One line: ``LVLM calls: N (...); tokens: ...; cost: ...``."""
        return str(self.snapshot())

    def __repr__(self) -> str:
        return f"UsageMeter({self.summary()})"

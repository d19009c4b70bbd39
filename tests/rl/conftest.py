"""tests/rl fixtures: one torch thread per test.

The tiny networks here gain nothing from intra-op threads, and on a shared 2-core machine OpenMP's
spinning threads can slow the suite several-fold; the previous setting is restored after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

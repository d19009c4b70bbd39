"""How many CPU threads torch may use: :func:`default_num_threads` and :func:`set_num_threads`.

torch's default (one intra-op thread per core, plus OpenMP workers that spin while waiting) assumes the
process owns the machine. On a 2-core box with one other CPU job, ``rgvlm train`` fell from 56 to 1.17
updates/s (45x) because two such processes oversubscribe the cores. The default here never asks for more
threads than there are cores *free*: the cores this process may run on (its CPU affinity), less the threads
other processes are running right now (the median of a few samples of the kernel's runnable count over
0.2 s: it sees a job that started a second ago, and, unlike the 1-minute load average, does not keep
counting one that ended a minute ago), at least one.

    >>> n = set_num_threads(1)
    >>> n, __import__("torch").get_num_threads()
    (1, 1)
    >>> 1 <= default_num_threads() <= available_cores()
    True
"""

from __future__ import annotations

import contextlib
import os
import time

__all__ = ["available_cores", "default_num_threads", "set_num_threads"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_num_threads() -> int:
    """Threads that do not oversubscribe: free cores (cores minus the other load), at least 1.

    ``RGVLM_GYM_NUM_THREADS`` overrides it (e.g. in a job scheduler that gives the job whole cores).
    """
    env = os.environ.get("RGVLM_GYM_NUM_THREADS")
    if env:
        return _check(int(env) if env.strip().lstrip("-").isdigit() else env, "RGVLM_GYM_NUM_THREADS")
    cores = available_cores()
    return max(1, min(cores, cores - _other_load()))


def _other_load(samples: int = 5, interval: float = 0.05) -> int:
    """Threads other processes are running now (the 1-minute load average where /proc is missing)."""
    counts = []
    for i in range(samples):
        try:  # Linux: "0.50 0.40 0.30 3/200 12345" -- the 3 runnable now include this process
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(interval)
    if counts:
        return max(0, sorted(counts)[len(counts) // 2])
    try:
        return max(0, int(round(os.getloadavg()[0])))
    except (AttributeError, OSError):
        return 0


def set_num_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (``None``: :func:`default_num_threads`); return the number set.

    Inter-op threads are set to 1 where torch still allows it (only before the first parallel op): the
    small networks trained here gain nothing from them.
    """
    import torch

    n = default_num_threads() if n is None else _check(n, "threads")
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already started
        torch.set_num_interop_threads(1)
    return n


def _check(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return n

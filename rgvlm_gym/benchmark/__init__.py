"""Benchmarks: Figure 4 of the RG-VLM paper and beyond, with intervals across seeds, in one command.

* :mod:`rgvlm_gym.benchmark.config` -- :class:`BenchmarkConfig` and :func:`load_config` (TOML / YAML);
* :mod:`rgvlm_gym.benchmark.runner` -- :func:`plan` and :func:`run_benchmark`: ``rgvlm`` sub-processes
  (collect -> relabel -> train -> evaluate), resumable, ``--jobs`` at a time without oversubscribing;
* :mod:`rgvlm_gym.benchmark.aggregate` -- per-seed rows, 95 % t-intervals across seeds, verdicts, CSV / JSON
  / markdown;
* :mod:`rgvlm_gym.benchmark.plots` -- matplotlib pictures (grouped bars by k, learning curves, curves);
* :mod:`rgvlm_gym.benchmark.report` -- :func:`report`, all of the above for a finished (or partial) sweep.

The command line is ``rgvlm benchmark CONFIG [--quick] --out DIR [--jobs N]`` and
``rgvlm compare EVAL_DIR... --out PNG``; configs ship in ``benchmarks/configs/``.
"""

from __future__ import annotations

from rgvlm_gym.benchmark.aggregate import summarize, t_interval
from rgvlm_gym.benchmark.config import BenchmarkConfig, ConfigError, load_config, parse_reward
from rgvlm_gym.benchmark.runner import DatasetMismatch, plan, run_benchmark

__all__ = [
    "BenchmarkConfig",
    "ConfigError",
    "DatasetMismatch",
    "load_config",
    "parse_reward",
    "plan",
    "run_benchmark",
    "summarize",
    "t_interval",
]

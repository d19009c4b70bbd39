"""Algorithm names for experiments and the ``rgvlm train --algo`` flag, mapped to d3rlpy configs.

Holds :data:`ALGORITHMS`, :func:`make_algo_config` and :func:`build_with_dataset`. Every algorithm gets
the same encoder factory (by default :class:`~rgvlm_gym.rl.LanguageConditionedEncoderFactory`), so they
can be compared on the same ``(image, instruction)`` data.
"""

from __future__ import annotations

import difflib
from typing import Any

import d3rlpy
from d3rlpy.base import LearnableBase, LearnableConfig
from d3rlpy.dataset import ReplayBufferBase
from d3rlpy.models.encoders import EncoderFactory
from d3rlpy.types import Shape

from rgvlm_gym.rl.encoders import LanguageConditionedEncoderFactory
from rgvlm_gym.rl.iql import DiscreteIQLConfig

__all__ = ["ALGORITHMS", "make_algo_config", "build_with_dataset"]

ALGORITHMS: dict[str, type[LearnableConfig]] = {
    "iql": DiscreteIQLConfig,
    "cql": d3rlpy.algos.DiscreteCQLConfig,
    "bcq": d3rlpy.algos.DiscreteBCQConfig,
    "bc": d3rlpy.algos.DiscreteBCConfig,
    "dqn": d3rlpy.algos.DQNConfig,
}
"""Short names -> discrete d3rlpy config classes (``iql`` is :class:`DiscreteIQLConfig`)."""


def make_algo_config(
    name: str,
    *,
    encoder_factory: EncoderFactory | None = None,
    batch_size: int = 256,
    **overrides: Any,
) -> LearnableConfig:
    """Builds the config of algorithm ``name`` with a shared encoder and batch size.

    Args:
        name: one of :data:`ALGORITHMS` (``"iql"``, ``"cql"``, ``"bcq"``, ``"bc"``, ``"dqn"``).
        encoder_factory: encoder for every network; the default FiLM encoder when ``None``.
        batch_size: mini-batch size.
        **overrides: any other field of the chosen config (``gamma``, ``learning_rate``, ...).

    Example:
        >>> from rgvlm_gym.rl.algos import make_algo_config
        >>> make_algo_config("cql", batch_size=32).get_type()
        'discrete_cql'
        >>> make_algo_config("iqll")
        Traceback (most recent call last):
        ...
        ValueError: Unknown algorithm 'iqll', expected one of ['iql', 'cql', 'bcq', 'bc', 'dqn']. Did you mean 'iql'?
    """
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, list(ALGORITHMS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown algorithm {name!r}, expected one of {list(ALGORITHMS)}.{hint}")
    encoder = encoder_factory if encoder_factory is not None else LanguageConditionedEncoderFactory()
    config: LearnableConfig = ALGORITHMS[name](encoder_factory=encoder, batch_size=batch_size, **overrides)
    return config


def build_with_dataset(algo: LearnableBase[Any, Any], dataset: ReplayBufferBase) -> None:
    """Builds ``algo``'s networks for ``dataset``, keeping tuple observation shapes intact.

    d3rlpy 2.8.1's ``algo.build_with_dataset`` passes only the first shape of a tuple observation
    (``fit()`` is fine); use this before ``predict`` / ``load_model`` on an unfitted algorithm.
    """
    shape = dataset.sample_transition().observation_signature.shape
    observation_shape: Shape = shape[0] if len(shape) == 1 else shape
    algo.create_impl(observation_shape, dataset.dataset_info.action_size)

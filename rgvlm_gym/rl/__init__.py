"""Offline RL for rgvlm-gym: a discrete, language-conditioned IQL for d3rlpy and its encoder.

Importing this package registers with d3rlpy (so configs serialize and ``d3rlpy.load_learnable``
works):

* :class:`DiscreteIQLConfig` / :class:`DiscreteIQL` -- algorithm type ``"discrete_iql"``;
* :class:`LanguageConditionedEncoderFactory` -- encoder type ``"language_conditioned"``, a FiLM CNN over
  ``(image, instruction)`` tuple observations that d3rlpy's DiscreteCQL / DiscreteBCQ / DiscreteBC / DQN
  accept as well;
* :mod:`rgvlm_gym.rl.algos` -- short names (``iql``, ``cql``, ``bcq``, ``bc``, ``dqn``) -> configs sharing
  one encoder, for experiments and ``rgvlm train --algo``.

It imports torch; ``import rgvlm_gym`` alone does not.
"""

from __future__ import annotations

from rgvlm_gym.rl.encoders import LanguageConditionedEncoderFactory
from rgvlm_gym.rl.iql import DiscreteIQL, DiscreteIQLConfig

__all__ = ["DiscreteIQLConfig", "DiscreteIQL", "LanguageConditionedEncoderFactory"]

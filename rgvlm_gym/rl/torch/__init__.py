"""PyTorch modules behind :mod:`rgvlm_gym.rl`: the FiLM language-conditioned encoders and the DiscreteIQL impl.

Like d3rlpy's ``algos/qlearning/torch`` package, nothing here is configured directly; configs in
:mod:`rgvlm_gym.rl.encoders` and :mod:`rgvlm_gym.rl.iql` build these modules.
"""

from __future__ import annotations

from rgvlm_gym.rl.torch.encoders import (
    LanguageConditionedEncoder,
    LanguageConditionedEncoderWithAction,
)
from rgvlm_gym.rl.torch.iql_impl import (
    DiscreteIQLImpl,
    DiscreteIQLLoss,
    DiscreteIQLModules,
    DiscreteTwinQFunction,
    FeatureHead,
)

__all__ = [
    "LanguageConditionedEncoder",
    "LanguageConditionedEncoderWithAction",
    "DiscreteIQLImpl",
    "DiscreteIQLLoss",
    "DiscreteIQLModules",
    "DiscreteTwinQFunction",
    "FeatureHead",
]

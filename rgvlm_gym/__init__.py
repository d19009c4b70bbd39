"""rgvlm-gym: reward generation by large vision-language models (RG-VLM) for offline RL.

Importing the package registers the Gymnasium environments::

    >>> import gymnasium as gym
    >>> import rgvlm_gym
    >>> "rgvlm_gym/AlfredLite-v1" in gym.registry
    True
"""

from __future__ import annotations

__version__ = "0.1.0"

from rgvlm_gym.console import silence_gym_banner
from rgvlm_gym.envs.registration import register_envs

silence_gym_banner()  # old gym (a d3rlpy dependency) prints an "unmaintained" notice; we use Gymnasium
register_envs()

__all__ = ["__version__"]

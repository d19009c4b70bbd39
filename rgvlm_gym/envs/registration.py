"""Registration of rgvlm-gym's environments with Gymnasium.

``rgvlm_gym/AlfredLite-v1`` is the canonical id; ``rgvlm_gym/AlfredLite-v0`` is an alias of the same
environment kept for existing scripts (see :mod:`rgvlm_gym.envs.versions`). ``rgvlm_gym/AlfredThor-v0``
runs the same tasks on AI2-THOR 2.1.0 (installed with the ``[thor]`` extra).
"""

from __future__ import annotations

import gymnasium as gym

from rgvlm_gym.envs.versions import ENV_ID, LEGACY_ENV_IDS

__all__ = ["ENV_IDS", "THOR_ENV_ID", "register_envs"]

THOR_ENV_ID = "rgvlm_gym/AlfredThor-v0"
ENV_IDS = (ENV_ID, *LEGACY_ENV_IDS, THOR_ENV_ID)


def register_envs() -> None:
    """Register the environments (idempotent: importing twice does not warn)."""
    for env_id in (ENV_ID, *LEGACY_ENV_IDS):
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="rgvlm_gym.envs.alfred_lite:AlfredLiteEnv",
                max_episode_steps=None,  # the env truncates itself at its own `max_steps` kwarg
            )
    if THOR_ENV_ID not in gym.registry:
        gym.register(id=THOR_ENV_ID, entry_point="rgvlm_gym.envs.alfred_thor:AlfredThorEnv", max_episode_steps=None)

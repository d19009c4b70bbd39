"""Registration of rgvlm-gym's environments with Gymnasium."""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_IDS", "register_envs"]

ENV_IDS = ("rgvlm_gym/AlfredLite-v0",)


def register_envs() -> None:
    """Register the environments (idempotent: importing twice does not warn)."""
    if "rgvlm_gym/AlfredLite-v0" not in gym.registry:
        gym.register(
            id="rgvlm_gym/AlfredLite-v0",
            entry_point="rgvlm_gym.envs.alfred_lite:AlfredLiteEnv",
            max_episode_steps=None,  # the env truncates itself at its own `max_steps` kwarg
        )

"""Gymnasium environments of rgvlm-gym.

- ``rgvlm_gym/AlfredLite-v1``: :class:`rgvlm_gym.envs.alfred_lite.AlfredLiteEnv`, ALFRED's high-level task
  world simulated in pure Python (no downloads);
- ``rgvlm_gym/AlfredThor-v0``: the same tasks on AI2-THOR, where AI2-THOR is installed.
"""

"""Gymnasium environments of rgvlm-gym.

- ``rgvlm_gym/AlfredLite-v1``: :class:`rgvlm_gym.envs.alfred_lite.AlfredLiteEnv`, ALFRED's high-level task
  world simulated in pure Python (no downloads); ``rgvlm_gym/AlfredLite-v0`` is an alias of the same
  environment, kept for existing scripts (:mod:`rgvlm_gym.envs.versions`);
- ``rgvlm_gym/AlfredThor-v0``: :class:`rgvlm_gym.envs.alfred_thor.AlfredThorEnv`, the same tasks carried out
  in AI2-THOR 2.1.0 (``pip install 'rgvlm-gym[thor]'`` and an X server).
"""

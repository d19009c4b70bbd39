"""AI2-THOR 2.1.0 behind rgvlm-gym's ALFRED tasks (the backend of ``rgvlm_gym/AlfredThor-v0``).

Holds

- :mod:`rgvlm_gym.thor.controller`: :class:`~rgvlm_gym.thor.controller.ThorController`, a supervised
  AI2-THOR controller (start-up and step timeouts, restart after a hang, clear errors when ai2thor or an X
  display is missing);
- :mod:`rgvlm_gym.thor.translate`: the translation layer: scene restore from a ``traj_data.json`` scene
  (:func:`~rgvlm_gym.thor.translate.restore_actions`), interaction poses for navigation
  (:func:`~rgvlm_gym.thor.translate.interaction_pose`), world-to-THOR object matching and the THOR action
  sequence of each high-level action (:class:`~rgvlm_gym.thor.translate.Translator`).

Nothing here imports ai2thor at module level: ``pip install 'rgvlm-gym[thor]'`` installs ``ai2thor==2.1.0``
(the version ALFRED's trajectories were recorded on), and an X server is needed (see the README's
"AI2-THOR" section for an Xvfb recipe).
"""

from rgvlm_gym.thor.controller import ThorController, ThorError, ThorTimeout, ThorUnavailable
from rgvlm_gym.thor.translate import Translator, interaction_pose, match_objects, restore_actions

__all__ = [
    "ThorController",
    "ThorError",
    "ThorTimeout",
    "ThorUnavailable",
    "Translator",
    "interaction_pose",
    "match_objects",
    "restore_actions",
]

"""LVLM clients: OpenAI-compatible HTTP servers, local transformers models, and a simulated LVLM.

Holds the public API of the sub-package:

- :func:`make_lvlm` — build a client from a spec string (``sim[:k=v,...]``, ``openai:<model>[@<base_url>]``,
  ``hf:<path or hub id>``) or a ``{"type", "params"}`` config; :func:`register_lvlm` adds backends.
- :class:`LVLM` — the interface: ``chat(messages, **gen)``, ``async achat(...)``, ``chat_many`` /
  ``achat_many``, ``usage`` (a :class:`UsageMeter`), ``spec`` and ``config`` (no secrets).
- :class:`LVLMResponse` (``text``, ``usage``, ``model``), :class:`LVLMUsage`, :class:`UsageMeter`, :class:`Price`.
- :class:`LVLMError`, :class:`LVLMRequestError`.
- :func:`register_sim_task` — extend the simulated LVLM (protocol in :mod:`rgvlm_gym.lvlm.sim`).

The backend classes (:class:`~rgvlm_gym.lvlm.sim.SimLVLM`, :class:`~rgvlm_gym.lvlm.openai_client.OpenAILVLM`,
:class:`~rgvlm_gym.lvlm.hf.HFLVLM`) are imported from their modules; ``hf`` imports torch and transformers
only when used.

Example:
    >>> from rgvlm_gym.lvlm import make_lvlm
    >>> lvlm = make_lvlm("sim:noise=0,seed=0")
    >>> r = lvlm.chat([{"role": "user", "content": "Hello?"}])
    >>> r.model, r.usage.simulated, r.text.startswith("[Simulated LVLM]")
    ('sim', True, True)
"""

from __future__ import annotations

from rgvlm_gym.lvlm.base import (
    LVLM,
    LVLMError,
    LVLMRequestError,
    LVLMResponse,
    Messages,
    normalize_messages,
    strip_privileged,
)
from rgvlm_gym.lvlm.registry import LVLMSpec, make_lvlm, register_lvlm, registered_backends
from rgvlm_gym.lvlm.sim import SimLVLM, register_sim_task, registered_sim_tasks
from rgvlm_gym.lvlm.usage import LVLMUsage, Price, UsageMeter, UsageSummary

__all__ = [
    "LVLM",
    "LVLMError",
    "LVLMRequestError",
    "LVLMResponse",
    "LVLMSpec",
    "LVLMUsage",
    "Messages",
    "Price",
    "SimLVLM",
    "UsageMeter",
    "UsageSummary",
    "make_lvlm",
    "normalize_messages",
    "register_lvlm",
    "register_sim_task",
    "registered_backends",
    "registered_sim_tasks",
    "strip_privileged",
]

# The baseline labelers' sim tasks (preference, rating, gvl); imported for its registrations.
from rgvlm_gym.lvlm import sim_tasks as _sim_tasks  # noqa: E402, F401

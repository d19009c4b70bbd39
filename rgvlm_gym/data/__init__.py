"""Datasets: Minari collection, episode records, and conversion to d3rlpy.

* :mod:`rgvlm_gym.data.episode` -- :class:`EpisodeRecord`, the form every later stage reads;
* :mod:`rgvlm_gym.data.policies` -- behaviour policies and the ``mixed`` ratios;
* :mod:`rgvlm_gym.data.collect` -- :func:`collect_dataset` (``rgvlm collect``) on a process pool;
* :mod:`rgvlm_gym.data.storage` -- :func:`write_dataset`, :func:`iter_episodes`, :func:`load_episode`,
  the on-disk layout and the errors;
* :mod:`rgvlm_gym.data.embeddings` -- cached frozen MiniLM instruction embeddings;
* :mod:`rgvlm_gym.data.convert` -- :func:`to_d3rlpy`.

Heavy dependencies (minari, h5py, d3rlpy, torch, sentence-transformers) are imported lazily by the
functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.data.storage import (
    DatasetError,
    DatasetId,
    claim_dataset,
    clean_stale_temporaries,
    dataset_info,
    iter_episodes,
    load_episode,
    open_dataset,
    write_dataset,
)

if TYPE_CHECKING:
    from d3rlpy.dataset import ReplayBuffer
    from minari import MinariDataset

__all__ = [
    "DatasetError",
    "DatasetId",
    "EpisodeRecord",
    "claim_dataset",
    "clean_stale_temporaries",
    "collect_dataset",
    "dataset_info",
    "iter_episodes",
    "load_episode",
    "open_dataset",
    "to_d3rlpy",
    "write_dataset",
]


def to_d3rlpy(
    dataset: MinariDataset | str,
    reward: str = "rewards",
    image_size: int | None = None,
    encoder: str = "minilm",
    action_masks: bool = False,
) -> ReplayBuffer:
    """See :func:`rgvlm_gym.data.convert.to_d3rlpy` (imported lazily: d3rlpy and torch are slow to import)."""
    from rgvlm_gym.data.convert import to_d3rlpy as _to_d3rlpy

    return _to_d3rlpy(dataset, reward=reward, image_size=image_size, encoder=encoder, action_masks=action_masks)


def collect_dataset(dataset_id: str, **kwargs: Any) -> MinariDataset:
    """See :func:`rgvlm_gym.data.collect.collect_dataset`."""
    from rgvlm_gym.data.collect import collect_dataset as _collect

    return _collect(dataset_id, **kwargs)

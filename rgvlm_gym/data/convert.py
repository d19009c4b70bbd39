"""Minari datasets of AlfredLite episodes as d3rlpy replay buffers: :func:`to_d3rlpy`.

Observations are d3rlpy tuple observations ``(image, instruction)``, the format
:class:`rgvlm_gym.rl.LanguageConditionedEncoderFactory` reads:

* ``image``: ``np.uint8`` ``(3, S, S)``, channel-first, the stored RL observation (``S`` = the env's
  ``image_size``, 64 by default; ``image_size=`` resizes it with PIL's box filter -- evaluate with an env
  of the same ``image_size`` then);
* ``instruction``: ``np.float32`` ``(384,)`` frozen MiniLM embedding (:mod:`rgvlm_gym.data.embeddings`,
  computed once per unique instruction and cached on disk).

Terminals vs timeouts: an episode that reached the goal is ``terminated`` (d3rlpy zeroes the bootstrap
of its last transition). Any other end -- ``max_steps``, or a behaviour policy that gave up -- is a
timeout: the episode is stored with its final observation ``s_T`` (and a padding action, never sampled
as a transition's own action) so that all ``T`` transitions, the last one included, bootstrap from
``s_T``. So every recorded step is a transition: ``buffer.transition_count == dataset.total_steps``.

Privileged columns (sub-task progress) are never read here.

    >>> import os, tempfile
    >>> os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp()  # keep ~/.minari clean
    >>> from rgvlm_gym.data.collect import collect_dataset
    >>> ds = collect_dataset("doctest/tiny-v0", episodes=4, num_tasks=10, workers=1, progress=False)
    >>> buf = to_d3rlpy(ds)
    >>> buf.transition_count == ds.total_steps, bool(buf.dataset_info.action_size == ds.action_space.n)
    (True, True)
    >>> [tuple(s) for s in buf.dataset_info.observation_signature.shape]
    [(3, 64, 64), (384,)]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from rgvlm_gym.data.storage import DatasetError, _check_rgvlm, iter_episodes, open_dataset

if TYPE_CHECKING:
    from d3rlpy.dataset import ReplayBuffer
    from minari import MinariDataset

__all__ = ["prepare_embeddings", "to_d3rlpy"]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BOX)) for im in images])


def to_d3rlpy(
    dataset: MinariDataset | str,
    reward: str = "rewards",
    image_size: int | None = None,
    encoder: str = "minilm",
    action_masks: bool = False,
) -> ReplayBuffer:
    """A d3rlpy ``ReplayBuffer`` (InfiniteBuffer) with ``(image, instruction embedding)`` observations.

    With ``action_masks=True`` observations are ``(image, embedding, action mask)``: the third element is
    the state's admissible actions (``info["action_mask"]`` as float32 0/1), which the agent also sees at
    run time; :class:`~rgvlm_gym.rl.DiscreteIQL` then decodes over admissible actions only.

    Args:
        dataset: a dataset id or :class:`minari.MinariDataset` written by rgvlm-gym.
        reward: the reward column: ``"rewards"`` (as stored: the env's sparse reward in a collected
            dataset) or an extra per-step column of the dataset (e.g. ``"lvlm_rewards"``).
        image_size: resize the RL image to this side (None: as stored).
        encoder: instruction encoder (``"minilm"``).
        action_masks: add the admissible-action mask as a third observation element.

    Raises:
        DatasetError: the dataset is missing / not rgvlm-gym's / corrupted, or has no such reward column.
    """
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer, Signature

    from rgvlm_gym.data.embeddings import EMBEDDING_DIM, InstructionEmbedder

    ds = open_dataset(dataset)
    meta = _check_rgvlm(ds)
    columns = ["rewards", *meta.get("extra_step_columns", [])]
    if reward not in columns:
        raise DatasetError(f"dataset {ds.id!r} has no reward column {reward!r}; its per-step reward columns: {columns}")
    if image_size is not None and not 8 <= int(image_size) <= 512:
        raise ValueError(f"image_size must be in 8..512 or None, got {image_size}")
    n_actions = int(ds.action_space.n)  # type: ignore[attr-defined]
    embed = InstructionEmbedder(encoder)

    records = list(_episode_arrays(ds, reward, image_size, action_masks))
    if not records:
        raise DatasetError(f"dataset {ds.id!r} has no episodes")
    texts = sorted({r[1] for r in records})
    table = dict(zip(texts, embed(texts), strict=True))
    episodes = []
    for images, text, actions, rewards, terminated, masks in records:
        T = len(actions)
        n = T if terminated else T + 1  # keep s_T when truncated: the last transition bootstraps from it
        if terminated:
            acts, rews = actions, rewards
        else:
            acts = np.concatenate([actions, actions[-1:]])
            rews = np.concatenate([rewards, np.zeros(1, np.float32)])
        emb = np.broadcast_to(table[text], (n, table[text].shape[0]))
        obs = [images[:n], np.ascontiguousarray(emb)]
        if masks is not None:
            obs.append(np.ascontiguousarray(masks[:n], dtype=np.float32))
        episodes.append(Episode(observations=obs, actions=acts.reshape(-1, 1).astype(np.int64),
                                rewards=rews.reshape(-1, 1).astype(np.float32), terminated=bool(terminated)))
    img_shape = tuple(episodes[0].observations[0].shape[1:])
    dtypes, shapes = [np.dtype(np.uint8), np.dtype(np.float32)], [img_shape, (EMBEDDING_DIM,)]
    if action_masks:
        dtypes.append(np.dtype(np.float32))
        shapes.append((n_actions,))
    return ReplayBuffer(
        InfiniteBuffer(),
        episodes=episodes,
        observation_signature=Signature(dtype=dtypes, shape=shapes),
        action_signature=Signature(dtype=[np.dtype(np.int64)], shape=[(1,)]),
        reward_signature=Signature(dtype=[np.dtype(np.float32)], shape=[(1,)]),
        action_space=ActionSpace.DISCRETE,
        action_size=n_actions,
    )


def _episode_arrays(
    ds: MinariDataset, reward: str, image_size: int | None, action_masks: bool
) -> Iterator[tuple[np.ndarray, str, np.ndarray, np.ndarray, bool, np.ndarray | None]]:
    for rec in iter_episodes(ds, frames=False):
        if action_masks and rec.action_masks is None:
            raise DatasetError(
                f"dataset {ds.id!r} episode {rec.episode_id} has no action masks (collected before rgvlm-gym "
                "recorded them, format version < 2): re-collect it, or train without action masks"
            )
        images = rec.images if image_size is None or int(image_size) == rec.images.shape[1] else _resize(rec.images, int(image_size))
        if reward == "rewards":
            rewards = np.asarray(rec.rewards, np.float32)
        else:
            if reward not in rec.extra:
                raise DatasetError(f"dataset {ds.id!r} episode {rec.episode_id}: missing reward column {reward!r}")
            rewards = np.asarray(rec.extra[reward], np.float32)
        if not np.isfinite(rewards).all():
            raise DatasetError(
                f"dataset {ds.id!r} episode {rec.episode_id}: reward column {reward!r} has non-finite values "
                "(an audit column such as lvlm_labels is NaN where an episode is unlabeled; train on lvlm_rewards or rewards)"
            )
        masks = rec.action_masks if action_masks else None
        yield np.ascontiguousarray(images.transpose(0, 3, 1, 2)), rec.instruction, rec.actions, rewards, bool(rec.terminations[-1]), masks


def prepare_embeddings(dataset: MinariDataset | str, encoder: str = "minilm") -> int:
    """Compute (and cache on disk) the embeddings of a dataset's unique instructions; returns their count.

    ``rgvlm collect`` calls it after writing (unless ``--no-embed``), so that the first :func:`to_d3rlpy`
    of a fresh dataset does not pay for the encoder (~10-40 ms an ALFRED instruction on 2 CPU cores).
    """
    from rgvlm_gym.data.embeddings import InstructionEmbedder

    texts = sorted({rec.instruction for rec in iter_episodes(dataset, frames=False, images=False)})
    InstructionEmbedder(encoder)(texts)
    return len(texts)

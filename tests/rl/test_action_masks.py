"""Admissible-action masks as a third observation element: the encoder reads them, DiscreteIQL's policy
normalises over admissible actions in training and decodes over them at prediction."""

from __future__ import annotations

import contextlib
import io

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer, Signature
from rl_helpers import ACTION_SIZE, EMBEDDING_SIZE, IMAGE_SHAPE, tiny_encoder

from rgvlm_gym.rl import DiscreteIQLConfig
from rgvlm_gym.rl.torch.iql_impl import mask_logits


def masked_dataset(n_episodes: int = 6, length: int = 6, seed: int = 0) -> ReplayBuffer:
    """Episodes whose admissible set is always {0, 1, 2}; the behaviour takes action 1 (and sometimes a
    failing action 5, which a mask marks inadmissible)."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n_episodes):
        images = rng.integers(0, 256, size=(length, *IMAGE_SHAPE), dtype=np.uint8)
        emb = rng.standard_normal((length, EMBEDDING_SIZE)).astype(np.float32)
        mask = np.zeros((length, ACTION_SIZE), np.float32)
        mask[:, :3] = 1.0
        actions = np.where(rng.random(length) < 0.8, 1, 5).reshape(-1, 1)
        rewards = (actions == 1).astype(np.float32)
        episodes.append(Episode(observations=[images, emb, mask], actions=actions, rewards=rewards, terminated=True))
    return ReplayBuffer(
        InfiniteBuffer(),
        episodes=episodes,
        observation_signature=Signature(dtype=[np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float32)],
                                        shape=[IMAGE_SHAPE, (EMBEDDING_SIZE,), (ACTION_SIZE,)]),
        action_signature=Signature(dtype=[np.dtype(np.int64)], shape=[(1,)]),
        reward_signature=Signature(dtype=[np.dtype(np.float32)], shape=[(1,)]),
        action_space=ActionSpace.DISCRETE,
        action_size=ACTION_SIZE,
    )


def test_mask_logits_keeps_admissible_and_rows_without_any() -> None:
    logits = torch.tensor([[1.0, 5.0, 2.0], [1.0, 5.0, 2.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    out = mask_logits(logits, mask)
    assert out[0].argmax() == 2 and out[0, 1] < -1e8
    assert torch.equal(out[1], logits[1])  # nothing admissible: leave the row alone
    assert mask_logits(logits, None) is logits


def test_iql_with_masks_trains_and_only_predicts_admissible_actions() -> None:
    d3rlpy.seed(0)
    buffer = masked_dataset()
    iql = DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=16).create(device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        iql.fit(buffer, n_steps=60, n_steps_per_epoch=60, show_progress=False, save_interval=10**9,
                logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    obs = buffer.episodes[0].observations
    x = [o[:4] for o in obs]
    # the learnt favourite among admissible actions is the behaviour's successful one
    assert (iql.predict(x) == 1).all()
    # a mask that allows only 0 and 4 forces the prediction into that set, whatever the logits say
    x[2] = np.zeros_like(x[2])
    x[2][:, [0, 4]] = 1.0
    assert set(iql.predict(x).tolist()) <= {0, 4}
    for _ in range(20):
        assert set(iql.sample_action(x).tolist()) <= {0, 4}


def test_action_text_heads_share_what_similar_actions_learn(tmp_path) -> None:
    """With action names, Q and policy score actions through their phrases' embeddings too; the config
    (names included) survives save -> load_learnable."""
    from rgvlm_gym.rl.action_text import action_text_embeddings, describe_action
    from rgvlm_gym.rl.torch.iql_impl import ActionTextLinear

    names = ["GotoLocation fridge", "PickupObject apple", "PickupObject tomato", "PutObject fridge", "SliceObject apple", "CoolObject apple"]
    emb = action_text_embeddings(names)
    assert emb.shape == (ACTION_SIZE, 384) and np.isfinite(emb).all()
    # phrases of related actions are closer than unrelated ones
    cos = emb @ emb.T / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
    assert cos[1, 2] > cos[1, 0] and describe_action(names[1]) == "pick up the apple"
    head = ActionTextLinear(8, torch.from_numpy(emb), n_out=2)
    assert head(torch.randn(3, 8)).shape == (3, 2 * ACTION_SIZE)

    d3rlpy.seed(0)
    buffer = masked_dataset()
    iql = DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=16, action_names=names).create(device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        iql.fit(buffer, n_steps=40, n_steps_per_epoch=40, show_progress=False, save_interval=10**9,
                logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    x = [o[:4] for o in buffer.episodes[0].observations]
    iql.save(tmp_path / "m.d3")
    loaded = d3rlpy.load_learnable(str(tmp_path / "m.d3"))
    assert loaded.config.action_names == names
    np.testing.assert_array_equal(loaded.predict(x), iql.predict(x))
    with pytest.raises(ValueError, match="one action name per action"):
        DiscreteIQLConfig(encoder_factory=tiny_encoder(), action_names=names[:2]).create().build_with_dataset(buffer)

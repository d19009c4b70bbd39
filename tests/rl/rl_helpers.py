"""Shared tiny datasets and the algorithm tester for tests/rl (d3rlpy ``algo_test.py`` style).

``algo_tester`` runs one algorithm through fit (with evaluators and a file logger), greedy and sampled
actions, Q-values, save -> ``d3rlpy.load_learnable`` and an update after loading.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import d3rlpy
import numpy as np
from d3rlpy.dataset import ReplayBuffer

from rgvlm_gym.rl import LanguageConditionedEncoderFactory

ACTION_SIZE = 6
IMAGE_SHAPE = (3, 24, 20)  # deliberately not square and not 64x64
EMBEDDING_SIZE = 12
TOKEN_LENGTH = 7
VOCAB_SIZE = 40


def tiny_encoder(language: str = "frozen", **kwargs: Any) -> LanguageConditionedEncoderFactory:
    return LanguageConditionedEncoderFactory(
        language=language,
        filters=[[4, 4, 2], [8, 3, 2]],
        feature_size=16,
        language_feature_size=8,
        vocab_size=VOCAB_SIZE,
        token_embedding_size=8,
        **kwargs,
    )


def instructions(n: int, language: str, rng: np.random.Generator) -> np.ndarray:
    if language == "frozen":
        return rng.standard_normal((n, EMBEDDING_SIZE)).astype(np.float32)
    tokens = rng.integers(1, VOCAB_SIZE, size=(n, TOKEN_LENGTH))
    lengths = rng.integers(1, TOKEN_LENGTH + 1, size=n)
    tokens[np.arange(TOKEN_LENGTH)[None, :] >= lengths[:, None]] = 0  # right padding
    return tokens.astype(np.int64)


def tuple_observations(n: int, language: str = "frozen", seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *IMAGE_SHAPE), dtype=np.uint8)
    return [images, instructions(n, language, rng)]


def tuple_dataset(
    language: str = "frozen", n_episodes: int = 4, episode_length: int = 8, seed: int = 0
) -> ReplayBuffer:
    n = n_episodes * episode_length
    rng = np.random.default_rng(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        return d3rlpy.dataset.MDPDataset(
            observations=tuple_observations(n, language, seed),
            actions=rng.integers(0, ACTION_SIZE, size=n),
            rewards=rng.random(n).astype(np.float32),
            terminals=(np.arange(n) % episode_length == episode_length - 1).astype(np.float32),
            action_space=d3rlpy.ActionSpace.DISCRETE,
            action_size=ACTION_SIZE,
        )


def flat_dataset(observation_shape: tuple[int, ...], n: int = 32, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    if len(observation_shape) == 3:
        observations = rng.integers(0, 256, size=(n, *observation_shape), dtype=np.uint8)
    else:
        observations = rng.standard_normal((n, *observation_shape)).astype(np.float32)
    with contextlib.redirect_stdout(io.StringIO()):
        return d3rlpy.dataset.MDPDataset(
            observations=observations,
            actions=rng.integers(0, ACTION_SIZE, size=n),
            rewards=rng.random(n).astype(np.float32),
            terminals=(np.arange(n) % 8 == 7).astype(np.float32),
            action_space=d3rlpy.ActionSpace.DISCRETE,
            action_size=ACTION_SIZE,
        )


def _as_batch(observations: Any) -> Any:
    return observations


def algo_tester(
    algo: Any,
    dataset: ReplayBuffer,
    observations: Any,
    tmp_path: Path,
    *,
    n_steps: int = 3,
    predicts_value: bool = True,
    deterministic_sampling: bool = False,
) -> d3rlpy.base.LearnableBase[Any, Any]:
    """Fit, predict, sample, value, save/load and resume one discrete algorithm; returns the loaded copy."""
    evaluators: dict[str, Any] = {"action_match": d3rlpy.metrics.DiscreteActionMatchEvaluator()}
    if predicts_value:
        evaluators["td_error"] = d3rlpy.metrics.TDErrorEvaluator()
    results = algo.fit(
        dataset,
        n_steps=n_steps,
        n_steps_per_epoch=n_steps,
        logger_adapter=d3rlpy.logging.FileAdapterFactory(root_dir=str(tmp_path / "logs")),
        experiment_name="run",
        with_timestamp=False,
        show_progress=False,
        evaluators=evaluators,
    )
    assert len(results) == 1
    _, metrics = results[0]
    for name in evaluators:
        assert np.isfinite(metrics[name]), name
    params = json.loads((tmp_path / "logs" / "run" / "params.json").read_text())
    assert params["config"]["type"] == algo.config.get_type()

    n = len(observations[0]) if isinstance(observations, list) else len(observations)
    greedy = algo.predict(observations)
    assert greedy.shape == (n,)
    assert ((greedy >= 0) & (greedy < ACTION_SIZE)).all()
    sampled = algo.sample_action(observations)
    assert sampled.shape == (n,)
    assert ((sampled >= 0) & (sampled < ACTION_SIZE)).all()
    if deterministic_sampling:
        np.testing.assert_array_equal(sampled, greedy)
    if predicts_value:
        values = algo.predict_value(observations, greedy)
        assert values.shape == (n,)
        assert np.isfinite(values).all()

    path = tmp_path / "model.d3"
    algo.save(str(path))
    loaded = d3rlpy.load_learnable(str(path), device="cpu:0")
    assert type(loaded) is type(algo)
    assert json.loads(loaded.config.serialize()) == json.loads(algo.config.serialize())
    np.testing.assert_array_equal(loaded.predict(observations), greedy)
    if predicts_value:
        np.testing.assert_allclose(loaded.predict_value(observations, greedy), values, rtol=1e-5, atol=1e-6)
    # a loaded model keeps training
    metrics_after = loaded.update(dataset.sample_transition_batch(algo.config.batch_size))
    assert all(np.isfinite(v) for v in metrics_after.values())
    return loaded

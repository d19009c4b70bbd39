"""Every discrete algorithm rgvlm-gym benchmarks runs on ``(image, instruction)`` tuple observations
with :class:`LanguageConditionedEncoderFactory`: fit, predict, sample, save -> ``load_learnable``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import d3rlpy
import numpy as np
import pytest
from d3rlpy.models import PixelEncoderFactory, VectorEncoderFactory
from rl_helpers import (
    ACTION_SIZE,
    algo_tester,
    flat_dataset,
    tiny_encoder,
    tuple_dataset,
    tuple_observations,
)

from rgvlm_gym.rl import DiscreteIQL, DiscreteIQLConfig, LanguageConditionedEncoderFactory

REPO_ROOT = Path(__file__).resolve().parents[2]
BATCH = 8

# name -> (config builder taking an encoder factory, predicts Q-values, greedy == sampled)
ALGOS: dict[str, tuple[Callable[[Any], Any], bool, bool]] = {
    "discrete_iql": (lambda enc: DiscreteIQLConfig(encoder_factory=enc, batch_size=BATCH), True, False),
    "discrete_iql_separate": (
        lambda enc: DiscreteIQLConfig(encoder_factory=enc, batch_size=BATCH, share_encoder=False),
        True,
        False,
    ),
    "discrete_cql": (
        lambda enc: d3rlpy.algos.DiscreteCQLConfig(encoder_factory=enc, batch_size=BATCH),
        True,
        True,
    ),
    "discrete_bcq": (
        lambda enc: d3rlpy.algos.DiscreteBCQConfig(encoder_factory=enc, batch_size=BATCH),
        True,
        True,
    ),
    "discrete_bc": (
        lambda enc: d3rlpy.algos.DiscreteBCConfig(encoder_factory=enc, batch_size=BATCH),
        False,
        True,
    ),
    "dqn": (lambda enc: d3rlpy.algos.DQNConfig(encoder_factory=enc, batch_size=BATCH), True, True),
}


@pytest.mark.parametrize("language", ["frozen", "learned"])
@pytest.mark.parametrize("name", list(ALGOS))
def test_algorithm_on_language_tuple_observations(name: str, language: str, tmp_path: Path) -> None:
    make_config, predicts_value, deterministic = ALGOS[name]
    d3rlpy.seed(0)
    algo = make_config(tiny_encoder(language)).create(device="cpu:0")
    loaded = algo_tester(
        algo,
        tuple_dataset(language),
        tuple_observations(5, language, seed=1),
        tmp_path,
        predicts_value=predicts_value,
        deterministic_sampling=deterministic,
    )
    encoder = loaded.config.encoder_factory
    assert isinstance(encoder, LanguageConditionedEncoderFactory)
    assert encoder == tiny_encoder(language)


@pytest.mark.parametrize(
    ("observation_shape", "encoder"),
    [((7,), VectorEncoderFactory(hidden_units=[16])), ((1, 36, 36), PixelEncoderFactory(feature_size=16))],
    ids=["vector", "image"],
)
def test_discrete_iql_on_flat_observations(
    observation_shape: tuple[int, ...], encoder: Any, tmp_path: Path
) -> None:
    d3rlpy.seed(0)
    dataset = flat_dataset(observation_shape)
    algo = DiscreteIQLConfig(encoder_factory=encoder, batch_size=BATCH).create(device="cpu:0")
    rng = np.random.default_rng(1)
    if len(observation_shape) == 3:
        observations = rng.integers(0, 256, size=(4, *observation_shape), dtype=np.uint8)
    else:
        observations = rng.standard_normal((4, *observation_shape)).astype(np.float32)
    algo_tester(algo, dataset, observations, tmp_path)


@pytest.mark.parametrize("name", ["discrete_iql", "discrete_cql"])
def test_load_learnable_in_a_fresh_process(name: str, tmp_path: Path) -> None:
    """d3rlpy issue #398: a custom encoder must be registered for ``load_learnable`` in a new process."""
    make_config, _, _ = ALGOS[name]
    d3rlpy.seed(0)
    algo = make_config(tiny_encoder("learned")).create(device="cpu:0")
    dataset = tuple_dataset("learned")
    algo.fit(
        dataset,
        n_steps=2,
        n_steps_per_epoch=2,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
    )
    observations = tuple_observations(6, "learned", seed=3)
    np.savez(tmp_path / "obs.npz", image=observations[0], instruction=observations[1])
    algo.save(str(tmp_path / "model.d3"))
    script = textwrap.dedent(
        f"""
        import numpy as np, d3rlpy
        import rgvlm_gym.rl  # registers discrete_iql and language_conditioned
        data = np.load({str(tmp_path / "obs.npz")!r})
        algo = d3rlpy.load_learnable({str(tmp_path / "model.d3")!r}, device="cpu:0")
        print("ACTIONS", algo.predict([data["image"], data["instruction"]]).tolist())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("ACTIONS"))
    assert line == f"ACTIONS {algo.predict(observations).tolist()}"


def test_discrete_iql_save_policy_torchscript(tmp_path: Path) -> None:
    import torch

    d3rlpy.seed(0)
    algo = DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=BATCH).create(device="cpu:0")
    dataset = tuple_dataset()
    algo.build_with_dataset(dataset)
    path = tmp_path / "policy.pt"
    algo.save_policy(str(path))
    policy = torch.jit.load(str(path))
    observations = tuple_observations(4)
    actions = policy(*(torch.as_tensor(o, dtype=torch.float32) for o in observations))
    np.testing.assert_array_equal(actions.numpy(), algo.predict(observations))
    assert ((actions >= 0) & (actions < ACTION_SIZE)).all()


def test_public_api() -> None:
    import rgvlm_gym.rl as rl

    assert {"DiscreteIQLConfig", "DiscreteIQL", "LanguageConditionedEncoderFactory"} <= set(rl.__all__)
    assert isinstance(DiscreteIQLConfig().create(device="cpu:0"), DiscreteIQL)


def test_importing_rgvlm_gym_does_not_import_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import sys, rgvlm_gym; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_algorithm_names_build_configs_with_a_shared_encoder() -> None:
    from rgvlm_gym.rl.algos import ALGORITHMS, build_with_dataset, make_algo_config

    encoder = tiny_encoder()
    dataset = tuple_dataset()
    for name in ALGORITHMS:
        config = make_algo_config(name, encoder_factory=encoder, batch_size=4)
        assert config.encoder_factory == encoder and config.batch_size == 4
        algo = config.create(device="cpu:0")
        build_with_dataset(algo, dataset)  # tuple shapes survive, unlike d3rlpy's own build_with_dataset
        assert algo.predict(tuple_observations(2)).shape == (2,)
    assert isinstance(make_algo_config("iql").encoder_factory, LanguageConditionedEncoderFactory)
    with pytest.raises(ValueError, match="Did you mean 'cql'"):
        make_algo_config("cqll")


TINY_BENCHMARK_ARGS = {
    "--image-size": "36",
    "--embedding-dim": "8",
    "--n-actions": "5",
    "--n-transitions": "64",
    "--batch-size": "8",
    "--batch-pool": "2",
    "--warmup-updates": "1",
    "--updates": "2",
    "--rounds": "1",
    "--algos": "discrete_iql,discrete_cql",
}


def test_benchmark_script_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_iql.py"),
            *(item for pair in TINY_BENCHMARK_ARGS.items() for item in pair),
            *("--json-out", str(out)),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DiscreteIQL / DiscreteCQL updates/s ratio" in result.stdout
    summary = json.loads(out.read_text())["summary"]
    assert summary["discrete_iql"]["updates_per_s"] > 0 and summary["discrete_cql"]["peak_rss_mib"] > 0

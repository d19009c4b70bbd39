"""The Minari writer and readers: round trips, metadata, atomicity, never overwriting, and the error cases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest

import rgvlm_gym
from rgvlm_gym.data import (
    DatasetError,
    dataset_info,
    iter_episodes,
    load_episode,
    open_dataset,
    write_dataset,
)
from rgvlm_gym.data.collect import collect_episode


@pytest.fixture(scope="module")
def env():
    return gym.make("rgvlm_gym/AlfredLite-v0", num_tasks=10)


@pytest.fixture(scope="module")
def records(env):
    kinds = ["expert", "partial", "random", "detour"]
    return [collect_episode(env.unwrapped, k, episode_id=i, seed=i, task_index=i, frame_size=224) for i, k in enumerate(kinds)]


def _same(a, b) -> None:
    assert a.actions.tolist() == b.actions.tolist()
    assert a.action_names == b.action_names
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.frames, b.frames)  # lossless
    assert a.rewards.tolist() == b.rewards.tolist()
    assert a.terminations.tolist() == b.terminations.tolist() and a.truncations.tolist() == b.truncations.tolist()
    assert a.progress.tolist() == b.progress.tolist()
    assert a.goal_conditions.tolist() == b.goal_conditions.tolist()
    assert a.action_errors == b.action_errors
    assert a.task == b.task and a.instruction == b.instruction
    assert a.policy == b.policy and a.seed == b.seed


def test_round_trip_metadata_and_minari(env, records) -> None:
    ds = write_dataset("test/rt-v0", records, env=env, metadata={"policy_mix": {"expert": 1.0}, "seed": 7, "description": "round trip"})
    back = list(iter_episodes("test/rt-v0"))
    assert len(back) == len(records)
    for a, b in zip(records, back, strict=True):
        _same(a, b)
    assert load_episode(ds, 2).policy == "random"
    info = dataset_info("test/rt-v0")
    assert info["policy_mix"] == {"expert": 1.0} and info["seed"] == 7
    assert info["rgvlm_gym_version"] == rgvlm_gym.__version__ and info["format_version"] == 2
    assert info["action_names"] == env.unwrapped.action_names
    # Minari's own view: loads, counts, observations, episode seeds/options, description, env recovery
    mds = minari.load_dataset("test/rt-v0")
    assert mds.total_episodes == 4 and mds.total_steps == sum(len(r) for r in records)
    assert mds.storage.metadata["description"] == "round trip"
    ep = mds[0]
    assert np.array_equal(ep.observations["image"], records[0].images)
    assert ep.observations["instruction"][0] == records[0].instruction
    meta = list(mds.storage.get_episode_metadata([0]))[0]
    assert meta["seed"] == records[0].seed and int(meta["options"]["task_index"]) == records[0].task["task_index"]
    renv = mds.recover_environment()
    obs, _ = renv.reset(seed=meta["seed"], options={"task_index": int(meta["options"]["task_index"])})
    assert np.array_equal(obs["image"], records[0].images[0])  # the stored seed/options replay the start
    assert "test/rt-v0" in minari.list_local_datasets()
    # privileged ground truth is not part of what Minari hands to training code
    assert not hasattr(ep, "progress") and ep.infos in (None, {})


def test_minari_cli_lists_and_shows(env, records) -> None:
    write_dataset("test/cli-v0", records[:1], env=env)
    exe = Path(sys.executable).with_name("minari")
    out = subprocess.run([str(exe), "list", "local"], capture_output=True, text=True, env=os.environ, timeout=60)
    assert out.returncode == 0 and "cli-v0" in out.stdout
    out = subprocess.run([str(exe), "show", "test/cli-v0"], capture_output=True, text=True, env=os.environ, timeout=60)
    assert out.returncode == 0 and "Total Episodes" in out.stdout


def test_extra_columns_and_source(env, records) -> None:
    src = write_dataset("test/src-v0", records, env=env, metadata={"seed": 1})
    relabeled = []
    for r in iter_episodes(src):
        r.extra["lvlm_rewards"] = np.linspace(0, 1, len(r)).astype(np.float32)
        r.extra["original_rewards"] = r.rewards
        r.extra["answers"] = {"stage1": "it picked up the apple", "scores": [1, 2]}
        relabeled.append(r)
    out = write_dataset("test/relabeled-v0", relabeled, source=src, metadata={"labeler": "sim"},
                        extra_step_columns=["lvlm_rewards", "original_rewards"], extra_episode_columns=["answers"])
    info = dataset_info(out)
    assert info["source_dataset"] == "test/src-v0" and info["seed"] == 1 and info["labeler"] == "sim"
    assert info["extra_step_columns"] == ["lvlm_rewards", "original_rewards"]
    back = load_episode(out, 1)
    assert np.allclose(back.extra["lvlm_rewards"], np.linspace(0, 1, len(back)))
    assert back.extra["answers"] == {"stage1": "it picked up the apple", "scores": [1, 2]}
    assert out.env_spec == src.env_spec


def test_never_overwrites_without_force(env, records) -> None:
    write_dataset("test/keep-v0", records[:1], env=env)
    with pytest.raises(FileExistsError, match="already exists.*force"):
        write_dataset("test/keep-v0", records[1:2], env=env)
    assert load_episode("test/keep-v0", 0).policy == "expert"
    write_dataset("test/keep-v0", records[2:3], env=env, force=True)
    assert load_episode("test/keep-v0", 0).policy == "random"


def test_failure_midway_leaves_nothing(env, records) -> None:
    def stream():
        yield records[0]
        yield records[1]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset("test/half-v0", stream(), env=env)
    root = Path(os.environ["MINARI_DATASETS_PATH"])
    assert not (root / "test" / "half-v0").exists()
    assert not any((root / ".rgvlm-tmp").iterdir())
    # a crash while replacing with force keeps the old dataset
    write_dataset("test/half-v0", records[:1], env=env)
    bad = replace(records[1], progress=records[1].progress[:-1])
    with pytest.raises(ValueError, match="len\\(progress\\)"):
        write_dataset("test/half-v0", [records[2], bad], env=env, force=True)
    assert open_dataset("test/half-v0").total_episodes == 1


def test_bad_ids_and_unknown_datasets(env, records) -> None:
    with pytest.raises(ValueError, match="namespace/name-vN"):
        write_dataset("no-version", records, env=env)
    write_dataset("test/alfred-valid-mixed-v0", records[:1], env=env)
    with pytest.raises(DatasetError, match="'test/alfred-valid-mixd-v0' not found.*did you mean 'test/alfred-valid-mixed-v0'"):
        open_dataset("test/alfred-valid-mixd-v0")


def test_dataset_of_another_env() -> None:
    from minari.data_collector import EpisodeBuffer

    cp = gym.make("CartPole-v1")
    buf = EpisodeBuffer(observations=np.zeros((3, 4), np.float32), actions=np.zeros(2, np.int64), rewards=[1.0, 1.0],
                        terminations=[False, True], truncations=[False, False])
    minari.create_dataset_from_buffers("other/cartpole-v0", [buf], env=cp, author="t", author_email="t", code_permalink="t",
                                       algorithm_name="t", description="t", eval_env=cp)
    with pytest.raises(DatasetError, match="'other/cartpole-v0' was recorded in environment 'CartPole-v1'"):
        list(iter_episodes("other/cartpole-v0"))


def test_corrupted_file_and_missing_frames(env, records) -> None:
    ds = write_dataset("test/nof-v0", records[:2], env=env, frames=False)
    with pytest.raises(DatasetError, match="'test/nof-v0' episode 0: missing frame column 'frames'"):
        load_episode(ds, 0)
    assert load_episode(ds, 0, frames=False).frames is None
    ds = write_dataset("test/bad-v0", records[:2], env=env)
    h5 = Path(ds.storage.data_path) / "main_data.hdf5"
    data = h5.read_bytes()
    h5.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match="'test/bad-v0'.*(corrupted|truncated)"):
        list(iter_episodes("test/bad-v0"))
    meta = Path(ds.storage.data_path) / "metadata.json"
    meta.write_text("{not json")
    with pytest.raises(DatasetError, match="'test/bad-v0'.*cannot be read"):
        open_dataset("test/bad-v0")
    shutil.rmtree(Path(ds.storage.data_path).parent)


def test_records_are_validated(env, records) -> None:
    with pytest.raises(ValueError, match="frames must be"):
        write_dataset("test/v-v0", [replace(records[0], frames=records[0].frames[:, :100, :100])], env=env)
    with pytest.raises(ValueError, match="extra step column 'lvlm_rewards'"):
        write_dataset("test/v-v0", records[:1], env=env, extra_step_columns=["lvlm_rewards"])
    with pytest.raises(ValueError, match="exactly one of env"):
        write_dataset("test/v-v0", records[:1])
    assert not (Path(os.environ["MINARI_DATASETS_PATH"]) / "test" / "v-v0").exists()

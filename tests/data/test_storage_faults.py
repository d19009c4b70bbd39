"""Corrupt sources are refused when read, naming the dataset and the episode (issue 13, item 6): real Minari
datasets on disk, damaged in place the way a bad disk or a bad tool would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from rgvlm_gym.data import DatasetError, collect_dataset, iter_episodes, load_episode
from rgvlm_gym.rewards import relabel

SRC = "test/corrupt-v0"


@pytest.fixture
def src() -> Path:
    ds = collect_dataset(SRC, episodes=6, workers=1, seed=3, max_steps=10, progress=False)
    return Path(ds.storage.data_path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", *args], capture_output=True, text=True, timeout=300)


def _refused(match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        list(iter_episodes(SRC, frames=False))
    with pytest.raises(DatasetError, match=match):
        relabel(SRC, "test/corrupt-out-v0", "rgvlm", lvlm="sim", cache=False, progress=False)
    r = _cli("relabel", SRC, "--out", "test/corrupt-cli-v0", "--cache", "none", "--no-progress")
    assert r.returncode == 1 and "Traceback" not in r.stderr and SRC in r.stderr, r.stderr


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_rewards(src: Path, value: float) -> None:
    with h5py.File(src / "main_data.hdf5", "r+") as f:
        f["episode_2/rewards"][1] = value
    _refused(r"episode 2: reward .* at step 1 is not finite")


@pytest.mark.parametrize("value", [-820833840790186043, -1, 10**6])
def test_actions_outside_the_action_space(src: Path, value: int) -> None:
    with h5py.File(src / "main_data.hdf5", "r+") as f:
        f["episode_3/actions"][0] = value
    _refused(rf"episode 3: action {value} at step 0 is outside the action space")
    with pytest.raises(DatasetError, match="episode 3"):
        load_episode(SRC, 3)


def test_episode_count_disagrees_with_the_file(src: Path) -> None:
    meta_path = src / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["total_episodes"] = 3
    meta_path.write_text(json.dumps(meta))
    _refused("metadata says 3 episodes, the data file holds 6")


def test_truncated_action_names(src: Path) -> None:
    meta_path = src / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["rgvlm_gym"]["action_names"] = meta["rgvlm_gym"]["action_names"][:5]
    meta_path.write_text(json.dumps(meta))
    _refused("another action vocabulary|'action_names' must name each of the")


def test_random_bytes_in_the_hdf5_file_never_escape_as_a_traceback(src: Path) -> None:
    path = src / "main_data.hdf5"
    original = path.read_bytes()
    rng = np.random.default_rng(0)
    # the superblock: nothing can be read
    path.write_bytes(original[:8] + rng.integers(0, 256, 512, dtype=np.uint8).tobytes() + original[520:])
    for args in (("dataset", "show", SRC), ("relabel", SRC, "--out", "test/rb-v0", "--cache", "none", "--no-progress")):
        r = _cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr and SRC in r.stderr and "corrupt" in r.stderr, r.stderr
    # anywhere else: either read correctly or refused with the dataset's name (never a raw traceback)
    for k in range(4):
        data = bytearray(original)
        at = int(rng.integers(1024, len(data) - 4096))
        data[at:at + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
        for args in (("dataset", "show", SRC), ("relabel", SRC, "--out", f"test/rb{k}-v0", "--cache", "none", "--no-progress",
                                                "--max-unlabeled", "100%")):
            r = _cli(*args)
            assert "Traceback" not in r.stderr and r.returncode in (0, 1), (at, r.stderr[-3000:])
            if r.returncode == 1:
                assert SRC in r.stderr, r.stderr

"""rgvlm_gym.rl.training: the recipe's defaults, threads honoured, a simulated-label note in train.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from rgvlm_gym.rl.threads import default_num_threads, set_num_threads
from rgvlm_gym.rl.training import SIM_LABELS_NOTE, TrainConfig, train


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rgvlm_gym.data import collect_dataset
    from rgvlm_gym.rewards import relabel

    path = tmp_path_factory.mktemp("training-minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        collect_dataset("test/train-src-v0", episodes=8, num_tasks=6, workers=1, seed=0, progress=False)
        relabel("test/train-src-v0", "test/train-sim-v0", "rgvlm", lvlm="sim", progress=False,
                cache=str(path / "labels.sqlite"))
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return path


def test_threads_are_honoured(datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(datasets))
    previous = torch.get_num_threads()
    try:
        record = train("test/train-src-v0", tmp_path / "a", TrainConfig(steps=3, threads=2), progress=False)
        assert record["threads"] == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("RGVLM_GYM_NUM_THREADS", "1")
        assert default_num_threads() == 1
        record = train("test/train-src-v0", tmp_path / "b", TrainConfig(steps=3), progress=False)
        assert record["threads"] == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("RGVLM_GYM_NUM_THREADS")
        assert 1 <= default_num_threads() <= (os.cpu_count() or 1)
        with pytest.raises(ValueError, match="positive integer"):
            set_num_threads(0)
    finally:
        torch.set_num_threads(previous)


def test_recipe_defaults_and_simulated_labels_are_said(datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(datasets))
    record = train("test/train-sim-v0", tmp_path, TrainConfig(steps=2, threads=1), progress=False)
    recipe = TrainConfig()
    assert record["batch_size"] == recipe.batch_size and record["action_masks"] is True
    assert record["labels_simulated"] is True and record["note"] == SIM_LABELS_NOTE
    assert json.loads((tmp_path / "train.json").read_text())["note"] == SIM_LABELS_NOTE
    plain = train("test/train-src-v0", tmp_path / "plain", TrainConfig(steps=2, threads=1), progress=False)
    assert plain["labels_simulated"] is False and "note" not in plain
    with pytest.raises(FileExistsError, match="--force"):
        train("test/train-sim-v0", tmp_path, TrainConfig(steps=2, threads=1), progress=False)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TrainConfig(steps=0)

"""Bad input is refused with a clear error, never a traceback nor a silent coercion (issue 13, item 8)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rgvlm_gym  # noqa: F401


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def _clean_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    for n in needles:
        assert n in r.stderr, (n, r.stderr[-3000:])


@pytest.mark.parametrize("kwargs, match", [
    ({"randomize_init": "no"}, "randomize_init` to be a bool"),
    ({"randomize_init": 1}, "randomize_init` to be a bool"),
    ({"num_tasks": 2.7}, "num_tasks` to be an int"),
    ({"num_tasks": "5"}, "num_tasks` to be an int"),
    ({"max_steps": 10.0}, "max_steps` to be an int"),
    ({"num_tasks": 100_000_000}, "num_tasks` to be in 1..100,000"),
])
def test_env_arguments_are_strictly_typed(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make("rgvlm_gym/AlfredLite-v0", **kwargs)


def test_env_accepts_numpy_integers_and_refuses_other_actions() -> None:
    env = gym.make("rgvlm_gym/AlfredLite-v0", num_tasks=np.int64(5), randomize_init=np.bool_(False))
    env.reset(seed=0)
    for good in (3, np.int64(3), np.int32(3), np.array(3)):
        env.unwrapped.step(good)
    for bad in (3.7, "5", True, np.float32(3), None):
        with pytest.raises(ValueError, match="action to be an int"):
            env.unwrapped.step(bad)


def test_memory_bounds_are_checked_up_front() -> None:
    _clean_error(_cli("collect", "--episodes", "1", "--max-steps", "10000000", "--policy", "random", "--dataset-id", "t/big-v0",
                      "--no-progress", "--no-embed"), "max_steps", "in memory")
    _clean_error(_cli("collect", "--episodes", "1", "--num-tasks", "100000000", "--dataset-id", "t/big-v0", "--no-progress",
                      "--no-embed"), "num_tasks", "100,000")


@pytest.fixture
def small_split(alfred_dir: Path, tmp_path: Path) -> Path:
    """Five real valid_seen trajectories plus three malformed ones, in a temporary json_2.1.0 folder."""
    root = tmp_path / "json_2.1.0"
    good = sorted((alfred_dir / "valid_seen").glob("*/*/traj_data.json"))[:5]
    for p in good:
        dst = root / "valid_seen" / p.parent.parent.name / p.parent.name
        dst.mkdir(parents=True)
        shutil.copy(p, dst / "traj_data.json")
    base = json.loads(good[0].read_text())
    bad = {
        "poses": {**base, "scene": {**base["scene"], "object_poses": 5}},
        "anns": {**base, "turk_annotations": {"anns": 7}},
        "nested": None,
    }
    for name, content in bad.items():
        d = root / "valid_seen" / f"bad-{name}" / "trial_0"
        d.mkdir(parents=True)
        text = "[" * 100_000 + "]" * 100_000 if content is None else json.dumps(content)
        (d / "traj_data.json").write_text(text)
    return root


def test_malformed_traj_data_is_reported_and_skipped(small_split: Path) -> None:
    from rgvlm_gym.alfred.traj import load_split

    report = load_split(small_split, "valid_seen")
    assert report.trajectories == 8
    malformed = {r: n for r, n in report.skipped.items() if r.startswith("malformed traj_data.json")}
    assert sum(malformed.values()) == 3, report.summary()  # each bad file reported, none aborts the split
    examples = " ".join(report.examples[r] for r in malformed)
    assert "bad-nested" in examples and ("bad-poses" in examples or "bad-anns" in examples), report.summary()
    assert report.tasks  # the good ones load
    env = gym.make("rgvlm_gym/AlfredLite-v0", tasks="alfred", alfred_dir=str(small_split), split="valid_seen")
    assert env.unwrapped.num_tasks == len(report.tasks)


def test_hf_model_that_does_not_exist() -> None:
    from rgvlm_gym.data import collect_dataset

    collect_dataset("x/y-v0", episodes=1, workers=1, max_steps=5, progress=False)
    _clean_error(_cli("relabel", "x/y-v0", "--out", "x/z-v0", "--lvlm", "hf:/nonexistent", "--cache", "none"), "does not exist")
    from rgvlm_gym.errors import UsageError
    from rgvlm_gym.lvlm import make_lvlm

    with pytest.raises(UsageError, match="does not exist"):
        make_lvlm("hf:/nonexistent")
    # an unknown hub id with downloads off: at once, not minutes of retries
    with pytest.raises(UsageError, match="not in the local Hugging Face cache"):
        make_lvlm({"type": "hf", "params": {"model": "no-such-org/no-such-model-13", "local_files_only": True}})


def test_train_on_a_missing_device_and_evaluate_a_non_model(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        _clean_error(_cli("train", "x/y-v0", "--algo", "bc", "--steps", "1", "--out", str(tmp_path / "run"), "--device", "cuda:0"),
                     "CUDA is not available")
    _clean_error(_cli("train", "x/y-v0", "--algo", "bc", "--steps", "1", "--out", str(tmp_path / "run"), "--device", "gpu7"),
                 "--device")
    junk = tmp_path / "model.d3"
    junk.write_bytes(b"this is not a model\n" * 10)
    _clean_error(_cli("evaluate", str(junk), "--episodes", "1", "--seeds", "0"), "is not a model")


def test_a_library_bug_keeps_its_traceback(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A ValueError from inside numpy (not a check of the user's input) is a bug: the CLI does not hide it."""
    from rgvlm_gym import cli
    from rgvlm_gym.commands import dataset

    def broken(args):  # numpy raises, as a bug in our code would make it
        return int(np.zeros(3) + np.zeros(4))

    monkeypatch.setattr(dataset, "run", broken)
    with pytest.raises(ValueError, match="broadcast"):
        cli.main(["dataset", "show", "x/y-v0"])

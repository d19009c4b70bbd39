"""``rgvlm collect``: reproducible from its seed whatever the worker count, atomic under kill, ALFRED suites."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import minari
import numpy as np
import pytest

from rgvlm_gym.cli import main
from rgvlm_gym.data import dataset_info, iter_episodes
from rgvlm_gym.data.collect import collect_dataset, summarize


def _content(ds) -> list[tuple]:
    return [(r.policy, r.task["task_id"], r.instruction, r.actions.tolist(), r.images.tobytes(), r.frames.tobytes(), r.seed)
            for r in iter_episodes(ds)]


def test_same_seed_same_dataset_whatever_the_workers() -> None:
    a = collect_dataset("test/a-v0", episodes=12, num_tasks=20, workers=1, seed=11, progress=False)
    b = collect_dataset("test/b-v0", episodes=12, num_tasks=20, workers=2, seed=11, progress=False)
    c = collect_dataset("test/c-v0", episodes=12, num_tasks=20, workers=2, seed=12, progress=False)
    assert _content(a) == _content(b)
    assert _content(a) != _content(c)
    info = dataset_info(b)
    assert info["seed"] == 11 and info["workers"] == 2 and info["policy"] == "mixed"
    assert info["task_suite"]["tasks"] == "procedural" and info["task_suite"]["num_tasks"] == 20
    assert abs(sum(info["policy_mix"].values()) - 1) < 1e-9


def test_session_dataset_summary(proc_dataset) -> None:
    s = summarize(proc_dataset)
    assert s["all"]["episodes"] == 24
    assert s.get("expert", {"success": 1.0})["success"] == 1.0
    kinds = {r.policy for r in iter_episodes(proc_dataset, frames=False)}
    assert len(kinds) >= 3


def test_cli_collect_reports_success_per_policy(capsys) -> None:
    rc = main(["collect", "--episodes", "10", "--num-tasks", "20", "--dataset-id", "test/cli-v0", "--no-progress", "--policy", "mixed"])  # embeds too
    assert rc == 0
    out = capsys.readouterr().out
    assert "wrote test/cli-v0: 10 episodes" in out and "success" in out and "\nall " in out
    assert "cached the MiniLM embeddings of the instructions" in out
    rc = main(["collect", "--episodes", "3", "--num-tasks", "20", "--dataset-id", "test/cli-v0", "--no-progress", "--no-embed"])
    assert rc == 1 and "already exists" in capsys.readouterr().err
    rc = main(["collect", "--episodes", "3", "--num-tasks", "20", "--dataset-id", "test/cli-v0", "--no-progress", "--force", "--policy", "expert", "--no-embed"])
    assert rc == 0 and minari.load_dataset("test/cli-v0").total_episodes == 3
    rc = main(["dataset", "show", "test/cli-v0"])
    assert rc == 0 and '"policy": "expert"' in capsys.readouterr().out
    rc = main(["dataset", "show", "test/cli-v1"])
    assert rc == 1 and "did you mean 'test/cli-v0'" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_mid_collection_leaves_no_dataset(sig: signal.Signals) -> None:
    root = Path(os.environ["MINARI_DATASETS_PATH"])
    cmd = [sys.executable, "-m", "rgvlm_gym.cli", "collect", "--episodes", "5000", "--num-tasks", "50",
           "--dataset-id", "test/killed-v0", "--no-progress", "--workers", "2", "--no-embed"]
    proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp = root / ".rgvlm-tmp"
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until episodes are being written
        files = list(tmp.glob("*/data/main_data.hdf5")) if tmp.exists() else []
        if files and files[0].stat().st_size > 200_000:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("collection did not start writing within 60 s")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not (root / "test" / "killed-v0").exists()
    assert "test/killed-v0" not in minari.list_local_datasets()
    if sig == signal.SIGINT:
        assert "interrupted" in err
        assert not list(tmp.iterdir())  # cleaned up on Ctrl-C
    # a later collection under the id works (and sweeps the dead process's temporary folder)
    ds = collect_dataset("test/killed-v0", episodes=2, num_tasks=50, workers=1, progress=False)
    assert ds.total_episodes == 2 and not list(tmp.iterdir())


def test_alfred_suite_with_prefix_tasks(alfred_dir) -> None:
    ds = collect_dataset("test/alfred-v0", episodes=10, tasks="alfred", alfred_dir=str(alfred_dir), split="valid_seen",
                         subtasks="1-6", randomize_init=True, workers=2, seed=0, progress=False)
    env = ds.recover_environment()
    assert env.unwrapped.task_source == "alfred" and env.unwrapped.randomize_init
    recs = list(iter_episodes(ds))
    assert all(r.task["task_id"].startswith("trial_T") and 1 <= r.n_subtasks <= 6 for r in recs)
    assert all(r.frames.shape[1] == 224 and np.array_equal(r.frames.shape[0], len(r) + 1) for r in recs)
    info = dataset_info(ds)
    assert info["task_suite"] == {"tasks": "alfred", "split": "valid_seen", "subtasks": "1-6", "randomize_init": True,
                                  "num_tasks": env.unwrapped.num_tasks}

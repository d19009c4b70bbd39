"""``rgvlm collect`` -> ``rgvlm train`` -> ``rgvlm evaluate`` end to end, as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def rgvlm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", *args], capture_output=True, text=True, env=env, timeout=600)


FOREIGN_NOISE = ("Gym has been unmaintained", "\x1b[", "Parameters", "Building model", "dataset info")


def assert_quiet(r: subprocess.CompletedProcess[str]) -> None:
    """No foreign banner, d3rlpy parameter dump / debug line or ANSI code in piped output."""
    for text in (r.stdout, r.stderr):
        for noise in FOREIGN_NOISE:
            assert noise not in text, (noise, text[-2000:])


def test_collect_train_evaluate(tmp_path: Path) -> None:
    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / "minari"), OMP_NUM_THREADS="1")
    r = rgvlm("collect", "--tasks", "procedural", "--num-tasks", "10", "--subtasks", "1-2", "--episodes", "20",
              "--policy", "mixed", "--dataset-id", "test/cli-v0", "--workers", "1", env=env)
    assert r.returncode == 0, r.stderr
    assert_quiet(r)
    out = tmp_path / "run"
    r = rgvlm("train", "test/cli-v0", "--algo", "iql", "--steps", "20", "--batch-size", "16", "--steps-per-epoch", "10",
              "--threads", "1", "--eval-every", "10", "--eval-episodes", "1", "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert_quiet(r)
    assert (out / "model.d3").is_file() and oct((out / "model.d3").stat().st_mode & 0o777) != oct(0o600)
    assert not list((out / "logs").rglob("*.d3"))  # one saved model, not a second copy per epoch
    record = json.loads((out / "train.json").read_text())
    assert record["algo_type"] == "discrete_iql" and record["dataset_id"] == "test/cli-v0"
    assert record["env_kwargs"]["num_tasks"] == 10
    assert record["threads"] == 1 and record["action_masks"] and record["observation"][-1] == "action_mask"
    assert [row["step"] for row in record["learning_curve"]] == [10, 20]
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert (out / "learning_curve.csv").read_text().startswith("step,train_s,completion")
    # no CUDA here: a clear error, not an AssertionError from torch
    r = rgvlm("train", "test/cli-v0", "--steps", "5", "--device", "cuda:0", "--out", str(tmp_path / "cuda"), env=env)
    assert r.returncode == 1 and "CUDA is not available" in r.stderr
    # an existing model is not overwritten without --force
    r = rgvlm("train", "test/cli-v0", "--steps", "5", "--out", str(out), env=env)
    assert r.returncode == 1 and "--force" in r.stderr

    r = rgvlm("evaluate", str(out / "model.d3"), "--episodes", "2", "--seeds", "0", "--subtasks", "1-2", "--randomize-init",
              "--threads", "1", env=env)
    assert r.returncode == 0, r.stderr
    assert_quiet(r)
    assert "action masking on" in r.stdout
    lines = r.stdout.splitlines()
    # the per-sub-task table: one row per (initial state, k), then the total
    assert any(line.startswith("dataset     1") for line in lines), r.stdout
    assert any(line.startswith("randomized  2") for line in lines), r.stdout
    report = json.loads((out / "evaluation" / "evaluation.json").read_text())
    assert len(report["episodes"]) == 2 * 2 * 2  # episodes x k values x initial-state kinds
    assert set(report["by_subtasks"]) == {"k=1, dataset", "k=2, dataset", "k=1, randomized", "k=2, randomized"}
    assert report["meta"]["action_mask"] is True and report["meta"]["threads"] == 1
    assert report["meta"]["train"]["dataset_id"] == "test/cli-v0"
    assert sum(e["invalid_actions"] for e in report["episodes"]) == 0  # masked: admissible actions only
    assert (out / "evaluation" / "episodes.csv").read_text().count("\n") == 1 + 8

    r = rgvlm("evaluate", str(out / "model.d3"), "--episodes", "2", "--seeds", "0", "--subtasks", "1", "--no-action-mask",
              "--out", str(tmp_path / "unmasked"), env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "unmasked" / "evaluation.json").read_text())["meta"]["action_mask"] is False


def test_evaluate_reports_a_missing_model(tmp_path: Path) -> None:
    r = rgvlm("evaluate", str(tmp_path / "nope.d3"), env=dict(os.environ))
    assert r.returncode == 1 and "no model file" in r.stderr

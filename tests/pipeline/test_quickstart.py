"""``rgvlm quickstart`` runs the whole pipeline (tiny settings) over seeds and reports intervals; a stored
dataset made with other options is refused (never silently reused), and ``--force`` re-collects it."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def test_quickstart_tiny_seeds_intervals_and_stale_dataset_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGVLM_GYM_CACHE_DIR", str(tmp_path / "cache"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = ["--out", str(tmp_path / "qs"), "--episodes", "16", "--num-tasks", "14", "--subtasks", "1-2", "--steps", "4",
            "--batch-size", "16", "--eval-episodes", "1", "--seeds", "0,1", "--threads", "2"]
    cmd = [sys.executable, "-m", "rgvlm_gym.cli", "quickstart"]
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "SIMULATED LVLM" in r.stdout  # a sim figure never passes for an LVLM result
    assert "LVLM calls:" in r.stdout
    assert "What this shows:" in r.stdout and "What it does not show:" in r.stdout
    result = json.loads((tmp_path / "qs" / "comparison.json").read_text())
    assert result["simulated"] is True and result["seeds"] == [0, 1]
    assert set(result["completion"]) == {"IQL, sparse", "IQL, sparse+rgvlm"}
    cells = result["completion"]["IQL, sparse"]
    assert set(cells) == {f"{i} k={k}" for i in ("dataset", "randomized") for k in ("1", "2", "all")}
    for cell in cells.values():
        lo, hi = cell["ci95"]
        assert cell["n"] == 2 and lo <= cell["mean"] + 1e-9 <= hi + 2e-9 or math.isnan(lo)
    with Image.open(tmp_path / "qs" / "comparison.png") as im:
        assert im.size[0] >= 400 and im.size[1] >= 300

    # other options, same namespace: the stored 16-episode dataset is refused, not reused
    stale = [*args]
    stale[stale.index("--episodes") + 1] = "20"
    r = subprocess.run([*cmd, *stale], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 1
    assert "'quickstart/source-v0' was collected with other parameters (episodes: stored 16, config 20)" in r.stderr
    assert "--force" in r.stderr and "Traceback" not in r.stderr

    from rgvlm_gym.benchmark.config import BenchmarkConfig
    from rgvlm_gym.benchmark.runner import plan
    from rgvlm_gym.commands import quickstart
    from rgvlm_gym.data import dataset_info

    assert dataset_info("quickstart/source-v0")["episodes"] == 16  # untouched
    p = argparse.ArgumentParser()
    quickstart.add_arguments(p)
    cfg = BenchmarkConfig.from_dict(quickstart.build_config(p.parse_args(stale)))
    jobs, _ = plan(cfg, tmp_path / "qs", jobs=2, force=True)  # --force: re-collect, then redo what depends on it
    by = {j.key: j for j in jobs}
    assert "--force" in by["collect"].cmd and not by["collect"].done
    assert "--force" in by["relabel-rgvlm-lam1"].cmd
    assert not any(j.done for j in jobs)

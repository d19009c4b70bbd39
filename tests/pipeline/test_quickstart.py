"""``rgvlm quickstart`` runs the whole pipeline (tiny settings) and writes its comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def test_quickstart_tiny(tmp_path: Path) -> None:
    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / "minari"), OMP_NUM_THREADS="1")
    args = ["--out", str(tmp_path / "qs"), "--episodes", "16", "--num-tasks", "14", "--subtasks", "1-2", "--steps", "10",
            "--eval-episodes", "1"]
    r = subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", "quickstart", *args], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SIMULATED LVLM" in r.stdout  # a sim figure never passes for an LVLM result
    assert "LVLM calls:" in r.stdout
    result = json.loads((tmp_path / "qs" / "comparison.json").read_text())
    assert result["simulated"] is True
    assert set(result["success"]) == {"IQL, sparse reward", "IQL, sparse + 1 x RG-VLM", "random policy"}
    assert set(result["success"]["random policy"]) == {"dataset k=1", "dataset k=2", "randomized k=1", "randomized k=2"}
    with Image.open(tmp_path / "qs" / "comparison.png") as im:
        assert im.size[0] >= 400 and im.size[1] >= 300
    # a second run reuses both datasets: no collection, no relabeling
    r = subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", "quickstart", *args], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("exists: reused") == 2

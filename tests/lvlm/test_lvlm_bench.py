"""A tiny run of benchmarks/bench_lvlm.py (scripts must keep running)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_lvlm_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "bench_lvlm.py"),
        "--latency", "0.05", "--concurrency", "8", "--n-requests", "32", "--overhead-requests", "3",
        "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["throughput/limit_req_per_s"] == 160
    assert metrics["throughput/fraction_of_limit"] > 0.5
    assert metrics["overhead/smooth_png_ms_per_image_median"] > 0

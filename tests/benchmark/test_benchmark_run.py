"""``rgvlm benchmark`` end to end on a tiny config: real collection, relabeling (simulated LVLM), d3rlpy
training and evaluation in sub-processes; killed with SIGKILL mid-sweep, it resumes without redoing
finished runs; ``rgvlm compare`` draws the same picture from the evaluation folders."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow

TINY = """
name = "tiny"
description = "tiny end-to-end check"
lvlm = "sim"

[dataset]
episodes = 12
num_tasks = 12
subtasks = "1-2"

[train]
algos = ["iql"]
rewards = ["sparse", "sparse+rgvlm"]
seeds = [0, 1]
steps = {steps}
batch_size = 16

[evaluate]
subtasks = "1-2"
episodes = 2
seeds = [0]
randomize_init = true
"""


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rgvlm_gym.cli", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


def test_tiny_benchmark_killed_resumes_and_compares(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(steps=4))
    out = tmp_path / "out"
    runs = out / "runs"

    # 1. start the sweep, SIGKILL it as soon as the first run has trained
    proc = subprocess.Popen(_cmd("benchmark", str(config), "--out", str(out), "--jobs", "2"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900
    while not list(runs.glob("*/train.done")):
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
        assert time.monotonic() < deadline, "no run finished training"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    finished = {p: p.read_bytes() for p in runs.glob("*/*.done")}
    assert len(list(runs.glob("*/eval.done"))) < 4, "the sweep ended before it could be killed"
    # its children die with it (no orphan keeps writing into the run folders)
    for _ in range(300):
        if not _processes_mentioning(str(out)):
            break
        time.sleep(0.1)
    assert not _processes_mentioning(str(out))

    # 2. run again: it continues; runs finished before the kill are not redone
    r = subprocess.run(_cmd("benchmark", str(config), "--out", str(out), "--jobs", "2"), env=_env(),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    already = int(r.stdout.split(" already done")[0].rsplit(" ", 1)[-1])
    assert already >= 2 + len(finished)  # collect, relabel and every marker written before the kill
    for marker, content in finished.items():
        assert marker.read_bytes() == content, f"{marker.parent.name} was redone"
        key = ("train-" if marker.name == "train.done" else "eval-") + marker.parent.name
        assert f"] {key}\n" not in r.stdout, f"{key} ran again"
    assert len(list(runs.glob("*/eval.done"))) == 4
    assert "simulated LVLM" in r.stdout

    # 3. results: per-seed rows, intervals, pictures
    with (out / "results" / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {row["seed"] for row in rows} == {"0", "1"}
    assert {row["reward"] for row in rows} == {"sparse", "sparse+rgvlm"}
    assert {(row["init"], row["k"]) for row in rows} == {(i, k) for i in ("dataset", "randomized") for k in ("1", "2", "all")}
    summary = json.loads((out / "results" / "summary.json").read_text())
    assert summary["simulated"] is True
    assert all(s["n"] == 2 and "completion_lo" in s and "success_hi" in s for s in summary["summary"])
    for name in ("completion.png", "success.png", "learning_curves.png"):
        with Image.open(out / "results" / name) as im:
            assert im.size[0] > 300
    assert "simulated" in (out / "results" / "table.md").read_text()

    # 4. a third run has nothing to do; a changed config into the same folder is refused
    r = subprocess.run(_cmd("benchmark", str(config), "--out", str(out), "--dry-run"), env=_env(), capture_output=True, text=True)
    assert "10 jobs, 10 already done" in r.stdout, r.stdout
    config.write_text(TINY.format(steps=5))
    r = subprocess.run(_cmd("benchmark", str(config), "--out", str(out)), env=_env(), capture_output=True, text=True)
    assert r.returncode == 1 and "another command line" in r.stderr and "Traceback" not in r.stderr

    # 5. rgvlm compare on the evaluation folders: same seeds pooled per method
    png = tmp_path / "cmp.png"
    r = subprocess.run(_cmd("compare", *map(str, sorted(runs.glob("*/eval"))), "--out", str(png), "--simulated"),
                       env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    with png.with_suffix(".csv").open() as f:
        cmp_rows = list(csv.DictReader(f))
    assert {row["reward"] for row in cmp_rows} == {"iql: sparse", "iql: sparse+rgvlm"}
    assert {row["n"] for row in cmp_rows} == {"2"}
    with Image.open(png) as im:
        assert im.size[0] > 300

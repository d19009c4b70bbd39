"""A relabel job killed with SIGKILL resumes: every episode labeled exactly once, no finished LVLM call asked
again; a further re-run makes zero calls. Labels from the simulated LVLM (with latency, so the job is
killed in the middle of its calls)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rgvlm_gym.data import collect_dataset, iter_episodes

SRC, OUT = "test/kill-src-v0", "test/kill-out-v0"
SPEC = "sim:noise=1,latency=0.2,seed=4"


def _responses(cache: Path) -> int:
    if not cache.exists():
        return 0
    try:
        with sqlite3.connect(f"{cache.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _relabel_cmd(cache: Path) -> list[str]:
    return [sys.executable, "-m", "rgvlm_gym.cli", "relabel", SRC, "--labeler", "rgvlm", "--lvlm", SPEC, "--out", OUT,
            "--concurrency", "2", "--cache", str(cache), "--no-progress"]


def _calls(stdout: str) -> int:
    m = re.search(r"^LVLM calls: (\d+)", stdout, re.M)
    assert m, stdout
    return int(m.group(1))


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    # 20 episodes of distinct tasks (a large suite), so no two episodes share a cache key
    collect_dataset(SRC, episodes=20, workers=2, seed=11, max_steps=20, progress=False)
    cache = tmp_path / "labels.sqlite"

    job = subprocess.Popen(_relabel_cmd(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _responses(cache) < 12 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.poll() is None, f"the job ended before it could be killed: {job.communicate()}"
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    done_before = _responses(cache)
    assert done_before >= 12
    root = Path(os.environ["MINARI_DATASETS_PATH"])
    assert not (root / OUT).exists()  # nothing half-written under the id
    # the orphaned writer process notices its parent died and removes its temporary folder
    deadline = time.monotonic() + 20
    while any((root / ".rgvlm-tmp").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any((root / ".rgvlm-tmp").glob("*"))

    resumed = subprocess.run(_relabel_cmd(cache), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    calls = _calls(resumed.stdout)
    done_after = _responses(cache)
    # every call of the re-run stored a response the cache did not have: no finished call was asked again
    assert calls == done_after - done_before and calls > 0
    # completeness: every episode once, in order, labeled; the cache holds exactly the calls the job needs
    src = list(iter_episodes(SRC, frames=False, images=False))
    out = list(iter_episodes(OUT, frames=False, images=False))
    assert len(out) == len(src) == 20
    needed = 0
    for a, b in zip(src, out, strict=True):
        assert (a.actions == b.actions).all() and a.instruction == b.instruction
        assert b.extra["label_status"] == "ok" and not np.isnan(b.extra["lvlm_labels"]).any()
        needed += 2 * len(b.extra["label"]["meta"]["dense_meta"]["parts"])
    assert done_after == needed

    third = subprocess.run([*_relabel_cmd(cache), "--force"], capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert _calls(third.stdout) == 0

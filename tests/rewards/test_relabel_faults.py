"""Fault injection on the relabel / collect pipeline (issue 13), each with real processes, real signals, real
Minari datasets on disk, a real tmpfs for a full disk and a real localhost HTTP server for endpoint faults.
Labels come from the simulated LVLM where an LVLM is not the point."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rgvlm_gym.data import collect_dataset, iter_episodes
from rgvlm_gym.errors import DatasetBusyError, DiskFullError, LabelingError, UsageError
from rgvlm_gym.rewards import relabel

SRC = "test/faults-src-v0"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rgvlm_gym.cli", *args]


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(p.relative_to(path).as_posix().encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _responses(cache: Path) -> int:
    try:
        with sqlite3.connect(f"{cache.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def _wait(cond, limit: float = 60.0) -> bool:
    """Liveness, not speed: a generous deadline so a hang fails the test instead of blocking the suite."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture
def src(tmp_path: Path) -> Iterator[str]:
    collect_dataset(SRC, episodes=8, workers=1, seed=5, max_steps=12, progress=False)
    yield SRC


# -- 1. two jobs, one id ------------------------------------------------------------------------------------
def test_two_relabels_to_one_id_one_fails(src: str, tmp_path: Path) -> None:
    root = Path(os.environ["MINARI_DATASETS_PATH"])
    jobs = [
        subprocess.Popen(_cli("relabel", src, "--out", "test/race-v0", "--lvlm", "sim:latency=0.3", "--lam", lam,
                              "--cache", str(tmp_path / f"c{lam}.sqlite"), "--no-progress"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for lam in ("0.5", "1.0")
    ]
    results = [(j.wait(timeout=300), *j.communicate()) for j in jobs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "being written by another process" in loser[2] or "already exists" in loser[2], loser
    assert "Traceback" not in loser[2]
    winner_lam = "0.5" if results[0][0] == 0 else "1.0"
    out = list(iter_episodes("test/race-v0", frames=False, images=False))
    from rgvlm_gym.data import dataset_info

    assert dataset_info("test/race-v0")["relabel"]["parameters"]["lam"] == float(winner_lam) and len(out) == 8
    assert not any((root / ".rgvlm-tmp").glob("*-*[!k]"))  # no temporary folder left (lock files end in k)


def test_two_collects_to_one_id_one_fails() -> None:
    args = ["collect", "--episodes", "40", "--policy", "random", "--dataset-id", "test/race-c-v0", "--workers", "1",
            "--max-steps", "20", "--no-progress", "--no-embed"]
    jobs = [subprocess.Popen(_cli(*args, "--seed", str(s)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for s in (1, 2)]
    results = [(j.wait(timeout=300), *j.communicate()) for j in jobs]
    assert sorted(r[0] for r in results) == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "being written by another process" in loser[2] or "already exists" in loser[2]


def test_claim_is_exclusive_across_processes_and_dies_with_its_holder() -> None:
    from rgvlm_gym.data import claim_dataset

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rgvlm_gym.data import claim_dataset\n"
                               "with claim_dataset('test/held-v0'):\n    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DatasetBusyError, match=f"pid {holder.pid}"), claim_dataset("test/held-v0"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with claim_dataset("test/held-v0"):  # the kernel dropped the dead holder's lock
        pass


# -- 2. ids inside another dataset -----------------------------------------------------------------------------
def test_ids_inside_another_dataset_are_refused(src: str, tmp_path: Path) -> None:
    root = Path(os.environ["MINARI_DATASETS_PATH"])
    before = _tree_digest(root / src)
    with pytest.raises(UsageError, match="inside the folder of dataset 'test/faults-src-v0'"):
        relabel(src, f"{src}/data/x-v0", "rgvlm", lvlm="sim", cache=False, progress=False)
    r = subprocess.run(_cli("relabel", src, "--out", f"{src}/data/x-v0", "--cache", "none", "--no-progress"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "inside the folder of dataset" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(_cli("collect", "--episodes", "2", "--dataset-id", f"{src}/data/c-v0", "--workers", "1",
                            "--no-progress", "--no-embed"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "inside the folder of dataset" in r.stderr
    assert _tree_digest(root / src) == before  # the source tree did not change

    # a dataset whose folder holds another one is never replaced, not even with --force
    collect_dataset("test/outer-v0/inner/y-v0", episodes=1, workers=1, max_steps=5, progress=False)
    for force in (False, True):
        r = subprocess.run(_cli("collect", "--episodes", "1", "--dataset-id", "test/outer-v0", "--workers", "1",
                                "--no-progress", "--no-embed", *(["--force"] if force else [])),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and ("holds other datasets" in r.stderr or "already exists" in r.stderr), r.stderr
    assert len(list(iter_episodes("test/outer-v0/inner/y-v0", frames=False, images=False))) == 1


# -- 3. full disk ------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real 48 MB tmpfs as MINARI_DATASETS_PATH (needs root; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave_mb: float) -> None:
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "ballast", "wb") as f:
        f.write(b"\0" * max(0, free - int(leave_mb * 1e6)))


@pytest.mark.parametrize("leave_mb", [2, 6.6])  # nothing fits; a few episodes fit, then the disk is full
def test_full_disk_relabel_and_collect_fail_cleanly(small_disk: Path, tmp_path: Path, leave_mb: float) -> None:
    # random episodes run to the step limit: 13 frames each, ~2.1 MB uncompressed, ~0.2 MB on disk
    collect_dataset(SRC, episodes=12, workers=1, seed=5, max_steps=12, policy="random", progress=False)
    _fill(small_disk, leave_mb)
    r = subprocess.run(_cli("relabel", SRC, "--out", "test/full-v0", "--cache", str(tmp_path / "c.sqlite"),
                            "--no-progress"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "not enough free space" in r.stderr and "Traceback" not in r.stderr and "Fatal" not in r.stderr
    assert not (small_disk / "test" / "full-v0").exists()
    assert [p.name for p in (small_disk / ".rgvlm-tmp").iterdir()] == []  # temporary folder removed
    r = subprocess.run(_cli("collect", "--episodes", "30", "--dataset-id", "test/full-c-v0", "--workers", "2",
                            "--no-progress", "--no-embed"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "not enough free space" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (small_disk / "test" / "full-c-v0").exists()
    assert [p.name for p in (small_disk / ".rgvlm-tmp").iterdir()] == []
    # in-process: the typed error
    with pytest.raises(DiskFullError, match="not enough free space"):
        collect_dataset("test/full-p-v0", episodes=30, workers=1, max_steps=12, progress=False)


# -- 4. killed parent, killed writer -----------------------------------------------------------------------------
def _start_relabel(src: str, cache: Path, out: str = "test/killed-v0") -> subprocess.Popen:
    return subprocess.Popen(_cli("relabel", src, "--out", out, "--lvlm", "sim:latency=0.3", "--concurrency", "2",
                                 "--cache", str(cache), "--no-progress"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_relabel_takes_its_writer_with_it(src: str, tmp_path: Path, sig: signal.Signals) -> None:
    root = Path(os.environ["MINARI_DATASETS_PATH"])
    cache = tmp_path / "c.sqlite"
    job = _start_relabel(src, cache)
    assert _wait(lambda: _responses(cache) >= 4 or job.poll() is not None, 120)
    assert job.poll() is None, job.communicate()
    writers = _children(job.pid)
    assert writers, "the writer process was not found"
    os.kill(job.pid, sig)
    job.wait(timeout=60)
    job.communicate()
    assert _wait(lambda: not any(_alive(p) for p in writers)), "the writer outlived its parent"
    assert _wait(lambda: not any(p.is_dir() for p in (root / ".rgvlm-tmp").glob("*"))), list((root / ".rgvlm-tmp").rglob("*"))
    assert not (root / "test" / "killed-v0").exists()


def test_killed_writer_is_a_clear_error_not_a_hang(src: str, tmp_path: Path) -> None:
    root = Path(os.environ["MINARI_DATASETS_PATH"])
    cache = tmp_path / "c.sqlite"
    job = _start_relabel(src, cache)
    assert _wait(lambda: _responses(cache) >= 4 or job.poll() is not None, 120)
    assert job.poll() is None, job.communicate()
    for pid in _children(job.pid):
        os.kill(pid, signal.SIGKILL)
    try:
        out, err = job.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        job.kill()
        pytest.fail("the relabel process hung after its writer was killed")
    assert job.returncode == 1, err
    assert "writer process" in err and "SIGKILL" in err and "Traceback" not in err and "EOFError" not in err
    assert not (root / "test" / "killed-v0").exists()
    assert not any(p.is_dir() for p in (root / ".rgvlm-tmp").glob("*"))
    # the finished labels were kept: a re-run completes
    r = subprocess.run(_cli("relabel", src, "--out", "test/killed-v0", "--lvlm", "sim:latency=0.3", "--cache", str(cache),
                            "--no-progress"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


# -- 5. a job that labels nothing -------------------------------------------------------------------------------
@pytest.fixture
def fault_server(monkeypatch: pytest.MonkeyPatch):
    from _rewards_helpers import lvlm_servers

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    server = lvlm_servers().FaultServer()
    yield server
    server.close()


def _openai(base_url: str) -> dict:
    return {"type": "openai", "params": {"model": "gpt-4o", "base_url": base_url, "max_retries": 0, "timeout_s": 10}}


@pytest.mark.parametrize("fault", ["500", "401", "429", "reset", "no server"])
def test_dead_endpoint_fails_the_job_and_publishes_nothing(src: str, fault_server, fault: str) -> None:
    from _rewards_helpers import lvlm_servers

    script = {"500": [("status", 500, {}, {"error": {"message": "boom"}})],
              "401": [("status", 401, {}, {"error": {"message": "bad key"}})],
              "429": [("status", 429, {"retry-after": "0"}, {"error": {"message": "slow down"}})],
              "reset": [("drop",)], "no server": None}[fault]
    if script is None:
        url = f"http://127.0.0.1:{lvlm_servers().free_port()}/v1"
    else:
        fault_server.set_script(script)
        url = fault_server.base_url
    with pytest.raises(LabelingError) as err:
        relabel(src, "test/dead-v0", "rgvlm", lvlm=_openai(url), cache=False, progress=False, concurrency=2)
    msg = str(err.value)
    port = url.split(":")[2].split("/")[0]
    assert "was not written" in msg and port in msg, msg  # the URL's digits survive
    assert err.value.summary is not None and err.value.summary.labeled == 0
    assert not (Path(os.environ["MINARI_DATASETS_PATH"]) / "test" / "dead-v0").exists()


def test_max_unlabeled_threshold_and_cli_exit_code(src: str, fault_server, tmp_path: Path) -> None:
    fault_server.set_script([("status", 401, {}, {"error": {"message": "bad key"}})])
    r = subprocess.run(_cli("relabel", src, "--out", "test/dead-cli-v0", "--lvlm", f"openai:gpt-4o@{fault_server.base_url}",
                            "--cache", "none", "--no-progress"),
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OPENAI_API_KEY": "sk-test"})
    assert r.returncode == 1 and "--max-unlabeled" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "401" in r.stderr and str(fault_server.port) in r.stderr  # digits kept
    assert not (Path(os.environ["MINARI_DATASETS_PATH"]) / "test" / "dead-cli-v0").exists()
    # a threshold that allows every failure publishes the (unlabeled) dataset, as before
    s = relabel(src, "test/dead-ok-v0", "rgvlm", lvlm=_openai(fault_server.base_url), cache=False, progress=False,
                max_unlabeled="100%")
    assert s.labeled == 0 and s.episodes == 8
    long_reason = next(iter(s.unlabeled))
    assert str(fault_server.port) in long_reason and "N" * 3 not in long_reason
    with pytest.raises(UsageError, match="max_unlabeled"):
        relabel(src, "test/x-v0", "sparse", max_unlabeled="lots", progress=False)
    with pytest.raises(UsageError, match="max_unlabeled"):
        relabel(src, "test/x-v0", "sparse", max_unlabeled=1.5, progress=False)

"""Fault matrix for collect / relabel (issue 13): try to break the pipeline and count what breaks.

Reads top to bottom. Every try uses real processes, real signals, real Minari datasets on disk, a real
tmpfs for a full disk (when this runs as root and ``mount -t tmpfs`` works; skipped otherwise) and a real
localhost HTTP server for endpoint faults. Labels come from the simulated LVLM (sim) -- the figures count
faults handled, not label quality.

1. kill points x signals: ``rgvlm relabel`` is sent SIGKILL / SIGTERM / SIGINT (the parent) or SIGKILL /
   SIGTERM (its writer child) after a number of finished LVLM calls; then it is re-run to completion.
   A try fails if a process outlives its parent, a temporary folder or a partial dataset is left, the
   exit is not clean, or the resumed dataset is incomplete. **labels lost**: episode labels finished
   before the kill and not served from the cache by the re-run; **calls repeated**: calls of the re-run
   whose answers the cache already held. ``rgvlm collect`` is killed the same way (no labels there).
2. two jobs writing one id at once: exactly one may succeed.
3. full disk (tmpfs with a few MB left): relabel and collect must exit 1 with a clear message, publish
   nothing and leave no temporary folder.
4. corrupt sources: each damage must be refused by ``rgvlm relabel`` with exit 1, no traceback.
5. server faults (500, 401, 429, reset, no server, hang past the timeout): the job must fail
   (``--max-unlabeled``), publish nothing and keep the URL's digits in the error.

Run: ``python benchmarks/fault_matrix.py [--repeats 1] [--json-out faults.json]`` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Args:
    repeats: int = 1
    """how many times each kill point x signal is tried"""
    episodes: int = 10
    """episodes of the relabel source"""
    kill_after: str = "3,10"
    """kill points: finished LVLM calls before the signal"""
    latency: float = 0.15
    """simulated LVLM latency (s), so a job is killed in the middle of its calls"""
    json_out: str = ""
    """optional path for the figures as JSON"""


def parse() -> Args:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in asdict(Args()).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return Args(**vars(p.parse_args()))


@dataclass
class Row:
    category: str
    tries: int = 0
    failures: int = 0
    labels_lost: int = 0
    calls_repeated: int = 0
    notes: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failures += 1
        self.notes.append(why)


# -- helpers ---------------------------------------------------------------------------------------------------
def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rgvlm_gym.cli", *args]


def run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


def count(cache: Path, table: str) -> int:
    try:
        with sqlite3.connect(f"{cache.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(cond, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def leftovers(root: Path) -> list[str]:
    tmp = root / ".rgvlm-tmp"
    return [p.name for p in tmp.iterdir() if p.is_dir()] if tmp.is_dir() else []


def summary_int(stdout: str, pattern: str) -> int:
    m = re.search(pattern, stdout, re.M)
    return int(m.group(1)) if m else -1


# -- 1. kill points x signals -----------------------------------------------------------------------------------
def kill_matrix(a: Args, env: dict[str, str], root: Path, work: Path, src: str, rows: dict[str, Row]) -> None:
    points = [int(x) for x in a.kill_after.split(",")]
    targets = [("parent", s) for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)] + \
              [("writer", s) for s in (signal.SIGKILL, signal.SIGTERM)]
    n = 0
    for _ in range(a.repeats):
        for point in points:
            for target, sig in targets:
                n += 1
                row = rows.setdefault(f"kill relabel {target}", Row(f"kill relabel {target} ({'SIGKILL/TERM/INT' if target == 'parent' else 'SIGKILL/TERM'})"))
                row.tries += 1
                cache, out = work / f"kill{n}.sqlite", f"fault/kill{n}-v0"
                args = cli("relabel", src, "--out", out, "--lvlm", f"sim:latency={a.latency}", "--concurrency", "2",
                           "--cache", str(cache), "--no-progress")
                job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                wait_for(lambda c=cache, p=point, j=job: count(c, "responses") >= p or j.poll() is not None, 120)
                if job.poll() is not None:
                    row.fail(f"ended before the kill point {point}")
                    continue
                kids = children(job.pid)
                labels_before = count(cache, "labels")
                victim = job.pid if target == "parent" else (kids[0] if kids else job.pid)
                os.kill(victim, sig)
                try:
                    _, err = job.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    job.kill()
                    _, err = job.communicate()
                    row.fail(f"{target} {sig.name}: the job hung")
                    continue
                if not wait_for(lambda ks=kids: not any(alive(k) for k in ks), 60):
                    row.fail(f"{target} {sig.name}: the writer outlived its parent")
                if target == "writer" and (job.returncode != 1 or "Traceback" in err):
                    row.fail(f"writer {sig.name}: exit {job.returncode}, traceback={'Traceback' in err}")
                if target == "parent" and sig == signal.SIGINT and job.returncode != 130:
                    row.fail(f"SIGINT: exit {job.returncode}")
                if not wait_for(lambda: not leftovers(root), 30):
                    row.fail(f"{target} {sig.name}: temporary folder left {leftovers(root)}")
                if (root / out).exists():
                    row.fail(f"{target} {sig.name}: a dataset was published")
                responses_before = count(cache, "responses")
                r = run(args, env)
                if r.returncode != 0:
                    row.fail(f"resume failed: {r.stderr[-300:]}")
                    continue
                calls = summary_int(r.stdout, r"^LVLM calls: (\d+)")
                cached = summary_int(r.stdout, r"(\d+) from the cache")
                new = count(cache, "responses") - responses_before
                row.calls_repeated += max(0, calls - new)
                row.labels_lost += max(0, labels_before - cached)
                # completeness: every episode labeled once
                from rgvlm_gym.data import iter_episodes

                recs = list(iter_episodes(out, frames=False, images=False))
                if len(recs) != a.episodes or any(x.extra["label_status"] != "ok" for x in recs):
                    row.fail("resumed dataset incomplete")

    row = rows.setdefault("kill collect", Row("kill collect (SIGKILL/TERM/INT)"))
    for rep in range(a.repeats):
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            row.tries += 1
            out = f"fault/killc{rep}{sig.value}-v0"
            args = cli("collect", "--episodes", "200", "--max-steps", "20", "--dataset-id", out, "--workers", "2",
                       "--no-progress", "--no-embed")
            job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            wait_for(lambda j=job: bool(leftovers(root)) or j.poll() is not None, 120)
            time.sleep(1.0)
            kids = children(job.pid)
            os.kill(job.pid, sig)
            try:
                job.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                job.kill()
                row.fail(f"collect {sig.name}: hung")
                continue
            if not wait_for(lambda ks=kids: not any(alive(k) for k in ks), 60):
                row.fail(f"collect {sig.name}: a worker outlived its parent")
            if (root / out).exists():
                row.fail(f"collect {sig.name}: a dataset was published")
            r = run(cli("collect", "--episodes", "4", "--max-steps", "10", "--dataset-id", out, "--workers", "1",
                        "--no-progress", "--no-embed"), env)
            if r.returncode != 0 or leftovers(root):
                row.fail(f"collect {sig.name}: re-run rc {r.returncode}, leftovers {leftovers(root)}")


# -- 2. two jobs, one id --------------------------------------------------------------------------------------------
def race(a: Args, env: dict[str, str], work: Path, src: str, rows: dict[str, Row]) -> None:
    row = rows.setdefault("race", Row("two relabels / collects, one id"))
    for rep in range(max(1, a.repeats)):
        for kind in ("relabel", "collect"):
            row.tries += 1
            out = f"fault/race-{kind}{rep}-v0"
            if kind == "relabel":
                jobs = [cli("relabel", src, "--out", out, "--lvlm", f"sim:latency={a.latency}", "--lam", lam, "--cache",
                            str(work / f"race{rep}{lam}.sqlite"), "--no-progress") for lam in ("0.5", "1.0")]
            else:
                jobs = [cli("collect", "--episodes", "30", "--dataset-id", out, "--workers", "1", "--seed", s,
                            "--no-progress", "--no-embed") for s in ("1", "2")]
            procs = [subprocess.Popen(j, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for j in jobs]
            codes = sorted(p.wait(timeout=300) for p in procs)
            for p in procs:
                p.communicate()
            if codes != [0, 1]:
                row.fail(f"{kind}: exit codes {codes}")


# -- 3. full disk ---------------------------------------------------------------------------------------------------
def full_disk(a: Args, env: dict[str, str], work: Path, rows: dict[str, Row]) -> None:
    row = rows.setdefault("disk", Row("full disk (tmpfs)"))
    mnt = work / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)]).returncode != 0:
        row.notes.append("skipped: cannot mount a tmpfs (needs root)")
        return
    denv = {**env, "MINARI_DATASETS_PATH": str(mnt)}
    try:
        r = run([sys.executable, "-c", "from rgvlm_gym.data import collect_dataset; collect_dataset('fault/disk-src-v0', "
                 "episodes=12, workers=1, seed=5, max_steps=12, policy='random', progress=False)"], denv)
        assert r.returncode == 0, r.stderr
        for leave_mb in (1.0, 5.0, 6.6, 8.0):
            ballast = mnt / "ballast"
            ballast.unlink(missing_ok=True)
            st = os.statvfs(mnt)
            with open(ballast, "wb") as f:
                f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - int(leave_mb * 1e6)))
            for kind, args in (("relabel", cli("relabel", "fault/disk-src-v0", "--out", "fault/disk-out-v0", "--cache",
                                               str(work / "disk.sqlite"), "--no-progress", "--force")),
                               ("collect", cli("collect", "--episodes", "30", "--dataset-id", "fault/disk-c-v0", "--workers",
                                               "2", "--no-progress", "--no-embed", "--force"))):
                row.tries += 1
                r = run(args, denv)
                ok = r.returncode == 1 and "not enough free space" in r.stderr and "Traceback" not in r.stderr
                if r.returncode == 0:  # it fitted: fine, as long as it is complete
                    shutil.rmtree(mnt / "fault" / ("disk-out-v0" if kind == "relabel" else "disk-c-v0"), ignore_errors=True)
                    ok = True
                if not ok or leftovers(mnt):
                    row.fail(f"{kind} with {leave_mb} MB free: rc {r.returncode}, leftovers {leftovers(mnt)}: {r.stderr[-200:]}")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# -- 4. corrupt sources ---------------------------------------------------------------------------------------------
def corrupt(a: Args, env: dict[str, str], root: Path, src: str, rows: dict[str, Row]) -> None:
    import h5py

    row = rows.setdefault("corrupt", Row("corrupt source files"))
    data = root / src / "data"
    h5, meta = data / "main_data.hdf5", data / "metadata.json"
    h5_bytes, meta_text = h5.read_bytes(), meta.read_text()
    rng = np.random.default_rng(0)

    def rewards_inf() -> None:
        with h5py.File(h5, "r+") as f:
            f["episode_1/rewards"][0] = np.inf

    def actions_huge() -> None:
        with h5py.File(h5, "r+") as f:
            f["episode_2/actions"][0] = -820833840790186043

    def count_short() -> None:
        m = json.loads(meta_text)
        m["total_episodes"] = 3
        meta.write_text(json.dumps(m))

    def names_cut() -> None:
        m = json.loads(meta_text)
        m["rgvlm_gym"]["action_names"] = m["rgvlm_gym"]["action_names"][:4]
        meta.write_text(json.dumps(m))

    def header_bytes() -> None:
        h5.write_bytes(h5_bytes[:8] + rng.integers(0, 256, 512, dtype=np.uint8).tobytes() + h5_bytes[520:])

    def random_block() -> None:
        b = bytearray(h5_bytes)
        at = int(rng.integers(1024, len(b) - 4096))
        b[at:at + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        h5.write_bytes(bytes(b))

    damages = [rewards_inf, actions_huge, count_short, names_cut, header_bytes] + [random_block] * (4 * a.repeats)
    for k, damage in enumerate(damages):
        row.tries += 1
        damage()
        r = run(cli("relabel", src, "--out", f"fault/corrupt{k}-v0", "--cache", "none", "--no-progress"), env)
        must_refuse = damage is not random_block
        if "Traceback" in r.stderr or (must_refuse and r.returncode != 1) or r.returncode not in (0, 1):
            row.fail(f"{damage.__name__}: rc {r.returncode}: {r.stderr[-300:]}")
        h5.write_bytes(h5_bytes)
        meta.write_text(meta_text)


# -- 5. server faults -----------------------------------------------------------------------------------------------
def server_faults(a: Args, src: str, rows: dict[str, Row]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lvlm"))
    from _lvlm_servers import FaultServer, free_port

    from rgvlm_gym.errors import LabelingError
    from rgvlm_gym.rewards import relabel

    row = rows.setdefault("server", Row("LVLM server faults"))
    server = FaultServer()
    scripts = {
        "500": [("status", 500, {}, {"error": {"message": "boom"}})],
        "401": [("status", 401, {}, {"error": {"message": "bad key"}})],
        "429 always": [("status", 429, {"retry-after": "0"}, {"error": {"message": "slow"}})],
        "reset": [("drop",)],
        "non-JSON body": [("nonjson",)],
        "hang past timeout": [("hang", 3.0)],
        "no server": None,
    }
    try:
        for k, (name, script) in enumerate(scripts.items()):
            row.tries += 1
            if script is None:
                url = f"http://127.0.0.1:{free_port()}/v1"
            else:
                server.set_script(script)
                url = server.base_url
            spec = {"type": "openai", "params": {"model": "gpt-4o", "base_url": url, "max_retries": 1, "timeout_s": 1.0}}
            try:
                relabel(src, f"fault/server{k}-v0", "rgvlm", lvlm=spec, cache=False, progress=False, concurrency=4)
                row.fail(f"{name}: the job succeeded")
            except LabelingError as exc:
                port = url.split(":")[2].split("/")[0]
                if port not in str(exc) or "was not written" not in str(exc):
                    row.fail(f"{name}: unclear error {str(exc)[:200]}")
    finally:
        server.close()


def main() -> None:
    a = parse()
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rgvlm-faults-"))
    root = work / "minari"
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    os.environ["RGVLM_GYM_CACHE_DIR"] = str(work / "cache")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        os.environ.pop(name, None)
    env = dict(os.environ)
    from rgvlm_gym.data import collect_dataset

    src = "fault/src-v0"
    collect_dataset(src, episodes=a.episodes, workers=1, seed=11, max_steps=16, progress=False)
    rows: dict[str, Row] = {}
    try:
        for step in (lambda: kill_matrix(a, env, root, work, src, rows), lambda: race(a, env, work, src, rows),
                     lambda: full_disk(a, env, work, rows), lambda: server_faults(a, src, rows),
                     lambda: corrupt(a, env, root, src, rows)):
            step()
    finally:
        elapsed = time.perf_counter() - t0
        print(f"fault matrix (simulated LVLM), {elapsed:.0f} s")
        print(f"{'category':<42} {'tries':>5} {'failures':>8} {'labels lost':>11} {'calls repeated':>14}")
        for r in rows.values():
            print(f"{r.category:<42} {r.tries:>5} {r.failures:>8} {r.labels_lost:>11} {r.calls_repeated:>14}")
            for note in r.notes[:5]:
                print(f"    {note}")
        total = Row("total", sum(r.tries for r in rows.values()), sum(r.failures for r in rows.values()),
                    sum(r.labels_lost for r in rows.values()), sum(r.calls_repeated for r in rows.values()))
        print(f"{'total':<42} {total.tries:>5} {total.failures:>8} {total.labels_lost:>11} {total.calls_repeated:>14}")
        if a.json_out:
            Path(a.json_out).write_text(json.dumps({"elapsed_s": elapsed, "rows": [asdict(r) for r in rows.values()]}, indent=1))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

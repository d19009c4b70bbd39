"""The label cache: zero calls on re-labeling, reopen, read-only use, key sensitivity, resume after a failed
or killed job, concurrent writers, and clear errors for foreign or other-version files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rgvlm_gym.lvlm import LVLMRequestError, SimLVLM, make_lvlm
from rgvlm_gym.lvlm.base import privileged_data
from rgvlm_gym.rewards import LabelCache, LabelCacheError, RGVLMLabeler, SuccessDetectorLabeler
from rgvlm_gym.rewards.prompts import prompts_dir


def test_relabeling_makes_zero_calls_and_survives_reopen(tmp_path: Path, episodes) -> None:
    path = tmp_path / "labels.sqlite"
    first = RGVLMLabeler("sim:noise=1,seed=0", cache=path)
    results = first.label_many(episodes[:12])
    n_calls = first.lvlm.usage.snapshot().calls
    assert n_calls == sum(r.calls for r in results) >= 24 and not any(r.cached for r in results)
    first.close()
    # A new process would do exactly this: a fresh client and a fresh connection to the same file.
    again = RGVLMLabeler("sim:noise=1,seed=0", cache=str(path))
    for ep, old in zip(episodes[:12], results, strict=True):
        new = again.label(ep)
        assert new.cached and new.calls == 0 and new.status == old.status
        np.testing.assert_array_equal(new.rewards, old.rewards)
        assert new.texts == old.texts and new.meta["cached_calls"] == old.calls and new.simulated
    assert again.lvlm.usage.snapshot().calls == 0
    assert again.label_many(episodes[:12])[0].cached and again.lvlm.usage.snapshot().calls == 0
    stats = again.cache.stats()
    assert stats["labels"] == 12 and stats["responses"] == n_calls and stats["by_status"] == {"ok": 12}


def test_read_only_cache(tmp_path: Path, episodes) -> None:
    path = tmp_path / "labels.sqlite"
    RGVLMLabeler("sim", cache=path).label(episodes[0])
    ro = LabelCache(path, readonly=True)
    labeler = RGVLMLabeler("sim", cache=ro)
    assert labeler.label(episodes[0]).cached
    fresh = labeler.label(episodes[1])  # not stored: lookups only
    assert fresh.calls == 2 and not fresh.cached
    assert ro.stats()["labels"] == 1 and labeler.label(episodes[1]).calls == 2
    with pytest.raises(LabelCacheError, match="does not exist"):
        LabelCache(tmp_path / "missing.sqlite", readonly=True)


def test_cache_keys_follow_what_changes_an_answer(tmp_path: Path, episodes) -> None:
    path, ep = tmp_path / "labels.sqlite", episodes[1]
    cache = LabelCache(path)
    assert RGVLMLabeler("sim:noise=1,seed=0", cache=cache).label(ep).calls == 2
    # Transport settings cannot change answers: still a hit.
    assert RGVLMLabeler("sim:noise=1,seed=0,latency=0.001,max_concurrency=3", cache=cache).label(ep).cached
    # Model, labeler settings, frames, actions or goal change: a miss.
    assert RGVLMLabeler("sim:noise=2,seed=0", cache=cache).label(ep).calls == 2
    assert RGVLMLabeler("sim:noise=1,seed=0", cache=cache, frame_budget=3).label(ep).calls > 2
    assert RGVLMLabeler("sim:noise=1,seed=0", cache=cache).label(replace(ep, instruction="Do it.")).calls == 2
    frames = ep.frames.copy()
    frames[0, 0, 0, 0] ^= 1
    assert RGVLMLabeler("sim:noise=1,seed=0", cache=cache).label(replace(ep, frames=frames)).calls == 2
    # The prompt: its hash covers the sections, not the introduction.
    text = (prompts_dir() / "rgvlm_v1.md").read_text()
    intro = tmp_path / "rgvlm_v1.md"
    intro.write_text(text.replace("These are the words", "These are the very words"))
    assert RGVLMLabeler("sim:noise=1,seed=0", cache=cache, prompt=str(intro)).label(ep).cached
    (tmp_path / "v9").mkdir()
    worded = tmp_path / "v9" / "rgvlm_v9.md"
    worded.write_text(text.replace("careful, concrete and fair", "careful and fair"))
    assert RGVLMLabeler("sim:noise=1,seed=0", cache=cache, prompt=str(worded)).label(ep).calls == 2
    # Different labelers never share labels.
    assert SuccessDetectorLabeler("sim:noise=1,seed=0", cache=cache).label(ep).calls == len(ep)


class FailsAtScores(SimLVLM):
    """The sim, failing for good on every stage-2 request (a server outage mid-episode)."""

    def _chat(self, messages, gen):
        if privileged_data(messages)[-1]["stage"] == "scores":
            raise LVLMRequestError(model="sim", url="sim://", attempts=5, status=503, reason="overloaded")
        return super()._chat(messages, gen)


def test_finished_calls_are_not_repeated_after_a_failure(tmp_path: Path, episodes) -> None:
    path, ep = tmp_path / "labels.sqlite", episodes[2]
    broken = RGVLMLabeler(FailsAtScores(), cache=path).label(ep)
    assert broken.status == "error" and broken.calls == 2 and "503" in broken.reason
    cache = LabelCache(path)
    assert cache.stats() == {"labels": 0, "responses": 1, "by_status": {}}  # the analysis was kept, no label
    resumed = RGVLMLabeler("sim", cache=cache).label(ep)
    assert resumed.labeled and resumed.calls == 1 and resumed.meta["calls_from_cache"] == 1


def test_invalid_labels_are_cached_unless_retry_invalid(tmp_path: Path, episodes) -> None:
    path, ep = tmp_path / "labels.sqlite", episodes[3]
    assert RGVLMLabeler("sim:malformed=1", cache=path).label(ep).status == "invalid"
    again = RGVLMLabeler("sim:malformed=1", cache=path).label(ep)
    assert again.status == "invalid" and again.cached and again.calls == 0
    retried = RGVLMLabeler("sim:malformed=1", cache=path, retry_invalid=True).label(ep)
    assert retried.status == "invalid" and not retried.cached and retried.calls == 3  # asked afresh


def test_threads_share_one_cache(tmp_path: Path, episodes) -> None:
    labeler = RGVLMLabeler("sim:noise=1,latency=0.002,seed=0", cache=tmp_path / "labels.sqlite")
    out: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for ep in episodes[k::8]:
                out[ep.episode_id] = labeler.label(ep).rewards
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == len(episodes)
    assert labeler.cache.stats()["labels"] == len(episodes)
    fresh = RGVLMLabeler("sim:noise=1,seed=0", cache=tmp_path / "labels.sqlite")
    results = fresh.label_many(episodes, concurrency=16)  # async path, same file
    assert all(r.cached for r in results) and fresh.lvlm.usage.snapshot().calls == 0
    for ep, r in zip(episodes, results, strict=True):
        np.testing.assert_array_equal(r.rewards, out[ep.episode_id])


WRITER = """
import sys
from rgvlm_gym.rewards import LabelCache
cache = LabelCache(sys.argv[1])
for i in range(int(sys.argv[3])):
    cache.put_label(f"{sys.argv[2]}-{i}", {"status": "ok", "rewards": [i]}, labeler="test")
    cache.put_response(f"{sys.argv[2]}-{i}", {"text": str(i)})
"""


def test_processes_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{k}", "150"]) for k in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    cache = LabelCache(path)
    assert cache.stats()["labels"] == 600 and cache.stats()["responses"] == 600
    assert cache.get_label("w3-149") == {"status": "ok", "rewards": [149]}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


KILLED_JOB = """
import sys
from dataclasses import replace
from rgvlm_gym.rewards import RGVLMLabeler
from rgvlm_gym.rewards.testing import toy_episode
labeler = RGVLMLabeler("sim:profile=exact,latency=0.01,seed=0", cache=sys.argv[1])
for i in range(200):
    labeler.label(replace(toy_episode(i), instruction=f"Put cold apple number {i} on the counter."))
    print(i, flush=True)
"""


def test_sigkilled_job_keeps_finished_labels_and_resumes(tmp_path: Path) -> None:
    from rgvlm_gym.rewards.testing import toy_episode

    path = tmp_path / "labels.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_JOB, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done = -1
    while done < 15:
        done = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    cache = LabelCache(path)
    n_labels, n_responses = cache.stats()["labels"], cache.stats()["responses"]
    assert 16 <= n_labels < 200 and 2 * n_labels <= n_responses <= 2 * n_labels + 1
    episodes = [replace(toy_episode(i), instruction=f"Put cold apple number {i} on the counter.") for i in range(200)]
    labeler = RGVLMLabeler("sim:profile=exact,seed=0", cache=cache)
    results = labeler.label_many(episodes, concurrency=32)
    assert all(r.labeled for r in results)
    assert sum(r.cached for r in results) == n_labels  # finished episodes are not asked again
    assert labeler.lvlm.usage.snapshot().calls == 2 * 200 - n_responses  # nor is any finished call
    assert cache.stats()["labels"] == 200


def test_foreign_and_other_version_files_are_refused_untouched(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just some bytes " * 100)
    before = junk.read_bytes()
    with pytest.raises(LabelCacheError, match="not a usable label cache"):
        LabelCache(junk)
    assert junk.read_bytes() == before

    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(LabelCacheError, match="another application"):
        LabelCache(foreign)

    old = tmp_path / "old.sqlite"
    LabelCache(old).put_label("k", {"status": "ok"}, labeler="test")
    with sqlite3.connect(old) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LabelCacheError, match="schema version 99.*reads version 1.*left untouched"):
        LabelCache(old)
    with sqlite3.connect(old) as conn:
        assert conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 1


def test_full_disk_is_a_clear_error_and_keeps_committed_labels(tmp_path: Path) -> None:
    cache = LabelCache(tmp_path / "labels.sqlite")
    cache.put_label("kept", {"status": "ok", "rewards": [1.0]}, labeler="test")
    conn = cache._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # what a full disk looks like to SQLite
    with pytest.raises(LabelCacheError, match="full.*kept"):
        cache.put_label("big", {"status": "ok", "texts": ["x" * 200_000]}, labeler="test")
    assert cache.get_label("kept") == {"status": "ok", "rewards": [1.0]} and cache.get_label("big") is None
    cache.close()
    assert json.loads(json.dumps(LabelCache(tmp_path / "labels.sqlite").get_label("kept")))["rewards"] == [1.0]


def test_cache_pickles_by_path(tmp_path: Path) -> None:
    import pickle

    cache = LabelCache(tmp_path / "labels.sqlite")
    cache.put_response("r", {"text": "hi"})
    assert pickle.loads(pickle.dumps(cache)).get_response("r") == {"text": "hi"}
    labeler = RGVLMLabeler(make_lvlm("sim"), cache=cache)
    assert labeler.cache is cache

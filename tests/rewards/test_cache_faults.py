"""The label cache does not trust what it reads nor store what it should not (issue 13, item 7): real SQLite
files, a real localhost OpenAI-style server, real Minari datasets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import h5py
import numpy as np
import pytest

from rgvlm_gym.data import collect_dataset, iter_episodes
from rgvlm_gym.rewards import LabelCache, LabelCacheError, relabel
from rgvlm_gym.rewards.lvlm_labeler import MAX_ANSWER_CHARS

SRC = "test/cache-faults-v0"
KEY = "sk-test-9f8e7d6c5b4a39281706"


@pytest.fixture
def src() -> str:
    collect_dataset(SRC, episodes=3, workers=1, seed=2, max_steps=8, policy="expert", progress=False)
    return SRC


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    from _rewards_helpers import lvlm_servers

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    s = lvlm_servers().FaultServer()
    yield s
    s.close()


def test_out_of_range_cached_scores_are_not_used(src: str, tmp_path: Path) -> None:
    cache = tmp_path / "labels.sqlite"
    relabel(src, "test/cf-a-v0", "rgvlm", lvlm="sim:noise=0", cache=cache, progress=False)
    with sqlite3.connect(cache) as conn:
        rows = conn.execute("SELECT key, result FROM labels").fetchall()
        for key, text in rows:
            result = json.loads(text)
            result["raw_scores"] = [99.0] * len(result["raw_scores"])
            result["rewards"] = [99.0] * len(result["rewards"])
            conn.execute("UPDATE labels SET result = ? WHERE key = ?", (json.dumps(result), key))
    with pytest.warns(RuntimeWarning, match="damaged label row"):
        s = relabel(src, "test/cf-b-v0", "rgvlm", lvlm="sim:noise=0", cache=cache, progress=False)
    assert s.labeled == 3 and s.calls == 0  # relabeled from the (valid) cached responses
    for rec in iter_episodes("test/cf-b-v0", frames=False, images=False):
        assert np.nanmax(rec.extra["lvlm_labels"]) <= 1.0
        assert max(rec.extra["label"]["raw_scores"]) <= 10
    # the damaged rows were overwritten: a third run finds valid labels
    s = relabel(src, "test/cf-c-v0", "rgvlm", lvlm="sim:noise=0", cache=cache, progress=False)
    assert s.cached == 3


def test_undecodable_rows_are_misses(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    with LabelCache(path) as c:
        c.put_response("k", {"text": "x", "usage": {}, "model": "m"})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE responses SET response = '{not json'")
    with LabelCache(path) as c, pytest.warns(RuntimeWarning, match="undecodable"):
        assert c.get_response("k") is None


def test_a_foreign_sqlite_file_is_left_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()
    before = path.read_bytes()
    assert before[18:20] == b"\x01\x01"  # rollback journal (WAL would be 2, 2)
    with pytest.raises(LabelCacheError, match="another application"):
        LabelCache(path)
    assert path.read_bytes() == before
    assert not Path(str(path) + "-wal").exists() and not Path(str(path) + "-shm").exists()


def test_an_echoed_api_key_is_never_stored(src: str, server, tmp_path: Path) -> None:
    server.set_script([("ok", f"Step 1: fine. By the way your key is {KEY}; scores: [5]")])
    cache = tmp_path / "labels.sqlite"
    spec = {"type": "openai", "params": {"model": "gpt-4o", "base_url": server.base_url, "max_retries": 0}}
    s = relabel(src, "test/cf-key-v0", "rgvlm", lvlm=spec, cache=cache, progress=False, max_unlabeled="100%")
    assert s.calls > 0 and any(b.get("authorization") == f"Bearer {KEY}" for _, b, _ in server.requests)
    files = [cache, *Path(tmp_path).glob("labels.sqlite*")]
    import os

    files += list(Path(os.environ["MINARI_DATASETS_PATH"], "test", "cf-key-v0").rglob("*"))
    for f in files:
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    texts = [t["text"] for rec in iter_episodes("test/cf-key-v0", frames=False, images=False) for t in rec.extra["label"]["texts"]]
    assert texts and all("<redacted>" in t for t in texts)


def test_huge_answers_are_capped(src: str, server, tmp_path: Path) -> None:
    server.set_script([("ok", "A" * 5_000_000)])
    cache = tmp_path / "labels.sqlite"
    spec = {"type": "openai", "params": {"model": "gpt-4o", "base_url": server.base_url, "max_retries": 0}}
    relabel(src, "test/cf-big-v0", "rgvlm", lvlm=spec, cache=cache, progress=False, max_unlabeled="100%")
    with sqlite3.connect(cache) as conn:
        longest = max(len(json.loads(r)["text"]) for (r,) in conn.execute("SELECT response FROM responses"))
    assert MAX_ANSWER_CHARS <= longest <= MAX_ANSWER_CHARS + 100
    for rec in iter_episodes("test/cf-big-v0", frames=False, images=False):
        assert all(len(t["text"]) <= MAX_ANSWER_CHARS + 100 for t in rec.extra["label"]["texts"])
    import os

    out = Path(os.environ["MINARI_DATASETS_PATH"], "test", "cf-big-v0", "data", "main_data.hdf5")
    with h5py.File(out) as f:
        assert len(f) == 3
    assert out.stat().st_size < 3 * 2 * 4 * (MAX_ANSWER_CHARS + 100) + 5_000_000  # not 3 x 5 MB x calls

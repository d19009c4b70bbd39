"""Fixtures of tests/data: a shared embedding cache, and small collected datasets built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rgvlm-cache")
    old = os.environ.get("RGVLM_GYM_CACHE_DIR")
    os.environ["RGVLM_GYM_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("RGVLM_GYM_CACHE_DIR", None)
    else:
        os.environ["RGVLM_GYM_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def proc_dataset(tmp_path_factory: pytest.TempPathFactory):
    """24 mixed-policy episodes of procedural tasks (in a session-wide Minari folder of its own)."""
    from rgvlm_gym.data.collect import collect_dataset

    path = tmp_path_factory.mktemp("minari-session")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        ds = collect_dataset("test/proc-mixed-v0", episodes=24, num_tasks=30, workers=2, seed=3, progress=False)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return ds

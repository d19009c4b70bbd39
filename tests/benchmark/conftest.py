"""tests/benchmark fixtures: a private label cache per test (the relabel jobs write one)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("rgvlm-cache")
    monkeypatch.setenv("RGVLM_GYM_CACHE_DIR", str(path))
    return path

"""Shared fixtures: every test gets its own Minari dataset directory (as Minari's own tests do)."""

from __future__ import annotations

from pathlib import Path

import pytest

# conftest files are not doctest modules: collecting them as such (--doctest-modules) imports two
# files named "conftest" under one module name and fails, depending on the order of the arguments
collect_ignore_glob = ["*/conftest.py"]

REPO_ROOT = Path(__file__).resolve().parents[1]
ALFRED_DIR = REPO_ROOT.parent / "shared" / "alfred" / "json_2.1.0"


@pytest.fixture(autouse=True)
def _isolated_minari_path(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


@pytest.fixture
def alfred_dir() -> Path:
    if not ALFRED_DIR.is_dir():
        pytest.skip(f"ALFRED data not found at {ALFRED_DIR}")
    return ALFRED_DIR

"""Shared fixtures: every test gets its own Minari dataset directory (as Minari's own tests do), and the
ALFRED test data is found through ``RGVLM_GYM_ALFRED_DIR``.

ALFRED data: ``$RGVLM_GYM_ALFRED_DIR`` (the ``json_2.1.0`` folder of an ALFRED download) or, when unset,
``../shared/alfred/json_2.1.0`` next to the repository. Tests that need it are skipped without it, and
pytest's header and closing summary say so, with the variable to set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# conftest files are not doctest modules: collecting them as such (--doctest-modules) imports two
# files named "conftest" under one module name and fails, depending on the order of the arguments
# (this file too: tests/benchmark sorts before it and imports its own conftest first)
collect_ignore = ["conftest.py"]
collect_ignore_glob = ["*/conftest.py"]

REPO_ROOT = Path(__file__).resolve().parents[1]
ALFRED_ENV = "RGVLM_GYM_ALFRED_DIR"
ALFRED_DIR = Path(os.environ.get(ALFRED_ENV) or REPO_ROOT.parent / "shared" / "alfred" / "json_2.1.0").expanduser().resolve()
ALFRED_SKIP_REASON = (
    f"ALFRED data not found at {ALFRED_DIR}: set {ALFRED_ENV} to an ALFRED json_2.1.0 folder to run these tests"
)


def pytest_report_header(config: pytest.Config) -> str:
    if ALFRED_DIR.is_dir():
        return f"ALFRED data: {ALFRED_DIR}"
    return f"ALFRED data: not found at {ALFRED_DIR} ({ALFRED_ENV} unset or wrong): tests that need it are skipped"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "ALFRED data not found" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} tests skipped: {ALFRED_SKIP_REASON}", yellow=True)


@pytest.fixture(autouse=True)
def _isolated_minari_path(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


@pytest.fixture
def alfred_dir() -> Path:
    if not ALFRED_DIR.is_dir():
        pytest.skip(ALFRED_SKIP_REASON)
    return ALFRED_DIR

"""The README's promises: its test command is the one CI runs, and its environment example runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    quick = _blocks("bash")[0].strip().splitlines()
    assert len(quick) == 2 and "rgvlm demo" in quick[0] and "pytest" in quick[1]
    assert quick[1] in (ROOT / ".ci" / "run").read_text()


def test_environment_example_runs() -> None:
    example = next(b for b in _blocks("python") if 'gym.make("rgvlm_gym/AlfredLite-v1")' in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    assert namespace["info"]["success"] is True
    assert namespace["obs"]["image"].shape == (64, 64, 3)

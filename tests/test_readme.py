"""The README's promises: its test command is the one CI runs, and its Python examples run and print what
the README shows (``>>>`` blocks are doctests; the other Python blocks must at least compile)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


DOCTEST_BLOCKS = [b for b in _blocks("python") if b.lstrip().startswith(">>>")]


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    quick = _blocks("bash")[0].strip().splitlines()
    assert len(quick) == 2 and "rgvlm demo" in quick[0] and "pytest" in quick[1]
    assert quick[1] in (ROOT / ".ci" / "run").read_text()


def test_the_environment_and_evaluation_examples_are_doctests() -> None:
    assert any('gym.make("rgvlm_gym/AlfredLite-v1"' in b for b in DOCTEST_BLOCKS)
    assert any("evaluate(" in b for b in DOCTEST_BLOCKS)


@pytest.mark.parametrize("index", range(len(DOCTEST_BLOCKS)))
def test_readme_example_prints_what_the_readme_shows(index: int) -> None:
    block = DOCTEST_BLOCKS[index]
    test = doctest.DocTestParser().get_doctest(block, {}, f"README.md[{index}]", str(ROOT / "README.md"), 0)
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)


def test_other_python_examples_compile() -> None:
    for i, block in enumerate(_blocks("python")):
        if not block.lstrip().startswith(">>>"):
            compile(block, f"README.md[python {i}]", "exec")

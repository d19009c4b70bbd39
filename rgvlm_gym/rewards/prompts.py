"""Versioned prompt templates for the LVLM labelers: :class:`PromptTemplate`, :func:`load_prompts`.

Prompts are prose files under ``envs/prompts/`` (shipped as package data): ``rgvlm_v1.md`` holds every
sentence the RG-VLM and success-detector labelers send. A ``## name`` heading starts a section; ``$name``
placeholders are filled with :class:`string.Template` (so JSON braces in the text need no escaping). The
prompt hash covers the sections only, not the file's introduction, so documentation edits keep cached
labels valid while any wording change gets a new hash (and so new cache keys).

Example:
    >>> from rgvlm_gym.rewards.prompts import PROMPT_VERSION, load_prompts
    >>> p = load_prompts()
    >>> p.version == PROMPT_VERSION == "rgvlm_v1", len(p.sha256)
    (True, 64)
    >>> p.render("action_line", step=3, action="PickupObject apple")
    'Step 3: PickupObject apple'
"""

from __future__ import annotations

import difflib
import hashlib
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["PROMPT_SHA256", "PROMPT_VERSION", "PromptTemplate", "load_prompts", "prompts_dir"]

#: the default prompt version (file ``envs/prompts/<version>.md``).
PROMPT_VERSION = "rgvlm_v1"

_REQUIRED = (
    "system",
    "analysis_intro",
    "frame_caption",
    "action_line",
    "segment_note",
    "earlier_note",
    "analysis_question",
    "scores_question",
    "scores_repair",
    "success_system",
    "success_question",
    "success_repair",
)


def prompts_dir() -> Path:
    """The folder of prompt template files (``envs/prompts`` in the source tree, ``_envdata/prompts`` in a wheel)."""
    from rgvlm_gym.alfred.ontology import data_dir

    return data_dir() / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed prompt file.

    Attributes:
        version: the file's stem (``"rgvlm_v1"``).
        sections: section name -> template text (stripped).
        sha256: hex SHA-256 of the sections (names and text, in file order).
        path: where it was read from.
    """

    version: str
    sections: dict[str, str]
    sha256: str
    path: str = ""

    @classmethod
    def parse(cls, text: str, version: str, path: str = "") -> PromptTemplate:
        sections: dict[str, list[str]] = {}
        current: str | None = None
        for line in text.splitlines():
            if line.startswith("## "):
                current = line[3:].strip()
                if current in sections:
                    raise ValueError(f"prompt file {path or version!r} has section {current!r} twice")
                sections[current] = []
            elif current is not None:
                sections[current].append(line)
        parsed = {k: "\n".join(v).strip() for k, v in sections.items()}
        missing = [s for s in _REQUIRED if s not in parsed]
        if missing:
            raise ValueError(f"prompt file {path or version!r} lacks the sections {missing}")
        h = hashlib.sha256()
        for name, body in parsed.items():
            h.update(f"## {name}\n{body}\n".encode())
        return cls(version=version, sections=parsed, sha256=h.hexdigest(), path=path)

    def render(self, section: str, **values: Any) -> str:
        """The section's text with ``$placeholders`` filled in (a missing value raises ``KeyError``)."""
        if section not in self.sections:
            hint = difflib.get_close_matches(section, list(self.sections), n=1)
            raise KeyError(f"no prompt section {section!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        return string.Template(self.sections[section]).substitute(values)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


@cache
def _load(path: str, version: str) -> PromptTemplate:
    return PromptTemplate.parse(Path(path).read_text(encoding="utf-8"), version, path)


def load_prompts(version_or_path: str | Path = PROMPT_VERSION) -> PromptTemplate:
    """Load a prompt template by version name (a file in :func:`prompts_dir`) or by path to a ``.md`` file.

    Raises:
        ValueError: for an unknown version (with the known ones listed) or a file missing required sections.
    """
    candidate = Path(version_or_path)
    if candidate.suffix == ".md" and candidate.is_file():
        return _load(str(candidate.resolve()), candidate.stem)
    folder = prompts_dir()
    path = folder / f"{version_or_path}.md"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.md"))
        hint = difflib.get_close_matches(str(version_or_path), known, n=1)
        raise ValueError(
            f"Expect `prompt` to be a prompt version ({', '.join(known)}) or a path to a .md file, actually: "
            f"{str(version_or_path)!r}" + (f". Did you mean {hint[0]!r}?" if hint else "")
        )
    return _load(str(path), path.stem)


#: SHA-256 of the default prompt template's sections.
PROMPT_SHA256 = load_prompts().sha256

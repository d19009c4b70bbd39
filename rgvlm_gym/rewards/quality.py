"""Label quality: how well a labeler's per-step rewards track ground-truth sub-task progress.

Holds :func:`label_quality`, :class:`QualityReport`, :class:`QualityRow`, :func:`spearman`, :func:`pearson`.

The reference is the oracle's per-step signal (sub-tasks completed by the step, clipped to [0, 1]; see
:class:`~rgvlm_gym.rewards.OracleLabeler`). Correlations are computed over all steps pooled (overall, and
within each group such as a task type or a sub-task count); Spearman uses average ranks for ties.
Unlabeled episodes (``None``) are left out and counted. A correlation is ``nan`` when either side is
constant over the steps of a group (e.g. a group where no step makes progress).

Example (labels from the simulated LVLM would be reported the same way; these are hand-made):
    >>> import numpy as np
    >>> from rgvlm_gym.rewards import label_quality
    >>> oracle = [np.array([0., 1., 1.]), np.array([0., 0., 1.])]
    >>> labels = [np.array([.1, .9, .8]), None]
    >>> report = label_quality(labels, oracle, {"task_type": ["cool", "heat"]})
    >>> round(report.overall.spearman, 3), report.overall.episodes, report.overall.unlabeled
    (0.866, 1, 1)
    >>> print(report.table())  # doctest: +NORMALIZE_WHITESPACE
    group      value  episodes  unlabeled  steps  spearman  pearson
    all        -      1         1          3      0.866     0.993
    task_type  cool   1         0          3      0.866     0.993
    task_type  heat   0         1          0      nan       nan
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["QualityReport", "QualityRow", "label_quality", "pearson", "rankdata", "spearman"]


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x``, ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; nan when fewer than 2 points or either side is constant."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if len(x) != len(y):
        raise ValueError(f"Expect equal lengths, actually: {len(x)} and {len(y)}")
    if len(x) < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return math.nan if den == 0 else float(dx @ dy) / den


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks)."""
    return pearson(rankdata(x), rankdata(y))


@dataclass(frozen=True)
class QualityRow:
    """Correlation of labels with the oracle over one group of episodes."""

    group: str
    value: str
    episodes: int
    unlabeled: int
    steps: int
    spearman: float
    pearson: float


@dataclass(frozen=True)
class QualityReport:
    """Rows for ``all`` and for each value of each grouping; :meth:`table` prints them."""

    rows: list[QualityRow] = field(default_factory=list)
    note: str = ""

    @property
    def overall(self) -> QualityRow:
        return self.rows[0]

    def by(self, group: str) -> dict[str, QualityRow]:
        """The rows of one grouping, by value."""
        return {r.value: r for r in self.rows if r.group == group}

    def table(self) -> str:
        """A plain-text table (with the note, e.g. that the labels are simulated, as a last line)."""
        head = ("group", "value", "episodes", "unlabeled", "steps", "spearman", "pearson")
        body = [
            (r.group, r.value, str(r.episodes), str(r.unlabeled), str(r.steps), _fmt(r.spearman), _fmt(r.pearson))
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {"rows": [r.__dict__ for r in self.rows], "note": self.note}

    def __str__(self) -> str:
        return self.table()


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.3f}"


def _row(group: str, value: str, idx: Sequence[int], labels: Sequence[np.ndarray | None], oracle: Sequence[np.ndarray]) -> QualityRow:
    got = [i for i in idx if labels[i] is not None]
    if got:
        x = np.concatenate([np.asarray(labels[i], np.float64).ravel() for i in got])
        y = np.concatenate([np.asarray(oracle[i], np.float64).ravel() for i in got])
    else:
        x = y = np.zeros(0)
    return QualityRow(group, value, len(got), len(idx) - len(got), len(x), spearman(x, y), pearson(x, y))


def label_quality(
    labels: Sequence[np.ndarray | None],
    oracle: Sequence[np.ndarray],
    groups: Mapping[str, Sequence[Hashable]] | None = None,
    *,
    note: str = "",
) -> QualityReport:
    """Spearman and Pearson correlation between per-step labels and the oracle's per-step progress.

    Args:
        labels: per episode, the labeler's (T,) rewards, or None for an unlabeled episode.
        oracle: per episode, the oracle's (T,) rewards (``OracleLabeler`` / ``oracle_contributions``).
        groups: grouping name -> one value per episode (e.g. ``{"task_type": [...], "n_subtasks": [...]}``).
        note: a line printed under the table (say "simulated LVLM" when the labels came from ``sim``).
    """
    if len(labels) != len(oracle):
        raise ValueError(f"Expect one oracle array per labeled episode, actually: {len(labels)} labels, {len(oracle)} oracle")
    for i, (lab, ora) in enumerate(zip(labels, oracle, strict=True)):
        if lab is not None and np.shape(lab) != np.shape(ora):
            raise ValueError(f"Expect labels[{i}] to have the oracle's shape {np.shape(ora)}, actually: {np.shape(lab)}")
    everyone = list(range(len(labels)))
    rows = [_row("all", "-", everyone, labels, oracle)]
    for name, values in (groups or {}).items():
        if len(values) != len(labels):
            raise ValueError(f"Expect groups[{name!r}] to have one value per episode ({len(labels)}), actually: {len(values)}")
        for value in sorted(set(values), key=lambda v: (str(type(v)), v)):
            rows.append(_row(name, str(value), [i for i in everyone if values[i] == value], labels, oracle))
    return QualityReport(rows, note)

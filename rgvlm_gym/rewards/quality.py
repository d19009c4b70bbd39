"""Label quality: how well a labeler's per-step rewards track ground-truth sub-task progress.

Holds :func:`label_quality`, :class:`QualityReport`, :class:`QualityRow`, :func:`spearman`, :func:`pearson`,
:func:`value_order_correlation`.

The reference is the oracle's per-step signal (sub-tasks completed by the step, clipped to [0, 1]; see
:class:`~rgvlm_gym.rewards.OracleLabeler`). Correlations are computed over all steps pooled (overall, and
within each group such as a task type or a sub-task count); Spearman uses average ranks for ties.
Unlabeled episodes (``None``) are left out and counted. A correlation is ``nan`` when either side is
constant over the steps of a group (e.g. a group where no step makes progress).

**VOC** (value-order correlation, GVL, Ma et al. 2024): per episode, the Spearman correlation between the
labeler's predicted value of each frame and the frames' time order (:func:`value_order_correlation`),
averaged over the episodes of a group (episodes where it is undefined — constant values — are left out).
A labeler that predicts values (GVL's progress, a reward model's frame scores) gives them; for the others
the value of frame t is the sum of the labels of the steps before it. VOC rewards values that rise over
an episode; on an expert episode that is what progress does, on a mixed one it need not be, so the report
shows ``oracle_voc`` beside it: the VOC of the oracle's own cumulative progress on the same episodes.
Note that the cumulative sum of non-negative labels never falls, so for such labelers (``rgvlm``, ``success``,
``oracle``) VOC is near 1 by construction (below it only through ties); VOC tells apart the labelers that
predict values (``gvl``, ``rlvlmf``, ``rating``, ``clip``, ``blip2``).

Example (labels from the simulated LVLM would be reported the same way; these are hand-made):
    >>> import numpy as np
    >>> from rgvlm_gym.rewards import label_quality
    >>> oracle = [np.array([0., 1., 1.]), np.array([0., 0., 1.])]
    >>> labels = [np.array([.1, .9, .8]), None]
    >>> report = label_quality(labels, oracle, {"task_type": ["cool", "heat"]})
    >>> round(report.overall.spearman, 3), report.overall.episodes, report.overall.unlabeled
    (0.866, 1, 1)
    >>> print(report.table())  # doctest: +NORMALIZE_WHITESPACE
    group      value  episodes  unlabeled  steps  spearman  pearson  voc    oracle_voc
    all        -      1         1          3      0.866     0.993    1.000  0.949
    task_type  cool   1         0          3      0.866     0.993    1.000  0.949
    task_type  heat   0         1          0      nan       nan      nan    nan
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["QualityReport", "QualityRow", "label_quality", "pearson", "rankdata", "spearman", "value_order_correlation"]


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


def value_order_correlation(values: np.ndarray) -> float:
    """GVL's VOC of one episode: Spearman correlation of the per-frame values with the time order
    (nan for fewer than 2 frames or constant values).

    Example:
        >>> value_order_correlation([0.0, 0.2, 0.1, 0.9]), value_order_correlation([0.5, 0.5])
        (0.8, nan)
    """
    v = np.asarray(values, np.float64).ravel()
    return spearman(v, np.arange(len(v), dtype=np.float64))


def _values_from_rewards(rewards: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.asarray(rewards, np.float64).ravel())])


def _mean_voc(vals: list[np.ndarray]) -> float:
    vocs = [value_order_correlation(v) for v in vals]
    vocs = [x for x in vocs if not math.isnan(x)]
    return float(np.mean(vocs)) if vocs else math.nan


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
    voc: float = math.nan
    oracle_voc: float = math.nan


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
        head = ("group", "value", "episodes", "unlabeled", "steps", "spearman", "pearson", "voc", "oracle_voc")
        body = [
            (r.group, r.value, str(r.episodes), str(r.unlabeled), str(r.steps), _fmt(r.spearman), _fmt(r.pearson),
             _fmt(r.voc), _fmt(r.oracle_voc))
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


def _row(
    group: str,
    value: str,
    idx: Sequence[int],
    labels: Sequence[np.ndarray | None],
    oracle: Sequence[np.ndarray],
    values: Sequence[np.ndarray | None],
) -> QualityRow:
    got = [i for i in idx if labels[i] is not None]
    if got:
        x = np.concatenate([np.asarray(labels[i], np.float64).ravel() for i in got])
        y = np.concatenate([np.asarray(oracle[i], np.float64).ravel() for i in got])
    else:
        x = y = np.zeros(0)
    voc = _mean_voc([values[i] if values[i] is not None else _values_from_rewards(labels[i]) for i in got])  # type: ignore[arg-type, misc]
    oracle_voc = _mean_voc([_values_from_rewards(oracle[i]) for i in got])
    return QualityRow(group, value, len(got), len(idx) - len(got), len(x), spearman(x, y), pearson(x, y), voc, oracle_voc)


def label_quality(
    labels: Sequence[np.ndarray | None],
    oracle: Sequence[np.ndarray],
    groups: Mapping[str, Sequence[Hashable]] | None = None,
    *,
    values: Sequence[np.ndarray | None] | None = None,
    note: str = "",
) -> QualityReport:
    """Spearman and Pearson correlation between per-step labels and the oracle's per-step progress, and VOC.

    Args:
        labels: per episode, the labeler's (T,) rewards, or None for an unlabeled episode.
        oracle: per episode, the oracle's (T,) rewards (``OracleLabeler`` / ``oracle_contributions``).
        groups: grouping name -> one value per episode (e.g. ``{"task_type": [...], "n_subtasks": [...]}``).
        values: per episode, the labeler's (T+1,) predicted frame values for VOC, or None to use the
            cumulative labels (module docstring).
        note: a line printed under the table (say "simulated LVLM" when the labels came from ``sim``).
    """
    if len(labels) != len(oracle):
        raise ValueError(f"Expect one oracle array per labeled episode, actually: {len(labels)} labels, {len(oracle)} oracle")
    for i, (lab, ora) in enumerate(zip(labels, oracle, strict=True)):
        if lab is not None and np.shape(lab) != np.shape(ora):
            raise ValueError(f"Expect labels[{i}] to have the oracle's shape {np.shape(ora)}, actually: {np.shape(lab)}")
    vals: list[np.ndarray | None] = [None] * len(labels) if values is None else list(values)
    if len(vals) != len(labels):
        raise ValueError(f"Expect one `values` entry per episode ({len(labels)}), actually: {len(vals)}")
    everyone = list(range(len(labels)))
    rows = [_row("all", "-", everyone, labels, oracle, vals)]
    for name, group_values in (groups or {}).items():
        if len(group_values) != len(labels):
            raise ValueError(f"Expect groups[{name!r}] to have one value per episode ({len(labels)}), actually: {len(group_values)}")
        for value in sorted(set(group_values), key=lambda v: (str(type(v)), v)):
            rows.append(_row(name, str(value), [i for i in everyone if group_values[i] == value], labels, oracle, vals))
    return QualityReport(rows, note)

"""Small learned reward models over (frame, instruction), trained from LVLM feedback.

Holds :func:`observation_features`, :class:`RewardModel`, :func:`train_bradley_terry`, :func:`train_rating`
and :class:`TrainStats`: the torch part of the ``rlvlmf`` (preferences) and ``rating`` labelers.

**Inputs.** A frame is average-pooled to ``pool x pool`` RGB (default 12 x 12, values in [0, 1]); the
instruction is a hashed bag of words and word pairs (``text_dim`` buckets, L2-normalised). Both are
concatenated: ``observation_features(frames, instruction)`` is ``(N, 3 * pool**2 + text_dim)``. The model
is an MLP with one scalar output ``r(o, g)``. A *segment* is a list of frames; its score is the sum
(preferences) or the mean (ratings) of ``r`` over its frames.

**Bradley-Terry** (RL-VLM-F, Wang et al. 2024; Christiano et al. 2017):

.. math::

    P(\\sigma_a \\succ \\sigma_b) = \\frac{\\exp \\sum_{o \\in \\sigma_a} r(o)}
        {\\exp \\sum_{o \\in \\sigma_a} r(o) + \\exp \\sum_{o \\in \\sigma_b} r(o)},
    \\quad L = -\\,\\mathbb{E}\\big[y \\log P(\\sigma_a \\succ \\sigma_b) + (1 - y) \\log P(\\sigma_b \\succ \\sigma_a)\\big]

with ``y = 1`` when the first segment is preferred, 0 when the second is, 0.5 for "no preference" (when
such answers are kept).

**Ratings** (ERL-VLM, Luu et al. 2025): an ordinal (cumulative-logit) model on the segment's mean reward
``s``: ``P(y <= k) = sigmoid(theta_k - s)`` with learned increasing thresholds ``theta_0 < ... <
theta_{n-2}``, trained by class-weighted negative log-likelihood (weights ``N / (n * count_k)``, the
class balancing ERL-VLM proposes, so rare ratings are not drowned by common ones). This is a
cumulative-logit form of the rating loss, not a copy of ERL-VLM's code.

Example (a model that learns "brighter frames are better" from 40 synthetic preferences):
    >>> import numpy as np
    >>> from rgvlm_gym.rewards.reward_model import observation_features, train_bradley_terry
    >>> frames = np.stack([np.full((8, 8, 3), 25 * i, np.uint8) for i in range(10)])
    >>> x = observation_features(frames, "make it bright", pool=2)
    >>> rng = np.random.default_rng(0)
    >>> pairs = rng.integers(0, 10, size=(40, 2))
    >>> pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    >>> y = (pairs[:, 0] > pairs[:, 1]).astype(np.float32)
    >>> model, stats = train_bradley_terry(x[pairs[:, :1]], x[pairs[:, 1:]], y, epochs=200, seed=0)
    >>> r = model.score(x)
    >>> bool(np.all(np.diff(r) > 0)), stats.items
    (True, 35)
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RewardModel", "TrainStats", "observation_features", "text_features", "train_bradley_terry", "train_rating"]

_WORD = re.compile(r"[a-z0-9]+")


def text_features(text: str, dim: int = 64) -> np.ndarray:
    """(dim,) float32 hashed bag of words and word pairs of ``text`` (lower-cased), L2-normalised."""
    words = _WORD.findall(text.lower())
    out = np.zeros(dim, np.float32)
    for tok in [*words, *(f"{a}_{b}" for a, b in zip(words, words[1:], strict=False))]:
        h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
        out[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    n = float(np.linalg.norm(out))
    return out / n if n > 0 else out


def observation_features(frames: np.ndarray, instruction: str, *, pool: int = 12, text_dim: int = 64) -> np.ndarray:
    """(N, 3 * pool**2 + text_dim) float32 features of uint8 frames (N, H, W, 3) under one instruction."""
    import torch
    import torch.nn.functional as F

    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"Expect frames of shape (N, H, W, 3), actually: {arr.shape}")
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
        pooled = F.adaptive_avg_pool2d(t, pool).reshape(len(arr), -1).numpy()
    text = np.broadcast_to(text_features(instruction, text_dim), (len(arr), text_dim))
    return np.concatenate([pooled, text], axis=1).astype(np.float32)


@dataclass(frozen=True)
class TrainStats:
    """What a reward-model fit did: items seen, optimiser steps, final loss, training accuracy, seconds."""

    items: int
    steps: int
    loss: float
    accuracy: float
    train_s: float


class RewardModel:
    """An MLP ``r(features) -> float`` (torch), with min-max output scaling fitted on the training frames.

    Args:
        in_dim: feature size (:func:`observation_features`).
        hidden: width of the two hidden layers.
        seed: torch seed of the initial weights.
    """

    def __init__(self, in_dim: int, hidden: int = 128, seed: int = 0) -> None:
        import torch

        gen = torch.Generator().manual_seed(seed)
        self.in_dim = int(in_dim)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, 1),
        )
        with torch.no_grad():
            for p in self.net.parameters():
                bound = 1.0 / math.sqrt(p.shape[-1]) if p.ndim > 1 else 0.01
                p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=gen))
        self.low, self.high = 0.0, 1.0
        #: ordinal thresholds of a rating model (:func:`train_rating`), else None.
        self.thresholds: np.ndarray | None = None

    def predict_rating(self, segments: np.ndarray) -> np.ndarray:
        """(M,) most likely rating of each (M, L, D) segment (models from :func:`train_rating` only)."""
        import torch

        if self.thresholds is None:
            raise ValueError("this reward model was not trained on ratings (no thresholds)")
        s = torch.from_numpy(np.asarray(self.score(np.asarray(segments, np.float32).reshape(-1, self.in_dim)), np.float32))
        s = s.reshape(len(segments), -1).mean(-1)
        th = torch.from_numpy(self.thresholds)
        cdf = torch.sigmoid(th[None, :] - s[:, None])
        probs = torch.cat([cdf, torch.ones_like(s)[:, None]], 1) - torch.cat([torch.zeros_like(s)[:, None], cdf], 1)
        out: np.ndarray = probs.argmax(1).numpy()
        return out

    def forward(self, x: Any) -> Any:
        return self.net(x).squeeze(-1)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N,) raw rewards of (N, D) features."""
        import torch

        with torch.no_grad():
            return self.forward(torch.from_numpy(np.asarray(features, np.float32))).numpy().astype(np.float32)

    def fit_scale(self, features: np.ndarray) -> None:
        """Remember the range of raw rewards over ``features`` for :meth:`scaled`."""
        r = self.score(features)
        self.low, self.high = (float(r.min()), float(r.max())) if len(r) else (0.0, 1.0)

    def scaled(self, features: np.ndarray) -> np.ndarray:
        """(N,) rewards mapped by the fitted range to [0, 1] (clipped)."""
        r = self.score(features)
        span = self.high - self.low
        out: np.ndarray = np.clip((r - self.low) / span, 0.0, 1.0) if span > 1e-12 else np.full_like(r, 0.5)
        return out.astype(np.float32)

    def state_dict_digest(self) -> str:
        """Hex digest of the weights (identifies a trained model in provenance)."""
        h = hashlib.blake2b(digest_size=12)
        for v in self.net.state_dict().values():
            h.update(v.detach().cpu().numpy().tobytes())
        return h.hexdigest()


def _check_items(xs: list[np.ndarray], n: int) -> None:
    for x in xs:
        if x.ndim != 3 or len(x) != n:
            raise ValueError(f"Expect segment features of shape (M={n}, L, D), actually: {x.shape}")


def _batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + batch] for i in range(0, n, batch)]


def train_bradley_terry(
    seg_a: np.ndarray,
    seg_b: np.ndarray,
    y: np.ndarray,
    *,
    hidden: int = 128,
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> tuple[RewardModel, TrainStats]:
    """Fit a :class:`RewardModel` to preferences (module docstring).

    Args:
        seg_a, seg_b: (M, L, D) features of the first and second segment of each query.
        y: (M,) 1 when the first segment is preferred, 0 when the second is, 0.5 for equal.
    """
    import torch

    seg_a, seg_b = np.asarray(seg_a, np.float32), np.asarray(seg_b, np.float32)
    y = np.asarray(y, np.float32).ravel()
    _check_items([seg_a, seg_b], len(y))
    if not len(y):
        raise ValueError("Expect at least one preference to train the reward model on, actually: none")
    torch.manual_seed(seed)
    model = RewardModel(seg_a.shape[-1], hidden, seed)
    opt = torch.optim.Adam(model.net.parameters(), lr=lr, weight_decay=weight_decay)
    ta, tb, ty = torch.from_numpy(seg_a), torch.from_numpy(seg_b), torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    start, steps, loss_v = time.perf_counter(), 0, math.nan
    for _ in range(epochs):
        for idx in _batches(len(y), batch_size, rng):
            i = torch.from_numpy(idx)
            logit = model.forward(ta[i]).sum(-1) - model.forward(tb[i]).sum(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, ty[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            loss_v = float(loss.detach())
    train_s = time.perf_counter() - start
    with torch.no_grad():
        logit = (model.forward(ta).sum(-1) - model.forward(tb).sum(-1)).numpy()
    decided = y != 0.5
    acc = float(np.mean((logit[decided] > 0) == (y[decided] > 0.5))) if decided.any() else math.nan
    return model, TrainStats(len(y), steps, loss_v, acc, train_s)


class _Ordinal:
    def __init__(self, n_levels: int) -> None:
        import torch

        self.first = torch.zeros(1, requires_grad=True)
        self.gaps = torch.zeros(max(0, n_levels - 2), requires_grad=True)

    def thresholds(self) -> Any:
        import torch

        return torch.cat([self.first, self.first + torch.cumsum(torch.nn.functional.softplus(self.gaps) + 1e-3, 0)])

    def log_probs(self, s: Any) -> Any:
        """(M, n) log P(y = k | s)."""
        import torch

        cdf = torch.sigmoid(self.thresholds()[None, :] - s[:, None])
        ones, zeros = torch.ones_like(s)[:, None], torch.zeros_like(s)[:, None]
        upper, lower = torch.cat([cdf, ones], 1), torch.cat([zeros, cdf], 1)
        return torch.log((upper - lower).clamp_min(1e-6))


def train_rating(
    segments: np.ndarray,
    levels: np.ndarray,
    n_levels: int,
    *,
    class_balanced: bool = True,
    hidden: int = 128,
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> tuple[RewardModel, TrainStats]:
    """Fit a :class:`RewardModel` to ordinal ratings 0..n_levels-1 of segments (module docstring).

    Args:
        segments: (M, L, D) features of each rated segment.
        levels: (M,) int ratings, 0 the worst.
        n_levels: size of the rating scale (>= 2).
        class_balanced: weight each rating by ``M / (n_levels * count)``.

    ``TrainStats.accuracy`` is the share of training segments whose most likely rating is the given one.
    """
    import torch

    segments = np.asarray(segments, np.float32)
    levels = np.asarray(levels, np.int64).ravel()
    _check_items([segments], len(levels))
    if not isinstance(n_levels, int) or n_levels < 2:
        raise ValueError(f"Expect `n_levels` to be an int >= 2, actually: {n_levels!r}")
    if not len(levels):
        raise ValueError("Expect at least one rating to train the reward model on, actually: none")
    if levels.min() < 0 or levels.max() >= n_levels:
        raise ValueError(f"Expect ratings in 0..{n_levels - 1}, actually: {sorted(set(levels.tolist()))}")
    torch.manual_seed(seed)
    model = RewardModel(segments.shape[-1], hidden, seed)
    head = _Ordinal(n_levels)
    counts = np.bincount(levels, minlength=n_levels).astype(np.float64)
    weights = np.where(counts > 0, len(levels) / (n_levels * np.maximum(counts, 1)), 0.0) if class_balanced else np.ones(n_levels)
    tw = torch.from_numpy(weights.astype(np.float32))
    # The thresholds learn faster than the network: else the scores outgrow them and middle ratings vanish.
    opt = torch.optim.Adam([{"params": list(model.net.parameters()), "weight_decay": weight_decay},
                            {"params": [head.first, head.gaps], "lr": 50 * lr, "weight_decay": 0.0}], lr=lr)
    tx, ty = torch.from_numpy(segments), torch.from_numpy(levels)
    rng = np.random.default_rng(seed)
    start, steps, loss_v = time.perf_counter(), 0, math.nan
    for _ in range(epochs):
        for idx in _batches(len(levels), batch_size, rng):
            i = torch.from_numpy(idx)
            lp = head.log_probs(model.forward(tx[i]).mean(-1))
            w = tw[ty[i]]
            loss = -(w * lp.gather(1, ty[i][:, None]).squeeze(1)).sum() / w.sum().clamp_min(1e-6)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            loss_v = float(loss.detach())
    train_s = time.perf_counter() - start
    with torch.no_grad():
        model.thresholds = head.thresholds().numpy().astype(np.float32)
    pred = model.predict_rating(segments)
    return model, TrainStats(len(levels), steps, loss_v, float(np.mean(pred == levels)), train_s)

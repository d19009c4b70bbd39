"""GVL: shuffling, un-shuffling and VOC against hand computations; the labeler end to end with the
simulated LVLM (every label here is simulated)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.rewards import GVLLabeler, label_quality, oracle_contributions, oracle_values
from rgvlm_gym.rewards.gvl import parse_percentages, shuffled_frames, unshuffle
from rgvlm_gym.rewards.quality import value_order_correlation

EXACT = "sim:noise=0,miss=0,useless_credit=0,malformed=0,seed=0"


def test_unshuffle_by_hand() -> None:
    # frames 3, 1, 2 shown in that order with 90 %, 10 %, 40 %: back in time order with frame 0 at 0 %
    assert unshuffle([90.0, 10.0, 40.0], shown=[3, 1, 2], n_frames=4).tolist() == [0.0, 0.1, 0.4, 0.9]
    # frames 1..4 not shown are interpolated in time between the shown 0 (0 %), 5 (50 %) and 9 (10 %)
    v = unshuffle([10.0, 50.0], shown=[9, 5], n_frames=10)
    assert np.allclose(v, [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2, 0.1])


def test_shuffled_frames() -> None:
    rng = np.random.default_rng(0)
    shown = shuffled_frames(8, 30, rng)
    assert sorted(shown) == list(range(1, 8)) and shown != sorted(shown)
    shown = shuffled_frames(41, 6, rng)  # budget 6 = the reference frame 0 and 5 more, evenly spaced
    assert sorted(shown) == [8, 16, 24, 32, 40]


def test_voc_by_hand() -> None:
    # ranks of [0, .1, .4, .3, .9] are [1, 2, 4, 3, 5]: one swap, sum d^2 = 2, rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert math.isclose(value_order_correlation([0.0, 0.1, 0.4, 0.3, 0.9]), 0.9)
    assert value_order_correlation([1.0, 0.5, 0.0]) == -1.0
    assert math.isnan(value_order_correlation([0.2, 0.2, 0.2]))
    # the report: per episode VOC of the labeler's values, averaged; oracle_voc from the oracle's cumulative labels
    labels = [np.array([0.1, 0.3, -0.1, 0.6]), np.array([0.5, 0.5])]
    oracle = [np.array([0.5, 1.0, 0.0, 1.0]), np.array([0.0, 1.0])]
    values = [np.array([0.0, 0.1, 0.4, 0.3, 0.9]), None]  # the second episode: values = cumsum of labels
    report = label_quality(labels, oracle, {"k": [1, 2]}, values=values)
    voc1, voc2 = 0.9, 1.0  # [0, .5, 1.0] rises
    ora1 = value_order_correlation([0, 0.5, 1.5, 1.5, 2.5])
    assert math.isclose(report.overall.voc, (voc1 + voc2) / 2)
    ora2 = value_order_correlation([0.0, 0.0, 1.0])  # ties: 0.866
    assert math.isclose(report.overall.oracle_voc, (ora1 + ora2) / 2)
    assert math.isclose(report.by("k")["1"].voc, voc1) and "oracle_voc" in report.table()


def test_exact_sim_gives_the_ground_truth_values(episodes: list[EpisodeRecord]) -> None:
    labeler = GVLLabeler(EXACT)
    for ep in episodes[:10]:
        res = labeler.label(ep)
        assert res.labeled and res.calls == 1 and res.simulated
        truth = oracle_values(ep)
        assert np.allclose(res.meta["values"], truth, atol=0.005)  # percentages are whole numbers
        assert np.allclose(res.rewards, np.diff(res.meta["values"]), atol=1e-6)
        assert math.isclose(res.meta["voc"], value_order_correlation(res.meta["values"]), abs_tol=1e-12) or math.isnan(res.meta["voc"])
        assert sorted(res.meta["shown"]) == list(range(1, len(ep) + 1))


def test_long_episode_shows_the_budget_and_interpolates(long_episode: EpisodeRecord) -> None:
    res = GVLLabeler(EXACT, frame_budget=6).label(long_episode)
    shown = sorted(res.meta["shown"])
    assert len(shown) == 5 and shown[-1] == len(long_episode)
    truth = oracle_values(long_episode)
    v = np.asarray(res.meta["values"])
    assert np.allclose(v[shown], truth[shown], atol=0.005)
    assert np.allclose(v, np.interp(np.arange(len(v)), [0, *shown], [0.0, *v[shown]]))


def test_noise_lowers_quality_and_malformed_is_repaired_or_unlabeled(episodes: list[EpisodeRecord]) -> None:
    eps = episodes[:12]
    oracle = [oracle_contributions(ep) for ep in eps]
    rho = []
    for spec in (EXACT, "sim:noise=3,seed=0"):
        res = [GVLLabeler(spec).label(ep) for ep in eps]
        rho.append(label_quality([r.rewards for r in res], oracle).overall.spearman)
    assert rho[0] > 0.8 and rho[1] < rho[0]  # exact: below 1 only by per-episode scale and whole percents
    bad = GVLLabeler("sim:malformed=1,seed=0").label(eps[0])
    assert bad.status == "invalid" and "after one repair prompt" in bad.reason and bad.calls == 2
    assert parse_percentages("Frame 1: 120%", 1)[0] is None


def test_cache_and_params(episodes: list[EpisodeRecord], tmp_path) -> None:
    from rgvlm_gym.rewards import make_labeler

    lab = GVLLabeler("sim:noise=1,seed=0", cache=tmp_path / "c.sqlite", frame_budget=12)
    first = lab.label(episodes[0])
    again = lab.label(episodes[0])
    assert first.calls == 1 and again.cached and again.calls == 0
    assert np.array_equal(first.rewards, again.rewards)
    rebuilt = make_labeler(GVLLabeler("sim:noise=1,seed=0", frame_budget=12).config)
    assert isinstance(rebuilt, GVLLabeler) and rebuilt.frame_budget == 12
    with pytest.raises(ValueError, match="frame_budget"):
        GVLLabeler("sim", frame_budget=1)

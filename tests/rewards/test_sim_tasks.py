"""The simulated LVLM's answers to the baseline labelers' queries (preference, rating, gvl) follow the
documented error model (:mod:`rgvlm_gym.lvlm.sim_tasks`). Every answer here is simulated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rgvlm_gym.lvlm import make_lvlm
from rgvlm_gym.lvlm.sim_tasks import progress_values, rating_labels
from rgvlm_gym.rewards.gvl import parse_percentages
from rgvlm_gym.rewards.rating import parse_rating
from rgvlm_gym.rewards.rlvlmf import parse_preference

CONTRIBS = [0.0, 0.5, 0.0, 0.25, 0.0, 0.25]  # values of frames 0..6: 0, 0, .5, .5, .75, .75, 1
SCALE = 1.0


def ask(spec: str, data: dict, text: str = "q") -> str:
    msgs = [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "privileged", "data": data}]}]
    return make_lvlm(spec).chat(msgs).text


def gvl(spec: str, frames: list[int], contribs: list[float] = CONTRIBS) -> list[float] | None:
    data = {"task": "gvl", "goal": "g", "contributions": contribs, "scale": SCALE, "frames": frames}
    return parse_percentages(ask(spec, data), len(frames))[0]


def pref(spec: str, a: list[int], b: list[int], contribs: list[float] = CONTRIBS, stage: str = "label") -> str:
    data = {"task": "preference", "stage": stage, "goal": "g", "contributions": contribs, "scale": SCALE, "frames": [a, b]}
    return ask(spec, data)


def rate(spec: str, seg: list[int], levels: int = 3, contribs: list[float] = CONTRIBS) -> str:
    data = {"task": "rating", "stage": "label", "goal": "g", "contributions": contribs, "scale": SCALE, "frames": [seg], "levels": levels}
    return ask(spec, data)


EXACT = "sim:noise=0,miss=0,useless_credit=0,malformed=0,seed=0"


def test_exact_judge_answers_from_ground_truth() -> None:
    values = progress_values(CONTRIBS, SCALE)
    assert values.tolist() == [0.0, 0.0, 0.5, 0.5, 0.75, 0.75, 1.0]
    assert gvl(EXACT, [6, 2, 4, 1]) == [100.0, 50.0, 75.0, 0.0]
    assert parse_preference(pref(EXACT, [4], [2]))[0] == 0
    assert parse_preference(pref(EXACT, [1], [6]))[0] == 1
    assert parse_preference(pref(EXACT, [2], [3]))[0] == -1  # equal progress: no preference
    assert parse_preference(pref(EXACT, [0, 1], [2, 3]))[0] == 1  # segments: mean of their frames
    for t, level in [(0, 0), (2, 1), (4, 2), (6, 2)]:  # 3 equal-width bins of the score 0..10
        assert parse_rating(rate(EXACT, [t]), 3) == (level, "")
    assert parse_rating(rate(EXACT, [2, 4], levels=5), 5)[0] == 3  # mean 0.625 -> bin 3 of 5
    analysis = pref(EXACT, [4], [2], stage="analysis")
    assert analysis.startswith("[Simulated LVLM") and "Image 1 is closer" in analysis


def test_answers_are_deterministic_and_order_independent() -> None:
    spec = "sim:noise=1.5,miss=0.3,useless_credit=0.3,seed=4"
    forward = gvl(spec, [1, 2, 3, 4, 5, 6])
    backward = gvl(spec, [6, 5, 4, 3, 2, 1])
    assert forward is not None and backward is not None
    assert forward == backward[::-1]  # a frame's percentage does not depend on where it is shown
    assert gvl(spec, [3, 1]) == [forward[2], forward[0]]  # nor on what else is shown
    assert gvl(spec, [1, 2, 3, 4, 5, 6]) == forward
    assert gvl("sim:noise=1.5,miss=0.3,useless_credit=0.3,seed=5", [1, 2, 3, 4, 5, 6]) != forward


def test_noise_is_gaussian_in_score_points() -> None:
    # 150 frames at value 0.5 (one step of 0.5, scale 1): percentage = 10 * (5 + noise * z), rounded
    frames = list(range(151, 301))
    pct = np.asarray(gvl("sim:noise=2,seed=1", frames, [0.0] * 150 + [0.5] + [0.0] * 149), dtype=np.float64)
    err = pct / 10.0 - 5.0
    assert abs(err.mean()) < 0.4 and 1.6 < err.std() < 2.4  # std of 150 N(0, 2) draws (rounding adds ~0.03)


def test_miss_and_useless_credit() -> None:
    missed = gvl("sim:miss=1,seed=0", [6, 4, 2])
    assert missed == [0.0, 0.0, 0.0]  # every contribution lost
    assert parse_preference(pref("sim:miss=1,seed=0", [6], [0]))[0] == -1
    useless = [0.0] * 6
    assert gvl("sim:useless_credit=0,seed=0", [6], useless) == [0.0]
    credited = gvl("sim:useless_credit=1,seed=0", [1, 2, 6], useless)
    assert credited is not None
    first = credited[0] / 10.0  # frame 1: one credited step, k / 10 with k in 3..7
    assert 3 <= first <= 7 and credited[2] == 100.0  # six credited steps exceed the scale: clipped
    frac = np.mean([gvl(f"sim:useless_credit=0.3,seed={s}", [6], useless)[0] > 0 for s in range(60)])  # type: ignore[index]
    assert 0.6 < frac < 0.99  # P(at least one of 6 steps credited) = 1 - 0.7**6 = 0.88


def test_malformed_answers_are_unusable() -> None:
    spec = "sim:malformed=1,seed=0"
    assert parse_preference(pref(spec, [4], [2]))[0] is None
    assert parse_rating(rate(spec, [4]), 3)[0] is None
    assert gvl(spec, [1, 2, 3]) is None
    ok = [gvl(f"sim:malformed=0.5,seed={s}", [1, 2, 3]) is not None for s in range(80)]
    assert 0.3 < np.mean(ok) < 0.7


def test_bad_privileged_data_is_refused() -> None:
    with pytest.raises(ValueError, match="contributions"):
        ask(EXACT, {"task": "gvl", "contributions": [2.0], "scale": 1.0, "frames": [1]})
    with pytest.raises(ValueError, match="frame indices"):
        ask(EXACT, {"task": "gvl", "contributions": [0.5], "scale": 1.0, "frames": [5]})
    with pytest.raises(ValueError, match="n_levels"):
        rating_labels(7)
    assert math.isclose(progress_values([1.0, 1.0], 4.0)[-1], 0.5)

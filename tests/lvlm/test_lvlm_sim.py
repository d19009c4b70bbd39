"""The simulated LVLM: protocol, error-model statistics, determinism, order independence, latency."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time

import numpy as np
import pytest

from rgvlm_gym.lvlm import LVLMResponse, make_lvlm, register_sim_task
from rgvlm_gym.lvlm.sim import _SIM_TASKS, _WORDING, NO_GROUND_TRUTH, SIM_DISCLAIMER, SimRequest


def request(
    stage: str,
    contributions: list[float],
    goal: str = "heat an apple",
    actions: list[str] | None = None,
    text: str = "Score each action from 0 to 10.",
) -> list[dict]:
    actions = actions or [f"PickupObject thing{i}" for i in range(len(contributions))]
    data = {"task": "rgvlm", "stage": stage, "actions": actions, "contributions": contributions, "goal": goal}
    return [
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "privileged", "data": data}]}
    ]


def scores_over(spec: str, contributions: list[float], n_calls: int) -> tuple[np.ndarray, int]:
    """Scores of ``n_calls`` distinct trajectories (goal varies); also how many answers were malformed."""
    lvlm = make_lvlm(spec)
    rows, bad = [], 0
    for i in range(n_calls):
        text = lvlm.chat(request("scores", contributions, goal=f"goal {i}")).text
        try:
            scores = json.loads(text)["scores"]
            assert len(scores) == len(contributions)
        except (ValueError, KeyError, TypeError, AssertionError):
            bad += 1
            continue
        rows.append(scores)
    return np.array(rows), bad


def test_exact_ground_truth_without_errors() -> None:
    contributions = [0.0, 0.04, 0.05, 0.35, 0.5, 0.94, 1.0]
    r = make_lvlm("sim:noise=0,miss=0,useless_credit=0,malformed=0").chat(request("scores", contributions))
    assert json.loads(r.text) == {"scores": [0, 0, 1, 4, 5, 9, 10]}  # rounded half up
    assert r.model == "sim" and r.usage.simulated and r.simulated and r.finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0 and r.usage.images == 0


def test_noise_std_matches_setting() -> None:
    scores, bad = scores_over("sim:noise=1.5,seed=1", [0.5] * 10, 400)
    residual = scores.ravel() - 5
    assert bad == 0 and scores.min() >= 0 and scores.max() <= 10
    assert abs(residual.mean()) < 0.1
    assert abs(residual.std() - np.sqrt(1.5**2 + 1 / 12)) < 0.1  # Gaussian plus rounding


def test_miss_rate_matches_setting() -> None:
    scores, _ = scores_over("sim:miss=0.3,seed=2", [0.8] * 10, 400)
    assert set(np.unique(scores)) == {0, 8}
    assert abs((scores == 0).mean() - 0.3) < 0.03


def test_useless_credit_rate_and_range() -> None:
    scores, _ = scores_over("sim:useless_credit=0.2,seed=3", [0.0] * 10, 400)
    credited = scores[scores > 0]
    assert abs((scores > 0).mean() - 0.2) < 0.03
    assert set(np.unique(credited)) == {3, 4, 5, 6, 7}


def test_malformed_rate_and_kinds() -> None:
    lvlm = make_lvlm("sim:malformed=0.25,seed=4")
    kinds = {"ok": 0, "truncated": 0, "count": 0, "prose": 0}
    for i in range(1200):
        text = lvlm.chat(request("scores", [0.5, 0.0, 1.0], goal=f"g{i}")).text
        if not text.lstrip().startswith("{"):
            kinds["prose"] += 1
            continue
        try:
            scores = json.loads(text)["scores"]
        except ValueError:
            kinds["truncated"] += 1
            continue
        kinds["ok" if len(scores) == 3 else "count"] += 1
    assert abs(1 - kinds["ok"] / 1200 - 0.25) < 0.04
    for kind in ("truncated", "count", "prose"):
        assert 0.05 < kinds[kind] / 1200 < 0.12  # each a third of the malformed ones


def test_analysis_is_one_numbered_line_per_action_and_agrees_with_scores() -> None:
    lvlm = make_lvlm("sim:miss=0.5,noise=0.5,seed=5")
    actions = [
        "GotoLocation fridge",
        "OpenObject fridge",
        "PickupObject apple",
        "GotoLocation sofa",
        "HeatObject apple",
    ]
    contributions = [0.2, 0.4, 0.6, 0.0, 1.0]
    wordings: set[str] = set()
    for i in range(30):
        goal = f"heat apple {i}"
        analysis = lvlm.chat(request("analysis", contributions, goal, actions)).text
        scores = json.loads(lvlm.chat(request("scores", contributions, goal, actions)).text)["scores"]
        lines = analysis.splitlines()
        assert lines[0] == SIM_DISCLAIMER and goal in lines[1]
        numbered = [ln for ln in lines if re.match(r"^\d+\. ", ln)]
        assert len(numbered) == len(actions)
        for k, (line, action, score) in enumerate(zip(numbered, actions, scores, strict=True), start=1):
            assert line.startswith(f"{k}. {action}: ")
            sentence = line.split(": ", 1)[1]
            wordings.add(sentence)
            bucket = "none" if score == 0 else "low" if score <= 3 else "mid" if score <= 6 else "high"
            assert sentence in _WORDING[bucket]
    assert len(wordings) >= 8  # varied natural wording


def test_malformed_analysis_is_cut_short() -> None:
    full = make_lvlm("sim:profile=exact,seed=6").chat(request("analysis", [0.5] * 6)).text
    text = make_lvlm("sim:malformed=1,seed=6").chat(request("analysis", [0.5] * 6)).text
    assert text.startswith(SIM_DISCLAIMER) and full.startswith(text)
    assert 0.3 * len(full) - 1 <= len(text) < 0.8 * len(full) + 1


def test_deterministic_given_seed() -> None:
    reqs = [request("scores", [0.3, 0.0, 0.9], goal=f"g{i}") for i in range(20)]
    spec = "sim:noise=2,miss=0.2,useless_credit=0.2,malformed=0.2,seed=7"
    a = [r.text for r in make_lvlm(spec).chat_many(reqs)]
    b = [make_lvlm(spec).chat(m).text for m in reqs]
    c = [r.text for r in make_lvlm(spec.replace("seed=7", "seed=8")).chat_many(reqs)]
    assert a == b and a != c


def test_independent_of_call_order_and_concurrency() -> None:
    spec = "sim:noise=2,miss=0.2,useless_credit=0.2,malformed=0.2,seed=9,latency=0.01"
    reqs = [request("scores", [0.3, 0.0, 0.9, 0.5], goal=f"g{i}") for i in range(40)]
    forward = {i: r.text for i, r in enumerate(make_lvlm(spec, max_concurrency=16).chat_many(reqs))}
    order = list(range(40))
    random.Random(0).shuffle(order)
    lvlm = make_lvlm(spec, max_concurrency=16)
    lvlm.chat([{"role": "user", "content": "warm up with something else"}])
    shuffled = asyncio.run(lvlm.achat_many([reqs[i] for i in order]))
    assert {i: r.text for i, r in zip(order, shuffled, strict=True)} == forward


def test_the_last_privileged_part_answers() -> None:
    first = request("analysis", [1.0, 0.0])
    second = request("scores", [1.0, 0.0])
    convo = [*first, {"role": "assistant", "content": "1. ...\n2. ..."}, *second]
    assert make_lvlm("sim:profile=exact").chat(convo).text == '{"scores": [10, 0]}'


def test_no_ground_truth_fallback_and_images_ignored() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    r = make_lvlm("sim").chat(
        [{"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image", "image": image}]}]
    )
    assert r.text == NO_GROUND_TRUTH and "simulated" in r.text and r.usage.images == 1 and r.usage.simulated


def test_unknown_task_and_bad_data_are_errors() -> None:
    lvlm = make_lvlm("sim")
    bad = [{"role": "user", "content": [{"type": "privileged", "data": {"task": "rgvml"}}]}]
    with pytest.raises(ValueError, match="Did you mean 'rgvlm'"):
        lvlm.chat(bad)
    with pytest.raises(ValueError, match="contributions"):
        lvlm.chat(request("scores", [0.5, 1.5]))
    with pytest.raises(ValueError, match="stage"):
        lvlm.chat(request("rank", [0.5]))
    with pytest.raises(ValueError, match="miss"):
        make_lvlm("sim:miss=2")


def test_register_a_task() -> None:
    def success(req: SimRequest) -> str:
        truth = bool(req.data["success"])
        flipped = req.rng.random() < req.settings.noise
        return "yes" if truth != flipped else "no"

    register_sim_task("test_success", success)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_sim_task("test_success", success)
        msgs = [
            {
                "role": "user",
                "content": [{"type": "privileged", "data": {"task": "test_success", "success": True}}],
            }
        ]
        assert make_lvlm("sim:profile=exact").chat(msgs).text == "yes"
        answers = [
            make_lvlm("sim:noise=0.5")
            .chat([{"role": "user", "content": [{"type": "text", "text": str(i)}, *msgs[0]["content"]]}])
            .text
            for i in range(200)
        ]
        assert 0.35 < answers.count("no") / 200 < 0.65
    finally:
        _SIM_TASKS.pop("test_success")


def test_max_tokens_truncates() -> None:
    r = make_lvlm("sim").chat(request("analysis", [0.5] * 5), max_tokens=10)
    assert len(r.text) == 40 and r.finish_reason == "length"


def test_latency_sync_and_async() -> None:
    lvlm = make_lvlm("sim:latency=0.2", max_concurrency=8)
    start = time.perf_counter()
    r = lvlm.chat(request("scores", [1.0]))
    assert 0.2 <= time.perf_counter() - start < 0.4 and r.usage.latency_s >= 0.2
    start = time.perf_counter()
    rs = lvlm.chat_many([request("scores", [1.0], goal=str(i)) for i in range(16)])
    elapsed = time.perf_counter() - start
    assert all(isinstance(x, LVLMResponse) for x in rs)
    assert 0.4 <= elapsed < 0.7  # 16 calls, 8 at a time, 0.2 s each
    snap = lvlm.usage.snapshot()
    assert snap.calls == 17 and snap.simulated_calls == 17 and snap.cost_usd == 0.0


def test_default_profile_is_an_imperfect_judge_and_exact_equals_the_ground_truth() -> None:
    """``sim`` judges with the documented default errors; the all-zero spec and ``profile=exact`` do not."""
    from rgvlm_gym.lvlm.sim import SIM_PROFILES

    contributions = [0.0, 0.5, 1.0, 0.0, 0.5, 0.5, 1.0, 0.0, 0.0, 0.5]
    truth = 10 * np.asarray(contributions)
    for spec in ("sim:noise=0,miss=0,useless_credit=0,malformed=0", "sim:profile=exact"):
        got, bad = scores_over(spec, contributions, 100)
        assert bad == 0 and (got == truth).all()
    lvlm = make_lvlm("sim")
    assert lvlm.profile == "default" and lvlm.settings.noise == SIM_PROFILES["default"]["noise"] > 0
    assert lvlm.spec == "sim:profile=default,seed=0" and make_lvlm(lvlm.spec).settings == lvlm.settings
    got, bad = scores_over("sim", contributions, 400)
    assert 0 < bad < 0.1 * 400  # malformed answers at about the documented 3 %
    default_err = np.abs(got - truth).mean()
    weak, _ = scores_over("sim:profile=weak", contributions, 400)
    assert 0.5 < default_err < np.abs(weak - truth).mean()  # imperfect, and better than the weak judge
    assert make_lvlm("sim:noise=2").profile == "exact"  # rates given: exact plus those rates
    assert make_lvlm("sim:profile=default,noise=0").settings.miss == SIM_PROFILES["default"]["miss"]
    with pytest.raises(ValueError, match="Did you mean 'exact'"):
        make_lvlm("sim:profile=exakt")

"""RG-VLM labeler: the two-stage conversation, frame budget, validation and repair, label quality (sim)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from rgvlm_gym.lvlm import LVLMRequestError, SimLVLM, make_lvlm
from rgvlm_gym.lvlm.base import privileged_data
from rgvlm_gym.lvlm.sim import SIM_DISCLAIMER
from rgvlm_gym.rewards import (
    OracleLabeler,
    RGVLMLabeler,
    SuccessDetectorLabeler,
    label_quality,
    oracle_contributions,
    parse_scores,
    plan_parts,
)
from rgvlm_gym.rewards.rgvlm import analyses_by_step
from rgvlm_gym.rewards.testing import toy_episode


class RecordingSim(SimLVLM):
    """The simulated LVLM, keeping every conversation it was asked."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.requests: list[list[dict[str, Any]]] = []

    def _chat(self, messages, gen):
        self.requests.append(messages)
        return super()._chat(messages, gen)

    async def _achat(self, messages, gen):
        self.requests.append(messages)
        return await super()._achat(messages, gen)


def images_of(messages) -> list[np.ndarray]:
    return [p["image"] for m in messages for p in m["content"] if p["type"] == "image"]


def text_of(message) -> str:
    return "\n".join(p["text"] for p in message["content"] if p["type"] == "text")


# ----------------------------------------------------------------------------- conversation


def test_two_stage_conversation_in_one_dialogue(episodes) -> None:
    ep = next(e for e in episodes if 6 <= len(e) <= 15)
    sim = RecordingSim(noise=0.0, seed=0)
    result = RGVLMLabeler(sim, frame_budget=16).label(ep)
    assert result.labeled and result.calls == 2 and len(sim.requests) == 2 and sim.usage.snapshot().calls == 2
    first, second = sim.requests
    # Stage 1: system + user with the goal, every frame in order and every action between them.
    assert [m["role"] for m in first] == ["system", "user"]
    user = first[1]
    assert ep.instruction in text_of(user)
    shown = images_of(first)
    assert len(shown) == len(ep) + 1
    assert all(np.array_equal(a, b) for a, b in zip(shown, ep.frames, strict=True))
    for k, name in enumerate(ep.action_names, start=1):
        assert f"Step {k}: {name}" in text_of(user)
    # Actions sit between the frames they connect: image, "Step 1", image, "Step 2", ...
    kinds = [("image" if p["type"] == "image" else p.get("text", "")) for p in user["content"] if p["type"] != "privileged"]
    image_positions = [i for i, k in enumerate(kinds) if k == "image"]
    for k in range(len(ep)):
        between = "\n".join(kinds[image_positions[k] + 1 : image_positions[k + 1]])
        assert f"Step {k + 1}: " in between
    (gt1,) = privileged_data(first)
    assert gt1["stage"] == "analysis" and gt1["actions"] == ep.action_names
    assert gt1["contributions"] == pytest.approx(oracle_contributions(ep).tolist())
    # Stage 2 continues the same conversation: stage 1 verbatim, its answer as the assistant turn.
    assert second[:2] == first
    assert second[2]["role"] == "assistant" and text_of(second[2]) == result.texts[0]["text"]
    assert result.texts[0]["text"].startswith(SIM_DISCLAIMER)  # the sim says it is simulated
    assert second[3]["role"] == "user" and '{"scores"' in text_of(second[3])
    assert privileged_data(second)[-1]["stage"] == "scores"
    assert len(images_of(second)) == len(ep) + 1  # the frames are not sent twice
    # noise 0: score = 10 * contribution, reward = score / 10
    np.testing.assert_array_equal(result.rewards, oracle_contributions(ep))
    np.testing.assert_array_equal(result.raw_scores, 10 * oracle_contributions(ep))
    assert result.simulated and result.meta["prompt"] == "rgvlm_v1"


def test_analysis_lines_map_to_steps(episodes) -> None:
    ep = next(e for e in episodes if len(e) >= 5)
    result = RGVLMLabeler("sim:noise=0,seed=0").label(ep)
    lines = analyses_by_step(result, len(ep))
    assert all(lines) and len(lines) == len(ep)


def test_empty_episode_costs_nothing(episodes) -> None:
    ep = episodes[0]
    from dataclasses import replace

    empty = replace(
        ep, actions=ep.actions[:0], action_names=[], frames=ep.frames[:1], images=ep.images[:1], rewards=ep.rewards[:0],
        terminations=ep.terminations[:0], truncations=ep.truncations[:0], progress=ep.progress[:1],
        cost_to_go=ep.cost_to_go[:1], expert_actions=ep.expert_actions[:1], action_errors=[],
    )  # fmt: skip
    sim = make_lvlm("sim")
    result = RGVLMLabeler(sim).label(empty)
    assert result.labeled and result.rewards.shape == (0,) and sim.usage.snapshot().calls == 0


# ----------------------------------------------------------------------------- frame budget


def test_plan_parts_cover_every_action_once() -> None:
    for n in [1, 2, 5, 15, 16, 17, 40, 101]:
        for budget in [2, 3, 8, 16]:
            for mode in ["segments", "subsample"]:
                parts = plan_parts(n, budget, mode)
                steps = [i for p in parts for i in range(p.first, p.stop)]
                assert steps == list(range(n))
                for p in parts:
                    assert len(p.frames) <= budget and p.frames[0] == p.first and p.frames[-1] == p.stop
    with pytest.raises(ValueError, match="frame_budget"):
        plan_parts(5, 1)
    with pytest.raises(ValueError, match="long_episodes"):
        plan_parts(5, 4, "chunks")


@pytest.mark.parametrize("mode", ["segments", "subsample"])
def test_long_episode_within_frame_budget(long_episode, mode: str) -> None:
    ep, budget = long_episode, 6
    sim = RecordingSim(noise=0.0, seed=1)
    result = RGVLMLabeler(sim, frame_budget=budget, long_episodes=mode).label(ep)
    n_parts = len(plan_parts(len(ep), budget, mode))
    assert result.labeled and result.calls == 2 * n_parts == len(sim.requests)
    assert (n_parts > 1) == (mode == "segments")
    assert all(len(images_of(r)) <= budget for r in sim.requests)
    np.testing.assert_array_equal(result.rewards, oracle_contributions(ep))  # every action scored once
    stage1 = [r for r in sim.requests if len(r) == 2]
    listed = [line for r in stage1 for line in text_of(r[1]).splitlines() if line.startswith("Step ")]
    assert sorted(listed, key=lambda s: int(s.split()[1].rstrip(":"))) == [
        f"Step {k}: {a}" for k, a in enumerate(ep.action_names, start=1)
    ]
    if mode == "segments":
        assert "part 2 of" in text_of(stage1[1][1]) and "already taken" in text_of(stage1[1][1])


def test_async_segments_run_concurrently(long_episode) -> None:
    sim = make_lvlm("sim:noise=0,latency=0.1,seed=0")
    labeler = RGVLMLabeler(sim, frame_budget=4)
    n_parts = len(plan_parts(len(long_episode), 4))
    start = time.perf_counter()
    (result,) = labeler.label_many([long_episode])
    elapsed = time.perf_counter() - start
    assert result.labeled and result.calls == 2 * n_parts and n_parts >= 5
    assert elapsed < 0.1 * 2 * n_parts / 2  # parts' calls overlap (sequential would take 0.2 s per part)


# ----------------------------------------------------------------------------- validation and repair


@pytest.mark.parametrize(
    ("text", "n", "expected", "error"),
    [
        ('{"scores": [0, 5, 10]}', 3, [0.0, 5.0, 10.0], ""),
        ('```json\n{"scores": [1, 2.5]}\n```', 2, [1.0, 2.5], ""),
        ('Sure! Here they are: {"scores": [3, 4]} Hope this helps.', 2, [3.0, 4.0], ""),
        ('{"scores": [1, 2, 3]}', 2, None, "expected 2 scores (one per action), got 3"),
        ('{"scores": [1, true]}', 2, None, "score 2 is True, not a number"),
        ('{"scores": ["7", 1]}', 2, None, "score 1 is '7', not a number"),
        ('{"scores": [1, -1]}', 2, None, "score 2 is -1, outside 0..10"),
        ('{"scores": [1, 10.5]}', 2, None, "score 2 is 10.5, outside 0..10"),
        ('{"scores": [NaN, 1]}', 2, None, "score 1 is nan, not a number"),
        ('{"score": [1, 2]}', 2, None, "the JSON object has no 'scores' key (keys: ['score'])"),
        ('{"scores": {"a": 1}}', 1, None, "'scores' is a dict, not a list"),
        ("[1, 2]", 2, None, "no JSON object found in the answer"),
        ("The first action was the most useful.", 2, None, "no JSON object found in the answer"),
        ("", 1, None, "no JSON object found in the answer"),
    ],
)
def test_parse_scores(text: str, n: int, expected, error: str) -> None:
    assert parse_scores(text, n) == (expected, error)


def test_malformed_answers_leave_the_episode_unlabeled_after_one_repair(episodes) -> None:
    ep = next(e for e in episodes if len(e) >= 4)
    sim = RecordingSim(noise=0.0, malformed=1.0, seed=0)
    result = RGVLMLabeler(sim).label(ep)
    assert result.status == "invalid" and result.rewards is None and not result.labeled
    assert "after one repair prompt" in result.reason
    assert result.calls == 3 == sim.usage.snapshot().calls  # analysis, scores, exactly one repair
    assert [t["stage"] for t in result.texts] == ["analysis", "scores", "repair"]
    repair = sim.requests[2]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert text_of(repair[4]) == result.texts[1]["text"]  # the bad answer is shown back
    assert "could not be used" in text_of(repair[5])


def test_repair_recovers_some_episodes(episodes) -> None:
    labeler = RGVLMLabeler("sim:noise=0,malformed=0.5,seed=2")
    results = labeler.label_many(episodes[:30])
    repaired = [r for r in results if r.labeled and r.meta.get("repaired_parts")]
    invalid = [r for r in results if r.status == "invalid"]
    assert repaired and invalid  # both outcomes happen at 50 % malformed answers
    for ep, r in zip(episodes, results, strict=False):
        n_parts, n_repaired = len(r.meta["parts"]), len(r.meta.get("repaired_parts", []))
        assert r.calls == 2 * n_parts + n_repaired  # at most one repair per part
        if r.labeled:  # a repaired answer is as good as a first-time one: never invented, never clipped
            np.testing.assert_array_equal(r.rewards, oracle_contributions(ep))
        else:
            assert n_repaired >= 1 and r.rewards is None


def test_request_failure_is_an_error_not_a_label(episodes) -> None:
    class Failing(SimLVLM):
        def _chat(self, messages, gen):
            raise LVLMRequestError(model="sim", url="sim://", attempts=3, status=503, reason="overloaded")

    result = RGVLMLabeler(Failing()).label(episodes[0])
    assert result.status == "error" and result.rewards is None and "503" in result.reason


def test_bad_episodes_raise_clear_errors(episodes) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="frames is None"):
        RGVLMLabeler("sim").label(replace(episodes[0], frames=None))
    with pytest.raises(ValueError, match="frames to be uint8"):
        RGVLMLabeler("sim").label(replace(episodes[0], frames=episodes[0].frames[:-1]))
    with pytest.raises(ValueError, match="judges from ground-truth progress"):
        RGVLMLabeler("sim").label(replace(episodes[0], progress=np.zeros(0, np.int64)))
    with pytest.raises(ValueError, match="frame_budget"):
        RGVLMLabeler("sim", frame_budget=1)
    with pytest.raises(ValueError, match="Did you mean 'rgvlm_v1'"):
        RGVLMLabeler("sim", prompt="rgvlm_v2")


# ----------------------------------------------------------------------------- label quality (simulated)


def test_label_quality_against_the_oracle_falls_with_noise(episodes) -> None:
    oracle = [OracleLabeler().label(ep).rewards for ep in episodes]
    groups = {
        "task_type": [ep.task["task_type"] for ep in episodes],
        "n_subtasks": [ep.n_subtasks for ep in episodes],
    }
    spearmans = {}
    for noise in [0.0, 1.0, 2.0, 4.0]:
        labeler = RGVLMLabeler(f"sim:noise={noise},seed=0")
        results = labeler.label_many(episodes, concurrency=16)
        assert all(r.labeled and r.calls == 2 * len(r.meta["parts"]) and r.simulated for r in results)
        report = label_quality([r.rewards for r in results], oracle, groups, note="labels: simulated LVLM")
        spearmans[noise] = report.overall.spearman
        if noise == 0.0:
            for ep, r, o in zip(episodes, results, oracle, strict=True):
                np.testing.assert_array_equal(r.rewards, o)
                np.testing.assert_array_equal(r.raw_scores, 10 * oracle_contributions(ep))
            assert report.overall.spearman >= 0.9 and report.overall.pearson >= 0.9
            assert set(report.by("task_type")) == set(groups["task_type"])
            print(f"\n[simulated LVLM, noise {noise}]\n{report.table()}")
    print("simulated LVLM: label-vs-oracle Spearman by noise:", {k: round(v, 3) for k, v in spearmans.items()})
    assert spearmans[0.0] > spearmans[1.0] > spearmans[2.0] > spearmans[4.0]


def test_success_detector_baseline(episodes) -> None:
    sim = make_lvlm("sim:noise=0,seed=0")
    results = SuccessDetectorLabeler(sim).label_many(episodes)
    for ep, r in zip(episodes, results, strict=True):
        assert r.labeled and r.calls == len(ep) and r.simulated
        expected = (ep.progress[1:] >= ep.n_subtasks).astype(np.float32)
        np.testing.assert_array_equal(r.rewards, expected)
    oracle = [oracle_contributions(ep) for ep in episodes]
    success_q = label_quality([r.rewards for r in results], oracle).overall.spearman
    rgvlm_q = label_quality(
        [r.rewards for r in RGVLMLabeler("sim:noise=1,seed=0").label_many(episodes)], oracle
    ).overall.spearman
    print(f"\nsimulated LVLM: Spearman vs oracle: success detector {success_q:.3f}, RG-VLM (noise 1) {rgvlm_q:.3f}")
    assert rgvlm_q > success_q  # a yes/no detector says nothing about partial progress


def test_success_detector_repair_and_first_only() -> None:
    ep = toy_episode()
    bad = SuccessDetectorLabeler("sim:malformed=1,seed=0").label(ep)
    assert bad.status == "invalid" and bad.calls == 2 * len(ep) and "after one repair prompt" in bad.reason
    noisy = SuccessDetectorLabeler("sim:useless_credit=1,seed=0", first_only=True).label(ep)
    assert noisy.rewards.sum() == 1.0  # every frame judged a success, only the first one rewarded


# ----------------------------------------------------------------------------- the real HTTP path


def test_openai_compatible_path_strips_ground_truth(fault_server_rewards, episodes) -> None:
    server = fault_server_rewards
    ep = next(e for e in episodes if 3 <= len(e) <= 8)
    scores = [7] * len(ep)
    server.set_script([("ok", "1. It walked to the counter. 2. ..."), ("ok", json.dumps({"scores": scores}))])
    lvlm = make_lvlm(f"openai:fault-model@{server.base_url}")
    lvlm.max_retries = 0
    result = RGVLMLabeler(lvlm).label(ep)
    assert result.labeled and not result.simulated and result.calls == 2
    np.testing.assert_allclose(result.rewards, 0.7)
    assert len(server.requests) == 2
    body1, body2 = server.requests[0][2], server.requests[1][2]
    for body in (body1, body2):
        raw = json.dumps(body)
        assert "privileged" not in raw and "contributions" not in raw
    images = [p for m in body1["messages"] if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url"]
    assert len(images) == len(ep) + 1
    assert body2["messages"][:2] == body1["messages"]
    assert body2["messages"][2] == {"role": "assistant", "content": "1. It walked to the counter. 2. ..."}
    assert body1["temperature"] == 0.0
    # nonsense twice: one repair, then unlabeled
    server.set_script([("ok", "analysis"), ("ok", "I'd say mostly good."), ("ok", '{"scores": [1]}')])
    result = RGVLMLabeler(lvlm).label(ep)
    assert result.status == "invalid" and len(server.requests) == 3 and result.calls == 3


@pytest.fixture
def fault_server_rewards(monkeypatch: pytest.MonkeyPatch):
    from _rewards_helpers import lvlm_servers

    FaultServer = lvlm_servers().FaultServer
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    server = FaultServer()
    yield server
    server.close()

"""The LVLM baseline labelers (gvl, rlvlmf, rating) over a real OpenAI-compatible HTTP server on localhost
(the fault-injection server of the LVLM tests): images go out, ground truth never does, answers are parsed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rgvlm_gym.lvlm import make_lvlm
from rgvlm_gym.rewards import GVLLabeler, RatingLabeler, RLVLMFLabeler
from rgvlm_gym.rewards.testing import toy_episode


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    from _rewards_helpers import lvlm_servers

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    srv = lvlm_servers().FaultServer()
    yield srv
    srv.close()


def _lvlm(server):
    lvlm = make_lvlm(f"openai:fault-model@{server.base_url}")
    lvlm.max_retries = 0
    return lvlm


def _images(body: dict) -> int:
    return sum(1 for m in body["messages"] if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url")


def _no_ground_truth(server) -> None:
    for _, _, body in server.requests:
        raw = json.dumps(body)
        assert "privileged" not in raw and "contributions" not in raw


def test_gvl_over_http(server) -> None:
    ep = toy_episode()
    lab = GVLLabeler(_lvlm(server))
    server.set_script([("ok", "Frame 1: 30%\nFrame 2: 90%\nFrame 3: 60%")])
    res = lab.label(ep)
    assert res.labeled and res.calls == 1 and not res.simulated
    shown = res.meta["shown"]
    pct = dict(zip(shown, [30, 90, 60], strict=True))
    assert np.allclose(res.meta["values"], [0.0, pct[1] / 100, pct[2] / 100, pct[3] / 100])
    (body,) = [b for _, _, b in server.requests]
    assert _images(body) == 4  # the reference frame and the three shuffled ones
    _no_ground_truth(server)
    server.set_script([("ok", "about half done"), ("ok", "no idea")])
    bad = GVLLabeler(_lvlm(server), seed=1).label(ep)
    assert bad.status == "invalid" and bad.calls == 2


@pytest.mark.parametrize("cls, verdict", [(RLVLMFLabeler, "1"), (RatingLabeler, "Rating: good")])
def test_feedback_labelers_over_http(server, cls, verdict) -> None:
    server.set_script([("ok", verdict)])  # every answer, analysis and verdict alike
    lab = cls(_lvlm(server), queries_per_episode=2, epochs=5, segment=1)
    lab.fit([toy_episode(i) for i in range(3)])
    assert lab.fit_report["queries"] == 6 and lab.fit_report["ok"] == 6
    assert lab.extra_cost()["calls"] == 12 == len(server.requests)  # two stages per query
    for _, _, body in server.requests:
        assert _images(body) == (2 if cls is RLVLMFLabeler else 1)
    _no_ground_truth(server)
    res = lab.label(toy_episode())
    assert res.labeled and res.rewards.shape == (3,) and not res.simulated

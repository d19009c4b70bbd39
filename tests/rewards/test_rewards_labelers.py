"""Sparse / oracle / combined labelers, labeler configs, the online reward wrapper, label quality, prompts."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from _rewards_helpers import mixed_policy

from rgvlm_gym.lvlm import SimLVLM
from rgvlm_gym.rewards import (
    PROMPT_SHA256,
    PROMPT_VERSION,
    CombinedLabeler,
    Labeler,
    OracleLabeler,
    RGVLMLabeler,
    RGVLMRewardWrapper,
    SparseLabeler,
    SuccessDetectorLabeler,
    label_quality,
    load_prompts,
    make_labeler,
    oracle_contributions,
    registered_labelers,
    rollout,
)
from rgvlm_gym.rewards.prompts import PromptTemplate, prompts_dir
from rgvlm_gym.rewards.quality import pearson, rankdata, spearman

# ----------------------------------------------------------------------------- sparse, oracle, combined


def _ideal(progress, costs, experts, actions, errors) -> np.ndarray:
    """The dense oracle written out step by step: 1 for a sub-task, 0.5 for getting closer, else 0."""
    out = []
    for t, a in enumerate(actions):
        if progress[t + 1] > progress[t]:
            out.append(1.0)
        elif (min(costs[t], costs[t + 1]) >= 0 and costs[t + 1] < costs[t]) or (not errors[t] and a == experts[t]):
            out.append(0.5)
        else:
            out.append(0.0)
    return np.asarray(out, dtype=np.float32)


def test_sparse_and_oracle(episodes) -> None:
    for ep in episodes:
        np.testing.assert_array_equal(SparseLabeler().label(ep).rewards, ep.rewards)
        oracle = OracleLabeler().label(ep).rewards
        expected = _ideal(ep.progress, ep.cost_to_go, ep.expert_actions, ep.actions, ep.action_errors)
        np.testing.assert_array_equal(oracle, expected)
        assert oracle.dtype == np.float32 and set(np.unique(oracle)) <= {0.0, 0.5, 1.0}
        subtask = make_labeler("oracle_subtask").label(ep).rewards
        np.testing.assert_array_equal(subtask, np.clip(np.diff(ep.progress), 0, 1))
        # the dense oracle credits every sub-task the indicator does, and more
        assert (oracle >= subtask).all()
    assert sum(ep.success for ep in episodes) == sum(SparseLabeler().label(ep).rewards.sum() for ep in episodes)
    assert any((OracleLabeler().label(ep).rewards == 0.5).any() for ep in episodes)


def test_oracle_is_positive_on_expert_steps_and_zero_on_no_ops(env) -> None:
    u = env.unwrapped
    rng = np.random.default_rng(0)
    for i in range(40):
        ep = rollout(env, "expert", seed=i, options={"task_index": i % u.num_tasks})
        oracle = OracleLabeler().label(ep).rewards
        assert ep.success and (oracle > 0).all(), (i, ep.action_names, oracle)
        # the same task with no-ops spliced in: an invalid action, and the first walk done twice
        obs, info = env.reset(seed=i, options={"task_index": i % u.num_tasks})
        plan = u.expert_plan()
        invalid = int(rng.choice(np.flatnonzero(info["action_mask"] == 0)))
        ep2 = rollout(env, [invalid, plan[0], plan[0], *plan[1:]], seed=i, options={"task_index": i % u.num_tasks})
        labels = OracleLabeler().label(ep2).rewards
        assert ep2.action_errors[0] and not ep2.action_errors[2] and ep2.success
        assert labels[0] == 0.0 and labels[1] > 0 and labels[2] == 0.0 and (labels[3:] > 0).all()


def test_combined_sparse_plus_lam_rgvlm(episodes) -> None:
    labeler = CombinedLabeler(base="sparse", dense=RGVLMLabeler("sim:noise=0,seed=0"), lam=0.3)
    results = labeler.label_many(episodes[:10])
    for ep, r in zip(episodes, results, strict=False):
        np.testing.assert_allclose(r.rewards, ep.rewards + 0.3 * oracle_contributions(ep), rtol=1e-6)
        assert r.simulated and r.calls == 2 * len(r.meta["dense_meta"]["parts"])
        assert r.meta["base"] == ep.rewards.tolist()
        np.testing.assert_array_equal(r.raw_scores, 10 * oracle_contributions(ep))
        n_parts = len(r.meta["dense_meta"]["parts"])
        assert [t["stage"] for t in r.texts] == ["analysis"] * n_parts + ["scores"] * n_parts


def test_combined_normalisation(episodes) -> None:
    ep = next(e for e in episodes if oracle_contributions(e).sum() >= 2)
    dense = oracle_contributions(ep)
    by_sum = CombinedLabeler(dense="oracle", lam=2.0, normalize="sum").label(ep).rewards
    np.testing.assert_allclose(by_sum - ep.rewards, 2.0 * dense / dense.sum(), rtol=1e-6)
    success = SuccessDetectorLabeler("sim:useless_credit=0.5,seed=1")
    by_max = CombinedLabeler(dense=success, lam=1.0, normalize="max").label(ep).rewards
    assert (by_max - ep.rewards).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalize"):
        CombinedLabeler(normalize="zscore")
    with pytest.raises(ValueError, match="lam"):
        CombinedLabeler(lam=-1.0)


def test_combined_when_the_dense_labeler_fails(episodes) -> None:
    ep = episodes[0]
    unlabeled = CombinedLabeler(dense=RGVLMLabeler("sim:malformed=1")).label(ep)
    assert unlabeled.status == "invalid" and unlabeled.rewards is None and unlabeled.calls == 3
    fallback = CombinedLabeler(dense=RGVLMLabeler("sim:malformed=1"), fallback="base").label(ep)
    assert fallback.labeled and "invalid" in fallback.meta["fallback"]
    np.testing.assert_array_equal(fallback.rewards, ep.rewards)


def all_labelers(tmp_path: Path) -> list[Labeler]:
    return [
        SparseLabeler(),
        OracleLabeler(),
        RGVLMLabeler("sim:noise=1.5,seed=4", frame_budget=5, long_episodes="subsample", json_mode=True),
        SuccessDetectorLabeler("sim:noise=2,seed=1", first_only=True),
        CombinedLabeler(base="sparse", dense=RGVLMLabeler("sim:noise=1,seed=2", frame_budget=4), lam=0.25, normalize="max"),
        CombinedLabeler(dense="oracle", lam=2.0, fallback="base"),
    ]


def test_labeler_config_round_trip(tmp_path: Path, episodes) -> None:
    assert {"sparse", "oracle", "rgvlm", "success", "combined"} <= set(registered_labelers())
    ep = next(e for e in episodes if len(e) >= 8)
    for labeler in all_labelers(tmp_path):
        cfg = json.loads(json.dumps(labeler.config))  # JSON-able
        rebuilt = make_labeler(cfg)
        assert type(rebuilt) is type(labeler) and rebuilt.config == labeler.config
        a, b = labeler.label(ep), rebuilt.label(ep)
        assert a.status == b.status
        np.testing.assert_array_equal(a.rewards, b.rewards)
    cached = make_labeler({"type": "rgvlm", "params": {"lvlm": "sim"}}, cache=tmp_path / "c.sqlite")
    assert cached.cache is not None and "cache" not in json.dumps(cached.config)
    with pytest.raises(ValueError, match="Did you mean 'rgvlm'"):
        make_labeler("rgvml")


def test_configs_carry_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from rgvlm_gym.lvlm import make_lvlm

    lvlm = make_lvlm({"type": "openai", "params": {"model": "gpt-4o", "api_key": "sk-very-secret"}})
    labeler = RGVLMLabeler(lvlm)
    assert "sk-very-secret" not in json.dumps(labeler.config) and "sk-very-secret" not in repr(labeler)


# ----------------------------------------------------------------------------- the online wrapper


def test_wrapper_episode_mode(env) -> None:
    rng = np.random.default_rng(5)
    lam = 0.5
    wrapped = RGVLMRewardWrapper(env, RGVLMLabeler("sim:noise=0,seed=0"), mode="episode", lam=lam)
    for i in range(3):
        obs, info = wrapped.reset(seed=i, options={"task_index": i})
        policy = mixed_policy(env, rng, 0.3)
        rewards, progress = [], [info["subtask_progress"][0]]
        expert, actions, errors = [env.unwrapped.expert_cost_to_go()], [], []
        done = False
        while not done:
            actions.append(policy(obs, info))
            obs, reward, terminated, truncated, info = wrapped.step(actions[-1])
            rewards.append(reward)
            progress.append(info["subtask_progress"][0])
            expert.append(env.unwrapped.expert_cost_to_go())
            errors.append(info["action_error"])
            done = terminated or truncated
            if not done:
                assert "lvlm_rewards" not in info
        expected = _ideal(progress, [c for c, _ in expert], [a for _, a in expert], actions, errors)
        np.testing.assert_array_equal(info["lvlm_rewards"], expected)
        np.testing.assert_allclose(info["lvlm_combined_rewards"], np.asarray(rewards) + lam * expected)
        assert info["lvlm_label"].simulated and info["lvlm_label"].calls == 2 * len(info["lvlm_label"].meta["parts"])
        assert rewards == [float(r) for r in rewards] and max(rewards) <= 1.0  # step rewards are the env's


def test_wrapper_step_mode(env) -> None:
    sim = SimLVLM(noise=0.0, seed=0)
    seen: list[list[dict]] = []
    original = sim._chat

    def recording(messages, gen):
        seen.append(messages)
        return original(messages, gen)

    sim._chat = recording  # type: ignore[method-assign]
    lam, window = 2.0, 3
    wrapped = RGVLMRewardWrapper(env, RGVLMLabeler(sim), mode="step", lam=lam, window=window)
    obs, info = wrapped.reset(seed=0, options={"task_index": 5})
    plan = env.unwrapped.expert_plan()
    progress = [info["subtask_progress"][0]]
    deltas = []
    for t, a in enumerate(plan):
        obs, reward, terminated, truncated, info = wrapped.step(a)
        progress.append(info["subtask_progress"][0])
        # every step is the expert's: a sub-task earns 1, any other step half
        delta = 1.0 if progress[-1] > progress[-2] else 0.5
        deltas.append(delta)
        assert info["lvlm_reward"] == delta and info["lvlm_status"] == "ok" and info["lvlm_simulated"]
        assert reward == pytest.approx((1.0 if terminated else 0.0) + lam * delta)
        assert sim.usage.snapshot().calls == 2 * (t + 1)  # two calls per step
    assert terminated
    images = [sum(p["type"] == "image" for m in r for p in m["content"] if isinstance(m["content"], list)) for r in seen]
    assert max(images) == window + 1
    last_stage1 = seen[-2][1]["content"]
    text = " ".join(p["text"] for p in last_stage1 if p["type"] == "text")
    assert "already taken" in text and f"Step {len(plan)}: " in text  # earlier steps as text, global numbering
    np.testing.assert_array_equal(info["lvlm_rewards"], deltas)


def test_wrapper_spec_rebuilds_it(env) -> None:
    wrapped = RGVLMRewardWrapper(env, RGVLMLabeler("sim:noise=0,seed=0"), mode="step", lam=0.5, window=2)
    (spec,) = wrapped.spec.additional_wrappers
    assert spec.kwargs["labeler"] == {
        "type": "rgvlm",
        "params": {"lvlm": {"type": "sim", "params": {"profile": "exact", "seed": 0}}, "frame_budget": 16, "long_episodes": "segments", "prompt": PROMPT_VERSION},
    }
    rebuilt = gym.make(wrapped.spec)
    assert isinstance(rebuilt, RGVLMRewardWrapper) and rebuilt.mode == "step" and rebuilt.window == 2
    rebuilt.reset(seed=0, options={"task_index": 0})
    assert "lvlm_reward" in rebuilt.step(rebuilt.unwrapped.expert_plan()[0])[4]
    with pytest.raises(ValueError, match="mode"):
        RGVLMRewardWrapper(env, "oracle", mode="online")


def test_wrapper_with_the_oracle_matches_offline_labels(env) -> None:
    wrapped = RGVLMRewardWrapper(env, "oracle", mode="episode", lam=1.0)
    ep = rollout(env, "expert", seed=1, options={"task_index": 7})
    obs, info = wrapped.reset(seed=1, options={"task_index": 7})
    for a in ep.actions:
        obs, reward, terminated, truncated, info = wrapped.step(a)
    np.testing.assert_array_equal(info["lvlm_rewards"], OracleLabeler().label(ep).rewards)


# ----------------------------------------------------------------------------- label quality


def test_correlations_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 4, size=50).astype(float)  # many ties
        y = x + rng.normal(0, 1.5, size=50).round()
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
        assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic)
        np.testing.assert_allclose(rankdata(x), stats.rankdata(x))


def test_label_quality_groups_and_edge_cases() -> None:
    oracle = [np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([0.0, 0.0])]
    labels = [np.array([0.1, 0.9]), np.array([0.9, 0.1]), np.array([0.5, 0.5])]
    report = label_quality(labels, oracle, {"n_subtasks": [1, 1, 2]})
    assert report.overall.steps == 6 and report.by("n_subtasks")["1"].spearman == pytest.approx(1.0)
    assert np.isnan(report.by("n_subtasks")["2"].spearman)  # constant oracle: undefined, not 0
    assert "nan" in report.table()
    with pytest.raises(ValueError, match="one value per episode"):
        label_quality(labels, oracle, {"n_subtasks": [1, 2]})
    with pytest.raises(ValueError, match="shape"):
        label_quality([np.zeros(3), None, None], oracle)


# ----------------------------------------------------------------------------- prompts


def test_prompt_template_is_versioned_prose(tmp_path: Path) -> None:
    p = load_prompts()
    assert p.version == PROMPT_VERSION and p.sha256 == PROMPT_SHA256 and p.path.endswith("rgvlm_v1.md")
    assert "{\"scores\": [s_1, ..., s_n]}" in p.sections["scores_question"]
    text = (prompts_dir() / "rgvlm_v1.md").read_text()
    assert PromptTemplate.parse(text.replace("rgvlm-gym sends", "rgvlm-gym will send"), "x").sha256 == p.sha256
    assert PromptTemplate.parse(text.replace("expert judge", "judge"), "x").sha256 != p.sha256
    with pytest.raises(ValueError, match="lacks the sections"):
        PromptTemplate.parse(text.split("## scores_repair")[0], "broken")
    with pytest.raises(KeyError, match="did you mean 'scores_question'"):
        p.render("score_question")
    with pytest.raises(KeyError):
        p.render("scores_question", n_actions=3)  # a missing value is an error, never an empty slot

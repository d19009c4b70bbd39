"""The evaluation protocol: masked decoding for every algorithm, the completion metric and its intervals,
readable group keys, batching that does not change results, threads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import d3rlpy
import numpy as np
import pytest
import torch
from scipy import stats

from rgvlm_gym.data.embeddings import embed_instructions
from rgvlm_gym.envs.alfred_lite import action_vocabulary
from rgvlm_gym.rl import LanguageConditionedEncoderFactory
from rgvlm_gym.rl.algos import make_algo_config
from rgvlm_gym.rl.evaluation import (
    EvalEpisode,
    EvaluationReport,
    action_scores,
    d3rlpy_policy,
    evaluate,
    random_policy,
    t_interval,
)

ENV = {"num_tasks": 30, "subtasks": "1-2", "max_steps": 12}
N_ACTIONS = len(action_vocabulary())


def _algo(name: str, seed: int = 0):
    d3rlpy.seed(seed)
    encoder = LanguageConditionedEncoderFactory(filters=[[4, 8, 4], [8, 4, 2]], feature_size=32, language_feature_size=16)
    algo = make_algo_config(name, encoder_factory=encoder, batch_size=8).create()
    algo.create_impl(((3, 64, 64), (384,)), N_ACTIONS)
    return algo


@pytest.fixture(scope="module")
def observations():
    import gymnasium as gym

    import rgvlm_gym  # noqa: F401

    env = gym.make("rgvlm_gym/AlfredLite-v0", **ENV)
    obs, masks = [], []
    for i in range(6):
        o, info = env.reset(seed=i)
        obs.append(o)
        masks.append(info["action_mask"])
    return obs, np.stack(masks)


@pytest.mark.parametrize("name", ["iql", "cql", "bcq", "bc", "dqn"])
def test_scores_argmax_is_the_greedy_action_and_masks_pick_admissible_ones(name: str, observations) -> None:
    obs, masks = observations
    algo = _algo(name)
    policy = d3rlpy_policy(algo)
    x = [np.stack([o["image"] for o in obs]).transpose(0, 3, 1, 2).copy(), embed_instructions([o["instruction"] for o in obs])]
    scores = action_scores(algo, x)
    assert scores.shape == (len(obs), N_ACTIONS)
    np.testing.assert_array_equal(scores.argmax(axis=1), algo.predict(x))
    np.testing.assert_array_equal(policy(obs), algo.predict(x))
    chosen = policy(obs, masks=masks)
    assert all(masks[i, a] == 1 for i, a in enumerate(chosen))
    # the best admissible action: no admissible action scores higher than the chosen one
    masked = np.where(masks == 1, scores, -np.inf)
    np.testing.assert_allclose(scores[np.arange(len(obs)), chosen], masked.max(axis=1), rtol=1e-5)


def test_sampling_with_masks_stays_admissible(observations) -> None:
    obs, masks = observations
    policy = d3rlpy_policy(_algo("iql"), greedy=False, seed=1)
    for _ in range(5):
        chosen = policy(obs, masks=masks)
        assert all(masks[i, a] == 1 for i, a in enumerate(chosen))


def test_masked_evaluation_has_no_invalid_actions_and_says_so(tmp_path: Path) -> None:
    algo = _algo("iql")
    kw = {"episodes_per_k": 3, "seeds": (0,), "randomize": (False, True)}
    masked = evaluate(d3rlpy_policy(algo), ENV, **kw)
    unmasked = evaluate(d3rlpy_policy(algo), ENV, action_mask=False, **kw)
    assert masked.meta["action_mask"] is True and unmasked.meta["action_mask"] is False
    assert sum(e.invalid_actions for e in masked.episodes) == 0
    assert sum(e.invalid_actions for e in unmasked.episodes) > 0  # an untrained network picks invalid actions
    rand = evaluate(random_policy(0), ENV, **kw)
    assert sum(e.invalid_actions for e in rand.episodes) == 0

    csv_path, json_path = masked.write(tmp_path)
    header = next(csv.reader(csv_path.open()))
    assert {"task_id", "n_subtasks", "randomized", "success", "subtasks_done", "invalid_actions", "steps", "completion"} <= set(header)
    data = json.loads(json_path.read_text())  # strict JSON: no NaN
    assert data["meta"]["action_mask"] is True
    assert set(data["by_subtasks"]) == {"k=1, dataset", "k=2, dataset", "k=1, randomized", "k=2, randomized"}
    group = data["by_subtasks"]["k=2, randomized"]
    assert group["n_subtasks"] == 2 and group["randomized"] is True
    eps = [e for e in masked.episodes if e.n_subtasks == 2 and e.randomized]
    assert group["completion"]["mean"] == pytest.approx(np.mean([e.subtasks_done / 2 for e in eps]))
    assert all(key.endswith((", dataset", ", randomized")) for key in data["by_task_type"])


def test_batching_does_not_change_results() -> None:
    algo = _algo("cql")
    kw = {"episodes_per_k": 4, "seeds": (0, 1), "randomize": (False,)}
    one = evaluate(d3rlpy_policy(algo), ENV, batch_size=1, **kw)
    many = evaluate(d3rlpy_policy(algo), ENV, batch_size=5, **kw)
    assert one.episodes == many.episodes


def test_threads_are_honoured() -> None:
    previous = torch.get_num_threads()
    try:
        report = evaluate(random_policy(0), ENV, episodes_per_k=1, seeds=(0,), randomize=(False,), threads=1)
        assert torch.get_num_threads() == 1 and report.meta["threads"] == 1
    finally:
        torch.set_num_threads(previous)


def test_t_interval_matches_scipy_and_is_clipped() -> None:
    values = [0.2, 0.5, 0.5, 0.9, 1.0]
    m, lo, hi = t_interval(values, bounds=None)
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (lo, hi) == pytest.approx(ref)
    m, lo, hi = t_interval(values)
    assert lo >= 0.0 and hi == 1.0 and m == pytest.approx(0.62)
    assert t_interval([0.3]) == (0.3, 0.0, 1.0)


def _ep(k: int, done: int, success: bool, randomized: bool = False) -> EvalEpisode:
    return EvalEpisode(task_id="t", task_key="t/0", task_type="pick_and_place_simple", n_subtasks=k, randomized=randomized,
                       seed=0, success=success, gc=done / k, steps=10, expert_steps=5, plws=0.5 * success, invalid_actions=2,
                       subtasks_done=done)


def test_completion_is_subtasks_over_k_and_comes_first_in_the_table() -> None:
    report = EvaluationReport([_ep(4, 1, False), _ep(4, 3, False), _ep(4, 4, True), _ep(2, 0, False, True)], {})
    groups = report.breakdown(("randomized", "n_subtasks"))
    assert groups[(False, 4)]["completion"]["mean"] == pytest.approx((0.25 + 0.75 + 1.0) / 3)
    assert groups[(False, 4)]["invalid_action_rate"]["rate"] == pytest.approx(0.2)
    header = report.table().splitlines()[0]
    assert header.index("completion") < header.index("success")
    assert report.table().splitlines()[1].startswith("dataset     4")


def test_a_model_that_observes_masks_gets_them_as_its_third_input() -> None:
    d3rlpy.seed(0)
    encoder = LanguageConditionedEncoderFactory(filters=[[4, 8, 4], [8, 4, 2]], feature_size=32, language_feature_size=16)
    algo = make_algo_config("iql", encoder_factory=encoder, batch_size=8).create()
    algo.create_impl(((3, 64, 64), (384,), (N_ACTIONS,)), N_ACTIONS)
    policy = d3rlpy_policy(algo)
    assert policy.observes_action_mask
    # decoding unrestricted by evaluate(): this DiscreteIQL still decodes over the admissible actions it observes
    report = evaluate(policy, ENV, episodes_per_k=2, seeds=(0,), randomize=(False,), action_mask=False)
    assert report.meta["policy_observes_action_mask"] is True and report.meta["action_mask"] is False
    assert sum(e.invalid_actions for e in report.episodes) == 0


def test_worker_processes_give_the_same_episodes() -> None:
    algo = _algo("iql", seed=3)
    kw = {"episodes_per_k": 5, "seeds": (0, 1), "randomize": (False, True), "batch_size": 4}
    one = evaluate(d3rlpy_policy(algo), ENV, **kw)
    two = evaluate(d3rlpy_policy(algo), ENV, workers=2, **kw)
    assert two.meta["workers"] == 2 and two.meta["action_mask"] is True
    assert one.episodes == two.episodes


def test_random_policy_reseeds_per_chunk_of_a_worker() -> None:
    from rgvlm_gym.rl.evaluation import _rollout_chunk

    act = random_policy(0)
    obs = [{}] * 64
    act.reseed(0)
    a0 = act(obs)
    act.reseed(4)
    a4 = act(obs)
    act.reseed(0)
    assert (act(obs) == a0).all() and not (a0 == a4).all()
    # the forked-worker entry point reseeds by the chunk's first episode index
    seen = []
    act.reseed = seen.append
    from rgvlm_gym.rl import evaluation

    evaluation._FORKED.update(policy=act, kwargs=ENV, batch_size=2, use_masks=False)
    try:
        _rollout_chunk([(8, (0, False, 1))])
    finally:
        evaluation._FORKED.clear()
    assert seen == [8]

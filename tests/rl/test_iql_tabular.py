"""DiscreteIQL against IQL's analytic fixed point on a small tabular MDP with a fixed dataset.

MDP (one-hot states, 4 actions, deterministic, gamma = 0.9), every episode two steps long:

    s0 --a0--> s1,  s0 --a1--> s2,  s0 --a2--> s3          (reward 0)
    s1: a0 -> end (r=0), a1 -> end (r=5)
    s2: a2 -> end (r=2.5), a3 -> end (r=1)
    s3: a1 -> end (r=1.5)

The dataset fixes how often each action is taken. At IQL's fixed point, for in-data (s, a),
Q(s, a) = r + gamma V(s') and V(s) is the expectile-tau of {Q(s, a)} under the data's action
frequencies at s; both are computed exactly below. The best in-data action is deliberately *not* the
most frequent one at s0 and s1, so behaviour cloning would pick the wrong action there.
"""

from __future__ import annotations

import contextlib
import io

import d3rlpy
import numpy as np
import pytest
from d3rlpy.models import VectorEncoderFactory
from d3rlpy.optimizers import AdamFactory, CosineAnnealingLRFactory

from rgvlm_gym.rl import DiscreteIQLConfig

N_STATES = 5  # s4 is never visited; it keeps the one-hot input larger than the visited set
N_ACTIONS = 4
GAMMA = 0.9

# state -> list of (action, next_state or None, reward, count in the dataset)
FIRST_STEP = [(0, 1, 0.0, 20), (1, 2, 0.0, 50), (2, 3, 0.0, 30)]
SECOND_STEP = {
    1: [(0, 0.0, 12), (1, 5.0, 8)],
    2: [(2, 2.5, 25), (3, 1.0, 25)],
    3: [(1, 1.5, 30)],
}


def exact_expectile(values: np.ndarray, weights: np.ndarray, tau: float) -> float:
    """The m solving sum_i w_i |tau - 1(v_i < m)| (v_i - m) = 0, exactly (piecewise-linear root)."""
    order = np.argsort(values)
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    for k in range(len(v)):  # guess: v[:k] lie below m, v[k:] at or above it
        c = np.where(np.arange(len(v)) >= k, tau, 1.0 - tau) * w
        m = float((c * v).sum() / c.sum())
        if (k == 0 or v[k - 1] <= m) and m <= v[k]:
            return m
    raise AssertionError("no expectile root found")


def analytic_solution(tau: float) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
    v: dict[int, float] = {}
    q: dict[tuple[int, int], float] = {}
    for s, rows in SECOND_STEP.items():
        for a, r, _ in rows:
            q[(s, a)] = r
        v[s] = exact_expectile(np.array([r for _, r, _ in rows]), np.array([c for *_, c in rows]), tau)
    for a, s_next, r, _ in FIRST_STEP:
        q[(0, a)] = r + GAMMA * v[s_next]
    v[0] = exact_expectile(
        np.array([q[(0, a)] for a, *_ in FIRST_STEP]), np.array([c for *_, c in FIRST_STEP]), tau
    )
    return v, q


def make_dataset() -> d3rlpy.dataset.ReplayBuffer:
    eye = np.eye(N_STATES, dtype=np.float32)
    observations, actions, rewards, terminals = [], [], [], []
    for a0, s1, r0, count in FIRST_STEP:
        # split this branch's episodes over the second-step actions in the stated proportions
        second = [(a1, r1) for a1, r1, c1 in SECOND_STEP[s1] for _ in range(c1)]
        assert len(second) == count
        for a1, r1 in second:
            observations += [eye[0], eye[s1]]
            actions += [a0, a1]
            rewards += [r0, r1]
            terminals += [0.0, 1.0]
    with contextlib.redirect_stdout(io.StringIO()):
        return d3rlpy.dataset.MDPDataset(
            observations=np.stack(observations),
            actions=np.array(actions),
            rewards=np.array(rewards, dtype=np.float32),
            terminals=np.array(terminals, dtype=np.float32),
            action_space=d3rlpy.ActionSpace.DISCRETE,
            action_size=N_ACTIONS,
        )


def test_exact_expectile_matches_definition() -> None:
    values, weights = np.array([0.0, 1.0, 3.0]), np.array([0.2, 0.5, 0.3])
    for tau in (0.1, 0.5, 0.7, 0.95):
        m = exact_expectile(values, weights, tau)
        residual = (weights * np.abs(tau - (values < m)) * (values - m)).sum()
        assert abs(residual) < 1e-12
    assert exact_expectile(values, weights, 0.5) == pytest.approx((values * weights).sum())


@pytest.fixture(scope="module")
def dataset() -> d3rlpy.dataset.ReplayBuffer:
    return make_dataset()


@pytest.mark.parametrize("tau", [0.7, 0.9])
def test_value_converges_to_expectile_and_policy_picks_best_in_data_action(
    dataset: d3rlpy.dataset.ReplayBuffer, tau: float
) -> None:
    v_star, q_star = analytic_solution(tau)
    # the test can tell an expectile from the data mean and from the best in-data value
    mean_v1 = (0.0 * 12 + 5.0 * 8) / 20
    assert abs(v_star[1] - mean_v1) > 0.5 and abs(v_star[1] - 5.0) > 0.5

    n_steps = 2500
    # anneal the learning rate so the minibatch noise of the expectile regression dies out
    adam = AdamFactory(lr_scheduler_factory=CosineAnnealingLRFactory(T_max=n_steps))
    d3rlpy.seed(0)
    iql = DiscreteIQLConfig(
        encoder_factory=VectorEncoderFactory(hidden_units=[64]),
        critic_optim_factory=adam,
        actor_optim_factory=adam,
        critic_learning_rate=3e-3,
        actor_learning_rate=3e-3,
        batch_size=128,
        gamma=GAMMA,
        tau=0.05,
        expectile=tau,
        weight_temp=3.0,
    ).create(device="cpu:0")
    iql.fit(
        dataset,
        n_steps=n_steps,
        n_steps_per_epoch=n_steps,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
    )

    states = np.eye(N_STATES, dtype=np.float32)[:4]
    v = iql.predict_state_value(states)
    np.testing.assert_allclose(v, [v_star[s] for s in range(4)], atol=0.05)

    pairs = sorted(q_star)
    q = iql.predict_value(states[[s for s, _ in pairs]], np.array([a for _, a in pairs]))
    np.testing.assert_allclose(q, [q_star[p] for p in pairs], atol=0.05)

    greedy = iql.predict(states)
    best = {s: max((a for (s2, a) in q_star if s2 == s), key=lambda a, s=s: q_star[(s, a)]) for s in range(4)}
    assert greedy.tolist() == [best[s] for s in range(4)]
    # the most frequent in-data action at s0 and s1 is not the best one: BC would fail here
    assert best[0] == 0 and best[1] == 1

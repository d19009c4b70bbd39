"""Issue 6 acceptance: DiscreteIQL trained briefly on a mixed expert/noisy dataset of 1-2 sub-task tasks
succeeds clearly more often than a random policy and than its own untrained network.

The whole real pipeline: collect (Minari) -> to_d3rlpy (MiniLM embeddings) -> DiscreteIQL.fit ->
rollouts in AlfredLite. Tasks are the training suite's own (seen tasks, dataset initial states).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

ENV = {"num_tasks": 12, "subtasks": "1-2"}
MARGIN = 0.25


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    import d3rlpy
    import torch

    from rgvlm_gym.data import collect_dataset, to_d3rlpy
    from rgvlm_gym.rl import LanguageConditionedEncoderFactory
    from rgvlm_gym.rl.algos import build_with_dataset, make_algo_config

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: its own dataset folder
        mp.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        collect_dataset(
            "test/learn-v0", episodes=120, tasks="procedural", num_tasks=ENV["num_tasks"], subtasks=ENV["subtasks"],
            policy="mixed", mix="expert=0.6,noisy=0.4", seed=0, workers=1, progress=False,
        )
        buffer = to_d3rlpy("test/learn-v0")
    d3rlpy.seed(0)
    encoder = LanguageConditionedEncoderFactory(filters=[[16, 8, 4], [32, 4, 2]], feature_size=128)
    untrained = make_algo_config("iql", encoder_factory=encoder, batch_size=64).create()
    build_with_dataset(untrained, buffer)
    algo = make_algo_config("iql", encoder_factory=encoder, batch_size=64, actor_learning_rate=1e-3,
                            critic_learning_rate=1e-3).create()
    algo.fit(buffer, n_steps=1500, n_steps_per_epoch=1500, show_progress=False, save_interval=10**6,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    return algo, untrained


def _success(policy) -> float:
    from rgvlm_gym.rl.evaluation import evaluate

    report = evaluate(policy, ENV, episodes_per_k=12, seeds=(0,), randomize=(False,))
    return report.summary()["success"]["rate"]


def test_discrete_iql_beats_random_and_untrained(trained) -> None:
    from rgvlm_gym.rl.evaluation import d3rlpy_policy, random_policy

    algo, untrained = trained
    learned = _success(d3rlpy_policy(algo))
    baseline_random = _success(random_policy(seed=0))
    baseline_untrained = _success(d3rlpy_policy(untrained))
    print(f"success: trained {learned:.2f}, random {baseline_random:.2f}, untrained {baseline_untrained:.2f}")
    assert learned >= baseline_random + MARGIN, (learned, baseline_random)
    assert learned >= baseline_untrained + MARGIN, (learned, baseline_untrained)

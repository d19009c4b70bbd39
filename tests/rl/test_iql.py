"""DiscreteIQL unit behaviour: config checks, target updates, gradient routing, weights, sampling."""

from __future__ import annotations

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.models import VectorEncoderFactory
from d3rlpy.torch_utility import TorchMiniBatch
from rl_helpers import ACTION_SIZE, flat_dataset, tiny_encoder, tuple_dataset, tuple_observations

from rgvlm_gym.rl import DiscreteIQL, DiscreteIQLConfig
from rgvlm_gym.rl.torch import DiscreteIQLImpl


def _built(
    config: DiscreteIQLConfig, language: str = "frozen"
) -> tuple[DiscreteIQL, d3rlpy.dataset.ReplayBuffer]:
    d3rlpy.seed(0)
    dataset = tuple_dataset(language)
    algo = config.create(device="cpu:0")
    algo.build_with_dataset(dataset)
    return algo, dataset


def _torch_batch(algo: DiscreteIQL, dataset: d3rlpy.dataset.ReplayBuffer) -> TorchMiniBatch:
    return TorchMiniBatch.from_batch(
        dataset.sample_transition_batch(algo.config.batch_size),
        gamma=algo.config.gamma,
        compute_returns_to_go=False,
        device="cpu:0",
    )


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_published_iql_defaults() -> None:
    config = DiscreteIQLConfig()
    assert (config.expectile, config.weight_temp, config.max_weight, config.tau) == (0.7, 3.0, 100.0, 0.005)
    assert (config.n_critics, config.target_update_interval, config.gamma, config.batch_size) == (
        2,
        1,
        0.99,
        256,
    )
    assert config.actor_learning_rate == config.critic_learning_rate == 3e-4
    assert DiscreteIQLConfig.get_type() == "discrete_iql"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"expectile": 1.0}, "expectile"),
        ({"expectile": 0.0}, "expectile"),
        ({"tau": 0.0}, "tau"),
        ({"tau": 1.5}, "tau"),
        ({"target_update_interval": 0}, "target_update_interval"),
        ({"n_critics": 0}, "n_critics"),
        ({"max_weight": 0.0}, "max_weight"),
        ({"gamma": 1.2}, "gamma"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_invalid_config_names_the_argument(kwargs: dict[str, float], argument: str) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`"):
        DiscreteIQLConfig(**kwargs)  # type: ignore[arg-type]


def test_ddp_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="enable_ddp"):
        DiscreteIQLConfig().create(device="cpu:0", enable_ddp=True)


def test_config_round_trips_through_json() -> None:
    config = DiscreteIQLConfig(
        encoder_factory=tiny_encoder("learned"), expectile=0.9, share_encoder=False, tau=1.0
    )
    restored = DiscreteIQLConfig.deserialize(config.serialize())
    assert restored == config


def test_soft_target_update_is_polyak_averaging() -> None:
    tau = 0.25
    algo, dataset = _built(DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=8, tau=tau))
    modules = algo.impl.modules  # type: ignore[union-attr]
    before = _params(modules.targ_q_func)
    algo.update(dataset.sample_transition_batch(8))
    online = _params(modules.q_func)
    for old, new, target in zip(before, online, modules.targ_q_func.parameters(), strict=True):
        torch.testing.assert_close(target.detach(), (1 - tau) * old + tau * new)


def test_hard_target_update_every_interval() -> None:
    algo, dataset = _built(
        DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=8, tau=1.0, target_update_interval=2)
    )
    modules = algo.impl.modules  # type: ignore[union-attr]

    def assert_target_equals(params: list[torch.Tensor]) -> None:
        for a, b in zip(params, modules.targ_q_func.parameters(), strict=True):
            torch.testing.assert_close(a, b.detach())

    algo.update(dataset.sample_transition_batch(8))  # grad step 0: copy (as d3rlpy's DQN counts)
    after_first = _params(modules.q_func)
    assert_target_equals(after_first)
    algo.update(dataset.sample_transition_batch(8))  # grad step 1: target stays
    assert_target_equals(after_first)
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(after_first, modules.q_func.parameters(), strict=True)
    )
    algo.update(dataset.sample_transition_batch(8))  # grad step 2: copy again
    assert_target_equals(_params(modules.q_func))


def test_actor_loss_trains_the_shared_encoder_but_not_the_q_heads() -> None:
    algo, dataset = _built(DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=8))
    impl = algo.impl
    assert isinstance(impl, DiscreteIQLImpl)
    modules = impl.modules
    loss = impl.compute_loss(_torch_batch(algo, dataset))
    loss.actor_loss.backward(retain_graph=True)
    encoder = {id(p) for p in modules.q_func.encoder.parameters()}
    assert all(p.grad is not None for p in modules.q_func.encoder.parameters())
    assert all(p.grad is None for p in modules.q_func.parameters() if id(p) not in encoder)  # Q heads
    assert all(p.grad is not None for p in modules.policy.parameters())
    # the critic loss trains encoder and heads, and never touches the policy head
    for p in [*modules.policy.parameters(), *modules.q_func.parameters()]:
        p.grad = None
    loss.critic_loss.backward()
    assert all(p.grad is not None for p in modules.q_func.parameters())
    assert all(p.grad is None for p in modules.policy.parameters())


def test_separate_encoders_when_not_shared() -> None:
    algo, _ = _built(DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=8, share_encoder=False))
    modules = algo.impl.modules  # type: ignore[union-attr]
    assert modules.value_func.has_encoder and modules.policy.has_encoder
    shared, _ = _built(DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=8))
    assert not shared.impl.modules.value_func.has_encoder  # type: ignore[union-attr]


def test_advantage_weights_are_clipped() -> None:
    algo, dataset = _built(DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=8, max_weight=1.5))
    impl = algo.impl
    assert isinstance(impl, DiscreteIQLImpl)
    with torch.no_grad():  # make every advantage large and positive: Q_targ(s, a) >> V(s)
        impl.modules.targ_q_func._fc.bias.fill_(50.0)
    loss = impl.compute_loss(_torch_batch(algo, dataset))
    assert loss.weight.item() == pytest.approx(1.5)
    assert loss.advantage.item() > 10.0


def test_losses_are_logged_by_fit() -> None:
    d3rlpy.seed(0)
    algo = DiscreteIQLConfig(encoder_factory=VectorEncoderFactory(hidden_units=[8]), batch_size=8).create(
        device="cpu:0"
    )
    [(_, metrics)] = algo.fit(
        flat_dataset((5,)),
        n_steps=4,
        n_steps_per_epoch=4,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
    )
    assert {"q_loss", "v_loss", "actor_loss", "critic_loss", "value", "advantage", "weight"} <= set(metrics)


def test_sample_action_samples_from_the_policy() -> None:
    algo, _ = _built(DiscreteIQLConfig(encoder_factory=tiny_encoder(), batch_size=8))
    with torch.no_grad():  # a uniform policy: logits all equal
        algo.impl.modules.policy._fc.weight.zero_()  # type: ignore[union-attr]
        algo.impl.modules.policy._fc.bias.zero_()  # type: ignore[union-attr]
    frames, instructions = tuple_observations(1)
    observations = [np.repeat(frames, 400, axis=0), np.repeat(instructions, 400, axis=0)]
    sampled = algo.sample_action(observations)
    assert set(sampled.tolist()) == set(range(ACTION_SIZE))
    assert len(set(algo.predict(observations).tolist())) == 1


def test_predict_state_value_shape() -> None:
    algo, _ = _built(
        DiscreteIQLConfig(encoder_factory=tiny_encoder("learned"), batch_size=8), language="learned"
    )
    values = algo.predict_state_value(tuple_observations(3, "learned"))
    assert values.shape == (3,)
    assert np.isfinite(values).all()

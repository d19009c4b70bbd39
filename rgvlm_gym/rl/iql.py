"""Discrete, language-conditioned Implicit Q-Learning as a d3rlpy algorithm.

Holds :class:`DiscreteIQLConfig` (registered with d3rlpy under ``"discrete_iql"`` on import, so
``d3rlpy.load_learnable`` rebuilds saved models after ``import rgvlm_gym.rl``) and
:class:`DiscreteIQL`. d3rlpy 2.8.1's ``IQL`` is continuous-only (d3rlpy PR #404 / issue #464 ask for a
discrete one). The torch side lives in :mod:`rgvlm_gym.rl.torch.iql_impl`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from d3rlpy.algos.qlearning.base import QLearningAlgoBase
from d3rlpy.base import DeviceArg, LearnableConfig, register_learnable
from d3rlpy.constants import IMPL_NOT_INITIALIZED_ERROR, ActionSpace
from d3rlpy.dataset import ReplayBufferBase, check_non_1d_array
from d3rlpy.models.encoders import EncoderFactory, make_encoder_field
from d3rlpy.models.torch import compute_output_size
from d3rlpy.optimizers.optimizers import OptimizerFactory, make_optimizer_field
from d3rlpy.serializable_config import CONFIG_STORAGE
from d3rlpy.torch_utility import convert_to_torch_recursively
from d3rlpy.types import NDArray, Observation, Shape

from rgvlm_gym.rl.torch.iql_impl import (
    DiscreteIQLImpl,
    DiscreteIQLModules,
    DiscreteTwinQFunction,
    FeatureHead,
)

__all__ = ["DiscreteIQLConfig", "DiscreteIQL"]


@dataclasses.dataclass()
class DiscreteIQLConfig(LearnableConfig):
    r"""Config of discrete Implicit Q-Learning (IQL) for language-conditioned offline RL.

    IQL never queries the value of an action outside the dataset. With discrete actions the critic
    has ``n_critics`` heads :math:`Q_{\theta_k}(s, \cdot)` over all actions (one forward pass), the
    target critic :math:`Q_{\bar\theta_k}` tracks it by Polyak averaging, and three losses are
    minimised on every mini-batch :math:`(s, a, r, s', d) \sim D`.

    The state value is fitted by expectile regression toward the smallest target Q at the dataset
    action:

    .. math::

        L_V(\psi) = \mathbb{E}_{(s, a) \sim D}\big[L_2^\tau\big(\min_k Q_{\bar\theta_k}(s, a)
            - V_\psi(s)\big)\big], \qquad L_2^\tau(u) = |\tau - \mathbb{1}(u < 0)|\, u^2

    so :math:`V(s)` approaches the :math:`\tau`-expectile of the in-data Q-values (an in-sample
    "soft max" as :math:`\tau \to 1`). The Q heads regress onto that value at the next state:

    .. math::

        L_Q(\theta) = \mathbb{E}_{(s, a, r, s', d) \sim D}\Big[\sum_k \big(r + \gamma (1 - d)
            V_\psi(s') - Q_{\theta_k}(s, a)\big)^2\Big]

    and a categorical policy is extracted by advantage-weighted log-likelihood of the dataset action:

    .. math::

        L_\pi(\phi) = -\mathbb{E}_{(s, a) \sim D}\big[\min\big(e^{\beta (\min_k Q_{\bar\theta_k}(s, a)
            - V_\psi(s))}, w_{\max}\big) \log \pi_\phi(a \mid s)\big]

    ``predict`` returns :math:`\arg\max_a \pi_\phi(a \mid s)`, ``sample_action`` samples from
    :math:`\pi_\phi`, ``predict_value`` the mean of the Q heads and
    :meth:`DiscreteIQL.predict_state_value` returns :math:`V_\psi(s)`.

    With ``share_encoder=True`` (default) one encoder feeds the Q heads, the V head and the policy
    head, and learns from all three losses; an update then costs one encoder forward/backward on
    :math:`s` plus two gradient-free forwards (target critic on :math:`s`, online encoder on
    :math:`s'`). Stopping the policy's gradient at the encoder (as DrQ / SAC-AE do for their actors)
    was tried and fails here: with sparse rewards the critic alone shapes features that do not tell
    the actions of a language-conditioned task apart (0 % vs 100 % success on the 1-2 sub-task test
    in ``tests/pipeline/test_iql_learns.py``). ``share_encoder=False`` gives Q, V and :math:`\pi` their own encoders
    as in the original IQL. Both layouts do a single backward pass per update.

    Differences from the paper's continuous IQL: Q is regressed with squared error on every head
    (as in the reference code), the policy is categorical rather than Gaussian, and the learning
    rates are constant (no cosine decay of the actor's).

    References:
        * `Kostrikov et al., Offline Reinforcement Learning with Implicit Q-Learning.
          <https://arxiv.org/abs/2110.06169>`_
        * `Lee, Luu, Lee and Yoo, 2025 (RG-VLM): dense rewards from large vision-language models
          for offline RL, trained with a language-conditioned IQL. <https://arxiv.org/abs/2504.08772>`_

    Example:
        >>> import contextlib, io
        >>> import d3rlpy
        >>> import numpy as np
        >>> from rgvlm_gym.rl import DiscreteIQLConfig, LanguageConditionedEncoderFactory
        >>> d3rlpy.seed(0)
        >>> rng = np.random.default_rng(0)
        >>> n = 64
        >>> with contextlib.redirect_stdout(io.StringIO()):  # d3rlpy logs the dataset signature
        ...     dataset = d3rlpy.dataset.MDPDataset(
        ...         observations=[
        ...             rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8),  # frames
        ...             rng.standard_normal((n, 16)).astype(np.float32),  # instruction embeddings
        ...         ],
        ...         actions=rng.integers(0, 5, size=n),
        ...         rewards=rng.random(n).astype(np.float32),
        ...         terminals=(np.arange(n) % 16 == 15).astype(np.float32),
        ...         action_space=d3rlpy.ActionSpace.DISCRETE,
        ...         action_size=5,
        ...     )
        >>> encoder = LanguageConditionedEncoderFactory(filters=[[8, 4, 2], [16, 3, 2]], feature_size=32)
        >>> iql = DiscreteIQLConfig(encoder_factory=encoder, batch_size=16).create(device="cpu:0")
        >>> iql.build_with_dataset(dataset)
        >>> metrics = iql.update(dataset.sample_transition_batch(16))
        >>> sorted(metrics)
        ['actor_loss', 'advantage', 'critic_loss', 'q_loss', 'v_loss', 'value', 'weight']
        >>> frames, embeddings = dataset.episodes[0].observations
        >>> iql.predict([frames[:3], embeddings[:3]]).shape
        (3,)

    Args:
        observation_scaler (d3rlpy.preprocessing.ObservationScaler): Observation preprocessor.
        reward_scaler (d3rlpy.preprocessing.RewardScaler): Reward preprocessor.
        actor_learning_rate (float): Learning rate of the policy head (and its encoder).
        critic_learning_rate (float): Learning rate of the Q heads, the V head and the encoder.
        actor_optim_factory (d3rlpy.optimizers.OptimizerFactory): Optimizer factory for the policy.
        critic_optim_factory (d3rlpy.optimizers.OptimizerFactory): Optimizer factory for Q and V.
        encoder_factory (d3rlpy.models.encoders.EncoderFactory): Encoder factory for every network,
            e.g. :class:`rgvlm_gym.rl.LanguageConditionedEncoderFactory` for ``(image, instruction)``
            tuple observations.
        batch_size (int): Mini-batch size.
        gamma (float): Discount factor :math:`\gamma`.
        tau (float): Target-network Polyak coefficient, in ``(0, 1]``; ``1.0`` copies the critic
            (a hard update).
        target_update_interval (int): Update the target network every this many gradient steps.
            IQL's soft updates: ``tau=0.005, target_update_interval=1``; DQN-style hard updates:
            ``tau=1.0, target_update_interval=8000``.
        n_critics (int): Number of Q heads :math:`K`; targets take their minimum.
        expectile (float): Expectile :math:`\tau` of the value regression, in ``(0, 1)``.
        weight_temp (float): Inverse temperature :math:`\beta` of the advantage weights.
        max_weight (float): Clip :math:`w_{\max}` of the advantage weights.
        share_encoder (bool): One encoder for Q, V and the policy, trained by all three losses;
            ``False`` gives each network its own encoder.
        action_names (list[str]): The env's action names (``env.unwrapped.action_names``). When given, the
            Q heads and the policy also score each action through the sentence embedding of its phrase
            (:mod:`rgvlm_gym.rl.action_text`), which generalises across objects with few examples.
        compile_graph (bool): Flag to enable JIT compilation and CUDAGraph (acts on CUDA only).
    """

    actor_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    actor_optim_factory: OptimizerFactory = make_optimizer_field()
    critic_optim_factory: OptimizerFactory = make_optimizer_field()
    encoder_factory: EncoderFactory = make_encoder_field()
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    target_update_interval: int = 1
    n_critics: int = 2
    expectile: float = 0.7
    weight_temp: float = 3.0
    max_weight: float = 100.0
    share_encoder: bool = True
    action_names: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"Expected `expectile` in (0, 1), actually: {self.expectile}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"Expected `tau` in (0, 1], actually: {self.tau}")
        if self.target_update_interval < 1:
            raise ValueError(
                f"Expected `target_update_interval` to be >= 1, actually: {self.target_update_interval}"
            )
        if self.n_critics < 1:
            raise ValueError(f"Expected `n_critics` to be >= 1, actually: {self.n_critics}")
        if self.max_weight <= 0.0:
            raise ValueError(f"Expected `max_weight` to be positive, actually: {self.max_weight}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"Expected `gamma` in [0, 1], actually: {self.gamma}")
        if self.batch_size < 1:
            raise ValueError(f"Expected `batch_size` to be >= 1, actually: {self.batch_size}")

    def create(self, device: DeviceArg = False, enable_ddp: bool = False) -> DiscreteIQL:
        return DiscreteIQL(self, device, enable_ddp)

    @staticmethod
    def get_type() -> str:
        return "discrete_iql"


class DiscreteIQL(QLearningAlgoBase[DiscreteIQLImpl, DiscreteIQLConfig]):
    """Discrete IQL; build it with :meth:`DiscreteIQLConfig.create` (see there for the maths)."""

    def __init__(self, config: DiscreteIQLConfig, device: DeviceArg, enable_ddp: bool = False):
        if enable_ddp:
            raise ValueError("DiscreteIQL does not support `enable_ddp=True` yet, actually: enable_ddp=True")
        super().__init__(config, device, enable_ddp)

    def inner_create_impl(self, observation_shape: Shape, action_size: int) -> None:
        config = self._config
        encoder = config.encoder_factory.create(observation_shape)
        hidden_size = compute_output_size([observation_shape], encoder)
        text = None
        if config.action_names:
            if len(config.action_names) != action_size:
                raise ValueError(
                    f"Expected one action name per action ({action_size}), actually: {len(config.action_names)}"
                )
            from rgvlm_gym.rl.action_text import action_text_embeddings

            text = torch.from_numpy(action_text_embeddings(config.action_names))
        q_func = DiscreteTwinQFunction(encoder, hidden_size, action_size, config.n_critics, text)
        targ_encoder = config.encoder_factory.create(observation_shape)
        targ_q_func = DiscreteTwinQFunction(targ_encoder, hidden_size, action_size, config.n_critics, text)

        def head(output_size: int, action_embeddings: torch.Tensor | None = None) -> FeatureHead:
            if config.share_encoder:
                return FeatureHead(None, hidden_size, output_size, action_embeddings)
            own = config.encoder_factory.create(observation_shape)
            return FeatureHead(own, compute_output_size([observation_shape], own), output_size, action_embeddings)

        value_func = head(1)
        policy = head(action_size, text)
        for module in (q_func, targ_q_func, value_func, policy):
            module.to(self._device)

        critic_optim = config.critic_optim_factory.create(
            list(q_func.named_modules()) + list(value_func.named_modules()),
            lr=config.critic_learning_rate,
            compiled=self.compiled,
        )
        actor_optim = config.actor_optim_factory.create(
            policy.named_modules(), lr=config.actor_learning_rate, compiled=self.compiled
        )
        modules = DiscreteIQLModules(
            q_func=q_func,
            targ_q_func=targ_q_func,
            value_func=value_func,
            policy=policy,
            critic_optim=critic_optim,
            actor_optim=actor_optim,
        )
        self._impl = DiscreteIQLImpl(
            observation_shape=observation_shape,
            action_size=action_size,
            modules=modules,
            gamma=config.gamma,
            tau=config.tau,
            target_update_interval=config.target_update_interval,
            expectile=config.expectile,
            weight_temp=config.weight_temp,
            max_weight=config.max_weight,
            share_encoder=config.share_encoder,
            compiled=self.compiled,
            device=self._device,
        )

    def build_with_dataset(self, dataset: ReplayBufferBase) -> None:
        """Builds the networks for ``dataset`` (its observation shape and number of actions).

        d3rlpy 2.8.1's own ``build_with_dataset`` keeps only the first shape of tuple observations;
        this one keeps the tuple, as ``fit()`` does.
        """
        shape = dataset.sample_transition().observation_signature.shape
        observation_shape: Shape = shape[0] if len(shape) == 1 else shape
        self.create_impl(observation_shape, dataset.dataset_info.action_size)

    def predict_state_value(self, x: Observation) -> NDArray:
        """Returns the state values :math:`V_\\psi(s)` of a batch of observations, shape ``(batch,)``."""
        assert self._impl is not None, IMPL_NOT_INITIALIZED_ERROR
        assert check_non_1d_array(x), "Input must have batch dimension."
        torch_x = convert_to_torch_recursively(x, self._device)
        with torch.no_grad():
            if self._config.observation_scaler:
                torch_x = self._config.observation_scaler.transform(torch_x)
            values = self._impl.predict_state_value(torch_x)
        return np.asarray(values.cpu().numpy())

    def get_action_type(self) -> ActionSpace:
        return ActionSpace.DISCRETE


def _register_once() -> None:
    if DiscreteIQLConfig.get_type() not in CONFIG_STORAGE[LearnableConfig].config_list:
        register_learnable(DiscreteIQLConfig)


_register_once()

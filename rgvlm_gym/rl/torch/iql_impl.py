"""Torch side of discrete Implicit Q-Learning: networks, modules, loss and the d3rlpy ``Impl``.

Holds:

* :class:`DiscreteTwinQFunction` -- one encoder, ``n_critics`` Q heads over all actions computed by a
  single linear layer (the twin Qs cost one encoder forward, not two).
* :class:`FeatureHead` -- a linear head that reads either its own encoder or features handed in by the
  critic (used for V(s) and the categorical policy).
* :class:`DiscreteIQLModules`, :class:`DiscreteIQLLoss`, :class:`DiscreteIQLImpl`.

The maths is documented on :class:`rgvlm_gym.rl.iql.DiscreteIQLConfig`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from d3rlpy.algos.qlearning.base import QLearningAlgoImplBase
from d3rlpy.dataclass_utils import asdict_as_float
from d3rlpy.models.torch import Encoder
from d3rlpy.optimizers import OptimizerWrapper
from d3rlpy.torch_utility import (
    CudaGraphWrapper,
    Modules,
    TorchMiniBatch,
    hard_sync,
)
from d3rlpy.types import Shape, TorchObservation
from torch import nn
from torch.distributions import Categorical

__all__ = [
    "ActionTextLinear",
    "DiscreteTwinQFunction",
    "FeatureHead",
    "DiscreteIQLModules",
    "DiscreteIQLLoss",
    "DiscreteIQLImpl",
]


class ActionTextLinear(nn.Module):
    """``n_out`` scores per action: a free linear layer plus ``(W h) . e(action)`` over fixed action-text
    embeddings ``e`` (:mod:`rgvlm_gym.rl.action_text`), so actions with similar phrases share what is
    learnt. ``forward(h)`` gives ``(B, n_out * A)``, laid out like ``nn.Linear(hidden, n_out * A)``."""

    def __init__(self, hidden_size: int, action_embeddings: torch.Tensor, n_out: int = 1):
        super().__init__()
        self._n_out = n_out
        self.register_buffer("_actions", action_embeddings.float())  # (A, D)
        n_actions, dim = action_embeddings.shape
        self._free = nn.Linear(hidden_size, n_out * n_actions)
        self._query = nn.Linear(hidden_size, n_out * dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        actions: torch.Tensor = self._actions  # type: ignore[assignment]
        query = self._query(h).view(h.shape[0], self._n_out, -1)  # (B, n, D)
        text = torch.matmul(query, actions.t())  # (B, n, A)
        out: torch.Tensor = self._free(h) + text.reshape(h.shape[0], -1)
        return out


def output_layer(hidden_size: int, action_size: int, n_out: int, action_embeddings: torch.Tensor | None) -> nn.Module:
    """``n_out`` scores per action: :class:`ActionTextLinear` with action-text embeddings, else a linear layer."""
    if action_embeddings is None:
        return nn.Linear(hidden_size, n_out * action_size)
    assert action_embeddings.shape[0] == action_size, (action_embeddings.shape, action_size)
    return ActionTextLinear(hidden_size, action_embeddings, n_out)


class DiscreteTwinQFunction(nn.Module):
    """``n_critics`` Q-functions over all actions sharing one encoder.

    ``forward(x)`` returns ``(features, q)`` with ``q`` of shape ``(batch, n_critics, action_size)``,
    so callers can reuse ``features`` (V head, policy head) without a second encoder pass.
    """

    def __init__(
        self, encoder: Encoder, hidden_size: int, action_size: int, n_critics: int, action_embeddings: torch.Tensor | None = None
    ):
        super().__init__()
        self._encoder = encoder
        self._n_critics = n_critics
        self._action_size = action_size
        self._fc = output_layer(hidden_size, action_size, n_critics, action_embeddings)

    def forward(self, x: TorchObservation) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._encoder(x)
        return h, self._fc(h).view(-1, self._n_critics, self._action_size)

    def __call__(self, x: TorchObservation) -> tuple[torch.Tensor, torch.Tensor]:
        return super().__call__(x)  # type: ignore[no-any-return]

    @property
    def encoder(self) -> Encoder:
        return self._encoder


class FeatureHead(nn.Module):
    """Linear head over its own encoder, or over features computed elsewhere when ``encoder is None``."""

    def __init__(self, encoder: Encoder | None, hidden_size: int, output_size: int, action_embeddings: torch.Tensor | None = None):
        super().__init__()
        self._encoder = encoder
        self._fc = output_layer(hidden_size, output_size, 1, action_embeddings)

    def forward(self, x: TorchObservation, features: torch.Tensor | None = None) -> torch.Tensor:
        if self._encoder is not None:
            features = self._encoder(x)
        assert features is not None, "a head without its own encoder needs shared features"
        return self._fc(features)  # type: ignore[no-any-return]

    def __call__(self, x: TorchObservation, features: torch.Tensor | None = None) -> torch.Tensor:
        return super().__call__(x, features)  # type: ignore[no-any-return]

    @property
    def has_encoder(self) -> bool:
        return self._encoder is not None


@dataclasses.dataclass(frozen=True)
class DiscreteIQLModules(Modules):
    q_func: DiscreteTwinQFunction
    targ_q_func: DiscreteTwinQFunction
    value_func: FeatureHead
    policy: FeatureHead
    critic_optim: OptimizerWrapper
    actor_optim: OptimizerWrapper


@dataclasses.dataclass(frozen=True)
class DiscreteIQLLoss:
    """Per-update losses and diagnostics; every field is logged by ``fit()``."""

    critic_loss: torch.Tensor
    q_loss: torch.Tensor
    v_loss: torch.Tensor
    actor_loss: torch.Tensor
    value: torch.Tensor
    advantage: torch.Tensor
    weight: torch.Tensor


def action_mask_of(x: TorchObservation) -> torch.Tensor | None:
    """The admissible-action mask ``(B, A)`` of ``(image, instruction, mask)`` observations, else None."""
    if isinstance(x, (list, tuple)) and len(x) == 3:
        return x[2]
    return None


def mask_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with inadmissible actions at -1e9 (rows with no admissible action are left as they are)."""
    if mask is None:
        return logits
    allowed = (mask > 0.5) | ~(mask > 0.5).any(dim=1, keepdim=True)
    return logits.masked_fill(~allowed, -1e9)


class DiscreteIQLImpl(QLearningAlgoImplBase):
    _modules: DiscreteIQLModules
    _compute_grad: Callable[[TorchMiniBatch], DiscreteIQLLoss]

    def __init__(
        self,
        observation_shape: Shape,
        action_size: int,
        modules: DiscreteIQLModules,
        gamma: float,
        tau: float,
        target_update_interval: int,
        expectile: float,
        weight_temp: float,
        max_weight: float,
        share_encoder: bool,
        compiled: bool,
        device: str,
    ):
        super().__init__(
            observation_shape=observation_shape,
            action_size=action_size,
            modules=modules,
            device=device,
        )
        self._gamma = gamma
        self._tau = tau
        self._target_update_interval = target_update_interval
        self._expectile = expectile
        self._weight_temp = weight_temp
        self._max_weight = max_weight
        self._share_encoder = share_encoder
        self._compute_grad = CudaGraphWrapper(self.compute_grad) if compiled else self.compute_grad
        hard_sync(modules.targ_q_func, modules.q_func)

    # ----------------------------------------------------------------------------------- training

    def compute_loss(self, batch: TorchMiniBatch) -> DiscreteIQLLoss:
        modules = self._modules
        actions = batch.actions.long().view(-1, 1)

        # one encoder pass on s_t serves Q, V and the policy when the encoder is shared
        features, q = modules.q_func(batch.observations)
        q_data = q.gather(2, actions.unsqueeze(1).expand(-1, q.shape[1], 1)).squeeze(2)  # (B, K)
        shared = features if self._share_encoder else None
        v = modules.value_func(batch.observations, shared)  # (B, 1)

        with torch.no_grad():
            _, targ_q = modules.targ_q_func(batch.observations)
            targ_q_data = targ_q.gather(2, actions.unsqueeze(1).expand(-1, targ_q.shape[1], 1))
            targ_q_data = targ_q_data.squeeze(2).min(dim=1, keepdim=True).values  # (B, 1)
            next_shared = modules.q_func(batch.next_observations)[0] if self._share_encoder else None
            v_next = modules.value_func(batch.next_observations, next_shared)
            y = batch.rewards + (self._gamma**batch.intervals) * (1.0 - batch.terminals) * v_next

        # Q: regress every head onto r + gamma * (1 - done) * V(s')
        q_loss = (q_data - y).pow(2).mean(dim=0).sum()

        # V: expectile regression toward min_k Q_targ(s, a) at the dataset action
        diff = targ_q_data - v
        expectile_weight = (self._expectile - (diff.detach() < 0.0).float()).abs()
        v_loss = (expectile_weight * diff.pow(2)).mean()

        # policy: advantage-weighted log-likelihood of the dataset action
        advantage = targ_q_data - v.detach()
        weight = (self._weight_temp * advantage).exp().clamp(max=self._max_weight)
        logits = modules.policy(batch.observations, shared)
        mask = action_mask_of(batch.observations)
        if mask is not None:
            # the policy normalises over the admissible actions (and the dataset's own action, which a
            # random or noisy behaviour policy may have taken although it fails)
            mask = mask.scatter(1, actions, 1.0)
        log_prob = F.log_softmax(mask_logits(logits, mask), dim=1).gather(1, actions)
        actor_loss = -(weight * log_prob).mean()

        return DiscreteIQLLoss(
            critic_loss=q_loss + v_loss,
            q_loss=q_loss,
            v_loss=v_loss,
            actor_loss=actor_loss,
            value=v.detach().mean(),
            advantage=advantage.mean(),
            weight=weight.mean(),
        )

    def compute_grad(self, batch: TorchMiniBatch) -> DiscreteIQLLoss:
        self._modules.critic_optim.zero_grad()
        self._modules.actor_optim.zero_grad()
        loss = self.compute_loss(batch)
        # one backward pass fills both optimizers' gradients; a shared encoder (stepped by the critic
        # optimizer) gets the sum of the critic's and the actor's gradients
        (loss.critic_loss + loss.actor_loss).backward()  # type: ignore[no-untyped-call]
        return loss

    def inner_update(self, batch: TorchMiniBatch, grad_step: int) -> dict[str, float]:
        loss = self._compute_grad(batch)
        self._modules.critic_optim.step()
        self._modules.actor_optim.step()
        if grad_step % self._target_update_interval == 0:
            self.update_target()
        metrics: dict[str, float] = asdict_as_float(loss)
        return metrics

    def update_target(self) -> None:
        if self._tau >= 1.0:
            hard_sync(self._modules.targ_q_func, self._modules.q_func)
            return
        # Polyak averaging targ <- (1 - tau) targ + tau online as one fused, allocation-free op
        # (d3rlpy's soft_sync makes a temporary per parameter)
        with torch.no_grad():
            targ = [p.data for p in self._modules.targ_q_func.parameters()]
            online = [p.data for p in self._modules.q_func.parameters()]
            torch._foreach_lerp_(targ, online, self._tau)

    # --------------------------------------------------------------------------------- inference

    def _shared_features(self, x: TorchObservation) -> torch.Tensor | None:
        return self._modules.q_func(x)[0] if self._share_encoder else None

    def policy_logits(self, x: TorchObservation) -> torch.Tensor:
        """Policy logits; with ``(image, instruction, mask)`` observations inadmissible actions get -1e9."""
        return mask_logits(self._modules.policy(x, self._shared_features(x)), action_mask_of(x))

    def inner_predict_best_action(self, x: TorchObservation) -> torch.Tensor:
        return self.policy_logits(x).argmax(dim=1)

    def inner_sample_action(self, x: TorchObservation) -> torch.Tensor:
        sampled: torch.Tensor = Categorical(logits=self.policy_logits(x)).sample()  # type: ignore[no-untyped-call]
        return sampled

    def inner_predict_value(self, x: TorchObservation, action: torch.Tensor) -> torch.Tensor:
        q = self._modules.q_func(x)[1].mean(dim=1)
        return q[torch.arange(q.shape[0], device=q.device), action.reshape(-1).long()]

    def predict_state_value(self, x: TorchObservation) -> torch.Tensor:
        self._modules.set_eval()
        return self._modules.value_func(x, self._shared_features(x)).view(-1)

    # ------------------------------------------------------------- d3rlpy copy_*_from interfaces

    @property
    def policy(self) -> FeatureHead:
        return self._modules.policy

    @property
    def policy_optim(self) -> torch.optim.Optimizer:
        optim: torch.optim.Optimizer = self._modules.actor_optim.optim
        return optim

    @property
    def q_function(self) -> nn.ModuleList:
        return nn.ModuleList([self._modules.q_func])

    @property
    def q_function_optim(self) -> torch.optim.Optimizer:
        optim: torch.optim.Optimizer = self._modules.critic_optim.optim
        return optim

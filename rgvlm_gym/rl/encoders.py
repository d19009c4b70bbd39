"""Language-conditioned encoder factories for d3rlpy algorithms.

Holds :class:`LanguageConditionedEncoderFactory`, registered with d3rlpy under the type
``"language_conditioned"`` when this module is imported, so configs that use it serialize as
``{"type": "language_conditioned", "params": {...}}`` and ``d3rlpy.load_learnable`` rebuilds them
after ``import rgvlm_gym.rl`` (d3rlpy issue #398 is what happens without the registration).

Observation format: d3rlpy tuple observations ``(image, instruction)``:

* ``image``: ``np.uint8`` ``(C, H, W)`` channel-first frame, any size (64 x 64 RGB by default in
  rgvlm-gym datasets); scaled to [0, 1] inside the encoder.
* ``instruction``:

  - ``language="frozen"``: ``np.float32`` ``(D,)`` sentence embedding from a frozen encoder (MiniLM,
    ``D = 384``, in rgvlm-gym datasets; any ``D`` works);
  - ``language="learned"``: ``(L,)`` token ids stored as integers or floats, right-padded with ``0``
    to a fixed length ``L``; ids must lie in ``[0, vocab_size)``; id ``0`` is padding.
"""

from __future__ import annotations

import dataclasses

from d3rlpy.models.encoders import EncoderFactory, register_encoder_factory
from d3rlpy.models.utility import create_activation
from d3rlpy.serializable_config import CONFIG_STORAGE
from d3rlpy.types import Shape
from torch import nn

from rgvlm_gym.rl.torch.encoders import (
    FiLMTrunk,
    LanguageConditionedEncoder,
    LanguageConditionedEncoderWithAction,
)

__all__ = ["LanguageConditionedEncoderFactory"]

_LANGUAGE_MODES = ("frozen", "learned")
_TOKEN_POOLINGS = ("gru", "mean")
_ACTIVATIONS = ("relu", "gelu", "tanh", "swish")


@dataclasses.dataclass()
class LanguageConditionedEncoderFactory(EncoderFactory):
    """FiLM encoder over ``(image, instruction)`` tuple observations.

    A small CNN reads the frame; after every convolution a FiLM layer (Perez et al., 2018,
    arXiv 1709.07871) lets the instruction scale and shift each channel,
    ``h <- act((1 + gamma(l)) * conv(h) + beta(l))``, with ``gamma, beta`` linear in the language
    features ``l`` and initialised to zero. The flattened conv features and ``l`` are concatenated and
    go through one dense layer of ``feature_size`` units. Works with every d3rlpy algorithm that takes
    an ``encoder_factory`` (DiscreteIQL, DiscreteCQL, DiscreteBCQ, DiscreteBC, DQN, ...), and with
    the continuous ones through :meth:`create_with_action`.

    Example:
        >>> import torch
        >>> from rgvlm_gym.rl import LanguageConditionedEncoderFactory
        >>> factory = LanguageConditionedEncoderFactory(filters=[[8, 4, 2], [16, 3, 2]], feature_size=32)
        >>> encoder = factory.create(((3, 64, 64), (384,)))
        >>> frames = torch.randint(0, 256, (2, 3, 64, 64)).float()
        >>> encoder([frames, torch.randn(2, 384)]).shape
        torch.Size([2, 32])
        >>> LanguageConditionedEncoderFactory.get_type()
        'language_conditioned'

    Args:
        language: ``"frozen"`` -- the second tuple element is a sentence embedding ``(D,)`` that is
            projected by a learned linear layer; ``"learned"`` -- it holds ``(L,)`` token ids
            (0 = padding) read by a learned embedding and ``token_pooling``.
        filters: ``[out_channels, kernel_size, stride]`` of each convolution (Nature-DQN by default).
        feature_size: width of the encoder output.
        language_feature_size: width of the language features that drive FiLM.
        activation: ``"relu"``, ``"gelu"``, ``"tanh"`` or ``"swish"``.
        vocab_size: number of token ids (``language="learned"``).
        token_embedding_size: token embedding width (``language="learned"``).
        token_pooling: ``"gru"`` (state at the last real token) or ``"mean"`` (masked mean) for
            ``language="learned"``.
        normalize_pixels: divide frames by 255; turn off if frames are already scaled floats.
        state_feature_size: width of the features of an optional third tuple element, the admissible-action
            mask ``(A,)`` (``to_d3rlpy(..., action_masks=True)``), read by one dense layer.
    """

    language: str = "frozen"
    filters: list[list[int]] = dataclasses.field(default_factory=lambda: [[32, 8, 4], [64, 4, 2], [64, 3, 1]])
    feature_size: int = 256
    language_feature_size: int = 128
    activation: str = "relu"
    vocab_size: int = 1024
    token_embedding_size: int = 64
    token_pooling: str = "gru"
    normalize_pixels: bool = True
    state_feature_size: int = 64

    def __post_init__(self) -> None:
        if self.language not in _LANGUAGE_MODES:
            raise ValueError(
                f"Expected `language` to be one of {_LANGUAGE_MODES}, actually: {self.language!r}"
            )
        if self.token_pooling not in _TOKEN_POOLINGS:
            raise ValueError(
                f"Expected `token_pooling` to be one of {_TOKEN_POOLINGS}, actually: {self.token_pooling!r}"
            )
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"Expected `activation` to be one of {_ACTIVATIONS}, actually: {self.activation!r}"
            )
        if not self.filters or any(len(f) != 3 or min(f) <= 0 for f in self.filters):
            raise ValueError(
                "Expected `filters` to be a non-empty list of positive [out_channels, kernel_size, stride], "
                f"actually: {self.filters!r}"
            )
        for name in ("feature_size", "language_feature_size", "vocab_size", "token_embedding_size", "state_feature_size"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"Expected `{name}` to be positive, actually: {value}")

    def _create_activation(self) -> nn.Module:
        # every ReLU here follows an op whose backward does not need its output, so it can run in place
        # (one activation-sized temporary less per layer)
        return nn.ReLU(inplace=True) if self.activation == "relu" else create_activation(self.activation)

    def _create_trunk(self, observation_shape: Shape) -> FiLMTrunk:
        if not (
            len(observation_shape) in (2, 3)
            and all(isinstance(s, (list, tuple)) for s in observation_shape)
            and len(observation_shape[0]) == 3
            and all(len(s) == 1 for s in observation_shape[1:])  # type: ignore[arg-type]
        ):
            raise ValueError(
                "LanguageConditionedEncoderFactory expects tuple observations "
                "(image (C, H, W), instruction (D,)[, action mask (A,)]), actually: "
                f"observation_shape={observation_shape!r}"
            )
        image_shape, language_shape = observation_shape[0], observation_shape[1]
        trunk = FiLMTrunk(
            state_shape=observation_shape[2] if len(observation_shape) == 3 else None,  # type: ignore[arg-type]
            state_feature_size=self.state_feature_size,
            image_shape=image_shape,
            language_shape=language_shape,
            filters=self.filters,
            language=self.language,
            language_feature_size=self.language_feature_size,
            activation=self._create_activation(),
            vocab_size=self.vocab_size,
            token_embedding_size=self.token_embedding_size,
            token_pooling=self.token_pooling,
            normalize_pixels=self.normalize_pixels,
        )
        return trunk

    def create(self, observation_shape: Shape) -> LanguageConditionedEncoder:
        return LanguageConditionedEncoder(
            self._create_trunk(observation_shape), self.feature_size, self._create_activation()
        )

    def create_with_action(
        self,
        observation_shape: Shape,
        action_size: int,
        discrete_action: bool = False,
    ) -> LanguageConditionedEncoderWithAction:
        return LanguageConditionedEncoderWithAction(
            self._create_trunk(observation_shape),
            self.feature_size,
            action_size,
            discrete_action,
            self._create_activation(),
        )

    @staticmethod
    def get_type() -> str:
        return "language_conditioned"


def _register_once() -> None:
    # d3rlpy asserts on double registration; a module re-imported under another name (doctest
    # collection, importlib.reload) must not crash.
    registered = CONFIG_STORAGE[EncoderFactory].config_list
    if LanguageConditionedEncoderFactory.get_type() not in registered:
        register_encoder_factory(LanguageConditionedEncoderFactory)


_register_once()

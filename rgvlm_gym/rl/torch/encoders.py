"""FiLM language-conditioned encoders over ``(image, instruction)`` tuple observations.

Holds:

* :class:`LanguageConditionedEncoder` -- d3rlpy :class:`~d3rlpy.models.torch.Encoder` for state inputs
  (Q-functions over all discrete actions, value functions, categorical policies).
* :class:`LanguageConditionedEncoderWithAction` -- the state-action variant d3rlpy's continuous
  algorithms ask for (the action is concatenated after the FiLM trunk).

Both share :class:`FiLMTrunk`: a small CNN whose every convolution is followed by a FiLM layer
(Perez et al., 2018, arXiv 1709.07871) -- the instruction features produce a per-channel scale
``gamma`` and shift ``beta`` and the block computes ``act((1 + gamma) * conv(x) + beta)`` -- and a
language branch that is either a projection of a frozen sentence embedding or a learned token encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from d3rlpy.models.torch import Encoder, EncoderWithAction
from d3rlpy.types import TorchObservation
from torch import nn

__all__ = [
    "FiLMTrunk",
    "LanguageConditionedEncoder",
    "LanguageConditionedEncoderWithAction",
]


class _FrozenEmbeddingProjection(nn.Module):
    """Projects a fixed sentence embedding ``(B, D)`` to ``(B, out_size)``."""

    def __init__(self, embedding_size: int, out_size: int, activation: nn.Module):
        super().__init__()
        self._fc = nn.Linear(embedding_size, out_size)
        self._activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._activation(self._fc(x))
        return out


class _TokenEncoder(nn.Module):
    """Learned instruction encoder over padded token ids ``(B, L)`` (id 0 is padding).

    ``pooling="gru"`` reads the GRU state at the last non-padding token; ``pooling="mean"``
    averages the token embeddings over non-padding positions. Rows of padding only give zeros
    (mean) or the state after the first position (GRU).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        out_size: int,
        pooling: str,
        activation: nn.Module,
    ):
        super().__init__()
        self._pooling = pooling
        self._embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=0)
        if pooling == "gru":
            self._gru: nn.GRU | None = nn.GRU(embedding_size, out_size, batch_first=True)
            self._fc: nn.Linear | None = None
        else:
            self._gru = None
            self._fc = nn.Linear(embedding_size, out_size)
        self._activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.long()
        mask = (tokens != 0).float()
        embedded = self._embedding(tokens)  # (B, L, E)
        if self._gru is not None:
            outputs, _ = self._gru(embedded)  # (B, L, H)
            lengths = mask.sum(dim=1).long().clamp(min=1)
            index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])
            pooled = outputs.gather(1, index).squeeze(1)
            out: torch.Tensor = self._activation(pooled)
            return out
        assert self._fc is not None
        summed = (embedded * mask.unsqueeze(2)).sum(dim=1)
        pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        out = self._activation(self._fc(pooled))
        return out


class FiLMTrunk(nn.Module):
    """CNN over the frame with FiLM conditioning on the instruction; outputs flat features.

    Args:
        image_shape: ``(C, H, W)`` of the frame (channel-first).
        language_shape: ``(D,)`` of the second tuple element: an embedding size (``language="frozen"``)
            or a token sequence length (``language="learned"``).
        filters: ``[out_channels, kernel_size, stride]`` per convolution.
        language: ``"frozen"`` or ``"learned"``.
        language_feature_size: width of the language features feeding FiLM and the output.
        activation: activation module shared by all layers.
        vocab_size: token vocabulary size (``language="learned"``).
        token_embedding_size: token embedding width (``language="learned"``).
        token_pooling: ``"gru"`` or ``"mean"`` (``language="learned"``).
        normalize_pixels: divide the frame by 255 (d3rlpy hands uint8 frames over as float 0..255).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        language_shape: Sequence[int],
        filters: Sequence[Sequence[int]],
        language: str,
        language_feature_size: int,
        activation: nn.Module,
        vocab_size: int,
        token_embedding_size: int,
        token_pooling: str,
        normalize_pixels: bool,
        state_shape: Sequence[int] | None = None,
        state_feature_size: int = 64,
    ):
        super().__init__()
        assert len(image_shape) == 3 and len(language_shape) == 1
        self._normalize_pixels = normalize_pixels
        self._activation = activation

        if language == "frozen":
            self._language: nn.Module = _FrozenEmbeddingProjection(
                int(language_shape[0]), language_feature_size, activation
            )
        else:
            self._language = _TokenEncoder(
                vocab_size, token_embedding_size, language_feature_size, token_pooling, activation
            )

        convs = []
        in_channels = int(image_shape[0])
        self._channels: list[int] = []
        for out_channels, kernel_size, stride in filters:
            convs.append(nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride))
            self._channels.append(int(out_channels))
            in_channels = out_channels
        self._convs = nn.ModuleList(convs)

        # One linear layer emits (gamma, beta) for every conv channel. Zero init: FiLM starts as the
        # identity, so the CNN learns as a plain CNN until language features become useful.
        self._film = nn.Linear(language_feature_size, 2 * sum(self._channels))
        nn.init.zeros_(self._film.weight)
        nn.init.zeros_(self._film.bias)

        with torch.no_grad():
            h = torch.zeros(1, *image_shape)
            for conv in self._convs:
                h = conv(h)
        self._conv_output_size = int(h.numel())
        self.output_size = self._conv_output_size + language_feature_size
        # optional symbolic state (the admissible-action mask): what is in reach and in hand, which a
        # 64 px frame shows only coarsely; an MLP's features join the image's and the instruction's
        self._state: nn.Module | None = None
        if state_shape is not None:
            assert len(state_shape) == 1
            self._state = nn.Sequential(nn.Linear(int(state_shape[0]), state_feature_size), activation)
            self.output_size += state_feature_size

    def forward(self, x: TorchObservation) -> torch.Tensor:
        n = 2 if self._state is None else 3
        assert isinstance(x, (list, tuple)) and len(x) == n, f"expected {n}-element tuple observations"
        image, instruction = x[0], x[1]
        h = image.float()
        lang = self._language(instruction)
        film = self._film(lang)
        total = sum(self._channels)
        gammas = torch.split(film[:, :total], self._channels, dim=1)
        betas = torch.split(film[:, total:], self._channels, dim=1)
        convs: list[nn.Conv2d] = list(self._convs)  # type: ignore[arg-type]
        for i, (conv, gamma, beta) in enumerate(zip(convs, gammas, betas, strict=True)):
            if i == 0 and self._normalize_pixels:
                # conv(x / 255) == conv with weight / 255: scaling the small weight tensor instead of the
                # frame saves a frame-sized temporary on every forward pass
                h = F.conv2d(h, conv.weight * (1.0 / 255.0), conv.bias, conv.stride, conv.padding)
            else:
                h = conv(h)
            h = self._activation(torch.addcmul(beta[:, :, None, None], h, 1.0 + gamma[:, :, None, None]))
        parts = [h.reshape(h.shape[0], -1), lang]
        if self._state is not None:
            parts.append(self._state(x[2].float()))
        return torch.cat(parts, dim=1)


class LanguageConditionedEncoder(Encoder):
    """FiLM trunk followed by one dense layer: ``(image, instruction) -> (B, feature_size)``."""

    def __init__(self, trunk: FiLMTrunk, feature_size: int, activation: nn.Module):
        super().__init__()
        self._trunk = trunk
        self._fc = nn.Linear(trunk.output_size, feature_size)
        self._activation = activation

    def forward(self, x: TorchObservation) -> torch.Tensor:
        out: torch.Tensor = self._activation(self._fc(self._trunk(x)))
        return out


class LanguageConditionedEncoderWithAction(EncoderWithAction):
    """State-action variant: the action (one-hot when discrete) joins the trunk features."""

    def __init__(
        self,
        trunk: FiLMTrunk,
        feature_size: int,
        action_size: int,
        discrete_action: bool,
        activation: nn.Module,
    ):
        super().__init__()
        self._trunk = trunk
        self._action_size = action_size
        self._discrete_action = discrete_action
        self._fc = nn.Linear(trunk.output_size + action_size, feature_size)
        self._activation = activation

    def forward(self, x: TorchObservation, action: torch.Tensor) -> torch.Tensor:
        if self._discrete_action:
            action = F.one_hot(action.view(-1).long(), num_classes=self._action_size).float()
        out: torch.Tensor = self._activation(self._fc(torch.cat([self._trunk(x), action], dim=1)))
        return out

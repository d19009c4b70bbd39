"""LanguageConditionedEncoderFactory: shapes, FiLM conditioning, token formats, errors, serialization."""

from __future__ import annotations

import d3rlpy
import pytest
import torch
from d3rlpy.models.encoders import EncoderFactory
from d3rlpy.serializable_config import CONFIG_STORAGE
from rl_helpers import tiny_encoder

from rgvlm_gym.rl import DiscreteIQLConfig, LanguageConditionedEncoderFactory
from rgvlm_gym.rl import encoders as encoders_module


def _frames(n: int, height: int = 64, width: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, height, width)).float()  # d3rlpy hands uint8 over as float


@pytest.mark.parametrize(("height", "width", "dim"), [(64, 64, 384), (48, 40, 7), (96, 96, 32)])
def test_frozen_encoder_shapes(height: int, width: int, dim: int) -> None:
    factory = LanguageConditionedEncoderFactory(feature_size=24)
    encoder = factory.create(((3, height, width), (dim,)))
    out = encoder([_frames(5, height, width), torch.randn(5, dim)])
    assert out.shape == (5, 24)
    assert torch.isfinite(out).all()


def test_default_encoder_on_rgvlm_observation_format() -> None:
    encoder = LanguageConditionedEncoderFactory().create([[3, 64, 64], [384]])  # JSON-loaded shapes are lists
    assert encoder([_frames(2), torch.randn(2, 384)]).shape == (2, 256)


@pytest.mark.parametrize("pooling", ["gru", "mean"])
def test_learned_encoder_reads_padded_token_ids(pooling: str) -> None:
    torch.manual_seed(0)
    factory = tiny_encoder("learned", token_pooling=pooling)
    encoder = factory.create(((3, 24, 20), (6,)))
    encoder.eval()
    frames = _frames(2, 24, 20)
    tokens = torch.tensor([[5, 7, 3, 0, 0, 0], [9, 0, 0, 0, 0, 0]])
    out = encoder([frames, tokens.float()])  # ids stored as floats, as d3rlpy converts them
    assert out.shape == (2, 16)
    # padding does not count: the same tokens with a shorter padding give the same features
    np_short = encoder([frames, tokens[:, :3].float()])
    torch.testing.assert_close(out, np_short)
    # int ids work as well
    torch.testing.assert_close(encoder([frames, tokens]), out)


def test_instruction_changes_the_features_and_film_learns() -> None:
    torch.manual_seed(0)
    encoder = tiny_encoder().create(((3, 24, 20), (12,)))
    frames = _frames(4, 24, 20)
    instruction = torch.randn(4, 12)
    out = encoder([frames, instruction])
    assert not torch.allclose(out, encoder([frames, torch.randn(4, 12)]))
    out.pow(2).sum().backward()
    film = encoder._trunk._film
    # FiLM starts as the identity (zero init) but receives gradients
    assert film.weight.abs().sum() == 0
    assert film.weight.grad is not None and film.weight.grad.abs().sum() > 0


def test_film_modulates_the_conv_features() -> None:
    torch.manual_seed(0)
    trunk = tiny_encoder().create(((3, 24, 20), (12,)))._trunk
    with torch.no_grad():
        trunk._film.weight.normal_()
    frames = _frames(2, 24, 20)
    lang_size = 8  # language_feature_size of tiny_encoder
    a = trunk([frames, torch.randn(2, 12)])[:, :-lang_size]
    b = trunk([frames, torch.randn(2, 12)])[:, :-lang_size]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("discrete_action", [True, False])
def test_create_with_action(discrete_action: bool) -> None:
    encoder = tiny_encoder().create_with_action(
        ((3, 24, 20), (12,)), action_size=4, discrete_action=discrete_action
    )
    action = torch.tensor([0, 3]) if discrete_action else torch.randn(2, 4)
    assert encoder([_frames(2, 24, 20), torch.randn(2, 12)], action).shape == (2, 16)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"language": "bert"}, "language"),
        ({"token_pooling": "max"}, "token_pooling"),
        ({"activation": "sigmoidish"}, "activation"),
        ({"filters": [[8, 4]]}, "filters"),
        ({"filters": []}, "filters"),
        ({"feature_size": 0}, "feature_size"),
        ({"vocab_size": -1}, "vocab_size"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`"):
        LanguageConditionedEncoderFactory(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(3, 64, 64), ((3, 64, 64),), ((64, 64), (384,)), ((3, 64, 64), (2, 384))])
def test_wrong_observation_shape_is_a_value_error(shape: object) -> None:
    with pytest.raises(ValueError, match="observation_shape"):
        LanguageConditionedEncoderFactory().create(shape)  # type: ignore[arg-type]


def test_registered_and_serializes_inside_algorithm_configs() -> None:
    assert (
        CONFIG_STORAGE[EncoderFactory].config_list["language_conditioned"]
        is LanguageConditionedEncoderFactory
    )
    encoders_module._register_once()  # idempotent: re-import must not trip d3rlpy's double-registration assert
    factory = LanguageConditionedEncoderFactory(language="learned", filters=[[8, 3, 1]], token_pooling="mean")
    for config in (
        DiscreteIQLConfig(encoder_factory=factory),
        d3rlpy.algos.DiscreteCQLConfig(encoder_factory=factory),
    ):
        data = config.serialize_to_dict()
        assert data["encoder_factory"] == {
            "type": "language_conditioned",
            "params": factory.serialize_to_dict(),
        }
        restored = type(config).deserialize(config.serialize())
        assert restored.encoder_factory == factory

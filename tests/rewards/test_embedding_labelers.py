"""clip / blip2 / roboclip on tiny randomly initialised transformers models built and saved here (no
pretrained weights can be obtained on this machine): their scores match a hand computation with the same
model; what the scores are worth cannot be measured here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rgvlm_gym.data.episode import EpisodeRecord  # noqa: E402
from rgvlm_gym.rewards import BLIP2Labeler, CLIPLabeler, RoboCLIPLabeler, make_labeler  # noqa: E402
from rgvlm_gym.rewards.embedding import save_tiny_model, vlm_rm_reward  # noqa: E402
from rgvlm_gym.rewards.testing import toy_episode  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: save_tiny_model(kind, str(root / kind)) for kind in ("clip", "blip2", "roboclip")}


@pytest.fixture
def episode() -> EpisodeRecord:
    """The toy episode with random-noise frames (so every frame embeds differently)."""
    ep = toy_episode(frame_size=48)
    ep.frames = np.random.default_rng(0).integers(0, 256, size=ep.frames.shape, dtype=np.uint8)
    return ep


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clip_embeddings(path: str, frames: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from transformers import AutoModel, AutoProcessor

    model, proc = AutoModel.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=proc(images=list(frames), return_tensors="pt")["pixel_values"])
        tok = proc(text=texts, return_tensors="pt", padding=True)
        txt = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    return img.numpy().astype(np.float64), txt.numpy().astype(np.float64)


def test_clip_cosine_matches_hand_computation(models: dict[str, str], episode: EpisodeRecord) -> None:
    lab = CLIPLabeler(models["clip"])
    res = lab.label(episode)
    img, txt = _clip_embeddings(models["clip"], episode.frames, [episode.instruction])
    cos = _unit(img) @ _unit(txt[0])
    assert np.allclose(res.meta["values"], cos, atol=1e-5)
    assert np.allclose(res.rewards, cos[1:], atol=1e-5)  # step t is scored by the frame after it
    assert len(set(np.round(cos, 6))) == 4  # the frames do score differently
    assert lab.extra_cost()["forward_passes"] == 4 + 1  # frames + the goal text
    assert res.calls == 0 and not res.simulated


def test_clip_baseline_projection_matches_hand_computation(models: dict[str, str], episode: EpisodeRecord) -> None:
    alpha, baseline = 0.7, "a room"
    res = CLIPLabeler(models["clip"], baseline=baseline, alpha=alpha).label(episode)
    img, txt = _clip_embeddings(models["clip"], episode.frames, [episode.instruction, baseline])
    x, g, b = _unit(img), _unit(txt[0]), _unit(txt[1])
    d = (g - b)[:, None]
    proj = alpha * (d @ d.T) / float((d.T @ d)[0, 0]) + (1 - alpha) * np.eye(len(g))
    hand = np.array([1 - 0.5 * float(np.sum(((xi - g) @ proj) ** 2)) for xi in x])
    assert np.allclose(res.meta["values"], hand, atol=1e-5)
    # alpha = 0 is the cosine similarity; alpha = 1 keeps only the baseline->goal direction
    assert np.allclose(vlm_rm_reward(img, txt[0], txt[1], 0.0), x @ g)
    along = ((x - g) @ d)[:, 0] / np.linalg.norm(d)
    assert np.allclose(vlm_rm_reward(img, txt[0], txt[1], 1.0), 1 - 0.5 * along**2)


def test_blip2_itm_matches_hand_computation(models: dict[str, str], episode: EpisodeRecord) -> None:
    from transformers import AutoProcessor, Blip2ForImageTextRetrieval

    lab = BLIP2Labeler(models["blip2"], batch_size=3)  # batches of 3 and 1 frames
    res = lab.label(episode)
    model = Blip2ForImageTextRetrieval.from_pretrained(models["blip2"]).eval()
    proc = AutoProcessor.from_pretrained(models["blip2"])
    hand = []
    for frame in episode.frames:  # one frame at a time
        inp = proc(images=[frame], text=[episode.instruction], return_tensors="pt")
        with torch.no_grad():
            logits = model(pixel_values=inp["pixel_values"], input_ids=inp["input_ids"], attention_mask=inp["attention_mask"],
                           use_image_text_matching_head=True).logits_per_image
        hand.append(float(torch.softmax(logits, -1)[0, 1]))
    assert np.allclose(res.meta["values"], hand, atol=1e-5)
    assert np.allclose(res.rewards, hand[1:], atol=1e-5) and ((res.rewards > 0) & (res.rewards < 1)).all()
    assert lab.extra_cost()["forward_passes"] == 4


def test_roboclip_one_video_reward_at_the_last_step(models: dict[str, str], episode: EpisodeRecord) -> None:
    from transformers import AutoProcessor, XCLIPModel

    ep = episode
    ep.frames = np.concatenate([ep.frames, ep.frames[::-1], ep.frames])  # 12 frames: sampled down to 4
    ep.actions = np.arange(11)
    ep.action_names = ["GotoLocation fridge"] * 11
    ep.rewards = np.zeros(11, np.float32)
    lab = RoboCLIPLabeler(models["roboclip"])
    res = lab.label(ep)
    assert res.meta["video_frames"] == [0, 4, 7, 11]  # evenly spaced, first and last included
    model, proc = XCLIPModel.from_pretrained(models["roboclip"]).eval(), AutoProcessor.from_pretrained(models["roboclip"])
    inp = proc(videos=[[ep.frames[i] for i in (0, 4, 7, 11)]], text=[ep.instruction], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], pixel_values=inp["pixel_values"])
    hand = float(_unit(out.video_embeds.numpy())[0] @ _unit(out.text_embeds.numpy()[0, 0]))
    assert np.allclose(res.rewards[:-1], 0.0) and np.isclose(res.rewards[-1], hand, atol=1e-5)
    assert lab.extra_cost()["forward_passes"] == 1


def test_long_instructions_are_truncated_to_the_text_window(models: dict[str, str], episode: EpisodeRecord) -> None:
    episode.instruction = "put the washed apple in the fridge, then " * 20  # ~800 characters: over every window
    for cls in (CLIPLabeler, BLIP2Labeler, RoboCLIPLabeler):
        res = cls(models[cls.name]).label(episode)
        assert res.labeled and np.isfinite(res.rewards).all()


def test_missing_or_wrong_models_are_clear_errors(models: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot load model '/no/such/model' for labeler 'clip'.*no such folder"):
        CLIPLabeler("/no/such/model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=rf"cannot load model '{empty}' for labeler 'blip2'"):
        BLIP2Labeler(str(empty))
    with pytest.raises(ValueError, match="is a 'clip' checkpoint; labeler 'roboclip' needs an X-CLIP model"):
        RoboCLIPLabeler(models["clip"])  # a CLIP checkpoint is not an X-CLIP one
    with pytest.raises(ValueError, match="needs a model"):
        CLIPLabeler("")
    with pytest.raises(ValueError, match="alpha"):
        CLIPLabeler(models["clip"], baseline="a room", alpha=2.0)


def test_configs_rebuild(models: dict[str, str]) -> None:
    lab = CLIPLabeler(models["clip"], baseline="a room", alpha=0.25)
    again = make_labeler(lab.config)
    assert isinstance(again, CLIPLabeler) and again.config == lab.config
    assert make_labeler(RoboCLIPLabeler(models["roboclip"], num_frames=4).config).params()["num_frames"] == 4

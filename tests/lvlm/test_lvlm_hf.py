"""The hf backend on a tiny random LLaVA built by the test (no downloads): the plumbing, not the text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from rgvlm_gym.lvlm import make_lvlm, normalize_messages
from rgvlm_gym.lvlm.hf import HFLVLM, resolve_device, resolve_dtype
from rgvlm_gym.lvlm.images import encode_data_url

RNG = np.random.default_rng(0)
IMG_A = RNG.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
IMG_B = RNG.integers(0, 256, size=(100, 40, 3), dtype=np.uint8)


def convo(text: str, image=None, privileged: dict | None = None, system: str | None = None) -> list[dict]:
    content: list[dict] = []
    if image is not None:
        content.append({"type": "image", "image": image})
    content.append({"type": "text", "text": text})
    if privileged is not None:
        content.append({"type": "privileged", "data": privileged})
    msgs = [{"role": "system", "content": system}] if system else []
    return [*msgs, {"role": "user", "content": content}]


@pytest.fixture(scope="module")
def hf(tiny_vlm: Path) -> HFLVLM:
    return make_lvlm(f"hf:{tiny_vlm}", device="cpu", max_new_tokens=6, batch_size=4)


def test_chat_template_applied_and_privileged_dropped(hf: HFLVLM) -> None:
    prompt, images = hf.template_inputs(
        normalize_messages(
            convo("score the apple", IMG_A, {"task": "rgvlm", "goal": "TOP-SECRET"}, system="be brief")
        )
    )
    assert prompt == "<|system|>be brief<|user|><image>score the apple<|assistant|>"
    assert len(images) == 1 and images[0].size == (64, 48)


def test_chat_with_an_image(hf: HFLVLM) -> None:
    r = hf.chat(convo("score the apple", IMG_A), max_tokens=5)
    assert isinstance(r.text, str) and r.model == hf.model and not r.usage.simulated
    prompt, images = hf.template_inputs(normalize_messages(convo("score the apple", IMG_A)))
    n_prompt = hf.processor(text=[prompt], images=[images], return_tensors="pt")["input_ids"].shape[1]
    assert r.usage.prompt_tokens == n_prompt  # image tokens included
    assert 1 <= r.usage.completion_tokens <= 5 and r.usage.images == 1
    assert r.finish_reason in ("stop", "length")


def test_batch_of_two_matches_one_by_one(hf: HFLVLM) -> None:
    a, b = convo("score the apple", IMG_A), convo("open the fridge and pick up the apple", IMG_B)
    batched = hf.chat_many([a, b])
    single = [hf.chat(a), hf.chat(b)]
    assert [r.text for r in batched] == [r.text for r in single]  # left padding is right
    assert [r.usage.prompt_tokens for r in batched] == [r.usage.prompt_tokens for r in single]
    assert batched[0].usage.prompt_tokens != batched[1].usage.prompt_tokens


def test_mixed_batch_and_async(hf: HFLVLM) -> None:
    before = hf.usage.snapshot().calls
    reqs = [convo("one", IMG_A), convo("text only"), convo("two", IMG_B), convo("more text")]
    rs = asyncio.run(hf.achat_many(reqs))
    assert [r.usage.images for r in rs] == [1, 0, 1, 0]
    r = asyncio.run(hf.achat(convo("async", IMG_A)))
    assert r.usage.images == 1
    assert hf.usage.snapshot().calls == before + 5


def test_greedy_is_deterministic_and_sampling_is_seeded(tiny_vlm: Path, hf: HFLVLM) -> None:
    msgs = convo("score", IMG_A)
    assert hf.chat(msgs, temperature=1.0).text == hf.chat(msgs, temperature=1.0).text  # greedy ignores it
    sampler = make_lvlm(f"hf:{tiny_vlm}", device="cpu", greedy=False, max_new_tokens=8)
    first = sampler.chat(msgs, temperature=1.0, seed=123).text
    assert sampler.chat(msgs, temperature=1.0, seed=123).text == first
    others = {sampler.chat(msgs, temperature=1.0, seed=s).text for s in range(5)}
    assert len(others) > 1


def test_data_url_images_and_max_side(tiny_vlm: Path) -> None:
    lvlm = make_lvlm(f"hf:{tiny_vlm}", device="cpu", image_max_side=20, max_new_tokens=2)
    msgs = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": encode_data_url(IMG_B)}}]}
    ]
    _, images = lvlm.template_inputs(normalize_messages(msgs))
    assert max(images[0].size) == 20
    assert lvlm.chat(msgs).usage.images == 1
    with pytest.raises(ValueError, match="remote URLs"):
        lvlm.chat(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
        )


def test_stop_strings_and_config_round_trip(tiny_vlm: Path, hf: HFLVLM) -> None:
    text = hf.chat(convo("score", IMG_A), max_tokens=6).text
    if len(text) > 2:
        cut = hf.chat(convo("score", IMG_A), max_tokens=6, stop=[text[2:]]).text
        assert cut == text[:2]
    assert hf.config == {
        "type": "hf",
        "params": {
            "model": str(tiny_vlm),
            "device": "cpu",
            "batch_size": 4,
            "max_new_tokens": 6,
            "max_concurrency": 4,
        },
    }
    assert hf.spec == f"hf:{tiny_vlm}"
    assert make_lvlm(hf.config).config == hf.config


def test_device_and_dtype_selection() -> None:
    import torch

    assert resolve_device("auto") in ("cpu", "cuda", "mps") and resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("fp8", "cpu")

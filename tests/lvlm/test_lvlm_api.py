"""make_lvlm, spec strings, the backend registry, messages, images and the usage meter."""

from __future__ import annotations

import asyncio
import pickle
import threading

import numpy as np
import pytest
from PIL import Image

from rgvlm_gym.lvlm import (
    LVLM,
    LVLMResponse,
    LVLMSpec,
    LVLMUsage,
    Price,
    SimLVLM,
    UsageMeter,
    make_lvlm,
    normalize_messages,
    register_lvlm,
    registered_backends,
    strip_privileged,
)
from rgvlm_gym.lvlm import registry as reg
from rgvlm_gym.lvlm.images import decode_data_url, encode_data_url, fit_max_side, to_pil

# ----------------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sim", {"type": "sim", "params": {}}),
        ("sim:noise=1.5,miss=0.1,seed=3", {"type": "sim", "params": {"noise": 1.5, "miss": 0.1, "seed": 3}}),
        ("openai:gpt-4o", {"type": "openai", "params": {"model": "gpt-4o"}}),
        (
            "openai:llava:13b@http://localhost:11434/v1",
            {"type": "openai", "params": {"model": "llava:13b", "base_url": "http://localhost:11434/v1"}},
        ),
        (
            "openai:Qwen/Qwen2.5-VL-7B-Instruct@https://h:8000/v1",
            {
                "type": "openai",
                "params": {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "base_url": "https://h:8000/v1"},
            },
        ),
        ("hf:/models/SmolVLM-256M", {"type": "hf", "params": {"model": "/models/SmolVLM-256M"}}),
        (
            "hf:HuggingFaceTB/SmolVLM-256M-Instruct",
            {"type": "hf", "params": {"model": "HuggingFaceTB/SmolVLM-256M-Instruct"}},
        ),
    ],
)
def test_spec_parsing(spec: str, expected: dict) -> None:
    parsed = LVLMSpec.parse(spec)
    assert parsed.to_dict() == expected
    assert LVLMSpec.parse(parsed.to_string()) == parsed


@pytest.mark.parametrize(("spec", "hint"), [("opneai:gpt-4o", "openai"), ("simm", "sim"), ("hff:x", "hf")])
def test_unknown_backend_did_you_mean(spec: str, hint: str) -> None:
    with pytest.raises(ValueError, match=f"Did you mean '{hint}'"):
        make_lvlm(spec)


@pytest.mark.parametrize("spec", ["", "openai:", "hf:", "sim:noise", "sim:=3"])
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        make_lvlm(spec)


def test_unknown_argument_names_the_backend_and_suggests() -> None:
    with pytest.raises(ValueError, match="Did you mean 'noise'"):
        make_lvlm("sim:nosie=1")
    with pytest.raises(ValueError, match="'sim' takes no argument 'timeout_s'"):
        make_lvlm("sim", timeout_s=3)


def test_spec_and_config_round_trip_and_pickle() -> None:
    lvlm = make_lvlm("sim:noise=0.5,latency=0.01,seed=2", max_concurrency=32)
    assert lvlm.spec == "sim:profile=exact,noise=0.5,latency=0.01,seed=2,max_concurrency=32"
    assert lvlm.config == {
        "type": "sim",
        "params": {"profile": "exact", "noise": 0.5, "latency": 0.01, "seed": 2, "max_concurrency": 32},
    }
    for rebuilt in (
        make_lvlm(lvlm.spec),
        make_lvlm(lvlm.config),
        make_lvlm(LVLMSpec.parse(lvlm.spec)),
        pickle.loads(pickle.dumps(lvlm)),
    ):
        assert isinstance(rebuilt, SimLVLM) and rebuilt.config == lvlm.config
    assert repr(lvlm) == f"SimLVLM(spec={lvlm.spec!r})"
    assert make_lvlm("sim", seed=5).settings.seed == 5  # kwargs override the spec


def test_register_a_backend() -> None:
    class Echo(LVLM):
        backend = "echo"

        def __init__(self, model: str = "echo", *, max_concurrency: int = 8) -> None:
            super().__init__(max_concurrency=max_concurrency)
            self._name = model

        @property
        def model(self) -> str:
            return self._name

        def _params(self) -> dict:
            return {"model": self._name}

        def _chat(self, messages, gen) -> LVLMResponse:
            text = " ".join(p["text"] for m in messages for p in m["content"] if p["type"] == "text")
            return LVLMResponse(text=text, usage=LVLMUsage(), model=self._name)

    register_lvlm("echo", Echo)
    try:
        assert "echo" in registered_backends()
        with pytest.raises(ValueError, match="already registered"):
            register_lvlm("echo", Echo)
        lvlm = make_lvlm("echo:parrot")
        assert lvlm.chat([{"role": "user", "content": "hello"}]).text == "hello"
        assert (
            asyncio.run(lvlm.achat([{"role": "user", "content": "async"}])).text == "async"
        )  # default achat
        assert lvlm.spec == "echo:parrot" and lvlm.usage.snapshot().calls == 2
    finally:
        reg._REGISTRY.pop("echo")


# ----------------------------------------------------------------------------------------- messages


def test_normalize_messages_accepts_strings_arrays_and_pil() -> None:
    arr = np.zeros((4, 5, 3), np.uint8)
    msgs = normalize_messages(
        [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    "plain",
                    {"type": "image", "image": arr},
                    {"type": "image", "image": Image.new("RGB", (3, 3))},
                ],
            },
        ]
    )
    assert msgs[0]["content"] == [{"type": "text", "text": "be brief"}]
    assert [p["type"] for p in msgs[1]["content"]] == ["text", "image", "image"]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ("hello", "list of"),
        ([], "at least one"),
        ([{"role": "robot", "content": "x"}], "role"),
        ([{"role": "user"}], "'role' and 'content'"),
        ([{"role": "user", "content": [{"type": "video"}]}], "type"),
        (
            [{"role": "user", "content": [{"type": "image", "image": np.zeros((4, 4, 3), np.float32)}]}],
            "uint8",
        ),
        ([{"role": "user", "content": [{"type": "privileged", "data": [1]}]}], "dict"),
        ([{"role": "user", "content": 3}], "content"),
    ],
)
def test_bad_messages_are_value_errors(messages, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_lvlm("sim").chat(messages)


def test_strip_privileged_drops_emptied_messages() -> None:
    msgs = normalize_messages(
        [{"role": "user", "content": [{"type": "privileged", "data": {}}]}, {"role": "user", "content": "hi"}]
    )
    assert strip_privileged(msgs) == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_generation_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        make_lvlm("sim").chat([{"role": "user", "content": "x"}], max_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        make_lvlm("sim").chat([{"role": "user", "content": "x"}], temperature=-1)


def test_chat_many_inside_a_running_loop() -> None:
    lvlm = make_lvlm("sim")

    async def main() -> list:
        return lvlm.chat_many([[{"role": "user", "content": "x"}]] * 3)  # blocking call from async code

    assert len(asyncio.run(main())) == 3


def test_return_exceptions() -> None:
    bad = [{"role": "user", "content": [{"type": "privileged", "data": {"task": "nope"}}]}]
    good = [{"role": "user", "content": "x"}]
    out = make_lvlm("sim").chat_many([good, bad], return_exceptions=True)
    assert isinstance(out[0], LVLMResponse) and isinstance(out[1], ValueError)


# ----------------------------------------------------------------------------------------- images


def test_images_encode_resize_and_convert() -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(300, 600, 3), dtype=np.uint8)
    png = encode_data_url(arr, fmt="png")
    assert np.array_equal(np.asarray(decode_data_url(png)), arr)  # lossless
    jpg = encode_data_url(arr, max_side=224, fmt="jpeg")
    assert jpg.startswith("data:image/jpeg;base64,") and decode_data_url(jpg).size == (224, 112)
    assert fit_max_side(to_pil(arr), 1000).size == (600, 300)  # never upscales
    assert to_pil(np.zeros((5, 6), np.uint8)).mode == "RGB"
    assert to_pil(np.zeros((5, 6, 4), np.uint8)).size == (6, 5)
    with pytest.raises(ValueError, match="fmt"):
        encode_data_url(arr, fmt="gif")


# ----------------------------------------------------------------------------------------- usage


def test_usage_meter_sums_and_prices() -> None:
    meter = UsageMeter(prices={"m": Price(2.5, 10.0), "n": (1.0, 1.0)})
    meter.record(
        "m", LVLMUsage(prompt_tokens=1_000_000, completion_tokens=100_000, images=2, latency_s=1.0, retries=1)
    )
    meter.record("n", LVLMUsage(prompt_tokens=500_000, completion_tokens=500_000, latency_s=0.5))
    meter.record("x", LVLMUsage(prompt_tokens=10, completion_tokens=10))
    meter.record("sim", LVLMUsage(prompt_tokens=10, completion_tokens=10, simulated=True))
    meter.record_failure("m", retries=3, images=1, latency_s=2.0)
    s = meter.snapshot()
    assert (s.calls, s.failures, s.retries, s.images, s.simulated_calls) == (5, 1, 4, 3, 1)
    assert (s.prompt_tokens, s.completion_tokens) == (1_500_020, 600_020)
    assert s.cost_usd == pytest.approx(2.5 + 1.0 + 1.0)
    assert s.unpriced_models == ("x",) and s.latency_s == pytest.approx(3.5)
    text = meter.summary()
    assert (
        text.startswith("LVLM calls: 5 (1 failed, 4 retries, 1 simulated)")
        and "$4.5000" in text
        and "no price for x" in text
    )
    meter.reset()
    assert meter.snapshot().calls == 0
    with pytest.raises(ValueError):
        Price(-1, 0)


def test_usage_meter_is_thread_safe() -> None:
    meter = UsageMeter()

    def work() -> None:
        for _ in range(2000):
            meter.record("m", LVLMUsage(prompt_tokens=1, completion_tokens=2, images=1))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = meter.snapshot()
    assert (s.calls, s.prompt_tokens, s.completion_tokens, s.images) == (16000, 16000, 32000, 16000)


def test_lvlm_meter_counts_async_calls_and_wall_time() -> None:
    lvlm = make_lvlm("sim:latency=0.05", max_concurrency=10, prices={"sim": (1, 1)})
    asyncio.run(lvlm.achat_many([[{"role": "user", "content": str(i)}] for i in range(20)]))
    s = lvlm.usage.snapshot()
    assert s.calls == 20 and s.cost_usd == 0.0  # simulated calls are free
    assert 0.09 <= s.wall_s < 0.3 and s.latency_s >= 20 * 0.05


def test_response_round_trips_through_a_dict() -> None:
    import json

    r = make_lvlm("sim").chat([{"role": "user", "content": "x"}])
    assert LVLMResponse.from_dict(json.loads(json.dumps(r.to_dict()))) == r

"""The openai backend over real sockets: `transformers serve` and a fault-injection server."""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time
import warnings

import numpy as np
import pytest
from _lvlm_servers import FaultServer

from rgvlm_gym.lvlm import LVLMRequestError, make_lvlm
from rgvlm_gym.lvlm import openai_client as oc
from rgvlm_gym.lvlm.images import decode_data_url

IMAGE = np.random.default_rng(0).integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
SECRET = "sk-test-SECRETKEY0123456789abcdef"


def user(text: str = "hi", image: np.ndarray | None = None, privileged: dict | None = None) -> list[dict]:
    content: list[dict] = [{"type": "text", "text": text}]
    if image is not None:
        content.append({"type": "image", "image": image})
    if privileged is not None:
        content.append({"type": "privileged", "data": privileged})
    return [{"role": "user", "content": content}]


def fast(server: FaultServer, **kwargs):
    opts = {"backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 0.3, "max_retries": 2, **kwargs}
    return make_lvlm(f"openai:fault-model@{server.base_url}", **opts)


# ------------------------------------------------------------------------- a real server


def test_round_trip_through_transformers_serve(transformers_server: str, tiny_vlm) -> None:
    lvlm = make_lvlm(f"openai:{tiny_vlm}@{transformers_server}", timeout_s=60, max_retries=0)
    image = np.random.default_rng(1).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    r = lvlm.chat(user("Score the apple.", image), max_tokens=5, temperature=0, seed=0)
    assert isinstance(r.text, str)
    assert r.usage.images == 1
    assert r.usage.prompt_tokens > 10  # the image tokens and the template are counted by the server
    assert 1 <= r.usage.completion_tokens <= 5
    assert r.usage.retries == 0 and not r.usage.simulated
    rs = asyncio.run(lvlm.achat_many([user("one", image), user("two")], max_tokens=3))
    assert [x.usage.images for x in rs] == [1, 0]
    assert lvlm.usage.snapshot().calls == 3


# ------------------------------------------------------------------------- request building


def test_request_format_images_privileged_and_generation_settings(fault_server: FaultServer) -> None:
    lvlm = fast(fault_server, image_max_side=128, image_format="jpeg", image_detail="low")
    gt = {"task": "rgvlm", "secret_ground_truth": 42}
    r = lvlm.chat(
        user("look", IMAGE, gt),
        temperature=0.2,
        max_tokens=17,
        seed=3,
        response_format={"type": "json_object"},
        top_k=5,  # not an SDK argument: goes into the body as is
    )
    assert r.text == "ok" and r.model == "fault-model" and r.usage.images == 1
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 2)
    _, headers, body = fault_server.requests[-1]
    assert body["model"] == "fault-model"
    assert (body["temperature"], body["max_tokens"], body["seed"], body["top_k"]) == (0.2, 17, 3, 5)
    assert body["response_format"] == {"type": "json_object"}
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]  # privileged part stripped
    assert "secret_ground_truth" not in str(body)
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,") and parts[1]["image_url"]["detail"] == "low"
    assert decode_data_url(url).size == (128, 96)
    assert headers["authorization"] == "Bearer EMPTY"  # loopback without a key: a dummy


def test_text_only_message_is_sent_as_a_string(fault_server: FaultServer) -> None:
    fast(fault_server).chat([{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}])
    assert fault_server.requests[-1][2]["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hello"},
    ]


def test_concurrency_is_bounded(fault_server: FaultServer) -> None:
    fault_server.set_script([("hang", 0.15)])
    in_flight, peak, lock = 0, 0, threading.Lock()
    orig = fault_server.httpd.RequestHandlerClass.do_POST

    def counting(handler):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            orig(handler)
        finally:
            with lock:
                in_flight -= 1

    fault_server.httpd.RequestHandlerClass.do_POST = counting
    lvlm = fast(fault_server, max_concurrency=3, timeout_s=5)
    rs = lvlm.chat_many([user(str(i)) for i in range(9)])
    assert len(rs) == 9 and peak == 3


# ------------------------------------------------------------------------- error paths


def test_429_retry_after_is_honoured(fault_server: FaultServer) -> None:
    fault_server.set_script(
        [
            ("status", 429, {"Retry-After": "0.3"}, {"error": {"message": "rate limited"}}),
            ("ok", "after wait"),
        ]
    )
    lvlm = fast(fault_server)
    r = asyncio.run(lvlm.achat(user()))
    assert r.text == "after wait" and r.usage.retries == 1
    (t0, _, _), (t1, _, _) = fault_server.requests
    assert t1 - t0 >= 0.29  # waited Retry-After, not the 10 ms back-off
    assert lvlm.usage.snapshot().retries == 1


def test_429_retry_after_ms_and_http_date(fault_server: FaultServer) -> None:
    assert oc._retry_after({"retry-after-ms": "250"}) == 0.25
    assert oc._retry_after({"retry-after": "2"}) == 2.0
    assert oc._retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert oc._retry_after({}) is None


@pytest.mark.parametrize(
    ("step", "status"),
    [
        (("status", 500, {}, {"error": {"message": "boom"}}), 500),
        (("status", 503, {}, {"error": {"message": "overloaded"}}), 503),
        (("hang", 1.0), "timeout"),
        (("drop",), "connection error"),
        (("nonjson",), "invalid response"),
        (("badjson",), "invalid response"),
    ],
)
def test_retryable_failures_are_retried_then_reported(fault_server: FaultServer, step: tuple, status) -> None:
    fault_server.set_script([step])
    lvlm = fast(fault_server, max_retries=2)
    with pytest.raises(LVLMRequestError) as info:
        asyncio.run(lvlm.achat(user()))
    err = info.value
    assert err.attempts == 3 and err.status == status and err.model == "fault-model"
    assert err.url == f"{fault_server.base_url}/chat/completions"
    assert "fault-model" in str(err) and "3 attempts" in str(err) and str(status) in str(err)
    assert len(fault_server.requests) == 3
    snap = lvlm.usage.snapshot()
    assert (snap.calls, snap.failures, snap.retries) == (1, 1, 2)


def test_sync_chat_recovers_after_transient_failures(fault_server: FaultServer) -> None:
    fault_server.set_script([("drop",), ("status", 502, {}, {}), ("nonjson",), ("ok", "finally")])
    r = fast(fault_server, max_retries=3).chat(user())
    assert r.text == "finally" and r.usage.retries == 3


def test_client_errors_are_not_retried(fault_server: FaultServer) -> None:
    fault_server.set_script([("status", 400, {}, {"error": {"message": "bad image"}})])
    with pytest.raises(LVLMRequestError) as info:
        fast(fault_server).chat(user())
    assert info.value.attempts == 1 and info.value.status == 400 and "bad image" in str(info.value)


def test_backoff_grows_exponentially_with_jitter(fault_server: FaultServer) -> None:
    lvlm = fast(fault_server, backoff_s=1.0, backoff_max_s=5.0)
    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (2.5, 5), (2.5, 5)], start=1):
        delays = [lvlm._delay(attempt, None) for _ in range(50)]
        assert lo <= min(delays) and max(delays) <= hi and len(set(delays)) > 1
    assert lvlm._delay(1, 7.0) == 7.0
    assert lvlm._delay(1, 1e6) == lvlm.retry_after_max_s


# ------------------------------------------------------------------------- secrets


def test_api_key_never_leaks(fault_server: FaultServer, monkeypatch, caplog) -> None:
    monkeypatch.setenv("MY_LVLM_KEY", SECRET)
    # a careless server echoes the key in its error body
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}; Authorization: Bearer {SECRET}"}}
    fault_server.set_script([("status", 500, {}, echo)])
    caplog.set_level(logging.DEBUG)
    lvlm = fast(fault_server, api_key_env="MY_LVLM_KEY")
    with pytest.raises(LVLMRequestError) as info:
        lvlm.chat(user())
    assert fault_server.requests[0][1]["authorization"] == f"Bearer {SECRET}"  # it was sent...
    err = info.value
    leaks = [
        str(err),
        repr(err),
        err.reason,
        repr(lvlm),
        lvlm.spec,
        str(lvlm.config),
        caplog.text,
        str(vars(lvlm)),
    ]
    leaks.append(str(err.__cause__) + str(err.__context__))
    for text in leaks:
        assert SECRET not in text and SECRET[8:20] not in text
    assert err.__cause__ is None and err.__context__ is None
    assert "MY_LVLM_KEY" in str(lvlm.config)  # the variable's name is kept, not its value
    restored = pickle.loads(pickle.dumps(lvlm))  # pickles carry the config, not the key
    assert SECRET not in str(pickle.dumps(lvlm))
    assert restored.config == lvlm.config


def test_redact_masks_key_shapes() -> None:
    text = f"key={SECRET} header='Authorization: Bearer abc.def-123' other=sk-proj-ABCDEFGHIJ"
    out = oc.redact(text, (SECRET,))
    assert SECRET not in out and "abc.def-123" not in out and "ABCDEFGHIJ" not in out


def test_missing_key_for_a_remote_server_is_an_error(monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    lvlm = make_lvlm("openai:gpt-4o@https://api.example.com/v1", api_key_env="NO_SUCH_KEY_VAR")
    assert lvlm.spec == "openai:gpt-4o@https://api.example.com/v1"  # building needs no key...
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        lvlm.chat(user())  # ...sending does, and fails before any network traffic
    assert make_lvlm("openai:gpt-4o").spec == "openai:gpt-4o"


def test_plain_http_with_a_key_warns_once_per_host(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setattr(oc, "_WARNED_HOSTS", set())
    with pytest.warns(UserWarning, match=r"plain http to 10\.1\.2\.3") as record:
        make_lvlm("openai:m@http://10.1.2.3:8000/v1")
    assert all(SECRET not in str(w.message) for w in record)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_lvlm("openai:m@http://10.1.2.3:8000/v1")  # second time: silent
        make_lvlm("openai:m@http://127.0.0.1:8000/v1")  # loopback: silent
        make_lvlm("openai:m@https://10.1.2.3/v1")  # https: silent


def test_credentials_in_the_url_are_removed(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    lvlm = make_lvlm("openai:m@https://user:hunter2pass@example.com/v1?token=abc")
    assert "hunter2pass" not in lvlm.spec + str(lvlm.config) + repr(lvlm) and "token" not in lvlm.url
    assert lvlm.spec == "openai:m@https://example.com/v1"


def test_latency_is_counted_including_backoff(fault_server: FaultServer) -> None:
    fault_server.set_script([("status", 429, {"retry-after-ms": "200"}, {}), ("ok", "x")])
    start = time.perf_counter()
    r = fast(fault_server).chat(user())
    assert r.usage.latency_s >= 0.2 and r.usage.latency_s <= time.perf_counter() - start


def test_chat_many_closes_the_client_of_its_own_loop(fault_server: FaultServer) -> None:
    lvlm = fast(fault_server)
    for _ in range(2):  # each chat_many runs (and ends) its own event loop
        assert [r.text for r in lvlm.chat_many([user(), user()])] == ["ok", "ok"]
        assert len(lvlm._async_clients) == 0
    assert asyncio.run(lvlm.achat(user())).text == asyncio.run(lvlm.achat(user())).text == "ok"
    lvlm.close()

"""Test utilities: a fault-injection OpenAI-compatible HTTP server and a tiny random VLM builder.

Both are real: the server listens on a real socket (127.0.0.1, a free port) and speaks HTTP/1.1; the VLM
is a genuine transformers LLaVA model with a tokenizer trained here, saved to disk. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def completion_body(
    text: str = "ok", model: str = "fault-model", prompt_tokens: int = 7, completion_tokens: int = 2
) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class FaultServer:
    """An OpenAI-style ``POST /v1/chat/completions`` endpoint that plays a script of faults.

    Each request pops the next step of the script (the last step repeats once the script runs out):

    - ``("ok", text)`` — a valid chat completion;
    - ``("status", code, headers, body)`` — that status code with JSON ``body`` and ``headers``;
    - ``("hang", seconds)`` — wait, then answer ok (clients with a shorter timeout give up);
    - ``("drop",)`` — close the connection without a response;
    - ``("nonjson",)`` — 200 with an HTML body;
    - ``("badjson",)`` — 200, ``application/json`` content type, broken JSON.

    ``requests`` records (time, headers, parsed body) of every request.
    """

    def __init__(self, script: list[tuple] | None = None) -> None:
        self.script: deque[tuple] = deque(script or [("ok", "ok")])
        self.requests: list[tuple[float, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with server._lock:
                    server.requests.append(
                        (time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    step = server.script.popleft() if len(server.script) > 1 else server.script[0]
                kind = step[0]
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if kind == "hang":
                    time.sleep(step[1])
                    step = ("ok", "late")
                    kind = "ok"
                if kind == "ok":
                    self._send(200, json.dumps(completion_body(step[1])).encode(), "application/json")
                elif kind == "status":
                    _, code, headers, payload = step
                    self._send(code, json.dumps(payload).encode(), "application/json", headers)
                elif kind == "nonjson":
                    self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                elif kind == "badjson":
                    self._send(200, b'{"choices": [', "application/json")
                else:
                    raise AssertionError(f"unknown step {step}")

            def _send(
                self, code: int, payload: bytes, ctype: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def set_script(self, script: list[tuple]) -> None:
        with self._lock:
            self.script = deque(script)
            self.requests.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_tiny_llava(out: Path) -> Path:
    """Save a tiny randomly initialised LLaVA (CLIP vision tower + Llama text model) with its processor,
    a byte-level BPE tokenizer trained here, and a chat template, to ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor as ImageProcessor

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        ["score each action from 0 to 10", "the robot picks up the apple and opens the fridge"], trainer
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    processor = LlavaProcessor(
        image_processor=ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=chat_template,
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 2
    model.generation_config.bos_token_id = 1
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out

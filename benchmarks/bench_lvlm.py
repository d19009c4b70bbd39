"""LVLM client speed: achat throughput against the concurrency limit, and the client's own overhead.

Two measurements, side by side in one run:

1. **Throughput.** The simulated LVLM with ``latency`` seconds per call and ``max_concurrency=concurrency``
   answers ``n_requests`` RG-VLM scoring requests (text, one image, privileged ground truth) through
   ``achat_many``. The ideal is ``concurrency / latency`` requests per second (64 req/s for 32 and 0.5 s);
   the target is >= 90 % of it.
2. **Client overhead.** What the ``openai`` client itself spends per request before and after the network:
   message validation, privileged-part stripping, encoding a ``image_side`` px image to a base64 data URL
   (PNG and JPEG), parsing the response and recording usage. Measured on the real ``OpenAILVLM`` code path
   with the socket left out, in ms per image.

Run: ``python benchmarks/bench_lvlm.py`` (``--help`` lists the options).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from rgvlm_gym.lvlm import make_lvlm, normalize_messages


@dataclass
class Args:
    latency: float = 0.5
    """sim latency per call, seconds"""
    concurrency: int = 32
    """max_concurrency of the client (in-flight achat calls)"""
    n_requests: int = 640
    """requests in the throughput run (640 at 64 req/s is 10 s)"""
    image_side: int = 224
    """side of the square uint8 frame sent with each request, pixels"""
    overhead_requests: int = 300
    """requests timed per image format for the client-overhead measurement"""
    seed: int = 0
    """seed of the images and the sim"""
    out: str = ""
    """optional path of a JSON file for the metrics"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(parser.parse_args()))


def smooth_frame(rng: np.random.Generator, side: int) -> np.ndarray:
    """A rendered-looking frame: a shaded floor and wall and a few flat-coloured boxes."""
    y = np.linspace(0.0, 1.0, side)[:, None, None]
    base = rng.uniform(60, 200, size=3)
    frame = base * (0.6 + 0.4 * y) * np.ones((side, side, 3))
    for _ in range(6):
        x0, y0 = rng.integers(0, side - 20, size=2)
        w, h = rng.integers(10, side // 3, size=2)
        frame[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, size=3)
    return frame.clip(0, 255).astype(np.uint8)


def rgvlm_request(image: np.ndarray, i: int) -> list[dict]:
    actions = ["GotoLocation countertop", "PickupObject apple", "GotoLocation fridge", "PutObject fridge"]
    data = {
        "task": "rgvlm",
        "stage": "scores",
        "actions": actions,
        "contributions": [0.1, 0.4, 0.1, 1.0],
        "goal": f"put an apple in the fridge #{i}",
    }
    text = 'Score how much each action advanced the goal, 0 to 10. Answer as JSON {"scores": [...]}.'
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image", "image": image},
                {"type": "privileged", "data": data},
            ],
        }
    ]


if __name__ == "__main__":
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    side = args.image_side
    frame_sets = {  # rendered-like frames (smooth shading, flat objects) and the worst case for PNG (noise)
        "smooth": [smooth_frame(rng, side) for _ in range(16)],
        "noise": [rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8) for _ in range(16)],
    }
    frames = frame_sets["smooth"]
    metrics: dict[str, float] = {}

    # 1. achat throughput of the simulated LVLM against the concurrency limit
    sim = make_lvlm(f"sim:latency={args.latency},seed={args.seed}", max_concurrency=args.concurrency)
    requests = [rgvlm_request(frames[i % len(frames)], i) for i in range(args.n_requests)]
    start = time.perf_counter()
    responses = asyncio.run(sim.achat_many(requests))
    wall = time.perf_counter() - start
    limit = args.concurrency / args.latency
    metrics["throughput/req_per_s"] = args.n_requests / wall
    metrics["throughput/limit_req_per_s"] = limit
    metrics["throughput/fraction_of_limit"] = metrics["throughput/req_per_s"] / limit
    metrics["throughput/wall_s"] = wall
    assert all(r.model == "sim" for r in responses)

    # 2. the openai client's own work per request (no socket): validate, strip, encode, parse, record
    fake = SimpleNamespace(
        choices=[
            SimpleNamespace(
                message=SimpleNamespace(content='{"scores": [1, 4, 1, 10]}'), finish_reason="stop"
            )
        ],
        usage=SimpleNamespace(prompt_tokens=300, completion_tokens=12),
        model="bench-model",
    )
    for kind, kind_frames in frame_sets.items():
        for fmt in ("png", "jpeg"):
            client = make_lvlm(
                "openai:bench-model@http://127.0.0.1:9/v1", image_format=fmt, image_max_side=side
            )
            per_call = []
            for i in range(args.overhead_requests):
                t0 = time.perf_counter()
                norm = normalize_messages(rgvlm_request(kind_frames[i % len(kind_frames)], i))
                kwargs, n_images = client.build_request(norm, {"temperature": 0, "max_tokens": 64})
                response = client._parse(fake, n_images, 0.0, 0)
                client.usage.record(response.model, response.usage)
                per_call.append((time.perf_counter() - t0) * 1e3 / n_images)
            url = kwargs["messages"][0]["content"][1]["image_url"]["url"]
            metrics[f"overhead/{kind}_{fmt}_ms_per_image_median"] = statistics.median(per_call)
            metrics[f"overhead/{kind}_{fmt}_ms_per_image_p90"] = float(np.percentile(per_call, 90))
            metrics[f"overhead/{kind}_{fmt}_data_url_kib"] = len(url) / 1024

    # the sim's own per-call cost (hashing the frame, drawing, bookkeeping), latency 0
    sim0 = make_lvlm(f"sim:seed={args.seed}")
    t0 = time.perf_counter()
    for i in range(args.overhead_requests):
        sim0.chat(rgvlm_request(frames[i % len(frames)], i))
    metrics["overhead/sim_ms_per_call"] = (time.perf_counter() - t0) * 1e3 / args.overhead_requests

    print(f"bench_lvlm: {dataclasses.asdict(args)}")
    for key, value in metrics.items():
        print(f"{key:40s} {value:10.3f}")
    target = "PASS" if metrics["throughput/fraction_of_limit"] >= 0.9 else "FAIL"
    print(f"throughput target (>= 90 % of {limit:.0f} req/s): {target}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": dataclasses.asdict(args), "metrics": metrics}, fh, indent=2)

"""The ``hf:`` backend: a transformers vision-language model running in this process.

Holds :class:`HFLVLM`: ``AutoProcessor`` + ``AutoModelForImageTextToText`` loaded from a local directory or a
hub id (Qwen2-VL / Qwen2.5-VL, SmolVLM / Idefics3, LLaVA-style and other image-text-to-text families), the
model's own chat template, left-padded batched generation (``chat_many`` / ``achat_many`` group requests
into batches of ``batch_size``), device and dtype selection, and greedy (deterministic) decoding by default.

``privileged`` parts are dropped before the chat template is applied. Images (np.uint8 arrays, PIL images,
or base64 ``data:`` URLs) go to the processor as RGB PIL images, optionally downscaled to
``image_max_side``. Generation settings: ``max_tokens`` (-> ``max_new_tokens``), ``temperature`` and
``top_p`` (sampling only when ``greedy=False``), ``seed`` (seeds torch before sampling), ``stop`` (the
answer is cut at the first stop string). ``response_format`` cannot be enforced here and is ignored;
other keys go to ``model.generate`` as is.

torch and transformers are imported when a client is built, not when this module is imported.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rgvlm_gym.lvlm.base import LVLM, LVLMResponse, Messages, normalize_messages, strip_privileged
from rgvlm_gym.lvlm.images import decode_data_url, fit_max_side, to_pil
from rgvlm_gym.lvlm.usage import LVLMUsage, Price

__all__ = ["HFLVLM", "resolve_device", "resolve_dtype"]

_DTYPES = ("auto", "float32", "float16", "bfloat16")
_IGNORED_GEN = frozenset(
    {"response_format", "max_completion_tokens", "frequency_penalty", "presence_penalty", "user"}
)


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"mps"``, else ``"cpu"``; other values as given."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """A torch dtype: ``"auto"`` is bfloat16 on CUDA GPUs that support it, float16 on other GPUs, float32 on CPU."""
    import torch

    if dtype not in _DTYPES:
        raise ValueError(f"Expect `dtype` to be one of {_DTYPES}, actually: {dtype!r}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


class HFLVLM(LVLM):
    """A transformers image-text-to-text model in this process (``hf:<local path or hub id>``).

    Args:
        model: a local directory or a hub id (hub downloads follow the usual ``HF_HUB_OFFLINE`` /
            ``local_files_only`` rules).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...
        dtype: ``"auto"``, ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        batch_size: conversations per ``generate`` call in ``chat_many`` / ``achat_many``.
        greedy: greedy decoding (deterministic) whatever the temperature; ``False`` samples when
            ``temperature > 0``.
        max_new_tokens: generation length when a call gives no ``max_tokens``.
        image_max_side: downscale images so the longer side is at most this (``None``: as given).
        trust_remote_code, revision, local_files_only, attn_implementation: passed to ``from_pretrained``.
        max_concurrency: bound on concurrent ``achat`` calls.
        gen_defaults: default generation settings.
        prices: price table (model -> dollars per 1M input / output tokens), e.g. for GPU-hour estimates.
    """

    backend = "hf"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        greedy: bool = True,
        max_new_tokens: int = 256,
        image_max_side: int | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        local_files_only: bool | None = None,
        attn_implementation: str | None = None,
        max_concurrency: int = 4,
        gen_defaults: Mapping[str, Any] | None = None,
        prices: Mapping[str, Price | tuple[float, float]] | None = None,
    ) -> None:
        super().__init__(max_concurrency=max_concurrency, gen_defaults=gen_defaults, prices=prices)
        if not isinstance(model, str) or not model:
            raise ValueError(f"Expect `model` to be a local path or a hub id, actually: {model!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Expect `batch_size` to be a positive int, actually: {batch_size!r}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"Expect `max_new_tokens` to be a positive int, actually: {max_new_tokens!r}")
        is_local = _check_model_source(model, revision, local_files_only)  # before seconds of imports
        import torch
        import transformers
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._model_name = model
        self.device_arg, self.dtype_arg = device, dtype
        self.device = resolve_device(device)
        self.torch_dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.greedy = greedy
        self.max_new_tokens = max_new_tokens
        self.image_max_side = image_max_side
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self.local_files_only = local_files_only
        self.attn_implementation = attn_implementation

        load: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if revision is not None:
            load["revision"] = revision
        if local_files_only is not None:
            load["local_files_only"] = local_files_only
        if is_local:
            load["local_files_only"] = True
        model_kwargs = dict(load)
        dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        model_kwargs[dtype_key] = self.torch_dtype
        if attn_implementation is not None:
            model_kwargs["attn_implementation"] = attn_implementation
        try:
            self.processor = AutoProcessor.from_pretrained(model, **load)  # type: ignore[no-untyped-call]
            self.hf_model = (
                AutoModelForImageTextToText.from_pretrained(model, **model_kwargs).to(self.device).eval()  # type: ignore[arg-type]
            )
        except (OSError, ValueError) as exc:  # not a transformers image-text model, missing / damaged files
            from rgvlm_gym.errors import UsageError

            raise UsageError(f"cannot load the hf model {model!r} as an image-text-to-text model: {exc}") from exc

        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"  # decoder-only batched generation
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.hf_model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self._pad_id = self.tokenizer.pad_token_id
        self._lock = threading.Lock()
        self._torch = torch

    @property
    def model(self) -> str:
        return self._model_name

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self._model_name}
        defaults = {
            "device_arg": ("device", "auto"),
            "dtype_arg": ("dtype", "auto"),
            "batch_size": ("batch_size", 8),
            "greedy": ("greedy", True),
            "max_new_tokens": ("max_new_tokens", 256),
            "image_max_side": ("image_max_side", None),
            "trust_remote_code": ("trust_remote_code", False),
            "revision": ("revision", None),
            "local_files_only": ("local_files_only", None),
            "attn_implementation": ("attn_implementation", None),
        }
        for attr, (name, default) in defaults.items():
            if getattr(self, attr) != default:
                params[name] = getattr(self, attr)
        return params

    def close(self) -> None:
        pass

    # -- requests

    def _image(self, part: Mapping[str, Any]) -> Any:
        if part["type"] == "image":
            image = to_pil(part["image"])
        else:
            url = part["image_url"]["url"]
            if not url.startswith("data:"):
                raise ValueError(
                    f"The hf backend takes images inline or as data: URLs, not remote URLs: {url[:60]!r}"
                )
            image = decode_data_url(url)
        return fit_max_side(image, self.image_max_side)

    def template_inputs(self, messages: list[dict[str, Any]]) -> tuple[str, list[Any]]:
        """The chat-template prompt and the PIL images of normalised ``messages`` (privileged parts dropped)."""
        conv: list[dict[str, Any]] = []
        images: list[Any] = []
        for msg in strip_privileged(messages):
            parts: list[dict[str, Any]] = []
            for part in msg["content"]:
                if part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
                else:
                    images.append(self._image(part))
                    parts.append({"type": "image"})
            conv.append({"role": msg["role"], "content": parts})
        prompt = self.processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        return prompt, images

    def _generate_kwargs(self, gen: Mapping[str, Any]) -> tuple[dict[str, Any], int | None, list[str]]:
        kwargs: dict[str, Any] = {"max_new_tokens": gen.get("max_tokens") or self.max_new_tokens}
        temperature = gen.get("temperature")
        sample = not self.greedy and (temperature is None or temperature > 0)
        kwargs["do_sample"] = sample
        if sample:
            if temperature is not None:
                kwargs["temperature"] = float(temperature)
            if gen.get("top_p") is not None:
                kwargs["top_p"] = float(gen["top_p"])
        stop = gen.get("stop") or []
        stops = [stop] if isinstance(stop, str) else list(stop)
        known = {"max_tokens", "temperature", "top_p", "seed", "stop"}
        for key, value in gen.items():
            if key not in known and key not in _IGNORED_GEN:
                kwargs[key] = value
        kwargs["pad_token_id"] = self._pad_id
        return kwargs, gen.get("seed"), stops

    def generate_batch(
        self, conversations: Sequence[list[dict[str, Any]]], gen: Mapping[str, Any]
    ) -> list[LVLMResponse]:
        """Answer normalised conversations in one ``generate`` call (all with images, or all without)."""
        torch = self._torch
        start = time.perf_counter()
        prompts, images = [], []
        for conv in conversations:
            prompt, imgs = self.template_inputs(conv)
            prompts.append(prompt)
            images.append(imgs)
        counts = [len(x) for x in images]
        proc_kwargs: dict[str, Any] = {"text": prompts, "return_tensors": "pt", "padding": True}
        if any(counts):
            if not all(counts):
                raise ValueError("Expect a batch of conversations that all have images or all have none")
            proc_kwargs["images"] = images
        inputs = self.processor(**proc_kwargs)
        inputs = {
            k: (v.to(self.device, self.torch_dtype) if torch.is_floating_point(v) else v.to(self.device))
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }
        gen_kwargs, seed, stops = self._generate_kwargs(gen)
        with self._lock, torch.inference_mode():
            if seed is not None and gen_kwargs["do_sample"]:
                torch.manual_seed(int(seed))
            out = self.hf_model.generate(**inputs, **gen_kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out[:, prompt_len:].cpu()
        prompt_counts = (
            inputs["attention_mask"].sum(dim=1).tolist()
            if "attention_mask" in inputs
            else [prompt_len] * len(prompts)
        )
        latency = time.perf_counter() - start
        responses = []
        for row, n_prompt, n_images in zip(new_tokens.tolist(), prompt_counts, counts, strict=True):
            n_out, finish = len(row), "length"
            for j, tok in enumerate(row):
                if tok in self._eos_ids:
                    n_out, finish = j + 1, "stop"
                    break
            if finish == "length":
                while n_out and row[n_out - 1] == self._pad_id and self._pad_id not in self._eos_ids:
                    n_out -= 1
            text = self.tokenizer.decode(row[:n_out], skip_special_tokens=True)
            for s in stops:
                if s and s in text:
                    text, finish = text[: text.index(s)], "stop"
            responses.append(
                LVLMResponse(
                    text=text,
                    usage=LVLMUsage(
                        prompt_tokens=int(n_prompt),
                        completion_tokens=n_out,
                        images=n_images,
                        latency_s=latency,
                    ),
                    model=self._model_name,
                    finish_reason=finish,
                )
            )
        return responses

    def _chat(self, messages: list[dict[str, Any]], gen: dict[str, Any]) -> LVLMResponse:
        return self.generate_batch([messages], gen)[0]

    async def achat_many(
        self,
        requests: Sequence[Messages],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        **gen: Any,
    ) -> list[LVLMResponse | BaseException]:
        """Answer many conversations in batches of ``batch_size`` (``concurrency`` is not used: one model,
        one batch at a time)."""
        settings = self._merge_gen(gen)
        norms = [normalize_messages(m) for m in requests]
        results: list[LVLMResponse | BaseException | None] = [None] * len(norms)
        has_images = [
            any(p["type"] in ("image", "image_url") for m in strip_privileged(n) for p in m["content"])
            for n in norms
        ]
        for flag in (True, False):
            idx = [i for i, h in enumerate(has_images) if h is flag]
            for k in range(0, len(idx), self.batch_size):
                chunk = idx[k : k + self.batch_size]
                start = time.perf_counter()
                try:
                    responses = await asyncio.to_thread(
                        self.generate_batch, [norms[i] for i in chunk], settings
                    )
                except Exception as exc:
                    for i in chunk:
                        self._record_failure(exc, norms[i], time.perf_counter() - start)
                    if not return_exceptions:
                        raise
                    for i in chunk:
                        results[i] = exc
                    continue
                for i, r in zip(chunk, responses, strict=True):
                    self.usage.record(r.model, r.usage)
                    results[i] = r
        return [r for r in results if r is not None]


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _check_model_source(model: str, revision: str | None, local_files_only: bool | None) -> bool:
    """Fail fast and clearly on a model that cannot be loaded; True when it is a local folder.

    A path that does not exist, a malformed hub id, or a hub id that is neither in the local cache nor
    reachable (checked with one request of at most 10 s, instead of transformers' minutes of retries).
    """
    from rgvlm_gym.errors import UsageError

    if os.path.isdir(os.path.expanduser(model)):
        return True
    looks_like_path = model.startswith(("/", "./", "../", "~", "\\")) or os.sep in model.strip("/").replace("/", "", 1) \
        or os.path.exists(os.path.expanduser(model))
    if looks_like_path or not _HUB_ID.match(model):
        where = "is a file, not a model folder" if os.path.isfile(os.path.expanduser(model)) else "does not exist"
        raise UsageError(f"hf model {model!r} {where}; pass a local folder written by save_pretrained, or a hub id "
                         f"like 'Qwen/Qwen2-VL-2B-Instruct'")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(model, revision=revision, local_files_only=True)
        return False  # in the local cache
    except Exception:  # not cached (or only partly): look on the hub
        pass
    if local_files_only or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise UsageError(f"hf model {model!r} is not in the local Hugging Face cache and downloads are off "
                         f"(local_files_only / HF_HUB_OFFLINE); download it first or pass a local folder")
    try:
        from huggingface_hub import model_info

        model_info(model, revision=revision, timeout=10)
    except Exception as exc:
        kind = type(exc).__name__
        if "NotFound" in kind or "Gated" in kind:
            raise UsageError(f"hf model {model!r} is not on the Hugging Face Hub (or is gated): {kind}") from exc
        raise UsageError(f"hf model {model!r} is not in the local cache and the Hugging Face Hub cannot be reached "
                         f"({kind}: {str(exc)[:200]}); download it where there is a connection, or pass a local folder") from exc
    return False

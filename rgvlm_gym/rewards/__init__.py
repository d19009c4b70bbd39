"""Reward labelers: RG-VLM, sparse, oracle, a success-detector baseline, combinations, cache, online wrapper.

Holds the public API of the sub-package:

- :class:`Labeler` and :class:`LabelResult` — the interface: an episode
  (:class:`~rgvlm_gym.data.EpisodeRecord`) in, one float per step out, plus status and metadata;
  :func:`make_labeler` / :func:`register_labeler` — labelers as registered ``{"type", "params"}`` factories.
- :class:`RGVLMLabeler` — RG-VLM's two-stage LVLM query (analysis, then 0–10 scores as JSON), with a frame
  budget for long episodes, validation, one repair prompt, never an invented score.
- :class:`SparseLabeler`, :class:`OracleLabeler` (ground-truth sub-task progress, the upper bound),
  :class:`CombinedLabeler` (``sparse + lam * dense``), :class:`SuccessDetectorLabeler` (per-step yes/no
  LVLM baseline).
- The reward methods RG-VLM is compared with: :class:`RLVLMFLabeler` (``rlvlmf``, LVLM preferences ->
  Bradley-Terry reward model), :class:`RatingLabeler` (``rating``, LVLM ratings -> reward model),
  :class:`GVLLabeler` (``gvl``, progress of shuffled frames), and the embedding-model rewards
  :class:`CLIPLabeler` (``clip``, VLM-RM), :class:`BLIP2Labeler` (``blip2``), :class:`RoboCLIPLabeler`
  (``roboclip``); they import torch / transformers only when built.
- :class:`LabelCache` — the persistent SQLite (WAL) label cache.
- :class:`RGVLMRewardWrapper` — label episodes online in a Gymnasium env.
- :func:`label_stream`, :func:`annotate`, :class:`LabelStats`, :func:`provenance` — streaming, concurrent
  labeling of many episodes and the audit columns / metadata of a relabeled dataset (the relabel engine).
- :func:`relabel`, :class:`RelabelSummary` — the relabel pipeline: a Minari dataset in, a new one with
  ``sparse + lam * LVLM`` rewards out, cached and resumable (``rgvlm relabel``).
- :func:`label_quality` — Spearman / Pearson of labels against the oracle and VOC (value-order correlation),
  overall and per group.
- :data:`PROMPT_VERSION`, :data:`PROMPT_SHA256`, :func:`load_prompts` — the versioned prompt templates
  (``envs/prompts/``).

With the simulated LVLM (``make_lvlm("sim")``) every label is simulated: results say ``simulated=True``.

Example (simulated LVLM):
    >>> from rgvlm_gym.rewards import CombinedLabeler, RGVLMLabeler
    >>> from rgvlm_gym.rewards.testing import toy_episode
    >>> labeler = CombinedLabeler(base="sparse", dense=RGVLMLabeler("sim:noise=0,seed=0"), lam=0.5)
    >>> result = labeler.label(toy_episode())
    >>> result.rewards, result.simulated
    (array([0.25, 0.5 , 1.5 ], dtype=float32), True)
"""

from __future__ import annotations

from rgvlm_gym.rewards.base import (
    LABEL_STATUSES,
    Labeler,
    LabelResult,
    make_labeler,
    register_labeler,
    registered_labelers,
)
from rgvlm_gym.rewards.basic import (
    PARTIAL_CREDIT,
    CombinedLabeler,
    MissingGroundTruthError,
    OracleLabeler,
    SparseLabeler,
    SubtaskOracleLabeler,
    oracle_contributions,
    progress_contributions,
    subtask_contributions,
)
from rgvlm_gym.rewards.cache import SCHEMA_VERSION, LabelCache, LabelCacheError
from rgvlm_gym.rewards.embedding import BLIP2Labeler, CLIPLabeler, RoboCLIPLabeler
from rgvlm_gym.rewards.feedback import FeedbackLabeler, oracle_values
from rgvlm_gym.rewards.gvl import GVLLabeler
from rgvlm_gym.rewards.lvlm_labeler import LVLMLabeler
from rgvlm_gym.rewards.prompts import PROMPT_SHA256, PROMPT_VERSION, load_prompts
from rgvlm_gym.rewards.quality import QualityReport, label_quality
from rgvlm_gym.rewards.rating import RatingLabeler
from rgvlm_gym.rewards.relabel import RelabelSummary, build_labeler, default_cache_path, relabel
from rgvlm_gym.rewards.rgvlm import RGVLMLabeler, parse_scores, plan_parts
from rgvlm_gym.rewards.rlvlmf import RLVLMFLabeler
from rgvlm_gym.rewards.rollout import EpisodeBuilder, rollout
from rgvlm_gym.rewards.stream import LabelStats, annotate, label_stream, provenance
from rgvlm_gym.rewards.success import SuccessDetectorLabeler
from rgvlm_gym.rewards.wrapper import RGVLMRewardWrapper

__all__ = [
    "LABEL_STATUSES",
    "PROMPT_SHA256",
    "PROMPT_VERSION",
    "SCHEMA_VERSION",
    "BLIP2Labeler",
    "CLIPLabeler",
    "CombinedLabeler",
    "EpisodeBuilder",
    "FeedbackLabeler",
    "GVLLabeler",
    "LVLMLabeler",
    "LabelCache",
    "LabelCacheError",
    "LabelResult",
    "LabelStats",
    "Labeler",
    "OracleLabeler",
    "QualityReport",
    "RGVLMLabeler",
    "RGVLMRewardWrapper",
    "RLVLMFLabeler",
    "RatingLabeler",
    "RelabelSummary",
    "RoboCLIPLabeler",
    "SparseLabeler",
    "SuccessDetectorLabeler",
    "annotate",
    "build_labeler",
    "default_cache_path",
    "label_quality",
    "label_stream",
    "load_prompts",
    "make_labeler",
    "oracle_contributions",
    "oracle_values",
    "progress_contributions",
    "subtask_contributions",
    "PARTIAL_CREDIT",
    "MissingGroundTruthError",
    "SubtaskOracleLabeler",
    "parse_scores",
    "plan_parts",
    "provenance",
    "register_labeler",
    "registered_labelers",
    "relabel",
    "rollout",
]

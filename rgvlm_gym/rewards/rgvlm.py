"""RG-VLM: dense rewards from a two-stage LVLM conversation per episode (arXiv 2504.08772).

Holds :class:`RGVLMLabeler`, :func:`plan_parts`, :class:`LabelPart` and :func:`parse_scores`.

The conversation, per episode (prompt wording in ``envs/prompts/rgvlm_v1.md``):

1. **Analysis** (stage 1): the user turn gives the task goal and the frames in order, with the actions taken
   between them as ``Step k: <action>`` lines, and asks how each action changed progress toward the goal.
2. **Scores** (stage 2): the conversation continues — the stage-1 answer as the assistant turn, then a user
   turn asking for a 0–10 score of every action by its contribution, as strict JSON ``{"scores": [...]}``.
3. **Repair**, only if the scores are invalid (not JSON, wrong count, a score that is not a number in
   0..10): the invalid answer as an assistant turn and one more user turn saying what was wrong. If that
   answer is invalid too the episode is left unlabeled (status ``"invalid"``, with the reason); no score is
   ever invented, clipped or padded.

So a valid episode within the frame budget costs exactly 2 calls. Reward of step t = score_t / 10, in [0, 1].

**Frame budget.** An episode of T actions has T + 1 frames; at most ``frame_budget`` (default 16) go into
one request. Longer episodes are handled by ``long_episodes``:

- ``"segments"`` (default): the actions are split into ``ceil(T / (frame_budget - 1))`` contiguous parts of
  nearly equal length; a part with actions ``a..b-1`` shows frames ``a..b`` (so consecutive parts share
  their boundary frame) and lists the earlier actions as text. Each part is its own two-stage
  conversation (2 calls per part); the parts run concurrently in ``alabel``. Every frame is seen.
- ``"subsample"``: one conversation; ``frame_budget`` frames at evenly spaced steps (first and last
  included), every action listed between the frames it falls between. 2 calls per episode; the model
  sees fewer frames.

Either way every action gets exactly one score.

**Privileged data.** The dense oracle's per-step contributions (:func:`~rgvlm_gym.rewards.progress_contributions`) ride
along only as ``{"type": "privileged"}`` message parts, which the simulated LVLM answers from and real
backends strip before sending. With ``make_lvlm("sim")`` the labels are **simulated** (every result says
``simulated=True`` and the sim's analyses start with a disclaimer).

Example (simulated LVLM, noise 0: the labels equal the oracle's contributions):
    >>> from rgvlm_gym.lvlm import make_lvlm
    >>> from rgvlm_gym.rewards import RGVLMLabeler
    >>> from rgvlm_gym.rewards.testing import toy_episode
    >>> labeler = RGVLMLabeler(make_lvlm("sim:noise=0,seed=0"))
    >>> result = labeler.label(toy_episode())
    >>> result.rewards, result.raw_scores, result.calls, result.simulated
    (array([0.5, 1. , 1. ], dtype=float32), array([ 5., 10., 10.], dtype=float32), 2, True)
    >>> [t["stage"] for t in result.texts]
    ['analysis', 'scores']
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.lvlm import LVLM, LVLMError, LVLMResponse
from rgvlm_gym.rewards.base import LabelResult, register_labeler
from rgvlm_gym.rewards.basic import MissingGroundTruthError, oracle_contributions
from rgvlm_gym.rewards.cache import LabelCache
from rgvlm_gym.rewards.lvlm_labeler import Answer, LVLMLabeler, Protocol
from rgvlm_gym.rewards.prompts import PROMPT_VERSION, PromptTemplate, load_prompts
from rgvlm_gym.rewards.rollout import EARLIER_ACTIONS_KEY

__all__ = ["LONG_EPISODE_MODES", "LabelPart", "RGVLMLabeler", "analyses_by_step", "parse_scores", "plan_parts"]

LONG_EPISODE_MODES = ("segments", "subsample")
MAX_SCORE = 10


@dataclass(frozen=True)
class LabelPart:
    """One conversation of an episode: actions ``first .. stop-1`` and the frame indices shown."""

    index: int
    first: int
    stop: int
    frames: tuple[int, ...]

    @property
    def n_actions(self) -> int:
        return self.stop - self.first


def plan_parts(n_actions: int, frame_budget: int = 16, long_episodes: str = "segments") -> list[LabelPart]:
    """Split an episode of ``n_actions`` actions into conversations within ``frame_budget`` frames each.

    Example:
        >>> [(p.first, p.stop, len(p.frames)) for p in plan_parts(40, frame_budget=16)]
        [(0, 13, 14), (13, 27, 15), (27, 40, 14)]
        >>> plan_parts(40, frame_budget=5, long_episodes="subsample")[0].frames
        (0, 10, 20, 30, 40)
    """
    if not isinstance(frame_budget, int) or isinstance(frame_budget, bool) or frame_budget < 2:
        raise ValueError(f"Expect `frame_budget` to be an int >= 2, actually: {frame_budget!r}")
    if long_episodes not in LONG_EPISODE_MODES:
        raise ValueError(f"Expect `long_episodes` to be one of {LONG_EPISODE_MODES}, actually: {long_episodes!r}")
    if n_actions <= 0:
        return []
    if n_actions + 1 <= frame_budget:
        return [LabelPart(0, 0, n_actions, tuple(range(n_actions + 1)))]
    if long_episodes == "subsample":
        frames = tuple(sorted({int(round(x)) for x in np.linspace(0, n_actions, frame_budget)}))
        return [LabelPart(0, 0, n_actions, frames)]
    n_parts = math.ceil(n_actions / (frame_budget - 1))
    bounds = [round(i * n_actions / n_parts) for i in range(n_parts + 1)]
    return [LabelPart(i, a, b, tuple(range(a, b + 1))) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def parse_scores(text: str, n_actions: int) -> tuple[list[float] | None, str]:
    """Parse and validate a stage-2 answer: ``(scores, "")`` or ``(None, what is wrong)``.

    Accepts the JSON object alone, in a code fence, or surrounded by prose; requires a ``"scores"`` list of
    exactly ``n_actions`` numbers (int or float, not bool or str) in 0..10. Nothing is clipped or padded.

    Example:
        >>> parse_scores('{"scores": [0, 7.5, 10]}', 3)
        ([0.0, 7.5, 10.0], '')
        >>> parse_scores('{"scores": [0, 11]}', 2)
        (None, 'score 2 is 11, outside 0..10')
        >>> parse_scores('{"scores": [1, 2', 2)
        (None, 'no JSON object found in the answer')
    """
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    lo, hi = text.find("{"), text.rfind("}")
    if 0 <= lo < hi:
        candidates.append(text[lo : hi + 1])
    obj: Any = None
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except ValueError:
            continue
        if isinstance(obj, dict):
            break
    if not isinstance(obj, dict):
        return None, "no JSON object found in the answer"
    if "scores" not in obj:
        return None, f"the JSON object has no 'scores' key (keys: {sorted(obj)[:5]})"
    scores = obj["scores"]
    if not isinstance(scores, list):
        return None, f"'scores' is a {type(scores).__name__}, not a list"
    if len(scores) != n_actions:
        return None, f"expected {n_actions} scores (one per action), got {len(scores)}"
    out: list[float] = []
    for i, s in enumerate(scores, start=1):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            return None, f"score {i} is {s!r}, not a number"
        if not 0 <= s <= MAX_SCORE:
            return None, f"score {i} is {s!r}, outside 0..{MAX_SCORE}"
        out.append(float(s))
    return out, ""


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _coalesce(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge neighbouring text parts (fewer, longer parts; what a model sees is the same)."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = _text(out[-1]["text"] + "\n\n" + part["text"])
        else:
            out.append(part)
    return out


def _error_reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RGVLMLabeler(LVLMLabeler):
    """RG-VLM's two-stage LVLM labeler (module docstring).

    Args:
        lvlm: an :class:`~rgvlm_gym.lvlm.LVLM`, a spec string or a config.
        frame_budget: most frames per request (>= 2).
        long_episodes: ``"segments"`` or ``"subsample"`` for episodes over the budget.
        prompt: prompt version (a file in ``envs/prompts``) or a path to a prompt ``.md`` file.
        json_mode: ask for ``response_format={"type": "json_object"}`` in stage 2 (servers that support it).
        analysis_max_tokens: stage-1 token limit (default ``min(4096, 200 + 80 * actions)``).
        scores_max_tokens: stage-2 and repair token limit (default ``64 + 8 * actions``).
        cache: a :class:`~rgvlm_gym.rewards.cache.LabelCache` or its path; None: no cache.
        gen: extra generation settings for every call (``temperature`` defaults to 0).
        retry_invalid: ask again for episodes cached as ``"invalid"``.
    """

    name = "rgvlm"
    reward_bounds = (0.0, 1.0)  # score / 10
    score_bounds = (0.0, 10.0)

    def __init__(
        self,
        lvlm: LVLM | str | Mapping[str, Any],
        *,
        frame_budget: int = 16,
        long_episodes: str = "segments",
        prompt: str = PROMPT_VERSION,
        json_mode: bool = False,
        analysis_max_tokens: int | None = None,
        scores_max_tokens: int | None = None,
        cache: LabelCache | str | os.PathLike[str] | None = None,
        gen: Mapping[str, Any] | None = None,
        retry_invalid: bool = False,
    ) -> None:
        plan_parts(1, frame_budget, long_episodes)  # validates both
        for name, value in (("analysis_max_tokens", analysis_max_tokens), ("scores_max_tokens", scores_max_tokens)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Expect `{name}` to be a positive int or None, actually: {value!r}")
        self.frame_budget = frame_budget
        self.long_episodes = long_episodes
        self.prompt_name = str(prompt)
        self.prompts: PromptTemplate = load_prompts(prompt)
        self.json_mode = bool(json_mode)
        self.analysis_max_tokens = analysis_max_tokens
        self.scores_max_tokens = scores_max_tokens
        super().__init__(lvlm, cache=cache, gen=gen, retry_invalid=retry_invalid)

    # -- identity

    def params(self) -> dict[str, Any]:
        params = super().params()
        params.update(frame_budget=self.frame_budget, long_episodes=self.long_episodes, prompt=self.prompt_name)
        for name in ("json_mode", "analysis_max_tokens", "scores_max_tokens"):
            value = getattr(self, name)
            if value not in (None, False):
                params[name] = value
        return params

    def prompt_id(self) -> str:
        return f"{self.prompts.version}@{self.prompts.sha256}"

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "frame_budget": self.frame_budget,
            "long_episodes": self.long_episodes,
            "json_mode": self.json_mode,
            "analysis_max_tokens": self.analysis_max_tokens,
            "scores_max_tokens": self.scores_max_tokens,
        }

    # -- requests

    def _check(self, episode: EpisodeRecord) -> None:
        n = len(episode)
        frames = episode.frames
        if frames is None:
            raise ValueError(
                f"Expect episode {episode.episode_id} to carry LVLM frames, actually: frames is None "
                f"(load the dataset with its frames, or record them with env.unwrapped.render_frame(224))"
            )
        if not (
            isinstance(frames, np.ndarray)
            and frames.dtype == np.uint8
            and frames.ndim == 4
            and frames.shape[0] == n + 1
            and frames.shape[3] == 3
        ):
            shape = getattr(frames, "shape", None)
            raise ValueError(
                f"Expect episode {episode.episode_id} frames to be uint8 of shape (T+1={n + 1}, F, F, 3), "
                f"actually: {getattr(frames, 'dtype', type(frames).__name__)} {shape}"
            )
        if len(episode.action_names) != n:
            raise ValueError(
                f"Expect episode {episode.episode_id} to have one action name per action ({n}), "
                f"actually: {len(episode.action_names)}"
            )
        if not episode.instruction:
            raise ValueError(f"Expect episode {episode.episode_id} to have an instruction, actually: ''")

    def _contributions(self, episode: EpisodeRecord) -> list[float] | None:
        try:
            return [float(c) for c in oracle_contributions(episode)]
        except MissingGroundTruthError as exc:
            if self.lvlm.backend == "sim":
                raise ValueError(f"The simulated LVLM judges from ground-truth progress, which is missing: {exc}") from exc
            return None  # a real LVLM needs no ground truth

    def _privileged(self, stage: str, episode: EpisodeRecord, part: LabelPart, contribs: list[float] | None) -> list[dict[str, Any]]:
        if contribs is None:
            return []
        data = {
            "task": "rgvlm",
            "stage": stage,
            "actions": list(episode.action_names[part.first : part.stop]),
            "contributions": contribs[part.first : part.stop],
            "goal": episode.instruction,
        }
        return [{"type": "privileged", "data": data}]

    def _steps(self, episode: EpisodeRecord, part: LabelPart) -> tuple[int, int, int]:
        offset = len(episode.extra.get(EARLIER_ACTIONS_KEY, []))
        return offset, offset + part.first + 1, offset + part.stop

    def analysis_messages(
        self, episode: EpisodeRecord, part: LabelPart, n_parts: int, contribs: list[float] | None = None
    ) -> list[dict[str, Any]]:
        """The stage-1 conversation of one part (system turn and the user turn with frames)."""
        p = self.prompts
        assert episode.frames is not None
        offset, first_step, last_step = self._steps(episode, part)
        content: list[dict[str, Any]] = [_text(p.render("analysis_intro", goal=episode.instruction, n_frames=len(part.frames)))]
        if n_parts > 1:
            content.append(
                _text(p.render("segment_note", n_segments=n_parts, segment=part.index + 1, first_step=first_step, last_step=last_step))
            )
        earlier = [*episode.extra.get(EARLIER_ACTIONS_KEY, []), *episode.action_names[: part.first]]
        if earlier:
            listed = "; ".join(f"{i}. {a}" for i, a in enumerate(earlier, start=1))
            content.append(_text(p.render("earlier_note", earlier=listed)))
        for j, f in enumerate(part.frames):
            when = "at the start" if offset + f == 0 else f"after step {offset + f}"
            content.append(_text(p.render("frame_caption", frame_index=j + 1, frame_when=when)))
            content.append({"type": "image", "image": episode.frames[f]})
            if j + 1 < len(part.frames):
                lines = [
                    p.render("action_line", step=offset + i + 1, action=episode.action_names[i])
                    for i in range(f, part.frames[j + 1])
                ]
                content.append(_text("\n".join(lines)))
        content.append(_text(p.render("analysis_question", first_step=first_step, last_step=last_step)))
        content.extend(self._privileged("analysis", episode, part, contribs))
        return [
            {"role": "system", "content": p.render("system")},
            {"role": "user", "content": _coalesce(content)},
        ]

    def _gen(self, stage: str, n_actions: int) -> dict[str, Any]:
        gen = dict(self.gen)
        if stage == "analysis":
            gen.setdefault("max_tokens", self.analysis_max_tokens or min(4096, 200 + 80 * n_actions))
        else:
            gen.setdefault("max_tokens", self.scores_max_tokens or 64 + 8 * n_actions)
            if self.json_mode:
                gen.setdefault("response_format", {"type": "json_object"})
        return gen

    # -- the conversation

    def protocol(self, episode: EpisodeRecord) -> Protocol:
        self._check(episode)
        contribs = self._contributions(episode)
        parts = plan_parts(len(episode), self.frame_budget, self.long_episodes)
        meta: dict[str, Any] = {
            "prompt": self.prompts.version,
            "prompt_sha256": self.prompts.sha256,
            "model": self.lvlm.spec,
            "frame_budget": self.frame_budget,
            "long_episodes": self.long_episodes,
            "parts": [{"first": p.first, "stop": p.stop, "frames": list(p.frames)} for p in parts],
        }
        if not parts:
            return LabelResult(rewards=np.zeros(0, np.float32), raw_scores=np.zeros(0, np.float32), meta=meta)
        n_parts = len(parts)
        texts: list[dict[str, Any]] = []

        def where(part: LabelPart) -> str:
            _, a, b = self._steps(episode, part)
            return "" if n_parts == 1 else f"part {part.index + 1}/{n_parts} (steps {a}-{b}): "

        def failed(part: LabelPart, stage: str, answer: Answer) -> LabelResult | None:
            if isinstance(answer, LVLMError):
                return LabelResult.unlabeled(
                    "error", f"{where(part)}{stage} request failed: {_error_reason(answer)}", texts=texts, meta=meta
                )
            return None

        # Stage 1: analysis, every part at once.
        convs = [self.analysis_messages(episode, part, n_parts, contribs) for part in parts]
        answers = yield [(conv, self._gen("analysis", part.n_actions)) for conv, part in zip(convs, parts, strict=True)]
        for part, answer in zip(parts, answers, strict=True):
            if (bad := failed(part, "analysis", answer)) is not None:
                return bad
        for part, conv, answer in zip(parts, convs, answers, strict=True):
            assert isinstance(answer, LVLMResponse)
            texts.append({"part": part.index, "stage": "analysis", "text": answer.text})
            if answer.finish_reason == "length":
                meta.setdefault("truncated_analysis", []).append(part.index)
            _, first_step, last_step = self._steps(episode, part)
            question = self.prompts.render(
                "scores_question", n_actions=part.n_actions, first_step=first_step, last_step=last_step
            )
            conv.append({"role": "assistant", "content": answer.text})
            conv.append(
                {"role": "user", "content": [_text(question), *self._privileged("scores", episode, part, contribs)]}
            )

        # Stage 2: scores, every part at once.
        answers = yield [(conv, self._gen("scores", part.n_actions)) for conv, part in zip(convs, parts, strict=True)]
        for part, answer in zip(parts, answers, strict=True):
            if (bad := failed(part, "scores", answer)) is not None:
                return bad
        scores: dict[int, list[float]] = {}
        errors: dict[int, str] = {}
        for part, conv, answer in zip(parts, convs, answers, strict=True):
            assert isinstance(answer, LVLMResponse)
            texts.append({"part": part.index, "stage": "scores", "text": answer.text})
            parsed, error = parse_scores(answer.text, part.n_actions)
            if parsed is not None:
                scores[part.index] = parsed
                continue
            errors[part.index] = error
            _, first_step, last_step = self._steps(episode, part)
            repair = self.prompts.render(
                "scores_repair", error=error, n_actions=part.n_actions, first_step=first_step, last_step=last_step
            )
            conv.append({"role": "assistant", "content": answer.text})
            conv.append({"role": "user", "content": [_text(repair), *self._privileged("scores", episode, part, contribs)]})

        # Repair: once, for the parts whose scores were invalid.
        to_repair = [part for part in parts if part.index in errors]
        if to_repair:
            meta["repaired_parts"] = [p.index for p in to_repair]
            answers = yield [(convs[p.index], self._gen("repair", p.n_actions)) for p in to_repair]
            for part, answer in zip(to_repair, answers, strict=True):
                if (bad := failed(part, "repair", answer)) is not None:
                    return bad
            for part, answer in zip(to_repair, answers, strict=True):
                assert isinstance(answer, LVLMResponse)
                texts.append({"part": part.index, "stage": "repair", "text": answer.text})
                parsed, error = parse_scores(answer.text, part.n_actions)
                if parsed is None:
                    return LabelResult.unlabeled(
                        "invalid",
                        f"{where(part)}invalid scores: {errors[part.index]}; after one repair prompt: {error}",
                        texts=texts,
                        meta=meta,
                    )
                scores[part.index] = parsed
        raw = np.asarray([s for part in parts for s in scores[part.index]], dtype=np.float32)
        assert raw.shape == (len(episode),)
        return LabelResult(rewards=raw / MAX_SCORE, raw_scores=raw, texts=texts, meta=meta)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RGVLMLabeler:
        params = dict(params)
        lvlm = params.pop("lvlm")
        return cls(lvlm, **params)


def analyses_by_step(result: LabelResult, n_actions: int, offset: int = 0) -> list[str]:
    """Best-effort split of the stage-1 analyses into one explanation per step, for inspection.

    Reads numbered lines (``"3. ..."``, ``"Step 3: ..."``) of each part's analysis; numbers are taken as the
    episode's step numbers when they fall in the part's step range, else as positions within the part.
    Steps without a recognisable line get "".
    """
    out = [""] * n_actions
    step_re = re.compile(r"^\s*(?:step\s*)?(\d+)\s*[.:)]\s*(.*)$", re.IGNORECASE)
    parts = result.meta.get("parts") or [{"first": 0, "stop": n_actions}]
    for t in result.texts:
        if t.get("stage") != "analysis" or not 0 <= int(t.get("part", 0)) < len(parts):
            continue
        first, stop = int(parts[int(t.get("part", 0))]["first"]), int(parts[int(t.get("part", 0))]["stop"])
        for line in str(t["text"]).splitlines():
            m = step_re.match(line)
            if not m:
                continue
            k = int(m.group(1))
            i = k - offset - 1 if first < k - offset <= stop else first + k - 1
            if first <= i < stop and not out[i]:
                out[i] = m.group(2).strip()
    return out


register_labeler("rgvlm", RGVLMLabeler)

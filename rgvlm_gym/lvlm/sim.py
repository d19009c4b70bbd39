"""The simulated LVLM: a stand-in for a real vision-language model, for CI and controlled studies.

**Everything this module produces is simulated.** It never looks at images; it answers from privileged
ground truth carried with the request, through a documented error model. Every response it returns has
``model == "sim"`` and ``usage.simulated == True``, and its prose answers say they are simulated.

Protocol (other code relies on it)
----------------------------------
A message content part ``{"type": "privileged", "data": {...}}`` carries ground truth. Real backends
(``openai``, ``hf``) strip such parts before sending and never log them; the sim reads the **last** one in
the conversation (so a stage-2 request that repeats the stage-1 dialogue is answered from its own part).
``data["task"]`` picks the handler; :func:`register_sim_task` adds handlers. A request without privileged
data gets a short fixed answer saying the sim has no ground truth.

The ``"rgvlm"`` task (RG-VLM's two-stage query)::

    {"task": "rgvlm",
     "stage": "analysis" | "scores",
     "actions": ["PickupObject apple", ...],
     "contributions": [1.0, 0.0, ...],   # one per action, in [0, 1]
     "goal": "put a washed apple in the fridge"}

- ``stage="analysis"``: prose, one numbered line per action, ``"1. <action>: <how it advanced the goal>"``,
  worded variously, consistent with the scores the same trajectory gets in stage ``"scores"``.
- ``stage="scores"``: strict JSON ``{"scores": [s_1, ..., s_n]}``, integers 0..10, one per action.

Error model
-----------
A named **profile** sets the four error rates; keys given in the spec override them:

==============  =======  ======  ===============  ==========  =============================================
profile         noise    miss    useless_credit   malformed   meant as
==============  =======  ======  ===============  ==========  =============================================
``exact``       0        0       0                0           the ideal judge: an upper bound (= the oracle)
``default``     1.5      0.15    0.10             0.03        a good but imperfect LVLM (the default)
``weak``        3.0      0.35    0.25             0.08        a poor one
==============  =======  ======  ===============  ==========  =============================================

Which profile applies: ``profile=NAME`` if given; else ``default`` when the spec sets none of the four
rates (``sim``, ``sim:seed=3``, ``sim:latency=0.1``); else ``exact`` with the given rates (``sim:noise=2``
is Gaussian noise alone; ``sim:noise=0,miss=0,useless_credit=0,malformed=0`` is exact). The profile's
numbers are the documented defaults of this module, not measurements of any real LVLM.

Per action (``c`` its contribution)::

    c' = 0                    with probability `miss`            if c > 0   (missed progress)
    c' = k / 10, k ~ U{3..7}  with probability `useless_credit`  if c == 0  (credit for a useless action)
    c' = c                    otherwise
    score = clip(round_half_up(10 * c' + noise * N(0, 1)), 0, 10)

- ``noise``: std of the Gaussian score noise, in score points (0 = exact ground truth).
- ``miss``, ``useless_credit``: probabilities as above.
- ``malformed``: probability that an answer is malformed. Scores: truncated JSON, a wrong number of scores,
  or prose without JSON (one of the three, equally likely). Analysis: the text is cut off early.
- ``latency``: seconds each call takes (``time.sleep`` in ``chat``, ``asyncio.sleep`` in ``achat``).
- ``seed``: with the seed fixed, answers are deterministic and independent of call order: the per-action
  draws come from ``seed`` + a hash of the trajectory (goal, actions, contributions), so both stages agree;
  the malformed draw comes from ``seed`` + a hash of the whole request (text, images, privileged data).

``max_tokens`` truncates answers (about 4 characters a token; ``finish_reason="length"``); token counts in
``usage`` are estimates (4 characters a token, 85 tokens an image).

Example:
    >>> from rgvlm_gym.lvlm import make_lvlm
    >>> sim = make_lvlm("sim:noise=0,seed=0")
    >>> gt = {"task": "rgvlm", "stage": "analysis", "goal": "chill an apple",
    ...       "actions": ["PickupObject apple", "ToggleObject desklamp", "CoolObject apple"],
    ...       "contributions": [0.5, 0.0, 1.0]}
    >>> msgs = [{"role": "user", "content": [{"type": "text", "text": "Explain each action."},
    ...                                      {"type": "privileged", "data": gt}]}]
    >>> print(sim.chat(msgs).text)  # doctest: +ELLIPSIS
    [Simulated LVLM: answer generated from privileged ground truth, not by a model.]
    Analysis of 3 actions toward the goal "chill an apple":
    1. PickupObject apple: ...
    2. ToggleObject desklamp: ...
    3. CoolObject apple: ...
    >>> sim.chat(msgs).model
    'sim'
    >>> gt2 = dict(gt, stage="scores")
    >>> sim.chat([{"role": "user", "content": [{"type": "privileged", "data": gt2}]}]).text
    '{"scores": [5, 0, 10]}'
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rgvlm_gym.lvlm.base import LVLM, LVLMResponse, count_images, privileged_data, strip_privileged
from rgvlm_gym.lvlm.usage import LVLMUsage

__all__ = [
    "SIM_DISCLAIMER",
    "SimLVLM",
    "SimRequest",
    "SimSettings",
    "SIM_PROFILES",
    "register_sim_task",
    "registered_sim_tasks",
]

#: First line of every prose answer of the sim.
SIM_DISCLAIMER = "[Simulated LVLM: answer generated from privileged ground truth, not by a model.]"
NO_GROUND_TRUTH = (
    "[Simulated LVLM] I am a simulated LVLM and this request carries no privileged ground truth, "
    "so I cannot answer it."
)


@dataclass(frozen=True)
class SimSettings:
    """The error model of the simulated LVLM (see the module docstring)."""

    noise: float = 0.0
    miss: float = 0.0
    useless_credit: float = 0.0
    malformed: float = 0.0
    latency: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("miss", "useless_credit", "malformed"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"Expect sim `{name}` to be a probability in [0, 1], actually: {value!r}")
        for name in ("noise", "latency"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ValueError(f"Expect sim `{name}` to be a finite number >= 0, actually: {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"Expect sim `seed` to be an int, actually: {self.seed!r}")


#: Named error profiles (module docstring); ``default`` is what ``make_lvlm("sim")`` judges with.
SIM_PROFILES: dict[str, dict[str, float]] = {
    "exact": {"noise": 0.0, "miss": 0.0, "useless_credit": 0.0, "malformed": 0.0},
    "default": {"noise": 1.5, "miss": 0.15, "useless_credit": 0.10, "malformed": 0.03},
    "weak": {"noise": 3.0, "miss": 0.35, "useless_credit": 0.25, "malformed": 0.08},
}
_RATES = ("noise", "miss", "useless_credit", "malformed")


def _digest_words(*chunks: bytes) -> list[int]:
    h = hashlib.blake2b(digest_size=16)
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "little"))
        h.update(chunk)
    d = h.digest()
    return [int.from_bytes(d[i : i + 4], "little") for i in range(0, 16, 4)]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=repr).encode()


@dataclass(frozen=True)
class SimRequest:
    """What a sim task handler receives.

    Attributes:
        data: the privileged ground truth (the last ``privileged`` part of the conversation).
        messages: the normalised conversation, privileged parts included.
        settings: the error model.
        rng: a generator seeded from the seed and the whole request (order-independent).
        gen: the generation settings of the call.
    """

    data: Mapping[str, Any]
    messages: list[dict[str, Any]]
    settings: SimSettings
    rng: np.random.Generator
    gen: Mapping[str, Any]

    def key_rng(self, *keys: Any) -> np.random.Generator:
        """A generator seeded from the sim's seed and ``keys`` (JSON-able): equal keys, equal draws."""
        return np.random.default_rng([self.settings.seed & 0xFFFFFFFF, *_digest_words(_canonical(keys))])


SimTaskFn = Callable[[SimRequest], str]
_SIM_TASKS: dict[str, SimTaskFn] = {}


def register_sim_task(name: str, fn: SimTaskFn, *, overwrite: bool = False) -> None:
    """Register a handler for privileged data with ``data["task"] == name``.

    ``fn(request: SimRequest) -> str`` returns the answer text. Draw randomness only from ``request.rng``
    or ``request.key_rng(...)`` so answers stay deterministic and order-independent; apply
    ``request.settings`` (``noise``, ``malformed``...) as documented for your task.
    """
    if name in _SIM_TASKS and not overwrite:
        raise ValueError(f"sim task {name!r} is already registered; pass overwrite=True to replace it")
    _SIM_TASKS[name] = fn


def registered_sim_tasks() -> list[str]:
    """Names of the registered sim tasks."""
    return sorted(_SIM_TASKS)


# ------------------------------------------------------------------------------------------- rgvlm task

_WORDING: dict[str, tuple[str, ...]] = {
    "none": (
        "this step did not advance the goal.",
        "no progress; the action is unrelated to the goal.",
        "it has no visible effect on the task and looks like a detour.",
        "not needed for the task: the scene is no closer to the goal afterwards.",
        "wasted effort; nothing required by the goal changed.",
    ),
    "low": (
        "a minor preparatory step that helps only a little.",
        "slight progress: it sets up a later step but achieves nothing on its own.",
        "marginally useful; it positions the agent for what follows.",
    ),
    "mid": (
        "it moves the task forward by preparing a required sub-goal.",
        "useful progress toward the goal.",
        "a reasonable step that brings the agent closer to the goal.",
    ),
    "high": (
        "a key step: it directly accomplishes part of the goal.",
        "clear progress; this completes a required sub-goal.",
        "essential to the task: without it the goal could not be reached.",
    ),
}


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _rgvlm_check(data: Mapping[str, Any]) -> tuple[str, list[str], list[float], str]:
    stage = data.get("stage")
    if stage not in ("analysis", "scores"):
        raise ValueError(f"Expect privileged rgvlm `stage` to be 'analysis' or 'scores', actually: {stage!r}")
    actions = data.get("actions")
    contributions = data.get("contributions")
    if not isinstance(actions, (list, tuple)) or not all(isinstance(a, str) for a in actions):
        raise ValueError(f"Expect privileged rgvlm `actions` to be a list of str, actually: {actions!r:.80}")
    if not isinstance(contributions, (list, tuple)) or len(contributions) != len(actions):
        raise ValueError(
            f"Expect privileged rgvlm `contributions` to be a list with one number per action ({len(actions)}), "
            f"actually: {contributions!r:.80}"
        )
    contribs = [float(c) for c in contributions]
    if any(not 0.0 <= c <= 1.0 for c in contribs):
        raise ValueError(f"Expect privileged rgvlm `contributions` in [0, 1], actually: {contribs!r:.80}")
    goal = str(data.get("goal", ""))
    return stage, list(actions), contribs, goal


def rgvlm_scores(request: SimRequest) -> list[int]:
    """The sim's (noisy) 0..10 score of each action of an ``rgvlm`` request; both stages use these."""
    _, actions, contribs, goal = _rgvlm_check(request.data)
    s = request.settings
    rng = request.key_rng("rgvlm", goal, actions, contribs)
    n = len(actions)
    u_miss, u_credit = rng.random(n), rng.random(n)
    credit, z = rng.integers(3, 8, size=n), rng.standard_normal(n)
    scores = []
    for i, c in enumerate(contribs):
        if c > 0 and u_miss[i] < s.miss:
            c = 0.0
        elif c == 0 and u_credit[i] < s.useless_credit:
            c = float(credit[i]) / 10.0
        scores.append(min(10, max(0, _round_half_up(10.0 * c + s.noise * float(z[i])))))
    return scores


def _rgvlm_task(request: SimRequest) -> str:
    stage, actions, _, goal = _rgvlm_check(request.data)
    scores = rgvlm_scores(request)
    rng = request.rng
    malformed = rng.random() < request.settings.malformed
    if stage == "scores":
        text = json.dumps({"scores": scores})
        if not malformed:
            return text
        kind = int(rng.integers(3))
        if kind == 0 and len(text) > 1:  # truncated JSON
            return text[: int(rng.integers(1, len(text)))]
        if kind == 1 or len(text) <= 1:  # wrong count
            wrong = scores[:-1] if scores and rng.random() < 0.5 else [*scores, int(rng.integers(0, 11))]
            return json.dumps({"scores": wrong})
        return (
            "Sorry, I can't give exact numbers for these actions; the early steps look more useful to me "
            "than the later ones."
        )
    lines = [SIM_DISCLAIMER, f'Analysis of {len(actions)} actions toward the goal "{goal}":']
    for i, (action, score) in enumerate(zip(actions, scores, strict=True), start=1):
        bucket = "none" if score == 0 else "low" if score <= 3 else "mid" if score <= 6 else "high"
        options = _WORDING[bucket]
        lines.append(f"{i}. {action}: {options[int(rng.integers(len(options)))]}")
    text = "\n".join(lines)
    if malformed:
        text = text[: max(len(SIM_DISCLAIMER) + 1, int(len(text) * rng.uniform(0.3, 0.8)))]
    return text


register_sim_task("rgvlm", _rgvlm_task)


# ------------------------------------------------------------------------------------------- client


def _request_key(messages: list[dict[str, Any]], gen: Mapping[str, Any]) -> list[int]:
    chunks: list[bytes] = []
    for msg in messages:
        chunks.append(msg["role"].encode())
        for part in msg["content"]:
            kind = part["type"]
            if kind == "text":
                chunks.append(b"t" + part["text"].encode())
            elif kind == "privileged":
                chunks.append(b"p" + _canonical(part["data"]))
            elif kind == "image_url":
                chunks.append(b"u" + part["image_url"]["url"].encode())
            else:
                image = part["image"]
                arr = np.asarray(image)
                chunks.append(
                    b"i" + repr(arr.shape).encode() + hashlib.blake2b(arr.tobytes(), digest_size=16).digest()
                )
    chunks.append(_canonical(gen.get("seed")))
    return _digest_words(*chunks)


class SimLVLM(LVLM):
    """The simulated LVLM (``sim[:profile=..,noise=..,miss=..,useless_credit=..,malformed=..,latency=..,seed=..]``).

    A stand-in: it answers from privileged ground truth in the request, never from pixels, through the
    error model documented in :mod:`rgvlm_gym.lvlm.sim`. Its responses say ``model == "sim"`` and
    ``usage.simulated``; its prose starts with :data:`SIM_DISCLAIMER`.

    Args:
        profile: a named error profile (:data:`SIM_PROFILES`); ``None``: ``"default"`` when none of the
            four rates is given, else ``"exact"`` plus the given rates.
        noise: Gaussian score noise std, in score points (0: exact ground truth).
        miss: probability that an action with contribution > 0 is scored as useless.
        useless_credit: probability that a useless action gets a random credit 3..7.
        malformed: probability that an answer is malformed.
        latency: seconds each call takes.
        seed: seed of every draw.
        max_concurrency: bound on concurrent ``achat`` calls.
        gen_defaults: default generation settings.
        prices: ignored for cost (simulated calls are free); kept for interface symmetry.
    """

    backend = "sim"

    def __init__(
        self,
        noise: float | None = None,
        miss: float | None = None,
        useless_credit: float | None = None,
        malformed: float | None = None,
        latency: float = 0.0,
        seed: int = 0,
        *,
        profile: str | None = None,
        max_concurrency: int = 8,
        gen_defaults: Mapping[str, Any] | None = None,
        prices: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(max_concurrency=max_concurrency, gen_defaults=gen_defaults, prices=prices)
        given = {k: v for k, v in zip(_RATES, (noise, miss, useless_credit, malformed), strict=True) if v is not None}
        if profile is None:
            profile = "exact" if given else "default"
        if profile not in SIM_PROFILES:
            hint = difflib.get_close_matches(str(profile), list(SIM_PROFILES), n=1)
            raise ValueError(
                f"Expect sim `profile` to be one of {', '.join(SIM_PROFILES)}, actually: {profile!r}"
                + (f". Did you mean {hint[0]!r}?" if hint else "")
            )
        self.profile = profile
        self._overrides = {k: v for k, v in given.items() if v != SIM_PROFILES[profile][k]}
        self.settings = SimSettings(**{**SIM_PROFILES[profile], **given}, latency=latency, seed=seed)

    @property
    def model(self) -> str:
        return "sim"

    def _params(self) -> dict[str, Any]:
        # the profile is always named: "sim:seed=0" alone would mean the default profile
        params: dict[str, Any] = {"profile": self.profile, **self._overrides}
        if self.settings.latency:
            params["latency"] = self.settings.latency
        params["seed"] = self.settings.seed
        return params

    def answer(self, messages: list[dict[str, Any]], gen: Mapping[str, Any]) -> tuple[str, str]:
        """The answer text and finish reason for normalised messages (no latency, no accounting)."""
        datas = privileged_data(messages)
        if not datas:
            text = NO_GROUND_TRUTH
        else:
            data = datas[-1]
            task = data.get("task")
            if task not in _SIM_TASKS:
                hint = difflib.get_close_matches(str(task), list(_SIM_TASKS), n=1)
                did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
                raise ValueError(
                    f"Expect privileged `task` to be a registered sim task ({', '.join(registered_sim_tasks())}), "
                    f"actually: {task!r}.{did_you_mean}"
                )
            seed_words = [self.settings.seed & 0xFFFFFFFF, *_request_key(messages, gen)]
            request = SimRequest(
                data=data,
                messages=messages,
                settings=self.settings,
                rng=np.random.default_rng(seed_words),
                gen=gen,
            )
            text = _SIM_TASKS[task](request)
        max_tokens = gen.get("max_tokens")
        if max_tokens is not None and len(text) > 4 * max_tokens:
            return text[: 4 * max_tokens], "length"
        return text, "stop"

    def _respond(
        self, messages: list[dict[str, Any]], text: str, finish: str, latency: float
    ) -> LVLMResponse:
        visible = strip_privileged(messages)
        chars = sum(len(p["text"]) for m in visible for p in m["content"] if p["type"] == "text")
        images = count_images(visible)
        usage = LVLMUsage(
            prompt_tokens=math.ceil(chars / 4) + 85 * images,
            completion_tokens=math.ceil(len(text) / 4),
            images=images,
            latency_s=latency,
            simulated=True,
        )
        return LVLMResponse(text=text, usage=usage, model="sim", finish_reason=finish)

    def _chat(self, messages: list[dict[str, Any]], gen: dict[str, Any]) -> LVLMResponse:
        start = time.perf_counter()
        text, finish = self.answer(messages, gen)
        if self.settings.latency:
            time.sleep(max(0.0, self.settings.latency - (time.perf_counter() - start)))
        return self._respond(messages, text, finish, time.perf_counter() - start)

    async def _achat(self, messages: list[dict[str, Any]], gen: dict[str, Any]) -> LVLMResponse:
        start = time.perf_counter()
        text, finish = self.answer(messages, gen)
        if self.settings.latency:
            await asyncio.sleep(max(0.0, self.settings.latency - (time.perf_counter() - start)))
        return self._respond(messages, text, finish, time.perf_counter() - start)

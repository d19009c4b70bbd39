"""Behaviour policies that collect AlfredLite datasets, and the default ``mixed`` quality mix.

Holds :class:`BehaviourPolicy` and its five kinds -- :class:`ExpertPolicy`, :class:`NoisyExpertPolicy`,
:class:`DetourPolicy`, :class:`PartialPolicy`, :class:`RandomPolicy` -- plus :data:`POLICY_NAMES`,
:data:`DEFAULT_MIX`, :func:`make_policy` and :func:`parse_mix`.

Relabeling with dense rewards only matters when the data is not all expert, so ``--policy mixed`` draws
a kind per episode (from the episode's own seed) with these default ratios, recorded in the dataset:

============  =====  ============================================================================
kind          share  behaviour
============  =====  ============================================================================
``expert``    0.30   follows ``env.unwrapped.expert_plan()``: the successes offline RL imitates.
``noisy``     0.25   expert, but each step is a random room action with probability ``epsilon``
                     (0.2); it re-plans from wherever that leaves it. Mostly succeeds, with wasted
                     and undone steps (the "almost right" data RG-VLM scores step by step).
``detour``    0.20   first fetches a wrong object, or puts the object in a wrong receptacle, then
                     recovers by re-planning: long successes with steps that do not help.
``partial``   0.15   follows the plan, gives up after k < n sub-tasks (k uniform) and stops (a
                     truncated episode): progress without success, which only a dense reward tells
                     apart from nothing.
``random``    0.10   uniform over the actions whose argument is in the room, until ``max_steps``:
                     coverage of failures; kept at 10 % because each one is ``max_steps`` long.
============  =====  ============================================================================

The shares were set so that about two thirds of the episodes succeed (measured per kind in
``benchmarks/RESULTS.md``): enough successes for BC/IQL to learn from, enough failures and detours for
the reward to matter. "Random room actions" are uniform over the actions whose argument type exists in
the current room (uniform over all 228 actions is almost always an invalid no-op and teaches nothing).

Every policy is driven by a ``numpy.random.Generator`` the caller seeds per episode, so an episode is a
function of (collection seed, episode index) alone.

    >>> import gymnasium as gym, numpy as np, rgvlm_gym
    >>> env = gym.make("rgvlm_gym/AlfredLite-v1", num_tasks=20)
    >>> _, info = env.reset(seed=0, options={"task_index": 3})
    >>> policy = make_policy("expert")
    >>> policy.reset(env.unwrapped, np.random.default_rng(0))
    >>> done = False
    >>> while not done:
    ...     _, _, term, trunc, info = env.step(policy.act(env.unwrapped, info))
    ...     done = term or trunc
    >>> info["success"]
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rgvlm_gym.alfred.planner import PlanningError

__all__ = [
    "DEFAULT_MIX",
    "POLICY_NAMES",
    "BehaviourPolicy",
    "DetourPolicy",
    "ExpertPolicy",
    "NoisyExpertPolicy",
    "PartialPolicy",
    "RandomPolicy",
    "make_policy",
    "parse_mix",
]

#: the default ``--policy mixed`` ratios (kind -> probability)
DEFAULT_MIX: dict[str, float] = {"expert": 0.30, "noisy": 0.25, "detour": 0.20, "partial": 0.15, "random": 0.10}


def room_actions(env: Any) -> list[int]:
    """Indices of the actions whose argument type exists in the current room (objects or receptacles)."""
    w = env.world
    types = {t.lower() for t in w.members} | {t.lower() for t in w.obj_type.values()}
    return [i for i, name in enumerate(env.action_names) if name.split(" ", 1)[1] in types]


class BehaviourPolicy:
    """A data-collection policy over ``AlfredLiteEnv`` (the unwrapped env: it reads the world).

    ``reset(env, rng)`` after each ``env.reset``; ``act(env, info)`` returns the next action index, or
    ``None`` to give up (the collector then ends the episode as truncated).
    """

    name = "base"

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        self.rng = rng
        self.plan: list[int] = []
        self._room = room_actions(env)

    def random_action(self) -> int:
        return int(self._room[int(self.rng.integers(len(self._room)))]) if self._room else 0

    def expert_action(self, env: Any) -> int:
        """Next step of the expert plan, re-planning when the plan ran out; random if none exists."""
        if not self.plan:
            try:
                self.plan = list(env.expert_plan())
            except PlanningError:
                self.plan = []
            if not self.plan:  # unsolvable from here (or solved): wander
                return self.random_action()
        return self.plan.pop(0)

    def act(self, env: Any, info: dict[str, Any]) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError


class ExpertPolicy(BehaviourPolicy):
    """The expert plan, step by step."""

    name = "expert"

    def act(self, env: Any, info: dict[str, Any]) -> int | None:
        return self.expert_action(env)


class NoisyExpertPolicy(BehaviourPolicy):
    """Expert with probability ``1 - epsilon``, else a random room action followed by re-planning."""

    name = "noisy"

    def __init__(self, epsilon: float = 0.2) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)

    def act(self, env: Any, info: dict[str, Any]) -> int | None:
        if self.rng.random() < self.epsilon:
            self.plan = []  # re-plan from wherever the random action leaves us
            return self.random_action()
        return self.expert_action(env)


class DetourPolicy(BehaviourPolicy):
    """A wrong object or a wrong receptacle first, then recovery by re-planning.

    ``wrong_object``: walk to an object the task does not need and pick it up (the planner then sets it
    down before going on). ``wrong_receptacle``: at the plan's first ``PutObject``, go to another
    receptacle of the room and put the object there instead. Half each (``wrong_object`` when the plan
    has no ``PutObject``).
    """

    name = "detour"

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        super().reset(env, rng)
        try:
            plan = list(env.expert_plan())
        except PlanningError:
            plan = []
        names = [env.action_names[a] for a in plan]
        used = {n.split(" ", 1)[1] for n in names}
        w = env.world
        puts = [i for i, n in enumerate(names) if n.startswith("PutObject ")]
        self.kind = "wrong_receptacle" if puts and rng.random() < 0.5 else "wrong_object"
        detour: list[int] = []
        if self.kind == "wrong_receptacle":
            j = puts[0]
            right = names[j].split(" ", 1)[1]
            others = sorted(t.lower() for t in w.members if t.lower() not in (right, "floor"))
            others = [t for t in others if _known(env, f"PutObject {t}")]
            if others:
                other = others[int(rng.integers(len(others)))]
                start = j - 1 if j > 0 and names[j - 1].startswith("GotoLocation ") else j
                detour = plan[:start] + [env.action_index(f"GotoLocation {other}"), env.action_index(f"PutObject {other}")]
            else:
                self.kind = "wrong_object"
        if self.kind == "wrong_object":
            distractors = sorted({t.lower() for t in w.obj_type.values()} - used)
            distractors = [t for t in distractors if _known(env, f"PickupObject {t}") and _known(env, f"GotoLocation {t}")]
            if distractors:
                d = distractors[int(rng.integers(len(distractors)))]
                detour = [env.action_index(f"GotoLocation {d}"), env.action_index(f"PickupObject {d}")]
        self.plan = detour  # when it runs out, expert_action re-plans: the recovery

    def act(self, env: Any, info: dict[str, Any]) -> int | None:
        return self.expert_action(env)


class PartialPolicy(BehaviourPolicy):
    """Follows the plan, then gives up after ``k < n`` sub-tasks (k uniform in 0..n-1).

    A sub-task is a non-navigation step of the expert plan (DESIGN.md), counted as the policy emits
    them -- not from ``info["subtask_progress"]``, which follows the task's sub-goal order and can stay
    behind when the planner reaches goals in another order (counting it let one partial episode in seven
    finish the task). After k it returns ``None``: the episode ends truncated, short of ``max_steps``
    (with k = 0 the collector still takes one random room action, as an episode needs a step).
    """

    name = "partial"

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        super().reset(env, rng)
        n = int(env.task.n_subtasks)
        self.stop_at = int(rng.integers(max(n, 1)))
        self.done = 0

    def act(self, env: Any, info: dict[str, Any]) -> int | None:
        if self.done >= self.stop_at:
            return None
        a = self.expert_action(env)
        if not env.action_names[a].startswith("GotoLocation "):
            self.done += 1
        return a


class RandomPolicy(BehaviourPolicy):
    """Uniform over the room's actions until the episode ends."""

    name = "random"

    def act(self, env: Any, info: dict[str, Any]) -> int | None:
        return self.random_action()


_KINDS: dict[str, type[BehaviourPolicy]] = {
    p.name: p for p in (ExpertPolicy, NoisyExpertPolicy, DetourPolicy, PartialPolicy, RandomPolicy)
}
#: names accepted by ``--policy`` (``mixed`` draws one of the others per episode)
POLICY_NAMES: tuple[str, ...] = (*_KINDS, "mixed")


def _known(env: Any, name: str) -> bool:
    try:
        env.action_index(name)
    except ValueError:
        return False
    return True


def make_policy(name: str, **kwargs: Any) -> BehaviourPolicy:
    """A policy of one kind (``expert``, ``noisy``, ``detour``, ``partial``, ``random``).

    >>> make_policy("noisy", epsilon=0.1).epsilon
    0.1
    """
    if name not in _KINDS:
        import difflib

        close = difflib.get_close_matches(name, list(_KINDS), n=1)
        raise ValueError(f"policy must be one of {sorted(_KINDS)}, got {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    return _KINDS[name](**kwargs)


def parse_mix(spec: str | dict[str, float] | None) -> dict[str, float]:
    """Policy mix from ``"expert=0.5,random=0.5"`` (or a dict), normalised to sum to 1.

    >>> parse_mix("expert=3,random=1")
    {'expert': 0.75, 'random': 0.25}
    >>> parse_mix(None) == DEFAULT_MIX
    True
    """
    if spec is None:
        return dict(DEFAULT_MIX)
    if isinstance(spec, str):
        items: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"policy mix entries must be kind=weight, got {part!r} in {spec!r}")
            items[key.strip()] = float(value)
        spec = items
    for key, w in spec.items():
        if key not in _KINDS:
            raise ValueError(f"unknown policy kind {key!r} in the mix; expected some of {sorted(_KINDS)}")
        if w < 0:
            raise ValueError(f"policy mix weight of {key!r} must be >= 0, got {w}")
    total = float(sum(spec.values()))
    if total <= 0:
        raise ValueError(f"policy mix weights must sum to > 0, got {spec!r}")
    return {k: float(v) / total for k, v in spec.items() if v > 0}

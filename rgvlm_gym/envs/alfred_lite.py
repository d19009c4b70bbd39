"""``rgvlm_gym/AlfredLite-v1``: ALFRED's high-level task world as a fast, headless Gymnasium environment.

Holds :class:`AlfredLiteEnv`, :func:`action_vocabulary` and :data:`INSTRUCTION_CHARSET`.

The agent sees an egocentric frame of the place it stands at and a natural-language instruction, and
acts with ALFRED's high-level actions (``GotoLocation countertop``, ``PickupObject apple``, ``PutObject
fridge``, ``HeatObject apple``, ...; see :mod:`rgvlm_gym.alfred.world`). The reward is sparse: 1 on the
step that reaches success. An invalid action changes nothing and says why in ``info["action_error"]``;
``info["action_mask"]`` (0/1 ``int8``, one entry per action) marks the admissible ones beforehand.

    >>> import gymnasium as gym
    >>> import rgvlm_gym
    >>> env = gym.make("rgvlm_gym/AlfredLite-v1", num_tasks=20)
    >>> obs, info = env.reset(seed=0, options={"task_index": 3})
    >>> obs["image"].shape, obs["image"].dtype
    ((64, 64, 3), dtype('uint8'))
    >>> info["task"]["task_type"], info["goal_conditions"]
    ('pick_clean_then_place_in_recep', (0, 3))
    >>> for a in env.unwrapped.expert_plan():
    ...     obs, reward, terminated, truncated, info = env.step(a)
    >>> reward, terminated, info["success"], info["subtask_progress"]
    (1.0, True, True, (6, 6))
    >>> mask = info["action_mask"]            # admissible actions: 0/1 over the action space
    >>> mask.shape == (env.action_space.n,), [env.unwrapped.action_names[i] for i in mask.nonzero()[0][:2]]
    (True, ['GotoLocation apple', 'GotoLocation bread'])
"""

from __future__ import annotations

import difflib
import string
import unicodedata
from functools import cache, lru_cache
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rgvlm_gym.alfred.ontology import FLOOR, load_ontology
from rgvlm_gym.alfred.planner import PlanningError, expert_plan
from rgvlm_gym.alfred.render import Renderer
from rgvlm_gym.alfred.scene import randomize_scene
from rgvlm_gym.alfred.tasks import TaskSpec
from rgvlm_gym.alfred.world import VERBS, World
from rgvlm_gym.envs.spaces import AUTORESET_MODE, InstructionText

__all__ = ["INSTRUCTION_CHARSET", "MAX_INSTRUCTION_LENGTH", "AlfredLiteEnv", "action_vocabulary"]

INSTRUCTION_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "
MAX_INSTRUCTION_LENGTH = 2048
TASK_SOURCES = ("procedural", "alfred")
_RANDOMIZE_TRIES = 20


@cache
def action_vocabulary() -> tuple[tuple[str, str], ...]:
    """Every ``(verb, Type)`` action, in a fixed order shared by all task suites (from the ontology)."""
    onto = load_ontology()
    fixed = sorted(onto.fixed_receptacles - {FLOOR})
    targets = {
        "GotoLocation": sorted(set(fixed) | onto.pickupable | onto.toggleable),
        "PickupObject": sorted(onto.pickupable),
        "PutObject": sorted(set(fixed) | onto.movable_receptacles | {FLOOR}),
        "ToggleObject": sorted(onto.toggleable),
        "SliceObject": sorted(onto.sliceable),
        "HeatObject": sorted(onto.heatable),
        "CoolObject": sorted(onto.coolable),
        "CleanObject": sorted(onto.cleanable),
    }
    return tuple((verb, t) for verb in VERBS for t in targets[verb])


#: largest procedural suite: tasks are built up front, ~15 KB and ~3 ms each (100,000: ~1.5 GB, minutes)
MAX_NUM_TASKS = 100_000


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_types(**kwargs: Any) -> None:
    """Strict types for the constructor: ``bool("no")`` is True and ``int(2.7)`` is 2, so neither is coerced."""
    for name, value in kwargs.items():
        if name == "randomize_init":
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"Expect `randomize_init` to be a bool, actually: {value!r} ({type(value).__name__})")
        elif not _is_int(value):
            raise ValueError(f"Expect `{name}` to be an int, actually: {value!r} ({type(value).__name__})")
    if not 1 <= int(kwargs["num_tasks"]) <= MAX_NUM_TASKS:
        raise ValueError(f"Expect `num_tasks` to be in 1..{MAX_NUM_TASKS:,} (the suite is built in memory, ~15 KB a task), "
                         f"actually: {kwargs['num_tasks']}")


def _action_int(action: Any) -> int:
    """An action as an int; a float, a string or a bool is refused (``int(3.7)`` would silently act as 3)."""
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action[()]
    if not _is_int(action):
        raise ValueError(f"Expect the action to be an int (or numpy integer), actually: {action!r} ({type(action).__name__})")
    return int(action)


@lru_cache(maxsize=16)
def _procedural_suite(num_tasks: int, seed: int, subtasks: str | None, types: tuple[str, ...] | None) -> tuple[TaskSpec, ...]:
    # tasks are immutable: envs built with the same arguments (a vector env, an evaluation) share them
    from rgvlm_gym.alfred.procedural import procedural_suite

    return tuple(procedural_suite(num_tasks, seed=seed, subtasks=subtasks, task_types=list(types) if types else None))


def _plan_or_none(world: World, task: TaskSpec) -> list[tuple[str, str]] | None:
    # only states the expert can solve are offered, so expert_plan() never raises right after a reset
    try:
        return expert_plan(world, task.goal)
    except PlanningError:
        return None


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = " ".join(text.split())
    return "".join(c for c in text if c in INSTRUCTION_CHARSET)[:MAX_INSTRUCTION_LENGTH]


class AlfredLiteEnv(gym.Env[dict[str, Any], np.int64]):
    """ALFRED tasks in a built-in high-level simulator (see the module docstring).

    Args:
        tasks: ``"procedural"`` (generated rooms and tasks, no data needed) or ``"alfred"`` (tasks of an
            ALFRED ``json_2.1.0`` split, with their human instructions and reconstructed scenes).
        alfred_dir: ALFRED's ``json_2.1.0`` folder (``tasks="alfred"``).
        split: ALFRED split (``train``, ``valid_seen``, ...).
        subtasks: ``None`` for whole tasks, or ``"1-6"`` for every prefix task with 1..6 sub-tasks.
        randomize_init: re-place the room's objects into random compatible receptacles at each reset
            (redrawn while the placement already completes the first sub-task; after 20 draws, the
            dataset's initial state is kept; only states the expert planner can solve are offered).
            Instructions then still match the scene: a whole task keeps its goal-level text (ALFRED's human
            ``task_desc``, which says what to achieve, not where things start); a suite of k-sub-task tasks
            (``subtasks=...``), whose human step text walks through the original placements, gets step text
            regenerated from the expert plan in the randomized scene (``info["task"]["instruction_source"]``
            is ``"regenerated"``, else ``"dataset"``).
        num_tasks: size of a procedural suite (ignored for ALFRED).
        suite_seed: seed of the procedural suite (task i of a suite is always the same).
        task_types: restrict the suite to these ALFRED task types (comma-separated or a list).
        image_size: side of the observed frame (the RL observation), in pixels.
        render_size: side of ``render()`` frames (for people and LVLMs; >= 224 keeps labels legible).
        max_steps: truncate an episode after this many steps.
        layouts_dir: ALFRED's ``layouts`` folder (default: next to ``alfred_dir``).
        render_mode: ``None`` or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2, "autoreset_mode": AUTORESET_MODE}

    def __init__(
        self,
        tasks: str = "procedural",
        alfred_dir: str | None = None,
        split: str = "train",
        subtasks: str | None = None,
        randomize_init: bool = False,
        num_tasks: int = 1000,
        suite_seed: int = 0,
        task_types: str | list[str] | None = None,
        image_size: int = 64,
        render_size: int = 224,
        max_steps: int = 50,
        layouts_dir: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        _check_types(randomize_init=randomize_init, num_tasks=num_tasks, suite_seed=suite_seed, image_size=image_size,
                     render_size=render_size, max_steps=max_steps)
        if tasks not in TASK_SOURCES:
            hint = difflib.get_close_matches(str(tasks), TASK_SOURCES, n=1)
            raise ValueError(f"tasks must be one of {TASK_SOURCES}, got {tasks!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if int(max_steps) < 1:
            raise ValueError(f"Expect `max_steps` to be positive, actually: {max_steps}")
        if not 32 <= int(image_size) <= 512:
            raise ValueError(f"image_size must be in 32..512, got {image_size}")
        types = task_types.split(",") if isinstance(task_types, str) else task_types
        self.onto = load_ontology()
        self.task_source = tasks
        self.randomize_init = bool(randomize_init)
        self.image_size, self.render_size, self.max_steps = int(image_size), int(render_size), int(max_steps)
        self.render_mode = render_mode
        self.load_report = None
        if tasks == "alfred":
            from rgvlm_gym.alfred.paths import resolve_alfred_dir
            from rgvlm_gym.alfred.traj import load_split

            alfred_dir = resolve_alfred_dir(alfred_dir)  # a recorded path from another machine: $RGVLM_GYM_ALFRED_DIR

            report = load_split(alfred_dir, split, subtasks=subtasks, layouts_dir=layouts_dir)
            self.load_report = report
            if report.skipped:
                gym.logger.warn(report.summary())
            suite = report.tasks
            if types:
                suite = [t for t in suite if t.task_type in types]
        else:
            suite = _procedural_suite(int(num_tasks), int(suite_seed), subtasks, tuple(types) if types else None)
        if not suite:
            raise ValueError(f"the task suite is empty (tasks={tasks!r}, split={split!r}, subtasks={subtasks!r}, task_types={types!r})")
        self.suite: list[TaskSpec] = list(suite)
        self._vocab = action_vocabulary()
        self.action_names: list[str] = [f"{v} {t.lower()}" for v, t in self._vocab]
        self._action_index = {a: i for i, a in enumerate(self._vocab)}
        self.action_space = spaces.Discrete(len(self._vocab))
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8),
                "instruction": InstructionText(MAX_INSTRUCTION_LENGTH, min_length=0, charset=INSTRUCTION_CHARSET),
            }
        )
        self._renderer = Renderer()
        self.task: TaskSpec = self.suite[0]
        self.task_index = 0
        self.instruction = ""
        self.instruction_source = "dataset"
        self._step_text = subtasks is not None  # suites of k-sub-task tasks are instructed step by step
        self.world = World(self.task.scene, self.onto)
        self._task_info = self.task.summary(self.instruction) | {"task_index": self.task_index}
        self._steps = 0
        self._progress = 0

    # -- properties --------------------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        """Size of the task suite."""
        return len(self.suite)

    def action_index(self, name: str) -> int:
        """Index of an action given as ``"PickupObject apple"`` (case-insensitive type)."""
        verb, _, arg = name.strip().partition(" ")
        try:
            return self._action_index[(verb, self.onto.canonical(arg))]
        except (KeyError, ValueError):
            close = difflib.get_close_matches(name, self.action_names, n=1)
            raise ValueError(f"unknown action {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")) from None

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        if "task_index" in options:
            idx = int(options["task_index"])
            if not 0 <= idx < self.num_tasks:
                raise ValueError(f"options['task_index'] must be in 0..{self.num_tasks - 1}, got {idx}")
        else:
            idx = int(self.np_random.integers(self.num_tasks))
        self.task_index, self.task = idx, self.suite[idx]
        variants = self.task.instructions
        self.instruction = _ascii(variants[int(self.np_random.integers(len(variants)))])
        randomize = bool(options.get("randomize_init", self.randomize_init))
        world = None
        for _ in range(_RANDOMIZE_TRIES if randomize else 0):
            # a re-placement that already completes the first sub-task would make the task trivial: redraw
            candidate = World(randomize_scene(self.task.scene, self.np_random, self.onto), self.onto)
            if not any(all(c.holds(candidate) for c in goal) for goal in (self.task.subgoals[0], self.task.goal)):
                plan = _plan_or_none(candidate, self.task)
                if plan is not None:
                    world = candidate
                    if self._step_text:  # step-by-step text describes the original placements: rewrite it
                        from rgvlm_gym.alfred.procedural import describe_plan

                        self.instruction = _ascii(describe_plan(candidate, plan, self.np_random))
                    break
        self.instruction_source = "regenerated" if world is not None and self._step_text else "dataset"
        self.world = world or World(self.task.scene, self.onto)
        self._task_info = self.task.summary(self.instruction) | {"task_index": self.task_index, "instruction_source": self.instruction_source}
        self._steps = 0
        self._progress = 0
        self._advance_progress()
        return self._obs(), self._info(None, None)

    def step(self, action: int | np.integer) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = _action_int(action)
        self._steps += 1
        if not 0 <= a < len(self._vocab):
            error: str | None = f"action {a} is out of range 0..{len(self._vocab) - 1}"
        else:
            verb, arg = self._vocab[a]
            error = self.world.step(verb, arg)
        success = self.task.is_success(self.world)
        self._advance_progress(success)
        terminated = success
        truncated = not terminated and self._steps >= self.max_steps
        reward = 1.0 if success else 0.0
        info = self._info(a, error, success)
        return self._obs(), reward, terminated, truncated, info

    def action_mask(self) -> np.ndarray:
        """(n_actions,) int8: 1 where the action is admissible in the current state, 0 where it would fail.

        The same array as ``info["action_mask"]`` (ALFWorld's admissible commands, as a mask).
        """
        mask = np.zeros(len(self._vocab), dtype=np.int8)
        index = self._action_index
        for action in self.world.admissible():
            i = index.get(action)
            if i is not None:
                mask[i] = 1
        return mask

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._renderer.render(self.world, self.render_size).copy()

    def render_frame(self, size: int) -> np.ndarray:
        """The current frame at any size (read-only array from the frame cache)."""
        return self._renderer.render(self.world, size)

    # -- expert ------------------------------------------------------------------------------------
    def expert_plan(self) -> list[int]:
        """Actions that solve the current task from the current state (empty if already solved).

        Raises:
            rgvlm_gym.alfred.planner.PlanningError: if no plan exists from this state.
        """
        return [self._action_index[a] for a in expert_plan(self.world, self.task.goal)]

    def expert_cost_to_go(self) -> tuple[int, int]:
        """``(length of the expert plan, its first action)`` from the current state; ``(-1, -1)`` if none.

        ``(0, -1)`` once solved. Privileged ground truth: collection records it per state, and the dense
        progress oracle (:func:`rgvlm_gym.rewards.progress_contributions`) credits steps from it.
        """
        try:
            plan = self.expert_plan()
        except PlanningError:
            return -1, -1
        return len(plan), (plan[0] if plan else -1)

    # -- helpers -----------------------------------------------------------------------------------
    def _advance_progress(self, success: bool | None = None) -> None:
        subgoals = self.task.subgoals
        while self._progress < len(subgoals) and all(c.holds(self.world) for c in subgoals[self._progress]):
            self._progress += 1
        if success:
            self._progress = len(subgoals)

    def _obs(self) -> dict[str, Any]:
        return {"image": self._renderer.render(self.world, self.image_size).copy(), "instruction": self.instruction}

    def _info(self, action: int | None, error: str | None, success: bool | None = None) -> dict[str, Any]:
        if success is None:
            success = self.task.is_success(self.world)
        return {
            "task": dict(self._task_info),
            "success": bool(success),
            "goal_conditions": self.task.goal_conditions_met(self.world),
            "subtask_progress": (self._progress, self.task.n_subtasks),
            "action_error": error,
            "action_mask": self.action_mask(),
            "action_name": self.action_names[action] if action is not None and 0 <= action < len(self.action_names) else None,
        }


__all__ += ["PlanningError"]

"""``rgvlm_gym/AlfredThor-v0``: ALFRED tasks carried out in AI2-THOR 2.1.0, behind AlfredLite's interface.

Holds :class:`AlfredThorEnv`. Same observation and action spaces, task specs, goal checks, ``info`` keys
and :meth:`expert_plan` as ``rgvlm_gym/AlfredLite-v1``; the frames come from THOR's camera and every
high-level action is carried out in THOR (:mod:`rgvlm_gym.thor.translate`).

How the two worlds stay together: an action happens when both accept it. AlfredLite's world checks the
action's preconditions and decides which object it means (the same rules as AlfredLite, so the action
mask, the goal checks and the expert agree); THOR then carries it out, and only when every THOR action
succeeds is the step committed to the world. A THOR failure leaves the world unchanged and reports THOR's
``errorMessage`` in ``info["action_error"]``. THOR hangs are handled by the controller: after a timeout the
player is killed and restarted, the scene restored, the episode's THOR actions replayed, and the action
tried once more.

Needs ``pip install 'rgvlm-gym[thor]'`` (``ai2thor==2.1.0``) and an X server (README, "AI2-THOR").
Only ALFRED tasks (``tasks="alfred"``) from the dataset's initial states: THOR scenes are restored from
the trajectory's recorded poses. What has been run against a live THOR: nothing yet (see the README).

    >>> import gymnasium as gym, rgvlm_gym
    >>> env = gym.make("rgvlm_gym/AlfredThor-v0", tasks="alfred", alfred_dir="../shared/alfred/json_2.1.0",
    ...                split="valid_seen")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rgvlm_gym.alfred.world import World
from rgvlm_gym.envs.alfred_lite import AlfredLiteEnv
from rgvlm_gym.thor.controller import ThorController, ThorError, ThorTimeout
from rgvlm_gym.thor.translate import Translator, restore_actions

__all__ = ["AlfredThorEnv"]


@lru_cache(maxsize=64)
def _traj_scene(path: str) -> dict[str, Any]:
    try:
        scene = json.loads(Path(path).read_text())["scene"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: cannot read the trajectory's scene for THOR ({exc})") from None
    return dict(scene)


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR))


class AlfredThorEnv(AlfredLiteEnv):
    """ALFRED tasks in AI2-THOR 2.1.0 (see the module docstring).

    Args:
        tasks, alfred_dir, split, subtasks, task_types, image_size, max_steps, layouts_dir, render_mode:
            as :class:`~rgvlm_gym.envs.alfred_lite.AlfredLiteEnv` (only ``tasks="alfred"``).
        render_size: THOR's camera resolution (ALFRED records 300 x 300); ``render()`` returns it.
        x_display: X display THOR renders on (default ``$DISPLAY``).
        quality: Unity quality preset (ALFRED: ``"MediumCloseFitShadows"``).
        start_timeout_s, step_timeout_s: limits for starting THOR and for one THOR call.
        controller_factory: ``factory(x_display, width, height, quality) -> controller`` with ai2thor 2.1.0's
            ``reset``/``step``/``stop`` API (default: a real ``ai2thor.controller.Controller``).
    """

    metadata = {**AlfredLiteEnv.metadata, "render_fps": 5}

    def __init__(
        self,
        tasks: str = "alfred",
        alfred_dir: str | None = None,
        split: str = "valid_seen",
        subtasks: str | None = None,
        randomize_init: bool = False,
        task_types: str | list[str] | None = None,
        image_size: int = 64,
        render_size: int = 300,
        max_steps: int = 50,
        layouts_dir: str | None = None,
        render_mode: str | None = None,
        x_display: str | None = None,
        quality: str = "MediumCloseFitShadows",
        start_timeout_s: float = 300.0,
        step_timeout_s: float = 60.0,
        controller_factory: Callable[[str | None, int, int, str], Any] | None = None,
    ) -> None:
        if tasks != "alfred":
            raise ValueError(f"rgvlm_gym/AlfredThor-v0 runs ALFRED tasks only (tasks='alfred'), got tasks={tasks!r}: procedural rooms have no THOR scene")
        if randomize_init:
            raise ValueError("rgvlm_gym/AlfredThor-v0 does not randomize initial states yet: THOR scenes are restored from the "
                             "trajectory's recorded poses (use rgvlm_gym/AlfredLite-v1 for randomized states)")
        if int(render_size) < 300:
            raise ValueError(f"AI2-THOR 2.1.0 renders at least 300 x 300 pixels: render_size must be >= 300, got {render_size}")
        super().__init__(tasks="alfred", alfred_dir=alfred_dir, split=split, subtasks=subtasks, task_types=task_types,
                         image_size=image_size, render_size=render_size, max_steps=max_steps, layouts_dir=layouts_dir,
                         render_mode=render_mode)
        self.thor = ThorController(controller_factory, x_display, render_size, render_size, quality, start_timeout_s, step_timeout_s)
        self.translator = Translator(self.onto)
        self._executed: list[dict[str, Any]] = []  # THOR actions of this episode, for replay after a restart

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        if options and options.get("randomize_init"):
            raise ValueError("rgvlm_gym/AlfredThor-v0 does not randomize initial states yet (options['randomize_init'])")
        _, info = super().reset(seed=seed, options=options)
        self._executed = []
        self._restore()
        return self._obs(), info

    def step(self, action: int | np.integer) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = int(action)
        self._steps += 1
        if not 0 <= a < len(self._vocab):
            error: str | None = f"action {a} is out of range 0..{len(self._vocab) - 1}"
        else:
            verb, arg = self._vocab[a]
            error = self._carry_out(verb, arg)
        success = self.task.is_success(self.world)
        self._advance_progress(success)
        truncated = not success and self._steps >= self.max_steps
        return self._obs(), 1.0 if success else 0.0, success, truncated, self._info(a, error, success)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._frame().copy()

    def render_frame(self, size: int) -> np.ndarray:
        """THOR's current frame at any size (for LVLM labeling)."""
        return _resize(self._frame(), int(size))

    def close(self) -> None:
        self.thor.close()
        super().close()

    # -- THOR --------------------------------------------------------------------------------------
    def _restore(self) -> None:
        scene = _traj_scene(self.task.source)
        self.thor.reset(self.task.scene.scene_id)
        for act in restore_actions(scene):
            ev = self.thor.step(act)
            if not ev.metadata.get("lastActionSuccess", True) and act["action"] in ("SetObjectPoses", "TeleportFull"):
                raise ThorError(f"restoring {self.task.source} in THOR failed at {act['action']}: {ev.metadata.get('errorMessage')}")
        ev = self.thor.step({"action": "GetReachablePositions"})
        reachable = ev.metadata.get("reachablePositions") or []
        self.translator.bind(self.world, ev.metadata, reachable)
        for act in self._executed:  # after a restart: back to where the episode was
            self.thor.step(act)

    def _carry_out(self, verb: str, arg: str) -> str | None:
        after = self.world.copy()
        error = after.step(verb, arg)
        if error is not None:
            return error
        for attempt in range(2):
            try:
                return self._execute(verb, arg, after)
            except ThorTimeout:
                if attempt:
                    raise
                self.thor.restart()
                self._restore()
        return None  # pragma: no cover

    def _execute(self, verb: str, arg: str, after: World) -> str | None:
        meta = self.thor.last_event.metadata
        try:
            thor_actions = self.translator.actions(verb, arg, self.world, after, meta)
        except (KeyError, StopIteration, ValueError) as exc:
            return f"{verb} {arg.lower()}: THOR cannot carry this out ({exc})"
        done: list[dict[str, Any]] = []
        for act in thor_actions:
            ev = self.thor.step(act)
            done.append(act)
            if not ev.metadata.get("lastActionSuccess", False):
                self._executed.extend(done)  # THOR's state moved; keep replay faithful
                return f"{verb} {arg.lower()}: THOR's {act['action']} failed: {ev.metadata.get('errorMessage') or 'no reason given'}"
        self._executed.extend(done)
        self.translator.commit(verb, arg, self.world, after, self.thor.last_event.metadata)
        self.world = after
        return None

    def _frame(self) -> np.ndarray:
        ev = self.thor.last_event
        frame = getattr(ev, "frame", None) if ev is not None else None
        if frame is None:
            return np.zeros((self.render_size, self.render_size, 3), np.uint8)
        return np.asarray(frame, dtype=np.uint8)

    def _obs(self) -> dict[str, Any]:
        if not self.thor.started:  # before the first reset (spaces only)
            return super()._obs()
        return {"image": _resize(self._frame(), self.image_size).copy(), "instruction": self.instruction}

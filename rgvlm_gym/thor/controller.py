"""A supervised AI2-THOR 2.1.0 controller: start-up and step timeouts, restart after a hang, clear errors.

Holds :class:`ThorController`, :func:`ai2thor_factory`, :func:`check_display` and the errors
:class:`ThorError`, :class:`ThorUnavailable` (ai2thor or an X display is missing) and :class:`ThorTimeout`.

AI2-THOR 2.1.0 (the version ALFRED recorded its data on; later versions change object behaviour) is a
Unity player driven over a local socket: ``Controller(quality=...)``, ``start(x_display=...,
player_screen_width=..., player_screen_height=...)``, ``reset(scene_name)``, ``step(dict(action=...))``
returning an event with ``.metadata`` (``objects``, ``agent``, ``inventoryObjects``, ``lastActionSuccess``,
``errorMessage``, ...) and ``.frame`` (RGB ``uint8``), and ``stop()``. It needs an X server (no headless
rendering before ~3.5); its users' top complaints are the X server, hangs and crashes, so every call here
runs under a timeout, and a hung player is killed and started again.

Any object with that API can stand in for the controller (``factory=``): the tests use a double that
speaks THOR's event format.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["THOR_VERSION", "ThorController", "ThorError", "ThorTimeout", "ThorUnavailable", "ai2thor_factory", "check_display"]

THOR_VERSION = "2.1.0"
XVFB_RECIPE = "Xvfb :99 -screen 0 1024x768x24 &  export DISPLAY=:99   (or run under: xvfb-run -a -s '-screen 0 1024x768x24' ...)"


class ThorError(RuntimeError):
    """AI2-THOR failed (crashed, or kept hanging after restarts)."""


class ThorUnavailable(ThorError):
    """AI2-THOR cannot start here: ai2thor is not installed, or there is no X display."""


class ThorTimeout(ThorError):
    """AI2-THOR did not answer within the time limit (start-up or one step)."""


def check_display(x_display: str | None = None) -> str:
    """The X display number to start THOR on (``"99"`` for ``":99"``), or :class:`ThorUnavailable` saying how to get one."""
    disp = x_display if x_display is not None else os.environ.get("DISPLAY")
    if not disp:
        raise ThorUnavailable(f"AI2-THOR {THOR_VERSION} renders through an X server and no display is set (DISPLAY is empty, x_display=None). "
                              f"On a headless machine start a virtual one: {XVFB_RECIPE}")
    host, _, rest = str(disp).rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        raise ThorUnavailable(f"cannot read an X display number from {disp!r}; expected e.g. ':99' or '99'")
    if not host and not Path(f"/tmp/.X11-unix/X{number}").exists():
        raise ThorUnavailable(f"no X server is listening on display :{number} (no /tmp/.X11-unix/X{number}). Start one: {XVFB_RECIPE}")
    return number


def ai2thor_factory(x_display: str | None, width: int, height: int, quality: str) -> Any:
    """Start a real ``ai2thor.controller.Controller`` (ALFRED's settings); the default factory."""
    try:
        from ai2thor.controller import Controller
    except ImportError:
        raise ThorUnavailable(f"rgvlm_gym/AlfredThor-v0 needs ai2thor=={THOR_VERSION}: pip install 'rgvlm-gym[thor]'") from None
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        version: str | None = dist_version("ai2thor")
    except PackageNotFoundError:
        version = None
    if version is not None and version != THOR_VERSION:
        warnings.warn(f"ai2thor {version} is installed; ALFRED's data was recorded on {THOR_VERSION}, and later versions change "
                      "object behaviour (a public port to 2.4 replayed 69 % of ALFRED's trajectories)", stacklevel=2)
    display = check_display(x_display)
    controller = Controller(quality=quality)
    # 2.1.0 prefixes ':' to x_display, downloads its Unity build on first use, and refuses frames under 300 px
    controller.start(x_display=display, player_screen_width=width, player_screen_height=height)
    return controller


def _call(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn`` in a daemon thread; its result, its exception, or :class:`ThorTimeout` (the thread is abandoned)."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            box.put((True, fn()))
        except BaseException as exc:  # handed to the caller's thread
            box.put((False, exc))

    threading.Thread(target=run, daemon=True, name="thor-call").start()
    try:
        ok, value = box.get(timeout=timeout)
    except queue.Empty:
        raise ThorTimeout(f"AI2-THOR did not answer within {timeout:g} s") from None
    if not ok:
        raise value
    return value


class ThorController:
    """An AI2-THOR controller under supervision.

    Args:
        factory: ``factory(x_display, width, height, quality) -> controller``; default :func:`ai2thor_factory`.
        x_display: X display for THOR (default: ``$DISPLAY``).
        width, height: frame size of THOR's camera.
        quality: Unity quality preset (ALFRED uses ``"MediumCloseFitShadows"``).
        start_timeout_s: limit for starting the player (the first start downloads the 2.1.0 build).
        step_timeout_s: limit for one ``reset`` or ``step``.
        max_restarts: restarts after hangs in this controller's life before giving up with :class:`ThorError`.
    """

    def __init__(
        self,
        factory: Callable[[str | None, int, int, str], Any] | None = None,
        x_display: str | None = None,
        width: int = 300,
        height: int = 300,
        quality: str = "MediumCloseFitShadows",
        start_timeout_s: float = 300.0,
        step_timeout_s: float = 60.0,
        max_restarts: int = 5,
    ) -> None:
        if start_timeout_s <= 0 or step_timeout_s <= 0:
            raise ValueError(f"Expect positive timeouts, actually: start_timeout_s={start_timeout_s}, step_timeout_s={step_timeout_s}")
        self.factory = factory or ai2thor_factory
        self.x_display, self.width, self.height, self.quality = x_display, int(width), int(height), quality
        self.start_timeout_s, self.step_timeout_s, self.max_restarts = float(start_timeout_s), float(step_timeout_s), int(max_restarts)
        self.restarts = 0
        self._c: Any = None
        self.last_event: Any = None

    @property
    def started(self) -> bool:
        return self._c is not None

    def start(self) -> None:
        """Start the player (no-op when started)."""
        if self._c is None:
            self._c = _call(lambda: self.factory(self.x_display, self.width, self.height, self.quality), self.start_timeout_s)

    def reset(self, scene_name: str) -> Any:
        """Load a floor plan (``"FloorPlan12"``); returns THOR's event."""
        self.start()
        self.last_event = self._timed(lambda: self._c.reset(scene_name))
        return self.last_event

    def step(self, action: dict[str, Any]) -> Any:
        """One THOR action (a dict with ``"action"``); returns THOR's event. A hang raises :class:`ThorTimeout`
        after the player was killed; call :meth:`restart` (or let the env do it) to go on."""
        self.start()
        self.last_event = self._timed(lambda: self._c.step(action))
        return self.last_event

    def _timed(self, fn: Callable[[], Any]) -> Any:
        try:
            return _call(fn, self.step_timeout_s)
        except ThorTimeout:
            self._kill()
            raise

    def restart(self) -> None:
        """Kill the player and start a new one (the scene must be loaded and restored again)."""
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise ThorError(f"AI2-THOR hung {self.restarts} times; giving up (max_restarts={self.max_restarts})")
        self._kill()
        self.start()

    def close(self) -> None:
        if self._c is not None:
            c, self._c = self._c, None
            try:
                _call(c.stop, 10.0)
            except Exception:  # a player that will not stop is killed
                self._kill_player(c)

    def _kill(self) -> None:
        if self._c is not None:
            c, self._c = self._c, None
            self._kill_player(c)
            threading.Thread(target=lambda: _quiet(c.stop), daemon=True).start()

    @staticmethod
    def _kill_player(c: Any) -> None:
        # ai2thor 2.x keeps the Unity process id on the controller
        pid = getattr(c, "unity_pid", None) or getattr(getattr(c, "server_process", None), "pid", None)
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def _quiet(fn: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):
        fn()

"""The ``rgvlm`` command line.

Each sub-command lives in its own module under :mod:`rgvlm_gym.commands` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their command runs,
so ``rgvlm --help`` stays fast (torch and d3rlpy are slow to import).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

#: sub-command name -> (module under rgvlm_gym.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "render an expert episode of a task to a GIF / PNG strip"),
    "collect": ("collect", "collect episodes with behaviour policies into a Minari dataset"),
    "dataset": ("dataset", "show an rgvlm-gym Minari dataset, or export it to a d3rlpy ReplayBuffer"),
    "relabel": ("relabel", "relabel a dataset with LVLM (RG-VLM) rewards into a new dataset, cached and resumable"),
    "inspect": ("inspect", "show one episode's frames, actions, LVLM analysis and scores as HTML / PNG"),
    "train": ("train", "train a d3rlpy algorithm (DiscreteIQL, CQL, BCQ, BC) on a dataset"),
    "evaluate": ("evaluate", "roll a trained policy out and report task completion and success by number of sub-tasks"),
    "quickstart": ("quickstart", "the whole pipeline, small: collect, relabel, train sparse vs RG-VLM, evaluate"),
    "benchmark": ("benchmark", "run a benchmark config (collect, relabel, train x seeds, evaluate), resumable, with intervals"),
    "compare": ("compare", "draw Figure-4-style bars with intervals from rgvlm evaluate outputs"),
}


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(f"rgvlm_gym.commands.{module_name}")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser; only the sub-command named in ``argv`` is imported."""
    from rgvlm_gym import __version__

    parser = argparse.ArgumentParser(
        prog="rgvlm",
        description="rgvlm-gym: LVLM-generated dense rewards (RG-VLM) for offline RL on ALFRED tasks.",
    )
    parser.add_argument("--version", action="version", version=f"rgvlm-gym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = list(sys.argv[1:] if argv is None else argv)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in argv:  # import lazily: only the command being run (or asked --help about)
            _load(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rgvlm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from rgvlm_gym.console import quiet_foreign_output

    quiet_foreign_output()  # d3rlpy's info/debug logs and colour codes in pipes are not the user's business
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from rgvlm_gym.errors import RgvlmError

    try:
        return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RgvlmError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # the user's input or the machine's state: one line, no traceback
        print(f"rgvlm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        if _is_user_error(exc):
            print(f"rgvlm {args.command}: error: {exc}", file=sys.stderr)
            return 1
        raise  # a bug: keep its traceback


def _is_user_error(exc: ValueError) -> bool:
    """Whether a plain ``ValueError`` reports bad input (one line) or a bug (traceback).

    rgvlm-gym raises ``ValueError`` only to reject input (asserts guard its own invariants; STYLE.md 9),
    and so does Gymnasium when it checks an env's arguments. So a ``ValueError`` raised by a ``raise``
    statement in their code is the user's; one raised inside numpy, torch, h5py, d3rlpy... is a bug
    (e.g. two arrays of different shapes) and keeps its traceback. New user-facing checks should raise
    :class:`~rgvlm_gym.errors.UsageError`, which needs no such guess.
    """
    import traceback

    text = str(exc)
    if not text.strip():
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    origin = frames[-1].filename.replace("\\", "/")
    return "/rgvlm_gym/" in origin or "/gymnasium/" in origin


if __name__ == "__main__":
    raise SystemExit(main())

"""``rgvlm demo``: render an expert episode of a task to an animated GIF (or a PNG strip) to look at."""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["add_arguments", "captioned", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo.gif", help="output file: .gif (animated) or .png (a strip of frames)")
    p.add_argument("--tasks", choices=("procedural", "alfred"), default="procedural", help="task source")
    p.add_argument("--alfred-dir", default=None, help="ALFRED json_2.1.0 folder (with --tasks alfred; default: $RGVLM_GYM_ALFRED_DIR)")
    p.add_argument("--split", default="valid_seen", help="ALFRED split (with --tasks alfred)")
    p.add_argument("--subtasks", default=None, help="prefix tasks with this many sub-tasks, e.g. '1-6'")
    p.add_argument("--task-index", type=int, default=None, help="task of the suite (default: drawn by --seed)")
    p.add_argument("--seed", type=int, default=0, help="reset seed")
    p.add_argument("--randomize-init", action="store_true", help="randomized initial state")
    p.add_argument("--size", type=int, default=320, help="frame size in pixels")


def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def captioned(frame: np.ndarray, instruction: str, caption: str) -> Image.Image:
    """A frame with the instruction above it and a caption (the action, progress) below."""
    size = frame.shape[1]
    px = max(10, size // 24)
    font = _font(px)
    lines = textwrap.wrap(instruction, width=max(20, int(size / (px * 0.55))))[:4]
    top = (len(lines) + 1) * (px + 4) + 10
    bottom = 2 * (px + 4) + 4
    img = Image.new("RGB", (size, top + size + bottom), (24, 24, 28))
    d = ImageDraw.Draw(img)
    d.text((6, 4), "Instruction:", fill=(150, 200, 255), font=font)
    for i, line in enumerate(lines):
        d.text((6, 4 + (i + 1) * (px + 4)), line, fill=(235, 235, 235), font=font)
    img.paste(Image.fromarray(frame), (0, top))
    for i, line in enumerate(caption.split("\n")[:2]):
        d.text((6, top + size + 4 + i * (px + 4)), line, fill=(255, 220, 120), font=font)
    return img


def run(args: argparse.Namespace) -> int:
    if Path(args.out).suffix.lower() not in (".gif", ".png"):  # before any work: the format follows the name
        raise ValueError(f"--out must end in .gif (animation) or .png (a strip of frames), got {args.out!r}")
    import gymnasium as gym

    import rgvlm_gym  # noqa: F401  (registers the env)

    kwargs: dict = {"tasks": args.tasks, "render_mode": "rgb_array", "render_size": args.size}
    if args.tasks == "alfred":
        kwargs.update(alfred_dir=args.alfred_dir, split=args.split)
    else:
        kwargs.update(num_tasks=max(50, (args.task_index or 0) + 1))
    if args.subtasks:
        kwargs["subtasks"] = args.subtasks
    if args.randomize_init:
        kwargs["randomize_init"] = True
    env = gym.make("rgvlm_gym/AlfredLite-v1", **kwargs)
    base = env.unwrapped
    options = {"task_index": args.task_index} if args.task_index is not None else None
    _, info = env.reset(seed=args.seed, options=options)
    instruction = info["task"]["instruction"]
    frames = [captioned(env.render(), instruction, f"step 0 | start\nsub-tasks done: 0/{info['task']['n_subtasks']}")]
    plan = base.expert_plan()
    for t, a in enumerate(plan, 1):
        _, reward, terminated, truncated, info = env.step(a)
        done, total = info["subtask_progress"]
        status = "  SUCCESS" if info["success"] else ""
        caption = f"step {t} | {base.action_names[a]}\nsub-tasks done: {done}/{total}  reward {reward:g}{status}"
        frames.append(captioned(env.render(), instruction, caption))
        if terminated or truncated:
            break
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # write next to the target and rename: an interrupted run never leaves half a file
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=out.suffix or ".gif")
    os.close(fd)
    try:
        if out.suffix.lower() == ".png":
            w, h = frames[0].size
            strip = Image.new("RGB", (w * len(frames), h))
            for i, f in enumerate(frames):
                strip.paste(f, (i * w, 0))
            strip.save(tmp, format="PNG")
        else:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=1200, loop=0)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    t = info["task"]
    print(f"task {t['task_id']} ({t['task_type']}, {t['n_subtasks']} sub-tasks): {instruction}")
    print(f"expert solved it in {len(frames) - 1} steps: success={info['success']}; wrote {out} ({len(frames)} frames)")
    return 0 if info["success"] else 1

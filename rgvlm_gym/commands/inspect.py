"""``rgvlm inspect``: one episode of a dataset as the RG-VLM paper's Figure 3 -- frames, actions, the LVLM's
stage-1 analysis and its per-action score -- so a person can judge the labels by eye.

Example::

    rgvlm inspect rgvlm/alfred-valid-rgvlm-v0 --episode 3                      # -> <name>-episode-3.html
    rgvlm inspect rgvlm/alfred-valid-rgvlm-v0 --episode 3 --out ep3.png --out ep3.html

Per step: the frame after the action, the action (and its error, if it was invalid), the LVLM's analysis of
that step (split out of the stage-1 answer by :func:`~rgvlm_gym.rewards.rgvlm.analyses_by_step`), its 0-10
score, the stored reward (combined), the original reward, and the oracle's sub-task progress before -> after.
The HTML page is self-contained (frames as base64 PNG) and also holds the LVLM's full answers; the PNG is a
contact sheet of the same cards. A dataset that was not relabeled shows frames, actions, rewards and progress.

Python: :func:`episode_view`, :func:`render_html`, :func:`render_png`.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from minari import MinariDataset
    from PIL import Image as PILImage

__all__ = ["add_arguments", "episode_view", "render_html", "render_png", "run"]

SIM_NOTE = "(simulated LVLM)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_id", metavar="DATASET_ID", help="Minari dataset id (relabeled or not)")
    p.add_argument("--episode", type=int, required=True, help="episode index")
    p.add_argument("--out", action="append", default=None, metavar="FILE",
                   help="output .html or .png (repeatable; default: <name>-episode-N.html in the current folder)")
    p.add_argument("--columns", type=int, default=4, help="cards per row of the PNG (default: 4)")
    p.add_argument("--frame-size", type=int, default=224, help="frame side in the PNG, pixels (default: 224)")


def _f(x: Any, fmt: str = "{:.2f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return fmt.format(x)


def episode_view(dataset: MinariDataset | str, episode: int) -> dict[str, Any]:
    """Everything the page shows about one episode, as plain data (frames as uint8 arrays).

    Raises:
        DatasetError: unknown dataset (with "did you mean"), an episode out of range, no frames.
    """
    from rgvlm_gym.data import DatasetError, dataset_info, load_episode, open_dataset
    from rgvlm_gym.rewards.base import LabelResult
    from rgvlm_gym.rewards.relabel import _display_spec
    from rgvlm_gym.rewards.rgvlm import analyses_by_step

    ds = open_dataset(dataset)
    info = dataset_info(ds)
    if not 0 <= episode < ds.total_episodes:
        raise DatasetError(f"Expect --episode in 0..{ds.total_episodes - 1} for dataset {ds.id!r}, actually: {episode}")
    if not info.get("frames", True):
        raise DatasetError(f"dataset {ds.id!r} has no frames to show (written with frames=False)")
    rec = load_episode(ds, episode, frames=True)
    n = len(rec)
    label: dict[str, Any] = rec.extra.get("label") or {}
    meta = label.get("meta") or {}
    inner_meta = meta.get("dense_meta", meta)
    texts = label.get("texts") or []
    analyses = [""] * n
    if texts:
        probe = LabelResult(rewards=np.zeros(n, np.float32), texts=texts, meta=inner_meta)
        analyses = analyses_by_step(probe, n)
    raw = label.get("raw_scores")
    scores = [None] * n if raw is None or len(raw) != n else [float(s) for s in raw]
    relabel_meta = info.get("relabel") or {}
    simulated = bool(label.get("simulated") or relabel_meta.get("simulated"))
    original = rec.extra.get("original_rewards")
    labels = rec.extra.get("lvlm_labels")
    progress = np.asarray(rec.progress).tolist()
    steps = []
    for t in range(n):
        steps.append({
            "step": t + 1,
            "action": rec.action_names[t],
            "error": rec.action_errors[t] if t < len(rec.action_errors) else "",
            "analysis": analyses[t],
            "score": scores[t],
            "label": None if labels is None else float(labels[t]),
            "reward": float(rec.rewards[t]),
            "original_reward": None if original is None else float(original[t]),
            "progress": (int(progress[t]), int(progress[t + 1])) if len(progress) == n + 1 else None,
        })
    assert rec.frames is not None
    return {
        "dataset": ds.id,
        "episode": episode,
        "instruction": rec.instruction,
        "task": rec.task,
        "policy": rec.policy,
        "success": rec.success,
        "status": rec.extra.get("label_status"),
        "reason": label.get("reason", ""),
        "labeler": (relabel_meta.get("labeler") or {}).get("type"),
        "lvlm": _display_spec(str(relabel_meta["lvlm"])) if relabel_meta.get("lvlm") else None,
        "lam": (relabel_meta.get("parameters") or {}).get("lam"),
        "simulated": simulated,
        "relabeled": bool(label),
        "texts": texts,
        "frames": rec.frames,
        "steps": steps,
        "return": float(np.sum(rec.rewards)),
    }


def _header_lines(view: dict[str, Any]) -> list[str]:
    sim = f" {SIM_NOTE}" if view["simulated"] else ""
    task = view["task"]
    lines = [
        f"{view['dataset']} - episode {view['episode']}: {len(view['steps'])} steps, "
        f"{'success' if view['success'] else 'no success'}, behaviour policy {view['policy'] or '?'}",
        f"Goal: {view['instruction']}",
        f"Task: {task.get('task_type', '?')}, {task.get('n_subtasks', '?')} sub-tasks",
    ]
    if view["relabeled"]:
        status = view["status"] or "?"
        why = f" - {view['reason']}" if view["reason"] else ""
        lam = f", lam {view['lam']:g}" if isinstance(view.get("lam"), (int, float)) else ""
        lines.append(f"Labels: {view['labeler'] or '?'} by {view['lvlm'] or '-'}{lam}; status {status}{why}; "
                     f"return {view['return']:.2f}{sim}")
    else:
        lines.append("Not relabeled: rewards as collected (run `rgvlm relabel` for LVLM labels)")
    return lines


def _card_lines(s: dict[str, Any], simulated: bool) -> list[str]:
    score = "-" if s["score"] is None else f"{s['score']:g}/10"
    prog = "-" if s["progress"] is None else f"{s['progress'][0]}->{s['progress'][1]}"
    out = [f"score {score}   reward {_f(s['reward'])}", f"orig {_f(s['original_reward'])}   progress {prog}"]
    if s["error"]:
        out.append(f"invalid action: {s['error']}")
    return out


def _png_b64(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, np.uint8)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(view: dict[str, Any]) -> str:
    """A self-contained HTML page (frames inlined as base64 PNG)."""
    e = html.escape
    sim = view["simulated"]
    head = "".join(f"<p>{e(line)}</p>" for line in _header_lines(view)[1:])
    cards = [
        f'<div class="card"><img src="data:image/png;base64,{_png_b64(view["frames"][0])}" alt="start">'
        f'<div class="act">Start</div><div class="txt">{e(view["instruction"])}</div></div>'
    ]
    for s in view["steps"]:
        lines = "".join(f"<div class='num'>{e(x)}</div>" for x in _card_lines(s, sim))
        cls = "card bad" if s["error"] else "card"
        cards.append(
            f'<div class="{cls}"><img src="data:image/png;base64,{_png_b64(view["frames"][s["step"]])}" alt="after step {s["step"]}">'
            f'<div class="act">Step {s["step"]}: {e(s["action"])}</div>{lines}'
            f'<div class="txt">{e(s["analysis"]) or "<i>no analysis</i>"}</div></div>'
        )
    answers = "".join(
        f"<details><summary>{e(str(t.get('stage', '?')))} (part {int(t.get('part', 0)) + 1})</summary><pre>{e(str(t.get('text', '')))}</pre></details>"
        for t in view["texts"]
    )
    banner = '<p class="sim">Labels from the simulated LVLM (sim): simulated from ground truth, not a model\'s judgement.</p>' if sim else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(view['dataset'])} episode {view['episode']}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }}
h1 {{ font-size: 1.2em; }} p {{ margin: .2em 0; }} .sim {{ color: #a33; font-weight: bold; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 10px; margin-top: 1em; }}
.card {{ width: 240px; background: #fff; border: 1px solid #ccc; border-radius: 6px; padding: 8px; }}
.card.bad {{ border-color: #d55; }} .card img {{ width: 224px; height: 224px; image-rendering: pixelated; }}
.act {{ font-weight: bold; margin: 4px 0; }} .num {{ font-family: monospace; font-size: .9em; }}
.txt {{ font-size: .9em; margin-top: 4px; }} pre {{ white-space: pre-wrap; background: #f0f0f0; padding: 6px; }}
</style></head><body>
<h1>{e(_header_lines(view)[0])}</h1>{head}{banner}
<div class="grid">{''.join(cards)}</div>
<h2>LVLM answers</h2>{answers or '<p>none (not relabeled by an LVLM)</p>'}
</body></html>
"""


def _font(size: int, bold: bool = False) -> Any:
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/Library/Fonts", "C:/Windows/Fonts"):
        path = Path(folder) / name
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _wrap(text: str, font: Any, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels."""
    out: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split():
            cand = f"{line} {word}".strip()
            if font.getlength(cand) <= width or not line:
                line = cand
            else:
                out.append(line)
                line = word
        out.append(line)
    return out


def render_png(view: dict[str, Any], *, columns: int = 4, frame_size: int = 224) -> PILImage.Image:
    """A contact sheet: a header, then one card per frame (start, then after each step) in rows."""
    from PIL import Image, ImageDraw

    if columns < 1 or frame_size < 32:
        raise ValueError(f"Expect columns >= 1 and frame_size >= 32, actually: {columns}, {frame_size}")
    sim = view["simulated"]
    f_head, f_bold, f_text, f_small = _font(18, True), _font(14, True), _font(13), _font(12)
    pad, card_w = 10, frame_size + 16
    inner = card_w - 12
    max_lines = 9

    cards: list[tuple[np.ndarray, str, list[str], list[str], bool]] = [
        (view["frames"][0], "Start", [], _wrap("Goal: " + view["instruction"], f_text, inner)[:max_lines], False)
    ]
    for s in view["steps"]:
        analysis = _wrap(s["analysis"] or "(no analysis)", f_text, inner)
        if len(analysis) > max_lines:
            analysis = [*analysis[: max_lines - 1], analysis[max_lines - 1].rstrip(".") + " ..."]
        title = _wrap(f"{s['step']}. {s['action']}", f_bold, inner)[:2]
        cards.append((view["frames"][s["step"]], "\n".join(title), _card_lines(s, sim), analysis, bool(s["error"])))
    line_h = 16
    n_lines = max(len(c[3]) for c in cards)
    card_h = 8 + frame_size + 6 + 2 * 18 + 3 * line_h + 4 + n_lines * line_h + 8
    header = _header_lines(view)
    header_wrapped = [w for line in header for w in _wrap(line, f_text, columns * (card_w + pad) - pad)]
    head_h = 14 + 24 + (len(header_wrapped) - 1) * 18 + (22 if sim else 0) + 8
    rows = math.ceil(len(cards) / columns)
    width = pad + columns * (card_w + pad)
    height = head_h + rows * (card_h + pad) + pad
    img = Image.new("RGB", (width, height), (250, 250, 250))
    d = ImageDraw.Draw(img)
    y = 12
    d.text((pad, y), header_wrapped[0], font=f_head, fill=(20, 20, 20))
    y += 26
    for line in header_wrapped[1:]:
        d.text((pad, y), line, font=f_text, fill=(40, 40, 40))
        y += 18
    if sim:
        d.text((pad, y), "Labels from the simulated LVLM (sim): simulated from ground truth, not a model's judgement.",
               font=f_bold, fill=(170, 40, 40))
    for k, (frame, title, nums, analysis, bad) in enumerate(cards):
        x0 = pad + (k % columns) * (card_w + pad)
        y0 = head_h + (k // columns) * (card_h + pad)
        d.rounded_rectangle((x0, y0, x0 + card_w, y0 + card_h), radius=6, fill=(255, 255, 255),
                            outline=(210, 80, 80) if bad else (190, 190, 190), width=2 if bad else 1)
        fr = Image.fromarray(np.asarray(frame, np.uint8))
        if fr.size != (frame_size, frame_size):
            fr = fr.resize((frame_size, frame_size), Image.Resampling.LANCZOS)
        img.paste(fr, (x0 + 8, y0 + 8))
        y = y0 + 8 + frame_size + 6
        for tl in title.split("\n"):
            d.text((x0 + 6, y), tl, font=f_bold, fill=(20, 20, 20))
            y += 18
        if "\n" not in title:
            y += 18
        for line in nums:
            d.text((x0 + 6, y), line, font=f_small, fill=(160, 40, 40) if line.startswith("invalid") else (30, 70, 140))
            y += line_h
        y += (3 - len(nums)) * line_h + 4
        for line in analysis:
            d.text((x0 + 6, y), line, font=f_text, fill=(50, 50, 50))
            y += line_h
    return img


def run(args: argparse.Namespace) -> int:
    view = episode_view(args.dataset_id, args.episode)
    outs = args.out or [f"{view['dataset'].split('/')[-1]}-episode-{args.episode}.html"]
    for out in outs:
        suffix = Path(out).suffix.lower()
        if suffix not in (".html", ".htm", ".png"):
            raise ValueError(f"Expect --out to end in .html or .png, actually: {out!r}")
    for out in outs:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".png":
            render_png(view, columns=args.columns, frame_size=args.frame_size).save(path, optimize=True)
        else:
            path.write_text(render_html(view), encoding="utf-8")
        print(f"wrote {path}" + (f" {SIM_NOTE}" if view["simulated"] else ""))
    return 0


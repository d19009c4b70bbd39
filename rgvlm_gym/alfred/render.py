"""Egocentric frames of an ALFRED :class:`~rgvlm_gym.alfred.world.World`: what the agent sees where it stands.

Holds :class:`Renderer` (a cached, deterministic renderer), :func:`render_frame` (a shared default
renderer) and :data:`TEXT_MIN_SIZE`.

A frame has three bands: a header (the room, and at a place its receptacle type and which one the agent
faces), the view (the faced receptacle large with its contents; at the right, small, up to three of the
other receptacles in reach — the others of its type, then neighbours such as the sink beside a counter
(:meth:`World.places`), those showing something first — then ``+N more``), and a hand panel at the bottom (the held object, or an empty
hand). At the start (no place yet) the view is an overview of the room's receptacle types.

- Closed openable receptacles (cabinet, drawer, fridge, microwave, safe; a box is always closed) are drawn
  as closed doors and their contents are hidden. Movable receptacles show what they hold (an apple in a
  bowl on a counter). A sliced object is drawn as pieces, one group per run of slices.
- Every object type has its own shape and colour (``envs/render_style.json``; unlisted types get a shape
  and colour derived from a hash of the name). States are drawn as cues that survive 64 px: a red glow and
  tint for hot, blue for cold, a white rim and sparkle for clean, a yellow bulb and glow for a lamp that is
  on.
- At sizes >= :data:`TEXT_MIN_SIZE` the frame also carries short text: object names, the receptacle's name
  and badges (HOT, COLD, CLEAN, SLICED, ON, OFF, CLOSED), for vision-language models. Below it, shapes and
  colours only.

Frames are cached on ``(size, scene, world.view_key())`` (bounded LRU); a cache hit returns the same
read-only array. Sprites are drawn once per type, state and pixel size (supersampled with Pillow) and
composed with numpy, so a cache miss at 64 px costs a fraction of a millisecond.

    >>> from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
    >>> from rgvlm_gym.alfred.world import World
    >>> scene = SceneSpec("demo", "kitchen",
    ...     (ReceptacleSpec("CounterTop|1", "CounterTop"), ReceptacleSpec("Fridge|1", "Fridge")),
    ...     (ObjectSpec("Apple|1", "Apple", "CounterTop|1"),))
    >>> w = World(scene)
    >>> w.step("GotoLocation", "CounterTop")
    >>> frame = render_frame(w, 64)
    >>> frame.shape, frame.dtype, frame.flags.writeable
    ((64, 64, 3), dtype('uint8'), False)
    >>> render_frame(w, 64) is frame                 # cached: same state, same array
    True
    >>> w.step("PickupObject", "Apple")
    >>> bool((render_frame(w, 64) != frame).any())   # the apple moved to the hand panel
    True
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageFont

from rgvlm_gym.alfred.ontology import data_dir
from rgvlm_gym.alfred.world import World

__all__ = ["MAX_SIZE", "MIN_SIZE", "TEXT_MIN_SIZE", "Renderer", "render_frame"]

MIN_SIZE = 32
MAX_SIZE = 512
TEXT_MIN_SIZE = 128
"""Frames at least this large carry text labels; smaller frames are shapes and colours only."""

RGB = tuple[int, int, int]
_SS = 4  # supersampling factor for sprites
_STATES = ("hot", "cold", "clean", "on")
_BADGES: dict[str, tuple[str, RGB]] = {
    "hot": ("HOT", (211, 47, 47)),
    "cold": ("COLD", (21, 101, 192)),
    "clean": ("CLEAN", (0, 121, 107)),
    "sliced": ("SLICED", (121, 85, 72)),
    "on": ("ON", (230, 145, 0)),
    "off": ("OFF", (97, 97, 97)),
    "closed": ("CLOSED", (55, 71, 79)),
}
_HALO: dict[str, RGB] = {
    "hot": (255, 64, 16),
    "cold": (30, 136, 255),
    "clean": (255, 255, 255),
    "on": (255, 235, 59),
}
_TINT: dict[str, RGB] = {"hot": (255, 40, 0), "cold": (60, 150, 255)}
_HASH_SHAPES: tuple[list[Any], ...] = (
    [["ellipse", [0.1, 0.1, 0.9, 0.9], "base"]],
    [["rect", [0.14, 0.14, 0.86, 0.86], "base"]],
    [["poly", [0.5, 0.06, 0.94, 0.9, 0.06, 0.9], "base"]],
    [["poly", [0.5, 0.04, 0.96, 0.5, 0.5, 0.96, 0.04, 0.5], "base"]],
    [["poly", [0.28, 0.08, 0.72, 0.08, 0.94, 0.5, 0.72, 0.92, 0.28, 0.92, 0.06, 0.5], "base"]],
    [["rect", [0.36, 0.04, 0.64, 0.96], "base"], ["rect", [0.04, 0.36, 0.96, 0.64], "base"]],
)
_HAND_PARTS: list[Any] = [
    ["rect", [0.22, 0.36, 0.78, 0.98], "base"],
    ["rect", [0.22, 0.1, 0.34, 0.5], "base"],
    ["rect", [0.36, 0.02, 0.48, 0.46], "base"],
    ["rect", [0.5, 0.04, 0.62, 0.46], "base"],
    ["rect", [0.64, 0.12, 0.76, 0.5], "base"],
    ["poly", [0.78, 0.62, 0.96, 0.4, 0.99, 0.5, 0.78, 0.86], "base"],
]
_HAND_STYLE = {"color": "#f1c27d", "parts": _HAND_PARTS}
_INK: RGB = (33, 33, 33)
_WHITE: RGB = (250, 250, 250)
_HAND_BG: RGB = (58, 62, 70)


# -- style ---------------------------------------------------------------------------------------------
def _rgb(color: str) -> RGB:
    r, g, b = ImageColor.getrgb(color)[:3]
    return (r, g, b)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _digest(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big")


@cache
def _style() -> dict[str, Any]:
    return json.loads((data_dir() / "render_style.json").read_text())


@cache
def _object_style(obj_type: str) -> dict[str, Any]:
    spec = _style()["objects"].get(obj_type)
    if spec is not None:
        return spec
    h = _digest(obj_type)
    hue, light = (h % 360) / 360.0, 0.42 + ((h >> 9) % 3) * 0.1
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.7)
    color = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return {"color": color, "parts": _HASH_SHAPES[(h >> 16) % len(_HASH_SHAPES)]}


@cache
def _receptacle_style(rec_type: str, openable: bool) -> tuple[RGB, str]:
    spec = _style()["receptacles"].get(rec_type)
    if spec is not None:
        return _rgb(spec["color"]), spec["kind"]
    h = _digest(rec_type)
    r, g, b = colorsys.hls_to_rgb((h % 360) / 360.0, 0.5, 0.35)
    return (round(r * 255), round(g * 255), round(b * 255)), "container" if openable else "surface"


@cache
def _room_style(room: str) -> tuple[RGB, RGB, RGB]:
    spec = _style()["rooms"].get(room) or {"wall": "#eeeeee", "floor": "#bdbdbd", "header": "#616161"}
    return _rgb(spec["wall"]), _rgb(spec["floor"]), _rgb(spec["header"])


_NAMES = {"CounterTop": "countertop", "TVStand": "tv stand", "CD": "cd", "CellPhone": "cellphone"}


def _words(type_name: str) -> str:
    """``ButterKnife`` -> ``butter knife``; ``TVStand`` -> ``tv stand``."""
    if type_name in _NAMES:
        return _NAMES[type_name]
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", type_name).lower()


@cache
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


# -- sprites -------------------------------------------------------------------------------------------
class _Sprite:
    """An RGBA image ready for alpha blending onto a uint8 canvas (premultiplied, uint16)."""

    __slots__ = ("h", "inv", "pm", "w")

    def __init__(self, rgba: np.ndarray) -> None:
        a = rgba[..., 3:4].astype(np.uint16)
        self.pm = rgba[..., :3].astype(np.uint16) * a + 127
        self.inv = 255 - a
        self.h, self.w = rgba.shape[:2]

    @classmethod
    def from_image(cls, im: Image.Image) -> _Sprite:
        return cls(np.asarray(im.convert("RGBA")))


def _blit(canvas: np.ndarray, sp: _Sprite, x: int, y: int) -> None:
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + sp.w, W), min(y + sp.h, H)
    if x0 >= x1 or y0 >= y1:
        return
    reg = canvas[y0:y1, x0:x1]
    if x0 == x and y0 == y and x1 - x0 == sp.w and y1 - y0 == sp.h:
        pm, inv = sp.pm, sp.inv
    else:
        pm = sp.pm[y0 - y : y1 - y, x0 - x : x1 - x]
        inv = sp.inv[y0 - y : y1 - y, x0 - x : x1 - x]
    out = reg * inv
    out += pm
    out //= 255
    reg[...] = out


def _fill(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, color: RGB) -> None:
    canvas[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = color


def _draw_parts(
    draw: ImageDraw.ImageDraw,
    parts: Sequence[Any],
    box: tuple[float, float, float, float],
    colors: dict[str, RGB],
) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    side = min(w, h)
    ow = max(1, round(side * 0.045))

    def pts(c: Sequence[float]) -> list[tuple[float, float]]:
        return [(x0 + c[i] * w, y0 + c[i + 1] * h) for i in range(0, len(c), 2)]

    def col(name: str) -> RGB:
        return colors[name] if name in colors else _rgb(name)

    for part in parts:
        kind, coords, cname = (
            part[0],
            part[1],
            part[-1] if part[0] != "line" and part[0] != "ring" else part[2],
        )
        c = col(cname)
        edge = _mix(c, (0, 0, 0), 0.55)
        if kind == "ellipse":
            draw.ellipse(pts(coords), fill=c, outline=edge, width=ow)
        elif kind == "rect":
            draw.rounded_rectangle(pts(coords), radius=side * 0.05, fill=c, outline=edge, width=ow)
        elif kind == "poly":
            draw.polygon(pts(coords), fill=c, outline=edge, width=ow)
        elif kind == "chord":
            draw.chord(pts(coords), part[2], part[3], fill=c, outline=edge, width=ow)
        elif kind == "line":
            lw = max(1, round(part[3] * side))
            p = pts(coords)
            draw.line(p, fill=edge, width=lw + 2 * ow)
            for q in (p[0], p[-1]):
                r = (lw + 2 * ow) / 2
                draw.ellipse((q[0] - r, q[1] - r, q[0] + r, q[1] + r), fill=edge)
            draw.line(p, fill=c, width=lw)
        elif kind == "ring":
            lw = max(1, round(part[3] * side))
            draw.ellipse(pts(coords), outline=edge, width=lw + 2 * ow)
            b = pts(coords)
            draw.ellipse((b[0][0] + ow, b[0][1] + ow, b[1][0] - ow, b[1][1] - ow), outline=c, width=lw)
        else:  # pragma: no cover - style file validated by tests
            raise ValueError(f"render_style.json: unknown part kind {kind!r}")


def _halo(alpha: Image.Image, radius: float, gain: float) -> Image.Image:
    blurred = alpha.filter(ImageFilter.GaussianBlur(radius))
    return blurred.point(lambda v: min(255, int(v * gain)))


def _sparkle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    star = [(cx, cy - r), (cx + r * 0.25, cy - r * 0.25), (cx + r, cy), (cx + r * 0.25, cy + r * 0.25),
            (cx, cy + r), (cx - r * 0.25, cy + r * 0.25), (cx - r, cy), (cx - r * 0.25, cy - r * 0.25)]  # fmt: skip
    draw.polygon(star, fill=(255, 255, 255, 255), outline=(0, 96, 100, 255), width=max(1, round(r * 0.16)))


def _make_object_sprite(obj_type: str, states: frozenset[str], pieces: int, px: int, lamp: bool) -> _Sprite:
    """Draw one object at ``px`` pixels: its shape, cut into ``pieces`` if sliced, with state cues."""
    style = _HAND_STYLE if obj_type == "_hand" else _object_style(obj_type)
    n = px * _SS
    base = _rgb(style["color"])
    colors = {
        "base": base,
        "accent": _rgb(style.get("accent", style["color"])),
        "dark": _mix(base, (0, 0, 0), 0.35),
        "light": _mix(base, (255, 255, 255), 0.5),
        "bulb": (255, 238, 88) if "on" in states else (120, 120, 120),
    }
    for s in ("hot", "cold"):
        if s in states:
            colors = {k: _mix(v, _TINT[s], 0.3) for k, v in colors.items()}
    im = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    m = n * 0.1
    _draw_parts(ImageDraw.Draw(im), style["parts"], (m, m, n - m, n - m), colors)
    if pieces:
        im = _cut(im, pieces, m)
    alpha = im.getchannel("A")
    layers = []
    for s in ("hot", "cold", "clean", "on"):
        if s in states and (s != "on" or lamp):
            radius, gain = (n * 0.09, 2.6) if s != "clean" else (n * 0.035, 3.5)
            layer = Image.new("RGBA", (n, n), (*_HALO[s], 255))
            layer.putalpha(_halo(alpha, radius, gain))
            layers.append(layer)
    out = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    for layer in layers:
        out = Image.alpha_composite(out, layer)
    out = Image.alpha_composite(out, im)
    if "clean" in states:
        d = ImageDraw.Draw(out)
        _sparkle(d, n * 0.8, n * 0.2, n * 0.17)
        _sparkle(d, n * 0.2, n * 0.78, n * 0.1)
    small = out.convert("RGBa").resize((px, px), Image.Resampling.LANCZOS).convert("RGBA")
    return _Sprite.from_image(small)


def _cut(im: Image.Image, pieces: int, m: float) -> Image.Image:
    """Cut a shape into vertical pieces with gaps (one piece: the middle slice)."""
    n = im.width
    lo, hi = m, n - m
    if pieces == 1:
        piece = im.crop((round(lo + (hi - lo) * 0.36), 0, round(lo + (hi - lo) * 0.64), n))
        out = Image.new("RGBA", (n, n), (0, 0, 0, 0))
        out.paste(piece, ((n - piece.width) // 2, 0), piece)
        return out
    k = min(pieces, 4)
    edges = [round(lo + (hi - lo) * i / k) for i in range(k + 1)]
    gap = round(n * 0.09)
    wide = Image.new("RGBA", (n + gap * (k - 1), n), (0, 0, 0, 0))
    for i in range(k):
        strip = im.crop((edges[i], 0, edges[i + 1], n))
        wide.paste(strip, (edges[i] + gap * i, round(n * 0.03 * (1 if i % 2 else -1))), strip)
    return wide.resize((n, n), Image.Resampling.BILINEAR)


def _make_panel(rec_type: str, openable: bool, closed: bool, w: int, h: int) -> _Sprite:
    """Draw a receptacle body of ``w`` x ``h`` pixels (surfaces, seats, basins, containers, ...)."""
    color, kind = _receptacle_style(rec_type, openable)
    ss = 2
    W, H = w * ss, h * ss
    im = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    dark, light = _mix(color, (0, 0, 0), 0.45), _mix(color, (255, 255, 255), 0.35)
    edge = _mix(color, (0, 0, 0), 0.6)
    ow = max(1, round(min(W, H) * 0.025))
    if closed or kind == "container":
        d.rounded_rectangle((0, 0, W - 1, H - 1), radius=min(W, H) * 0.06, fill=color, outline=edge, width=ow)
        inset = max(2, round(min(W, H) * 0.07))
        inner = (inset, inset, W - 1 - inset, H - 1 - inset)
        if closed:
            doors = 2 if rec_type == "Fridge" else 1
            for i in range(doors):
                y0 = inner[1] + (inner[3] - inner[1]) * i * 0.4
                y1 = inner[1] + (inner[3] - inner[1]) * (0.4 if doors == 2 and i == 0 else 1.0)
                d.rectangle(
                    (inner[0], y0 + (ow if i else 0), inner[2], y1), fill=light, outline=edge, width=ow
                )
                hx = inner[2] - (inner[2] - inner[0]) * 0.12
                hy0, hy1 = y0 + (y1 - y0) * 0.3, y0 + (y1 - y0) * 0.7
                d.line((hx, hy0, hx, hy1), fill=edge, width=max(2, round(min(W, H) * 0.05)))
            if rec_type == "Microwave":
                d.rectangle(
                    (
                        inner[0] + inset,
                        inner[1] + inset,
                        inner[0] + (inner[2] - inner[0]) * 0.7,
                        inner[3] - inset,
                    ),
                    fill=(30, 40, 45),
                )
        else:
            d.rectangle(inner, fill=_mix(color, (20, 20, 20), 0.7), outline=edge, width=ow)
    elif kind in ("surface", "appliance"):
        top, bot = round(H * 0.76), round(H * (0.86 if kind == "surface" else 0.98))
        if kind == "surface":
            for lx in (0.05, 0.89):
                d.rectangle((W * lx, bot, W * (lx + 0.06), H - 1), fill=dark)
        d.rectangle((0, top, W - 1, bot), fill=color, outline=edge, width=ow)
        if kind == "appliance":
            for cx in (0.3, 0.7):
                r = min(W * 0.12, (bot - top) * 0.35)
                cy = (top + bot) / 2
                d.ellipse((W * cx - r, cy - r, W * cx + r, cy + r), outline=(230, 80, 30), width=max(1, ow))
    elif kind == "seat":
        d.rounded_rectangle(
            (0, H * 0.05, W - 1, H * 0.62), radius=min(W, H) * 0.08, fill=dark, outline=edge, width=ow
        )
        d.rounded_rectangle(
            (0, H * 0.56, W - 1, H * 0.9), radius=min(W, H) * 0.06, fill=color, outline=edge, width=ow
        )
        for lx in (0.06, 0.88):
            d.rectangle((W * lx, H * 0.9, W * (lx + 0.06), H - 1), fill=edge)
    elif kind == "basin":
        d.rounded_rectangle(
            (0, H * 0.2, W - 1, H - 1), radius=min(W, H) * 0.2, fill=color, outline=edge, width=ow
        )
        d.ellipse(
            (W * 0.06, H * 0.27, W * 0.94, H * 0.93),
            fill=_mix(color, (40, 60, 70), 0.45),
            outline=edge,
            width=ow,
        )
    elif kind == "holder":
        d.rectangle((W * 0.45, 0, W * 0.55, H * 0.14), fill=edge)
        d.rounded_rectangle(
            (W * 0.05, H * 0.12, W * 0.95, H * 0.2), radius=H * 0.04, fill=color, outline=edge, width=ow
        )
    else:  # floor
        d.rectangle((0, H * 0.55, W - 1, H - 1), fill=color)
        for i in range(1, 4):
            d.line((0, H * (0.55 + 0.11 * i), W - 1, H * (0.55 + 0.11 * i)), fill=dark, width=ow)
    return _Sprite.from_image(im.resize((w, h), Image.Resampling.LANCZOS))


def _content_box(kind: str, closed: bool) -> tuple[float, float, float, float, bool]:
    """Where contents sit in a panel, as fractions (x0, y0, x1, y1), and whether they rest on its floor."""
    if closed:
        return (0.0, 0.0, 0.0, 0.0, False)
    return {
        "container": (0.1, 0.1, 0.9, 0.9, True),
        "surface": (0.03, 0.02, 0.97, 0.78, True),
        "appliance": (0.03, 0.02, 0.97, 0.78, True),
        "seat": (0.06, 0.1, 0.94, 0.74, True),
        "basin": (0.14, 0.12, 0.86, 0.86, True),
        "holder": (0.1, 0.18, 0.9, 0.98, False),
        "floor": (0.04, 0.04, 0.96, 0.94, True),
    }[kind]


class _LRU:
    """A small bounded mapping, least recently used entry evicted first."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        v = self.data.get(key)
        if v is not None:
            self.data.move_to_end(key)
        return v

    def put(self, key: Hashable, value: Any) -> None:
        self.data[key] = value
        if len(self.data) > self.maxsize:
            self.data.popitem(last=False)


@dataclass(frozen=True)
class _Item:
    """One thing to draw: an object (or a run of slices) and what it holds."""

    type: str
    flags: frozenset[str]
    pieces: int  # 0: whole; k: k slices
    children: tuple[_Item, ...]
    closed: bool


# -- the renderer --------------------------------------------------------------------------------------
class Renderer:
    """Deterministic egocentric frames of a :class:`World`, cached on what is visible.

    Args:
        cache_size: how many frames the LRU cache keeps (per renderer).

    Example:
        >>> from rgvlm_gym.alfred.scene import ObjectSpec, ReceptacleSpec, SceneSpec
        >>> from rgvlm_gym.alfred.world import World
        >>> scene = SceneSpec("demo", "kitchen", (ReceptacleSpec("Microwave|1", "Microwave"),),
        ...     (ObjectSpec("Egg|1", "Egg", "Microwave|1"),))
        >>> w = World(scene)
        >>> r = Renderer(cache_size=16)
        >>> start = r.render(w, 224)          # the room overview
        >>> w.step("GotoLocation", "Microwave")
        >>> r.render(w, 224).shape, bool((r.render(w, 224) != start).any())
        ((224, 224, 3), True)
    """

    def __init__(self, cache_size: int = 4096) -> None:
        if cache_size < 1:
            raise ValueError(f"Expect `cache_size` to be a positive int, actually: {cache_size!r}")
        self._frames = _LRU(cache_size)
        self._sprites = _LRU(16384)
        self._scenes: dict[int, tuple[Any, int, frozenset[str]]] = {}
        self._sigs: dict[Hashable, int] = {}
        self.hits = 0
        self.misses = 0

    # -- public --------------------------------------------------------------------------------------
    def render(self, world: World, size: int = 64) -> np.ndarray:
        """The frame of ``world`` as a read-only uint8 array of shape ``(size, size, 3)``."""
        if (
            not isinstance(size, (int, np.integer))
            or isinstance(size, bool)
            or not MIN_SIZE <= size <= MAX_SIZE
        ):
            raise ValueError(f"Expect `size` to be an int in [{MIN_SIZE}, {MAX_SIZE}], actually: {size!r}")
        size = int(size)
        sig, opened = self._scene_info(world)
        key = (size, sig, world.view_key())
        frame = self._frames.get(key)
        if frame is not None:
            self.hits += 1
            return frame
        self.misses += 1
        frame = _Frame(self, world, size, opened).draw()
        frame.flags.writeable = False
        self._frames.put(key, frame)
        return frame

    def cache_clear(self) -> None:
        """Forget every cached frame and sprite."""
        self._frames.data.clear()
        self._sprites.data.clear()
        self.hits = self.misses = 0

    # -- internals -----------------------------------------------------------------------------------
    def _scene_info(self, world: World) -> tuple[int, frozenset[str]]:
        """A small id for what a frame shows beyond ``view_key`` (room, place types, open receptacles)."""
        scene = world.scene
        ent = self._scenes.get(id(scene))
        if ent is None or ent[0] is not scene:
            opened = frozenset(r.id for r in scene.receptacles if r.is_open)
            sig_key = (scene.room, tuple((t, len(ids)) for t, ids in world.members.items()), opened)
            sig = self._sigs.setdefault(sig_key, len(self._sigs))
            if len(self._scenes) > 1024:
                self._scenes.clear()
            ent = (scene, sig, opened)
            self._scenes[id(scene)] = ent
        return ent[1], ent[2]

    def sprite(self, key: tuple[Any, ...]) -> _Sprite:
        sp = self._sprites.get(key)
        if sp is None:
            kind = key[0]
            if kind == "obj":
                sp = _make_object_sprite(*key[1:])
            elif kind == "panel":
                sp = _make_panel(*key[1:])
            elif kind == "text":
                sp = _make_text(*key[1:])
            else:
                sp = _make_badge(*key[1:])
            self._sprites.put(key, sp)
        return sp


def _spaced(text: str) -> str:
    return text.replace(" ", "  ")  # the default font's spaces are too narrow to read at small sizes


def _make_text(text: str, px: int, color: RGB) -> _Sprite:
    font = _font(px)
    text = _spaced(text)
    x0, y0, x1, y1 = font.getbbox(text)
    if color != _INK:  # light text sits on dark bands
        im = Image.new("RGBA", (max(1, x1), px + max(2, px // 3)), (*color, 0))
        mask = Image.new("L", im.size, 0)
        ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=font)
        im.putalpha(mask)
        return _Sprite.from_image(im)
    # dark text gets a light rim, legible on any receptacle or wall
    im = Image.new("RGBA", (max(1, x1) + 2, px + max(2, px // 3) + 2), (255, 255, 255, 0))
    ImageDraw.Draw(im).text(
        (1, 1), text, fill=(*color, 255), font=font, stroke_width=1, stroke_fill=(255, 255, 255, 200)
    )
    return _Sprite.from_image(im)


def _make_badge(text: str, px: int, color: RGB) -> _Sprite:
    font = _font(px)
    x0, y0, x1, y1 = font.getbbox(text)
    pad = max(2, px // 4)
    w, h = x1 + 2 * pad, px + pad
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle(
        (0, 0, w - 1, h - 1), radius=pad, fill=(*color, 235), outline=(255, 255, 255, 255), width=1
    )
    d.text((pad, (h - (y1 + y0)) / 2), text, fill=(255, 255, 255, 255), font=font)
    return _Sprite.from_image(im)


@lru_cache(maxsize=1 << 16)
def _text_width(text: str, px: int) -> float:
    return _font(px).getlength(_spaced(text))


@lru_cache(maxsize=1 << 16)
def _wrap(text: str, width: int, px: int, max_lines: int) -> tuple[str, ...]:
    """Greedy word wrap of ``text`` into at most ``max_lines`` lines of ``width`` pixels (ellipsis if cut)."""
    lines: list[str] = []
    words = text.split()
    cur = ""
    while words:
        cand = f"{cur} {words[0]}".strip()
        if _text_width(cand, px) <= width:
            cur = cand
            words.pop(0)
            continue
        if not cur:  # one word wider than the line: cut it
            word = words.pop(0)
            while len(word) > 1 and _text_width(word + ".", px) > width:
                word = word[:-1]
            cur = word + "."
        lines.append(cur)
        cur = ""
        if len(lines) == max_lines:
            break
    if cur and len(lines) < max_lines:
        lines.append(cur)
    if words and lines:
        last = lines[-1]
        while last and _text_width(last + "..", px) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + ".."
    return tuple(lines)


def _bigger_then_wider(layout: tuple[int, int, int, int]) -> tuple[int, int]:
    """Grid layouts (sprite size, columns, rows, shown) by size, then fewer columns (wider labels)."""
    return layout[0], -layout[1]


class _Frame:
    """Lays out and composes one frame (a cache miss)."""

    def __init__(self, renderer: Renderer, world: World, size: int, opened: frozenset[str]) -> None:
        self.r, self.w, self.S, self.opened = renderer, world, size, opened
        self.onto = world.onto
        self.text = size >= TEXT_MIN_SIZE
        self.fpx = max(9, round(size * 0.045))  # label font size
        self.bpx = max(8, round(size * 0.036))  # badge font size
        self.pad = max(1, round(size * 0.015))
        self.canvas = np.empty((size, size, 3), np.uint8)

    # -- helpers -------------------------------------------------------------------------------------
    def put_text(
        self, text: str, x: int, y: int, px: int, color: RGB = _INK, center_w: int | None = None
    ) -> int:
        sp = self.r.sprite(("text", text, px, color))
        if center_w is not None:
            x += (center_w - sp.w) // 2
        _blit(self.canvas, sp, x, y)
        return sp.w

    def item(self, ident: str) -> _Item:
        w = self.w
        t = w.obj_type[ident]
        closed = t in self.onto.openable
        kids = () if closed else self.items(w.children[ident])
        return _Item(t, frozenset(w.flags[ident]), 0, kids, closed)

    def items(self, ids: Sequence[str]) -> tuple[_Item, ...]:
        """Items to draw for a list of object ids; runs of identical slices become one item."""
        out: list[_Item] = []
        w = self.w
        for ident in ids:
            flags = w.flags[ident]
            if "sliced" in flags and not w.children[ident]:
                t, fl = w.obj_type[ident], frozenset(flags)
                if out and out[-1].pieces and out[-1].type == t and out[-1].flags == fl:
                    prev = out[-1]
                    out[-1] = _Item(t, fl, prev.pieces + 1, (), False)
                    continue
                out.append(_Item(t, fl, 1, (), False))
                continue
            out.append(self.item(ident))
        return tuple(out)

    def label(self, it: _Item) -> str:
        name = _words(it.type)
        if it.pieces:
            name = f"{it.pieces} {name} slices" if it.pieces > 1 else f"{name} slice"
        if it.children:
            inner = ", ".join(self.label(c) for c in it.children)
            name = f"{name} with {inner}"
        return name

    def badges(self, it: _Item, lamp: bool) -> list[str]:
        out = [s for s in ("hot", "cold", "clean") if s in it.flags]
        if it.pieces:
            out.append("sliced")
        if lamp:
            out.append("on" if "on" in it.flags else "off")
        if it.closed:
            out.append("closed")
        return out

    # -- drawing -------------------------------------------------------------------------------------
    def draw_item(self, it: _Item, x: int, y: int, s: int, depth: int = 0, badges: bool = True) -> None:
        lamp = it.type in self.onto.toggleable
        states = frozenset(f for f in it.flags if f in _STATES)
        _blit(self.canvas, self.r.sprite(("obj", it.type, states, it.pieces, s, lamp)), x, y)
        if it.children and depth < 2 and s >= 10:
            self.grid(it.children, x + round(s * 0.18), y + round(s * 0.06), round(s * 0.64), round(s * 0.56),
                      floor=True, depth=depth + 1, labels=False, smax=round(s * 0.5))  # fmt: skip
        if self.text and badges and depth == 0:
            by = y
            for b in self.badges(it, lamp):
                text, color = _BADGES[b]
                sp = self.r.sprite(("badge", text, self.bpx, color))
                _blit(self.canvas, sp, x, by)
                by += sp.h + 1

    def grid(self, items: Sequence[_Item], x: int, y: int, w: int, h: int, *, floor: bool, depth: int = 0,
             labels: bool, smax: int) -> None:  # fmt: skip
        """Lay ``items`` out in a grid in the box, as large as fits (at most ``smax``), ``+N`` when crowded."""
        n = len(items)
        if n == 0 or w < 3 or h < 3:
            return
        lab_h = round(self.fpx * 1.15) * 2 if labels and self.text else 0
        min_s = max(4, round(self.S * (0.09 if depth == 0 else 0.05)))
        best = (0, 1, 1, 1)
        for shown in range(n, 0, -1):  # show fewer things (and "+N") rather than shrink below min_s
            cells = shown + (1 if shown < n else 0)
            options = [
                (
                    int(min(w / cols, h / math.ceil(cells / cols) - lab_h, smax)),
                    cols,
                    math.ceil(cells / cols),
                    shown,
                )
                for cols in range(1, cells + 1)
            ]
            layout = max(options, key=_bigger_then_wider)
            best = max(best, layout, key=_bigger_then_wider) if shown == 1 else layout
            if layout[0] >= min_s:
                break
        s, cols, rows, shown = best
        if s < 3:
            return
        cells = shown + (1 if shown < n else 0)
        cw = w / cols
        ch = min(h / rows, s + lab_h * 3 // 2 + max(1, s // 8))  # room for a third label line if it fits
        y_top = y + (h - ch * rows if floor else (h - ch * rows) / 2)
        px, names = self.fpx, [self.label(it) for it in items[:shown]] if lab_h else []
        while px > 8 and any(_text_width(word, px) > cw - 2 for name in names for word in name.split()):
            px -= 1  # a smaller font before cutting words
        for i in range(cells):
            r, c = divmod(i, cols)
            cx = round(x + c * cw + (cw - s) / 2)
            cy = round(y_top + r * ch + (ch - lab_h - s))
            if i == shown:
                self.more(n - shown, round(x + c * cw), cy, round(cw), s)
                continue
            self.draw_item(items[i], cx, cy, s, depth)
            if lab_h:
                ly = cy + s
                # a third line where the row pitch leaves room (the last row: into the receptacle below)
                lines = 3 if r == rows - 1 else max(2, int((ch - s) // round(px * 1.1)))
                for line in _wrap(names[i], max(8, round(cw) - 2), px, lines):
                    self.put_text(line, round(x + c * cw), ly, px, center_w=round(cw))
                    ly += round(px * 1.1)

    def more(self, count: int, x: int, y: int, w: int, h: int) -> None:
        """``+N more``: text at large sizes, a row of dots (one per hidden thing, up to 8) at small sizes."""
        if self.text:
            text = f"+{count} more" if _text_width(f"+{count} more", self.fpx) <= w else f"+{count}"
            self.put_text(text, x, y + h // 2 - self.fpx // 2, self.fpx, center_w=w)
            return
        d = max(2, self.S // 32)
        k = min(count, 8, max(1, w // (d + 1)))
        x0 = x + (w - k * (d + 1)) // 2
        for i in range(k):
            _fill(self.canvas, x0 + i * (d + 1), y + h // 2, x0 + i * (d + 1) + d, y + h // 2 + d, _INK)

    def shows_contents(self, rid: str) -> bool:
        return bool(self.w.children[rid]) and (
            self.w.rec_type[rid] not in self.onto.openable or rid in self.opened
        )

    def panel(self, rid: str, x: int, y: int, w: int, h: int, smax: int, labels: bool = True) -> None:
        """A receptacle and its visible contents in the box."""
        rtype = self.w.rec_type[rid]
        openable = rtype in self.onto.openable
        closed = openable and rid not in self.opened
        _, kind = _receptacle_style(rtype, openable)
        _blit(self.canvas, self.r.sprite(("panel", rtype, openable, closed, w, h)), x, y)
        if closed:
            if self.text:
                text, color = _BADGES["closed"]
                sp = self.r.sprite(("badge", text, self.fpx if labels else self.bpx, color))
                _blit(self.canvas, sp, x + (w - sp.w) // 2, y + (h - sp.h) // 2)
            return
        fx0, fy0, fx1, fy1, floor = _content_box("container" if kind == "container" else kind, False)
        self.grid(self.items(self.w.children[rid]), x + round(w * fx0), y + round(h * fy0), round(w * (fx1 - fx0)),
                  round(h * (fy1 - fy0)), floor=floor, labels=labels, smax=smax)  # fmt: skip

    # -- bands ---------------------------------------------------------------------------------------
    def draw(self) -> np.ndarray:
        S, w = self.S, self.w
        wall, floor_c, header = _room_style(w.scene.room)
        hdr = round(S * 0.1) if self.text else max(3, round(S * 0.07))
        hand = round(S * 0.2)
        c = self.canvas
        c[:] = wall
        _fill(c, 0, 0, S, hdr, header)
        mid0, mid1 = hdr, S - hand
        _fill(c, 0, mid0 + round((mid1 - mid0) * 0.8), S, mid1, floor_c)
        if w.location is None:
            self.overview(mid0, mid1, hdr)
        else:
            self.place(mid0, mid1, hdr)
        self.hand_panel(mid1)
        return c

    def header_text(self, text: str, hdr: int) -> None:
        px = max(9, round(hdr * 0.58))
        while px > 8 and _text_width(text, px) > self.S - 2 * self.pad:
            px -= 1
        self.put_text(text, self.pad * 2, (hdr - px) // 2 - max(1, px // 8), px, _WHITE)

    def overview(self, mid0: int, mid1: int, hdr: int) -> None:
        w, S = self.w, self.S
        if self.text:
            self.header_text(f"{_words(w.scene.room).upper()}: at the start (no receptacle)", hdr)
        types = list(w.members)
        n = len(types)
        if not n:
            return
        pad = self.pad * 2
        lab_h = round(self.fpx * 1.15) * 2 if self.text else 0
        x, y, W, H = pad, mid0 + pad, S - 2 * pad, mid1 - mid0 - 2 * pad
        cols = max(1, math.ceil(math.sqrt(n * W / max(H, 1))))
        rows = math.ceil(n / cols)
        cw, ch = W / cols, H / rows
        bw, bh = max(3, round(cw * 0.86)), max(3, round(ch - lab_h - ch * 0.1))
        for i, t in enumerate(types):
            r, col = divmod(i, cols)
            bx, by = round(x + col * cw + (cw - bw) / 2), round(y + r * ch)
            openable = t in self.onto.openable
            _blit(self.canvas, self.r.sprite(("panel", t, openable, openable, bw, bh)), bx, by)
            if lab_h:
                k = len(w.members[t])
                name = _words(t) + (f" x{k}" if k > 1 else "")
                ly = by + bh + 1
                for line in _wrap(name, round(cw) - 2, self.fpx, 2):
                    self.put_text(line, round(x + col * cw), ly, self.fpx, center_w=round(cw))
                    ly += round(self.fpx * 1.1)

    def place(self, mid0: int, mid1: int, hdr: int) -> None:
        w, S, pad = self.w, self.S, self.pad * 2
        loc = w.location
        assert loc is not None
        ids = w.members[loc]
        faced = w.focus[loc]
        # the others of this type, then neighbours within reach; those showing something first
        others = sorted(w.places()[1:], key=lambda r: not self.shows_contents(r))
        if self.text:
            where = _words(loc) + (f" {ids.index(faced) + 1} of {len(ids)}" if len(ids) > 1 else "")
            self.header_text(f"{_words(w.scene.room).upper()}: at the {where}", hdr)
        side = round(S * 0.27) if others else 0
        mh = mid1 - mid0 - 2 * pad
        self.panel(faced, pad, mid0 + pad, S - side - 2 * pad, mh, smax=round(S * 0.2))
        if not others:
            return
        slots = min(3, len(others))
        shown = others[:slots] if len(others) <= 3 else others[:2]
        lab_h = round(self.fpx * 1.1) * 2 if self.text else 0
        sh = mh / slots
        x0 = S - side
        for i, rid in enumerate(shown):
            y0 = round(mid0 + pad + i * sh)
            ph = round(sh - lab_h - pad)
            self.panel(rid, x0, y0, side - pad, ph, smax=round(S * 0.1), labels=False)
            if lab_h:
                rtype = w.rec_type[rid]
                same = w.members[rtype]
                name = _words(rtype) + (f" {same.index(rid) + 1}" if len(same) > 1 else "")
                if self.shows_contents(rid):
                    name += ": " + ", ".join(self.label(it) for it in self.items(w.children[rid]))
                ly = y0 + ph
                for line in _wrap(name, side - pad, self.fpx, 2):
                    self.put_text(line, x0, ly, self.fpx, center_w=side - pad)
                    ly += round(self.fpx * 1.1)
        if len(others) > len(shown):
            y0 = round(mid0 + pad + 2 * sh)
            self.more(len(others) - len(shown), x0, y0, side - pad, round(sh - pad))

    def hand_panel(self, y0: int) -> None:
        S, c = self.S, self.canvas
        pad = self.pad
        _fill(c, 0, y0, S, S, _HAND_BG)
        _fill(c, 0, y0, S, y0 + max(1, S // 128), (200, 200, 200))
        s = S - y0 - 2 * pad - max(1, S // 128)
        top = y0 + pad + max(1, S // 128)
        _blit(c, self.r.sprite(("obj", "_hand", frozenset(), 0, s, False)), pad, top)
        held = self.w.held
        tx = pad * 3 + s
        if held is None:
            if self.text:
                self.put_text("hand: empty", tx, top + (s - self.fpx) // 2, self.fpx, _WHITE)
            return
        it = self.item(held)
        self.draw_item(it, tx, top, s, badges=False)
        if self.text:
            lamp = it.type in self.onto.toggleable
            lines = _wrap("holding: " + self.label(it), S - (tx + s + pad * 3) - pad, self.fpx, 2)
            ly = top + max(0, (s - self.fpx * (len(lines) + 1) * 1.15) / 2)
            for line in lines:
                self.put_text(line, tx + s + pad * 3, round(ly), self.fpx, _WHITE)
                ly += self.fpx * 1.15
            bx = tx + s + pad * 3
            for b in self.badges(it, lamp):
                text, color = _BADGES[b]
                sp = self.r.sprite(("badge", text, self.bpx, color))
                _blit(c, sp, bx, round(ly) + 1)
                bx += sp.w + 2


_DEFAULT: Renderer | None = None


def render_frame(world: World, size: int = 64) -> np.ndarray:
    """Render ``world`` with a shared default :class:`Renderer` (read-only uint8 ``(size, size, 3)``)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Renderer()
    return _DEFAULT.render(world, size)

"""`rgvlm inspect`: one episode's frames, actions, LVLM analysis and scores as HTML and a PNG contact sheet
(labels from the simulated LVLM)."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rgvlm_gym.commands.inspect import episode_view, render_png
from rgvlm_gym.data import collect_dataset
from rgvlm_gym.rewards import relabel


@pytest.fixture
def relabeled() -> str:
    collect_dataset("test/insp-src-v0", episodes=4, num_tasks=10, workers=1, seed=2, max_steps=20, progress=False)
    relabel("test/insp-src-v0", "test/insp-out-v0", "rgvlm", lvlm="sim:noise=1,seed=0", cache=False, progress=False)
    return "test/insp-out-v0"


def test_inspect_writes_html_and_png(relabeled: str, tmp_path: Path) -> None:
    view = episode_view(relabeled, 1)
    n = len(view["steps"])
    assert n >= 1 and view["simulated"] and view["status"] == "ok"
    analyses = [s["analysis"] for s in view["steps"]]
    assert all(analyses), analyses  # one stage-1 explanation per step
    assert all(s["score"] is not None and 0 <= s["score"] <= 10 for s in view["steps"])

    html_out, png_out = tmp_path / "ep.html", tmp_path / "ep.png"
    proc = subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", "inspect", relabeled, "--episode", "1",
                           "--out", str(html_out), "--out", str(png_out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "(simulated LVLM)" in proc.stdout
    page = html_out.read_text(encoding="utf-8")
    import html

    for s in view["steps"]:
        assert html.escape(s["analysis"]) in page and html.escape(s["action"]) in page
        assert f"score {s['score']:g}/10" in page
    assert "simulated LVLM" in page and page.count("data:image/png;base64,") == n + 1
    first = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"  # self-contained frames

    img = Image.open(png_out)
    assert img.mode == "RGB" and img.width >= 4 * 224 and img.height >= 224 * ((n + 1 + 3) // 4)
    # the PNG is drawn from the same view: its text is what the page shows
    again = render_png(view, columns=2, frame_size=96)
    assert again.width < img.width


def test_inspect_errors(relabeled: str, tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", "inspect", relabeled, "--episode", "99",
                          "--out", str(tmp_path / "x.html")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "--episode" in bad.stderr
    ext = subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", "inspect", relabeled, "--episode", "0",
                          "--out", str(tmp_path / "x.jpg")], capture_output=True, text=True, timeout=120)
    assert ext.returncode == 1 and ".png" in ext.stderr
    # a dataset that was not relabeled still shows frames, actions and rewards
    view = episode_view("test/insp-src-v0", 0)
    assert not view["relabeled"] and all(s["score"] is None for s in view["steps"])

"""Every baseline labeler from the command line: `rgvlm relabel --labeler NAME` into a dataset that
`rgvlm train` accepts, with its cost and the label-quality report (Spearman and VOC) in the summary.

LVLM labels here come from the simulated LVLM (``sim``); the embedding labelers run tiny random models."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rgvlm_gym.cli import main
from rgvlm_gym.data import dataset_info, iter_episodes

SRC = "test/baselines-src-v0"
LVLM_LABELERS = ("rlvlmf", "rating", "gvl")
EMBEDDING_LABELERS = ("clip", "blip2", "roboclip")


@pytest.fixture(scope="session")
def _session_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 mixed-policy episodes collected once."""
    from rgvlm_gym.data import collect_dataset

    path = tmp_path_factory.mktemp("baselines-minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        collect_dataset(SRC, episodes=10, num_tasks=20, workers=1, seed=3, max_steps=20, progress=False)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return path / SRC


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from rgvlm_gym.rewards.embedding import save_tiny_model

    root = tmp_path_factory.mktemp("baseline-models")
    return {kind: save_tiny_model(kind, str(root / kind)) for kind in EMBEDDING_LABELERS}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rgvlm-cache")  # instruction embeddings computed once for every `train`


@pytest.fixture
def src(_session_src: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    shutil.copytree(_session_src, Path(os.environ["MINARI_DATASETS_PATH"]) / SRC)
    monkeypatch.setenv("RGVLM_GYM_CACHE_DIR", str(cache_dir))
    return SRC


def _line(out: str, prefix: str) -> str:
    m = re.search(rf"^{re.escape(prefix)}(.*)$", out, re.M)
    assert m, out
    return m.group(1)


@pytest.mark.parametrize("name", [*LVLM_LABELERS, *EMBEDDING_LABELERS])
def test_relabel_then_train(name: str, src: str, tiny_models: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_id = f"test/baselines-{name}-v0"
    args = ["relabel", src, "--labeler", name, "--out", out_id, "--no-progress", "--cache", str(tmp_path / "labels.sqlite")]
    if name in EMBEDDING_LABELERS:
        args += ["--model", tiny_models[name]]
    else:
        args += ["--lvlm", "sim:noise=1,seed=0"]
    if name in ("rlvlmf", "rating"):
        args += ["--labeler-arg", "queries_per_episode=3", "--labeler-arg", "epochs=20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    calls = int(_line(out, "LVLM calls: ").split()[0])
    forward = int(_line(out, "Model forward passes: ").split(";")[0])
    train_s = float(re.search(r"reward-model training: ([\d.]+) s", out).group(1))  # type: ignore[union-attr]
    if name in LVLM_LABELERS:
        assert calls > 0 and "(simulated LVLM)" in out
        images = int(re.search(r"images: (\d+)", out).group(1))  # type: ignore[union-attr]
        assert images > 0
    else:
        assert calls == 0 and forward > 0
    if name in ("rlvlmf", "rating"):
        assert calls >= 2 * 3 * 10 * 0.5 and forward > 0 and train_s > 0  # 2 calls per query, fit + label costs
    header = next(line for line in out.splitlines() if line.startswith("group"))
    assert "spearman" in header and "voc" in header and "oracle_voc" in header
    assert re.search(r"^n_subtasks\s+\d", out, re.M) and re.search(r"^task_type\s+\w", out, re.M)

    info = dataset_info(out_id)
    assert info["relabel"]["labeler"]["params"]["dense"]["type"] == name
    if name in ("rlvlmf", "rating"):  # provenance says what the reward model was trained on
        fit = info["relabel"]["reward_model"]
        assert fit["episodes"] == 10 and 0 < fit["trained_on"] <= fit["queries"] and fit["model_digest"]
    eps = list(iter_episodes(out_id, frames=False))
    assert all(np.isfinite(e.rewards).all() and "lvlm_labels" in e.extra for e in eps)
    if name == "roboclip":  # one reward per episode, at the last step
        assert all(np.all(e.extra["lvlm_labels"][:-1] == 0) for e in eps)
    assert main(["train", out_id, "--algo", "iql", "--steps", "2", "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "model.d3").is_file()


def test_feedback_labeler_resumes_from_the_cache_and_takes_args(src: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = str(tmp_path / "labels.sqlite")
    base = ["relabel", src, "--labeler", "rlvlmf", "--lvlm", "sim:noise=1,seed=0", "--out", "test/r-v0", "--no-progress",
            "--cache", cache, "--labeler-arg", "epochs=10", "--labeler-arg", "pairs=spread"]
    assert main(base) == 0
    first = capsys.readouterr().out
    assert int(_line(first, "LVLM calls: ").split()[0]) > 0
    assert main([*base, "--force"]) == 0  # every query answered from the cache: no LVLM call
    again = capsys.readouterr().out
    assert int(_line(again, "LVLM calls: ").split()[0]) == 0
    labels = [e.extra["lvlm_labels"] for e in iter_episodes("test/r-v0", frames=False)]
    assert dataset_info("test/r-v0")["relabel"]["labeler"]["params"]["dense"]["params"]["pairs"] == "spread"
    assert all(np.isfinite(x).all() for x in labels)

    assert main([*base[:-4], "--out", "test/bad-v0", "--labeler-arg", "colour=red"]) == 1
    err = capsys.readouterr().err
    assert "bad arguments for labeler 'rlvlmf'" in err and "colour" in err
    assert main([*base[:-4], "--out", "test/bad-v0", "--labeler-arg", "nokey"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_cli_missing_model_is_a_clear_error(src: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", "relabel", src, "--labeler", "clip", "--model",
                           "/no/such/clip", "--out", "test/c-v0", "--no-progress", "--cache", "none"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot load model '/no/such/clip' for labeler 'clip'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", "relabel", src, "--labeler", "blip2", "--out", "test/c-v0",
                           "--no-progress", "--cache", "none"], capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "blip2" in proc.stderr and "--model" in proc.stderr

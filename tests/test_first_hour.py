"""Issue 14, the first hour of a new user: quiet output, clear errors, the ALFRED data variable, dataset
breakdowns, the labeler's name in summaries, the TensorBoard extra, embeddings cached while collecting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_py(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


def rgvlm(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


# -- foreign noise -----------------------------------------------------------------------------------

def test_importing_the_rl_stack_prints_no_gym_banner() -> None:
    r = run_py("import rgvlm_gym, rgvlm_gym.rl, d3rlpy, gym")
    assert r.returncode == 0, r.stderr
    assert "unmaintained" not in r.stderr + r.stdout
    # the banner is gym's: without rgvlm_gym first it is there (so the test can fail)
    assert "unmaintained" in run_py("import gym").stderr


def test_cli_keeps_d3rlpy_warnings_only_in_plain_text_and_users_warnings() -> None:
    code = """
import warnings
from rgvlm_gym.console import quiet_foreign_output
quiet_foreign_output()
from d3rlpy.logging import LOG
LOG.info("Parameters", params={"secret": 1})
LOG.debug("Building models...")
LOG.warning("Skip building models since they're already built.")
warnings.warn("\\x1b[33mWARN: mine\\x1b[0m")
"""
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "Parameters" not in out and "Building models" not in out
    assert "Skip building models" in r.stderr and "WARN: mine" in r.stderr  # warnings stay, in plain text
    assert "\x1b[" not in out


def test_formatwarning_keeps_colours_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from rgvlm_gym.console import quiet_foreign_output

    original = warnings.formatwarning
    try:
        quiet_foreign_output()
        text = warnings.formatwarning("\x1b[33mWARN\x1b[0m", UserWarning, "f.py", 1)
        assert "\x1b[" not in text  # pytest's captured stderr is not a terminal
    finally:
        warnings.formatwarning = original


# -- clear errors --------------------------------------------------------------------------------------

def test_demo_refuses_an_output_it_cannot_write(tmp_path: Path) -> None:
    r = rgvlm("demo", "--out", str(tmp_path / "x.txt"))
    assert r.returncode == 1 and ".gif" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize("spec", ["openai:m@ftp://x", "openai:m@localhost:8000/v1"])
def test_a_non_http_base_url_is_named_as_such(spec: str) -> None:
    from rgvlm_gym.lvlm import make_lvlm

    with pytest.raises(ValueError, match="http:// or https://"):
        make_lvlm(spec)


def test_a_model_name_with_an_at_sign_is_still_a_model() -> None:
    from rgvlm_gym.lvlm.registry import LVLMSpec

    assert LVLMSpec.parse("openai:claude-3@20240229").params == {"model": "claude-3@20240229"}


# -- ALFRED data ---------------------------------------------------------------------------------------

def test_pytest_says_why_alfred_tests_are_skipped(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests/envs/test_action_mask.py")],
                       capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env={**os.environ, "RGVLM_GYM_ALFRED_DIR": str(tmp_path / "nowhere")})
    assert "skipped" in r.stdout
    assert "RGVLM_GYM_ALFRED_DIR" in r.stdout and str(tmp_path / "nowhere") in r.stdout


def test_a_recorded_alfred_dir_from_another_machine_is_found_through_the_variable(alfred_dir: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import gymnasium as gym

    import rgvlm_gym  # noqa: F401

    monkeypatch.setenv("RGVLM_GYM_ALFRED_DIR", str(alfred_dir))
    with pytest.warns(UserWarning, match="RGVLM_GYM_ALFRED_DIR"):
        env = gym.make("rgvlm_gym/AlfredLite-v0", tasks="alfred", alfred_dir="/elsewhere/json_2.1.0", split="valid_seen")
    assert env.unwrapped.num_tasks > 0
    monkeypatch.delenv("RGVLM_GYM_ALFRED_DIR")
    with pytest.raises(FileNotFoundError, match="RGVLM_GYM_ALFRED_DIR"):
        gym.make("rgvlm_gym/AlfredLite-v0", tasks="alfred", alfred_dir="/elsewhere/json_2.1.0", split="valid_seen")


# -- datasets, summaries, extras -----------------------------------------------------------------------

def test_dataset_show_breaks_down_by_k_and_task_type(tmp_path: Path) -> None:
    env = {"MINARI_DATASETS_PATH": str(tmp_path / "m"), "RGVLM_GYM_CACHE_DIR": str(tmp_path / "c")}
    r = rgvlm("collect", "--num-tasks", "20", "--subtasks", "1-2", "--episodes", "12", "--workers", "1",
              "--dataset-id", "test/show-v0", "--no-progress", **env)
    assert r.returncode == 0, r.stderr
    r = rgvlm("dataset", "show", "test/show-v0", **env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    k_rows = [line for line in lines if line.startswith(("k=1 ", "k=2 "))]
    assert len(k_rows) == 2 and sum(int(row.split()[1]) for row in k_rows) == 12
    start = next(i for i, line in enumerate(lines) if line.startswith("task type"))
    assert sum(int(line.split()[1]) for line in lines[start + 1:] if line.strip()) == 12


def test_the_relabel_summary_names_the_combination() -> None:
    from rgvlm_gym.rewards.relabel import build_labeler, labeler_title

    assert labeler_title(build_labeler("oracle", lam=0.5).config) == "sparse + 0.5 * oracle"
    assert labeler_title(build_labeler("sparse").config) == "sparse"


def test_tensorboard_extra_installs_what_d3rlpy_imports() -> None:
    import inspect
    import re

    from d3rlpy.logging import tensorboard_adapter

    extra = re.search(r"^tensorboard = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert extra is not None and '"tensorboardX' in extra.group(1)
    assert "from tensorboardX import" in inspect.getsource(tensorboard_adapter)


# -- embeddings ----------------------------------------------------------------------------------------

def test_collection_caches_every_instruction_embedding_for_every_later_dataset(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from rgvlm_gym.data import collect_dataset, iter_episodes, to_d3rlpy
    from rgvlm_gym.data.embeddings import InstructionEmbedder

    monkeypatch.setenv("RGVLM_GYM_CACHE_DIR", str(tmp_path / "cache"))
    collect_dataset("test/emb-a-v0", episodes=10, num_tasks=10, workers=2, seed=0, progress=False)
    texts = {r.instruction for r in iter_episodes("test/emb-a-v0", frames=False, images=False)}
    assert InstructionEmbedder().missing(texts) == []
    # a second dataset of the same tasks, and its d3rlpy conversion, never load the encoder
    InstructionEmbedder._models.clear()
    collect_dataset("test/emb-b-v0", episodes=10, num_tasks=10, workers=1, seed=0, progress=False)
    to_d3rlpy("test/emb-b-v0")
    assert InstructionEmbedder._models == {}
    shards = list((tmp_path / "cache").rglob("*.npz"))
    assert 1 <= len(shards) <= 16  # compacted, not one file per text


def test_no_embed_collects_without_the_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rgvlm_gym.data import collect_dataset

    monkeypatch.setenv("RGVLM_GYM_CACHE_DIR", str(tmp_path / "cache"))
    collect_dataset("test/noemb-v0", episodes=4, num_tasks=10, workers=1, seed=0, progress=False, embed=False)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.npz"))


def test_bf16_embeddings_are_close_to_float32(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import numpy as np

    from rgvlm_gym.data.embeddings import InstructionEmbedder

    texts = ["Put a washed apple in the fridge.", "Heat a mug in the microwave, then put it in the coffee machine."]
    monkeypatch.setenv("RGVLM_GYM_EMBED_DTYPE", "float32")
    ref = InstructionEmbedder(cache=tmp_path / "a")(texts)
    monkeypatch.setenv("RGVLM_GYM_EMBED_DTYPE", "bfloat16")
    fast = InstructionEmbedder(cache=tmp_path / "b")(texts)
    assert fast.dtype == np.float32
    assert float(np.min(np.sum(ref * fast, axis=1))) > 0.999  # unit vectors: cosine


def test_evaluation_json_is_strict_json(tmp_path: Path) -> None:
    from rgvlm_gym.rl.evaluation import evaluate, random_policy

    report = evaluate(random_policy(0), {"num_tasks": 10, "subtasks": "1"}, episodes_per_k=1, seeds=(0,), randomize=(False,))
    _, path = report.write(tmp_path)
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))

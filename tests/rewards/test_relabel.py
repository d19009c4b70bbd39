"""relabel() and `rgvlm relabel`: a new Minari dataset with combined rewards and audit columns, the source
byte-identical, provenance, label quality vs the oracle, the unlabeled fallback, errors, zero calls on re-run.

Every label here comes from the simulated LVLM (``sim``)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rgvlm_gym.data import DatasetError, dataset_info, iter_episodes, write_dataset
from rgvlm_gym.rewards import PROMPT_SHA256, PROMPT_VERSION, LabelCache, relabel

SRC = "test/relabel-src-v0"


@pytest.fixture(scope="session")
def _session_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 mixed-policy episodes collected once, in a Minari folder of their own."""
    from rgvlm_gym.data import collect_dataset

    path = tmp_path_factory.mktemp("relabel-minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        collect_dataset(SRC, episodes=24, num_tasks=40, workers=2, seed=5, max_steps=30, progress=False)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return path / SRC


@pytest.fixture
def src(_session_src: Path) -> str:
    """The session dataset, copied into this test's own Minari folder."""
    shutil.copytree(_session_src, Path(os.environ["MINARI_DATASETS_PATH"]) / SRC)
    return SRC


def _tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_relabel_end_to_end_sim(src: str, tmp_path: Path) -> None:
    import minari

    src_dir = Path(os.environ["MINARI_DATASETS_PATH"]) / src
    before = _tree_hash(src_dir)
    cache = tmp_path / "labels.sqlite"
    summary = relabel(src, "test/relabel-out-v0", "rgvlm", lvlm="sim:noise=0,seed=0", lam=0.5, cache=cache,
                      concurrency=4, progress=False)
    assert _tree_hash(src_dir) == before  # the source is byte-identical

    ds = minari.load_dataset("test/relabel-out-v0")  # Minari loads it
    assert ds.total_episodes == 24 and summary.episodes == 24 and summary.labeled == 24
    assert summary.calls >= 2 * 24 and summary.calls == LabelCache(cache, readonly=True).stats()["responses"]
    originals = list(iter_episodes(src, frames=False, images=False))
    for rec, orig in zip(iter_episodes("test/relabel-out-v0", frames=False, images=False), originals, strict=True):
        assert (rec.actions == orig.actions).all()
        np.testing.assert_array_equal(rec.extra["original_rewards"], orig.rewards)
        np.testing.assert_allclose(rec.rewards, orig.rewards + 0.5 * rec.extra["lvlm_labels"], atol=1e-6)
        np.testing.assert_array_equal(rec.extra["lvlm_rewards"], rec.extra["lvlm_labels"])
        assert rec.extra["label_status"] == "ok" and rec.extra["label"]["texts"][0]["stage"] == "analysis"
        assert len(rec.extra["label"]["raw_scores"]) == len(rec)
    # Minari's own reader sees the combined reward
    ep0 = next(iter(ds.iterate_episodes([0])))
    np.testing.assert_allclose(ep0.rewards, next(iter_episodes("test/relabel-out-v0", frames=False)).rewards, atol=1e-6)

    meta = dataset_info("test/relabel-out-v0")
    prov = meta["relabel"]
    assert prov["labeler"]["type"] == "combined" and prov["labeler"]["params"]["dense"]["type"] == "rgvlm"
    assert prov["lvlm"].startswith("sim") and prov["simulated"] is True
    assert prov["prompt_version"] == PROMPT_VERSION and prov["prompt_sha256"] == PROMPT_SHA256
    assert prov["parameters"]["lam"] == 0.5 and prov["package_version"]
    assert meta["source_dataset"] == src
    assert {"original_rewards", "lvlm_labels", "lvlm_rewards"} <= set(meta["extra_step_columns"])

    # the summary: a parseable calls line, said once (first) to be simulated, quality vs the oracle
    text = summary.text()
    assert int(re.search(r"^LVLM calls: (\d+)", text, re.M).group(1)) == summary.calls  # type: ignore[union-attr]
    assert text.splitlines()[0].startswith("SIMULATED LVLM") and text.count("SIMULATED") == 1
    assert summary.quality is not None and summary.quality.overall.spearman >= 0.9  # noise 0
    assert {"task_type", "n_subtasks"} <= {r.group for r in summary.quality.rows}


def test_relabel_trains_d3rlpy(src: str) -> None:
    import d3rlpy

    from rgvlm_gym.data import to_d3rlpy
    from rgvlm_gym.rl import LanguageConditionedEncoderFactory

    relabel(src, "test/relabel-bc-v0", "rgvlm", lvlm="sim:noise=1", cache=False, progress=False)
    for column in ("rewards", "lvlm_rewards", "original_rewards"):
        buf = to_d3rlpy("test/relabel-bc-v0", reward=column, image_size=32)
        assert np.isfinite(np.concatenate([e.rewards for e in buf.episodes])).all()
    factory = LanguageConditionedEncoderFactory(filters=[[8, 8, 4], [16, 4, 2]], feature_size=32, language_feature_size=32)
    bc = d3rlpy.algos.DiscreteBCConfig(encoder_factory=factory, batch_size=16).create(device="cpu")
    bc.create_impl(buf.sample_transition().observation_signature.shape, buf.dataset_info.action_size)
    losses = [bc.update(buf.sample_transition_batch(16))["loss"] for _ in range(5)]
    assert np.isfinite(losses).all()


def test_quality_falls_with_noise(src: str) -> None:
    rho = []
    for noise in (0, 3):
        s = relabel(src, f"test/relabel-noise{noise}-v0", "rgvlm", lvlm=f"sim:noise={noise},seed=1", cache=False, progress=False)
        assert s.quality is not None
        rho.append(s.quality.overall.spearman)
    assert rho[0] >= 0.9 and rho[1] < rho[0]


def test_unlabeled_episodes_keep_the_sparse_reward(src: str) -> None:
    s = relabel(src, "test/relabel-bad-v0", "rgvlm", lvlm="sim:malformed=1", cache=False, progress=False, max_unlabeled="100%")
    assert s.labeled == 0 and s.unlabeled and sum(s.unlabeled.values()) == 24
    assert re.search(r"^Unlabeled \(\d+\): invalid: invalid scores", s.text(), re.M)
    for rec in iter_episodes("test/relabel-bad-v0", frames=False, images=False):
        assert rec.extra["label_status"] == "invalid" and rec.extra["label"]["reason"]
        np.testing.assert_array_equal(rec.rewards, rec.extra["original_rewards"])
        np.testing.assert_array_equal(rec.extra["lvlm_rewards"], rec.extra["original_rewards"])
        assert np.isnan(rec.extra["lvlm_labels"]).all()  # never an invented score


def test_oracle_and_sparse_labelers_and_relabel_of_relabeled(src: str) -> None:
    s = relabel(src, "test/relabel-oracle-v0", "oracle", lam=2.0, progress=False)
    assert s.calls == 0 and s.quality is not None and math.isclose(s.quality.overall.spearman, 1.0)
    assert not s.simulated and "SIMULATED" not in s.text()
    # relabeling a relabeled dataset starts from its original rewards
    s2 = relabel("test/relabel-oracle-v0", "test/relabel-sparse-v0", "sparse", progress=False)
    assert s2.quality is None
    for a, b in zip(iter_episodes(src, frames=False, images=False),
                    iter_episodes("test/relabel-sparse-v0", frames=False, images=False), strict=True):
        np.testing.assert_array_equal(a.rewards, b.rewards)


def test_errors(src: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="did you mean"):
        relabel("test/relabel-scr-v0", "test/x-v0", progress=False)
    with pytest.raises(ValueError, match="differ"):
        relabel(src, src, force=True, progress=False)
    with pytest.raises(ValueError, match="Unknown LVLM backend"):
        relabel(src, "test/x-v0", lvlm="gpt5:foo", progress=False)
    with pytest.raises(ValueError, match="Did you mean 'rgvlm'"):
        relabel(src, "test/x-v0", "rgvml", progress=False)
    with pytest.raises(ValueError, match="lam"):
        relabel(src, "test/x-v0", lam=-1, progress=False)
    relabel(src, "test/x-v0", "sparse", progress=False)
    with pytest.raises(FileExistsError, match="force"):
        relabel(src, "test/x-v0", "sparse", progress=False)
    # a dataset without frames: a clear error before any call
    write_dataset("test/noframes-v0", iter_episodes(src, frames=False), source=src, frames=False)
    with pytest.raises(DatasetError, match="no LVLM frames"):
        relabel("test/noframes-v0", "test/y-v0", "rgvlm", cache=tmp_path / "c.sqlite", progress=False)
    assert not (Path(os.environ["MINARI_DATASETS_PATH"]) / "test/y-v0").exists()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rgvlm_gym.cli", "relabel", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_cli_rerun_makes_zero_calls_and_refuses_to_overwrite(src: str, tmp_path: Path) -> None:
    cache_dir = tmp_path / "rgvlm-cache"  # the default cache: <RGVLM_GYM_CACHE_DIR>/labels.sqlite
    env = {"RGVLM_GYM_CACHE_DIR": str(cache_dir)}
    first = _cli(src, "--labeler", "rgvlm", "--lvlm", "sim:noise=1", "--out", "test/cli-v0", "--no-progress",
                 "--json", str(tmp_path / "s.json"), env=env)
    assert first.returncode == 0, first.stderr
    calls = int(re.search(r"^LVLM calls: (\d+)$", first.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert calls >= 48 and (cache_dir / "labels.sqlite").is_file()
    assert json.loads((tmp_path / "s.json").read_text())["calls"] == calls
    again = _cli(src, "--lvlm", "sim:noise=1", "--out", "test/cli-v0", "--force", "--no-progress", env=env)
    assert again.returncode == 0, again.stderr
    assert re.search(r"^LVLM calls: 0$", again.stdout, re.M), again.stdout
    refused = _cli(src, "--lvlm", "sim:noise=1", "--out", "test/cli-v0", "--no-progress", env=env)
    assert refused.returncode == 1 and "already exists" in refused.stderr and "--force" in refused.stderr
    unknown = _cli("test/relabel-srd-v0", "--out", "test/z-v0", "--no-progress", env=env)
    assert unknown.returncode == 1 and "did you mean" in unknown.stderr
    bad_spec = _cli(src, "--lvlm", "sim:nosie=1", "--out", "test/z-v0", "--no-progress", env=env)
    assert bad_spec.returncode == 1 and "nosie" in bad_spec.stderr and "Traceback" not in bad_spec.stderr


def test_old_dataset_without_progress_ground_truth_is_refused_by_the_oracle_not_mislabelled(src: str) -> None:
    """A dataset collected before cost-to-go was recorded: the dense oracle and the sim refuse it clearly,
    the sub-task oracle and the sparse labeler still work."""
    from dataclasses import replace

    old = [replace(r, cost_to_go=None, expert_actions=None) for r in iter_episodes(src)]
    write_dataset("test/old-format-v0", old, source=src)
    for labeler in ("oracle", "rgvlm"):
        with pytest.raises(ValueError, match="Re-collect it"):
            relabel("test/old-format-v0", f"test/old-{labeler}-v0", labeler, lvlm="sim", progress=False)
        assert not (Path(os.environ["MINARI_DATASETS_PATH"]) / f"test/old-{labeler}-v0").exists()
    summary = relabel("test/old-format-v0", "test/old-subtask-v0", "oracle_subtask", progress=False)
    assert summary.episodes == len(old)
    back = list(iter_episodes("test/old-subtask-v0", frames=False))
    np.testing.assert_array_equal(back[0].extra["lvlm_labels"], np.clip(np.diff(old[0].progress), 0, 1))

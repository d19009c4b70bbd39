"""Benchmark configs parse (the shipped ones included), bad ones fail with a message naming the key, and
aggregation across seeds computes completion and Student-t intervals from real episodes.csv files."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from rgvlm_gym.benchmark.aggregate import per_run, summarize, verdicts
from rgvlm_gym.benchmark.config import BenchmarkConfig, ConfigError, load_config
from rgvlm_gym.benchmark.runner import plan

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "configs").glob("*.toml"))
BASE = {"name": "t", "dataset": {"episodes": 10, "num_tasks": 10, "subtasks": "1-2"},
        "train": {"rewards": ["sparse", "sparse+rgvlm"], "seeds": [0, 1]}}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_parse_and_plan(path: Path, tmp_path: Path) -> None:
    full, quick = load_config(path), load_config(path, quick=True)
    assert len(full.train.seeds) >= 3 and full.dataset.episodes > quick.dataset.episodes
    assert quick.namespace == full.namespace + "-quick"  # quick datasets never replace the full ones
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optional baseline labelers that are not installed here
        jobs, runs = plan(quick, tmp_path / "out")
    assert runs and not any(j.done for j in jobs)
    assert {j.kind for j in jobs} >= {"collect", "train", "evaluate"}


def test_figure4_covers_the_paper() -> None:
    cfg = load_config(next(p for p in CONFIGS if p.stem == "figure4"))
    assert {"sparse", "rgvlm", "sparse+rgvlm", "oracle"} <= {r.name for r in cfg.rewards}
    assert cfg.evaluate.subtasks == "1-6" and cfg.evaluate.randomize_init


@pytest.mark.parametrize(("patch", "message"), [
    ({"train": {"seed": [0]}}, "Did you mean 'seeds'"),
    ({"train": {"rewards": ["sparse+"]}}, "bad reward 'sparse+'"),
    ({"train": {"seeds": []}}, "train.seeds"),
    ({"dataset": {"num_tasks": 5}}, "`episodes` is required"),
    ({"evalute": {}}, "Did you mean 'evaluate'"),
])
def test_bad_configs_name_the_key(patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace("(", r"\(")):
        BenchmarkConfig.from_dict({**BASE, **patch})


def test_unavailable_labeler_error_or_optional_skip(tmp_path: Path) -> None:
    cfg = BenchmarkConfig.from_dict({**BASE, "train": {"rewards": ["sparse", "sparse+nosuchlabeler"]}})
    with pytest.raises(ConfigError, match="labeler 'nosuchlabeler'.*not available.*optional = true"):
        plan(cfg, tmp_path)
    cfg = BenchmarkConfig.from_dict({**BASE, "labelers": {"nosuchlabeler": {"optional": True}},
                                     "train": {"rewards": ["sparse", "sparse+nosuchlabeler"], "seeds": [0]}})
    with pytest.warns(UserWarning, match="nosuchlabeler.*skipped"):
        jobs, runs = plan(cfg, tmp_path)
    assert [r.reward.name for r in runs] == ["sparse"]


def test_yaml_equals_toml(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    toml = CONFIGS[0]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(load_config(toml).raw | {"quick": {}}))
    assert load_config(tmp_path / "c.yaml").rewards == load_config(toml).rewards


def _write_episodes(folder: Path, done_by_k: dict[int, list[int]], randomized: bool = False) -> Path:
    folder.mkdir(parents=True)
    with (folder / "episodes.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "n_subtasks", "randomized", "success", "subtasks_done", "invalid_actions", "steps", "seed"])
        for k, dones in done_by_k.items():
            for d in dones:
                w.writerow([f"t{k}", k, randomized, d == k, d, 0, 10, 0])
    return folder


def test_completion_and_t_intervals_across_seeds(tmp_path: Path) -> None:
    # k=2: per-seed completions 0.5, 0.75, 1.0 (two episodes each); k=1: successes 1/2, 2/2, 0/2
    per_seed = {0: {1: [1, 0], 2: [1, 1]}, 1: {1: [1, 1], 2: [2, 1]}, 2: {1: [0, 0], 2: [2, 2]}}
    rows = []
    for seed, done in per_seed.items():
        rows += per_run({"algo": "iql", "reward": "sparse+rgvlm", "seed": seed}, _write_episodes(tmp_path / f"s{seed}", done))
    cell = {(s["k"]): s for s in summarize(rows)}
    vals = np.array([0.5, 0.75, 1.0])
    half = stats.t.ppf(0.975, 2) * vals.std(ddof=1) / math.sqrt(3)
    assert cell[2]["n"] == 3 and cell[2]["seeds"] == [0, 1, 2]
    assert cell[2]["completion"] == pytest.approx(0.75)
    assert cell[2]["completion_lo"] == pytest.approx(max(0.0, 0.75 - half))
    assert cell[2]["completion_hi"] == pytest.approx(min(1.0, 0.75 + half))
    assert cell[1]["success"] == pytest.approx(0.5)
    assert cell["all"]["completion"] == pytest.approx(np.mean([(0.5 + 0.5) / 2, (1 + 0.75) / 2, (0 + 1) / 2]))

    base = []
    for seed in range(3):
        base += per_run({"algo": "iql", "reward": "sparse", "seed": seed}, _write_episodes(tmp_path / f"b{seed}", {1: [0, 0], 2: [0, 0]}))
    v = {x["k"]: x["verdict"] for x in verdicts(summarize(rows + base))}
    assert v[2] == "above"  # 0.75 [0.13, 1.0] vs 0 [0, 0]
    assert v[1] == "overlap"  # 0.5 with a wide interval


def test_run_jobs_order_markers_and_failures(tmp_path: Path) -> None:
    import json
    import sys

    from rgvlm_gym.benchmark.runner import Job, run_jobs

    def py(code: str) -> list[str]:
        return [sys.executable, "-c", code]

    order = tmp_path / "order.txt"
    append = f"open({str(order)!r}, 'a').write('{{}}\\n')"
    jobs = [
        Job("a", "collect", py(append.format("a")), marker=tmp_path / "a.done"),
        Job("b", "relabel", py("raise SystemExit(1)"), deps=["a"], optional=True),
        Job("c", "train", py(append.format("c")), deps=["b"]),
        Job("d", "train", py(append.format("d")), deps=["a"]),
        Job("e", "train", py("import sys; print('boom'); sys.exit(3)"), deps=["a"]),
        Job("f", "evaluate", py(append.format("f")), deps=["e"]),
        Job("g", "evaluate", py(append.format("g")), deps=["d"], done=True),
    ]
    lines: list[str] = []
    status = run_jobs(jobs, tmp_path / "logs", jobs=2, echo=lines.append)
    assert status == {"a": "ok", "b": "optional-failed", "c": "optional-skipped", "d": "ok", "e": "failed",
                      "f": "skipped", "g": "done"}
    assert order.read_text().split() == ["a", "d"]  # dependencies first; skipped and done jobs never ran
    assert json.loads((tmp_path / "a.done").read_text())["cmd"] == jobs[0].cmd
    assert "boom" in (tmp_path / "logs" / "e.log").read_text() and any("FAILED e (exit 3" in x for x in lines)

"""Running a benchmark: :func:`plan`, :func:`run_jobs`, :func:`run_benchmark`, :class:`Job`, :class:`DatasetMismatch`.

A benchmark is a graph of ``rgvlm`` sub-processes: one ``collect``, one ``relabel`` per labeler variant and
``lam``, then per algorithm x reward x seed one ``train`` and one ``evaluate``. Each job writes its output
atomically (the commands already do) and, once its process exits 0, a done-marker
(``OUT/runs/RUN/train.done``, ``eval.done``) holding the job's command line. On a second run a job is
skipped when its marker holds the same command line and every job it depends on is done, so a killed sweep
continues where it stopped and a finished one costs nothing.

Datasets live where Minari puts them (``MINARI_DATASETS_PATH``) under the config's namespace. One that
exists is reused only when its stored parameters (collection options; labeler, LVLM and ``lam`` of a
relabeled one) match the config; otherwise :class:`DatasetMismatch` says what differs, unless
``force=True`` re-collects / re-labels it.

``jobs`` sub-processes run at once, each with ``max(1, cores // jobs)`` torch threads, so the CPU is never
oversubscribed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rgvlm_gym.benchmark.config import BenchmarkConfig, ConfigError, LabelerSpec, RewardSpec
from rgvlm_gym.fileio import atomic_write_text

__all__ = ["DatasetMismatch", "Job", "RunInfo", "atomic_write_text", "plan", "run_benchmark", "run_jobs", "threads_per_job"]


class DatasetMismatch(ValueError):
    """A stored dataset was made with other parameters than the config asks for."""


@dataclass
class Job:
    """One ``rgvlm`` sub-process of a benchmark."""

    key: str
    kind: str  # collect | relabel | train | evaluate
    cmd: list[str]
    deps: list[str] = field(default_factory=list)
    marker: Path | None = None  # written after success (None: the output itself is the marker)
    done: bool = False
    optional: bool = False  # failure only skips its dependents, with a warning
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """One algorithm x reward x seed run and where its outputs go."""

    algo: str
    reward: RewardSpec
    seed: int
    dir: Path
    labeler: LabelerSpec | None

    @property
    def slug(self) -> str:
        return self.dir.name

    def record(self) -> dict[str, Any]:
        """What ``run.json`` holds (read back by :mod:`rgvlm_gym.benchmark.aggregate`)."""
        lab = self.labeler
        return {"algo": self.algo, "reward": self.reward.name, "seed": self.seed, "labeler": lab.name if lab else None,
                "labeler_type": lab.type if lab else None, "lvlm": lab.lvlm if lab else None, "lam": self.reward.lam,
                "column": self.reward.column, "x": lab.x if lab else None}


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Torch threads each of ``jobs`` parallel sub-processes gets: ``max(1, cores // jobs)``.

    >>> threads_per_job(2, cores=16), threads_per_job(4, cores=2)
    (8, 1)
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if cores is None:
        from rgvlm_gym.rl.threads import available_cores

        cores = available_cores()
    return max(1, cores // jobs)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else {"+": "_plus_", "*": "x", ".": "p"}.get(c, "_") for c in text)


def _lam_slug(lam: float) -> str:
    return f"{lam:g}".replace(".", "p").replace("-", "m")


def _accepts(command: str, flag: str) -> bool:
    """Whether ``rgvlm COMMAND`` has ``flag`` (``--threads`` arrives command by command)."""
    import argparse
    import importlib

    p = argparse.ArgumentParser()
    importlib.import_module(f"rgvlm_gym.commands.{command}").add_arguments(p)
    return any(flag in a.option_strings for a in p._actions)


# --------------------------------------------------------------------------------------------------
# stored-parameter checks
# --------------------------------------------------------------------------------------------------
def collect_mismatches(dataset_id: str, cfg: BenchmarkConfig) -> list[str]:
    """Differences between the stored collection parameters of ``dataset_id`` and ``cfg.dataset``."""
    from rgvlm_gym.data import dataset_info
    from rgvlm_gym.data.policies import parse_mix

    d = cfg.dataset
    info = dataset_info(dataset_id)
    env = info.get("env_kwargs", {})
    want: dict[str, Any] = {
        "episodes": (info.get("episodes"), d.episodes),
        "policy": (info.get("policy"), d.policy),
        "seed": (info.get("seed"), d.seed),
        "frame_size": (info.get("frame_size"), d.frame_size),
        "tasks": (env.get("tasks"), d.tasks),
        "subtasks": (env.get("subtasks"), d.subtasks or None),
        "randomize_init": (bool(env.get("randomize_init", False)), d.randomize_init),
        "max_steps": (env.get("max_steps"), d.max_steps),
        "image_size": (env.get("image_size"), d.image_size),
    }
    if d.tasks == "procedural":
        want["num_tasks"] = (env.get("num_tasks"), d.num_tasks)
    else:
        want["alfred_dir"] = (env.get("alfred_dir"), os.path.abspath(d.alfred_dir) if d.alfred_dir else None)
        want["split"] = (env.get("split"), d.split)
    if d.policy == "mixed":
        stored = info.get("policy_mix") or {}
        expect = parse_mix(d.mix)
        same = set(stored) == set(expect) and all(abs(float(stored[k]) - expect[k]) < 1e-9 for k in expect)
        want["mix"] = (stored, expect) if not same else (0, 0)
    return [f"{k}: stored {a!r}, config {b!r}" for k, (a, b) in want.items() if a != b]


def relabel_mismatches(dataset_id: str, source_id: str, lab: LabelerSpec, lam: float) -> list[str]:
    """Differences between a relabeled dataset's provenance and what the config asks for."""
    from rgvlm_gym.data import dataset_info

    prov = dataset_info(dataset_id).get("relabel") or {}
    params = prov.get("parameters") or {}
    labeler = prov.get("labeler") or {}
    dense = (labeler.get("params") or {}).get("dense") or labeler
    out = []
    if params.get("source_dataset") != source_id:
        out.append(f"source: stored {params.get('source_dataset')!r}, config {source_id!r}")
    if dense.get("type") != lab.type:
        out.append(f"labeler: stored {dense.get('type')!r}, config {lab.type!r}")
    if params.get("lam") is None or abs(float(params["lam"]) - lam) > 1e-12:
        out.append(f"lam: stored {params.get('lam')!r}, config {lam!r}")
    stored_lvlm = prov.get("lvlm")
    if stored_lvlm and lab.lvlm and _spec_key(stored_lvlm) != _spec_key(lab.lvlm, normalize=True):
        out.append(f"lvlm: stored {stored_lvlm!r}, config {lab.lvlm!r}")
    return out


def _spec_key(spec: str, normalize: bool = False) -> str:
    """A comparable LVLM spec: defaults filled in (``sim`` is ``sim:seed=0``), parameter order and the
    client's ``max_concurrency`` (how fast, not what it answers) ignored."""
    spec = str(spec)
    if normalize:
        with contextlib.suppress(Exception):  # a client that cannot be built here: compare the text
            from rgvlm_gym.lvlm import make_lvlm

            spec = make_lvlm(spec).spec
    backend, sep, rest = spec.partition(":")
    if backend == "sim":
        return "sim:" + ",".join(sorted(p for p in rest.split(",") if p and not p.startswith("max_concurrency=")))
    return spec


# --------------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------------
def _cli() -> list[str]:
    return [sys.executable, "-m", "rgvlm_gym.cli"]


def _marker_ok(marker: Path, cmd: Sequence[str]) -> bool:
    try:
        return json.loads(marker.read_text()).get("cmd") == list(cmd)
    except (OSError, ValueError):
        return False


def plan(cfg: BenchmarkConfig, out: str | Path, *, jobs: int = 1, force: bool = False,
         cores: int | None = None, write: bool = True) -> tuple[list[Job], list[RunInfo]]:
    """The jobs of a benchmark and its runs; jobs already done (and datasets that match) are marked done.

    ``write``: write each run's ``run.json`` (what it is, for ``rgvlm compare``); False for a dry run.

    Raises:
        ConfigError: a labeler that is not available and not optional (the message names it).
        DatasetMismatch: a stored dataset or run that differs from the config, without ``force``.
    """
    from rgvlm_gym.data.storage import _dataset_dir
    from rgvlm_gym.rewards.relabel import relabel_labelers

    out = Path(out)
    threads = threads_per_job(jobs, cores)
    available = set(relabel_labelers())
    d = cfg.dataset
    src = f"{cfg.namespace}/source-v0"
    job_list: list[Job] = []
    problems: list[str] = []

    # 1. collect
    cmd = [*_cli(), "collect", "--dataset-id", src, "--episodes", str(d.episodes), "--tasks", d.tasks, "--policy", d.policy,
           "--seed", str(d.seed), "--max-steps", str(d.max_steps), "--image-size", str(d.image_size),
           "--frame-size", str(d.frame_size), "--no-progress", "--workers", str(max(1, threads * jobs))]
    if d.tasks == "procedural":
        cmd += ["--num-tasks", str(d.num_tasks)]
    else:
        if not d.alfred_dir:
            raise ConfigError("[dataset]: tasks = 'alfred' needs alfred_dir")
        cmd += ["--alfred-dir", os.path.abspath(d.alfred_dir), "--split", d.split]
    if d.subtasks:
        cmd += ["--subtasks", d.subtasks]
    if d.mix:
        cmd += ["--mix", d.mix]
    if d.randomize_init:
        cmd += ["--randomize-init"]
    collect = Job("collect", "collect", cmd, info={"dataset": src})
    if _dataset_dir(src).exists():
        diff = collect_mismatches(src, cfg)
        if not diff:
            collect.done = True
        elif force:
            collect.cmd.append("--force")
        else:
            problems.append(f"dataset {src!r} was collected with other parameters ({'; '.join(diff)})")
    job_list.append(collect)

    # 2. relabel: one dataset per labeler variant and lam
    skipped: set[str] = set()
    relabels: dict[tuple[str, float], Job] = {}
    for r in cfg.rewards:
        if r.labeler is None:
            continue
        lab = cfg.labelers[r.labeler]
        if lab.type not in available:
            if lab.optional:
                warnings.warn(f"labeler {lab.type!r} ({lab.name}) is not available here; its rewards are skipped "
                              f"(available: {sorted(available)})", stacklevel=2)
                skipped.add(r.name)
                continue
            raise ConfigError(f"labeler {lab.type!r} (used by reward {r.name!r}) is not available; available labelers: "
                              f"{sorted(available)}. Mark it `optional = true` under [labelers.{lab.name}] to skip it.")
        assert r.lam is not None
        if (lab.name, r.lam) in relabels:
            continue
        dst = f"{cfg.namespace}/{_slug(lab.name)}-lam{_lam_slug(r.lam)}-v0"
        cmd = [*_cli(), "relabel", src, "--labeler", lab.type, "--out", dst, "--lam", f"{r.lam:g}", "--no-progress"]
        if lab.lvlm:
            cmd += ["--lvlm", lab.lvlm]
        if lab.model:
            cmd += ["--model", lab.model]
        cmd += list(lab.args)
        job = Job(f"relabel-{_slug(lab.name)}-lam{_lam_slug(r.lam)}", "relabel", cmd, deps=["collect"], optional=lab.optional,
                  info={"dataset": dst})
        if _dataset_dir(dst).exists():
            diff = relabel_mismatches(dst, src, lab, r.lam) if collect.done else ["the source dataset is being re-collected"]
            if not diff:
                job.done = True
            elif force or not collect.done:
                job.cmd.append("--force")
            else:
                problems.append(f"dataset {dst!r} was relabeled with other parameters ({'; '.join(diff)})")
        relabels[(lab.name, r.lam)] = job
        job_list.append(job)

    # 3. train and evaluate per algo x reward x seed
    train_threads = ["--threads", str(threads)] if _accepts("train", "--threads") else []
    eval_threads = ["--threads", str(threads)] if _accepts("evaluate", "--threads") else []
    done_keys = {j.key for j in job_list if j.done}
    runs: list[RunInfo] = []
    e = cfg.evaluate
    for algo in cfg.train.algos:
        for r in cfg.rewards:
            if r.name in skipped:
                continue
            lab = cfg.labelers[r.labeler] if r.labeler else None
            if r.labeler is None:
                dataset, dep = src, collect
            else:
                assert lab is not None and r.lam is not None
                dep = relabels[(lab.name, r.lam)]
                dataset = dep.info["dataset"]
            for seed in cfg.train.seeds:
                rdir = out / "runs" / f"{algo}_{_slug(r.name)}_s{seed}"
                run = RunInfo(algo, r, seed, rdir, lab)
                runs.append(run)
                tcmd = [*_cli(), "train", dataset, "--algo", algo, "--reward", r.column, "--seed", str(seed),
                        "--out", str(rdir / "train")]
                if cfg.train.steps is not None:
                    tcmd += ["--steps", str(cfg.train.steps)]
                if cfg.train.batch_size is not None:
                    tcmd += ["--batch-size", str(cfg.train.batch_size)]
                tcmd += list(cfg.train.args)
                ecmd = [*_cli(), "evaluate", str(rdir / "train" / "model.d3"), "--out", str(rdir / "eval"), "--subtasks", e.subtasks,
                        "--episodes", str(e.episodes), "--seeds", ",".join(map(str, e.seeds))]
                if e.randomize_init:
                    ecmd.append("--randomize-init")
                if e.suite_seed is not None:
                    ecmd += ["--suite-seed", str(e.suite_seed)]
                if e.num_tasks is not None:
                    ecmd += ["--num-tasks", str(e.num_tasks)]
                ecmd += list(e.args)
                for kind, cmd, extra, deps in (("train", tcmd, [*train_threads, "--force"], [dep.key]),
                                               ("evaluate", ecmd, eval_threads, [f"train-{rdir.name}"])):
                    short = "train" if kind == "train" else "eval"
                    marker = rdir / f"{short}.done"
                    job = Job(f"{short}-{rdir.name}", kind, [*cmd, *extra], deps=deps, marker=marker,
                              optional=dep.optional, info={"run": run, "spec": cmd})
                    if marker.exists():
                        if all(k in done_keys for k in deps) and _marker_ok(marker, cmd):
                            job.done = True
                        elif not _marker_ok(marker, cmd) and not force and all(k in done_keys for k in deps):
                            problems.append(f"{rdir} holds a {kind} run made with another command line; "
                                            "use another --out, or --force to redo it")
                    if job.done:
                        done_keys.add(job.key)
                    job_list.append(job)
    if problems:
        raise DatasetMismatch("the benchmark would reuse outputs that do not match the config:\n  - "
                              + "\n  - ".join(problems) + "\nPass --force to re-collect / re-label / re-run them, "
                              "or change the config's `namespace` (datasets) or --out (runs).")
    for run in runs if write else ():
        atomic_write_text(run.dir / "run.json", json.dumps(run.record(), indent=1))
    return job_list, runs


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------
def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the benchmark process dies, even by SIGKILL (no orphans that
    would race a resumed sweep for the same run folder)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_jobs(job_list: list[Job], log_dir: str | Path, *, jobs: int = 1, threads: int = 1,
             echo: Callable[[str], None] = print) -> dict[str, str]:
    """Run the jobs not yet done, ``jobs`` at a time, in dependency order.

    Returns ``{key: status}`` with status ``done`` (before), ``ok``, ``failed``, ``skipped`` (a dependency
    failed), ``optional-failed`` or ``optional-skipped`` (an optional labeler's job failed: not a failure). SIGINT / SIGTERM stop the running children and re-raise.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {j.key: "done" for j in job_list if j.done}
    todo = [j for j in job_list if not j.done]
    total = len(todo)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RGVLM_GYM_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TQDM_DISABLE", "1")
    running: dict[str, tuple[Job, subprocess.Popen[bytes], float, Any]] = {}
    started = 0

    def stop(signum: int, _frame: Any) -> None:
        for _, p, _, _ in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for _, p, _, _ in running.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=30)
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while todo or running:
            for j in list(todo):
                if len(running) >= jobs:
                    break
                dep_status = [status.get(k) for k in j.deps]
                if any(s in ("failed", "skipped", "optional-failed", "optional-skipped") for s in dep_status):
                    todo.remove(j)
                    optional = all(s in ("done", "ok", "optional-failed", "optional-skipped") for s in dep_status)
                    status[j.key] = "optional-skipped" if optional else "skipped"
                    echo(f"skip   {j.key} (an {'optional ' if optional else ''}dependency failed)")
                    continue
                if not all(s in ("done", "ok") for s in dep_status):
                    continue
                todo.remove(j)
                started += 1
                log = open(log_dir / f"{j.key}.log", "wb")  # noqa: SIM115 (closed when the job ends)
                p = subprocess.Popen(j.cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent)
                running[j.key] = (j, p, time.perf_counter(), log)
                echo(f"start  [{started}/{total}] {j.key}")
            if not running:
                break
            time.sleep(0.2)
            for key, (j, p, t0, log) in list(running.items()):
                rc = p.poll()
                if rc is None:
                    continue
                log.close()
                del running[key]
                dt = time.perf_counter() - t0
                if rc == 0:
                    if j.marker is not None:
                        atomic_write_text(j.marker, json.dumps({"cmd": j.info.get("spec", j.cmd), "seconds": round(dt, 1),
                                                                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}))
                    status[key] = "ok"
                    echo(f"done   {key} in {dt:.0f} s")
                else:
                    status[key] = "optional-failed" if j.optional else "failed"
                    tail = (log_dir / f"{key}.log").read_text(errors="replace").strip().splitlines()[-8:]
                    echo(f"{'warn' if j.optional else 'FAILED'} {key} (exit {rc}; log {log_dir / f'{key}.log'}):\n    "
                         + "\n    ".join(tail))
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return status


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, *, jobs: int = 1, force: bool = False, cores: int | None = None,
                  echo: Callable[[str], None] = print) -> tuple[dict[str, str], list[Job], list[RunInfo]]:
    """Plan, run what is not done, and return the job statuses, the jobs and the runs (see :func:`plan`).

    ``cores``: the CPU budget shared by the ``jobs`` sub-processes (default: this process's cores).
    """
    out = Path(out)
    job_list, runs = plan(cfg, out, jobs=jobs, force=force, cores=cores)
    done = sum(j.done for j in job_list)
    threads = threads_per_job(jobs, cores)
    echo(f"benchmark {cfg.name}: {len(job_list)} jobs ({done} already done), {len(runs)} runs; "
         f"{jobs} at a time x {threads} thread(s)")
    atomic_write_text(out / "config.json", json.dumps(cfg.raw, indent=1, default=str))
    status = run_jobs(job_list, out / "logs", jobs=jobs, threads=threads, echo=echo)
    return status, job_list, runs


def load_runs(out: str | Path) -> list[Mapping[str, Any]]:
    """The ``run.json`` records under ``OUT/runs`` (with their folder under ``"dir"``)."""
    recs = []
    for p in sorted(Path(out, "runs").glob("*/run.json")):
        rec = json.loads(p.read_text())
        rec["dir"] = str(p.parent)
        recs.append(rec)
    return recs

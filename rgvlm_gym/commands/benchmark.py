"""``rgvlm benchmark``: run a benchmark config end to end, resumably, and report with intervals.

Example::

    rgvlm benchmark benchmarks/configs/figure4.toml --out runs/figure4 --jobs 4
    rgvlm benchmark benchmarks/configs/figure4.toml --quick --out runs/figure4-quick

Collects (or reuses, only when the stored parameters match), relabels with every labeler the rewards
name, trains every algorithm x reward x seed, evaluates each, and writes ``OUT/runs/RUN/{train,eval}``,
``OUT/results/`` (``runs.csv`` with a seed column, ``summary.csv/json``, ``table.md``, PNG pictures) and
``OUT/logs/`` (one log per job). Killed, it continues where it stopped when run again; ``--jobs N`` runs N
sub-processes at once with ``max(1, cores // N)`` threads each. See :mod:`rgvlm_gym.benchmark`.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="benchmark config (TOML, or YAML with PyYAML), e.g. benchmarks/configs/figure4.toml")
    p.add_argument("--out", required=True, help="output folder (runs, logs, results); reuse it to resume")
    p.add_argument("--quick", action="store_true", help="apply the config's [quick] table (a small, fast version)")
    p.add_argument("--jobs", type=int, default=1, help="sub-processes at once (each gets max(1, cores // jobs) threads)")
    p.add_argument("--force", action="store_true",
                   help="re-collect / re-label datasets and redo runs whose stored parameters differ from the config")
    p.add_argument("--dry-run", action="store_true", help="print the jobs (and which are done) without running any")
    p.add_argument("--report-only", action="store_true", help="only aggregate what has finished and draw the pictures")


def run(args: argparse.Namespace) -> int:
    from rgvlm_gym.benchmark.config import load_config
    from rgvlm_gym.benchmark.report import is_simulated, report
    from rgvlm_gym.benchmark.runner import plan, run_jobs, threads_per_job

    cfg = load_config(args.config, quick=args.quick)
    threads = threads_per_job(args.jobs)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # optional labelers that are missing: one line each
        warnings.simplefilter("always")
        job_list, runs = plan(cfg, args.out, jobs=args.jobs, force=args.force, write=not args.dry_run)
    for w in caught:
        print(f"warning: {w.message}")
    done = sum(j.done for j in job_list)
    print(f"benchmark {cfg.name}{' (quick)' if args.quick else ''}: {len(job_list)} jobs, {done} already done; "
          f"{len(runs)} runs; {args.jobs} at a time x {threads} thread(s)")
    if args.dry_run:
        for j in job_list:
            print(f"{'done ' if j.done else 'todo '} {j.key}: {' '.join(j.cmd[2:])}")
        return 0
    status: dict[str, str] = {}
    if not args.report_only:
        from rgvlm_gym.benchmark.runner import atomic_write_text

        atomic_write_text(Path(args.out) / "config.json", json.dumps({"path": str(args.config), "quick": args.quick, **cfg.raw},
                                                                     indent=1, default=str))
        status = run_jobs(job_list, f"{args.out}/logs", jobs=args.jobs, threads=threads)
    relabeled = [j.info["dataset"] for j in job_list if j.kind == "relabel"]
    report(cfg, runs, args.out, simulated=is_simulated(relabeled))
    failed = [k for k, s in status.items() if s in ("failed", "skipped")]
    optional = [k for k, s in status.items() if s == "optional-failed"]
    if optional:
        print(f"optional jobs that failed (their rewards are missing): {', '.join(optional)}")
    print(f"benchmark {cfg.name}: {'FAILED jobs: ' + ', '.join(failed) if failed else 'all jobs done'} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 1 if failed else 0

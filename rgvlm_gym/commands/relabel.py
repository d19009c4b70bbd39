"""``rgvlm relabel``: relabel a Minari dataset with LVLM (RG-VLM) rewards into a new dataset.

Example::

    rgvlm relabel rgvlm/alfred-valid-mixed-v0 --labeler rgvlm --lvlm sim --out rgvlm/alfred-valid-rgvlm-v0
    rgvlm relabel rgvlm/alfred-valid-mixed-v0 --labeler rgvlm --lvlm openai:gpt-4o --lam 0.5 \\
        --out rgvlm/alfred-valid-gpt4o-v0 --concurrency 16

The new dataset's ``rewards`` are ``sparse + lam * labels`` (``--lam``, default 1.0); ``original_rewards``,
``lvlm_rewards`` (the LVLM reward alone) and ``lvlm_labels`` (raw, NaN where unlabeled) are extra per-step
columns (``rgvlm train --reward COLUMN``). Finished calls and episodes go to a label cache (``--cache``), so
re-running a finished job makes no LVLM calls and a killed job resumes where it stopped. The closing summary
has a line ``LVLM calls: N`` and, with ground truth, the label-quality table (Spearman / Pearson against the
oracle's sub-task progress, per task type and per number of sub-tasks). See :mod:`rgvlm_gym.rewards.relabel`.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_arguments", "parse_labeler_args", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rgvlm_gym.rewards.relabel import relabel_labelers

    p.add_argument("src_id", metavar="SRC_ID", help="source Minari dataset id (only read, never modified)")
    p.add_argument("--labeler", default="rgvlm", choices=relabel_labelers(), help="dense labeler (default: rgvlm)")
    p.add_argument("--lvlm", default="sim", metavar="SPEC",
                   help="LVLM spec: sim[:noise=..,latency=..,seed=..], openai:<model>[@<base_url>], hf:<path> (default: sim)")
    p.add_argument("--out", required=True, metavar="OUT_ID", help="id of the new dataset (namespace/name-vN)")
    p.add_argument("--lam", type=float, default=1.0, help="rewards = sparse + lam * labels (default: 1.0)")
    p.add_argument("--force", action="store_true", help="replace OUT_ID if it exists")
    p.add_argument("--concurrency", type=int, default=32, help="episodes labeled at once (default: 32)")
    p.add_argument("--cache", default=None, metavar="PATH",
                   help="label cache file (default: <cache dir>/labels.sqlite; 'none' for no cache, then nothing resumes)")
    p.add_argument("--frame-budget", type=int, default=None, help="most frames per LVLM request (default: 16)")
    p.add_argument("--long-episodes", choices=("segments", "subsample"), default=None,
                   help="episodes over the frame budget: 'segments' (default; 2 calls per segment, every frame seen) "
                        "or 'subsample' (2 calls per episode, fewer frames)")
    p.add_argument("--max-unlabeled", default="5%", metavar="N|P%",
                   help="fail (exit 1, nothing written) when more episodes than this end unlabeled: a count, or a "
                        "percentage of the source's episodes (default: 5%%; '100%%' never fails)")
    p.add_argument("--model", default=None, metavar="PATH_OR_ID",
                   help="transformers model (local folder or hub id) of the embedding labelers clip, blip2, roboclip")
    p.add_argument("--labeler-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a further labeler argument, repeatable (VALUE is read as JSON when it parses, else as text): "
                        "e.g. queries_per_episode=4, segment=2, reward=delta (rlvlmf, rating), levels=5 (rating), "
                        "baseline='a room in a house' (clip)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the summary as JSON")


def parse_labeler_args(items: list[str], model: str | None = None) -> dict[str, object]:
    """``["k=v", ...]`` (and ``--model``) as labeler keyword arguments; values are JSON when they parse.

    >>> parse_labeler_args(["queries_per_episode=4", "reward=delta", "baseline=a room"], model="m")
    {'queries_per_episode': 4, 'reward': 'delta', 'baseline': 'a room', 'model': 'm'}
    """
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"Expect --labeler-arg as KEY=VALUE, actually: {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    if model is not None:
        out["model"] = model
    return out


def run(args: argparse.Namespace) -> int:
    from rgvlm_gym.errors import LabelingError
    from rgvlm_gym.rewards.relabel import relabel

    cache: str | bool = True if args.cache is None else (False if args.cache.lower() == "none" else args.cache)
    try:
        summary = relabel(
            args.src_id, args.out, args.labeler, lvlm=args.lvlm, lam=args.lam, force=args.force,
            concurrency=args.concurrency, cache=cache, frame_budget=args.frame_budget, long_episodes=args.long_episodes,
            progress=not args.no_progress, max_unlabeled=args.max_unlabeled,
            labeler_args=parse_labeler_args(args.labeler_arg, args.model),
        )
    except LabelingError as exc:  # the closing summary of what was done, then the error (the CLI prints it)
        if exc.summary is not None:
            print(exc.summary.text())
        raise
    print(summary.text())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary.to_dict(), f, indent=2, default=str)
    return 0

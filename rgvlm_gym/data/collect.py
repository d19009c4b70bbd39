"""Collect AlfredLite episodes with behaviour policies into a Minari dataset, on a process pool.

Holds :func:`collect_dataset` (the Python side of ``rgvlm collect``), :func:`collect_episode`,
:func:`episode_plan` and :func:`summarize`.

Reproducibility: episode ``i`` of a collection with seed ``s`` is a function of ``(s, i)`` only -- its
task (a seeded permutation of the suite, a fresh one per pass over it), its reset seed, its policy kind
(``mixed``) and its policy's random draws all come from ``numpy.random.SeedSequence([s, i, ...])``.
Workers collect episodes in any order and the writer stores them in index order, so the dataset content
is the same for any number of workers.

    >>> import gymnasium as gym, rgvlm_gym
    >>> env = gym.make("rgvlm_gym/AlfredLite-v1", num_tasks=10)
    >>> rec = collect_episode(env.unwrapped, "partial", episode_id=0, seed=1, task_index=2)
    >>> rec.policy, rec.success, bool(rec.truncations[-1])
    ('partial', False, True)
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rgvlm_gym.data.episode import EpisodeRecord
from rgvlm_gym.data.policies import DEFAULT_MIX, POLICY_NAMES, make_policy, parse_mix
from rgvlm_gym.data.storage import ENV_ID, write_dataset

if TYPE_CHECKING:
    from minari import MinariDataset

__all__ = ["EpisodePlan", "collect_dataset", "collect_episode", "episode_plan", "summarize"]

_EPISODE_BYTES = 1 << 30  # most memory one collected episode may take (frames + images)


@dataclass(frozen=True)
class EpisodePlan:
    """What episode ``index`` of a collection is: its task, reset seed, policy kind and policy seed."""

    index: int
    task_index: int
    reset_seed: int
    policy: str
    policy_seed: int


def episode_plan(index: int, seed: int, num_tasks: int, policy: str, mix: dict[str, float]) -> EpisodePlan:
    """The plan of one episode, from ``(seed, index)`` alone.

    >>> episode_plan(0, 0, 10, "expert", {}).policy
    'expert'
    >>> episode_plan(5, 0, 10, "mixed", {"random": 1.0}).policy
    'random'
    """
    rnd_pass = index // num_tasks
    perm = np.random.default_rng([seed, rnd_pass, 7]).permutation(num_tasks)
    ss = np.random.SeedSequence([seed, index])
    reset_seed, policy_seed, choice_seed = (int(x) for x in ss.generate_state(3, dtype=np.uint32))
    if policy == "mixed":
        kinds = list(mix)
        p = np.asarray([mix[k] for k in kinds], dtype=np.float64)
        policy = kinds[int(np.random.default_rng(choice_seed).choice(len(kinds), p=p / p.sum()))]
    return EpisodePlan(index, int(perm[index % num_tasks]), reset_seed, policy, policy_seed)


def collect_episode(
    env: Any,
    policy: str,
    *,
    episode_id: int,
    seed: int,
    task_index: int,
    policy_seed: int | None = None,
    frame_size: int = 224,
    frames: bool = True,
) -> EpisodeRecord:
    """Run one episode of a behaviour policy in an (unwrapped) ``AlfredLiteEnv`` and record it."""
    pol = make_policy(policy)
    obs, info = env.reset(seed=int(seed), options={"task_index": int(task_index)})
    pol.reset(env, np.random.default_rng(seed if policy_seed is None else policy_seed))
    images = [obs["image"]]
    frame_list = [env.render_frame(frame_size).copy()] if frames else None
    progress = [info["subtask_progress"][0]]
    gcs = [info["goal_conditions"][0]]
    # privileged ground truth of the dense progress oracle: the expert plan's length and first action
    expert = [env.expert_cost_to_go()]
    masks = [info["action_mask"]]
    task = dict(info["task"])
    actions: list[int] = []
    rewards: list[float] = []
    terms: list[bool] = []
    truncs: list[bool] = []
    errors: list[str] = []
    while True:
        a = pol.act(env, info)
        if a is None:
            if actions:
                truncs[-1] = True
                break
            a = pol.random_action()  # an episode has at least one step
        obs, r, term, trunc, info = env.step(a)
        actions.append(int(a))
        rewards.append(float(r))
        terms.append(bool(term))
        truncs.append(bool(trunc))
        errors.append(info["action_error"] or "")
        images.append(obs["image"])
        if frame_list is not None:
            frame_list.append(env.render_frame(frame_size).copy())
        progress.append(info["subtask_progress"][0])
        gcs.append(info["goal_conditions"][0])
        expert.append(env.expert_cost_to_go())
        masks.append(info["action_mask"])
        if term or trunc:
            break
    return EpisodeRecord(
        episode_id=int(episode_id),
        instruction=str(task["instruction"]),
        task=task,
        actions=np.asarray(actions, dtype=np.int64),
        action_names=[env.action_names[a] for a in actions],
        images=np.stack(images).astype(np.uint8),
        frames=np.stack(frame_list) if frame_list is not None else None,
        rewards=np.asarray(rewards, dtype=np.float32),
        terminations=np.asarray(terms, dtype=bool),
        truncations=np.asarray(truncs, dtype=bool),
        progress=np.asarray(progress, dtype=np.int64),
        action_errors=errors,
        policy=pol.name,
        seed=int(seed),
        goal_conditions=np.asarray(gcs, dtype=np.int64),
        cost_to_go=np.asarray([c for c, _ in expert], dtype=np.int64),
        expert_actions=np.asarray([a for _, a in expert], dtype=np.int64),
        action_masks=np.stack(masks).astype(np.uint8),
    )


# -- worker side -----------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _make_env(env_kwargs: dict[str, Any]) -> Any:
    import gymnasium as gym

    import rgvlm_gym  # noqa: F401  (registers the env)

    return gym.make(ENV_ID, **env_kwargs)


def _init_pool_worker(*args: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates the pool
    with contextlib.suppress(Exception):  # Linux: die with the parent (kill -9 of `rgvlm collect`)
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    _init_worker(*args)


def _init_worker(env_kwargs: dict[str, Any], seed: int, num_tasks: int, policy: str, mix: dict[str, float], frame_size: int) -> None:
    if _WORKER.get("env_kwargs") != env_kwargs:  # forked workers inherit the parent's env
        _WORKER["env"] = _make_env(env_kwargs)
        _WORKER["env_kwargs"] = env_kwargs
    _WORKER.update(seed=seed, num_tasks=num_tasks, policy=policy, mix=mix, frame_size=frame_size)


def _run_one(index: int) -> EpisodeRecord:
    w = _WORKER
    plan = episode_plan(index, w["seed"], w["num_tasks"], w["policy"], w["mix"])
    return collect_episode(w["env"].unwrapped, plan.policy, episode_id=index, seed=plan.reset_seed, task_index=plan.task_index,
                           policy_seed=plan.policy_seed, frame_size=w["frame_size"])


def _records(n: int, workers: int, init_args: tuple[Any, ...]) -> Iterator[EpisodeRecord]:
    """Episodes 0..n-1 in order. Ctrl-C is turned into a flag checked between episodes: a
    KeyboardInterrupt raised at an arbitrary point (inside a weakref callback of the pool, say) can be
    swallowed by Python ("Exception ignored in ..."), and collection would go on."""
    stop: list[int] = []
    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
    pool = None
    try:
        if workers <= 1:
            _init_worker(*init_args)
            results: Iterator[EpisodeRecord] = (_run_one(i) for i in range(n))
        else:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = mp.get_context(method).Pool(workers, initializer=_init_pool_worker, initargs=init_args)
            # ordered: the writer stores episode i at position i whatever the worker count; in windows,
            # because imap reads ahead without bound and finished episodes (frames!) would pile up in
            # memory whenever writing is slower than collecting
            window = 32 * workers
            results = (
                rec
                for start in range(0, n, window)
                for rec in pool.imap(_run_one, range(start, min(n, start + window)), chunksize=4)
            )
        for rec in results:
            if stop:
                raise KeyboardInterrupt
            yield rec
            if stop:
                raise KeyboardInterrupt
        if pool is not None:
            pool.close()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if restore is not None:
            signal.signal(signal.SIGINT, restore)


def collect_dataset(
    dataset_id: str,
    *,
    episodes: int,
    tasks: str = "procedural",
    alfred_dir: str | None = None,
    split: str = "valid_seen",
    subtasks: str | None = None,
    randomize_init: bool = False,
    num_tasks: int = 1000,
    policy: str = "mixed",
    mix: str | dict[str, float] | None = None,
    seed: int = 0,
    workers: int = 2,
    frame_size: int = 224,
    image_size: int = 64,
    max_steps: int = 50,
    force: bool = False,
    progress: bool = True,
    embed: bool = True,
) -> MinariDataset:
    """Collect ``episodes`` episodes into the Minari dataset ``dataset_id`` (see ``rgvlm collect --help``).

    Returns the dataset; per-policy success is in :func:`summarize`. With ``embed`` the instructions' MiniLM
    embeddings are computed into the shared cache while collecting (:class:`~rgvlm_gym.data.embeddings.
    EmbeddingPrefetcher`), so that ``to_d3rlpy`` finds them.
    """
    if int(episodes) < 1:
        raise ValueError(f"Expect `episodes` to be positive, actually: {episodes}")
    if policy not in POLICY_NAMES:
        raise ValueError(f"policy must be one of {POLICY_NAMES}, got {policy!r}")
    if int(workers) < 1:
        raise ValueError(f"Expect `workers` to be positive, actually: {workers}")
    if int(frame_size) < 224:
        raise ValueError(f"frame_size must be >= 224 (LVLMs read the labels), got {frame_size}")
    # an episode is held in memory until it is written (frames and images of every step): bound it
    step_bytes = 3 * (int(frame_size) ** 2 + int(image_size) ** 2)
    if not 1 <= int(max_steps) <= _EPISODE_BYTES // step_bytes:
        raise ValueError(f"Expect `max_steps` to be in 1..{_EPISODE_BYTES // step_bytes:,} with {frame_size} px frames and "
                         f"{image_size} px images (an episode is held in memory, {step_bytes / 1e3:.0f} KB a step, at most "
                         f"{_EPISODE_BYTES >> 30} GiB), actually: {max_steps}")
    from rgvlm_gym.data.storage import _dataset_dir, parse_dataset_id

    did = str(parse_dataset_id(dataset_id))
    if _dataset_dir(did).exists() and not force:  # fail before minutes of collection
        raise FileExistsError(f"dataset {did!r} already exists at {_dataset_dir(did)}; pass --force to replace it")
    mix_d = parse_mix(mix) if policy == "mixed" else {policy: 1.0}
    env_kwargs: dict[str, Any] = {"tasks": tasks, "image_size": int(image_size), "render_size": int(frame_size), "max_steps": int(max_steps)}
    if tasks == "alfred":
        from rgvlm_gym.alfred.paths import default_alfred_dir

        alfred_dir = alfred_dir or default_alfred_dir()
        if not alfred_dir:
            raise ValueError("--tasks alfred needs --alfred-dir (or $RGVLM_GYM_ALFRED_DIR), the path of ALFRED's json_2.1.0 folder")
        if not os.path.isdir(alfred_dir):
            raise FileNotFoundError(f"--alfred-dir {alfred_dir!r} is not a directory")
        env_kwargs.update(alfred_dir=os.path.abspath(alfred_dir), split=split)
    else:
        env_kwargs["num_tasks"] = int(num_tasks)
    if subtasks:
        env_kwargs["subtasks"] = subtasks
    if randomize_init:
        env_kwargs["randomize_init"] = True
    env = _make_env(env_kwargs)
    _WORKER["env"], _WORKER["env_kwargs"] = env, env_kwargs  # inherited by forked workers
    n_tasks = env.unwrapped.num_tasks
    workers = min(int(workers), int(episodes))
    metadata = {
        "description": f"AlfredLite {tasks} tasks ({split if tasks == 'alfred' else f'{num_tasks} procedural'}), "
                       f"sub-tasks {subtasks or 'whole tasks'}, {'randomized' if randomize_init else 'dataset'} initial states, "
                       f"policy {policy}; {frame_size} px frames for LVLM labeling.",
        "algorithm_name": f"rgvlm_gym behaviour policy: {policy}",
        "task_suite": {"tasks": tasks, "split": split if tasks == "alfred" else None, "subtasks": subtasks,
                       "randomize_init": bool(randomize_init), "num_tasks": n_tasks},
        "instructions": ("dataset text" if not randomize_init else "randomized initial states: " + (
            "step text regenerated from the expert plan in the randomized scene (human step text describes the original placements)"
            if subtasks else "goal-level text as in the dataset (it says what to achieve, not where things start)")),
        "policy": policy,
        "policy_mix": mix_d,
        "default_policy_mix": DEFAULT_MIX,
        "seed": int(seed),
        "episodes": int(episodes),
        "workers": workers,
        "frame_size": int(frame_size),
        "episode_seeds": "episode i: numpy SeedSequence([seed, i]) -> (reset seed, policy seed, mixed-kind draw); task = "
                         "permutation(default_rng([seed, i // num_tasks, 7]))[i % num_tasks]",
    }
    init_args = (env_kwargs, int(seed), n_tasks, policy, mix_d, int(frame_size))
    records = _records(int(episodes), workers, init_args)
    prefetch = None
    if embed:
        from rgvlm_gym.data.embeddings import EmbeddingPrefetcher

        prefetch = EmbeddingPrefetcher()
    try:
        ds = write_dataset(did, prefetch.watch(records) if prefetch else records, env=env, metadata=metadata, force=force,
                           progress=int(episodes) if progress else False)
    finally:
        records.close()  # stops the pool now, not when the generator is collected
        if prefetch is not None:
            prefetch.close(progress=progress)
    return ds


def summarize(dataset: MinariDataset | str) -> dict[str, dict[str, float]]:
    """Per policy kind: episodes, success rate, mean steps and mean sub-task fraction (privileged)."""
    import h5py

    from rgvlm_gym.data.storage import open_dataset

    ds = open_dataset(dataset)
    stats: dict[str, list[tuple[bool, int, float]]] = {}
    i = None
    try:
        with h5py.File(os.path.join(ds.storage.data_path, "main_data.hdf5"), "r") as f:
            for i in ds.episode_indices:
                g = f[f"episode_{int(i)}"]
                term = g["terminations"][()]
                prog = g["privileged/subtask_progress"][()]
                n = max(int(json.loads(g.attrs["task"])["n_subtasks"]), 1)
                stats.setdefault(str(g.attrs.get("policy", "?")), []).append((bool(term[-1]), len(term), float(prog[-1]) / n))
    except (KeyError, OSError, RuntimeError, ValueError, TypeError, IndexError) as exc:  # damaged bytes, however HDF5 says it
        from rgvlm_gym.data.storage import DatasetError

        where = "" if i is None else f" episode {int(i)}"
        raise DatasetError(f"dataset {ds.id!r}{where}: cannot be read (corrupted?): {type(exc).__name__}: {exc}") from exc
    out: dict[str, dict[str, float]] = {}
    for name in sorted(stats, key=lambda k: (k == "all", k)):
        rows = stats[name]
        out[name] = {"episodes": len(rows), "success": float(np.mean([r[0] for r in rows])),
                     "steps": float(np.mean([r[1] for r in rows])), "subtask_fraction": float(np.mean([r[2] for r in rows]))}
    allrows = [r for rows in stats.values() for r in rows]
    out["all"] = {"episodes": len(allrows), "success": float(np.mean([r[0] for r in allrows])),
                  "steps": float(np.mean([r[1] for r in allrows])), "subtask_fraction": float(np.mean([r[2] for r in allrows]))}
    return out

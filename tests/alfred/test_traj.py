"""The ALFRED loader on real traj_data files: trajectories, scenes, tasks, prefix tasks, bad input, replay."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from rgvlm_gym.alfred.ontology import FLOOR, load_ontology
from rgvlm_gym.alfred.tasks import TASK_TYPES, TaskSpec, goal_for_task_type, subgoals_from_plan
from rgvlm_gym.alfred.traj import (
    SPLITS,
    AlfredTrajectory,
    load_split,
    load_trajectory,
    map_high_pddl,
    parse_subtask_range,
    reconstruct_scene,
    tasks_from_trajectory,
)
from rgvlm_gym.alfred.world import World

ONTO = load_ontology()
N_VALID_SEEN = 251


def first_file(alfred_dir: Path, split: str, task_type: str, index: int = 0) -> Path:
    files = sorted(alfred_dir.glob(f"{split}/{task_type}-*/*/traj_data.json"))
    assert files, f"no {task_type} files in {split}"
    return files[index]


def replay(task: TaskSpec, scene=None) -> tuple[bool, str | None]:
    """Run the task's expert actions; (success, first error)."""
    w = World(scene or task.scene)
    for a in task.expert_actions:
        verb, arg = a.split(" ", 1)
        err = w.step(verb, ONTO.canonical(arg))
        if err is not None:
            return False, f"{a}: {err}"
    return task.is_success(w), None


def norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def steps_without_noop(traj: AlfredTrajectory) -> list[dict]:
    return [s for s in traj.high_pddl if s["discrete_action"]["action"] != "NoOp"]


# -- real files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "valid_seen"])
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_real_file_of_each_task_type(alfred_dir: Path, split: str, task_type: str) -> None:
    path = first_file(alfred_dir, split, task_type)
    raw = json.loads(path.read_text())
    traj = load_trajectory(path)
    assert traj.task_id == raw["task_id"] and traj.task_id.startswith("trial_T")
    assert traj.task_type == task_type
    assert traj.path == str(path)
    assert traj.floor_plan.startswith("FloorPlan")
    assert len(traj.high_pddl) == len(raw["plan"]["high_pddl"])
    assert traj.annotations and all("task_desc" in a for a in traj.annotations)

    actions = map_high_pddl(traj)
    steps = steps_without_noop(traj)
    assert len(actions) == len(steps)
    for (verb, typ, key), step in zip(actions, steps, strict=True):
        da = step["discrete_action"]
        assert verb == da["action"]
        arg = da["args"][1] if verb == "PutObject" else da["args"][0]
        if arg:  # a few ALFRED steps have an empty argument: the object in hand
            assert typ == ONTO.canonical(arg)
        assert (key is not None) == (verb == "PickupObject")

    scene = reconstruct_scene(traj)
    rec_ids = {r.id for r in scene.receptacles}
    assert FLOOR in rec_ids
    obj_ids = {o.id for o in scene.objects}
    assert all(o.parent in rec_ids | obj_ids for o in scene.objects)
    assert len(obj_ids) == len(scene.objects)
    World(scene)  # a consistent world

    (task,) = tasks_from_trajectory(traj, scene)
    assert task.task_id == traj.task_id and task.prefix is None and task.task_type == task_type
    assert task.n_subtasks == sum(v != "GotoLocation" for v, _, _ in actions) == len(task.subgoals)
    descs = {norm(a["task_desc"]) for a in traj.annotations}
    assert {norm(i) for i in task.instructions} == descs
    assert all(i[0].isupper() and i[-1] in ".!?" for i in task.instructions)
    p = traj.pddl_params
    expected = goal_for_task_type(
        task_type,
        ONTO.canonical(p["object_target"]),
        ONTO.canonical(p["parent_target"]) if p.get("parent_target") else None,
        sliced=bool(p["object_sliced"]),
        mrecep=ONTO.canonical(p["mrecep_target"]) if p.get("mrecep_target") else None,
        toggle=ONTO.canonical(p["toggle_target"]) if p.get("toggle_target") else None,
    )
    assert task.goal == expected == task.subgoals[-1]
    assert not task.is_success(World(scene))


def test_full_alfred_file_with_extra_keys_loads_the_same(alfred_dir: Path, tmp_path: Path) -> None:
    path = first_file(alfred_dir, "valid_seen", "pick_heat_then_place_in_recep")
    raw = json.loads(path.read_text())
    full = copy.deepcopy(raw)
    full["images"] = [{"high_idx": 0, "image_name": "000000000.jpg", "low_idx": 0}]
    full["plan"]["low_actions"] = [{"api_action": {"action": "LookDown_15"}, "high_idx": 0}]
    full["pddl_params"]["object_target_extra"] = "ignored"
    full["scene"]["extra"] = 1
    out = tmp_path / "traj_data.json"
    out.write_text(json.dumps(full))
    a, b = load_trajectory(path), load_trajectory(out)
    assert (a.task_id, a.high_pddl, a.object_poses, a.annotations) == (
        b.task_id,
        b.high_pddl,
        b.object_poses,
        b.annotations,
    )
    assert map_high_pddl(a) == map_high_pddl(b)


# -- prefix tasks -------------------------------------------------------------------------------------
def test_prefix_tasks(alfred_dir: Path) -> None:
    path = first_file(alfred_dir, "valid_seen", "pick_two_obj_and_place")
    traj = load_trajectory(path)
    scene = reconstruct_scene(traj)
    (full,) = tasks_from_trajectory(traj, scene)
    n = full.n_subtasks
    assert n == 4
    actions = map_high_pddl(traj)
    subgoals = subgoals_from_plan(actions)
    steps = steps_without_noop(traj)
    sub_end = [i for i, s in enumerate(steps) if s["discrete_action"]["action"] != "GotoLocation"]

    prefixes = tasks_from_trajectory(traj, scene, (1, 3))
    assert [t.n_subtasks for t in prefixes] == [1, 2, 3]
    for k, t in enumerate(prefixes, start=1):
        assert t.prefix == k and t.key == f"{traj.task_id}@{k}" and t.task_id == traj.task_id
        assert t.task_type == traj.task_type
        assert t.goal == subgoals[k - 1]
        assert t.subgoals == tuple(subgoals[:k])
        assert len(t.expert_actions) == sub_end[k - 1] + 1
        expected = {norm(" ".join(a["high_descs"][: sub_end[k - 1] + 1])) for a in traj.annotations}
        assert {norm(i) for i in t.instructions} == expected
        ok, err = replay(t)
        assert ok, err
        assert not t.is_success(World(scene))
    # instructions grow with k
    assert (
        len(prefixes[0].instructions[0]) < len(prefixes[1].instructions[0]) < len(prefixes[2].instructions[0])
    )

    everything = tasks_from_trajectory(traj, scene, (1, 10))
    assert [t.n_subtasks for t in everything] == [1, 2, 3, 4]
    last = everything[-1]
    assert last.prefix is None and last.key == traj.task_id
    assert last.goal == full.goal  # the full-length entry keeps ALFRED's goal
    assert last.expert_actions == full.expert_actions
    assert tasks_from_trajectory(traj, scene, (5, 6)) == []
    assert [t.n_subtasks for t in tasks_from_trajectory(traj, scene, (3, 3))] == [3]


def test_prefix_goal_differs_from_plan_state_only_at_full_length(alfred_dir: Path) -> None:
    """A sliced task: intermediate goals come from the plan, the last from ALFRED's pddl_params."""
    path = first_file(alfred_dir, "valid_seen", "pick_clean_then_place_in_recep")
    traj = load_trajectory(path)
    assert traj.pddl_params["object_sliced"]
    scene = reconstruct_scene(traj)
    tasks = tasks_from_trajectory(traj, scene, (1, 99))
    n = len(tasks)
    assert n == tasks[-1].n_subtasks >= 3
    assert tasks[0].goal[0].__class__.__name__ == "Holding"  # the first sub-task picks up the knife
    assert any(c.__class__.__name__ == "Sliced" for c in tasks[1].goal)
    for t in tasks:
        ok, err = replay(t)
        assert ok, (t.key, err)


def test_parse_subtask_range() -> None:
    assert parse_subtask_range("1-6") == (1, 6)
    assert parse_subtask_range("3") == (3, 3)
    assert parse_subtask_range(" 2 - 4 ") == (2, 4)
    assert parse_subtask_range(None) is None
    assert parse_subtask_range((2, 5)) == (2, 5)
    for bad in ("0-3", "5-2", "a-b", "1-", "-3", "", "1..6", "0"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_subtask_range(bad)


# -- whole splits -------------------------------------------------------------------------------------
def test_load_split_valid_seen(alfred_dir: Path) -> None:
    report = load_split(alfred_dir, "valid_seen")
    assert report.split == "valid_seen"
    assert report.trajectories == N_VALID_SEEN
    n_skipped = sum(report.skipped.values())
    assert len(report.tasks) + n_skipped == N_VALID_SEEN
    assert n_skipped <= 3
    assert set(report.examples) == set(report.skipped)
    for reason, path in report.examples.items():
        assert Path(path).is_file() and reason
    assert {t.task_type for t in report.tasks} == set(TASK_TYPES)
    assert len({t.task_id for t in report.tasks}) == len(report.tasks)
    assert all(t.prefix is None and t.source.endswith("traj_data.json") for t in report.tasks)
    s = report.summary()
    assert s.startswith(f"valid_seen: {N_VALID_SEEN} trajectories -> {len(report.tasks)} tasks")
    if n_skipped:
        assert f"could not use {n_skipped}" in s
        for reason in report.skipped:
            assert reason in s
    # the scene reconstruction agrees with where the plans pick things up from
    assert report.agreement.checked > 200
    assert report.agreement.agreed / report.agreement.checked >= 0.9
    # cached per process, and the same key for an equivalent path
    assert load_split(str(alfred_dir) + "/", "valid_seen") is report


def test_load_split_prefixes_cover_every_k(alfred_dir: Path) -> None:
    full = load_split(alfred_dir, "valid_seen")
    prefixes = load_split(alfred_dir, "valid_seen", subtasks="1-10")
    n_of = {t.task_id: t.n_subtasks for t in full.tasks}
    assert len(prefixes.tasks) == sum(min(n, 10) for n in n_of.values())
    by_id: dict[str, list[int]] = {}
    for t in prefixes.tasks:
        by_id.setdefault(t.task_id, []).append(t.n_subtasks)
        assert t.prefix == (t.n_subtasks if t.n_subtasks < n_of[t.task_id] else None)
    assert all(ks == list(range(1, min(n_of[i], 10) + 1)) for i, ks in by_id.items())
    assert max(n_of.values()) >= 6


def test_replay_of_alfred_plans_reaches_success(alfred_dir: Path) -> None:
    report = load_split(alfred_dir, "valid_seen")
    results = [replay(t) for t in report.tasks]
    n_ok = sum(ok for ok, _ in results)
    # skipped trajectories count as failures
    assert n_ok / report.trajectories >= 0.95, [e for ok, e in results if not ok]


# -- bad input ----------------------------------------------------------------------------------------
def test_missing_alfred_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_split(missing, "valid_seen")


def test_unknown_split_lists_the_splits(alfred_dir: Path) -> None:
    with pytest.raises(ValueError, match="valid_sene") as exc:
        load_split(alfred_dir, "valid_sene")
    for s in SPLITS:
        assert s in str(exc.value)


def test_known_split_not_on_disk(alfred_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="valid_unseen"):
        load_split(alfred_dir, "valid_unseen")


def test_split_dir_without_files(tmp_path: Path) -> None:
    (tmp_path / "json_2.1.0" / "valid_seen" / "some_task").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="traj_data.json"):
        load_split(tmp_path / "json_2.1.0", "valid_seen")


def test_trajectory_file_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_trajectory(tmp_path / "nothing.json")


def write(tmp_path: Path, name: str, data: dict | str) -> Path:
    path = tmp_path / name / "traj_data.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture
def real(alfred_dir: Path) -> tuple[Path, dict]:
    path = first_file(alfred_dir, "valid_seen", "pick_and_place_simple")
    return path, json.loads(path.read_text())


def test_truncated_json(tmp_path: Path, real: tuple[Path, dict]) -> None:
    text = real[0].read_text()
    bad = write(tmp_path, "truncated", text[: len(text) // 2])
    with pytest.raises(ValueError, match="not valid JSON") as exc:
        load_trajectory(bad)
    assert str(bad) in str(exc.value)


def test_not_an_object(tmp_path: Path) -> None:
    bad = write(tmp_path, "list", "[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_trajectory(bad)


@pytest.mark.parametrize(
    "field", ["task_id", "task_type", "pddl_params", "scene", "plan", "turk_annotations"]
)
def test_missing_field(tmp_path: Path, real: tuple[Path, dict], field: str) -> None:
    raw = copy.deepcopy(real[1])
    del raw[field]
    bad = write(tmp_path, "missing", raw)
    with pytest.raises(ValueError, match=f"missing field '{field}'") as exc:
        load_trajectory(bad)
    assert str(bad) in str(exc.value)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda r: r["plan"].__setitem__("high_pddl", []), "plan.high_pddl"),
        (lambda r: r["plan"].pop("high_pddl"), "plan.high_pddl"),
        (lambda r: r["scene"].pop("object_poses"), "object_poses"),
        (lambda r: r["turk_annotations"].__setitem__("anns", []), "turk_annotations.anns"),
        (
            lambda r: r["plan"]["high_pddl"][1].pop("discrete_action"),
            re.escape("plan.high_pddl[1].discrete_action"),
        ),
        (lambda r: r.__setitem__("task_type", "pick_and_eat"), "unknown task_type 'pick_and_eat'"),
    ],
    ids=["empty_plan", "no_high_pddl", "no_object_poses", "no_anns", "bad_step", "unknown_task_type"],
)
def test_malformed_fields(tmp_path: Path, real: tuple[Path, dict], edit, pattern: str) -> None:
    raw = copy.deepcopy(real[1])
    edit(raw)
    bad = write(tmp_path, "bad", raw)
    with pytest.raises(ValueError, match=pattern) as exc:
        load_trajectory(bad)
    assert str(bad) in str(exc.value)


def test_unknown_task_type_lists_the_types(tmp_path: Path, real: tuple[Path, dict]) -> None:
    raw = copy.deepcopy(real[1])
    raw["task_type"] = "pick_and_eat"
    with pytest.raises(ValueError) as exc:
        load_trajectory(write(tmp_path, "tt", raw))
    assert all(t in str(exc.value) for t in TASK_TYPES)


def test_unknown_object_type_in_plan(tmp_path: Path, real: tuple[Path, dict]) -> None:
    raw = copy.deepcopy(real[1])
    idx = next(
        i for i, s in enumerate(raw["plan"]["high_pddl"]) if s["discrete_action"]["action"] == "PickupObject"
    )
    raw["plan"]["high_pddl"][idx]["discrete_action"]["args"] = ["unicorn"]
    traj = load_trajectory(write(tmp_path, "unicorn", raw))
    with pytest.raises(ValueError, match=re.escape(f"plan.high_pddl[{idx}]") + ".*'unicorn'") as exc:
        map_high_pddl(traj)
    assert traj.path in str(exc.value)


def test_split_with_broken_files_reports_each_skip(tmp_path: Path, real: tuple[Path, dict]) -> None:
    path, raw = real
    split = tmp_path / "json_2.1.0" / "valid_seen"
    write(split / "good_task", "trial_1", raw)
    text = path.read_text()
    truncated = write(split / "truncated_task", "trial_2", text[: len(text) // 2])
    no_plan = copy.deepcopy(raw)
    del no_plan["plan"]
    missing = write(split / "zz_no_plan_task", "trial_3", no_plan)

    report = load_split(tmp_path / "json_2.1.0", "valid_seen")
    assert report.trajectories == 3
    assert len(report.tasks) == 1 and report.tasks[0].task_id == raw["task_id"]
    assert sum(report.skipped.values()) == 2
    reasons = {r: report.examples[r] for r in report.skipped}
    assert any("not valid JSON" in r and p == str(truncated) for r, p in reasons.items()), reasons
    assert any("'plan'" in r and p == str(missing) for r, p in reasons.items()), reasons
    s = report.summary()
    assert "3 trajectories -> 1 tasks" in s and "could not use 2" in s


def test_split_with_one_broken_file(tmp_path: Path, real: tuple[Path, dict]) -> None:
    path, raw = real
    split = tmp_path / "json_2.1.0" / "valid_seen"
    write(split / "a_task", "trial_1", raw)
    bad = dict(raw, task_type="pick_and_eat")
    write(split / "b_task", "trial_2", bad)
    report = load_split(tmp_path / "json_2.1.0", "valid_seen")
    assert report.trajectories == 2 and len(report.tasks) == 1
    assert sum(report.skipped.values()) == 1
    (reason,) = report.skipped
    assert "pick_and_eat" in reason
    assert "could not use 1" in report.summary()


def test_prefixes_of_replayable_tasks_replay(alfred_dir: Path) -> None:
    """Every prefix of a task whose ALFRED plan reaches success reaches its own (plan-derived) goal."""
    full = load_split(alfred_dir, "valid_seen")
    prefixes = load_split(alfred_dir, "valid_seen", subtasks="1-10")
    good = {t.task_id for t in full.tasks if replay(t)[0]}
    assert len(good) > 240
    checked = 0
    for t in prefixes.tasks:
        if t.task_id in good:
            ok, err = replay(t)
            assert ok, (t.key, err)
            checked += 1
    assert checked > 800

"""AlfredLite-v1 (issue 12): plannable randomized states with matching instructions, and the refusal of
datasets and models recorded with another action vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

import rgvlm_gym  # noqa: F401
from rgvlm_gym.data.storage import DatasetError, open_dataset
from rgvlm_gym.envs.versions import ENV_ID, VocabularyMismatchError, check_action_names, current_action_names

# types the full ALFRED ontology added to the vocabulary of rgvlm-gym's first AlfredLite-v0
_ADDED = ("papertowel", "toiletpaperroll", "toaster", "laundryhamper", "paintinghanger")


def old_v0_vocabulary() -> list[str]:
    return [a for a in current_action_names() if a.split(" ", 1)[1] not in _ADDED and a != "SliceObject egg"]


def test_old_vocabulary_is_229_actions_and_refused() -> None:
    old = old_v0_vocabulary()
    assert len(old) == 229 and len(current_action_names()) == 240
    with pytest.raises(VocabularyMismatchError, match=r"229 actions there, 240 in rgvlm_gym/AlfredLite-v1"):
        check_action_names(old, "dataset 'x'")
    with pytest.raises(VocabularyMismatchError, match="it has 229 actions"):
        check_action_names(229, "this model")
    check_action_names(current_action_names(), "x")
    check_action_names(240, "x")


@pytest.mark.parametrize("subtasks", ["1-6", None])
def test_randomized_resets_plan_and_instructions_match(alfred_dir: Path, subtasks: str | None) -> None:
    env = gym.make(ENV_ID, tasks="alfred", alfred_dir=str(alfred_dir), split="valid_seen", subtasks=subtasks, randomize_init=True).unwrapped
    sources = set()
    for seed in range(60):
        obs, info = env.reset(seed=seed)
        src = info["task"]["instruction_source"]
        sources.add(src)
        human = {" ".join(t.split()) for t in env.task.instructions}
        if subtasks:  # step text describing the original placements is replaced
            assert src == "regenerated" and obs["instruction"] not in human
        else:  # goal-level text is kept
            assert src == "dataset" and obs["instruction"] in human
        for a in env.expert_plan():  # never raises after a reset, and solves the task
            obs, _, terminated, _, info = env.step(a)
        assert info["success"] and terminated
    assert len(sources) == 1


def test_v0_alias_accepts_alfred_data(alfred_dir: Path) -> None:
    env = gym.make("rgvlm_gym/AlfredLite-v0", tasks="alfred", alfred_dir=str(alfred_dir), split="valid_seen").unwrapped
    assert env.action_names == current_action_names()
    for i in range(0, env.num_tasks, 25):
        env.reset(seed=i, options={"task_index": i})
        assert env.expert_plan()


def _metadata_file(dataset_id: str) -> Path:
    import minari

    ds = minari.load_dataset(dataset_id)
    return Path(ds.storage.data_path) / "metadata.json"


def test_dataset_of_the_old_vocabulary_is_refused(tmp_path: Path) -> None:
    from rgvlm_gym.data.collect import collect_dataset

    ds = collect_dataset("test/vocab-v0", episodes=2, num_tasks=5, workers=1, seed=0, progress=False, randomize_init=True, subtasks="1-2")
    meta = open_dataset(ds.id).storage.metadata["rgvlm_gym"]
    assert meta["action_names"] == current_action_names()
    assert "regenerated" in meta["instructions"]
    path = _metadata_file(ds.id)
    raw = json.loads(path.read_text())
    inner = raw["rgvlm_gym"] if isinstance(raw["rgvlm_gym"], dict) else json.loads(raw["rgvlm_gym"])
    inner["action_names"] = old_v0_vocabulary()
    raw["rgvlm_gym"] = inner if isinstance(raw["rgvlm_gym"], dict) else json.dumps(inner)
    path.write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match="another action vocabulary.*AlfredLite-v1"):
        open_dataset(ds.id)


def test_model_of_the_old_vocabulary_is_refused() -> None:
    import d3rlpy

    from rgvlm_gym.rl.evaluation import d3rlpy_policy

    algo = d3rlpy.algos.DiscreteBCConfig().create(device="cpu")
    algo.create_impl((8,), 229)
    with pytest.raises(VocabularyMismatchError, match="this model was recorded with another action vocabulary"):
        d3rlpy_policy(algo)

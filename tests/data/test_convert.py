"""to_d3rlpy: tuple observations, reward columns, terminals vs timeouts, the embedding cache, DiscreteBC trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rgvlm_gym.data import DatasetError, iter_episodes, to_d3rlpy, write_dataset
from rgvlm_gym.data.embeddings import InstructionEmbedder


def test_buffer_format_and_terminals(proc_dataset) -> None:
    buf = to_d3rlpy(proc_dataset)
    recs = list(iter_episodes(proc_dataset, frames=False))
    assert buf.transition_count == proc_dataset.total_steps == sum(len(r) for r in recs)
    assert buf.dataset_info.action_size == proc_dataset.action_space.n == proc_dataset.recover_environment().action_space.n
    assert [tuple(s) for s in buf.dataset_info.observation_signature.shape] == [(3, 64, 64), (384,)]
    assert len(buf.episodes) == len(recs)
    for ep, rec in zip(buf.episodes, recs, strict=True):
        assert ep.terminated == rec.success
        img, emb = ep.observations
        assert img.dtype == np.uint8 and emb.dtype == np.float32
        assert np.array_equal(img[0], rec.images[0].transpose(2, 0, 1))
        assert ep.transition_count == len(rec)
        assert np.allclose(ep.rewards[: len(rec), 0], rec.rewards)
        if not rec.success:  # timeouts keep s_T so the last transition bootstraps from it
            assert np.array_equal(img[-1], rec.images[-1].transpose(2, 0, 1))
    # the last transition of a success is terminal, of a timeout not
    succ = next(i for i, r in enumerate(recs) if r.success)
    fail = next(i for i, r in enumerate(recs) if not r.success)
    picker = buf.transition_picker
    t = picker(buf.episodes[succ], len(recs[succ]) - 1)
    assert t.terminal == 1.0 and t.reward[0] == 1.0
    t = picker(buf.episodes[fail], len(recs[fail]) - 1)
    assert t.terminal == 0.0 and np.array_equal(t.next_observation[0], recs[fail].images[-1].transpose(2, 0, 1))


def test_action_masks_as_a_third_observation_element(proc_dataset) -> None:
    buf = to_d3rlpy(proc_dataset, action_masks=True)
    n = proc_dataset.action_space.n
    assert [tuple(s) for s in buf.dataset_info.observation_signature.shape] == [(3, 64, 64), (384,), (n,)]
    recs = list(iter_episodes(proc_dataset, frames=False))
    for ep, rec in zip(buf.episodes, recs, strict=True):
        _, _, mask = ep.observations
        assert mask.dtype == np.float32 and np.array_equal(mask, rec.action_masks[: len(mask)].astype(np.float32))
        # the stored mask is what the env said: a valid action was admissible, a refused one was not
        for t, a in enumerate(rec.actions):
            assert bool(rec.action_masks[t, a]) == (rec.action_errors[t] == "")


def test_reward_column_and_resize(proc_dataset) -> None:
    recs = []
    for r in iter_episodes(proc_dataset, frames=False):
        r.extra["lvlm_rewards"] = np.full(len(r), 0.5, np.float32)
        r.frames = None
        recs.append(r)
    ds = write_dataset("test/rel-v0", recs, source=proc_dataset, extra_step_columns=["lvlm_rewards"], frames=False)
    buf = to_d3rlpy(ds, reward="lvlm_rewards", image_size=32)
    assert [tuple(s) for s in buf.dataset_info.observation_signature.shape] == [(3, 32, 32), (384,)]
    ep = buf.episodes[0]
    assert np.allclose(ep.rewards[: ep.transition_count], 0.5)
    with pytest.raises(DatasetError, match="no reward column 'lvlm_reward'.*\\['rewards', 'lvlm_rewards'\\]"):
        to_d3rlpy(ds, reward="lvlm_reward")


def test_embeddings_are_cached_on_disk(tmp_path) -> None:
    e1 = InstructionEmbedder(cache=tmp_path)
    v = e1(["Put the apple in the fridge.", "Turn on the lamp."])
    assert v.shape == (2, 384) and len(list(tmp_path.glob("*.npz"))) == 1
    e2 = InstructionEmbedder(cache=tmp_path)
    e2._models = {}  # a fresh process: the model must not be needed for cached texts
    e2._model = lambda: pytest.fail("cached instructions were recomputed")  # type: ignore[method-assign]
    assert np.allclose(e2(["Turn on the lamp."])[0], v[1])
    assert not list(tmp_path.glob("*.tmp"))


def test_discrete_bc_trains_on_the_buffer(proc_dataset) -> None:
    import d3rlpy

    from rgvlm_gym.rl import LanguageConditionedEncoderFactory

    buf = to_d3rlpy(proc_dataset)
    factory = LanguageConditionedEncoderFactory(filters=[[8, 8, 4], [16, 4, 2]], feature_size=32, language_feature_size=32)
    bc = d3rlpy.algos.DiscreteBCConfig(encoder_factory=factory, batch_size=16, learning_rate=1e-3).create(device="cpu")
    # d3rlpy 2.8.1's build_with_dataset passes only the first shape of tuple observations (fit() passes
    # them all), so build the impl as fit() does
    bc.create_impl(buf.sample_transition().observation_signature.shape, buf.dataset_info.action_size)
    batch = buf.sample_transition_batch(64)
    before = float(np.mean(bc.predict(batch.observations) == batch.actions[:, 0]))
    losses = [bc.update(buf.sample_transition_batch(16))["loss"] for _ in range(200)]
    assert np.isfinite(losses).all() and np.mean(losses[-40:]) < np.mean(losses[:40])
    after = float(np.mean(bc.predict(batch.observations) == batch.actions[:, 0]))
    assert after >= before


def test_cli_export_round_trips_through_d3rlpy(proc_dataset, tmp_path, monkeypatch, capsys) -> None:
    import d3rlpy

    from rgvlm_gym.cli import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(Path(proc_dataset.storage.data_path).parents[2]))
    out = tmp_path / "buffer.h5"
    assert main(["dataset", "to-d3rlpy", "test/proc-mixed-v0", "--out", str(out)]) == 0
    assert "transitions" in capsys.readouterr().out
    buf = d3rlpy.dataset.ReplayBuffer.load(str(out), d3rlpy.dataset.InfiniteBuffer())
    assert buf.transition_count == proc_dataset.total_steps
    assert main(["dataset", "to-d3rlpy", "test/proc-mixed-v0", "--out", str(out)]) == 1  # no --force
    assert "exists" in capsys.readouterr().err
    assert main(["dataset", "to-d3rlpy", "test/proc-mixed-v0", "--out", str(out), "--reward", "lvlm", "--force"]) == 1
    assert "no reward column 'lvlm'" in capsys.readouterr().err

"""The song-folder driver's functions and the toy image task, in process (separate_songs.py and run_basis_sep.py
run them end to end in test_example.py and test_run_basis_sep.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import write_wav
from core.config import load_config
from core.errors import UserError
from separation import song_folders as sf
from separation.bss_eval import METRICS, Scores
from separation.separate import STATE_NAME


def make_song(folder, with_sources=True):
    folder.mkdir(parents=True)
    write_wav(folder / "mix.wav", np.zeros(1600, np.float32))
    if with_sources:
        for name in ("piano", "violin"):
            write_wav(folder / f"{name}.wav", np.zeros(1600, np.float32))
    return folder


def test_find_songs_at_every_depth_and_refuses_colliding_names(tmp_path):
    a = make_song(tmp_path / "root" / "test" / "a")
    b = make_song(tmp_path / "root" / "b")
    assert sf.find_songs(tmp_path / "root") == sorted([b, a])
    assert sf.find_songs(a) == [a]
    make_song(tmp_path / "root" / "train" / "a")
    with pytest.raises(UserError, match="called a"):
        sf.find_songs(tmp_path / "root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no song folders"):
        sf.find_songs(tmp_path / "empty")


def test_shards_are_disjoint_and_cover_every_song():
    songs = [f"s{i}" for i in range(7)]
    parts = [sf.shard(songs, *sf.parse_shard(f"{i}/3")) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(songs) and sum(len(p) for p in parts) == len(songs)
    assert sf.parse_shard(None) == (1, 1)
    for bad in ("0/2", "3/2", "a/b", "2"):
        with pytest.raises(UserError, match="--shard"):
            sf.parse_shard(bad)


def test_a_song_is_done_only_when_its_scores_exist_and_no_resume_state_is_left(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    assert not sf.song_done(folder, ("piano", "violin"), with_scores=True)
    (folder / "metrics.json").write_text("{}")
    assert sf.song_done(folder, ("piano", "violin"), with_scores=True)
    (folder / STATE_NAME).write_bytes(b"")  # a run stopped after writing its scores: not done
    assert not sf.song_done(folder, ("piano", "violin"), with_scores=True)
    (folder / STATE_NAME).unlink()
    assert not sf.baselines_done(folder)
    for method in sf.METHODS[1:]:
        (folder / sf.BASELINE_DIR / method).mkdir(parents=True)
        (folder / sf.BASELINE_DIR / method / "metrics.json").write_text("{}")
    assert sf.baselines_done(folder)


def scores_of(medians_by_target):
    """Scores whose every frame of a target holds the given value for every metric (so its median is that value)."""
    targets = list(medians_by_target)
    values = {m: np.array([[medians_by_target[t]] * 3 for t in targets], dtype=float) for m in METRICS}
    return Scores(targets, values)


def test_aggregate_is_the_median_over_songs_of_the_per_song_medians():
    by_method = {"BASIS": {"a": scores_of({"piano": 1.0, "violin": 4.0}), "b": scores_of({"piano": 3.0, "violin": 8.0}),
                           "c": scores_of({"piano": 10.0, "violin": 5.0})},
                 "mixture": {"a": scores_of({"piano": 0.0, "violin": 1.0})}}
    table = sf.aggregate_table(by_method, ("piano", "violin"))
    assert table.loc[("BASIS", "piano"), "SDR"] == 3.0 and table.loc[("BASIS", "violin"), "SAR"] == 5.0
    assert table.loc[("BASIS", "piano"), "songs"] == 3 and table.loc[("mixture", "violin"), "ISR"] == 1.0
    text = sf.format_table(table, "title")
    assert text.splitlines()[1].split() == ["method", "source", *METRICS, "songs"]
    medians = sf.song_medians(by_method["BASIS"])
    np.testing.assert_array_equal(medians.values["SDR"], [[1.0, 3.0, 10.0], [4.0, 8.0, 5.0]])


def test_the_toy_task_mixes_pairs_in_model_units_and_scores_the_better_order(tmp_path):
    from separation.toy import image_task

    rng = np.random.default_rng(0)
    path = tmp_path / "digits.npz"
    np.savez(path, train=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
             test=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8))
    config = load_config("configs/pretrained_ncsn.yml")
    for model, offset in (("ncsn", 0.0), ("glow", 0.5)):
        task = image_task(str(path), config, 3, model)
        assert (task.config.height, task.config.width, task.n_mixtures) == (8, 8, 3)
        np.testing.assert_allclose(task.mixture, task.references.mean(axis=0) - offset, atol=1e-6)
        swapped = np.stack([task.references[1], task.references[0]])  # both sources, the wrong way round
        swapped = np.clip(swapped + 0.001 * rng.standard_normal(swapped.shape), 0, 1)
        values, was_swapped, baseline = task.scores(swapped)
        assert was_swapped.all() and values.min() > 50  # reordered: an RMS error of 0.001 is 60 dB
        assert baseline.max() < 20  # the mixture for both: far from either random image
    with pytest.raises(UserError, match="use_logit"):
        image_task(str(path), dataclasses.replace(config, use_logit=True, alpha=0.05), 3, "ncsn")

"""Faults injected on purpose: damaged checkpoints, a run killed in the middle, a resume with other settings.

The rule they check (README, "Bad input"): no traceback for bad input, nothing half-done that a re-run treats as
done, nothing in a run folder that describes another run.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, music_like, run_script, write_wav
from core.errors import UserError

PRIOR = ROOT / "pretrained" / "piano"


def truncate(path: Path, fraction: float = 0.5) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(int(size * fraction))


def flip_bytes(path: Path, at: float = 0.5, n: int = 8) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def only(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


DAMAGES = {
    "data file cut in half": lambda ckpt: truncate(only(ckpt, "*.data-*")),
    "flipped bytes in the data file": lambda ckpt: flip_bytes(only(ckpt, "*.data-*")),
    "index cut in half": lambda ckpt: truncate(only(ckpt, "*.index")),
    "flipped bytes in the index": lambda ckpt: flip_bytes(only(ckpt, "*.index"), at=0.3),
    "data file missing": lambda ckpt: only(ckpt, "*.data-*").unlink(),
    "index missing": lambda ckpt: only(ckpt, "*.index").unlink(),
}


@pytest.fixture
def damaged_prior(tmp_path, request):
    """A copy of the shipped piano prior with one damage applied to its checkpoint files."""
    copy = tmp_path / "prior"
    shutil.copytree(PRIOR, copy)
    DAMAGES[request.param](copy / "tf_ckpts")
    return copy


@pytest.mark.parametrize("damaged_prior", list(DAMAGES), indirect=True)
def test_a_damaged_score_network_checkpoint_is_a_one_line_error(damaged_prior):
    from ncsn.checkpoints import restore_score_network

    with pytest.raises(UserError) as caught:
        restore_score_network(damaged_prior)
    message = str(caught.value)
    assert "\n" not in message and str(damaged_prior) in message
    assert any(words in message for words in ("truncated or corrupt", "no checkpoint that exists")), message


def tiny_checkpoint(folder: Path):
    """A two-layer model and its checkpoint in ``folder/tf_ckpts`` (what restore_model_weights reads for Glow priors,
    noise-conditioned Glow levels and --init_from)."""
    import tf_keras as keras

    from core.training import tf

    model = keras.Sequential([keras.layers.Dense(4, input_shape=(3,)), keras.layers.Dense(2)])
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(folder / "tf_ckpts"), max_to_keep=1)
    manager.save()
    return model


@pytest.mark.parametrize("damage", ["data file cut in half", "flipped bytes in the data file", "index cut in half"])
def test_a_damaged_flow_or_init_from_checkpoint_is_a_one_line_error(damage, tmp_path):
    from core.training import restore_model_weights

    model = tiny_checkpoint(tmp_path)
    assert restore_model_weights(model, tmp_path / "tf_ckpts").endswith("ckpt-1")  # intact: restores
    DAMAGES[damage](tmp_path / "tf_ckpts")
    with pytest.raises(UserError, match="truncated or corrupt"):
        restore_model_weights(model, tmp_path / "tf_ckpts")


def test_a_damaged_latest_training_checkpoint_stops_the_resume_with_one_line(tmp_path):
    import tf_keras as keras

    from core.config import Config
    from core.training import LATEST_DIR, Trainer, make_optimizer, tf

    def trainer():
        model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])

        def loss(batch, training):
            return tf.reduce_sum((model(batch[0]) - batch[1]) ** 2, axis=-1)

        return Trainer(model, loss, make_optimizer(Config(learning_rate=0.01, optimizer="adam")), tmp_path,
                       global_batch_size=8)

    x = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(8)
    trainer().fit(data, data, n_epochs=1)
    DAMAGES["data file cut in half"](tmp_path / LATEST_DIR)
    with pytest.raises(UserError, match="truncated or corrupt.*new --output"):
        trainer().restore()


def test_the_separation_script_with_a_truncated_prior_exits_with_one_line(tmp_path):
    copy = tmp_path / "prior"
    shutil.copytree(PRIOR, copy)
    DAMAGES["data file cut in half"](copy / "tf_ckpts")
    song = make_song(tmp_path / "song")
    proc = separate(copy, song, tmp_path / "out")
    assert proc.returncode == 2
    assert_one_line_error(proc, "truncated or corrupt")


def make_song(folder: Path) -> Path:
    piano, violin = music_like(2.5, seed=1, f0=110.0), music_like(2.5, seed=2, f0=440.0)
    write_wav(folder / "piano.wav", piano)
    write_wav(folder / "violin.wav", violin)
    write_wav(folder / "mix.wav", piano + violin)
    return folder


def separate_command(prior: Path, song: Path, output: Path, *extra: str) -> list[str]:
    return ["run_basis_sep.py", str(prior), str(prior), "--song_dir", str(song), "--model", "ncsn",
            "--config", str(prior / "config.yml"), "--output", str(output), "--T", "3", "--no_progress", *extra]


def separate(prior: Path, song: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_script(*separate_command(prior, song, output, *extra), timeout=600)


def kill_when(args: list[str], ready, settle: float = 0.0) -> None:
    """Run a script of the suite (``args`` after the interpreter), wait until ``ready()`` holds (then ``settle``
    seconds more), and SIGKILL it; the test fails if the script ended before it could be killed."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(settle)
    assert proc.poll() is None, f"{args[0]} ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_a_separation_killed_during_a_level_resumes_to_the_same_result(tmp_path):
    """SIGKILL once the first noise level is saved; the re-run resumes and ends bit-identical to a run that was
    never interrupted (the run is seeded)."""
    song = make_song(tmp_path / "song")
    whole = separate(PRIOR, song, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = tmp_path / "killed"
    kill_when(separate_command(PRIOR, song, killed), (killed / "basis_state.npz").is_file)
    assert not (killed / "results.npz").exists()  # nothing a re-run would take as done

    resumed = separate(PRIOR, song, killed)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resum" in resumed.stderr.lower()
    assert not (killed / "basis_state.npz").exists()
    with np.load(tmp_path / "whole" / "results.npz") as a, np.load(killed / "results.npz") as b:
        for key in ("x1", "x2"):
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.slow
def test_a_training_killed_during_an_epoch_resumes_to_the_same_weights(tmp_path):
    """SIGKILL during epoch 2 of a run with spectrogram augmentation: the re-run resumes from epoch 1's checkpoint
    and ends with the same weights, bit for bit, as a run that was never interrupted (the data order, the
    augmentation and the loss's noise all continue from where they were)."""
    from datasets import preprocessing as pp

    rng = np.random.default_rng(0)
    for split, n in (("train", 150), ("test", 6)):
        pp.write_tfrecord(tmp_path / "piano" / split / "a.tfrecord",
                          rng.uniform(-100, 20, (n, 96, 64)).astype(np.float32), "a.wav", "dB")
    common = ["train_ncsn.py", "--dataset", str(tmp_path / "piano"), "--config", "configs/tiny_ncsn.yml",
              "--n_filters", "4", "--batch_size", "3", "--sample_every", "0", "--T", "1", "--n_epochs", "2",
              "--augment_gain_db", "3", "--augment_tilt_db", "4"]
    whole = run_script(*common, "--output", str(tmp_path / "whole"), timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = tmp_path / "killed"
    kill_when([*common, "--output", str(killed)], lambda: "epoch 1/2" in read(killed / "out.log"),
              settle=1.0)  # into epoch 2
    assert "epoch 2/2" not in read(killed / "out.log")

    resumed = run_script(*common, "--output", str(killed), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = read(killed / "out.log")
    assert "resumed from" in log and "(epoch 1 done" in log and "epoch 2/2: train loss" in log
    from core.training import LATEST_DIR, tf

    whole_ckpt = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "whole" / LATEST_DIR)))
    killed_ckpt = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(killed / LATEST_DIR)))
    names = [n for n in whole_ckpt.get_variable_to_shape_map() if n.startswith("model/")]
    assert names
    for name in names:
        np.testing.assert_array_equal(whole_ckpt.get_tensor(name), killed_ckpt.get_tensor(name), err_msg=name)


def read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


@pytest.mark.slow
def test_a_dataset_build_killed_during_a_piece_resumes_to_the_same_files(tmp_path):
    """SIGKILL once the first piece is written; the re-run keeps it, renders the rest, and every wav is the same,
    byte for byte, as in a build that was never interrupted."""
    from datasets import midi_dataset as md

    if shutil.which("fluidsynth") is None or not Path(md.DEFAULT_SOUNDFONT).is_file():
        pytest.skip("needs FluidSynth and the FluidR3 SoundFont (./setup.sh installs them)")
    pieces = ["bach/bwv165.6", "bach/bwv255", "bach/bwv265"]
    command = ["datasets/build_midi_dataset.py", "--pieces", *pieces, "--jobs", "1", "--no_progress"]
    whole = run_script(*command, "--output", str(tmp_path / "whole"), timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = tmp_path / "killed"
    kill_when([*command, "--output", str(killed)], lambda: bool(list(killed.glob("tfrecords/mix/*/*.tfrecord"))))

    resumed = run_script(*command, "--output", str(killed), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    wavs = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*.wav"))
    assert len(wavs) == 3 * 3  # mix, piano, violin of each piece
    assert wavs == sorted(p.relative_to(killed) for p in killed.rglob("*.wav"))
    for wav in wavs:
        assert (killed / wav).read_bytes() == (tmp_path / "whole" / wav).read_bytes(), wav
    assert not list(killed.rglob("*.partial"))


def test_a_file_interrupted_while_written_is_never_left_under_its_name(tmp_path):
    """What a kill or a full disk during the writing of results, spectrograms or states amounts to: the writer
    stops in the middle. Nothing is left under the final name (and an earlier complete file stays as it was)."""
    from core.rundir import atomic_output

    target = tmp_path / "results.npz"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as tmp, open(tmp, "wb") as handle:
            handle.write(b"half of the")
            raise KeyboardInterrupt
    assert not target.exists() and not list(tmp_path.glob("*.partial"))
    with atomic_output(target) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, x=np.arange(3))
    with pytest.raises(OSError):
        with atomic_output(target) as tmp, open(tmp, "wb") as handle:
            handle.write(b"the next version, cut short")
            raise OSError(28, "No space left on device")
    with np.load(target) as kept:
        np.testing.assert_array_equal(kept["x"], np.arange(3))


def test_two_processes_writing_one_file_at_once_do_not_take_each_others_temporary_file(tmp_path, monkeypatch):
    """Two benchmark shards that render the same piece write the same wav at the same moment. The second writer
    finishing while the first is still writing must leave the first able to finish (each has its own temporary
    file), and the file under the final name is always a complete one."""
    import soundfile as sf

    from core import rundir
    from datasets.midi_dataset import write_wav_int16

    target = tmp_path / "piano.wav"
    first, second = np.arange(1600, dtype=np.int16), np.arange(1600, dtype=np.int16)[::-1].copy()
    other_pid = os.getppid()  # a process that runs: its temporary file is not taken for a killed one's
    with rundir.atomic_output(target) as tmp:
        sf.write(str(tmp), first, 16000, subtype="PCM_16", format="WAV")
        monkeypatch.setattr(rundir.os, "getpid", lambda: other_pid)  # the other shard writes the same file meanwhile
        write_wav_int16(target, second)
        np.testing.assert_array_equal(sf.read(target, dtype="int16")[0], second)
    np.testing.assert_array_equal(sf.read(target, dtype="int16")[0], first)
    assert not list(tmp_path.glob("*.partial"))


def test_a_rewrite_removes_the_temporary_files_of_killed_writers_only(tmp_path):
    """A process killed while writing leaves ``.<name>.<pid>.partial``; the next write of that file removes it, but
    not the temporary file of a process that still runs (another shard writing the same file)."""
    from core.rundir import atomic_output

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(dead.stdout), os.getppid()
    target = tmp_path / "a.npy"
    killed = tmp_path / f".a.npy.{dead_pid}.partial"
    running = tmp_path / f".a.npy.{live_pid}.partial"
    other_file = tmp_path / f".b.npy.{dead_pid}.partial"
    for path in (killed, running, other_file):
        path.write_bytes(b"half")
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert not killed.exists() and running.exists() and other_file.exists()


@pytest.mark.slow
def test_spectrograms_killed_while_written_are_rewritten_identically(tmp_path):
    """SIGKILL of wav_to_spec.py once its first file is written; no half-written file is left under a final name,
    and the re-run (--overwrite: the folder holds results) gives the files of an uninterrupted run."""
    for i in range(12):
        write_wav(tmp_path / "audio" / f"a{i:02d}.wav", music_like(8.0, seed=i))
    command = ["datasets/wav_to_spec.py", "--use_dB", "--npy", str(tmp_path / "audio")]
    whole = run_script(*command, str(tmp_path / "whole"), timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = tmp_path / "killed"
    kill_when([*command, str(killed)], lambda: bool(list(killed.glob("*.npy"))))
    for path in killed.glob("*.npy"):  # every file under its final name is whole
        assert np.load(path).shape[1:] == (96, 64)
    assert len(list(killed.glob("*.npy"))) < 12

    again = run_script(*command, str(killed), "--overwrite", timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "whole").glob("*.npy"))
    assert len(names) == 12 and names == sorted(p.name for p in killed.glob("*.npy"))
    for name in names:
        np.testing.assert_array_equal(np.load(killed / name), np.load(tmp_path / "whole" / name))
    assert not list(killed.glob("*.partial"))


def test_a_resume_with_other_settings_is_refused_and_changes_nothing(tmp_path):
    """An unfinished separation's state is in the folder; a run with another seed is refused before it writes
    anything: the folder's config.yml still describes what the folder holds, and out.log says why."""
    song = make_song(tmp_path / "song")
    output = tmp_path / "out"
    output.mkdir()
    np.savez(output / "basis_state.npz", fingerprint=np.array("another run"), sources=np.zeros((2, 2, 96, 64, 1)))
    (output / "config.yml").write_text("# the config of the unfinished run\n")
    proc = separate(PRIOR, song, output, "--seed", "7")
    assert_one_line_error(proc, "other settings")
    assert (output / "config.yml").read_text() == "# the config of the unfinished run\n"
    assert not (output / "results.npz").exists()
    assert "error: " in (output / "out.log").read_text()


def test_a_benchmark_folder_made_with_other_settings_is_refused_and_left_as_it_is(tmp_path):
    """check_run_settings records what a results folder was made with, and refuses other settings by name."""
    from core.rundir import check_run_settings

    path = tmp_path / "run" / "settings.json"
    settings = {"priors": "/p", "T": 6, "step_lr": 0.0002, "init": "mixture", "basis_levels": None}
    check_run_settings(path, settings)                       # recorded
    check_run_settings(path, dict(settings))                 # the same settings: accepted
    recorded = path.read_text()
    with pytest.raises(UserError) as err:
        check_run_settings(path, {**settings, "T": 12, "init": "noise"}, "give another --output")
    message = str(err.value)
    assert "T 6 -> 12" in message and "init 'mixture' -> 'noise'" in message and "step_lr" not in message
    assert message.endswith("give another --output") and "\n" not in message
    with pytest.raises(UserError, match="seed None -> 1"):   # a key the record lacks is a difference too
        check_run_settings(path, {**settings, "seed": 1})
    assert path.read_text() == recorded
    path.write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        check_run_settings(path, settings)


def test_overwrite_starts_the_tensorboard_log_again(tmp_path):
    song = make_song(tmp_path / "song")
    output = tmp_path / "out"
    assert separate(PRIOR, song, output, "--n_mixed", "1").returncode == 0
    (old,) = (output / "tensorboard").glob("events.out.tfevents.*")
    again = separate(PRIOR, song, output, "--n_mixed", "1", "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    events = list((output / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0] != old


@pytest.fixture
def full_disk(tmp_path):
    """A 64 kB tmpfs mounted for the test (needs root; skipped with the reason where mounting is not allowed)."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({mounted.stderr.strip() or 'mount failed'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)


def test_a_full_disk_is_a_one_line_error_and_leaves_no_half_written_file(full_disk, tmp_path):
    for i in range(3):  # 3 x 10 s: about 180 kB of spectrograms for 64 kB of disk
        write_wav(tmp_path / "audio" / f"a{i}.wav", music_like(10.0, seed=i))
    proc = run_script("datasets/wav_to_spec.py", "--use_dB", "--npy", str(tmp_path / "audio"), str(full_disk))
    assert proc.returncode == 2
    assert_one_line_error(proc, "disk is full")
    for path in full_disk.rglob("*"):  # whatever is there is a whole spectrogram file, nothing partial
        assert not path.name.endswith(".partial")
        assert np.load(path).shape[1:] == (96, 64)

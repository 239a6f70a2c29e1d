"""The built-in example: build a small open piano/violin dataset, compute its spectrograms, draw one song.

    python run_example.py [--output example_output] [--pieces 8]

Steps (each is a script you can also run yourself; the commands are printed as they run):

1. ``datasets/build_midi_dataset.py`` renders a few Bach chorales from music21's corpus as violin (top voice) +
   piano (other voices) with FluidSynth: song folders (mix.wav, piano.wav, violin.wav) and training TFRecords;
2. ``datasets/wav_to_spec.py`` turns the test songs into dB mel-spectrogram segments (.npy);
3. one test song is loaded as the separation script will load it, and its mixture and sources are drawn
   (``OUTPUT/example_song.png``).

Re-running resumes: pieces already rendered are kept.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import core  # noqa: F401
from core.errors import UserError, run_main

ROOT = Path(__file__).resolve().parent


def run_step(title: str, args: list[str]) -> None:
    """Run one of the suite's scripts with this interpreter, showing the command; fail with its message."""
    command = [sys.executable, *args]
    print(f"\n== {title}\n$ {shlex.join(['python', *args])}", flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise UserError(f"step '{title}' failed (see its message above)")


def plot_song(song, path: Path) -> None:
    """Mel spectrograms (dB) of the mixture and each source of a song, one row each, frequency axis in Hz."""
    import numpy as np

    from separation.figures import pyplot, specshow_db

    plt = pyplot()
    rows = {"mixture": song.mix_mel, **song.sources_mel}
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 2.6 * len(rows)), sharex=True, constrained_layout=True)
    params = song.params
    valid_frames = 1 + song.n_samples // params.hop_length  # the padding of the last segment is not drawn
    for ax, (name, mel) in zip(axes, rows.items()):
        whole = np.concatenate(list(mel), axis=1)[:, :valid_frames]  # segments side by side: (n_mels, frames)
        image = specshow_db(ax, whole, params)
        ax.set_title(f"{song.name}: {name}")
    fig.colorbar(image, ax=axes, format="%+.0f dB")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", default="example_output", help="folder for everything the example writes")
    parser.add_argument("--pieces", type=int, default=8, help="chorales to render")
    args = parser.parse_args(argv)
    if args.pieces < 2:
        raise UserError("--pieces must be at least 2 (one train and one test piece)")
    start = time.perf_counter()
    output = (ROOT / args.output).resolve() if not Path(args.output).is_absolute() else Path(args.output)
    dataset = output / "open_duos"

    run_step("1/3 render piano/violin duos from music21's Bach chorales",
             ["datasets/build_midi_dataset.py", "--output", str(dataset), "--composers", "bach",
              "--max_pieces", str(args.pieces)])
    songs = dataset / "songs" / "test"
    run_step("2/3 mel spectrograms of the test songs",
             ["datasets/wav_to_spec.py", str(songs), str(output / "spectrograms"), "--use_dB", "--npy",
              "--overwrite"])

    print("\n== 3/3 load a test song as run_basis_sep.py will, and draw it", flush=True)
    from datasets.data_loader import load_song

    song_dirs = sorted(p for p in songs.iterdir() if (p / "mix.wav").is_file()) if songs.is_dir() else []
    if not song_dirs:
        raise UserError(f"no test song in {songs}; run again with more --pieces")
    song = load_song(song_dirs[0])
    figure = output / "example_song.png"
    plot_song(song, figure)
    print(f"{song.name}: {song.n_samples / song.params.sample_rate:.1f} s, {song.n_segments} segments of "
          f"{song.params.n_mels}x{song.params.n_frames}; sources {', '.join(song.sources_mel)}; figure {figure}")
    print(f"\nexample done in {time.perf_counter() - start:.0f} s. Next: train a prior on the piano tracks with\n"
          f"  python train_ncsn.py --dataset {dataset / 'tfrecords' / 'piano'} --config configs/melspec_ncsnv1.yml")
    return 0


if __name__ == "__main__":
    run_main(main)

"""Audio files, value scaling to [0, 1] and TFRecord storage of mel spectrograms.

The transforms themselves (segments, mel spectrograms, STFT) are in :mod:`core.spectral`, whose conventions hold here;
*unit* values are dB mapped linearly to [0, 1] (or power divided by its ceiling), the first step of the model units
of :class:`datasets.data_loader.Scaling`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf

from core import import_tensorflow
from core.spectral import SCALES, SpectrogramParams
from core.errors import UserError, warn
from core.rundir import atomic_output

#: File extensions treated as audio when walking a folder (formats libsndfile reads).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au", ".snd", ".w64", ".rf64",
                    ".caf", ".mp3", ".opus")

# --------------------------------------------------------------------------------------------------- audio files

def find_audio_files(root: str | os.PathLike) -> list[Path]:
    """All audio files under ``root`` (a file or a folder), sorted; raises UserError if there are none."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root} does not exist: give an audio file or a folder of audio files")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise UserError(f"no audio files ({', '.join(AUDIO_EXTENSIONS[:4])}, ...) found under {root}")
    return files


@dataclasses.dataclass
class AudioInfo:
    """What :func:`load_audio` did to a file: its original rate and channel count."""

    path: Path
    original_rate: int
    original_channels: int
    n_samples: int  # after resampling


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> tuple[np.ndarray, AudioInfo]:
    """Read any file libsndfile reads as a float32 mono waveform at ``sample_rate``.

    Stereo (or more channels) is averaged to mono; another rate is resampled with soxr (through librosa).

    Returns:
        (audio, info): audio shaped (n_samples,), float32, in [-1, 1]; info on what was changed.
    Raises:
        UserError: the path is missing or the file is not readable audio.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        reason = str(err).strip().rsplit(": ", 1)[-1]
        raise UserError(f"{path} is not an audio file libsndfile can read ({reason})") from None
    channels = audio.shape[1]
    audio = audio.mean(axis=1) if channels > 1 else audio[:, 0]
    if rate != sample_rate:
        import librosa  # imported lazily: loading librosa costs ~1 s and most files need no resampling

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    return audio, AudioInfo(path, int(rate), int(channels), int(audio.shape[0]))


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """Write a mono float waveform (n_samples,) as 16-bit PCM wav, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(audio, dtype=np.float32), sample_rate, subtype="PCM_16")


def write_estimate(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """Write a separated or inverted waveform (n_samples,) as :func:`write_audio` does, clipped to [-1, 1] with a
    warning naming the file when it peaks above 1 (its scores are computed on the unclipped audio)."""
    peak = float(np.max(np.abs(audio), initial=0.0))
    if peak > 1.0:
        warn(f"{path} peaks at {peak:.2f}: clipped to [-1, 1] in the 16-bit wav (scores use the unclipped audio)")
    write_audio(path, np.clip(audio, -1.0, 1.0), sample_rate)


# ------------------------------------------------------------------------------------------------ value scaling

def to_unit(spec, scale: str, params: SpectrogramParams = SpectrogramParams()):
    """Map a mel spectrogram in dB or power to [0, 1] (works on numpy arrays and tf tensors).

    dB: (db - db_min) / (db_max - db_min). power: power / 10^(db_max/10).
    """
    if scale == "dB":
        return (spec - params.db_min) / (params.db_max - params.db_min)
    if scale == "power":
        return spec / params.power_max
    raise UserError(f"scale must be one of {SCALES}, got {scale!r}")


def from_unit(unit, scale: str, params: SpectrogramParams = SpectrogramParams()):
    """Inverse of :func:`to_unit`: [0, 1] values back to dB or power (numpy or tf)."""
    if scale == "dB":
        return unit * (params.db_max - params.db_min) + params.db_min
    if scale == "power":
        return unit * params.power_max
    raise UserError(f"scale must be one of {SCALES}, got {scale!r}")


# -------------------------------------------------------------------------------------------------- TFRecords

def _feature_bytes(value: bytes):
    tf = import_tensorflow()

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _feature_ints(values: Sequence[int]):
    tf = import_tensorflow()

    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def serialize_segment(spectrogram: np.ndarray, source_file: str, segment_index: int, scale: str) -> bytes:
    """One tf.train.Example: the raw float32 spectrogram, its shape, scale, source file and segment index."""
    tf = import_tensorflow()

    spectrogram = np.ascontiguousarray(spectrogram, dtype=np.float32)
    example = tf.train.Example(features=tf.train.Features(feature={
        "spectrogram": _feature_bytes(spectrogram.tobytes()),
        "shape": _feature_ints(spectrogram.shape),
        "scale": _feature_bytes(scale.encode()),
        "source_file": _feature_bytes(str(source_file).encode()),
        "segment_index": _feature_ints([segment_index]),
    }))
    return example.SerializeToString()


def tfrecord_features():
    """The feature spec of a segment record, for tf.io.parse_example."""
    tf = import_tensorflow()

    return {
        "spectrogram": tf.io.FixedLenFeature([], tf.string),
        "shape": tf.io.FixedLenFeature([2], tf.int64),
        "scale": tf.io.FixedLenFeature([], tf.string),
        "source_file": tf.io.FixedLenFeature([], tf.string),
        "segment_index": tf.io.FixedLenFeature([], tf.int64),
    }


def write_tfrecord(path: str | os.PathLike, spectrograms: np.ndarray, source_file: str, scale: str) -> None:
    """Write (n_segments, n_mels, n_frames) spectrograms as one record per segment, traceable to its source."""
    tf = import_tensorflow()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:  # never half-written under its name
        for index, spectrogram in enumerate(spectrograms):
            writer.write(serialize_segment(spectrogram, source_file, index, scale))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` that never leaves a half-written file under ``path`` (see :func:`core.rundir.atomic_output`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def iter_tfrecord(path: str | os.PathLike) -> Iterator[dict]:
    """Yield each record of one file as a dict (spectrogram as (n_mels, n_frames) float32 numpy).

    Raises:
        UserError: the file is missing, truncated or corrupt (the message names it).
    """
    tf = import_tensorflow()

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    spec = tfrecord_features()
    try:
        for serialized in tf.data.TFRecordDataset(str(path)):
            record = tf.io.parse_single_example(serialized, spec)
            shape = tuple(int(v) for v in record["shape"].numpy())
            yield {
                "spectrogram": np.frombuffer(record["spectrogram"].numpy(), np.float32).reshape(shape),
                "scale": record["scale"].numpy().decode(),
                "source_file": record["source_file"].numpy().decode(),
                "segment_index": int(record["segment_index"].numpy()),
            }
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is truncated or corrupt ({message}); rebuild it with datasets/wav_to_spec.py") \
            from None


def read_tfrecord(path: str | os.PathLike) -> tuple[np.ndarray, list[dict]]:
    """All spectrograms of one TFRecord file, (n_records, n_mels, n_frames) float32, and their metadata."""
    records = list(iter_tfrecord(path))
    if not records:
        return np.zeros((0, 0, 0), np.float32), []
    spectrograms = np.stack([r.pop("spectrogram") for r in records])
    return spectrograms, records

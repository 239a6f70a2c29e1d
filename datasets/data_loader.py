"""Datasets ready for training (tf.data over TFRecords) and songs ready for separation.

Training data layout (as the seed)::

    DATASET_FOLDER/<source>/train/*.tfrecord
    DATASET_FOLDER/<source>/test/*.tfrecord

A training run is pointed at ``DATASET_FOLDER/<source>``. Batches are (batch, height, width, 1) float32 in the
model's value range: [0, 1] (NCSN), [-0.5, 0.5] (Glow), or logit space.

A song folder holds ``mix.wav`` and optionally one wav per source (``piano.wav``, ``violin.wav``, ...);
:func:`load_song` returns the mixture's mel segments, the sources' mel segments and the mixture's complex STFT.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core import import_tensorflow
from core.errors import UserError, warn
from core.spectral import SpectrogramParams, mel_spectrogram_segments, segment_audio
from datasets.preprocessing import load_audio, tfrecord_features, to_unit

SPLITS = ("train", "test")


# ------------------------------------------------------------------------------------------- training datasets

def list_tfrecords(dataset_dir: str | os.PathLike, split: str) -> list[Path]:
    """The ``*.tfrecord`` files of ``dataset_dir/<split>/`` (searched recursively), sorted.

    Raises:
        UserError: the folder is missing or holds no TFRecord.
    """
    if split not in SPLITS:
        raise UserError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(dataset_dir) / split
    if not Path(dataset_dir).is_dir():
        raise UserError(f"dataset folder {dataset_dir} does not exist; point --dataset at DATASET_FOLDER/<source> "
                        "(holding train/ and test/ folders of .tfrecord files)")
    if not folder.is_dir():
        raise UserError(f"{folder} does not exist: a dataset folder must hold train/ and test/ sub-folders "
                        "of .tfrecord files (make them with datasets/wav_to_spec.py --tfrecords)")
    files = sorted(folder.rglob("*.tfrecord"))
    if not files:
        raise UserError(f"{folder} holds no .tfrecord file (make them with datasets/wav_to_spec.py --tfrecords)")
    return files


def check_tfrecords(files: Sequence[str | os.PathLike], shape: Optional[tuple[int, int]] = None,
                    scale: Optional[str] = None, value_range: Optional[tuple[float, float]] = None) -> int:
    """Read every record of every file once; return the number of records.

    Args:
        files: TFRecord files written by :func:`datasets.preprocessing.write_tfrecord`.
        shape: expected (height, width) of the spectrograms, or None to skip the check.
        scale: expected scale ("dB" or "power"), or None to skip the check.
        value_range: (low, high) the values must lie in (e.g. [-100, 20] dB), or None to skip the check.
    Raises:
        UserError: a file is truncated or corrupt, or its spectrograms have another shape, scale or range than
            the config expects (names the file), before any training starts.
    """
    tf = import_tensorflow()

    spec = tfrecord_features()
    total = 0
    for path in files:
        dataset = tf.data.TFRecordDataset(str(path))
        def extremes(state, serialized):
            n, low, high = state
            values = tf.io.decode_raw(tf.io.parse_example(serialized, spec)["spectrogram"], tf.float32)
            n_records = tf.cast(tf.shape(serialized)[0], tf.int64)
            return n + n_records, tf.minimum(low, tf.reduce_min(values)), tf.maximum(high, tf.reduce_max(values))

        try:
            count, low, high = (float(v) for v in dataset.batch(256).reduce(
                (np.int64(0), np.float32(np.inf), np.float32(-np.inf)), extremes))
            count = int(count)
            first = next(iter(dataset.take(1)), None)
            record = tf.io.parse_single_example(first, spec) if first is not None else None
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{path} is truncated or corrupt ({detail}); rebuild it with "
                            "datasets/wav_to_spec.py --tfrecords") from None
        if record is not None:
            found_shape = tuple(int(v) for v in record["shape"].numpy())
            found_scale = record["scale"].numpy().decode()
            if shape is not None and found_shape != tuple(shape):
                raise UserError(f"{path} holds spectrograms of shape {found_shape}, the config expects "
                                f"{tuple(shape)} (height x width); fix the config or rebuild the dataset")
            if scale is not None and found_scale != scale:
                raise UserError(f"{path} holds {found_scale} spectrograms, the config says scale: {scale}; "
                                f"set scale: {found_scale} or rebuild with{'' if scale == 'dB' else 'out'} --use_dB")
            if value_range is not None:
                lower, upper = value_range
                margin = 1e-4 * max(abs(lower), abs(upper))
                if low < lower - margin or high > upper + margin:
                    raise UserError(f"{path} holds values in [{low:.4g}, {high:.4g}], outside the range "
                                    f"[{lower:.4g}, {upper:.4g}] the config's scaling maps to the model's inputs; "
                                    "set db_min/db_max (and scale) to those the dataset was built with")
        total += count
    return total


@dataclasses.dataclass(frozen=True)
class Scaling:
    """Model units, the one definition: how stored spectrograms become what a network sees, and back.

    dB (or power) -> [0, 1] *unit* values (:func:`datasets.preprocessing.to_unit`, clipped) -> *model units*:
    unit values as they are (score networks), centred on 0, ``x - 0.5`` (flows: ``centered``), or
    ``logit(alpha + (1 - 2 alpha) x)`` (RealNVP-style: ``logit_alpha``). Training, BASIS and its mixing models all
    take their units from here.

    scale: "dB" or "power" (what the records hold); dequantization_noise: width of uniform noise added in [0,1]
    units during training, x -> (x + noise * U(0,1)) / (1 + noise).
    """

    scale: str = "dB"
    centered: bool = False
    logit_alpha: Optional[float] = None
    dequantization_noise: float = 0.0
    params: SpectrogramParams = SpectrogramParams()

    @classmethod
    def from_config(cls, config, centered: bool, dequantization: bool = True) -> "Scaling":
        """The units of a model trained (or separating) with ``config`` (``use_logit``, ``alpha``, scale, noise)."""
        return cls(scale=config.scale, centered=centered, logit_alpha=config.alpha if config.use_logit else None,
                   dequantization_noise=config.dequantization_noise if dequantization else 0.0,
                   params=config.spectrogram_params())

    @property
    def offset(self) -> float:
        """What :meth:`to_model` subtracts from unit values (0.5 centred, 0 otherwise); not defined for logits.

        Raises:
            UserError: logit units, which are not a shift of [0, 1] (BASIS's mixing models need a shift).
        """
        if self.logit_alpha is not None:
            raise UserError("the config has use_logit: true, but BASIS separates in [0, 1] units (centred for "
                            "Glow), not logits; use priors trained without use_logit and a config with "
                            "use_logit: false")
        return 0.5 if self.centered else 0.0

    def __call__(self, spectrograms, seed=None, key=None):
        """(batch, height, width) dB or power -> (batch, height, width, 1) float32 model inputs (tf)."""
        tf = import_tensorflow()

        unit = tf.clip_by_value(to_unit(spectrograms, self.scale, self.params), 0.0, 1.0)
        return self.finish(unit[..., tf.newaxis], seed, key)

    def finish(self, unit, seed=None, key=None):
        """[0, 1] values (any shape, tf) -> model inputs: dequantisation noise (stateless from ``key`` when given,
        as :meth:`SpectrogramAugment.__call__`), then :meth:`to_model`."""
        if self.dequantization_noise > 0:
            tf = import_tensorflow()
            noise = _uniform_draws(key, seed)(tf.shape(unit), 0.0, 1.0, 2)
            unit = (unit + self.dequantization_noise * noise) / (1.0 + self.dequantization_noise)
        return self.to_model(unit)

    def to_model(self, unit):
        """[0, 1] unit values -> model units, any shape; numpy arrays stay float32 numpy, tensors stay tensors."""
        numpy = isinstance(unit, (np.ndarray, float, int))
        if numpy:
            unit = np.asarray(unit, np.float32)
        if self.logit_alpha is not None:
            squeezed = self.logit_alpha + (1.0 - 2.0 * self.logit_alpha) * unit
            if numpy:
                return (np.log(squeezed) - np.log1p(-squeezed)).astype(np.float32)
            tf = import_tensorflow()
            return tf.math.log(squeezed) - tf.math.log1p(-squeezed)
        shifted = unit - 0.5 if self.centered else unit
        return shifted.astype(np.float32) if numpy else shifted

    def from_model(self, values):
        """Model units -> [0, 1] unit values, clipped (samplers may step slightly outside); numpy or tf."""
        numpy = isinstance(values, (np.ndarray, float, int))
        if numpy:
            values = np.asarray(values, np.float32)
        if self.logit_alpha is not None:
            squashed = 1.0 / (1.0 + np.exp(-values)) if numpy else import_tensorflow().math.sigmoid(values)
            unit = (squashed - self.logit_alpha) / (1.0 - 2.0 * self.logit_alpha)
        else:
            unit = values + 0.5 if self.centered else values
        if numpy:
            return np.clip(unit, 0.0, 1.0).astype(np.float32)
        return import_tensorflow().clip_by_value(unit, 0.0, 1.0)


def _uniform_draws(key=None, seed=None):
    """``draw(shape, low, high, stream)``: uniform floats, stateless from ``(key, stream)`` when ``key`` (an int64
    scalar tensor) is given, else stateful with op seed ``seed + stream`` (or none)."""
    tf = import_tensorflow()

    if key is not None:
        return lambda shape, low, high, stream: tf.random.stateless_uniform(
            shape, seed=tf.stack([key, tf.constant(stream, tf.int64)]), minval=low, maxval=high)
    return lambda shape, low, high, stream: tf.random.uniform(
        shape, low, high, seed=None if seed is None else seed + stream)


@dataclasses.dataclass(frozen=True)
class SpectrogramAugment:
    """Random timbre and level changes of stored spectrograms, for training (never applied to test data).

    Per spectrogram, three changes over the mel bands m = 0..M-1 are drawn and added in dB (a power spectrogram is
    multiplied by ``10^(change / 10)``), the same in every frame:

    * a gain, uniform in ``[-gain_db, gain_db]``;
    * a smooth curve ``c(m) = sum_k a_k cos(pi k m / (M - 1))``, k = 1..``n_cosines``, ``a_k`` uniform in
      ``[-1, 1] * tilt_db / n_cosines`` (so ``|c| <= tilt_db``): spectral tilt and broad EQ;
    * ``n_peaks`` resonances ``r(m) = sum_j b_j exp(-(m - m_j)^2 / (2 w_j^2))``, centres ``m_j`` uniform in
      ``[0, M - 1]``, widths ``w_j`` uniform in ``peak_width_bands`` (mel bands), heights ``b_j`` uniform in
      ``[-peak_db, peak_db]`` (so ``|r| <= n_peaks * peak_db``): the narrow body resonances and anti-resonances in
      which one instrument maker's violin (or one sample bank's) differs from another's.

    Bins at the floor (silence) stay at the floor; the result is clipped to the scale's range, so it stays a valid
    spectrogram. Each change draws from its own random stream, so adding one leaves the others' draws unchanged.
    """

    gain_db: float = 0.0
    tilt_db: float = 0.0
    peak_db: float = 0.0
    n_cosines: int = 4
    n_peaks: int = 3
    peak_width_bands: tuple[float, float] = (1.0, 3.0)
    params: SpectrogramParams = SpectrogramParams()

    @property
    def active(self) -> bool:
        return self.gain_db > 0 or self.tilt_db > 0 or self.peak_db > 0

    def change_db(self, batch, n_mels, uniform):
        """The change in dB, (batch, n_mels) float32 tensor, from ``uniform(shape, low, high, stream)`` draws."""
        tf = import_tensorflow()

        gain = uniform([batch, 1], -self.gain_db, self.gain_db, 0)
        k = tf.range(1, self.n_cosines + 1, dtype=tf.float32)
        m = tf.cast(tf.range(n_mels), tf.float32)
        m_unit = m / tf.cast(tf.maximum(n_mels - 1, 1), tf.float32)
        basis = tf.cos(np.pi * k[:, None] * m_unit[None, :])                             # (K, n_mels)
        amplitude = uniform([batch, self.n_cosines], -1.0, 1.0, 1) * (self.tilt_db / self.n_cosines)
        change = gain + tf.matmul(amplitude, basis)
        if self.peak_db > 0:
            centre = uniform([batch, self.n_peaks, 1], 0.0, 1.0, 2) * tf.cast(n_mels - 1, tf.float32)
            width = uniform([batch, self.n_peaks, 1], *self.peak_width_bands, 3)
            height = uniform([batch, self.n_peaks, 1], -self.peak_db, self.peak_db, 4)
            bumps = height * tf.exp(-0.5 * tf.square((m[None, None, :] - centre) / width))  # (batch, J, n_mels)
            change = change + tf.reduce_sum(bumps, axis=1)
        return change

    def __call__(self, spectrograms, scale: str = "dB", seed=None, key=None):
        """(batch, n_mels, frames) dB or power (tf) -> the same shape and scale, augmented.

        ``key``: an int64 scalar tensor; when given, the draws are stateless functions of it (what the training
        pipeline uses: the same key gives the same augmentation on any thread); otherwise stateful ops with ``seed``.
        """
        tf = import_tensorflow()

        batch, n_mels = tf.shape(spectrograms)[0], tf.shape(spectrograms)[1]
        change_db = self.change_db(batch, n_mels, _uniform_draws(key, seed))[:, :, None]  # (batch, n_mels, 1)
        p = self.params
        if scale == "dB":
            changed = tf.clip_by_value(spectrograms + change_db, p.db_min, p.db_max)
            return tf.where(spectrograms > p.db_min, changed, spectrograms)
        changed = tf.clip_by_value(spectrograms * tf.pow(10.0, change_db / 10.0), p.power_min, p.power_max)
        return tf.where(spectrograms > p.power_min, changed, spectrograms)


def make_dataset(files: Sequence[str | os.PathLike], batch_size: int, scaling: Scaling,
                 shape: tuple[int, int], shuffle: bool = True, repeat: bool = False, cache: bool = True,
                 drop_remainder: bool = False, seed: Optional[int] = None, shuffle_buffer: int = 10000,
                 augment: Optional[SpectrogramAugment] = None):
    """The tf.data pipeline over spectrogram TFRecords.

    Interleaved parallel reads (in a fixed order when ``seed`` is given), vectorised parse of whole batches,
    optional cache of the parsed float32 spectrograms (before shuffling and noise, so every epoch is reshuffled and
    re-noised), shuffle, batch, optional augmentation (``augment``, drawn anew every epoch), scaling and prefetch.
    With a ``seed`` the whole pipeline is reproducible, epoch after epoch.

    Args:
        files: TFRecord files (see :func:`list_tfrecords`; validate them first with :func:`check_tfrecords`).
        batch_size: global batch size.
        scaling: how records become model inputs.
        shape: (height, width) of one spectrogram.
    Returns:
        tf.data.Dataset of (batch, height, width, 1) float32.
    """
    tf = import_tensorflow()

    autotune = tf.data.AUTOTUNE
    spec = {"spectrogram": tfrecord_features()["spectrogram"]}
    height, width = shape

    def parse(serialized):
        records = tf.io.parse_example(serialized, spec)
        flat = tf.io.decode_raw(records["spectrogram"], tf.float32)
        return tf.reshape(flat, [-1, height, width])

    files_ds = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    if shuffle:
        files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                                  num_parallel_calls=autotune, deterministic=seed is not None or not shuffle)
    # parse 256 records per call (vectorised), then back to single spectrograms for shuffling
    dataset = dataset.batch(256).map(parse, num_parallel_calls=autotune).unbatch()
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    # one random key per batch, drawn anew every epoch from ``seed``: the augmentation and the noise are stateless
    # functions of it, so they do not depend on which thread maps which batch (a run is reproducible from its seed,
    # and a resumed one replays them)
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip((dataset, keys))
    if augment is not None and augment.active:
        dataset = dataset.map(lambda batch, key: (augment(batch, scaling.scale, key=key), key),
                              num_parallel_calls=autotune)
    dataset = dataset.map(lambda batch, key: scaling(batch, key=key), num_parallel_calls=autotune)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(autotune)


@dataclasses.dataclass
class SourceData:
    """Train and test pipelines of one source, with their sizes (number of spectrograms)."""

    train: object
    test: object
    n_train: int
    n_test: int


def load_source_data(dataset_dir: str | os.PathLike | Sequence[str | os.PathLike], batch_size: int, scaling: Scaling,
                     shape: tuple[int, int], strategy=None, seed: Optional[int] = None,
                     cache: bool = True, augment: Optional[SpectrogramAugment] = None) -> SourceData:
    """Train (shuffled) and test (ordered) pipelines of ``DATASET_FOLDER/<source>``, validated first.

    ``augment`` (if any) is applied to the train pipeline only.

    Args:
        dataset_dir: ``DATASET_FOLDER/<source>`` with train/ and test/ folders of TFRecords, or a list of such
            folders (their records are pooled).
        batch_size: global batch size (split across the replicas of ``strategy``).
        scaling: how records become model inputs.
        shape: (height, width) the config expects.
        strategy: a tf.distribute strategy; if given, the datasets are distributed with it.
    Raises:
        UserError: missing folders, no TFRecords, corrupt files, or spectrograms of another shape or scale.
    """
    folders = [dataset_dir] if isinstance(dataset_dir, (str, os.PathLike)) else list(dataset_dir)
    train_files = [f for folder in folders for f in list_tfrecords(folder, "train")]
    test_files = [f for folder in folders for f in list_tfrecords(folder, "test")]
    params = scaling.params
    value_range = (params.db_min, params.db_max) if scaling.scale == "dB" else (params.power_min, params.power_max)
    n_train = check_tfrecords(train_files, shape, scaling.scale, value_range)
    n_test = check_tfrecords(test_files, shape, scaling.scale, value_range)
    train = make_dataset(train_files, batch_size, scaling, shape, shuffle=True, seed=seed, cache=cache,
                         augment=augment)
    test = make_dataset(test_files, batch_size, scaling, shape, shuffle=False, cache=cache)
    if strategy is not None:
        train = strategy.experimental_distribute_dataset(train)
        test = strategy.experimental_distribute_dataset(test)
    return SourceData(train, test, n_train, n_test)


# ---------------------------------------------------------------------------------------- toy images (tfds)

IMAGE_DATASETS = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def is_image_dataset(name: str) -> bool:
    """True for the toy image sets: a tensorflow-datasets name (mnist, cifar10) or an offline ``.npz`` image file."""
    return name in IMAGE_DATASETS or str(name).endswith(".npz")


def read_image_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """An offline image set: a ``.npz`` with ``train`` and ``test`` arrays of 8-bit pixels, (n, h, w) or (n, h, w, c).

    It lets training and the toy separation run without tensorflow-datasets' download (tests, offline machines).
    Returns {"train": (n, h, w, c) uint8, "test": (m, h, w, c) uint8}.

    Raises:
        UserError: a missing or unreadable file, missing keys, shapes that differ, or pixels outside 0..255.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image file {path} does not exist (an offline image set is a .npz with train and test "
                        "arrays of 8-bit pixels)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {split: np.asarray(data[split]) for split in SPLITS if split in data.files}
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not a readable .npz file ({err})") from None
    missing = [split for split in SPLITS if split not in arrays]
    if missing:
        raise UserError(f"{path} has no {' and no '.join(missing)} array: an image set holds train and test arrays "
                        "(n, h, w) or (n, h, w, c) of 8-bit pixels")
    for split, images in arrays.items():
        if images.ndim == 3:
            images = images[..., np.newaxis]
        if images.ndim != 4 or images.shape[0] == 0:
            raise UserError(f"{path}: {split} has shape {images.shape}; expected (n, h, w) or (n, h, w, c) images")
        if images.min() < 0 or images.max() > 255:
            raise UserError(f"{path}: {split} holds values outside 0..255; store 8-bit pixels")
        arrays[split] = images.astype(np.uint8)
    if arrays["train"].shape[1:] != arrays["test"].shape[1:]:
        raise UserError(f"{path}: train images are {arrays['train'].shape[1:]}, test images "
                        f"{arrays['test'].shape[1:]}; both splits need the same shape")
    return arrays


def image_shape(name: str) -> tuple[int, int, int]:
    """(h, w, c) of the images of a toy set (a tensorflow-datasets name or a .npz file)."""
    if name in IMAGE_DATASETS:
        return IMAGE_DATASETS[name]
    return tuple(int(n) for n in read_image_file(name)["train"].shape[1:])


def pixels_to_unit(pixels):
    """8-bit pixels -> [0, 1]: (pixel + 0.5) / 256, the centre of each of the 256 bins (numpy or tf)."""
    return (pixels + 0.5) / 256.0


def _image_splits(name: str, data_dir: Optional[str] = None):
    """(train, test, n_train, n_test): tf.data datasets of {"image": uint8 (h, w, c)} for a toy image set."""
    tf = import_tensorflow()
    if str(name).endswith(".npz"):
        arrays = read_image_file(name)
        return (tf.data.Dataset.from_tensor_slices({"image": arrays["train"]}),
                tf.data.Dataset.from_tensor_slices({"image": arrays["test"]}),
                len(arrays["train"]), len(arrays["test"]))
    if name not in IMAGE_DATASETS:
        raise UserError(f"unknown image dataset {name!r}: use one of {', '.join(IMAGE_DATASETS)} or a .npz file")
    import tensorflow_datasets as tfds

    try:
        (train, test), info = tfds.load(name, split=["train", "test"], with_info=True, data_dir=data_dir)
    except Exception as err:  # tfds raises many kinds (download, checksum, file system) for the same user problem
        raise UserError(f"could not load {name} through tensorflow-datasets ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); the first use downloads "
                        "it and needs a network connection (or give an offline .npz image set)") from None

    def size(dataset, split):
        try:
            return int(info.splits[split].num_examples)
        except KeyError:  # tfds' offline mock data has no split metadata
            return int(dataset.cardinality())

    return train, test, size(train, "train"), size(test, "test")


def load_image_data(name: str, batch_size: int, scaling: Scaling, strategy=None, seed: Optional[int] = None,
                    data_dir: Optional[str] = None) -> SourceData:
    """A toy image set as (batch, h, w, c) float32 model inputs: MNIST or CIFAR-10 through tensorflow-datasets, or
    an offline ``.npz`` file (:func:`read_image_file`).

    Pixels are mapped to [0, 1] by :func:`pixels_to_unit` and, with ``scaling.dequantization_noise``, spread
    uniformly inside their bin instead; then centred or logit-transformed as ``scaling`` says. The first use of a
    tensorflow-datasets name downloads the data (a networked machine is needed once).

    Raises:
        UserError: unknown name, or the data cannot be downloaded/prepared/read.
    """
    tf = import_tensorflow()
    train, test, n_train, n_test = _image_splits(name, data_dir)
    noise = scaling.dequantization_noise > 0
    plain = dataclasses.replace(scaling, dequantization_noise=0.0)

    def to_inputs(example):
        pixels = tf.cast(example["image"], tf.float32)
        offset = tf.random.uniform(tf.shape(pixels), seed=seed) if noise else 0.5
        return plain.finish((pixels + offset) / 256.0)

    def pipeline(dataset, shuffle):
        if shuffle:
            dataset = dataset.shuffle(10000, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
        return strategy.experimental_distribute_dataset(dataset) if strategy is not None else dataset

    return SourceData(pipeline(train, True), pipeline(test, False), n_train, n_test)


def load_test_images(name: str, n: int, data_dir: Optional[str] = None) -> np.ndarray:
    """The first ``n`` test images of a toy set, (n, h, w, c) float32 in [0, 1] (:func:`pixels_to_unit`).

    Raises:
        UserError: as :func:`load_image_data`, or fewer than ``n`` test images.
    """
    _, test, _, n_test = _image_splits(name, data_dir)
    if n_test < n:
        raise UserError(f"{name} has {n_test} test images, {n} are needed; ask for fewer pairs")
    pixels = np.stack([example["image"] for example in test.take(n).as_numpy_iterator()])
    return pixels_to_unit(pixels.astype(np.float32)).astype(np.float32)


# -------------------------------------------------------------------------------------------------------- songs

@dataclasses.dataclass
class Song:
    """A song to separate, cut into segments.

    Attributes:
        name: the song folder's name.
        n_samples: length of the mixture in samples before padding; every later output is trimmed to it.
        mix_audio: (n_samples,) float32 mixture waveform.
        sources_audio: {source name: (n_samples,) float32} for the sources whose wav exists.
        mix_mel: (n_segments, n_mels, n_frames) float32 mixture mel spectrograms (dB or power, see ``scale``).
        sources_mel: {source name: (n_segments, n_mels, n_frames) float32} ground truth, where available.
        stft_mixture: (n_segments, n_freqs, n_frames) complex64 STFT of each mixture segment.
        scale: "dB" or "power".
    """

    name: str
    n_samples: int
    mix_audio: np.ndarray
    sources_audio: dict[str, np.ndarray]
    mix_mel: np.ndarray
    sources_mel: dict[str, np.ndarray]
    stft_mixture: np.ndarray
    scale: str
    params: SpectrogramParams

    @property
    def n_segments(self) -> int:
        return self.mix_mel.shape[0]

    @property
    def padding(self) -> int:
        """Zeros appended to the last segment, in samples."""
        return self.n_segments * self.params.segment_samples - self.n_samples


def _load_song_audio(path: Path, params: SpectrogramParams) -> np.ndarray:
    audio, info = load_audio(path, params.sample_rate)
    notes = []
    if info.original_channels > 1:
        notes.append(f"{info.original_channels} channels downmixed to mono")
    if info.original_rate != params.sample_rate:
        notes.append(f"resampled from {info.original_rate} Hz to {params.sample_rate} Hz")
    if notes:
        warn(f"{path}: {', '.join(notes)}")
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{path} holds NaN or infinite samples")
    return audio


def load_song(song_dir: str | os.PathLike, sources: Sequence[str] = ("piano", "violin"),
              params: SpectrogramParams = SpectrogramParams(), scale: str = "dB",
              n_segments: Optional[int] = None) -> Song:
    """Load ``song_dir/mix.wav`` and the sources' wavs that exist, and compute their segments.

    A song whose length is not a whole number of segments is zero-padded; ``Song.n_samples`` keeps the true
    length so outputs can be trimmed. A source wav of another length than the mixture is padded or trimmed to it
    with a warning. ``n_segments`` keeps only the first N segments (the seed's ``--n_mixed``).

    Raises:
        UserError: the folder or mix.wav is missing, or a file is not audio.
    """
    song_dir = Path(song_dir)
    if not song_dir.is_dir():
        raise UserError(f"song folder {song_dir} does not exist")
    mix_path = song_dir / "mix.wav"
    if not mix_path.is_file():
        raise UserError(f"{song_dir} has no mix.wav: a song folder holds mix.wav and optionally "
                        f"{', '.join(s + '.wav' for s in sources)}")
    mix = _load_song_audio(mix_path, params)
    if mix.shape[0] < params.segment_samples:
        warn(f"{mix_path} is {mix.shape[0] / params.sample_rate:.2f} s long, shorter than one segment "
             f"({params.segment_seconds:.2f} s): padded with silence")
    sources_audio = {}
    for name in sources:
        path = song_dir / f"{name}.wav"
        if not path.is_file():
            continue
        audio = _load_song_audio(path, params)
        if audio.shape[0] != mix.shape[0]:
            warn(f"{path} has {audio.shape[0]} samples, mix.wav {mix.shape[0]}: "
                 f"{'trimmed' if audio.shape[0] > mix.shape[0] else 'padded with silence'} to the mixture's length")
            fitted = np.zeros_like(mix)
            fitted[: min(audio.shape[0], mix.shape[0])] = audio[: mix.shape[0]]
            audio = fitted
        sources_audio[name] = audio

    if n_segments is not None:
        if n_segments < 1:
            raise UserError(f"the number of segments to keep must be at least 1, got {n_segments}")
        keep = min(mix.shape[0], n_segments * params.segment_samples)
        mix = mix[:keep]
        sources_audio = {name: audio[:keep] for name, audio in sources_audio.items()}
    mix_mel, stft = mel_spectrogram_segments(segment_audio(mix, params.segment_samples), params, scale,
                                             return_stft=True)
    sources_mel = {name: mel_spectrogram_segments(segment_audio(audio, params.segment_samples), params, scale)
                   for name, audio in sources_audio.items()}
    return Song(song_dir.name, int(mix.shape[0]), mix, sources_audio, mix_mel, sources_mel, stft, scale, params)

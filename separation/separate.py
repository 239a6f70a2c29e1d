"""Running BASIS on a song: the mixture's segments in the priors' units, the run, and what it writes.

:func:`separate_song` is the whole separation of one song (what every script runs); :func:`run_separation`, the
BASIS part of it, is shared by songs (:class:`SongTask`) and toy images (:class:`separation.toy.ImageTask`):
it loads the priors, builds :class:`separation.basis.Basis` from the config, separates the task's mixtures in
batches with a progress bar and a resume state, and returns the estimates in model units. A task knows how its data
map to model units and back, and what to write.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core.config import Config, sampler_settings
from core.errors import UserError, warn
from core.rundir import TENSORBOARD_DIR
from datasets.data_loader import Scaling
from datasets.preprocessing import from_unit, to_unit

#: the resume state of a separation in its output folder (removed once the separation is done)
STATE_NAME = "basis_state.npz"


@dataclasses.dataclass
class SeparationResult:
    """Estimates in model units: (K, N, h, w, c) after the last level, and (L, K, N, h, w, c) after every level."""

    estimates: np.ndarray
    history: np.ndarray
    sigmas: np.ndarray
    seconds: float


def model_scaling(config: Config, model: str) -> Scaling:
    """The model units BASIS gives priors of kind ``model``: those they were trained in (Glow centred on 0, as
    ``train_glow.py`` trains it; NCSN [0, 1]), from ``config``, without dequantisation noise.

    Raises:
        UserError: a config with ``use_logit: true`` (the mixing models need units that are a shift of [0, 1]).
    """
    scaling = Scaling.from_config(config, centered=model == "glow", dequantization=False)
    scaling.offset  # noqa: B018  (raises for logit units)
    return scaling


def mel_to_model(mel: np.ndarray, config: Config, model: str) -> np.ndarray:
    """Mel spectrograms (..., n_mels, n_frames) in the config's scale -> model units (..., n_mels, n_frames, 1) of
    priors of kind ``model``, clipped to the data range first (the inverse of :meth:`SongTask.to_data`)."""
    unit = np.clip(to_unit(mel, config.scale, config.spectrogram_params()), 0.0, 1.0)
    return model_scaling(config, model).to_model(unit[..., np.newaxis])


def run_fingerprint(restore_paths: Sequence[str], model: str, data: str, n_mixtures: int, batch_size: int,
                    seed: int, config: Config, mixing: Optional[str] = None) -> str:
    """A digest of what makes two runs the same (a resume state is only used by the same run): the priors' folders
    (resolved), the model kind, the data (a song folder or an image set), the number of mixtures, the batch size,
    the seed, the mixing model (None: the task's default) and the whole config (schedule and sampler included)."""
    record = dict(paths=[str(Path(p).resolve()) for p in restore_paths], model=model, data=data, n=n_mixtures,
                  batch=batch_size, seed=seed, mixing=mixing, config=config.to_dict())
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def tensorboard_images(output: Path, images: dict[str, np.ndarray], step: int = 0, flip: bool = True) -> None:
    """Write {tag: (n, h, w, c) values in [0, 1]} as TensorBoard images (spectrograms: low frequencies at the
    bottom)."""
    from core import import_tensorflow

    tf = import_tensorflow()
    writer = tf.summary.create_file_writer(str(output / TENSORBOARD_DIR))
    with writer.as_default():
        for tag, batch in images.items():
            batch = np.asarray(batch, np.float32)
            tf.summary.image(tag, batch[:, ::-1] if flip else batch, step=step, max_outputs=batch.shape[0])
    writer.close()


@dataclasses.dataclass
class SongTask:
    """A song to separate into named sources.

    Attributes:
        song: the loaded song (:func:`datasets.data_loader.load_song`).
        names: the source names, one per prior.
        config: the separation's config.
        model: "ncsn" or "glow" (the kind of priors).
        mixture: (N, n_mels, n_frames, 1) float32, the mixture's segments in model units (:attr:`scaling`).
    """

    song: object
    names: list[str]
    config: Config
    model: str
    mixture: np.ndarray

    kind = "song"
    default_mixing = "power_sum"

    @classmethod
    def from_song(cls, song_dir: str | os.PathLike, names: Sequence[str], config: Config,
                  n_segments: Optional[int], model: str) -> "SongTask":
        """Load ``song_dir`` (mix.wav and the sources' wavs that exist) with the config's spectrogram settings.

        Raises:
            UserError: no mix.wav, unreadable audio, or a config whose height/width are not the spectrogram's.
        """
        from datasets.data_loader import load_song

        params = config.spectrogram_params()
        if (config.height, config.width) != params.shape:
            raise UserError(f"the config's height x width is {config.height}x{config.width} but its spectrogram "
                            f"settings give {params.shape[0]}x{params.shape[1]} mel spectrograms; use a "
                            "spectrogram config (e.g. configs/melspec_ncsnv1.yml)")
        song = load_song(song_dir, names, params, config.scale, n_segments)
        missing = [n for n in names if n not in song.sources_mel]
        if len(missing) == len(names):
            warn(f"{song_dir} has no source wavs ({', '.join(n + '.wav' for n in names)}): separating without "
                 "ground truth; metrics are skipped")
        elif missing:
            warn(f"{song_dir} has no {', '.join(n + '.wav' for n in missing)}: no ground truth is stored and "
                 "metrics are skipped")
        return cls(song, list(names), config, model, mel_to_model(song.mix_mel, config, model))

    @property
    def scaling(self) -> Scaling:
        return model_scaling(self.config, self.model)

    @property
    def n_mixtures(self) -> int:
        return self.mixture.shape[0]

    @property
    def has_ground_truth(self) -> bool:
        return all(n in self.song.sources_mel for n in self.names)

    @property
    def description(self) -> str:
        params = self.song.params
        return (f"song {self.song.name}: {self.song.n_samples / params.sample_rate:.2f} s, {self.n_mixtures} "
                f"segments of {params.segment_seconds:.2f} s; sources {', '.join(self.names)}"
                f"{'' if self.has_ground_truth else ' (no ground truth)'}")

    def to_data(self, values: np.ndarray) -> np.ndarray:
        """Model units (..., n_mels, n_frames, 1) -> spectrograms (..., n_mels, n_frames) float32 in the config's scale
        (dB clipped to [db_min, db_max])."""
        unit = self.scaling.from_model(values)[..., 0]
        return from_unit(unit, self.config.scale, self.song.params).astype(np.float32)

    def save(self, output: Path, result: SeparationResult, logger: logging.Logger) -> dict[str, np.ndarray]:
        """Write results.npz, results_convergence.npz, spectrograms.png and TensorBoard images; returns the
        estimates {name: (N, n_mels, n_frames)} in the config's scale."""
        from separation import figures

        from separation.results import CONVERGENCE_NAME, RESULTS_NAME, save_convergence, save_results

        estimates = {name: self.to_data(result.estimates[k]) for k, name in enumerate(self.names)}
        truth = ([self.song.sources_mel[name].astype(np.float32) for name in self.names] if self.has_ground_truth
                 else None)
        save_results(output, list(estimates.values()), self.song.mix_mel.astype(np.float32), truth, self.names,
                     self.song.stft_mixture, self.song.n_samples)
        save_convergence(output, result.sigmas, [self.to_data(result.history[:, k]) for k in range(len(self.names))],
                         self.names)
        logger.info("separated %d segments in %.1f s; wrote %s and %s (%s)", self.n_mixtures, result.seconds,
                    RESULTS_NAME, CONVERGENCE_NAME, ", ".join(f"x{k + 1}={n}" for k, n in enumerate(self.names)))
        if self.config.scale == "dB":
            references = {n: self.song.sources_mel[n] for n in self.names if n in self.song.sources_mel}
            figures.plot_spectrogram_comparison(references, estimates, output / "spectrograms.png",
                                                self.song.params, mixture_db=self.song.mix_mel,
                                                title=f"{self.song.name}: mixture, ground truth vs BASIS estimate "
                                                      "(dB)")
        shown = slice(0, min(4, self.n_mixtures))
        images = {"mixture": self.scaling.from_model(self.mixture[shown])}
        for k, name in enumerate(self.names):
            images[f"estimate/{name}"] = self.scaling.from_model(result.estimates[k, shown])
            if name in self.song.sources_mel:
                unit = to_unit(self.song.sources_mel[name][shown], self.config.scale, self.song.params)
                images[f"ground_truth/{name}"] = np.clip(unit, 0.0, 1.0)[..., np.newaxis]
        tensorboard_images(output, images)
        return estimates

    def invert_and_score(self, output: Path, result: SeparationResult, algorithm: str, method: str,
                         logger: logging.Logger):
        """Write ``<source>.wav`` for every estimate and, with ground truth, the BSS Eval v4 scores.

        Returns:
            (audio, scores): (K, n_samples) float32 and :class:`separation.evaluation.Scores` (None without
            ground truth).
        """
        from datasets.preprocessing import write_estimate
        from separation import evaluation, inversion

        params = self.song.params
        mel = np.stack([self.to_data(result.estimates[k]) for k in range(len(self.names))])
        start = time.perf_counter()
        audio = inversion.invert_mel(mel, params, algorithm=algorithm, method=method, n_samples=self.song.n_samples,
                                     mixture_audio=self.song.mix_audio, scale=self.config.scale)
        for name, waveform in zip(self.names, audio):
            write_estimate(output / f"{name}.wav", waveform, params.sample_rate)
        logger.info("inverted the estimates (%s, %s) in %.1f s: %s", algorithm, method, time.perf_counter() - start,
                    ", ".join(f"{n}.wav" for n in self.names))
        if not self.has_ground_truth:
            logger.info("no ground truth: metrics skipped")
            return audio, None
        references = np.stack([self.song.sources_audio[n] for n in self.names])
        scores = evaluation.evaluate_sources(references, audio, self.names, params.sample_rate)
        scores.save(output)
        print(scores.table(f"BSS Eval v4 of {self.song.name}, median over {scores.n_frames} frames "
                           f"(BASIS, {algorithm} {method})"), flush=True)
        return audio, scores


def build_basis(task, restore_paths: Sequence[str], model: str, mixing_name: Optional[str] = None,
                jit_compile: bool = False):
    """A :class:`separation.basis.Basis` for ``task``'s config and segment shape, with the priors loaded from
    ``restore_paths`` and the sampler of the config's BASIS keys (start_level, basis_levels, init, n_chains,
    temperature, denoise, consistency).

    Raises:
        UserError: bad restore paths, config or sampler keys (checked before the priors are loaded).
    """
    from ncsn.schedule import sigmas_from_config
    from separation.basis import Basis, make_mixing_model, visited_levels
    from separation.priors import load_priors

    config = task.config
    sigmas = sigmas_from_config(config)
    levels = visited_levels(len(sigmas), config.start_level, config.basis_levels)
    mixing = make_mixing_model(mixing_name or task.default_mixing, config.spectrogram_params(),
                               task.scaling.offset, config.scale)
    priors = load_priors(model, restore_paths, config, task.mixture.shape[1:], sigmas)
    return Basis(priors, mixing, sigmas, config.T, config.step_lr, jit_compile=jit_compile, levels=levels,
                 n_chains=config.n_chains, denoise=config.denoise, consistency=config.consistency,
                 temperature=config.temperature)


def run_separation(task, restore_paths: Sequence[str], model: str, state_path: Path, fingerprint: str,
                   seed: int = 0, batch_size: int = 16, mixing_name: Optional[str] = None,
                   jit_compile: bool = False, progress: bool = True, logger: Optional[logging.Logger] = None,
                   basis=None) -> SeparationResult:
    """Load the priors and build BASIS from ``task.config`` (unless ``basis`` is given: one built by
    :func:`build_basis` for the same config, whose compiled level loop is reused instead of traced again; then
    ``mixing_name`` and ``jit_compile`` are its own), then separate every mixture of ``task``.

    Raises:
        UserError: bad restore paths or config; SamplingDiverged (a UserError) when the dynamics blow up, after
            writing the estimates of the finished levels to ``results_convergence.npz`` beside ``state_path``.
    """
    from tqdm import tqdm

    from ncsn.sampling import SamplingDiverged
    from separation.basis import separate_in_batches

    logger = logger or logging.getLogger("sepsuite")
    if basis is None:
        basis = build_basis(task, restore_paths, model, mixing_name, jit_compile)
    sigmas = basis.visited_sigmas
    batch_size = min(batch_size, task.n_mixtures)
    n_batches = -(-task.n_mixtures // batch_size)
    logger.info("BASIS with %s priors: %s; %d batch(es) of %d", model, basis.describe(), n_batches, batch_size)
    bar = tqdm(total=len(sigmas) * n_batches * basis.n_steps_each, unit="step", disable=not progress,
               dynamic_ncols=True, desc="BASIS", smoothing=0.1)
    start = time.perf_counter()
    try:
        estimates, history = separate_in_batches(basis, task.mixture, seed, batch_size, task.config.init,
                                                 low=-task.scaling.offset, state_path=state_path,
                                                 fingerprint=fingerprint, progress=bar, logger=logger)
    except SamplingDiverged:
        _save_partial_convergence(task, state_path, sigmas)
        raise
    finally:
        bar.close()
    return SeparationResult(estimates, history, np.asarray(sigmas, np.float32), time.perf_counter() - start)


def separate_song(task, restore_paths: Sequence[str], model: str, output: Path, fingerprint: str, seed: int = 0,
                  batch_size: int = 16, mixing_name: Optional[str] = None,
                  jit_compile: bool = False, invert: bool = True, algorithm: str = "wiener", method: str = "frame",
                  progress: bool = True, logger: Optional[logging.Logger] = None, basis=None,
                  song_dir: Optional[str | os.PathLike] = None, command: Optional[str] = None, report: bool = True):
    """The whole separation of one task into ``output``: BASIS (resuming from ``output/basis_state.npz``), its
    results files and figures (:meth:`SongTask.save`), with ``invert`` the sources' wavs and, with ground truth,
    their BSS Eval scores; for a song the run's record (``run.json``) and, with ``report``, its listening page
    (``report.html``, :mod:`separation.report`); the resume state is removed last. What ``run_basis_sep.py``, the
    song-folder driver and the example all run.

    Args:
        task: a :class:`SongTask` or a :class:`separation.toy.ImageTask` (images are never inverted).
        fingerprint: :func:`run_fingerprint` of the run (a resume state of another run is refused).
        basis: a BASIS built by :func:`build_basis` for the same config, reused (see :func:`run_separation`).
        song_dir, command: the song folder (where the report finds the mixture and ground truth) and the command
            line, for ``run.json``.
    Returns:
        (result, scores): the :class:`SeparationResult` and the :class:`separation.bss_eval.Scores` (None without
        inversion or ground truth).
    """
    logger = logger or logging.getLogger("sepsuite")
    state_path = output / STATE_NAME
    result = run_separation(task, restore_paths, model, state_path, fingerprint, seed=seed, batch_size=batch_size,
                            mixing_name=mixing_name, jit_compile=jit_compile, progress=progress,
                            logger=logger, basis=basis)
    task.save(output, result, logger)
    scores = None
    if invert and task.kind == "song":
        _, scores = task.invert_and_score(output, result, algorithm, method, logger)
    if task.kind == "song":
        from separation import report as html_report

        config = task.config
        html_report.write_run_record(
            output, song_dir=str(Path(song_dir).resolve()) if song_dir else None, sources=list(task.names),
            priors=[str(p) for p in restore_paths], model=model, seed=seed,
            sampler=sampler_settings(config),
            inversion=f"{algorithm}, {method}" if invert else "none", seconds_basis=round(result.seconds, 2),
            command=command)
        if report:
            html_report.write_report(output)
    state_path.unlink(missing_ok=True)
    return result, scores


def _save_partial_convergence(task, state_path: Path, sigmas) -> None:
    """After a divergence: the estimates after every finished level, as results_convergence.npz."""
    if not state_path.is_file():
        return
    with np.load(state_path, allow_pickle=False) as state:
        history = state["history"]
    from separation.results import save_convergence

    save_convergence(state_path.parent, np.asarray(sigmas[:history.shape[0]], np.float32),
                     [task.to_data(history[:, k]) for k in range(history.shape[1])], task.names)

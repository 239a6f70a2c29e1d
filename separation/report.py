"""HTML listening reports: ``report.html`` for a folder that holds a separation, ``index.html`` for a folder of songs.

A report gathers what it finds, and never writes anything else: the mixture and the ground-truth sources (from the
song folder recorded in ``run.json``), the estimates of every method found (the folder's own wavs, "BASIS" unless
``run.json`` names it otherwise, and every sub-folder up to two levels down holding wavs or a ``metrics.json``:
``baselines/IRM``, ``inverse_griffin_frame``, an oracle, ...), in one table of audio players, rows = sources,
columns = methods; the figures (``*.png``); the BSS Eval table (median over frames; the best value per source and
metric in bold; values above :data:`separation.figures.SCORE_CAP_DB` shown as "> 60", with a note); the run's
settings and command. Links are relative, nothing is fetched from the network: the folder can be zipped, opened
from disk or published as it is (with the song folder beside it when the ground truth lives outside it).

What is missing (an interrupted run, a method without scores) is said on the page; a wav that cannot be read is
named on the page and in a warning.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence

from core.errors import warn
from core.rundir import atomic_output
from separation.bss_eval import JSON_NAME, METRICS, Scores
from separation.figures import SCORE_CAP_DB

REPORT_NAME = "report.html"
INDEX_NAME = "index.html"
RUN_NAME = "run.json"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MIXTURE_NAME = "mix.wav"


def write_run_record(folder: str | os.PathLike, **settings) -> Path:
    """``run.json``: what the report shows under "Run" (song folder, sources, priors, sampler, seed, seconds, command)
    and where it finds the mixture and ground truth (``song_dir``); values must be JSON-serialisable."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return _write_text(Path(folder) / RUN_NAME, json.dumps(settings, indent=1, default=str) + "\n")


def _write_text(path: Path, text: str) -> Path:
    """``text`` into ``path`` under a temporary name, renamed once complete (:func:`core.rundir.atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_run_record(folder: str | os.PathLike) -> dict:
    """The folder's ``run.json`` ({} when absent or unreadable, with a warning for the latter)."""
    path = Path(folder) / RUN_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        warn(f"{path} cannot be read ({err}); the report shows no run settings")
        return {}


def format_score(value: float, cap: float = SCORE_CAP_DB) -> str:
    """A dB value as the tables show it: two decimals, "NaN", or "> 60" above the cap."""
    if value is None or not math.isfinite(value):
        return "NaN"
    return f"> {cap:g}" if value > cap else f"{value:.2f}"


@dataclasses.dataclass
class Audio:
    """One player: the file relative to the report, its length in seconds (None: unreadable) and any problem."""
    path: str
    seconds: Optional[float]
    error: str = ""


@dataclasses.dataclass
class Method:
    """One column: a method's estimates {source: Audio}, its scores (None when unscored) and its folder."""
    name: str
    folder: Path
    audio: dict
    scores: Optional[Scores]


def _audio(path: Path, root: Path) -> Audio:
    import soundfile as sf

    relative = Path(os.path.relpath(path, root)).as_posix()
    try:
        info = sf.info(str(path))
        return Audio(relative, info.frames / info.samplerate)
    except (RuntimeError, OSError) as err:  # soundfile raises RuntimeError (LibsndfileError) for a bad file
        warn(f"{path} cannot be read as audio ({str(err).splitlines()[0]}); the report names it")
        return Audio(relative, None, f"cannot be read: {str(err).splitlines()[0]}")


def _scores(folder: Path, problems: list) -> Optional[Scores]:
    path = folder / JSON_NAME
    if not path.is_file():
        return None
    try:
        return Scores.load(path)
    except Exception as err:  # noqa: BLE001  (a damaged file is reported on the page, not raised)
        problems.append(f"{path.name} in {folder.name or '.'} cannot be read: {err}")
        warn(f"{path} cannot be read ({err}); the report names it")
        return None


def _method_folders(folder: Path) -> list[Path]:
    """Sub-folders (two levels at most) that hold wavs or scores of a method: inversions first, then the
    baselines and oracles (the mixture baseline first of them)."""
    found = []
    for depth in (1, 2):
        for sub in sorted(p for p in folder.glob("/".join(["*"] * depth)) if p.is_dir()):
            if sub.name in ("tensorboard",) or any(part.startswith(".") for part in sub.parts):
                continue
            if (sub / JSON_NAME).is_file() or any(sub.glob("*.wav")):
                found.append(sub)
    return sorted(found, key=lambda p: (p.relative_to(folder).parts[0] in ("baselines", "oracles"),
                                        p.name != "mixture", p.relative_to(folder).as_posix()))


def collect(folder: str | os.PathLike, sources: Optional[Sequence[str]] = None) -> dict:
    """Everything a report shows for ``folder``, as the template's context."""
    folder = Path(folder)
    run = read_run_record(folder)
    problems = []
    method_dirs = [folder] + _method_folders(folder)
    methods = []
    for sub in method_dirs:
        scores = _scores(sub, problems)
        wavs = {p.stem: p for p in sorted(sub.glob("*.wav")) if p.name != MIXTURE_NAME and not p.stem.startswith("gt_")}
        if sub == folder and not wavs and scores is None:
            continue
        name = run.get("method", "BASIS") if sub == folder else sub.relative_to(folder).as_posix()
        if name.startswith("baselines/"):
            name = name[len("baselines/"):]
        methods.append(Method(name, sub, {k: _audio(p, folder) for k, p in wavs.items()}, scores))
    names = list(sources or run.get("sources") or [])
    for method in methods:
        candidates = (method.scores.targets if method.scores else []) + list(method.audio)
        names += [n for n in candidates if n not in names]

    song_dir = Path(run["song_dir"]) if run.get("song_dir") else None
    mixture, truth = None, {}
    if song_dir is not None:
        if not song_dir.is_absolute():
            song_dir = (folder / song_dir).resolve()
        if (song_dir / MIXTURE_NAME).is_file():
            mixture = _audio(song_dir / MIXTURE_NAME, folder)
        else:
            problems.append(f"the mixture {song_dir / MIXTURE_NAME} is not there (moved?)")
        truth = {n: _audio(song_dir / f"{n}.wav", folder) for n in names if (song_dir / f"{n}.wav").is_file()}
    else:
        problems.append(f"no {RUN_NAME}: the mixture and the ground truth are not known")
    if not methods:
        problems.append("no separation found here (no wavs, no metrics.json): an interrupted run?")
    for method in methods:
        missing = [n for n in names if n not in method.audio]
        if missing:
            problems.append(f"{method.name}: no {', '.join(m + '.wav' for m in missing)}")
        if method.scores is None and truth:
            problems.append(f"{method.name}: no scores ({JSON_NAME})")
    for audio in [mixture, *truth.values(), *(a for m in methods for a in m.audio.values())]:
        if audio is not None and audio.error:
            problems.append(f"{audio.path} {audio.error}")

    table = score_rows(methods, names)
    figures = [Path(os.path.relpath(p, folder)).as_posix()
               for sub in method_dirs for p in sorted(sub.glob("*.png"))]
    config = "config.yml" if (folder / "config.yml").is_file() else None
    return dict(title=run.get("title") or folder.resolve().name, run=run, config=config, names=names, methods=methods,
                mixture=mixture, truth=truth, table=table, metrics=METRICS, figures=figures, problems=problems,
                cap=SCORE_CAP_DB, capped=any(c["capped"] for row in table for c in row["cells"]))


def score_rows(methods: Sequence[Method], names: Sequence[str], cap: float = SCORE_CAP_DB) -> list[dict]:
    """The BSS Eval table: one row per (source, method) with scores, each cell {"text", "best", "capped", "value"};
    "best" marks the highest value of a metric among a source's methods (values above the cap, BSS Eval
    artefacts, are never the best)."""
    rows = []
    for name in names:
        medians = [(m, m.scores.medians()[name]) for m in methods if m.scores and name in m.scores.targets]
        best = {}
        for metric in METRICS:
            values = [v[metric] for _, v in medians if math.isfinite(v[metric]) and v[metric] <= cap]
            best[metric] = max(values) if values else None
        for method, values in medians:
            cells = [dict(value=values[metric], text=format_score(values[metric], cap),
                          capped=math.isfinite(values[metric]) and values[metric] > cap,
                          best=best[metric] is not None and values[metric] == best[metric] and len(medians) > 1)
                     for metric in METRICS]
            rows.append(dict(source=name, method=method.name, frames=method.scores.n_frames, cells=cells))
    return rows


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def write_report(folder: str | os.PathLike, sources: Optional[Sequence[str]] = None) -> Path:
    """Write ``folder/report.html`` (over an earlier one; nothing else is touched). Returns its path."""
    folder = Path(folder)
    context = collect(folder, sources)
    html = _environment().get_template("report.html.j2").render(**context)
    return _write_text(folder / REPORT_NAME, html)


def write_index(output: str | os.PathLike, song_folders: Sequence[str | os.PathLike], title: str = "",
                figures: Sequence[str] = ("scores.png",), tables: Sequence[str] = ("scores.csv",)) -> Path:
    """Write ``output/index.html``: one row per song (its medians per method and source, a link to its report),
    the aggregate table files and figures found in ``output``. Returns its path."""
    output = Path(output)
    songs = []
    for song in song_folders:
        song = Path(song)
        context = collect(song)
        songs.append(dict(name=song.name, report=Path(os.path.relpath(song / REPORT_NAME, output)).as_posix(),
                          has_report=(song / REPORT_NAME).is_file(), rows=context["table"],
                          problems=context["problems"]))
    html = _environment().get_template("index.html.j2").render(
        title=title or output.resolve().name, songs=songs, metrics=METRICS, cap=SCORE_CAP_DB,
        figures=[f for f in figures if (output / f).is_file()], tables=[t for t in tables if (output / t).is_file()],
        aggregate=_read_csv(output, tables))
    return _write_text(output / INDEX_NAME, html)


def _read_csv(output: Path, tables: Sequence[str]) -> list[list[str]]:
    """The first aggregate table found, as rows of cells (header first); [] if none."""
    import csv

    for name in tables:
        path = output / name
        if path.is_file():
            with open(path, newline="") as handle:
                rows = list(csv.reader(handle))
            header = rows[0] if rows else []
            return rows[:1] + [[_format_cell(cell) if header[i] in METRICS else cell for i, cell in enumerate(row)]
                               for row in rows[1:]]
    return []


def _format_cell(text: str) -> str:
    try:
        return format_score(float(text))
    except ValueError:
        return text

"""The HTML listening reports (separation/report.py): what they gather and how they show it, the capped score
figure, and the pages themselves opened in headless Chromium (players load, images load, numbers equal the scores,
links resolve, no console output)."""
from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import music_like, run_script, write_wav
from separation import evaluation, figures, report

RATE = 16000
SECONDS = 3.0
NAMES = ("piano", "violin")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def separation(tmp_path):
    """A separation folder as the scripts leave it: a song folder (mixture and ground truth), the estimates with
    their BSS Eval scores, a mixture baseline (whose SAR is ~200 dB), figures and run.json."""
    song = tmp_path / "songs" / "duo"
    piano, violin = music_like(SECONDS, seed=1, f0=110.0), music_like(SECONDS, seed=2, f0=660.0)
    write_wav(song / "piano.wav", piano)
    write_wav(song / "violin.wav", violin)
    write_wav(song / "mix.wav", piano + violin)
    folder = tmp_path / "out" / "duo"
    references = np.stack([piano, violin]).astype(np.float64)
    rng = np.random.default_rng(0)
    estimates = references + 0.3 * references[::-1] + 0.01 * rng.standard_normal(references.shape)
    for name, audio in zip(NAMES, estimates):
        write_wav(folder / f"{name}.wav", audio)
    evaluation.evaluate_sources(references, estimates, list(NAMES), RATE).save(folder)
    mixture = np.stack([piano + violin] * 2) / 2
    for name, audio in zip(NAMES, mixture):
        write_wav(folder / "baselines" / "mixture" / f"{name}.wav", audio)
    baseline = evaluation.evaluate_sources(references, mixture, list(NAMES), RATE)
    baseline.save(folder / "baselines" / "mixture")
    figures.plot_score_boxes({"BASIS": evaluation.Scores.load(folder / "metrics.json"), "mixture": baseline},
                             folder / "scores.png")
    report.write_run_record(folder, song_dir=str(song), sources=list(NAMES), seed=0, command="python demo")
    return folder


def medians_from_json(path: Path) -> dict:
    """Median over the non-NaN frames of every target and metric, read straight from museval's JSON layout."""
    data = json.loads(path.read_text())
    out = {}
    for target in data["targets"]:
        for metric in evaluation.METRICS:
            values = [f["metrics"][metric] for f in target["frames"]]
            values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
            out[target["name"], metric] = float(np.median(values))
    return out


def test_scores_are_formatted_capped_and_the_best_is_marked(separation):
    assert report.format_score(206.51) == "> 60" and report.format_score(12.344) == "12.34"
    assert report.format_score(float("nan")) == "NaN" and report.format_score(-3.2) == "-3.20"
    context = report.collect(separation)
    assert [m.name for m in context["methods"]] == ["BASIS", "mixture"]
    expected = medians_from_json(separation / "metrics.json")
    baseline = medians_from_json(separation / "baselines" / "mixture" / "metrics.json")
    rows = {(r["source"], r["method"]): r for r in context["table"]}
    for name in NAMES:
        basis, mixture = rows[name, "BASIS"]["cells"], rows[name, "mixture"]["cells"]
        for i, metric in enumerate(evaluation.METRICS):
            assert basis[i]["value"] == pytest.approx(expected[name, metric])
            assert basis[i]["best"] == (expected[name, metric] >= baseline[name, metric] or baseline[name, metric] > 60)
        sar = evaluation.METRICS.index("SAR")
        assert baseline[name, "SAR"] > 60  # a scaled copy of the mixture: BSS Eval's artefact
        assert mixture[sar]["capped"] and mixture[sar]["text"] == "> 60" and not mixture[sar]["best"]
    assert context["capped"] and context["problems"] == []


def test_the_capped_panel_keeps_the_axis_readable_and_writes_the_value(separation):
    plt = figures.pyplot()
    scores = {"BASIS": evaluation.Scores.load(separation / "metrics.json"),
              "mixture": evaluation.Scores.load(separation / "baselines" / "mixture" / "metrics.json")}
    fig, axis = plt.subplots()
    assert figures.draw_score_boxes(axis, scores, "SAR", list(NAMES))
    baseline = medians_from_json(separation / "baselines" / "mixture" / "metrics.json")
    assert axis.get_ylim()[1] < figures.SCORE_CAP_DB + 10  # the ~200 dB value does not stretch the axis
    assert sorted(t.get_text() for t in axis.texts) == sorted(f"{baseline[n, 'SAR']:.0f}" for n in NAMES)
    fig2, axis2 = plt.subplots()
    assert not figures.draw_score_boxes(axis2, scores, "SDR", list(NAMES))  # nothing to cap: plain boxes
    assert not axis2.texts
    plt.close(fig)
    plt.close(fig2)


def test_missing_and_unreadable_outputs_are_said_on_the_page(separation, tmp_path, capsys):
    (separation / "violin.wav").unlink()
    (separation / "baselines" / "mixture" / "piano.wav").write_bytes(b"not a wav")
    page = report.write_report(separation).read_text()
    warning = capsys.readouterr().err
    assert "warning:" in warning and "mixture/piano.wav cannot be read as audio" in warning
    assert "BASIS: no violin.wav" in page and "baselines/mixture/piano.wav cannot be read" in page
    report.write_run_record(separation, song_dir=str(separation.parents[1] / "songs" / "duo"))  # a bare record
    assert "Command:" not in report.write_report(separation).read_text()
    empty = tmp_path / "interrupted"
    empty.mkdir()
    page = report.write_report(empty).read_text()
    assert "no separation found here" in page and "no run.json" in page


def test_make_report_writes_pages_and_touches_nothing_else(separation):
    before = {p: p.stat().st_mtime_ns for p in separation.rglob("*") if p.is_file()}
    proc = run_script("make_report.py", str(separation.parent))
    assert proc.returncode == 0, proc.stderr
    assert (separation / "report.html").is_file() and (separation.parent / "index.html").is_file()
    assert {p: p.stat().st_mtime_ns for p in before} == before  # audio, scores, figures untouched


HARNESS = """<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="page" src="PAGE" width="1200" height="900"></iframe>
<script>
const frame = document.getElementById("page");
frame.addEventListener("load", async () => {
  const doc = frame.contentDocument;
  const audios = [...doc.querySelectorAll("audio")];
  const audioReady = a => new Promise(done => {
    if (a.readyState >= 1 || a.error) return done();
    a.addEventListener("loadedmetadata", done, {once: true});
    a.addEventListener("error", done, {once: true});
  });
  const imageReady = i => new Promise(done => { if (i.complete) return done(); i.onload = i.onerror = done; });
  await Promise.all([...audios.map(audioReady), ...[...doc.images].map(imageReady)]);
  const resolves = href => new Promise(done => {
    const request = new XMLHttpRequest();
    request.onload = () => done(request.responseText.length > 0);
    request.onerror = () => done(false);
    request.open("GET", new URL(href, frame.contentWindow.location.href).href);
    request.send();
  });
  const links = [...doc.querySelectorAll("a[href]")].map(a => a.getAttribute("href"));
  const result = {
    audio: audios.map(a => ({src: a.getAttribute("src"), duration: a.duration, error: a.error && a.error.code})),
    images: [...doc.images].map(i => ({src: i.getAttribute("src"), width: i.naturalWidth})),
    cells: [...doc.querySelectorAll("#scores td[data-metric]")].map(td => ({
      source: td.parentElement.dataset.source, method: td.parentElement.dataset.method,
      metric: td.dataset.metric, text: td.textContent})),
    links: await Promise.all(links.map(async href => ({href, ok: await resolves(href)})))
  };
  document.getElementById("out").textContent = "RESULT" + JSON.stringify(result) + "END";
});
</script></body></html>
"""


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[dict, str]:
    """Load ``page`` in headless Chromium through a harness page; (what the page reports, Chromium's log)."""
    harness = tmp_path / f"harness_{page.stem}.html"
    harness.write_text(HARNESS.replace("PAGE", page.resolve().as_uri()))
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom",
                           harness.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"RESULT(.*)END", proc.stdout)
    assert found, f"the harness did not finish: {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1))), proc.stderr  # --dump-dom escapes the text


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: ./setup.sh --dev installs it (Debian chromium)")
def test_the_report_and_the_index_work_in_a_browser(separation, tmp_path):
    page = report.write_report(separation)
    index = report.write_index(separation.parent, [separation])
    result, log = open_in_chromium(page, tmp_path)
    # every player: the mixture, 2 ground truths, 2 estimates, 2 baselines; each loads the song's length
    assert len(result["audio"]) == 7
    for audio in result["audio"]:
        assert audio["error"] is None and audio["duration"] == pytest.approx(SECONDS, abs=1e-3), audio
    assert result["images"] and all(i["width"] > 0 for i in result["images"]), result["images"]
    expected = {**{(n, "BASIS", m): v for (n, m), v in medians_from_json(separation / "metrics.json").items()},
                **{(n, "mixture", m): v for (n, m), v in
                   medians_from_json(separation / "baselines" / "mixture" / "metrics.json").items()}}
    shown = {(c["source"], c["method"], c["metric"]): c["text"] for c in result["cells"]}
    assert set(shown) == set(expected)
    for key, value in expected.items():
        assert shown[key] == ("> 60" if value > 60 else f"{value:.2f}"), key
    index_result, index_log = open_in_chromium(index, tmp_path)
    assert index_result["links"] and all(link["ok"] for link in index_result["links"]), index_result["links"]
    assert any(link["href"].endswith("duo/report.html") for link in index_result["links"])
    for text in (log, index_log):  # the pages print nothing to the console (no script errors, no warnings)
        assert not [line for line in text.splitlines() if "CONSOLE" in line and "harness" not in line]

"""``or_synth.report`` on a tiny evaluation: the bundle's files, a page that needs nothing from the network (every
image a data: URI, no script, no external link), its sections in the supervisor's reading order with warnings
beside their numbers, the reports of a samples folder and a training run that say what is absent, ``compare``
marking differences and refusing incomparable cards, and the page in headless Chromium (skipped without it)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from or_synth.data.edits import apply_edit, parse_edit
from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import Vocabulary
from or_synth.report import load_config, positional_compare, report
from or_synth.reports import ReportError
from or_synth.reports.bundle import SECTIONS
from tests.helpers import render_tiny_dataset, small_scene
from tests.helpers import copy_as_samples, run_evaluate, train_classifier
from tests.helpers import write_edit_folder

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DOWNSTREAM = [
    "action_recognition.seeds=[0,1]",
    "action_recognition.ratios=[0,1]",
    "action_recognition.fractions=[1.0]",
    "action_recognition.steps=2",
    "action_recognition.batch_size=8",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def work(tiny_render, tmp_path_factory) -> dict[str, Path]:
    """A tiny render, a relation classifier and three evaluations: every metric on copies of the real validation
    views; the same N on graph-shuffled copies (comparable, worse consistency); camera 1 only (N halves)."""
    base = tmp_path_factory.mktemp("report")
    root = tiny_render
    classifier = train_classifier(root, base / "classifier", "classifier.steps=24")  # sees enough to tell
    samples = copy_as_samples(root, "validation", base / "copies", layout="given")  # with boxes: pairs scored
    training_graphs = copy_as_samples(root, "train", base / "train_copies")
    before = parse_scan(small_scene(4, "000001"), Vocabulary())
    after = apply_edit(before, parse_edit("predicate head-surgeon Patient Sawing")).after
    write_edit_folder(base / "edits/4_000001_sawing", before, after, full_follows_edit=False)
    run_evaluate(
        samples,
        classifier,
        root,
        base / "eval",
        "metrics=[classifier_fd,graph_consistency,memorisation,relation_sensitivity,action_recognition]",
        f"edits={base / 'edits'}",
        f"action_recognition.samples={training_graphs}",
        f"action_recognition.extra_real_root={root}",
        *DOWNSTREAM,
    )
    run_evaluate(
        copy_as_samples(root, "validation", base / "shuffled", shuffle_graphs=True),
        classifier,
        root,
        base / "eval_b",
    )
    lines = samples.read_text().splitlines()
    camera_one = base / "copies/manifest_cam1.jsonl"
    camera_one.write_text("".join(x + "\n" for x in lines if json.loads(x)["camera"] == 1))
    run_evaluate(camera_one, classifier, root, base / "eval_cam1")
    return {"base": base, "root": root, "classifier": classifier, "samples": samples.parent}


@pytest.fixture(scope="module")
def bundle(work) -> Path:
    return report(
        load_config([f"run={work['base'] / 'eval'}", f"out={work['base'] / 'reports'}", "grid_scans=4"])
    )


class Links(HTMLParser):
    """Every tag with its attributes, and the text of <style> blocks (for url(...))."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def external_references(page: Path) -> list[str]:
    """Every URL the page would fetch or lead to outside its own folder: src/href/srcset/poster/data attributes,
    CSS url(...) and @import."""
    links = parse(page)
    found = []
    for _, attrs in links.tags:
        for key in ("src", "href", "srcset", "poster", "data", "action", "formaction"):
            value = (attrs.get(key) or "").strip()
            if re.match(r"^(https?:)?//|^(ftp|ws|wss|file):", value, re.IGNORECASE):
                found.append(value)
    for style in links.styles:
        found += re.findall(r"url\(\s*['\"]?((?:https?:)?//[^'\")]+)", style)
        found += re.findall(r"@import\s+['\"]?([^'\";]+)", style)
    return found


def test_bundle_holds_metrics_cards_figures_configs_environment_and_hashes(bundle, work):
    document = json.loads((work["base"] / "eval/metrics.json").read_text())
    assert bundle.name == "report_eval" or bundle.name.endswith("_eval")
    assert json.loads((bundle / "metrics.json").read_text())["metrics"] == document["metrics"]
    for name in document["cards"]:
        assert json.loads((bundle / "cards" / f"{name}.json").read_text()) == document["cards"][name]
        assert (bundle / "cards" / f"{name}.md").read_text().startswith("# ")
    figures = {p.name for p in (bundle / "figures").glob("*.png")}
    assert "consistency_per_predicate.png" in figures and "action_recognition.png" in figures
    assert "pair_consistency" in document["cards"]
    assert len([f for f in figures if f.startswith("sample_")]) == 4
    assert any(f.startswith("training_classifier") for f in figures) and any(
        f.startswith("edit_") for f in figures
    )
    for path in (bundle / "figures").glob("*.png"):
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert "samples:" in (bundle / "configs/evaluate.yaml").read_text()
    assert list((bundle / "configs").glob("classifier_*.yaml"))  # the scorer's training run config
    environment = json.loads((bundle / "environment.json").read_text())
    for side in ("evaluation", "report"):
        assert {"packages", "device", "git_commit", "python"} <= set(environment[side])
    assert "matplotlib" in environment["report"]["packages"]
    hashes = json.loads((bundle / "hashes.json").read_text())
    assert (
        hashes["classifier"]["classifier_hash"] == document["cards"]["graph_consistency"]["classifier_hash"]
    )
    assert hashes["samples_manifest"]["sha256"] and hashes["pipeline"]["pipeline_hash"] == "copies"
    checkpoints = next(iter(hashes["checkpoints"].values()))
    assert any(k.endswith(".safetensors") and len(v) == 64 for k, v in checkpoints.items())
    pairs = document["details"]["memorisation"]["pairs"][:8]
    assert all((bundle / "memorisation_pairs" / p["file"]).is_file() for p in pairs)
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_page_is_self_contained(bundle):
    page = bundle / "index.html"
    links = parse(page)
    assert external_references(page) == []
    assert not [t for t, _ in links.tags if t in ("script", "link", "iframe", "object", "embed")]
    csp = [
        a["content"]
        for t, a in links.tags
        if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp and "default-src 'none'" in csp[0] and "img-src data:" in csp[0]
    images = [a["src"] for t, a in links.tags if t == "img"]
    assert len(images) >= 10
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    for _, attrs in links.tags:  # every other link stays on the page or in the bundle folder
        href = attrs.get("href")
        if href and not href.startswith("#"):
            assert (bundle / href).exists(), href


def test_page_reads_in_order_with_warnings_beside_their_numbers(bundle, work):
    html = (bundle / "index.html").read_text()
    positions = [html.index(f'<section id="{section}">') for section, _ in SECTIONS]
    assert positions == sorted(positions)
    assert 'id="pair-table"' in html and "pair consistency (pair-level predicate macro-F1 per scan)" in html
    document = json.loads((work["base"] / "eval/metrics.json").read_text())
    summary = html[
        html.index('id="summary-table"') : html.index("</table>", html.index('id="summary-table"'))
    ]
    rows = summary.split("<tr")[2:]
    fd_row = next(r for r in rows if "second FD" in r)
    assert "biased upward" in fd_row  # the small-N warning sits on the FD row
    consistency = next(r for r in rows if "per scan" in r and "graph consistency" in r)
    report_gc = document["details"]["graph_consistency"]
    assert f"ceiling {report_gc['ceiling']['predicate_macro_f1_per_scan']:.3f}" in consistency
    assert f"floor {report_gc['floor']['predicate_macro_f1_per_scan']:.3f}" in consistency
    assert "scorer is weak on" in consistency
    downstream = next(r for r in rows if "downstream gain" in r)
    assert "oracle" in downstream and "matched compute" in downstream and "[" in downstream
    assert any("FID (Inception)" in r and "not computed" in r and "inception_weights=" in r for r in rows)
    predicates = html[html.index('id="predicate-table"') :]
    predicates = predicates[: predicates.index("</table>")]
    weak = [w for w in document["cards"]["graph_consistency"]["warnings"] if "weak on" in w]
    assert weak and all(w in predicates for w in weak)  # each in full, on its predicate's row
    assert 'id="downstream-table"' in html and 'id="per-class-table"' in html
    assert "Sawing" in html  # the graph edit's caption
    assert html.count('class="sample-row"') == 4


def test_samples_folder_and_training_run_say_what_is_absent(work, tmp_path):
    samples_page = report(load_config([f"run={work['samples']}", f"out={tmp_path}"])) / "index.html"
    html = samples_page.read_text()
    assert 'id="absent-sections"' in html and "python -m or_synth.evaluate samples=" in html
    assert html.count('class="sample-row"') == 6  # the grid needs no evaluation
    assert external_references(samples_page) == []
    run_dir = work["classifier"].parent
    training_page = report(load_config([f"run={run_dir}", f"out={tmp_path}"])) / "index.html"
    html = training_page.read_text()
    assert html.count('alt="training curves of') == 1 and 'id="absent-sections"' in html
    assert (training_page.parent / "hashes.json").is_file()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="none of"):
        report(load_config([f"run={tmp_path / 'empty'}", f"out={tmp_path}"]))
    with pytest.raises(ReportError, match="would replace the input"):
        report(load_config([f"run={work['base'] / 'eval'}", f"out={work['base']}", "name=eval"]))


def test_compare_marks_differences(work, tmp_path):
    folder = report(
        load_config([f"out={tmp_path}", f"compare=[{work['base'] / 'eval'},{work['base'] / 'eval_b'}]"])
    )
    comparison = json.loads((folder / "comparison.json").read_text())
    status = {m["name"]: m["status"] for m in comparison["metrics"]}
    assert status["graph_consistency"] == status["classifier_fd"] == "compared"
    assert status["action_recognition"] == "only_a"
    model = next(
        r
        for m in comparison["metrics"]
        if m["name"] == "graph_consistency"
        for r in m["rows"]
        if r["label"] == "model macro-F1 per scan"
    )
    # A tiny classifier need not prefer the true graphs; what is tested is that the marking follows the numbers.
    assert model["a"] != model["b"]
    better = "A" if model["a"] > model["b"] else "B"
    assert model["text"] == f"{better} better" and model["css"] == ("down" if better == "A" else "up")
    html = (folder / "index.html").read_text()
    assert f"{better} better" in html and ("▼" if better == "A" else "▲") in html and external_references(folder / "index.html") == []


def test_compare_refuses_incomparable_cards_with_the_reason(work, bundle, tmp_path):
    a, b = work["base"] / "eval", work["base"] / "eval_cam1"
    folder = report(load_config([f"out={tmp_path}", f"compare=[{a},{b}]"]))
    comparison = {m["name"]: m for m in json.loads((folder / "comparison.json").read_text())["metrics"]}
    for name in ("classifier_fd", "classifier_prdc", "graph_consistency", "pair_consistency", "memorisation"):
        assert comparison[name]["status"] == "refused"
        assert "N differs: 32 vs 16" in comparison[name]["reason"]
        assert "cameras differ: [1, 2] vs [1]" in comparison[name]["reason"]
    html = (folder / "index.html").read_text()
    assert html.count('class="refused"') == 6 and 'class="compared"' not in html
    # A report folder compares like the evaluation it came from.
    again = report(load_config([f"out={tmp_path}", "name=again", f"compare=[{bundle},{b}]"]))
    assert json.loads((again / "comparison.json").read_text())["metrics"] == list(comparison.values())


def test_report_user_errors_are_one_line_and_exit_2(work, tmp_path):
    """compare with one folder, a missing run, out= a file: the contract, and nothing written."""
    from or_synth.report import main
    from tests.helpers import assert_refused, run_command

    assert_refused(run_command(main, "compare", str(work["base"] / "eval")), "compare takes two folders")
    assert_refused(run_command(main, f"run={tmp_path / 'none'}"), "none")
    (tmp_path / "f").write_text("mine")
    assert_refused(run_command(main, f"run={work['base'] / 'eval'}", f"out={tmp_path / 'f'}"), "out=")
    assert (tmp_path / "f").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_positional_compare_becomes_an_override_and_runs_as_a_command(work, tmp_path):
    odd = "/tmp/it's here"
    assert positional_compare(["report", "compare", "A", odd, "out=x"]) == [
        "report",
        "compare=['A','/tmp/it\\'s here']",
        "out=x",
    ]
    assert positional_compare(["report", "run=A"]) == ["report", "run=A"]
    command = [
        sys.executable,
        "-m",
        "or_synth.report",
        "compare",
        str(work["base"] / "eval"),
        str(work["base"] / "eval_b"),
        f"out={tmp_path}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "report:" in done.stdout and next(tmp_path.glob("compare_*/index.html")).is_file()


def test_a_report_replaces_only_an_earlier_report(work, tmp_path):
    """out/name may hold an earlier bundle (replaced); a file or a folder of other files is refused, untouched."""
    run = f"run={work['base'] / 'eval'}"
    first = report(load_config([run, f"out={tmp_path}", "name=r", "grid_scans=2"]))
    again = report(load_config([run, f"out={tmp_path}", "name=r", "grid_scans=2"]))
    assert first == again and (again / "index.html").is_file()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    (tmp_path / "a_file").write_text("keep me too")
    for name in ("notes", "a_file"):
        with pytest.raises(ReportError, match="not a report|is a file"):
            report(load_config([run, f"out={tmp_path}", f"name={name}"]))
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    assert (tmp_path / "a_file").read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "notes", "r"]  # nothing moved aside


def test_paths_inside_the_repository_are_written_relative(work, tmp_path, monkeypatch):
    """A bundle built from inputs inside the checkout names them relative to it, never by absolute path."""
    from or_synth.reports import bundle as bundle_module

    monkeypatch.setattr("or_synth.data.io.REPO_ROOT", work["base"])
    written = report(load_config([f"run={work['base'] / 'eval'}", f"out={tmp_path}", "name=rel"]))
    assert bundle_module.repo_relative("x") == "x"
    for name in ("index.html", "hashes.json", "metrics.json"):
        text = (written / name).read_text()
        assert str(work["base"]) not in text, name
    assert "eval" in json.loads((written / "metrics.json").read_text())["config"]["out"]


# --- the page in a real browser -----------------------------------------------------------------------------
PROBE = """<script>addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.dataset.sections = [...document.querySelectorAll("section")].map(s => s.id).join(",");
});</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def blocked_requests(stderr: str) -> list[str]:
    """Console lines of a fetch the page attempted: a CSP block or a failed network load."""
    return [
        line
        for line in stderr.splitlines()
        if "Content Security Policy" in line or "net::ERR" in line or "Failed to load resource" in line
    ]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def probe(page: str, tmp_path: Path) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    """Open a copy of ``page`` with a load-time probe (the report itself has no script) in headless Chromium:
    the probe's findings (images, broken, sections) and Chromium's run."""
    probed = tmp_path / "probed.html"
    allow_probe = re.sub(r'(Content-Security-Policy" content=")', r"\1script-src 'unsafe-inline'; ", page)
    probed.write_text(allow_probe.replace("</body>", PROBE + "</body>"))
    done = chromium("--dump-dom", probed.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", done.stdout).group(1)
    return dict(re.findall(r'data-(\w+)="([^"]*)"', body)), done


def test_page_renders_offline_in_headless_chromium(bundle, tmp_path):
    # 1. With a load-time probe: every image decoded, every section there.
    page = (bundle / "index.html").read_text()
    attributes, done = probe(page, tmp_path)
    assert int(attributes["images"]) == page.count("<img ") and attributes["broken"] == "0"
    assert attributes["sections"].split(",") == [s for s, _ in SECTIONS]
    assert 'id="summary-table"' in done.stdout
    assert blocked_requests(done.stderr) == []

    # 2. The page itself, as a supervisor opens it: a screenshot that is not blank, and no fetch attempted.
    shot = tmp_path / "page.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1200,3000", (bundle / "index.html").as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert blocked_requests(done.stderr) == []
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 3000)
    histogram = image.histogram()
    assert max(histogram) < 0.97 * sum(histogram)  # not a single colour: text, tables and figures drew

    # 3. The check catches a page that does reach out (so an empty list above means something).
    leaky = tmp_path / "leaky.html"
    leaky.write_text(page.replace("</body>", '<img src="https://example.invalid/x.png"></body>'))
    assert blocked_requests(chromium("--dump-dom", leaky.as_uri()).stderr)

"""The HTML report (``snakemake --report``): built for the example and for a failed run,
opened in a real headless Chromium, and its statistics checked on tiny tables."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ok, planned_rules, snakemake

from materializer import plots

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
TITLE = "Video-quality label refresh"


def embedded(report: Path, name: str) -> object:
    """A JSON object the report embeds (``var results = {...};`` and the like)."""
    text = report.read_text(encoding="utf-8")
    match = re.search(rf'<script id="{name}">\s*var \w+ = (.*?);\s*</script>', text, re.S)
    assert match, f"no {name} in the report"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped example, run and reported in a copy of the project."""
    copy = tmp_path_factory.mktemp("example") / "vq-materializer"
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    ok(snakemake(copy, snakefile=None))
    ok(snakemake(copy, "--report", "report.html", snakefile=None))
    return copy


def test_report_builds_for_the_example_with_every_figure(example: Path) -> None:
    report = example / "report.html"
    results = embedded(report, "results")
    names = {Path(path).name: item for path, item in results.items()}
    assert {"summary.html", "match-rate.png", "konvid-1k.mos.png", "live-vqc.mos.png",
            "niqe.png", "viideo.png", "konvid-1k.html", "konvid-1k-niqe.html",
            "konvid-1k-niqe.agreement.html", "live-vqc-viideo.agreement.html"} <= set(names)
    assert names["konvid-1k.mos.png"]["labels"] == {"table": "konvid-1k",
                                                     "figure": "mos histogram"}
    assert names["viideo.png"]["labels"] == {"table": "live-vqc-viideo",
                                              "competitor": "viideo"}
    assert "0 missing labels" in names["konvid-1k.mos.png"]["caption"]
    caption = names["viideo.png"]["caption"]
    assert "Spearman" in caption and "Pearson" in caption
    assert names["konvid-1k-niqe.agreement.html"]["labels"] == {
        "table": "konvid-1k-niqe", "figure": "agreement with MOS"}
    assert "pairwise-srcc.png" not in names  # one scorer per table: nothing to pair
    assert set(embedded(report, "categories")) == {"Summary", "MOS labels", "Second opinion",
                                                  "Agreement", "Tables"}
    front = embedded(report, "workflow-desc")
    assert TITLE in front and 'id="vq-status"' in front
    for table in ("konvid-1k", "live-vqc", "konvid-1k-niqe", "live-vqc-viideo"):
        assert f"<b>{table}</b>" in front
    assert "sha256" in front and "snakemake 9." in front  # provenance summary


def test_example_scatter_correlations_match_a_direct_computation(example: Path) -> None:
    import pandas as pd
    from scipy.stats import pearsonr, spearmanr

    for table_id, out, name in (("live-vqc-viideo", "live-vqc.jsonl", "viideo"),
                                ("konvid-1k-niqe", "konvid-1k.parquet", "niqe")):
        path = example / "results" / "second-opinion" / out
        table = pd.read_json(path, lines=True) if out.endswith(".jsonl") \
            else pd.read_parquet(path)
        x, y = plots.ok_pairs(table, f"second_opinion_{name}_score",
                              f"second_opinion_{name}_status", "mos")
        caption = (example / "results" / "reports" / "plots" / "second-opinion" / table_id /
                   "scatters" / f"{name}.html").read_text(encoding="utf-8")
        assert f"over {len(x)} rows with status ok" in caption
        assert f"Spearman &rho; = {spearmanr(x, y)[0]:+.3f}" in caption
        assert f"Pearson r = {pearsonr(x, y)[0]:+.3f}" in caption
    assert "Spearman &rho; = -0.537" in caption  # NIQE on KoNViD-1k, a real scorer


def test_complete_example_has_nothing_to_do_and_one_table_replots_alone(example: Path,
                                                                        tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(example, copy, symlinks=True)
    assert planned_rules(ok(snakemake(copy, "-n", snakefile=None))) == set()
    labels = copy / "config" / "data" / "live-vqc" / "LIVE_VQC_metadata.csv"
    lines = labels.read_text(encoding="utf-8").splitlines(keepends=True)
    labels.write_text("".join(lines[:-1]), encoding="utf-8")  # one label fewer
    planned = planned_rules(ok(snakemake(copy, "-n", snakefile=None)))
    assert {"plot_mos_labels__live-vqc", "plot_second_opinion__live-vqc-viideo",
            "plot_summary", "plot_match_rate"} <= planned
    assert not {"plot_mos_labels__konvid-1k", "plot_second_opinion__konvid-1k-niqe"} & planned


def test_report_plots_false_plans_no_per_table_figures(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = copy / "config" / "manifest.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8") + "report_plots: false\n",
                        encoding="utf-8")
    planned = planned_rules(ok(snakemake(copy, "-n", snakefile=None)))
    assert {"plot_summary", "plot_match_rate", "mos_labels__konvid-1k"} <= planned
    assert not any(rule.startswith(("plot_mos", "plot_second")) for rule in planned)


def failing_manifest(folder: Path) -> Path:
    """One MOS table that fails (1 of 3 labels, minimum 1.0), one that joins at 0.5."""
    data = folder / "data"
    data.mkdir(parents=True)
    (data / "feat.csv").write_text("clip_id,psnr\nc1,40\nc2,41\nc3,42\n", encoding="utf-8")
    (data / "labels.csv").write_text("clip_id,mos\nc1,3.0\n", encoding="utf-8")
    (data / "feat_x.csv").write_text("clip_id,psnr\nx1,40\nx2,41\n", encoding="utf-8")
    (data / "labels_x.csv").write_text("clip_id,mos\nx1,1.5\ny9,2.0\n", encoding="utf-8")
    (data / "dover.csv").write_text("clip_id,score\nx1,0.1\nx2,0.3\nz1,0.2\n",
                                    encoding="utf-8")
    manifest = {
        "mos_labels": {
            "defaults": {"min_match_rate": 1.0},
            "report_json": "reports/mos.json", "report_md": "reports/mos.md",
            "tables": [
                {"id": "main", "features": "data/feat.csv", "labels": ["data/labels.csv"],
                 "out": "mos/main.parquet"},
                {"id": "extra", "features": "data/feat_x.csv", "labels": ["data/labels_x.csv"],
                 "out": "mos/extra.parquet", "min_match_rate": 0.4},
            ],
        },
        "second_opinion": {
            "report_json": "reports/so.json", "report_md": "reports/so.md",
            "tables": [
                {"id": "main-dover", "features": "mos/main.parquet",
                 "scores": ["dover=data/dover.csv"], "out": "so/main.parquet"},
                {"id": "extra-dover", "features": "mos/extra.parquet",
                 "scores": ["dover=data/dover.csv"], "out": "so/extra.parquet"},
            ],
        },
    }
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path


def test_report_builds_after_a_failed_table_and_shows_its_error(tmp_path: Path) -> None:
    failing_manifest(tmp_path)
    assert snakemake(tmp_path, "--configfile", "manifest.yaml").returncode != 0
    done = ok(snakemake(tmp_path, "--configfile", "manifest.yaml", "--report", "report.html"))
    assert "no plots for table 'main'" in done.stderr
    results = embedded(tmp_path / "report.html", "results")
    names = {Path(path).name for path in results}
    assert {"extra.mos.png", "dover.png", "extra.html", "extra-dover.html"} <= names
    assert not {"main.mos.png", "main.html", "main-dover.html"} & names
    front = embedded(tmp_path / "report.html", "workflow-desc")
    assert "2 of 4 failed" in front
    assert re.search(r'<tr class="error"><td><b>main</b>.*?match rate 0\.333', front, re.S)
    assert "which did not finish" in front  # main-dover, downstream of main
    notes = (tmp_path / "reports" / "plots" / "mos-labels" / "extra" / "extra.html").read_text()
    assert "<code>x2</code>" in notes and "<code>y9</code>" in notes  # unmatched keys


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(example: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("MATERIALIZER_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{CHROMIUM} is missing and MATERIALIZER_REQUIRE_CHROMIUM=1")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    url = (example / "report.html").as_uri()
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", url, profile=tmp_path / "a")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # Only the rendered DOM has these unescaped; the page source holds them as JSON.
    assert f'<h1 class="title">{TITLE}</h1>' in dom.stdout
    assert '<table class="vq-status" id="vq-status">' in dom.stdout
    assert '<tr class="ok"><td><b>konvid-1k</b></td>' in dom.stdout
    # The agreement of each second opinion with MOS, as a table on the front page.
    assert '<table class="vq-status vq-agreement" id="vq-agreement">' in dom.stdout
    assert "<td>konvid-1k-niqe</td><td><b>niqe</b></td>" in dom.stdout

    shot = tmp_path / "report.png"
    done = chromium("--virtual-time-budget=10000", f"--screenshot={shot}",
                    "--window-size=1400,1000", url, profile=tmp_path / "b")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1000, 1400)
    colours = np.unique(pixels[..., :3].reshape(-1, 3).round(2), axis=0)
    assert len(colours) > 50  # text, tables and the rule graph, not a blank page


def test_scatters_only_when_the_audit_has_an_agreement_block(tmp_path: Path) -> None:
    figures = {"n": 2, "srcc": None, "note": "fewer than 3 rows: no correlations"}
    audit = {"output_rows": 3, "competitors": {"dover": {"column_prefix": "so_dover",
                                                         "matched_rows": 2}}}
    (tmp_path / "without.json").write_text(json.dumps(audit), encoding="utf-8")
    audit["agreement"] = {"mos_column": "mos", "competitors": {"dover": figures}}
    (tmp_path / "with.json").write_text(json.dumps(audit), encoding="utf-8")
    (tmp_path / "t.csv").write_text("k,mos,so_dover_score,so_dover_status\na,1,0.1,ok\n"
                                    "b,2,0.3,ok\nc,3,,missing\n", encoding="utf-8")
    assert plots.competitor_scatters("t", str(tmp_path / "t.csv"), str(tmp_path / "with.json"),
                                     str(tmp_path / "a")) == ["dover"]
    caption = (tmp_path / "a" / "dover.html").read_text(encoding="utf-8")
    assert "over 2 rows with status ok" in caption and "Spearman &rho; = n/a" in caption
    assert (tmp_path / "a" / "dover.png").read_bytes()[:4] == b"\x89PNG"
    assert plots.competitor_scatters("t", str(tmp_path / "t.csv"),
                                     str(tmp_path / "without.json"), str(tmp_path / "b")) == []
    assert list((tmp_path / "b").iterdir()) == []


def test_summary_escapes_errors_and_names_tables_below_their_minimum(tmp_path: Path) -> None:
    report = {
        "schema": "mos-label-materializer-batch-v1", "status": "failed", "manifest": "m.yaml",
        "tables": [
            {"id": "a", "status": "ok", "out": "a.parquet", "config": {"min_match_rate": 0.9},
             "summary": {"input_rows": 10, "output_rows": 10, "match_rate": 0.8}},
            {"id": "b", "status": "ok", "out": "b.parquet", "config": {"min_match_rate": 0.5},
             "summary": {"input_rows": 4, "output_rows": 4, "match_rate": 1.0}},
            {"id": "c", "status": "error", "out": "c.parquet", "config": {},
             "error": "bad key <x> & 'y'"},
        ],
        "run_provenance": {"git_commit": None, "versions": {"python": "3.11"}},
    }
    path = tmp_path / "mos.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    plots.batch_summary([str(path)], str(tmp_path / "s.html"), str(tmp_path / "m.png"),
                        str(tmp_path / "m.html"))
    summary = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert "3 tables, 1 of 3 failed." in summary
    assert "bad key &lt;x&gt; &amp; &#x27;y&#x27;" in summary and "<x>" not in summary
    assert "commit <code>unknown</code>" in summary
    caption = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert "Lowest match rate: <b>a</b> (0.800)" in caption
    assert "Below their minimum (1): a." in caption and "Failed, drawn as 0 (1): c." in caption
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_match_rate_chart_of_many_tables_sorts_rates_and_shortens_the_caption(
        tmp_path: Path) -> None:
    tables = [{"id": f"t{i:03d}", "status": "ok", "config": {"min_match_rate": 0.5},
               "summary": {"match_rate": 0.3 if i % 2 else 0.9}} for i in range(60)]
    report = {"schema": "mos-label-materializer-batch-v1", "tables": tables}
    png, caption = tmp_path / "m.png", tmp_path / "m.html"
    plots.match_rate_chart([report], str(png), str(caption))
    text = caption.read_text(encoding="utf-8")
    assert text.startswith("<p>60 MOS tables. Lowest match rate: <b>t001</b> (0.300).")
    below = ", ".join(f"t{i:03d}" for i in range(1, 40, 2))
    assert f"Below their minimum (30): {below} and 10 more." in text
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("tables", "setting", "figures"), [
    (100, None, True), (101, None, False), (101, True, True), (3, False, False)])
def test_per_table_figures_by_default_only_up_to_100_tables(
        tmp_path: Path, tables: int, setting: bool | None, figures: bool) -> None:
    write = tmp_path / "data"
    write.mkdir()
    (write / "feat.csv").write_text("clip_id,psnr\nc1,40\n", encoding="utf-8")
    (write / "labels.csv").write_text("clip_id,mos\nc1,3.0\n", encoding="utf-8")
    manifest = {"tables": [{"id": f"t{i:03d}", "features": "data/feat.csv",
                            "labels": ["data/labels.csv"], "out": f"out/t{i:03d}.csv"}
                           for i in range(tables)]}
    if setting is not None:
        manifest["report_plots"] = setting
    (tmp_path / "m.json").write_text(json.dumps(manifest), encoding="utf-8")
    done = ok(snakemake(tmp_path, "-n", "--configfile", "m.json"))
    planned = planned_rules(done)
    assert {"mos_labels__t000", f"mos_labels__t{tables - 1:03d}", "plot_summary"} <= planned
    assert ("plot_mos_labels__t000" in planned) is figures
    said = f"report: {tables} tables, so no per-table figures" in done.stderr
    assert said is (setting is None and not figures)

"""The agreement audit in the reports: copied into the batch report's table entries, a
Markdown table per batch, and in the HTML report a per-table agreement table, the scatter
with the fitted logistic and a competitor heatmap. A real KoNViD-1k batch (three real
scorers on one table) runs with ``-c 1`` and ``-c 2`` and gives the same blocks."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ok, snakemake
from test_agreement_join import COMPETITORS, FEATURES, LABELS, SOURCES, score_sources
from test_html_report import embedded

from materializer import plots
from materializer.batch import render_markdown

SO_AUDITS = {"konvid-three": "so/three.parquet.audit.json",
             "konvid-niqe": "so/niqe.jsonl.audit.json"}


def write_manifest(folder: Path) -> None:
    """KoNViD-1k MOS onto VIDEVAL's features, then two second-opinion tables on it: the
    three scorers together (gated), and NIQE alone."""
    scores = score_sources()
    manifest = {
        "mos_labels": {
            "report_json": "reports/mos.json", "report_md": "reports/mos.md",
            "tables": [{"id": "konvid", "features": FEATURES, "labels": [str(LABELS)],
                        "label_key_column": "flickr_id",
                        "min_match_rate": 1.0, "out": "mos/konvid.parquet"}]},
        "second_opinion": {
            "defaults": {"key_column": "flickr_id", "key_normalize": "stem"},
            "report_json": "reports/so.json", "report_md": "reports/so.md",
            "tables": [
                {"id": "konvid-three", "features": "mos/konvid.parquet", "scores": scores,
                 "out": "so/three.parquet", "min_abs_srcc": 0.5,
                 "min_abs_plcc_logistic": {"dover_technical": 0.8}},
                {"id": "konvid-niqe", "features": "mos/konvid.parquet",
                 "scores": [SOURCES["niqe"]], "out": "so/niqe.jsonl"}]},
    }
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False),
                                          encoding="utf-8")


def blocks(folder: Path) -> dict[str, dict]:
    """Each table's agreement block, from its audit and from the batch report (equal)."""
    report = json.loads((folder / "reports" / "so.json").read_text(encoding="utf-8"))
    found = {}
    for entry in report["tables"]:
        audit = json.loads((folder / SO_AUDITS[entry["id"]]).read_text(encoding="utf-8"))
        assert entry["agreement"] == audit["agreement"], entry["id"]
        found[entry["id"]] = entry["agreement"]
    return found


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same batch run with -c 1 in one folder and -c 2 in another."""
    runs = {}
    for cores in ("1", "2"):
        folder = tmp_path_factory.mktemp(f"c{cores}")
        write_manifest(folder)
        ok(snakemake(folder, "--configfile", "manifest.yaml", "-c", cores))
        runs[cores] = folder
    return runs


def test_c1_c2_and_a_forced_rerun_give_identical_agreement_blocks(
        batches: dict[str, Path], tmp_path: Path) -> None:
    one, two = blocks(batches["1"]), blocks(batches["2"])
    assert one == two
    assert list(one["konvid-three"]["competitors"]) == COMPETITORS
    assert round(one["konvid-three"]["competitors"]["dover_technical"]["srcc"], 3) == 0.861
    assert one["konvid-three"]["competitors"]["niqe"] == one["konvid-niqe"]["competitors"]["niqe"]
    again = tmp_path / "again"
    shutil.copytree(batches["2"], again, symlinks=True)
    ok(snakemake(again, "--configfile", "manifest.yaml", "--forceall", "-c", "2"))
    assert blocks(again) == two


def test_markdown_report_has_an_agreement_table_per_batch(batches: dict[str, Path]) -> None:
    text = (batches["2"] / "reports" / "so.md").read_text(encoding="utf-8")
    block = blocks(batches["2"])["konvid-three"]
    technical = block["competitors"]["dover_technical"]
    low, high = technical["srcc_ci95"]
    assert "## Agreement with MOS" in text
    assert (f"| konvid-three | dover_technical | 1200 | +0.861 | [{low:+.3f}, {high:+.3f}] | "
            f"{technical['krcc']:+.3f} |") in text
    assert "| konvid-niqe | niqe | 1200 | -0.537 |" in text
    gain = block["intersection"]["gain"]
    assert (f"| konvid-three | `mos` | 1200 | dover_technical | "
            f"{block['intersection']['best_single_cv_srcc']:+.3f} | "
            f"{block['intersection']['combined_cv_srcc']:+.3f} | {gain:+.3f} | - |") in text
    assert "| konvid-niqe | `mos` | 1200 | niqe |" in text and "one competitor |" in text
    mos = (batches["2"] / "reports" / "mos.md").read_text(encoding="utf-8")
    assert "Agreement" not in mos


def _item(results: dict, name: str) -> dict:
    found = [item for path, item in results.items() if Path(path).name == name]
    assert len(found) == 1, (name, sorted(Path(p).name for p in results))
    return found[0]


def _decoded(item: dict) -> str:
    return base64.b64decode(item["data_uri"].split("base64,", 1)[1]).decode("utf-8")


def test_html_report_shows_agreement_table_fitted_scatter_and_heatmap(
        batches: dict[str, Path]) -> None:
    folder = batches["2"]
    ok(snakemake(folder, "--configfile", "manifest.yaml", "--report", "report.html"))
    report = folder / "report.html"
    results = embedded(report, "results")
    assert "Agreement" in embedded(report, "categories")
    block = blocks(folder)["konvid-three"]

    table = _item(results, "konvid-three.agreement.html")
    assert table["labels"] == {"table": "konvid-three", "figure": "agreement with MOS"}
    html = _decoded(table)
    assert 'id="vq-agreement-konvid-three"' in html
    for name in COMPETITORS:
        assert f"<td><b>{name}</b></td>" in html
    assert f"gain {block['intersection']['gain']:+.3f}" in html

    heatmap = _item(results, "pairwise-srcc.png")  # only the table with several scorers
    assert heatmap["labels"] == {"table": "konvid-three", "figure": "pairwise-srcc"}
    assert heatmap["data_uri"].startswith("data:image/png")
    pairs = block["intersection"]["pairwise_srcc"]
    assert "Spearman &rho; between each pair of its 3 competitors over the 1200 rows" \
        in heatmap["caption"]
    assert pairs["dover_technical"]["dover_aesthetic"] is not None

    scatters = [item for item in results.values() if item["labels"].get("competitor")]
    assert sorted((s["labels"]["table"], s["labels"]["competitor"]) for s in scatters) == \
        sorted([("konvid-three", n) for n in COMPETITORS] + [("konvid-niqe", "niqe")])
    technical = block["competitors"]["dover_technical"]
    caption = next(s["caption"] for s in scatters
                   if s["labels"] == {"table": "konvid-three", "competitor": "dover_technical"})
    assert f"Spearman &rho; = {technical['srcc']:+.3f}" in caption
    assert f"Pearson r = {technical['plcc_logistic']:+.3f}" in caption
    assert "red curve" in caption

    front = embedded(report, "workflow-desc")
    assert '<table class="vq-status vq-agreement" id="vq-agreement">' in front
    section = front.split('id="vq-agreement">', 1)[1].split("</table>", 1)[0]
    assert section.count("<td>konvid-three</td>") == 3
    assert section.count("<td>konvid-niqe</td>") == 1


# --- the pieces on their own ----------------------------------------------------------

FIGURES = {"n": 3, "srcc": 1.0, "krcc": 1.0, "plcc": 0.99, "srcc_ci95": None,
           "plcc_logistic": None, "rmse_logistic": None, "logistic_params": None,
           "logistic_converged": False, "plcc_logistic_ci95": None,
           "note": "fewer than 5 rows: no logistic fit"}
BLOCK = {"mos_column": "mos", "rows_with_mos": 3, "competitors": {"a|b": FIGURES},
         "intersection": {"intersection_rows": 3, "pairwise_srcc": {"a|b": {}},
                          "single_cv_srcc": {"a|b": None}, "best_single": None,
                          "best_single_cv_srcc": None, "combined_cv_srcc": None, "gain": None,
                          "note": "one competitor; fewer than 10 intersection rows: no "
                                  "cross-validation"}}


def test_markdown_without_agreement_keeps_the_older_layout() -> None:
    report = {"status": "ok", "tables": [
        {"id": "t", "status": "ok", "out": "o.csv",
         "summary": {"input_rows": 3, "output_rows": 3}}]}
    text = render_markdown(report, "second-opinion")
    assert text.endswith("| t | ok | 3 | 3 | `o.csv` |\n") and "Agreement" not in text
    report["tables"][0]["agreement"] = BLOCK
    report["tables"].append({"id": "f", "status": "error", "out": "f.csv", "error": "x"})
    text = render_markdown(report, "second-opinion")
    assert ("| t | a\\|b | 3 | +1.000 | - | +1.000 | +0.990 | - | - | fewer than 5 rows: "
            "no logistic fit |") in text
    assert "| f |" not in text.split("## Agreement with MOS")[1]


def test_scatter_without_a_fit_and_no_heatmap_for_one_competitor(tmp_path: Path) -> None:
    audit = {"output_rows": 4, "agreement": {**BLOCK, "competitors": {"dover": FIGURES}},
             "competitors": {"dover": {"column_prefix": "so_dover", "matched_rows": 3}}}
    (tmp_path / "audit.json").write_text(json.dumps(audit), encoding="utf-8")
    (tmp_path / "t.csv").write_text("k,mos,so_dover_score,so_dover_status\na,1,0.1,ok\n"
                                    "b,2,0.3,ok\nc,3,0.4,ok\nd,4,0.9,bad\n", encoding="utf-8")
    assert plots.competitor_scatters("t", str(tmp_path / "t.csv"), str(tmp_path / "audit.json"),
                                     str(tmp_path / "s")) == ["dover"]
    caption = (tmp_path / "s" / "dover.html").read_text(encoding="utf-8")
    assert "over 3 rows with status ok" in caption and "no logistic fit" in caption
    assert "Note: fewer than 5 rows: no logistic fit." in caption
    assert plots.ok_pairs(plots.read_columns(tmp_path / "t.csv", ["mos", "so_dover_score",
                                                                  "so_dover_status"]),
                          "so_dover_score", "so_dover_status", "mos")[0].tolist() == \
        [0.1, 0.3, 0.4]  # the bad row is left out, as in the audit
    assert plots.pairwise_heatmap("t", str(tmp_path / "audit.json"), str(tmp_path / "p")) \
        is False
    assert list((tmp_path / "p").iterdir()) == []


def test_a_table_without_mos_gets_a_note_instead_of_agreement(tmp_path: Path) -> None:
    (tmp_path / "audit.json").write_text(json.dumps({"competitors": {}}), encoding="utf-8")
    plots.agreement_table("t", str(tmp_path / "audit.json"), str(tmp_path / "a.html"))
    assert "no MOS column: no agreement figures" in (tmp_path / "a.html").read_text()
    assert plots.competitor_scatters("t", str(tmp_path / "t.csv"), str(tmp_path / "audit.json"),
                                     str(tmp_path / "s")) == []

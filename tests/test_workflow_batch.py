"""End-to-end runs of the batch workflow: the ``snakemake`` command in temporary folders."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SNAKEFILE, SNAKEMAKE, ok, planned_rules, snakemake, write_csv

ROOT = Path(__file__).resolve().parents[1]
TIMES = ("started_at", "finished_at")
SUMMARY_PLOTS = ("plot_summary", "plot_match_rate")  # rerun whenever the batch reports do


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


def rewritten(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {name for name, stamp in after.items() if before.get(name) != stamp}


def without_times(value):
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def dump(path: Path, manifest: dict) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def mos_data(tmp_path: Path) -> Path:
    """Two tiny feature/label pairs; keys such as clip_000101 vs 000101.mp4."""
    write_csv(tmp_path / "data" / "feat_a.csv",
              "clip_id,psnr\nclip_000101,40.0\nclip_000102,41.5\nclip_000103,39.0\n")
    write_csv(tmp_path / "data" / "labels_a.csv",
              "src,mos\n000101.mp4,3.5\n000102.mp4,4.0\n000103.mp4,2.0\n")
    write_csv(tmp_path / "data" / "feat_b.csv", "clip_id,psnr\nb1,40\nb2,41\n")
    write_csv(tmp_path / "data" / "labels_b.csv", "clip_id,mos\nb1,50\nb2,70\n")
    return tmp_path


OLDER_MANIFEST = {
    "_comment": "older batch-runner shape, JSON, with comment keys",
    "_comment2": "regexes with braces must reach the job unformatted",
    "defaults": {"min_match_rate": 1.0, "key_normalize": "auto", "_note": "ignored"},
    "tables": [
        {"id": "konvid", "_comment": "regex keys", "features": "data/feat_a.csv",
         "labels": ["data/labels_a.csv"], "out": "out/konvid.parquet",
         "audit_json": "out/konvid.audit.json", "feature_key_column": "clip_id",
         "label_key_column": "src", "feature_key_regex": "([0-9]{6,})",
         "label_key_regex": "([0-9]{6,})"},
        {"id": "chug", "features": "data/feat_b.csv", "labels": ["data/labels_b.csv"],
         "out": "out/chug.jsonl", "key_normalize": "raw", "mos_scale": "0-100"},
    ],
}


def test_older_json_manifest_with_comment_keys_runs_and_reports(mos_data: Path) -> None:
    dump(mos_data / "batch.json", OLDER_MANIFEST)
    done = ok(snakemake(mos_data, "--configfile", "batch.json"))
    assert "MOS-label batch materialize: tables=2 input_rows=5 matched_rows=5 " \
           "failed_tables=0" in done.stderr

    konvid = pd.read_parquet(mos_data / "out" / "konvid.parquet")
    assert list(konvid["mos"]) == [3.5, 4.0, 2.0]
    chug = pd.read_json(mos_data / "out" / "chug.jsonl", lines=True)
    assert list(chug["mos"]) == [3.0, 3.8]
    # No audit_json in the manifest: the audit goes next to the table.
    assert (mos_data / "out" / "chug.jsonl.audit.json").is_file()

    report = json.loads((mos_data / "reports" / "batch" / "mos-labels.json").read_text())
    assert report["schema"] == "mos-label-materializer-batch-v1"
    assert report["status"] == "ok"
    assert report["manifest"] == "batch.json"
    assert report["summary"] == {"tables": 2, "failed_tables": 0, "input_rows": 5,
                                 "output_rows": 5, "matched_rows": 5, "missing_rows": 0}
    first, second = report["tables"]
    assert [first["id"], second["id"]] == ["konvid", "chug"]
    assert first["config"] == {
        "min_match_rate": 1.0, "key_normalize": "auto", "feature_key_column": "clip_id",
        "label_key_column": "src", "feature_key_regex": "([0-9]{6,})",
        "label_key_regex": "([0-9]{6,})"}
    assert second["config"] == {"min_match_rate": 1.0, "key_normalize": "raw",
                                "mos_scale": "0-100"}
    assert first["summary"] == {"input_rows": 3, "output_rows": 3, "matched_rows": 3,
                                "missing_rows": 0, "match_rate": 1.0, "labels_loaded": 3}
    assert (first["features"], first["labels"], first["out"], first["audit_json"]) == (
        "data/feat_a.csv", ["data/labels_a.csv"], "out/konvid.parquet",
        "out/konvid.audit.json")
    assert second["audit_json"] == "out/chug.jsonl.audit.json"

    prov = report["run_provenance"]
    assert prov["schema"] == "ai-run-provenance-v1"
    assert prov["base_dir"] == str(mos_data)
    assert "snakemake" in prov["versions"]
    assert "git_commit" in prov
    assert prov["inputs"]["manifest"]["path"] == "batch.json"
    assert len(prov["inputs"]["manifest"]["sha256"]) == 64
    assert prov["inputs"]["tables"]["konvid"]["labels"][0]["kind"] == "file"
    out_desc = prov["outputs"]["tables"]["chug"]["out"]
    assert out_desc["sha256"] == hashlib.sha256(
        (mos_data / "out" / "chug.jsonl").read_bytes()).hexdigest()
    assert "report_md" in prov["outputs"]
    assert "report_json" not in prov["outputs"]

    audit = json.loads((mos_data / "out" / "konvid.audit.json").read_text())
    assert audit["run_provenance"]["entrypoint"]["path"].endswith("workflow/rules/tables.smk")
    assert audit["run_provenance"]["versions"]["snakemake"]

    markdown = (mos_data / "reports" / "batch" / "mos-labels.md").read_text()
    assert markdown == (
        "# MOS Label Materializer Batch Report\n\nStatus: **ok**\n\n"
        "| Table | Status | Match rate | Matched rows | Missing rows | Output |\n"
        "| --- | --- | ---: | ---: | ---: | --- |\n"
        "| konvid | ok | 1.000 | 3 | 0 | `out/konvid.parquet` |\n"
        "| chug | ok | 1.000 | 2 | 0 | `out/chug.jsonl` |\n")

    # A complete run leaves nothing to do; a rebuilt report is the same apart from times.
    assert planned_rules(ok(snakemake(mos_data, "--configfile", "batch.json", "-n"))) == set()
    for name in ("mos-labels.json", "mos-labels.md"):
        (mos_data / "reports" / "batch" / name).unlink()
    ok(snakemake(mos_data, "--configfile", "batch.json"))
    again = json.loads((mos_data / "reports" / "batch" / "mos-labels.json").read_text())
    assert without_times(again) == without_times(report)
    assert (mos_data / "reports" / "batch" / "mos-labels.md").read_text() == markdown


def second_opinion_data(folder: Path) -> None:
    write_csv(folder / "data" / "features_a.csv",
              "video_id,vmaf_score\nclip_a1,90\nclip_a2,80\n")
    write_csv(folder / "data" / "features_b.csv", "video_id,vmaf_score\nclip_b1,70\n")
    (folder / "runs=2").mkdir()
    (folder / "runs=2" / "fork_a.jsonl").write_text(
        '{"video_id": "clip_a1", "score": 71.0, "runtime_ms": 3}\n'
        '{"video_id": "clip_a2", "score": 65.5, "runtime_ms": 4}\n', encoding="utf-8")
    (folder / "data" / "fork_b.jsonl").write_text(
        '{"video_id": "clip_b1", "score": 60.0, "runtime_ms": 2}\n', encoding="utf-8")


def test_second_opinion_manifest_runs_and_reports(tmp_path: Path) -> None:
    second_opinion_data(tmp_path)
    dump(tmp_path / "so.yaml", {
        "defaults": {"key_normalize": "auto", "missing_policy": "fail",
                     "prefix": "second_opinion"},
        "report_json": "out/report.json",
        "report_md": "out/report.md",
        "tables": [
            {"id": "first", "features": "data/features_a.csv",
             "scores": ["fork-nr=runs=2/fork_a.jsonl"], "out": "out/first.parquet",
             "audit_json": "out/first.audit.json"},
            {"id": "second", "features": "data/features_b.csv",
             "scores": ["fork-nr=data/fork_b.jsonl"], "out": "out/second.json"},
        ],
    })
    done = ok(snakemake(tmp_path, "--configfile", "so.yaml"))
    assert "second-opinion batch materialize: tables=2 input_rows=3 output_rows=3 " \
           "failed_tables=0" in done.stderr
    first = pd.read_parquet(tmp_path / "out" / "first.parquet")
    assert list(first["second_opinion_fork_nr_score"]) == [71.0, 65.5]

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["schema"] == "second-opinion-materializer-batch-v1"
    assert report["summary"] == {"tables": 2, "failed_tables": 0, "input_rows": 3,
                                 "output_rows": 3}
    entry = report["tables"][0]
    assert entry["scores"] == ["fork-nr=runs=2/fork_a.jsonl"]
    assert set(entry["summary"]) == {"input_rows", "output_rows", "competitors"}
    assert entry["summary"]["competitors"]["fork-nr"]["matched_rows"] == 2
    assert report["run_provenance"]["inputs"]["tables"]["first"]["scores"][0]["path"] == \
        "runs=2/fork_a.jsonl"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.startswith("# Second-Opinion Materializer Batch Report\n\n"
                               "Status: **ok**\n\n"
                               "| Table | Status | Input rows | Output rows | Output |\n"
                               "| --- | --- | ---: | ---: | --- |\n")
    assert "| first | ok | 2 | 2 | `out/first.parquet` |\n" in markdown


def combined_manifest(folder: Path) -> dict:
    write_csv(folder / "data" / "feat.csv", "clip_id,psnr\nc1,40\nc2,41\nc3,42\n")
    write_csv(folder / "data" / "labels.csv", "clip_id,mos\nc1,3.0\nc2,4.0\nc3,2.5\n")
    write_csv(folder / "data" / "feat_x.csv", "clip_id,psnr\nx1,40\n")
    write_csv(folder / "data" / "labels_x.csv", "clip_id,mos\nx1,1.5\n")
    write_csv(folder / "data" / "dover.csv", "clip_id,score\nc1,0.1\nc2,0.2\nc3,0.3\n")
    return {
        "mos_labels": {
            "defaults": {"min_match_rate": 1.0},
            "report_json": "reports/mos.json", "report_md": "reports/mos.md",
            "tables": [
                {"id": "main", "features": "data/feat.csv", "labels": ["data/labels.csv"],
                 "out": "mos/main.parquet"},
                {"id": "extra", "features": "data/feat_x.csv",
                 "labels": ["data/labels_x.csv"], "out": "mos/extra.parquet"},
            ],
        },
        "second_opinion": {
            "report_json": "reports/so.json", "report_md": "reports/so.md",
            "tables": [
                {"id": "main-dover", "features": "mos/main.parquet",
                 "scores": ["dover=data/dover.csv"], "out": "so/main.parquet"},
            ],
        },
    }


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A combined, chained manifest after one complete run (copied by each test)."""
    folder = tmp_path_factory.mktemp("completed")
    dump(folder / "manifest.yaml", combined_manifest(folder))
    ok(snakemake(folder, "--configfile", "manifest.yaml"))
    return folder


@pytest.fixture
def project(completed: Path, tmp_path: Path) -> Path:
    """A copy of the completed project (mtimes and Snakemake metadata kept)."""
    target = tmp_path / "project"
    shutil.copytree(completed, target, symlinks=True)
    return target


def run_and_see(project: Path) -> tuple[set[str], set[str]]:
    """Dry-run then run; returns (planned rules, files rewritten under mos/, so/, reports/)."""
    planned = planned_rules(ok(snakemake(project, "--configfile", "manifest.yaml", "-n")))
    before = mtimes(project)
    time.sleep(0.01)
    ok(snakemake(project, "--configfile", "manifest.yaml"))
    changed = {p for p in rewritten(before, mtimes(project))
               if p.split("/")[0] in ("mos", "so", "reports")}
    return planned, changed


def test_combined_chained_manifest_joins_scores_onto_labelled_table(completed: Path) -> None:
    joined = pd.read_parquet(completed / "so" / "main.parquet")
    assert list(joined["mos"]) == [3.0, 4.0, 2.5]
    assert list(joined["second_opinion_dover_score"]) == [0.1, 0.2, 0.3]
    mos_report = json.loads((completed / "reports" / "mos.json").read_text())
    so_report = json.loads((completed / "reports" / "so.json").read_text())
    assert [t["id"] for t in mos_report["tables"]] == ["main", "extra"]
    assert [t["id"] for t in so_report["tables"]] == ["main-dover"]
    assert so_report["tables"][0]["features"] == "mos/main.parquet"


def test_complete_run_then_dry_run_has_nothing_to_do_even_in_a_moved_copy(project: Path) \
        -> None:
    assert planned_rules(ok(snakemake(project, "--configfile", "manifest.yaml", "-n"))) == set()


def test_changed_label_file_reruns_its_table_and_the_chain_below_only(project: Path) -> None:
    write_csv(project / "data" / "labels.csv", "clip_id,mos\nc1,3.5\nc2,4.0\nc3,2.5\n")
    planned, changed = run_and_see(project)
    assert planned == {"mos_labels__main", "second_opinion__main-dover", "report__mos_labels",
                       "report__second_opinion", "plot_mos_labels__main",
                       "plot_second_opinion__main-dover", *SUMMARY_PLOTS, "all"}
    assert "mos/main.parquet" in changed and "so/main.parquet" in changed
    assert not any(p.startswith("mos/extra") for p in changed)
    assert list(pd.read_parquet(project / "so" / "main.parquet")["mos"]) == [3.5, 4.0, 2.5]


def test_changed_option_of_one_table_reruns_only_it(project: Path) -> None:
    manifest = yaml.safe_load((project / "manifest.yaml").read_text())
    manifest["mos_labels"]["tables"][1]["min_match_rate"] = 0.5
    dump(project / "manifest.yaml", manifest)
    planned, changed = run_and_see(project)
    assert planned == {"mos_labels__extra", "report__mos_labels", "report__second_opinion",
                       "plot_mos_labels__extra", *SUMMARY_PLOTS, "all"}
    assert {p for p in changed if not p.startswith("reports/")} == {  # with the sidecars
        "mos/extra.parquet", "mos/extra.parquet.audit.json", "mos/.extra.parquet.previous",
        "mos/.extra.parquet.audit.json.previous"}


def test_adding_a_table_runs_only_it(project: Path) -> None:
    write_csv(project / "data" / "feat_new.csv", "clip_id,psnr\nn1,40\n")
    manifest = yaml.safe_load((project / "manifest.yaml").read_text())
    manifest["mos_labels"]["tables"].append(
        {"id": "new", "features": "data/feat_new.csv", "labels": ["data/labels_x.csv"],
         "out": "mos/new.parquet", "min_match_rate": 0.0})
    dump(project / "manifest.yaml", manifest)
    planned, changed = run_and_see(project)
    assert planned == {"mos_labels__new", "report__mos_labels", "report__second_opinion",
                       "plot_mos_labels__new", *SUMMARY_PLOTS, "all"}
    assert {p for p in changed if not p.startswith("reports/")} == {  # with the sidecars
        "mos/new.parquet", "mos/new.parquet.audit.json", "mos/.new.parquet.previous",
        "mos/.new.parquet.audit.json.previous"}


def test_editing_comments_and_order_of_the_manifest_reruns_no_table(project: Path) -> None:
    manifest = yaml.safe_load((project / "manifest.yaml").read_text())
    manifest["_comment"] = "edited"
    manifest["mos_labels"]["tables"].reverse()
    dump(project / "manifest.yaml", manifest)
    planned = planned_rules(ok(snakemake(project, "--configfile", "manifest.yaml", "-n")))
    assert planned == {"report__mos_labels", "report__second_opinion", *SUMMARY_PLOTS, "all"}


def test_deleted_table_is_rebuilt(project: Path) -> None:
    (project / "mos" / "extra.parquet").unlink()
    planned = planned_rules(ok(snakemake(project, "--configfile", "manifest.yaml", "-n")))
    assert "mos_labels__extra" in planned
    assert "mos_labels__main" not in planned


def test_failing_table_does_not_stop_the_others_and_the_report_says_failed(project: Path) \
        -> None:
    previous = (project / "mos" / "main.parquet").read_bytes()
    write_csv(project / "data" / "labels.csv", "clip_id,mos\nc1,3.0\n")  # 1/3 < 1.0
    write_csv(project / "data" / "labels_x.csv", "clip_id,mos\nx1,2.5\n")
    done = snakemake(project, "--configfile", "manifest.yaml")
    assert done.returncode != 0
    mos_report = json.loads((project / "reports" / "mos.json").read_text())
    assert mos_report["status"] == "failed"
    assert mos_report["summary"]["failed_tables"] == 1
    main, extra = mos_report["tables"]
    assert main["status"] == "error" and "match rate" in main["error"]
    assert "\n" not in main["error"] and "summary" not in main
    assert extra["status"] == "ok" and extra["summary"]["matched_rows"] == 1
    assert pd.read_parquet(project / "mos" / "extra.parquet")["mos"].tolist() == [2.5]
    so_report = json.loads((project / "reports" / "so.json").read_text())
    assert so_report["status"] == "failed"
    assert so_report["tables"][0]["error"].startswith("not run")
    markdown = (project / "reports" / "mos.md").read_text()
    assert "Status: **failed**" in markdown
    assert "| main | error | - | - | - | `mos/main.parquet` |\n" in markdown
    assert (project / "mos" / "main.parquet").read_bytes() == previous  # kept, not rewritten

    write_csv(project / "data" / "labels.csv", "clip_id,mos\nc1,3.0\nc2,4.0\nc3,2.5\n")
    ok(snakemake(project, "--configfile", "manifest.yaml"))
    assert json.loads((project / "reports" / "mos.json").read_text())["status"] == "ok"
    assert json.loads((project / "reports" / "so.json").read_text())["status"] == "ok"


def test_fail_fast_profile_stops_at_the_first_failure(tmp_path: Path) -> None:
    tables = []
    for index in range(4):
        write_csv(tmp_path / "data" / f"f{index}.csv", "clip_id,psnr\na,1\nb,2\n")
        write_csv(tmp_path / "data" / f"l{index}.csv", "clip_id,mos\na,3\n")
        tables.append({"id": f"t{index}", "features": f"data/f{index}.csv",
                       "labels": [f"data/l{index}.csv"], "out": f"out/t{index}.parquet"})
    dump(tmp_path / "m.yaml", {"defaults": {"min_match_rate": 1.0}, "tables": tables})

    done = snakemake(tmp_path, "--configfile", "m.yaml", "-c1", "--workflow-profile",
                     "fail-fast")
    assert done.returncode != 0
    report = json.loads((tmp_path / "reports" / "m" / "mos-labels.json").read_text())
    errors = [t["error"] for t in report["tables"]]
    assert sum("match rate" in e for e in errors) == 1
    assert sum(e.startswith("not run") for e in errors) == 3

    done = snakemake(tmp_path, "--configfile", "m.yaml", "-c1")  # default: keep going
    report = json.loads((tmp_path / "reports" / "m" / "mos-labels.json").read_text())
    assert all("match rate" in t["error"] for t in report["tables"])


def test_paths_resolve_from_the_manifest_folder_or_base_dir(tmp_path: Path) -> None:
    data_root = tmp_path / "project"
    write_csv(data_root / "data" / "f.csv", "clip_id,psnr\na,1\n")
    write_csv(data_root / "data" / "l.csv", "clip_id,mos\na,3\n")
    table = {"id": "t", "features": "data/f.csv", "labels": ["data/l.csv"],
             "out": "out/t.parquet"}
    # Manifest in project/config with base_dir "..": run from an unrelated folder.
    (data_root / "config").mkdir()
    dump(data_root / "config" / "m.yaml", {"base_dir": "..", "tables": [table]})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok(snakemake(elsewhere, "--configfile", str(data_root / "config" / "m.yaml")))
    assert (data_root / "out" / "t.parquet").is_file()
    report = json.loads((elsewhere / "reports" / "m" / "mos-labels.json").read_text())
    assert report["run_provenance"]["base_dir"] == str(data_root)
    assert report["tables"][0]["out"] == "out/t.parquet"

    # Without base_dir, paths resolve from the manifest's folder; --config base_dir wins.
    copy = tmp_path / "copy"
    shutil.copytree(data_root / "data", copy / "data")
    dump(tmp_path / "plain.yaml", {"tables": [table]})
    ok(snakemake(elsewhere, "--configfile", str(tmp_path / "plain.yaml"), "--config",
                 f"base_dir={copy}"))
    assert (copy / "out" / "t.parquet").is_file()
    assert not (tmp_path / "out").exists()


def test_several_config_files_are_refused(mos_data: Path) -> None:
    dump(mos_data / "a.json", OLDER_MANIFEST)
    dump(mos_data / "b.json", OLDER_MANIFEST)
    done = snakemake(mos_data, "--configfile", "a.json", "b.json")
    assert done.returncode == 2
    assert "give one manifest" in done.stderr
    assert not (mos_data / "out").exists()


def test_every_manifest_problem_is_reported_before_any_job(mos_data: Path) -> None:
    write_csv(mos_data / "data" / "l.csv", "clip_id,mos\na,3\n")
    dump(mos_data / "bad.yaml", {
        "defaults": {"min_match_rate": 1.5, "colour": "blue"},
        "tables": [
            {"id": "a", "features": "data/feat_a.csv", "labels": "data/labels_a.csv",
             "out": "out/a.parquet", "overwrite": "false"},
            {"id": "a", "features": "data/feat_b.csv", "labels": ["data/labels_b.csv"],
             "out": "out/a.parquet", "key_normalize": "fuzzy"},
            {"id": "../x", "features": "data/missing.csv", "labels": [],
             "out": "out/x.xlsx", "feature_key_regex": "([0-9]+", "extra_key": 1},
            {"id": "inplace", "features": "data/feat_b.csv", "labels": ["data/l.csv"],
             "out": "data/l.csv"},
            {"id": "reads-out", "features": "data/feat_b.csv", "labels": ["out/a.parquet"],
             "out": "out/r.parquet"},
        ],
    })
    done = snakemake(mos_data, "--configfile", "bad.yaml")
    assert done.returncode == 2
    err = done.stderr
    expected = [
        "manifest defaults field 'min_match_rate'",
        "field 'defaults.colour': unknown key",
        "table 'a' (tables[0]) field 'labels': must be an array",
        "table 'a' (tables[0]) field 'overwrite': overwrite must be true or false",
        "table 'a' (tables[1]) field 'id': duplicates the id of tables[0]",
        "table 'a' (tables[1]) field 'key_normalize'",
        "table '../x' (tables[2]) field 'id': must be 1-128 letters",
        "table '../x' (tables[2]) field 'labels': must be a non-empty list",
        "table '../x' (tables[2]) field 'extra_key': unknown key",
        "table '../x' (tables[2]) field 'feature_key_regex': feature_key_regex is not a valid",
        "table '../x' (tables[2]) field 'features': input file not found",
        "table '../x' (tables[2]) field 'out': unsupported table format '.xlsx'",
        "table 'inplace' (tables[3]) field 'out': is also its own labels input",
        "table 'reads-out' (tables[4]) field 'labels': reads 'out/a.parquet', which the batch",
        "field 'out': writes the same file as table 'a' (tables[0])",
    ]
    for text in expected:
        assert text in err, f"{text!r} not in:\n{err}"
    assert not (mos_data / "out").exists()
    assert not (mos_data / "reports").exists()
    assert not (mos_data / "logs").exists()


def test_cycles_and_unknown_kind_are_manifest_errors(tmp_path: Path) -> None:
    write_csv(tmp_path / "l.csv", "clip_id,mos\na,3\n")
    dump(tmp_path / "cycle.yaml", {"mos_labels": {"tables": [
        {"id": "a", "features": "b.parquet", "labels": ["l.csv"], "out": "a.parquet"},
        {"id": "b", "features": "a.parquet", "labels": ["l.csv"], "out": "b.parquet"}]}})
    done = snakemake(tmp_path, "--configfile", "cycle.yaml")
    assert done.returncode == 2
    assert "cycle: 'a' -> 'b' -> 'a'" in done.stderr
    dump(tmp_path / "mixed.json", {"tables": [
        {"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "a.parquet"},
        {"id": "b", "features": "f.csv", "scores": ["l.csv"], "out": "b.parquet"}]})
    done = snakemake(tmp_path, "--configfile", "mixed.json")
    assert done.returncode == 2
    assert "cannot tell the kind" in done.stderr


def test_example_runs_with_no_config_file(tmp_path: Path) -> None:
    copy = tmp_path / "vq-materializer"
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, copy / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    done = ok(snakemake(copy, snakefile=None))
    assert "Using workflow specific profile" in done.stdout + done.stderr
    mos_report = json.loads((copy / "results" / "reports" / "mos-labels.json").read_text())
    so_report = json.loads((copy / "results" / "reports" / "second-opinion.json").read_text())
    assert mos_report["status"] == so_report["status"] == "ok"
    assert mos_report["manifest"] == os.path.join("config", "manifest.yaml")
    assert [t["summary"]["matched_rows"] for t in mos_report["tables"]] == [1200, 585]
    assert so_report["summary"]["output_rows"] == 1785
    assert planned_rules(ok(snakemake(copy, "-n", snakefile=None))) == set()


def test_streamed_table_logs_its_progress_in_its_own_log(tmp_path: Path) -> None:
    frame = pd.DataFrame({"clip_id": [f"c{i % 50}" for i in range(2000)], "x": range(2000)})
    frame.to_parquet(tmp_path / "f.parquet", index=False)
    write_csv(tmp_path / "l.csv", "clip_id,mos\n" + "".join(f"c{i},3.0\n" for i in range(50)))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"tables": [
        {"id": "big", "features": "f.parquet", "labels": ["l.csv"], "out": "o.parquet"}]}))
    env = {**os.environ, "MATERIALIZER_STREAM": "always", "MATERIALIZER_BATCH_ROWS": "500",
           "MATERIALIZER_PROGRESS_SECONDS": "0"}
    done = subprocess.run([str(SNAKEMAKE), "-s", str(SNAKEFILE), "-c1", "--configfile",
                           "m.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (tmp_path / "logs" / "mos-labels" / "big.log").read_text()
    assert "2000/2000 rows (100%)" in log and "rows/s" in log

"""Manifest loading and validation (materializer.manifest), without running Snakemake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from materializer.manifest import (
    MOS,
    SECOND_OPINION,
    ManifestError,
    load_manifest,
    read_manifest_file,
)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in ("f.csv", "l.csv", "s.jsonl"):
        (tmp_path / name).write_text("clip_id,mos\na,3\n", encoding="utf-8")
    return tmp_path


def problems(data: dict, folder: Path, **kwargs) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(data, manifest_path=str(folder / "m.yaml"), **kwargs)
    assert caught.value.exit_code == 2
    return caught.value.problems


def test_kind_is_inferred_from_labels_or_scores(files: Path) -> None:
    mos = load_manifest({"tables": [{"id": "a", "features": "f.csv", "labels": ["l.csv"],
                                     "out": "a.parquet"}]}, manifest_path=str(files / "m.yaml"))
    assert [s.kind for s in mos.sections] == [MOS]
    second = load_manifest({"tables": [{"id": "a", "features": "f.csv",
                                        "scores": ["x=s.jsonl"], "out": "a.parquet"}]},
                           manifest_path=str(files / "m.yaml"))
    assert [s.kind for s in second.sections] == [SECOND_OPINION]
    assert second.tables[0].source_paths == ("s.jsonl",)


def test_explicit_kind_checks_the_table_fields(files: Path) -> None:
    found = problems({"kind": "second-opinion", "tables": [
        {"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "a.parquet"}]}, files)
    assert "table 'a' (tables[0]) field 'labels': unknown key 'labels'" in found
    assert "table 'a' (tables[0]) field 'scores': is required" in found


def test_config_is_defaults_overlaid_by_the_table_as_written(files: Path) -> None:
    manifest = load_manifest({
        "defaults": {"min_match_rate": 0.5, "key_normalize": "stem", "_c": "x"},
        "tables": [{"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "a.parquet",
                    "key_normalize": "raw", "_c": "y"}]}, manifest_path=str(files / "m.yaml"))
    table = manifest.tables[0]
    assert table.config == {"min_match_rate": 0.5, "key_normalize": "raw"}
    assert table.options.key_normalize == "raw"
    assert table.audit_json == "a.parquet.audit.json"


def test_spec_holds_only_the_tables_own_paths_and_options(files: Path) -> None:
    manifest = load_manifest({"tables": [
        {"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "a.parquet",
         "feature_key_regex": "([0-9]{6,})"},
        {"id": "b", "features": "f.csv", "labels": ["l.csv"], "out": "b.parquet"}]},
        manifest_path=str(files / "m.yaml"))
    spec = json.loads(manifest.tables[0].spec_json())
    assert spec["options"]["feature_key_regex"] == "([0-9]{6,})"
    assert "b.parquet" not in manifest.tables[0].spec_json()
    assert list(spec) == sorted(spec)


def test_base_dir_resolves_from_the_manifest_folder_and_cli_wins(files: Path,
                                                                 tmp_path: Path) -> None:
    sub = files / "sub"
    sub.mkdir()
    data = {"base_dir": "..", "tables": [{"id": "a", "features": "f.csv",
                                          "labels": ["l.csv"], "out": "a.parquet"}]}
    manifest = load_manifest(data, manifest_path=str(sub / "m.yaml"))
    assert manifest.base_dir == str(files)
    found = problems(data, sub, base_dir=str(sub))
    assert any("input file not found" in p for p in found)


def test_default_report_paths_go_under_reports_and_the_manifest_stem(files: Path) -> None:
    manifest = load_manifest({"tables": [{"id": "a", "features": "f.csv",
                                          "labels": ["l.csv"], "out": "a.parquet"}]},
                             manifest_path=str(files / "konvid.batch.json"),
                             report_dir=str(files / "r"))
    assert manifest.sections[0].report_json == str(files / "r" / "mos-labels.json")


def test_combined_and_older_shapes_cannot_be_mixed(files: Path) -> None:
    found = problems({"tables": [], "mos_labels": {"tables": [
        {"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "a.parquet"}]}}, files)
    assert any("mixes the combined shape" in p for p in found)


def test_chaining_features_is_fine_but_reading_an_out_as_labels_is_not(files: Path) -> None:
    ok = load_manifest({"mos_labels": {"tables": [
        {"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "a.parquet"}]},
        "second_opinion": {"tables": [
            {"id": "b", "features": "a.parquet", "scores": ["s.jsonl"], "out": "b.parquet"}]}},
        manifest_path=str(files / "m.yaml"))
    assert ok.producer("a.parquet").id == "a"
    found = problems({"tables": [
        {"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "a.parquet"},
        {"id": "b", "features": "f.csv", "labels": ["a.parquet"], "out": "b.parquet"}]}, files)
    assert any("reads 'a.parquet', which the batch writes" in p for p in found)


def test_report_path_colliding_with_a_table_output_is_refused(files: Path) -> None:
    found = problems({"report_json": "a.parquet.audit.json", "tables": [
        {"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "a.parquet"}]}, files)
    assert any("writes the same file as" in p for p in found)


def test_integer_ids_are_text_and_booleans_are_refused(files: Path) -> None:
    manifest = load_manifest({"tables": [{"id": 7, "features": "f.csv", "labels": ["l.csv"],
                                          "out": "a.parquet"}]},
                             manifest_path=str(files / "m.yaml"))
    assert manifest.tables[0].id == "7"
    found = problems({"tables": [{"id": False, "features": "f.csv", "labels": ["l.csv"],
                                  "out": "a.parquet"}]}, files)
    assert any("field 'id'" in p for p in found)


def test_unreadable_manifest_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(Exception) as caught:
        read_manifest_file(tmp_path / "m.json")
    assert "not valid JSON/YAML" in str(caught.value)


MUTATIONS = {
    "as shipped": lambda m: None,
    "list id": lambda m: m["mos_labels"]["tables"][0].update(id=[7]),
    "no out": lambda m: m["mos_labels"]["tables"][0].pop("out"),
    "unknown key": lambda m: m["mos_labels"]["tables"][0].update(typo=1),
    "empty labels": lambda m: m["mos_labels"]["tables"][0].update(labels=[]),
    "labels as text": lambda m: m["mos_labels"]["tables"][0].update(labels="l.csv"),
    "unknown top key": lambda m: m.update(tabels=[]),
    "report not json": lambda m: m["mos_labels"].update(report_json="r.txt"),
    "no tables": lambda m: m["second_opinion"].update(tables=[]),
    "plots as text": lambda m: m.update(report_plots="yes"),
    "comment keys": lambda m: m.update(_note="x") or m["mos_labels"]["tables"][0].update(_n=1),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_compiled_schema_check_agrees_with_jsonschema(mutation: str) -> None:
    """The compiled check decides alone only when it accepts: it must accept exactly
    what jsonschema accepts, or a structural problem would go unreported."""
    import yaml
    from jsonschema import Draft202012Validator

    from materializer.manifest import _fast_validator, _load_schema, schema_path

    root = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "config" / "manifest.yaml").read_text(encoding="utf-8"))
    MUTATIONS[mutation](data)
    schema = _load_schema(schema_path())
    expected = not list(Draft202012Validator(schema).iter_errors(data))
    assert _fast_validator(json.dumps(schema, sort_keys=True))(data) is expected
    assert expected is (mutation in ("as shipped", "comment keys"))

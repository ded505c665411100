"""A manifest mixing native sources, run by Snakemake: every table joins, the reports
describe each file as read, verify re-checks the references, and a changed ``read``
option or reference reruns only its table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SHARED_REAL, ok, planned_rules, snakemake

needs_real = pytest.mark.skipif(not SHARED_REAL.is_dir(),
                                reason="../shared/data/real is not present")
LABELS_TXT = {"sep": ", ", "header": False, "names": ["path", "duration_s", "fps", "mos"]}
VERIFY = Path(sys.executable).parent / "materialize-verify"


def real(name: str) -> str:
    return str(SHARED_REAL / name)


def niqe(corpus: str, stem: str, key: str, mos: str) -> dict:
    """VIDEVAL's NIQE .mat as a feature table, in the row order of its metadata."""
    return {"path": real(f"{corpus}/{stem}_NIQE_scores.mat"),
            "read": {"variables": ["MOS", "y_pred"], "names": ["mos_in_mat", "niqe"]},
            "align_to": {"path": real(f"{corpus}/{stem}_metadata.csv"), "key_column": key,
                         "check": {"mos_in_mat": mos}}}


def manifest() -> dict:
    return {
        "mos_labels": {
            "defaults": {"min_match_rate": 1.0},
            "report_json": "reports/mos.json",
            "tables": [
                {"id": "live-vqc", "features": niqe("live-vqc", "LIVE_VQC", "File", "MOS"),
                 "labels": [{"path": real("native/live-vqc/LiveVQC_data.mat"),
                             "read": {"variables": ["video_list", "mos"],
                                      "names": ["name", "mos"]}}],
                 "key_normalize": "stem",
                 "feature_key_regex": "^(.*?)(?:NEW)?$", "out": "mos/live-vqc.parquet"},
                {"id": "cvd2014",
                 "features": {"path": real("dover-predictions/val-cvd2014.pkl"),
                              "align_to": {"path": real("cvd2014/labels.txt"),
                                           "read": LABELS_TXT, "key_column": "path"}},
                 "labels": [{"path": real("native/cvd2014/CVD2014_Realignment_MOS.csv"),
                             "read": {"sep": ";", "decimal": ","}}],
                 "key_normalize": "stem", "label_key_column": "File_name",
                 "label_mos_column": "Realignment MOS",
                 "mos_scale": "0-100", "mos_bounds": [-10, 100], "out": "mos/cvd2014.parquet"},
                {"id": "kv1k", "features": niqe("konvid-1k", "KONVID_1K", "flickr_id", "mos"),
                 "labels": [{"path": "labels.txt", "read": LABELS_TXT}],
                 "key_normalize": "stem", "out": "mos/kv1k.parquet"},
            ],
        },
        "second_opinion": {
            "report_json": "reports/so.json",
            "tables": [
                {"id": "kv1k-dover", "features": "mos/kv1k.parquet",
                 "scores": [{"label": "dover-technical",
                             "path": real("dover-predictions/val-kv1k.pkl"),
                             "read": {"variables": ["fragments"], "names": ["score"]},
                             "align_to": {"path": "labels.txt", "read": LABELS_TXT,
                                          "key_column": "path"}}],
                 "key_column": "flickr_id", "key_normalize": "stem", "min_coverage": 1.0,
                 "out": "so/kv1k.parquet"},
            ],
        },
    }


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("native")
    shutil.copy(SHARED_REAL / "konvid-1k/labels.txt", folder / "labels.txt")
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest(), sort_keys=False))
    ok(snakemake(folder, "--configfile", "manifest.yaml"))
    return folder


@pytest.fixture
def project(completed: Path, tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(completed, target, symlinks=True)
    return target


def dry_run(project: Path) -> set[str]:
    planned = planned_rules(ok(snakemake(project, "--configfile", "manifest.yaml", "-n")))
    return {rule for rule in planned if rule.startswith(("mos_labels__", "second_opinion__"))}


@needs_real
def test_every_native_table_joins_and_the_report_says_how_it_was_read(completed: Path) -> None:
    report = json.loads((completed / "reports/mos.json").read_text())
    assert [t["status"] for t in report["tables"]] == ["ok", "ok", "ok"]
    assert [t["summary"]["matched_rows"] for t in report["tables"]] == [585, 234, 1200]
    entry = report["tables"][0]
    assert entry["labels"][0]["read"]["variables"] == ["video_list", "mos"]
    so = json.loads((completed / "reports/so.json").read_text())
    assert so["tables"][0]["status"] == "ok"
    audit = json.loads((completed / "so/kv1k.parquet.audit.json").read_text())
    aligned = audit["run_provenance"]["inputs"]["scores"][0]["align_to"]
    assert aligned["path"] == "labels.txt" and aligned["rows"] == 1200
    assert aligned["read"]["sep"] == ", " and len(aligned["sha256"]) == 64


@needs_real
def test_verify_checks_the_align_to_reference(project: Path) -> None:
    command = [str(VERIFY), "so/kv1k.parquet.audit.json", "--base-dir", str(project)]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(project / "labels.txt", "a") as handle:
        handle.write("\n")
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    changed = [line for line in done.stdout.splitlines() if "labels.txt" in line]
    assert done.returncode == 1 and changed and "changed" in changed[0], done.stdout


@needs_real
def test_a_changed_read_option_reruns_only_its_table(project: Path) -> None:
    assert dry_run(project) == set()
    changed = manifest()
    changed["mos_labels"]["tables"][1]["labels"][0]["read"]["encoding"] = "latin-1"
    (project / "manifest.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    assert dry_run(project) == {"mos_labels__cvd2014"}


@needs_real
def test_a_changed_reference_reruns_the_tables_that_read_it(project: Path) -> None:
    lines = (project / "labels.txt").read_text().splitlines()
    (project / "labels.txt").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    assert dry_run(project) == {"mos_labels__kv1k", "second_opinion__kv1k-dover"}

"""``materialize-verify`` run as a user runs it, on reports and audits built from real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from materializer.provenance import build_provenance, describe_path, utc_now

BIN = Path(sys.executable).parent
VERIFY = str(BIN / "materialize-verify")


def run_verify(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VERIFY, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          check=False)


def provenance(base: Path, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """A provenance block describing paths as written, relative to ``base``."""

    def described(value: Any) -> Any:
        if isinstance(value, list):
            return [described(v) for v in value]
        return value if value is None else describe_path(value, base)

    return build_provenance(
        entrypoint=__file__, argv=["test"], args={},
        inputs={k: described(v) for k, v in inputs.items()},
        outputs={k: described(v) for k, v in outputs.items()},
        base_dir=str(base), started_at=utc_now(),
    )


def write(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content, indent=2, sort_keys=True))


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    """A finished batch: a MOS table, a second-opinion table chained on it, both reports."""
    base = tmp_path / "batch"
    write(base / "manifest.yaml", "mos_labels: {}\nsecond_opinion: {}\n")
    write(base / "features/konvid.csv", "clip_id,f1\na,0.1\nb,0.2\nc,0.3\n")
    write(base / "labels/konvid.csv", "clip_id,mos\na,3.1\nb,4.2\nc,2.5\n")
    write(base / "scores/dover.jsonl", '{"clip_id": "a", "score": 0.5}\n')
    write(base / "out/konvid_mos.csv", "clip_id,f1,mos\na,0.1,3.1\nb,0.2,4.2\nc,0.3,2.5\n")
    write(base / "out/konvid_so.csv", "clip_id,f1,mos,second_opinion_dover_score\na,0.1,3.1,0.5\n")
    mos_inputs = {"features": "features/konvid.csv", "labels": ["labels/konvid.csv"]}
    so_inputs = {"features": "out/konvid_mos.csv", "scores": ["scores/dover.jsonl"]}
    write(base / "audits/konvid_mos.json", {
        "feature_table": "features/konvid.csv", "output": "out/konvid_mos.csv", "input_rows": 3,
        "run_provenance": provenance(base, mos_inputs, {
            "audit_json": "audits/konvid_mos.json", "out": "out/konvid_mos.csv"}),
    })
    write(base / "audits/konvid_so.json", {
        "feature_table": "out/konvid_mos.csv", "output": "out/konvid_so.csv", "input_rows": 3,
        "run_provenance": provenance(base, so_inputs, {
            "audit_json": "audits/konvid_so.json", "out": "out/konvid_so.csv"}),
    })
    for kind, table, inputs in [("mos-label", "konvid_mos", mos_inputs),
                                ("second-opinion", "konvid_so", so_inputs)]:
        write(base / f"reports/{kind}.json", {
            "schema": f"{kind}-materializer-batch-v1", "status": "ok",
            "manifest": "manifest.yaml", "summary": {"tables": 1, "failed_tables": 0},
            "tables": [{"id": table, "out": f"out/{table}.csv", "status": "ok",
                        "audit_json": f"audits/{table}.json"}],
            "run_provenance": provenance(base, {"manifest": "manifest.yaml", **inputs}, {
                "tables": [f"out/{table}.csv"], "audits": [f"audits/{table}.json"]}),
        })
    return base


def reports(base: Path) -> list[Path]:
    return [base / "reports/mos-label.json", base / "reports/second-opinion.json"]


def lines(stdout: str) -> dict[str, str]:
    """Text output as {file: status}, each file named once."""
    found = [line.split()[:2] for line in stdout.splitlines()]
    files = [name for _, name in found]
    assert len(files) == len(set(files)), stdout
    return {name: status for status, name in found}


def flip_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_unchanged_batch_verifies_clean_and_names_each_file_once(batch: Path) -> None:
    done = run_verify(*reports(batch), cwd=batch)
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout) == {
        "manifest.yaml": "ok", "features/konvid.csv": "ok", "labels/konvid.csv": "ok",
        "out/konvid_mos.csv": "ok", "scores/dover.jsonl": "ok", "out/konvid_so.csv": "ok",
        "audits/konvid_mos.json": "ok", "audits/konvid_so.json": "ok",
    }
    assert "8 files: 8 ok, 0 changed, 0 missing, 0 unverifiable" in done.stderr


@pytest.mark.parametrize("name", ["labels/konvid.csv", "out/konvid_so.csv", "manifest.yaml"])
def test_one_changed_byte_is_caught_and_named(batch: Path, name: str) -> None:
    before = describe_path(name, batch)
    flip_byte(batch / name, offset=3)
    after = describe_path(name, batch)
    done = run_verify(*reports(batch), cwd=batch)
    assert done.returncode == 1
    changed = [line for line in done.stdout.splitlines() if line.startswith("changed")]
    assert changed == [f"changed       {name}  sha256 {before['sha256'][:12]} -> "
                       f"{after['sha256'][:12]}, size {before['size']} -> {after['size']} bytes"]


def test_a_changed_audit_is_caught_through_the_report(batch: Path) -> None:
    audit = batch / "audits/konvid_mos.json"
    audit.write_text(audit.read_text().replace('"input_rows": 3', '"input_rows": 4'))
    done = run_verify(batch / "reports/mos-label.json", cwd=batch)
    assert done.returncode == 1
    assert lines(done.stdout)["audits/konvid_mos.json"] == "changed"
    assert lines(done.stdout)["labels/konvid.csv"] == "ok"


def test_an_audit_that_no_longer_parses_is_changed_and_a_problem(batch: Path) -> None:
    flip_byte(batch / "audits/konvid_so.json")  # "{" -> "z"
    done = run_verify(*reports(batch), cwd=batch)
    assert done.returncode == 1
    assert lines(done.stdout)["audits/konvid_so.json"] == "changed"
    assert "cannot follow the audit cited by" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_deleted_file_is_reported_missing(batch: Path) -> None:
    (batch / "out/konvid_mos.csv").unlink()
    done = run_verify(*reports(batch), cwd=batch)
    assert done.returncode == 1
    found = lines(done.stdout)
    assert found["out/konvid_mos.csv"] == "missing"
    assert sorted(found.values()).count("missing") == 1


def test_a_deleted_audit_that_the_report_does_not_hash_is_missing(batch: Path) -> None:
    report = batch / "reports/mos-label.json"
    body = json.loads(report.read_text())
    body["run_provenance"]["outputs"]["audits"] = None
    write(report, body)
    (batch / "audits/konvid_mos.json").unlink()
    done = run_verify(report, cwd=batch)
    assert done.returncode == 1
    assert lines(done.stdout)["audits/konvid_mos.json"] == "missing"


def test_a_failed_table_without_an_audit_is_not_missing(batch: Path) -> None:
    report = batch / "reports/mos-label.json"
    body = json.loads(report.read_text())
    body["tables"].append({"id": "broken", "status": "error", "error": "no labels",
                           "audit_json": "audits/broken.json"})
    write(report, body)
    done = run_verify(report, cwd=batch)
    assert done.returncode == 0, done.stdout
    assert "broken" not in done.stdout


def test_a_table_built_from_an_older_upstream_output_is_changed_for_its_audit(
        batch: Path) -> None:
    """A rerun of the MOS table alone: its new audit holds, the chained audit does not."""
    write(batch / "out/konvid_mos.csv", "clip_id,f1,mos\na,0.1,3.2\n")
    audit = batch / "audits/konvid_mos.json"
    body = json.loads(audit.read_text())
    body["run_provenance"]["outputs"]["out"] = describe_path("out/konvid_mos.csv", batch)
    write(audit, body)
    done = run_verify("--json", "audits/konvid_mos.json", "audits/konvid_so.json", cwd=batch)
    assert done.returncode == 1
    found = [(f["path"], f["status"], f["cited_by"]) for f in json.loads(done.stdout)["files"]]
    assert [f for f in found if f[0] == "out/konvid_mos.csv"] == [
        ("out/konvid_mos.csv", "ok", [str(audit)]),
        ("out/konvid_mos.csv", "changed", [str(batch / "audits/konvid_so.json")])]


@pytest.mark.parametrize("audit", ["audits/konvid_mos.json", "audits/konvid_so.json"])
def test_a_single_table_audit_verifies_its_inputs_and_output(batch: Path, audit: str) -> None:
    done = run_verify(audit, cwd=batch)
    assert done.returncode == 0, done.stderr
    found = lines(done.stdout)
    assert set(found.values()) == {"ok"}
    assert audit not in found  # an audit cannot vouch for its own bytes
    assert ("labels/konvid.csv" in found) == audit.endswith("mos.json")
    assert ("scores/dover.jsonl" in found) == audit.endswith("so.json")


def test_files_described_without_a_hash_are_unverifiable_not_failures(batch: Path) -> None:
    write(batch / "audit.json", {"run_provenance": provenance(
        batch, {"features": "features/konvid.csv", "folder": "labels"}, {"out": None})})
    audit = json.loads((batch / "audit.json").read_text())
    audit["run_provenance"]["inputs"]["note"] = "scores/dover.jsonl"
    write(batch / "audit.json", audit)
    done = run_verify("audit.json", cwd=batch)
    assert done.returncode == 0
    assert lines(done.stdout) == {"features/konvid.csv": "ok", "labels": "unverifiable",
                                  "scores/dover.jsonl": "unverifiable"}
    assert "(recorded as directory, no hash)" in done.stdout


def test_json_output_is_machine_readable(batch: Path) -> None:
    flip_byte(batch / "labels/konvid.csv")
    (batch / "scores/dover.jsonl").unlink()
    done = run_verify("--json", *reports(batch), cwd=batch)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["schema"] == "materializer-verify-v1"
    assert result["status"] == "failed"
    assert result["summary"] == {"ok": 6, "changed": 1, "missing": 1, "unverifiable": 0}
    assert [d["kind"] for d in result["documents"]] == [
        "mos-label-materializer-batch-v1", "audit",
        "second-opinion-materializer-batch-v1", "audit"]
    by_path = {f["path"]: f for f in result["files"]}
    label = by_path["labels/konvid.csv"]
    assert label["status"] == "changed"
    assert label["recorded"]["sha256"] != label["actual"]["sha256"]
    assert label["resolved"] == str(batch / "labels/konvid.csv")
    assert sorted(label["cited_by"]) == sorted(
        str(batch / p) for p in ["reports/mos-label.json", "audits/konvid_mos.json"])
    assert by_path["scores/dover.jsonl"]["actual"] is None


def test_json_output_of_a_clean_run(batch: Path) -> None:
    done = run_verify("--json", "reports/mos-label.json", cwd=batch)
    assert done.returncode == 0
    assert json.loads(done.stdout)["status"] == "ok"


def test_relative_paths_resolve_from_the_recorded_base_dir_not_the_cwd(
        batch: Path, tmp_path: Path) -> None:
    done = run_verify(*reports(batch), cwd=tmp_path)
    assert done.returncode == 0
    assert "batch/labels/konvid.csv" in done.stdout


def test_base_dir_override_finds_a_moved_batch(batch: Path, tmp_path: Path) -> None:
    moved = tmp_path / "copied-weeks-later"
    shutil.copytree(batch, moved)
    shutil.rmtree(batch)
    done = run_verify(*reports(moved), cwd=moved)
    assert done.returncode == 1
    assert "does not exist here; pass --base-dir" in done.stderr
    done = run_verify("--base-dir", moved, *reports(moved), cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "copied-weeks-later/labels/konvid.csv" in done.stdout


def test_progress_is_reported_for_large_files(batch: Path) -> None:
    (batch / "big.bin").write_bytes(bytes(3 << 20))
    write(batch / "audit.json", {"run_provenance": provenance(
        batch, {"features": "big.bin", "labels": ["labels/konvid.csv"]}, {})})
    code = ("import sys, materializer.verify as v; v.PROGRESS_BYTES = 2 << 20; "
            "sys.exit(v.main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "audit.json"], cwd=batch,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "hashing" in line] == [
        f"materialize-verify: hashing big.bin: {percent}% of 3.0 MiB" for percent in (33, 66, 100)]
    assert lines(done.stdout) == {"big.bin": "ok", "labels/konvid.csv": "ok"}
    default = run_verify("audit.json", cwd=batch)
    assert "hashing" not in default.stderr


def test_runs_as_a_module(batch: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "materializer.verify", "reports/mos-label.json"],
                          cwd=batch, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read: No such file or directory"),
    ("not json", "not a JSON document"),
    ('{"schema": "mos-label-materializer-batch-v1", "tables": []}',
     "not a batch report (mos-label-materializer-batch-v1, "
     "second-opinion-materializer-batch-v1) or a single-table audit"),
    ('[1, 2]', "or a single-table audit"),
    ('{"schema": "mos-label-materializer-batch-v1", "run_provenance": '
     '{"schema": "ai-run-provenance-v1", "base_dir": "/"}}',
     "mos-label-materializer-batch-v1 report without a tables list"),
    ('{"run_provenance": {"schema": "ai-run-provenance-v1"}}',
     "run_provenance has no base_dir; pass --base-dir"),
])
def test_an_unreadable_or_unrecognised_document_is_a_usage_error(
        tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        write(tmp_path / "report.json", content)
    done = run_verify("report.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("materialize-verify: report.json: ")
    assert message in done.stderr


def test_usage_errors_exit_2(batch: Path) -> None:
    assert run_verify(cwd=batch).returncode == 2
    done = run_verify("--base-dir", "nowhere", "reports/mos-label.json", cwd=batch)
    assert done.returncode == 2
    assert done.stderr == "materialize-verify: nowhere: --base-dir is not a directory\n"


def run_tool(name: str, *args: str, cwd: Path) -> None:
    done = subprocess.run([str(BIN / name), *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def joined(tmp_path: Path) -> Path:
    """Audits written by the real commands: MOS labels, then second opinions on that table."""
    write(tmp_path / "features.csv", "clip_id,f1\na.mp4,0.1\nb.mp4,0.2\nc.mp4,0.3\n")
    write(tmp_path / "labels/konvid.csv", "clip_id,mos\na.mp4,3.1\nb.mp4,4.2\nc.mp4,2.5\n")
    write(tmp_path / "scores/dover.jsonl",
          '{"clip_id": "a.mp4", "score": 0.5}\n{"clip_id": "b.mp4", "score": 0.6}\n')
    run_tool("materialize-mos-labels", "--features", "features.csv",
             "--labels", "labels/konvid.csv", "--out", "out/mos.parquet",
             "--audit-json", "audits/mos.json", cwd=tmp_path)
    run_tool("materialize-second-opinion-features", "--features", "out/mos.parquet",
             "--scores", "DOVER=scores/dover.jsonl", "--out", "out/so.csv",
             "--audit-json", "audits/so.json", cwd=tmp_path)
    return tmp_path


def test_audits_of_the_real_commands_verify_then_catch_a_changed_label_and_a_lost_output(
        joined: Path) -> None:
    audits = ["audits/mos.json", "audits/so.json"]
    done = run_verify(*audits, cwd=joined)
    assert done.returncode == 0, done.stderr
    files = {"features.csv": "ok", "labels/konvid.csv": "ok", "out/mos.parquet": "ok",
             "scores/dover.jsonl": "ok", "out/so.csv": "ok"}
    assert lines(done.stdout) == files
    flip_byte(joined / "labels/konvid.csv", offset=20)
    (joined / "out/so.csv").unlink()
    done = run_verify(*audits, cwd=joined)
    assert done.returncode == 1
    assert lines(done.stdout) == {**files, "labels/konvid.csv": "changed", "out/so.csv": "missing"}


ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
VERIFY_RULE_WIRED = 'include: "rules/verify.smk"' in SNAKEFILE.read_text()
MANIFEST = """\
mos_labels:
  report_json: reports/mos-labels.json
  report_md: reports/mos-labels.md
  tables:
    - id: konvid
      features: data/features.csv
      labels: [data/labels.csv]
      out: out/konvid_mos.parquet
      audit_json: out/konvid_mos.audit.json
second_opinion:
  report_json: reports/second-opinion.json
  report_md: reports/second-opinion.md
  tables:
    - id: konvid-dover
      features: out/konvid_mos.parquet
      scores: [DOVER=data/dover.jsonl]
      out: out/konvid_so.parquet
      audit_json: out/konvid_so.audit.json
"""


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "snakemake"), "-c1", "-s", str(SNAKEFILE), *args,
                           "--configfile", "manifest.yaml"],
                          cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture
def workflow_batch(tmp_path: Path) -> Path:
    """A chained two-section batch run by ``snakemake`` as a user runs it."""
    write(tmp_path / "manifest.yaml", MANIFEST)
    write(tmp_path / "data/features.csv", "clip_id,f1\na.mp4,0.1\nb.mp4,0.2\nc.mp4,0.3\n")
    write(tmp_path / "data/labels.csv", "clip_id,mos\na.mp4,3.1\nb.mp4,4.2\nc.mp4,2.5\n")
    write(tmp_path / "data/dover.jsonl",
          '{"clip_id": "a.mp4", "score": 0.5}\n{"clip_id": "b.mp4", "score": 0.6}\n')
    done = snakemake(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path


WORKFLOW_FILES = {
    "manifest.yaml": "ok", "data/features.csv": "ok", "data/labels.csv": "ok",
    "data/dover.jsonl": "ok", "out/konvid_mos.parquet": "ok",
    "out/konvid_mos.audit.json": "ok", "out/konvid_so.parquet": "ok",
    "out/konvid_so.audit.json": "ok", "reports/mos-labels.md": "ok",
    "reports/second-opinion.md": "ok",
}


def test_both_reports_of_a_snakemake_batch_verify_and_catch_a_changed_label(
        workflow_batch: Path) -> None:
    both = ["reports/mos-labels.json", "reports/second-opinion.json"]
    done = run_verify(*both, cwd=workflow_batch)
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines(done.stdout) == WORKFLOW_FILES
    flip_byte(workflow_batch / "data/labels.csv", offset=20)
    done = run_verify(*both, cwd=workflow_batch)
    assert done.returncode == 1
    assert lines(done.stdout) == {**WORKFLOW_FILES, "data/labels.csv": "changed"}


@pytest.mark.skipif(not VERIFY_RULE_WIRED, reason="workflow/Snakefile does not include verify.smk")
def test_snakemake_verify_checks_the_reports_without_rerunning_or_rewriting(
        workflow_batch: Path) -> None:
    log = workflow_batch / "logs/verify/verify.log"
    done = snakemake(workflow_batch, "verify")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "materialize-verify: 10 files: 10 ok, 0 changed" in done.stderr
    assert lines(log.read_text()) == WORKFLOW_FILES
    reports = {p: p.read_bytes() for p in (workflow_batch / "reports").rglob("*") if p.is_file()}
    flip_byte(workflow_batch / "data/labels.csv", offset=20)
    done = snakemake(workflow_batch, "verify")
    assert done.returncode == 1
    assert "changed       data/labels.csv" in done.stderr  # the failed job's log is shown
    assert lines(log.read_text()) == {**WORKFLOW_FILES, "data/labels.csv": "changed"}
    assert "mos_labels__konvid" not in done.stderr  # nothing was joined again
    assert {p: p.read_bytes() for p in reports} == reports  # the evidence is untouched

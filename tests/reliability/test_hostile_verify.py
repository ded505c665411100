"""``materialize-verify`` on real reports and audits a hostile user edited (issue item 18).

A real batch is built once by ``snakemake`` from the KoNViD-1k files in tests/data; each
test edits a copy of its report or audit (or the files it cites) and runs the command as a
user does. A malformed document is one line on stderr naming the file and the field, exit
2, no traceback, before anything is hashed; nothing that is not a regular file is read.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TEST_DATA, Result
from rel_support import BIN, run_snakemake, write_files

from materializer.readers import read_source


def features_csv() -> bytes:
    """KoNViD-1k's NIQE feature table as CSV bytes, read from VIDEVAL's published .mat in
    the metadata's row order (the verify tests need a plain CSV input to cite)."""
    mat = ROOT / "config/data/konvid-1k/KONVID_1K_NIQE_scores.mat"
    scores = read_source(mat, mat.name, {"names": ["mos_in_mat", "niqe"]})
    ids = (TEST_DATA / "KONVID_1K_metadata.csv").read_text().splitlines()[1:]
    rows = zip([line.split(",")[0] for line in ids], scores.column("mos_in_mat").to_pylist(),
               scores.column("niqe").to_pylist(), strict=True)
    return ("flickr_id,mos_in_mat,niqe\n"
            + "".join(f"{i},{m!r},{n!r}\n" for i, m, n in rows)).encode()

REPORT = "reports/mos-labels.json"
AUDIT = "out/konvid.audit.json"
MANIFEST = """\
mos_labels:
  report_json: reports/mos-labels.json
  report_md: reports/mos-labels.md
  tables:
    - id: konvid
      features: data/features.csv
      labels: [data/labels.csv]
      out: out/konvid.parquet
      audit_json: out/konvid.audit.json
      feature_key_column: flickr_id
      label_key_column: flickr_id
      label_mos_column: mos
"""
Edit = Callable[[dict[str, Any]], Any]


def verify(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 60) -> Result:
    """``materialize-verify ARGS`` in ``cwd``; a run that blocks fails the test, not the suite."""
    done = subprocess.run([str(BIN / "materialize-verify"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=None if env is None else {**os.environ, **env})
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MOS-label batch run by the real workflow: its report, audit, table and inputs.

    Shared by every test, so tests write their edits elsewhere and never into it.
    """
    folder = tmp_path_factory.mktemp("batch")
    write_files(folder, {
        "manifest.yaml": MANIFEST,
        "data/features.csv": features_csv(),
        "data/labels.csv": (TEST_DATA / "KONVID_1K_metadata.csv").read_bytes(),
    })
    done = run_snakemake(folder, "-c1")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def edited(made: Path, name: str, edit: Edit, to: Path) -> Path:
    """A copy of the batch's document ``name`` at ``to`` after ``edit`` changed its body."""
    body = json.loads((made / name).read_text())
    edit(body)
    to.write_text(json.dumps(body, indent=2))
    return to


def moved(made: Path, tmp_path: Path) -> Path:
    """A copy of the whole batch to damage; verify it with ``--base-dir``."""
    return Path(shutil.copytree(made, tmp_path / "batch", symlinks=True))


def labels(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The label descriptions of a report or an audit."""
    inputs = body["run_provenance"]["inputs"]
    return inputs["tables"]["konvid"]["labels"] if "tables" in inputs else inputs["labels"]


def assert_usage_error(done: Result, document: str, message: str) -> None:
    assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr
    assert done.stderr == f"materialize-verify: {document}: {message}\n"


def set_path(value: Any) -> Edit:
    return lambda body: labels(body)[0].update(path=value)


def set_sha256(value: Any) -> Edit:
    return lambda body: labels(body)[0].update(sha256=value)


def set_size(value: Any) -> Edit:
    return lambda body: labels(body)[0].update(size=value)


def provenance(**fields: Any) -> Edit:
    return lambda body: body["run_provenance"].update(fields)


def outputs(**fields: Any) -> Edit:
    return lambda body: body["run_provenance"]["outputs"].update(fields)


def drop_out_sha256(body: dict[str, Any]) -> None:
    del body["run_provenance"]["outputs"]["out"]["sha256"]


def drop_outputs(body: dict[str, Any]) -> None:
    del body["run_provenance"]["outputs"]


def first_table(value: Any) -> Edit:
    return lambda body: body["tables"].__setitem__(0, value)


def first_audit(value: Any) -> Edit:
    return lambda body: body["tables"][0].update(audit_json=value)


LABEL = "run_provenance.inputs.tables.konvid.labels[0]"
HEX = "must be a 64-character hex string"
PATH = "must be a non-empty path string"


@pytest.mark.parametrize(("name", "edit", "message"), [
    (REPORT, set_sha256(12345), f"{LABEL}.sha256: {HEX}, got 12345"),
    (REPORT, set_sha256("abc"), f'{LABEL}.sha256: {HEX}, got "abc"'),
    (AUDIT, drop_out_sha256, f"run_provenance.outputs.out.sha256: {HEX}, got nothing"),
    (REPORT, set_path(None), f"{LABEL}.path: {PATH}, got null"),
    (REPORT, set_path(""), f'{LABEL}.path: {PATH}, got ""'),
    (AUDIT, set_path("data/\0labels.csv"),
     f'run_provenance.inputs.labels[0].path: {PATH}, got "data/\\u0000labels.csv"'),
    (AUDIT, set_path("data/\ud800.csv"),
     f'run_provenance.inputs.labels[0].path: {PATH}, got "data/\\ud800.csv"'),
    (REPORT, set_size("42"), f'{LABEL}.size: must be a non-negative integer, got "42"'),
    (REPORT, set_size(-1), f"{LABEL}.size: must be a non-negative integer, got -1"),
    (REPORT, set_size(True), f"{LABEL}.size: must be a non-negative integer, got true"),
    (REPORT, lambda body: labels(body)[0].update(exists="yes"),
     f'{LABEL}.exists: must be true or false, got "yes"'),
    (AUDIT, provenance(inputs=["data/labels.csv"]),
     "run_provenance.inputs: must be an object, got a list"),
    (AUDIT, outputs(out=7), "run_provenance.outputs.out: must be a file description or a "
     "path, got 7"),
    (AUDIT, drop_outputs, "run_provenance.outputs: must be an object, got nothing"),
    (AUDIT, provenance(base_dir=5), f"run_provenance.base_dir: {PATH}, got 5"),
    (REPORT, first_table("konvid"), 'tables[0]: must be an object, got "konvid"'),
    (REPORT, first_audit(7), f"tables[0].audit_json: {PATH}, got 7"),
    (REPORT, provenance(inputs={}, outputs={}),
     "run_provenance.inputs and outputs: cite no file to verify"),
], ids=["sha256-number", "sha256-short", "file-without-sha256", "path-null", "path-empty",
        "path-nul", "path-surrogate", "size-string", "size-negative", "size-bool",
        "exists-string", "inputs-list", "output-number", "outputs-missing", "base_dir-number",
        "table-string", "table-audit-number", "report-cites-nothing"])
def test_a_field_of_the_wrong_type_is_one_line_naming_document_and_field(
        made: Path, tmp_path: Path, name: str, edit: Edit, message: str) -> None:
    edited(made, name, edit, tmp_path / "doc.json")
    assert_usage_error(verify("doc.json", cwd=tmp_path), "doc.json", message)


def test_an_audit_citing_only_itself_cites_nothing(made: Path, tmp_path: Path) -> None:
    audit = tmp_path / "audit.json"
    edited(made, AUDIT, provenance(inputs={}, outputs={"audit_json": str(audit)}), audit)
    assert_usage_error(verify("audit.json", cwd=tmp_path), "audit.json",
                       "run_provenance.inputs and outputs: cite no file to verify")


def test_one_malformed_document_among_several_stops_the_run_with_exit_2(
        made: Path, tmp_path: Path) -> None:
    """Every named document is checked before any file is hashed: no half-done run."""
    edited(made, AUDIT, set_sha256(12345), tmp_path / "bad.json")
    done = verify(made / REPORT, "bad.json", cwd=tmp_path)
    assert_usage_error(done, "bad.json",
                       f"run_provenance.inputs.labels[0].sha256: {HEX}, got 12345")


def test_a_fifo_named_as_the_document_is_refused_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "report.json")
    done = verify("report.json", cwd=tmp_path)
    assert_usage_error(done, "report.json", "cannot read: a FIFO, not a regular file")


@pytest.mark.parametrize(("replace", "what"), [
    (os.mkfifo, "a FIFO"),
    (os.mkdir, "a directory"),
    (lambda path: os.symlink("/dev/zero", path), "a character device"),
], ids=["fifo", "directory", "device"])
def test_a_cited_file_replaced_by_something_not_regular_is_missing_and_never_read(
        made: Path, tmp_path: Path, replace: Callable[[Path], None], what: str) -> None:
    batch = moved(made, tmp_path)
    (batch / "data/labels.csv").unlink()
    replace(batch / "data/labels.csv")
    done = verify("--base-dir", batch, batch / REPORT, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert [line for line in done.stdout.splitlines() if not line.startswith("ok")] == [
        f"missing       batch/data/labels.csv  ({what}, not a regular file)"]


def test_a_report_whose_audit_is_malformed_names_it_as_a_problem(
        made: Path, tmp_path: Path) -> None:
    audit = edited(made, AUDIT, set_sha256(12345), tmp_path / "audit.json")
    edited(made, REPORT, first_audit(str(audit)), tmp_path / "report.json")
    done = verify("report.json", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"materialize-verify: cannot follow the audit cited by {tmp_path / 'report.json'}: "
        f"{audit}: run_provenance.inputs.labels[0].sha256: {HEX}, got 12345")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("cites", ["itself", "another report"])
def test_a_report_whose_table_audit_is_a_report_names_it_as_a_problem(
        made: Path, tmp_path: Path, cites: str) -> None:
    report = tmp_path / "report.json"
    target = report if cites == "itself" else made / REPORT
    edited(made, REPORT, first_audit(str(target)), report)
    done = verify("report.json", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"materialize-verify: cannot follow the audit cited by {report}: {target}: "
        "a mos-label-materializer-batch-v1 report, not a single-table audit")


def test_a_document_too_large_to_be_a_report_is_refused_unread(
        made: Path, tmp_path: Path) -> None:
    body = (made / AUDIT).read_bytes()
    (tmp_path / "huge.json").write_bytes(body + b" " * (64 << 20))
    done = verify("huge.json", cwd=tmp_path)
    assert_usage_error(done, "huge.json",
                       "larger than 64 MiB, too large for a report or audit")


def test_a_document_nested_too_deeply_to_parse_is_a_usage_error(
        made: Path, tmp_path: Path) -> None:
    text = (made / AUDIT).read_text()
    label = json.dumps(json.loads(text)["run_provenance"]["inputs"]["labels"])
    body = json.loads(text)
    body["run_provenance"]["inputs"]["labels"] = "LABELS"
    deep = "[" * 100_000 + label + "]" * 100_000
    (tmp_path / "deep.json").write_text(json.dumps(body).replace('"LABELS"', deep))
    done = verify("deep.json", cwd=tmp_path)
    assert_usage_error(done, "deep.json", "not a JSON document (nested too deeply)")


def nest(levels: int) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        inputs = body["run_provenance"]["inputs"]
        for _ in range(levels):
            inputs["labels"] = [inputs["labels"]]
    return edit


def test_inputs_nested_deeper_than_any_real_document_are_refused(
        made: Path, tmp_path: Path) -> None:
    edited(made, AUDIT, nest(40), tmp_path / "deep.json")
    done = verify("deep.json", cwd=tmp_path)
    assert_usage_error(done, "deep.json", "run_provenance.inputs.labels" + "[0]" * 31
                       + ": must be nested at most 32 levels deep, got a list")


def test_one_file_cited_twice_with_two_hashes_is_a_contradiction(
        made: Path, tmp_path: Path) -> None:
    def duplicate(body: dict[str, Any]) -> None:
        labels(body).append({**copy.deepcopy(labels(body)[0]), "sha256": "0" * 64})

    edited(made, AUDIT, duplicate, tmp_path / "audit.json")
    done = verify("audit.json", cwd=tmp_path)
    assert_usage_error(done, "audit.json",
                       "run_provenance.inputs.labels[1].sha256: differs from "
                       'run_provenance.inputs.labels[0].sha256 for the same file '
                       '"data/labels.csv"')


def test_an_upper_case_sha256_matches(made: Path, tmp_path: Path) -> None:
    edited(made, AUDIT, lambda body: labels(body)[0].update(
        sha256=labels(body)[0]["sha256"].upper()), tmp_path / "audit.json")
    done = verify("audit.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert f"ok            {made / 'data/labels.csv'}" in done.stdout.splitlines()


def test_a_path_with_dotdot_through_a_symlink_is_the_file_the_command_read(
        tmp_path: Path) -> None:
    """One path rule for the command, Snakemake and verify: ``link/../labels.csv`` is
    ``labels.csv`` beside ``link`` (normalised as Snakemake normalises), for all three."""
    (tmp_path / "real/inner").mkdir(parents=True)
    (tmp_path / "link").symlink_to("real/inner")
    (tmp_path / "features.csv").write_bytes(features_csv())
    shutil.copy(TEST_DATA / "KONVID_1K_metadata.csv", tmp_path / "labels.csv")
    (tmp_path / "real/labels.csv").write_text("not the labels\n")
    done = subprocess.run(
        [str(BIN / "materialize-mos-labels"), "--features", "features.csv",
         "--labels", "link/../labels.csv", "--out", "out.parquet", "--audit-json",
         "audit.json", "--feature-key-column", "flickr_id", "--label-key-column", "flickr_id",
         "--label-mos-column", "mos"],
        cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    checked = verify("audit.json", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert "ok            labels.csv" in checked.stdout.splitlines()  # the file it names
    (tmp_path / "labels.csv").write_text("changed\n")
    assert verify("audit.json", cwd=tmp_path).returncode == 1


@pytest.mark.parametrize(("name", "shown"), [
    ("odd\nname.csv", "odd\\nname.csv"),
    ("caf\udce9.csv", "caf\\udce9.csv"),
], ids=["newline", "not-utf-8"])
def test_a_file_name_that_cannot_print_is_one_escaped_line(
        made: Path, tmp_path: Path, name: str, shown: str) -> None:
    shutil.copy(made / "data/labels.csv", tmp_path / name)
    edited(made, AUDIT, set_path(str(tmp_path / name)), tmp_path / "audit.json")
    done = verify("audit.json", cwd=tmp_path, env={"PYTHONIOENCODING": "utf-8"})
    assert done.returncode == 0, done.stderr
    assert f"ok            {shown}" in done.stdout.splitlines()


LONG = "x" * 5000


@pytest.mark.parametrize(("edit", "args", "code", "expect"), [
    (first_audit(f"/{LONG}"), (), 1,
     f"missing       /{LONG}  (unreadable: File name too long)"),
    (provenance(base_dir=f"/{LONG}"), (), 1,
     f"materialize-verify: {{doc}}: recorded base_dir /{LONG} does not exist here; "
     "pass --base-dir"),
    (lambda body: None, ("--base-dir", LONG), 2,
     f"materialize-verify: {LONG}: --base-dir is not a directory"),
], ids=["audit_json", "base_dir", "--base-dir"])
def test_a_path_too_long_for_the_file_system_is_named_not_a_traceback(
        made: Path, tmp_path: Path, edit: Edit, args: tuple[str, ...], code: int,
        expect: str) -> None:
    edited(made, REPORT, edit, tmp_path / "report.json")
    done = verify(*args, "report.json", cwd=tmp_path)
    assert done.returncode == code, done.stderr[-500:]
    assert expect.format(doc=tmp_path / "report.json") in (done.stdout + done.stderr).splitlines()
    assert "Traceback" not in done.stderr


def test_a_report_of_thousands_of_tables_whose_audits_are_gone_is_checked_quickly(
        made: Path, tmp_path: Path) -> None:
    """Each followed audit is looked up in sets: the original took minutes, quadratically."""
    def many(body: dict[str, Any]) -> None:
        table = body["tables"][0]
        body["tables"] = [{**table, "audit_json": f"out/gone-{i}.json"} for i in range(20_000)]

    edited(made, REPORT, many, tmp_path / "report.json")
    done = verify("report.json", cwd=tmp_path, timeout=30)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "materialize-verify: 20006 files: 6 ok, 0 changed, 20000 missing, 0 unverifiable")

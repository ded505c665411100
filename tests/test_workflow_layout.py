"""The workflow is a table of contents: directives in the Snakefile, one rule file for
table jobs, no command-line sniffing, the library's schema, nothing drawn by --report."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from conftest import ok, snakemake, write_csv

from materializer import manifest, runs

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflow"
SNAKEFILE = WORKFLOW / "Snakefile"
RULE_FILES = sorted((WORKFLOW / "rules").glob("*.smk"))
WORKFLOW_FILES = [SNAKEFILE, *RULE_FILES]


def directive(name: str, text: str) -> bool:
    """A top-level Snakemake directive such as ``report:`` or ``onerror:``."""
    return re.search(rf"^{name}:", text, re.M) is not None


def test_snakefile_holds_the_report_and_onerror_directives() -> None:
    text = SNAKEFILE.read_text(encoding="utf-8")
    assert directive("report", text) and directive("onerror", text)
    for rules in RULE_FILES:
        body = rules.read_text(encoding="utf-8")
        assert not directive("report", body) and not directive("onerror", body), rules.name


def test_no_workflow_file_reads_the_command_line() -> None:
    for path in WORKFLOW_FILES:
        assert "argv" not in path.read_text(encoding="utf-8"), path.name


def test_one_rule_file_for_the_table_jobs_of_every_kind() -> None:
    names = {path.name for path in RULE_FILES}
    assert "tables.smk" in names
    assert not {"mos_labels.smk", "second_opinion.smk"} & names
    assert 'include: "rules/tables.smk"' in SNAKEFILE.read_text(encoding="utf-8")
    grouped = [p.name for p in RULE_FILES if '"tables"' in p.read_text(encoding="utf-8")]
    assert grouped == ["tables.smk"]  # the only rules in the cluster group `tables`
    text = (WORKFLOW / "rules" / "tables.smk").read_text(encoding="utf-8")
    assert "for _table in MANIFEST.tables:" in text and "mos-labels" not in text


def test_rule_files_hold_no_job_bodies() -> None:
    """Functions in rule files are thin lookups and calls (job bodies are in the library)."""
    for path in WORKFLOW_FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("def ")]
        for start in starts:
            end = next((i for i in range(start + 1, len(lines))
                        if lines[i] and not lines[i][0].isspace()), len(lines))
            body = [line for line in lines[start + 1:end] if line.strip()]
            assert len(body) <= 25, f"{path.name}: {lines[start]}"


def test_the_workflow_uses_the_schema_shipped_in_the_package() -> None:
    shipped = manifest.schema_path()
    package = Path(manifest.__file__).resolve().parent
    assert shipped.resolve() == package / "schemas" / "manifest.schema.yaml"
    assert shipped.is_file()
    # workflow/schemas/ (catalog convention) is that file, not a second copy.
    linked = WORKFLOW / "schemas" / "manifest.schema.yaml"
    assert linked.resolve() == shipped.resolve()
    assert linked.read_bytes() == shipped.read_bytes()
    # The workflow passes no schema of its own: load_manifest reads the package's.
    for path in WORKFLOW_FILES:
        assert "schema" not in path.read_text(encoding="utf-8"), path.name
    assert manifest._load_schema(None) == yaml.safe_load(shipped.read_text(encoding="utf-8"))


def test_batch_run_resources_follow_the_input_size(tmp_path: Path) -> None:
    """What profiles/README.md quotes: mem_mb = max(1024, 512 + 8 x input MB) and
    runtime = max(2, 2 + input MB / 20) minutes."""
    write_csv(tmp_path / "l.csv", "clip_id,mos\na,3\n")
    with open(tmp_path / "f.csv", "wb") as big:
        big.truncate(100 * 2**20)  # sparse: only its size is read
    loaded = manifest.load_manifest(
        {"tables": [{"id": "t", "features": "f.csv", "labels": ["l.csv"], "out": "o.csv"},
                    {"id": "u", "features": "o.csv", "labels": ["l.csv"], "out": "p.csv"}]},
        manifest_path=str(tmp_path / "m.yaml"))
    run = runs.BatchRun(loaded, snakefile="Snakefile", table_rules="tables.smk")
    first, chained = loaded.tables
    megabytes = run.input_bytes(first) / 2**20
    assert int(megabytes) == 100  # features + labels
    assert run.table_mem_mb(first) == int(512 + 8 * megabytes)
    assert run.table_runtime(first) == int(2 + megabytes / 20) == 7
    # o.csv is not written yet: it counts as the inputs of the table that writes it.
    assert run.input_bytes(chained) == run.input_bytes(first) + (tmp_path / "l.csv").stat().st_size
    small = runs.BatchRun(manifest.load_manifest(
        {"tables": [{"id": "s", "features": "l.csv", "labels": ["l.csv"], "out": "s.csv"}]},
        manifest_path=str(tmp_path / "m.yaml")), snakefile="S", table_rules="T")
    assert (small.table_mem_mb(small.manifest.tables[0]),
            small.table_runtime(small.manifest.tables[0])) == (1024, 2)


def test_report_after_a_failed_run_draws_nothing(tmp_path: Path) -> None:
    """The failed run's own failure handler draws the summary from its reports; the
    report (which runs no job) only picks up what exists."""
    write_csv(tmp_path / "f.csv", "clip_id,x\nc1,1\nc2,2\n")
    write_csv(tmp_path / "l.csv", "clip_id,mos\nc1,3\n")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({
        "report_json": "reports/mos.json", "report_md": "reports/mos.md",
        "tables": [{"id": "bad", "features": "f.csv", "labels": ["l.csv"], "out": "bad.csv",
                    "min_match_rate": 1.0},
                   {"id": "good", "features": "f.csv", "labels": ["l.csv"],
                    "out": "good.csv", "min_match_rate": 0.5}]}), encoding="utf-8")
    failed = snakemake(tmp_path, "--configfile", "m.yaml")
    assert failed.returncode != 0
    plots = tmp_path / "reports" / "plots"
    drawn = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in
             (plots / "summary.html", plots / "match-rate.png", plots / "match-rate.html")}
    assert "1 of 2 failed" in (plots / "summary.html").read_text(encoding="utf-8")

    done = ok(snakemake(tmp_path, "--configfile", "m.yaml", "--report", "report.html"))
    assert "no plots for table 'bad'" in done.stderr
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in drawn} == drawn
    assert "1 of 2 failed" in (tmp_path / "report.html").read_text(encoding="utf-8")

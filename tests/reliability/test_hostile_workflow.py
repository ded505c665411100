"""`snakemake` against hostile manifests and reruns: outputs in the workflow's bookkeeping,
ids whose report figures share a name, and a rerun that fails after a good run.

Each test runs the real workflow on small files in a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from rel_support import (
    SNAKEMAKE,
    all_entries,
    run_snakemake,
    snakemake_argv,
    snakemake_env,
    temp_files,
    write_files,
)

from materializer.jobs import keep_previous, remove_stale_temporaries

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed")

FEATURES = "video_id,x\na,1\nb,2\n"
GOOD_LABELS = "video_id,mos\na,3\nb,4\n"
BAD_LABELS = "video_id,mos\na,good\nb,4\n"
TABLE = "out/t.csv"
AUDIT = "out/t.csv.audit.json"


def manifest_problems(stderr: str) -> list[str]:
    return [line.strip()[2:] for line in stderr.splitlines() if line.strip().startswith("- ")]


def run_elsewhere(folder: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``snakemake -d FOLDER`` started from another folder (``-d`` is the working dir)."""
    return subprocess.run(snakemake_argv(folder, *args), cwd=cwd, capture_output=True,
                          text=True, timeout=180, check=False, env=snakemake_env())


def test_outputs_inside_logs_or_snakemake_state_are_manifest_problems(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    write_files(folder, {"data/f.csv": FEATURES, "data/l.csv": GOOD_LABELS, "manifest.yaml": (
        "mos_labels:\n"
        "  report_json: .snakemake/report.json\n"
        "  report_md: logs/report.md\n"
        "  tables:\n"
        # Exactly the job's own status file: it used to be overwritten by the status record.
        "    - {id: t, features: data/f.csv, labels: [data/l.csv], out: out/t.csv,\n"
        "       audit_json: logs/status/mos-labels/t.json}\n"
        "    - {id: u, features: data/f.csv, labels: [data/l.csv], out: ./logs/../logs/u.csv}\n"
        "    - {id: v, features: data/f.csv, labels: [data/l.csv], out: via/v.csv}\n")})
    (folder / "logs").mkdir()
    (folder / "via").symlink_to("logs")
    entries = all_entries(folder)
    done = run_elsewhere(folder, tmp_path, "-c", "1")
    assert done.returncode == 2, done.stderr[-3000:]
    problems = manifest_problems(done.stderr)
    expected = {
        "table 't' (mos_labels[0]) field 'audit_json'": "logs/status/mos-labels/t.json",
        "table 'u' (mos_labels[1]) field 'out'": "logs/u.csv",
        "table 'u' (mos_labels[1]) field 'audit_json'": "logs/u.csv.audit.json",
        "table 'v' (mos_labels[2]) field 'out'": "via/v.csv",  # a symlink to logs/
        "table 'v' (mos_labels[2]) field 'audit_json'": "via/v.csv.audit.json",
        "mos_labels report_json": ".snakemake/report.json",
        "mos_labels report_md": "logs/report.md",
    }
    for where, path in expected.items():
        assert any(p.startswith(f"{where}: is inside ") and p.endswith(path) for p in problems), \
            (where, problems)
    assert len(problems) == len(expected), problems
    assert "Traceback" not in done.stderr
    assert {e for e in all_entries(folder) if not e.startswith(".snakemake")} == entries


def test_outputs_beside_the_bookkeeping_folders_still_run(tmp_path: Path) -> None:
    write_files(tmp_path, {"data/f.csv": FEATURES, "data/l.csv": GOOD_LABELS, "manifest.yaml": (
        "mos_labels:\n  tables:\n"
        "    - {id: t, features: data/f.csv, labels: [data/l.csv], out: logs2/t.csv,\n"
        "       audit_json: logs.json}\n")})
    done = run_snakemake(tmp_path, "-c", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "logs.json").read_text())["input_rows"] == 2


def figure_manifest(report_plots: str = "") -> str:
    score = ", key_column: video_id, score_key_field: video_id"
    return (report_plots +
            "mos_labels:\n  tables:\n"
            "    - {id: a, features: data/f.csv, labels: [data/l.csv], out: out/a.csv}\n"
            "    - {id: a.mos, features: data/f.csv, labels: [data/l.csv], out: out/b.csv}\n"
            "second_opinion:\n  tables:\n"
            f"    - {{id: s, features: data/f.csv, scores: [data/s.jsonl], out: out/s.csv"
            f"{score}}}\n"
            f"    - {{id: s.html, features: data/f.csv, scores: [data/s.jsonl], out: out/t.csv"
            f"{score}}}\n")


def figure_project(folder: Path, report_plots: str = "") -> Path:
    write_files(folder, {"data/f.csv": FEATURES, "data/l.csv": GOOD_LABELS,
                         "data/s.jsonl": '{"competitor": "d", "video_id": "a", "score": 1}\n'
                                         '{"competitor": "d", "video_id": "b", "score": 2}\n',
                         "manifest.yaml": figure_manifest(report_plots)})
    return folder


@pytest.mark.parametrize("report_plots", ["", "report_plots: false\n"])
def test_ids_that_extend_each_other_run_with_or_without_figures(tmp_path: Path,
                                                               report_plots: str) -> None:
    """`a` drew a.mos.html (caption) and `a.mos` a.mos.html (notes), and Snakemake stopped
    with AmbiguousRuleException (exit 1); the same for second-opinion `s` and `s.html`.
    Each table's figures now lie in a folder of its own."""
    folder = figure_project(tmp_path, report_plots)
    done = run_snakemake(folder, "-c", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("a", "b", "s", "t"):
        assert (folder / "out" / f"{name}.csv.audit.json").is_file(), name
    plots = folder / "reports" / "manifest" / "plots"
    drawn = {str(p.relative_to(plots)) for p in plots.rglob("*") if p.is_file()}
    if report_plots:
        assert not any("/" in name for name in drawn), drawn  # only the summary figures
    else:
        assert {"mos-labels/a/a.mos.html", "mos-labels/a.mos/a.mos.html",
                "second-opinion/s/s.html", "second-opinion/s.html/s.html.html"} <= drawn


# --- a failed rerun keeps the previous table and audit ---------------------------------


def rerun_project(folder: Path, options: str = "") -> Path:
    write_files(folder, {"data/f.csv": FEATURES, "data/l.csv": GOOD_LABELS,
                         "data/s.jsonl": '{"competitor": "d", "video_id": "a", "score": 1}\n',
                         "manifest.yaml": rerun_manifest(options)})
    return folder


def rerun_manifest(options: str) -> str:
    return ("mos_labels:\n  tables:\n"
            f"    - {{id: t, features: data/f.csv, labels: [data/l.csv], out: {TABLE}{options}}}\n"
            "second_opinion:\n  tables:\n"
            "    - {id: so, features: out/t.csv, scores: [data/s.jsonl], out: out/so.csv,\n"
            "       key_column: video_id, score_key_field: video_id}\n")


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in (TABLE, AUDIT)}


def sidecar(folder: Path, name: str) -> Path:
    path = folder / name
    return path.with_name(f".{path.name}.previous")


def report_entry(folder: Path, table_id: str) -> dict:
    report = json.loads((folder / "reports" / "manifest" / "mos-labels.json").read_text())
    return next(t for t in report["tables"] if t["id"] == table_id) | {"report": report["status"]}


def planned_table_jobs(folder: Path) -> str:
    dry = run_snakemake(folder, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    return dry.stdout + dry.stderr


def good_run(folder: Path) -> dict[str, bytes]:
    done = run_snakemake(folder, "-c", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    return outputs(folder)


def failed_run(folder: Path) -> subprocess.CompletedProcess[str]:
    done = run_snakemake(folder, "-c", "1")
    assert done.returncode == 1, done.stderr[-3000:]
    return done


def test_a_failed_rerun_keeps_the_previous_table_and_audit(tmp_path: Path) -> None:
    folder = rerun_project(tmp_path)
    previous = good_run(folder)
    downstream = (folder / "out" / "so.csv").read_bytes()
    (folder / "data" / "l.csv").write_text(BAD_LABELS)
    stale = folder / "out" / ".t.csv.0badc0de.tmp"  # a killed run's leftover, swept by the job
    stale.write_text("partial")

    done = failed_run(folder)
    assert "table t: failed; kept its previous out/t.csv and audit" in done.stderr
    assert outputs(folder) == previous  # exactly the previous bytes, in their folder
    assert (folder / "out" / "so.csv").read_bytes() == downstream
    assert not stale.exists() and temp_files(folder) == []
    assert all(sidecar(folder, name).read_bytes() == previous[name] for name in previous)
    entry = report_entry(folder, "t")
    assert entry["report"] == "failed" and entry["status"] == "error"
    assert "MOS value 'good' is not a finite number" in entry["error"]

    # Its input is newer than the restored table: the next run reruns it, fails again, and
    # the previous table survives that too.
    assert "rule mos_labels__t:" in planned_table_jobs(folder)
    failed_run(folder)
    assert outputs(folder) == previous

    (folder / "data" / "l.csv").write_text("video_id,mos\na,1\nb,2\n")
    fixed = good_run(folder)
    assert fixed[TABLE] != previous[TABLE]
    for name in (TABLE, AUDIT):  # the sidecars now keep the new version
        assert os.path.samefile(sidecar(folder, name), folder / name)
    assert report_entry(folder, "t")["status"] == "ok"
    assert "Nothing to be done" in planned_table_jobs(folder)


def test_a_rerun_failing_on_a_changed_option_alone_keeps_the_table_and_reruns_next_time(
        tmp_path: Path) -> None:
    """No input changed, so only the restored files' dates make the next run retry it."""
    folder = rerun_project(tmp_path, ", min_match_rate: 0.5")
    (folder / "data" / "l.csv").write_text("video_id,mos\na,3\n")  # 1 of 2 keys
    previous = good_run(folder)
    (folder / "manifest.yaml").write_text(rerun_manifest(", min_match_rate: 0.9"))

    failed_run(folder)
    assert outputs(folder) == previous
    assert "below min_match_rate 0.900" in report_entry(folder, "t")["error"]
    assert "rule mos_labels__t:" in planned_table_jobs(folder)
    failed_run(folder)
    assert outputs(folder) == previous


def test_a_first_run_that_fails_restores_nothing(tmp_path: Path) -> None:
    folder = rerun_project(tmp_path)
    (folder / "data" / "l.csv").write_text(BAD_LABELS)
    done = failed_run(folder)
    assert "kept its previous" not in done.stderr
    assert not (folder / "out").exists() or sorted(os.listdir(folder / "out")) == []


def test_sidecars_survive_the_stale_temporary_sweep(tmp_path: Path) -> None:
    names = [".t.csv.previous", ".t.csv.audit.json.previous", ".t.csv.ab12cd34.tmp",
             ".t.csv.audit.json.0f0f0f0f.tmp"]
    write_files(tmp_path, {f"out/{name}": "x" for name in names})
    remove_stale_temporaries([TABLE, AUDIT], str(tmp_path))
    assert sorted(os.listdir(tmp_path / "out")) == sorted(names[:2])


def test_without_hard_links_no_sidecar_is_kept(tmp_path: Path, monkeypatch) -> None:
    """An older pair is dropped too: a later restore must never bring back a stale table."""
    write_files(tmp_path, {TABLE: "new", AUDIT: "{}", "out/.t.csv.previous": "old",
                           "out/.t.csv.audit.json.previous": "old"})

    def no_links(source: str, target: str) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    log = tmp_path / "job.log"
    with open(log, "w", encoding="utf-8") as handle:
        keep_previous([TABLE, AUDIT], str(tmp_path), handle)
    assert sorted(os.listdir(tmp_path / "out")) == ["t.csv", "t.csv.audit.json"]
    assert "previous version not kept (needs hard links" in log.read_text()

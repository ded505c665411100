"""Batch reports (``*-materializer-batch-v1``): JSON and Markdown, in manifest order.

Fields and Markdown layout are those of the older batch runners. A report is built from
the per-table audits the jobs wrote; after a failed run (when Snakemake cannot run the
report rule) also from the status files the failed jobs left, see :mod:`materializer.jobs`.
The JSON report's ``run_provenance`` describes the manifest, every table input and output,
and the Markdown report, with sha256; it never describes itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from materializer import files, paths, provenance
from materializer.jobs import read_status, spec_digest, spec_paths, stamps, status_path
from materializer.kinds import KINDS, MOS
from materializer.manifest import SOURCE_FIELD, Manifest, Section, Table


@dataclass(frozen=True)
class Outcome:
    """How one table ended: ``ok`` with its audit, or ``error`` with a one-line message."""

    status: str
    audit: Mapping[str, Any] | None = None
    error: str | None = None


def _read_audit(manifest: Manifest, table: Table) -> Mapping[str, Any] | None:
    try:
        return json.loads(Path(manifest.resolve(table.audit_json)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def outcomes_after_success(manifest: Manifest) -> dict[tuple[str, str], Outcome]:
    """Every table ran or was up to date (the report rule's view): read the audits."""
    found = {}
    for table in manifest.tables:
        audit = _read_audit(manifest, table)
        found[(table.kind, table.id)] = Outcome("ok", audit) if audit is not None else \
            Outcome("error", error=f"audit {table.audit_json} is missing or unreadable")
    return found


def outcomes_after_failure(manifest: Manifest, status_root: str) -> dict[tuple[str, str], Outcome]:
    """After a failed run: failed tables from status files; tables downstream of a failure,
    or whose outputs are missing or older than what they were built from, as not run."""
    found: dict[tuple[str, str], Outcome] = {}

    def outcome(table: Table) -> Outcome:
        key = (table.kind, table.id)
        if key in found:
            return found[key]
        found[key] = Outcome("error", error="not run: its features depend on itself")
        status = read_status(status_path(table.kind, table.id, status_root))
        upstream = manifest.producer(table.features)
        up = outcome(upstream) if upstream is not None else None
        spec_json = table.spec_json()
        if status is not None and status.get("status") == "error" \
                and status.get("spec_sha256") == spec_digest(spec_json):
            result = Outcome("error", error=str(status.get("error")))
        elif up is not None and up.status != "ok":
            result = Outcome("error", error=f"not run: its features come from table "
                             f"{upstream.id!r}, which did not finish")  # type: ignore[union-attr]
        elif _fresh(manifest, table, spec_json, status):
            audit = _read_audit(manifest, table)
            result = Outcome("ok", audit) if audit is not None else \
                Outcome("error", error="not run: its audit is missing or unreadable")
        else:
            result = Outcome("error", error="not run: the run stopped before this table")
        found[key] = result
        return result

    for table in manifest.tables:
        outcome(table)
    return found


def _fresh(manifest: Manifest, table: Table, spec_json: str,
           status: Mapping[str, Any] | None) -> bool:
    """Are the table's outputs the result of its current options and inputs?"""
    spec = json.loads(spec_json)
    inputs, outputs = spec_paths(spec)
    now_out = stamps(outputs, manifest.base_dir)
    if any(v is None for v in now_out.values()):
        return False
    if status is None:
        # No status file (logs cleaned): outputs at least as new as every input.
        now_in = stamps(inputs, manifest.base_dir)
        newest = max((v[1] for v in now_in.values() if v), default=0)
        return all(v is not None for v in now_in.values()) and \
            min(v[1] for v in now_out.values() if v) >= newest
    # Snakemake touches outputs after a job, so outputs are compared by size only.
    recorded_out = status.get("outputs") or {}
    return (status.get("status") == "ok"
            and status.get("spec_sha256") == spec_digest(spec_json)
            and status.get("inputs") == stamps(inputs, manifest.base_dir)
            and all((recorded_out.get(p) or [None])[0] == v[0]
                    for p, v in now_out.items() if v))


def table_entry(table: Table, outcome: Outcome) -> dict[str, Any]:
    """One ``tables[]`` entry: paths as written, config as the manifest set it."""
    entry: dict[str, Any] = {
        "id": table.id,
        "features": table.feature_source.written,
        SOURCE_FIELD[table.kind]: [s.written for s in table.sources],
        "out": table.out,
        "audit_json": table.audit_json,
        "config": dict(table.config),
        "status": outcome.status,
    }
    if outcome.status == "ok":
        audit = outcome.audit or {}
        entry["summary"] = {name: audit.get(name)
                            for name in KINDS[table.kind].table_summary_fields}
        if "agreement" in audit:
            entry["agreement"] = audit["agreement"]
    else:
        entry["error"] = outcome.error
    return entry


def build_report(manifest: Manifest, section: Section,
                 outcomes: Mapping[tuple[str, str], Outcome]) -> dict[str, Any]:
    """The report without its provenance block."""
    tables = [table_entry(t, outcomes[(t.kind, t.id)]) for t in section.tables]
    ok = [t for t in tables if t["status"] == "ok"]
    summary: dict[str, Any] = {"tables": len(tables), "failed_tables": len(tables) - len(ok)}
    for name in KINDS[section.kind].summary_fields:
        summary[name] = sum(int(t["summary"].get(name) or 0) for t in ok)
    return {
        "schema": KINDS[section.kind].report_schema,
        "status": "ok" if len(ok) == len(tables) else "failed",
        "manifest": manifest.path,
        "summary": summary,
        "tables": tables,
    }


def render_markdown(report: Mapping[str, Any], kind: str) -> str:
    """The older runners' Markdown layout, byte for byte."""
    lines = [KINDS[kind].markdown_title, "", f"Status: **{report['status']}**", ""]
    if kind == MOS:
        lines += ["| Table | Status | Match rate | Matched rows | Missing rows | Output |",
                  "| --- | --- | ---: | ---: | ---: | --- |"]
        for t in report["tables"]:
            s = t.get("summary") if t["status"] == "ok" else None
            rate = f"{float(s['match_rate']):.3f}" if s and s.get("match_rate") is not None \
                else "-"
            matched = str(s["matched_rows"]) if s else "-"
            missing = str(s["missing_rows"]) if s else "-"
            lines.append(f"| {t['id']} | {t['status']} | {rate} | {matched} | {missing} | "
                         f"`{t['out']}` |")
    else:
        lines += ["| Table | Status | Input rows | Output rows | Output |",
                  "| --- | --- | ---: | ---: | --- |"]
        for t in report["tables"]:
            s = t.get("summary") if t["status"] == "ok" else None
            rows_in = str(s["input_rows"]) if s else "-"
            rows_out = str(s["output_rows"]) if s else "-"
            lines.append(f"| {t['id']} | {t['status']} | {rows_in} | {rows_out} | "
                         f"`{t['out']}` |")
        lines += _agreement_markdown(report["tables"])
    return "\n".join(lines) + "\n"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _interval(values: Sequence[float] | None) -> str:
    return "-" if values is None else f"[{values[0]:+.3f}, {values[1]:+.3f}]"


def _cell(text: Any) -> str:
    """Text for a Markdown table cell (a ``|`` would split it)."""
    return "-" if text is None else str(text).replace("|", "\\|")


def _agreement_markdown(tables: Sequence[Mapping[str, Any]]) -> list[str]:
    """Agreement with MOS per table and competitor, then what combining them gains;
    nothing for a batch without an agreement block (its report stays as it was)."""
    blocks = [(t["id"], t["agreement"]) for t in tables if t.get("agreement")]
    if not blocks:
        return []
    lines = ["", "## Agreement with MOS", "",
             "| Table | Competitor | n | SRCC | SRCC 95% CI | KRCC | PLCC | PLCC (logistic) "
             "| RMSE (logistic) | Note |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for table_id, block in blocks:
        for name, f in block["competitors"].items():
            lines.append(
                f"| {table_id} | {_cell(name)} | {f['n']} | {_figure(f['srcc'])} | "
                f"{_interval(f['srcc_ci95'])} | {_figure(f['krcc'])} | {_figure(f['plcc'])} | "
                f"{_figure(f['plcc_logistic'])} | "
                f"{'-' if f['rmse_logistic'] is None else format(f['rmse_logistic'], '.3f')} "
                f"| {_cell(f['note'])} |")
    lines += ["", "| Table | MOS column | Intersection rows | Best single | Best single CV SRCC "
              "| Combined CV SRCC | Gain | Note |",
              "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |"]
    for table_id, block in blocks:
        i = block["intersection"]
        lines.append(f"| {table_id} | `{block['mos_column']}` | {i['intersection_rows']} | "
                     f"{_cell(i['best_single'])} | {_figure(i['best_single_cv_srcc'])} | "
                     f"{_figure(i['combined_cv_srcc'])} | {_figure(i['gain'])} | "
                     f"{_cell(i['note'])} |")
    return lines


class _Describer:
    """Describe files, each distinct file hashed once.

    Files of 1 MiB and more are hashed in a small thread pool (hashlib releases the GIL);
    smaller ones inline, where a thread would cost more than the hash (1,000s of tables).
    """

    def __init__(self, base_dir: str, written: Sequence[str]) -> None:
        self.base_dir = base_dir
        unique = list(dict.fromkeys(written))
        large = [p for p in unique if _size(paths.resolve(base_dir, p)) >= 1 << 20]
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="report-sha256") as pool:
            hashed = dict(zip(large, pool.map(lambda p: provenance.describe_path(p, base_dir),
                                              large), strict=True))
            self._known = {p: hashed.get(p) or provenance.describe_path(p, base_dir)
                           for p in unique}

    def __call__(self, path: str) -> dict[str, Any]:
        return self._known.get(path) or provenance.describe_path(path, self.base_dir)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _provenance_files(manifest: Manifest, section: Section) -> tuple[dict[str, Any],
                                                                     dict[str, Any]]:
    tables_in = {t.id: {"features": t.features,
                        SOURCE_FIELD[t.kind]: list(t.source_paths)} for t in section.tables}
    tables_out = {t.id: {"audit_json": t.audit_json, "out": t.out} for t in section.tables}
    return tables_in, tables_out


def _written(path: str, written: str | None, base_dir: str) -> str:
    """A path as the manifest wrote it, else relative to base_dir when under it."""
    if written is not None:
        return written
    relative = os.path.relpath(path, base_dir)
    return path if relative.startswith(os.pardir) else relative


def write_section_report(
    manifest: Manifest,
    section: Section,
    outcomes: Mapping[tuple[str, str], Outcome],
    *,
    entrypoint: str,
    argv: Sequence[str],
    executor: str | None = None,
    extra_versions: Mapping[str, str] | None = None,
    stderr: TextIO | None = None,
) -> dict[str, Any]:
    """Write the Markdown then the JSON report of one section, each atomically."""
    started_at = provenance.utc_now()
    report = build_report(manifest, section, outcomes)
    md_path = Path(section.report_md)
    with files.atomic_output(md_path, section.report_md) as temp:
        temp.write_text(render_markdown(report, section.kind), encoding="utf-8")
        files.commit_outputs([(temp, md_path)])

    tables_in, tables_out = _provenance_files(manifest, section)
    base = manifest.base_dir
    report_md = _written(section.report_md, section.report_md_written, base)
    manifest_file = _written(os.path.abspath(manifest.path), None, base)
    cited = [manifest_file, report_md]
    for described in (*tables_in.values(), *tables_out.values()):
        for value in described.values():
            cited.extend(value if isinstance(value, list) else [value])
    describe = _Describer(manifest.base_dir, cited)
    inputs = {
        "manifest": describe(manifest_file),
        "tables": {tid: {name: [describe(p) for p in v] if isinstance(v, list) else describe(v)
                         for name, v in files.items()} for tid, files in tables_in.items()},
    }
    outputs = {
        "report_md": describe(report_md),
        "tables": {tid: {name: describe(v) for name, v in files.items()}
                   for tid, files in tables_out.items()},
    }
    report["run_provenance"] = provenance.build_provenance(
        entrypoint=entrypoint,
        argv=argv,
        args={
            "base_dir": manifest.base_dir,
            "manifest": manifest.path,
            "report_json": _written(section.report_json, section.report_json_written, base),
            "report_md": report_md,
            "section": section.key,
        },
        inputs=inputs,
        outputs=outputs,
        base_dir=manifest.base_dir,
        started_at=started_at,
        executor=executor,
        extra_versions=extra_versions,
    )
    json_path = Path(section.report_json)
    with files.atomic_output(json_path, section.report_json) as temp:
        files.write_json_document(report, temp)
        files.commit_outputs([(temp, json_path)])
    if stderr is not None:
        stderr.write(summary_line(report, section.kind) + "\n")
    return report


def summary_line(report: Mapping[str, Any], kind: str) -> str:
    """The older runners' one-line stderr summary."""
    s = report["summary"]
    third = KINDS[kind].log_fields[1]
    return (f"{KINDS[kind].stderr_prefix}: tables={s['tables']} input_rows={s['input_rows']} "
            f"{third}={s[third]} failed_tables={s['failed_tables']}")

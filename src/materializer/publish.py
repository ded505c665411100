"""Publishing a joined table with its audit: both complete, or neither.

The table goes to a temporary file beside its target, is hashed there, the audit (which
describes the table's final bytes) goes to its own temporary file, and only then are
both renamed into place. A failure at any step leaves no output and no audit behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from materializer import files, provenance, tableio
from materializer.errors import UsageError
from materializer.provenance import InputHasher, RunContext


def check_outputs(run: RunContext, out: str, audit_json: str | None,
                  inputs: list[str]) -> None:
    """Refuse outputs that would destroy something, before any work is done.

    No output may be an input, the table and its audit may not be one file, and
    neither may be an existing folder (each error names the path at fault).
    """
    sources = {}
    for written in inputs:
        sources[os.path.realpath(run.resolve(written))] = written
    targets: dict[str, str] = {}
    for written in (out, audit_json):
        if written is None:
            continue
        real = os.path.realpath(run.resolve(written))
        if real in sources:
            raise UsageError(f"output would overwrite the input {sources[real]}", file=written)
        if real in targets:
            raise UsageError(f"the table and its audit are the same file {targets[real]}",
                             file=written)
        if os.path.isdir(real):
            raise UsageError("is an existing folder; give a file path", file=written)
        targets[real] = written


def publish(
    table: pa.Table,
    out: str,
    audit_json: str | None,
    audit: dict[str, Any],
    run: RunContext,
    hasher: InputHasher,
    inputs: Mapping[str, Any],
    write: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Write ``table`` (or call ``write``) and the audit atomically; return the audit.

    ``inputs`` maps provenance names to paths as written (a path or a list of paths).
    """
    out_path = run.resolve(out)
    fmt = files.table_format(out)
    with files.atomic_output(out_path, out) as temp_table:
        if write is None:
            tableio.write_table_to(table, fmt, temp_table)
        else:
            write(temp_table)
        files.fsync_file(temp_table)
        out_description = provenance.describe_path(temp_table)
        out_description["path"] = out
        audit = dict(audit)
        audit["run_provenance"] = provenance.build_provenance(
            entrypoint=run.entrypoint,
            argv=run.argv,
            args=run.args,
            inputs={name: _describe(hasher, value) for name, value in inputs.items()},
            outputs={"audit_json": audit_json, "out": out_description},
            base_dir=run.base_dir,
            started_at=run.started_at,
            executor=run.executor,
            extra_versions=run.extra_versions,
        )
        hasher.close()
        if audit_json is None:
            files.commit_outputs([(temp_table, out_path)])
            return audit
        audit_path = run.resolve(audit_json)
        with files.atomic_output(audit_path, audit_json) as temp_audit:
            files.write_json_document(audit, temp_audit)
            files.fsync_file(temp_audit)
            files.commit_outputs([(temp_table, out_path), (temp_audit, audit_path)])
    return audit


def _describe(hasher: InputHasher, value: Any) -> Any:
    if isinstance(value, list):
        return [hasher.describe(v) for v in value]
    return hasher.describe(value)

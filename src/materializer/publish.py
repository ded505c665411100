"""Publishing a joined table with its audit: both complete, or neither.

The table goes to a temporary file beside its target, is hashed there, the audit (which
describes the table's final bytes) goes to its own temporary file, and only then are
both renamed into place. A failure at any step leaves no output and no audit behind.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from materializer import files, provenance, sources, tableio
from materializer.errors import UsageError
from materializer.provenance import InputHasher, RunContext
from materializer.sources import Source


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
    write: Callable[[io.RawIOBase], None] | None = None,
) -> dict[str, Any]:
    """Write ``table`` (or call ``write``) and the audit atomically; return the audit.

    ``inputs`` maps provenance names to sources (one, or a list): each is described by
    its file's bytes, plus how it was read and its ``align_to`` reference when it has
    them; every reference is also listed, hashed, under ``references``.
    """
    out_path = run.resolve(out)
    fmt = files.table_format(out)
    with files.atomic_output(out_path, out) as temp_table:
        with files.WriteBehind(temp_table) as sink:  # hashed and flushed as it is written
            if write is None:
                tableio.write_table_to(table, fmt, sink)
            else:
                write(sink)
            sha256 = sink.finish()
        out_description = provenance.describe_path(temp_table, sha256=sha256)
        out_description["path"] = out
        audit = dict(audit)
        audit["writer"] = tableio.writer_settings(fmt)
        audit["run_provenance"] = provenance.build_provenance(
            entrypoint=run.entrypoint,
            argv=run.argv,
            args=run.args,
            inputs=_inputs(hasher, inputs, run),
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


def _inputs(hasher: InputHasher, inputs: Mapping[str, Any], run: RunContext) -> dict[str, Any]:
    described: dict[str, Any] = {}
    references: list[dict[str, Any]] = []
    for name, value in inputs.items():
        group = [_describe(hasher, Source.parse(v), run, references)
                 for v in (value if isinstance(value, list) else [value])]
        described[name] = group if isinstance(value, list) else group[0]
    if references:
        described["references"] = references
    return described


def _describe(hasher: InputHasher, source: Source, run: RunContext,
              references: list[dict[str, Any]]) -> dict[str, Any]:
    """A file's description; for a source given as a mapping, with what ``load`` read."""
    description = hasher.describe(source.path)
    extra = sources.described(source)
    if extra is None:
        return description
    description["read"] = extra["read"]
    if "align_to" in extra:
        reference = hasher.describe(source.align_to.path)  # type: ignore[union-attr]
        references.append(reference)
        description["align_to"] = {**reference, **extra["align_to"],
                                   **run.alignments.get(source.path, {})}
    return description

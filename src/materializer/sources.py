"""A table as a manifest or a command names it: a path, ``LABEL=PATH``, or a mapping.

A mapping says how the file is parsed (``read``, see :mod:`materializer.readers`) and,
for a file without keys, which reference table its rows are in the order of
(``align_to``). Parsing a source needs no pandas or pyarrow (the workflow parses every
source while Snakemake reads the manifest); ``load`` reads one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from materializer.errors import DataError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from materializer.provenance import RunContext
    from materializer.tableio import TextColumns

SOURCE_KEYS = ("path", "read", "label", "align_to")
REFERENCE_KEYS = ("path", "read", "key_column", "check")
CHECK_TOLERANCE = 1e-6
"""Relative tolerance of a numeric ``align_to.check``."""


@dataclass(frozen=True)
class Reference:
    """``align_to``: a table whose rows are in the same order, and its key column."""

    path: str
    key_column: str
    read: Mapping[str, Any] | None = None
    check: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Source:
    """One table to read: its path as written, how to read it, and where its keys are."""

    path: str
    read: Mapping[str, Any] | None = None
    label: str | None = None
    align_to: Reference | None = None
    written: str | Mapping[str, Any] = ""
    """The source exactly as given (a string or a JSON-ready mapping)."""

    @classmethod
    def parse(cls, value: Any, *, labelled: bool = False) -> Source:
        """A source from a manifest value or a flag (a string starting with ``{`` is a
        JSON mapping); ``labelled`` sources (scores) may be ``LABEL=PATH``."""
        if isinstance(value, Source):
            return value
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise UsageError(f"a source starting with '{{' must be a JSON object: {exc}",
                                 file=value) from None
        if isinstance(value, Mapping):
            return _from_mapping(value, labelled)
        if not isinstance(value, str) or not value:
            raise UsageError(f"a source must be a path or a mapping, not {value!r}")
        label, sep, path = value.partition("=")
        if labelled and sep and label.strip() and "/" not in label and "\\" not in label \
                and path:
            # A label never holds a path separator, so runs/a=b.jsonl stays one path.
            return cls(path=path, label=label.strip(), written=value)
        return cls(path=value, written=value)

    @property
    def plain(self) -> bool:
        """Read the way every table was read before sources could be mappings."""
        return self.read is None and self.align_to is None

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file this source reads, as written: the table, then its reference."""
        return (self.path, *((self.align_to.path,) if self.align_to else ()))

    def __str__(self) -> str:
        return f"{self.label}={self.path}" if self.label else self.path


def _from_mapping(raw: Mapping[str, Any], labelled: bool) -> Source:
    allowed = SOURCE_KEYS if labelled else tuple(k for k in SOURCE_KEYS if k != "label")
    path = _keys(raw, allowed, "source", None)
    label = raw.get("label")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise UsageError("source label must be a non-empty string", file=path)
    reference = raw.get("align_to")
    return Source(path=path, read=_read(raw.get("read"), path), label=label and label.strip(),
                  align_to=None if reference is None else _reference(reference, path),
                  written=json.loads(json.dumps(dict(raw))))


def _reference(raw: Any, file: str) -> Reference:
    if not isinstance(raw, Mapping):
        raise UsageError("align_to must be a mapping with path and key_column", file=file)
    path = _keys(raw, REFERENCE_KEYS, "align_to", file)
    key_column = raw.get("key_column")
    if not isinstance(key_column, str) or not key_column:
        raise UsageError("align_to.key_column must name the reference column holding the "
                         "keys", file=file)
    check = raw.get("check")
    if check is not None and (not isinstance(check, Mapping) or not check or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in check.items())):
        raise UsageError("align_to.check must map a column here to a reference column",
                         file=file)
    return Reference(path=path, key_column=key_column, read=_read(raw.get("read"), path),
                     check=check)


def _keys(raw: Mapping[str, Any], allowed: tuple[str, ...], what: str,
          owner: str | None) -> str:
    """The mapping's path, after refusing keys it may not hold; errors name ``owner``
    (the source an ``align_to`` belongs to) or else the mapping's own path."""
    path = raw.get("path")
    unknown = [k for k in raw if k not in allowed]
    if not isinstance(path, str) or not path:
        raise UsageError(f"{what} mapping needs a path (keys: {', '.join(allowed)})",
                         file=owner)
    if unknown:
        raise UsageError(f"unknown {what} key {unknown[0]!r}; known: {', '.join(allowed)}",
                         file=owner or path)
    return path


def _read(read: Any, file: str) -> Mapping[str, Any] | None:
    """``read`` checked now (a wrong key is bad usage before any file is opened)."""
    if read is None:
        return None
    from materializer.readers import resolve_read

    resolve_read(file, read)
    return dict(read)


def load(source: Source, run: RunContext, text_columns: TextColumns = ()) -> pa.Table:
    """Read ``source`` as its ``read`` says, with its reference's keys when aligned.

    A plain path in one of the formats the joins always read keeps their rules
    (:func:`materializer.tableio.read_table`); JSON objects written back to back are
    then read with ``read: {format: json}``.

    With ``align_to``, ``text_columns`` apply to the reference too, where the key comes
    from: its key column always stays text as written.
    """
    from materializer import files, tableio
    from materializer.readers import format_of, read_source

    path = run.resolve(source.path)
    if source.plain and format_of(source.path) in files.FORMATS.values():
        return tableio.read_table(path, source.path, text_columns)  # as before mappings
    table = read_source(path, source.path, source.read, text_columns)
    if source.align_to is None:
        return table
    table = _aligned(table, source, run)
    run.alignments[source.path] = {"rows": table.num_rows,
                                   "check_passed": True if source.align_to.check else None}
    return table


def _aligned(table: pa.Table, source: Source, run: RunContext) -> pa.Table:
    """``table`` with the reference's key column added, after the row counts (and any
    ``check``) agree; anything else names both files."""
    from materializer.readers import read_source

    ref = source.align_to
    assert ref is not None
    reference = read_source(run.resolve(ref.path), ref.path, ref.read, [ref.key_column])
    if ref.key_column not in reference.column_names:
        raise UsageError(f"align_to.key_column {ref.key_column!r} is not a column of "
                         f"{ref.path} (columns: {', '.join(reference.column_names)})",
                         file=source.path)
    if ref.key_column in table.column_names:
        raise DataError(f"already has a column {ref.key_column!r}, the align_to.key_column "
                        f"of {ref.path}; rename one of them", file=source.path,
                        column=ref.key_column)
    if table.num_rows != reference.num_rows:
        raise DataError(f"{table.num_rows} rows, but its align_to reference {ref.path} has "
                        f"{reference.num_rows}: rows matched by position need equal counts",
                        file=source.path)
    for here, there in (ref.check or {}).items():
        _check_column(table, reference, here, there, source.path, ref.path)
    return table.append_column(ref.key_column, reference.column(ref.key_column))


def _check_column(table: pa.Table, reference: pa.Table, here: str, there: str, file: str,
                  ref_file: str) -> None:
    """Values of ``here`` must equal the reference's ``there`` row by row (numbers within
    ``CHECK_TOLERANCE`` relative, text exactly)."""
    import numpy as np

    for name, found, where in ((here, table, file), (there, reference, ref_file)):
        if name not in found.column_names:
            raise UsageError(f"align_to.check column {name!r} is not a column of {where} "
                             f"(columns: {', '.join(found.column_names)})", file=file)
    a = table.column(here).to_numpy(zero_copy_only=False)
    b = reference.column(there).to_numpy(zero_copy_only=False)
    if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
        a, b = a.astype(float), b.astype(float)
        same = np.isclose(a, b, rtol=CHECK_TOLERANCE, atol=0.0) | (np.isnan(a) & np.isnan(b))
    else:
        same = a.astype(str) == b.astype(str)
    if not same.all():
        row = int(np.flatnonzero(~same)[0])
        raise DataError(f"align_to.check fails at row {row + 1}: {here} = {a[row]!r} here, "
                        f"{there} = {b[row]!r} in {ref_file}", file=file, column=here)


def described(source: Source) -> dict[str, Any] | None:
    """What the audit records beyond the file's bytes: the effective read options and
    the alignment; None for a plain source (its description is the file's alone)."""
    if source.plain:
        return None
    from materializer.readers import resolve_read

    found: dict[str, Any] = {"path": source.path,
                             "read": resolve_read(source.path, source.read)}
    if source.align_to is not None:
        ref = source.align_to
        found["align_to"] = {"path": ref.path, "read": resolve_read(ref.path, ref.read),
                             "key_column": ref.key_column, "check": dict(ref.check or {})}
    return found
